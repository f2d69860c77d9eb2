//! The command line of the `server` binary: logging, then either the server
//! (options, listener, [`crate::run`]) or, as `server replay FILE --to
//! URL`, [`crate::replay::replay`]. Its own module, so that a test harness
//! can build a binary that is exactly the server (`e2e`'s does).

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::replay::ReplayArgs;
use crate::{Config, ConfigError};

/// Runs the binary with the process's arguments and environment.
///
/// # Errors
/// Anything that stops a start (bad options, a listener that cannot bind, a
/// data dir that cannot be used) or a replay; `main` prints it and exits
/// with 1.
#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
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
        let summary = crate::replay::replay(&args).await?;
        println!("{summary}");
        return Ok(());
    }
    let settings = Config::parse().into_settings()?;
    let listener = crate::listen(settings.addr)
        .with_context(|| format!("cannot listen on {}", settings.addr))?;
    let addr = listener.local_addr()?;
    // The one line on stdout: scripts and tests read the port from it.
    println!("listening on {}://{addr}", settings.scheme());
    crate::run(listener, settings, crate::shutdown_signal())
        .await
        .map_err(ConfigError::from)?;
    Ok(())
}
