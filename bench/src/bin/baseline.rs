//! The baseline server: a warp 0.4 `warp::sse::reply` over a
//! `tokio::sync::broadcast` channel (see `bench::baseline`).
//!
//! Usage: `baseline [--addr 127.0.0.1:PORT]` (default 127.0.0.1:3001).

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr: SocketAddr = "127.0.0.1:3001".parse()?;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                addr = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--addr needs a value"))?
                    .parse()?;
            }
            other => anyhow::bail!("unknown argument {other:?}; usage: baseline [--addr IP:PORT]"),
        }
    }
    if let Err(e) = bench::raise_nofile_limit() {
        eprintln!("cannot raise the open files limit: {e}");
    }
    bench::baseline::serve(addr).await
}
