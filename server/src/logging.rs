//! The log on stderr: text for a terminal, or one JSON object a line
//! (`--log-format json`) for a log shipper. The fields are the events' own,
//! so both formats carry the same names (docs/production.md lists the
//! request line's).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2024-05-01T12:00:00.000000Z  INFO server::serve: request remote=…`.
    #[default]
    Text,
    /// `{"timestamp":…,"level":"INFO","message":"request","remote":…}`: the
    /// event's fields at the top level beside `timestamp`, `level`,
    /// `message` and `target`.
    Json,
}

/// Installs the process's log on stderr in `format`, filtered by `RUST_LOG`
/// (default: `info`), coloured only when stderr is a terminal.
pub fn init(format: LogFormat) {
    // warp warns once per request for a path with `..` in it, which any
    // client can send: only its errors are shown.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,warp::filters::fs=error"));
    // Colours only on a terminal: not in the journal or a file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}
