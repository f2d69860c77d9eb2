//! The baseline server: a warp 0.4 `warp::sse::reply` over a
//! `tokio::sync::broadcast` channel (see `bench::baseline`).
//!
//! Usage: `baseline [--addr 127.0.0.1:PORT]` (default 127.0.0.1:3001).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = bench::listen_addr(
        "127.0.0.1:3001",
        "baseline",
        "The comparison server: a warp 0.4 `warp::sse::reply` over a `tokio::sync::broadcast` channel",
    );
    if let Err(e) = bench::raise_nofile_limit() {
        eprintln!("cannot raise the open files limit: {e}");
    }
    bench::baseline::serve(addr).await
}
