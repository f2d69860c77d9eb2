//! The GRIP backend Pushpin proxies the suite's subscribers to (see
//! `bench::grip`): each subscribe is answered with a hold on its topics'
//! channels.
//!
//! Usage: `grip-backend [--addr 127.0.0.1:PORT]` (default 127.0.0.1:3002).

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = bench::listen_addr(
        "127.0.0.1:3002",
        "grip-backend",
        "The GRIP backend Pushpin proxies the suite's subscribers to",
    );
    bench::grip::serve_on(addr).await
}
