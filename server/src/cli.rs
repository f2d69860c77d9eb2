//! The command line of the `server` binary: the `--config` file layered
//! under the flags ([`crate::config_file`]), logging, then the server
//! (options, listener, [`crate::run`]), `server check-config`
//! ([`crate::check_config`]) or `server replay FILE --to URL`
//! ([`crate::replay::replay`]). Its own module, so that a test harness can
//! build a binary that is exactly the server (`e2e`'s does).

use std::ffi::OsString;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::check_config::Report;
use crate::config_file;
use crate::logging::{self, LogFormat};
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

/// The subcommand whose options a `--config` file may give, as the
/// server's own.
const CHECK_CONFIG: &str = "check-config";

/// What the binary does instead of serving.
#[derive(Debug, Subcommand)]
enum Command {
    /// Publishes a recording downloaded from the page (NDJSON) to a server,
    /// at its original pace or N times faster.
    Replay(ReplayArgs),
    /// Checks the options as a start would (files read, certificate and
    /// key matched, data dir opened, Redis URL parsed) and prints each
    /// one's value and source, secrets redacted; exits 1 on any error.
    CheckConfig(Box<Config>),
}

/// Runs the binary with the process's arguments and environment.
///
/// # Errors
/// Anything that stops a start (bad options or config file, a listener
/// that cannot bind, a data dir that cannot be used) or a replay; `main`
/// prints it and exits with 1.
#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    let (cli, report) = parse(std::env::args_os().collect())?;
    match cli.command {
        Some(Command::Replay(args)) => {
            logging::init(LogFormat::Text);
            let summary = crate::replay::replay(&args).await?;
            println!("{summary}");
            Ok(())
        }
        Some(Command::CheckConfig(config)) => {
            logging::init(config.log_format);
            print!("{}", report.context("check-config has a report")?);
            config.into_settings()?;
            println!("# the configuration is usable");
            Ok(())
        }
        None => serve(cli.config).await,
    }
}

/// The command line with the `--config` file under it, and for
/// `check-config` the report of its options.
fn parse(args: Vec<OsString>) -> anyhow::Result<(Cli, Option<Report>)> {
    let command = Cli::command();
    let layered = config_file::layer(&command, args, CHECK_CONFIG)?;
    let matches = match command.clone().try_get_matches_from(&layered.args) {
        Ok(matches) => matches,
        Err(error) => {
            let _ = error.print();
            if let (Some(file), true) = (&layered.file, error.use_stderr()) {
                eprintln!(
                    "(the options of {} are checked here as flags)",
                    file.path().display()
                );
            }
            std::process::exit(error.exit_code());
        }
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let report = match (matches.subcommand(), command.find_subcommand(CHECK_CONFIG)) {
        (Some((CHECK_CONFIG, options)), Some(check)) => {
            Some(Report::new(check, options, layered.file.as_ref()))
        }
        _ => None,
    };
    Ok((cli, report))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    logging::init(config.log_format);
    let settings = config.into_settings()?;
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
