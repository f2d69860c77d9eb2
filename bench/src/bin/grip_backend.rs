//! The GRIP backend Pushpin proxies the suite's subscribers to (see
//! `bench::grip`): each subscribe is answered with a hold on its topics'
//! channels.
//!
//! Usage: `grip-backend [--addr 127.0.0.1:PORT]` (default 127.0.0.1:3002).

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr: SocketAddr = "127.0.0.1:3002".parse()?;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                addr = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--addr needs a value"))?
                    .parse()?;
            }
            other => {
                anyhow::bail!("unknown argument {other:?}; usage: grip-backend [--addr IP:PORT]")
            }
        }
    }
    bench::grip::serve_on(addr).await
}
