//! The server binary: options, logging, listener, then [`server::run`];
//! or, as `server replay FILE --to URL`, [`server::replay::replay`].

use anyhow::Context;
use clap::Parser;
use server::replay::ReplayArgs;
use server::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // warp warns once per request for a path with `..` in it,
            // which any client can send: only its errors are shown.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,warp::filters::fs=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "replay")
    {
        let args = ReplayArgs::parse_from(std::env::args_os().skip(1));
        let summary = server::replay::replay(&args).await?;
        println!("{summary}");
        return Ok(());
    }
    let config = Config::parse();
    config.validate()?;
    let listener =
        server::listen(config.addr).with_context(|| format!("cannot listen on {}", config.addr))?;
    let addr = listener.local_addr()?;
    // The one line on stdout: scripts and tests read the port from it.
    println!("listening on {}://{addr}", config.scheme());
    server::run(listener, config, server::shutdown_signal()).await?;
    Ok(())
}
