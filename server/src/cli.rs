//! The command line of the `server` binary: logging, then either the server
//! (options, listener, [`crate::run`]) or, as `server replay FILE --to
//! URL`, [`crate::replay::replay`]. Its own module, so that a test harness
//! can build a binary that is exactly the server (`e2e`'s does).

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::replay::ReplayArgs;
use crate::{Config, ConfigError};

/// The binary's command line: the server's options, or a subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "server",
    version,
    args_override_self = true,
    args_conflicts_with_subcommands = true,
    about = "A Server-Sent Events server: GET /stream, POST /publish, resumable with Last-Event-ID."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

/// What the binary does instead of serving.
#[derive(Debug, Subcommand)]
enum Command {
    /// Publishes a recording downloaded from the page (NDJSON) to a server,
    /// at its original pace or N times faster.
    Replay(ReplayArgs),
}

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
    let cli = Cli::parse();
    if let Some(Command::Replay(args)) = cli.command {
        let summary = crate::replay::replay(&args).await?;
        println!("{summary}");
        return Ok(());
    }
    let settings = cli.config.into_settings()?;
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
