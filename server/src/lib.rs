//! A Server-Sent Events server: a live, resumable, topic-filtered event
//! stream built to fan out to many subscribers.
//!
//! Modules, each named for what it holds:
//! - [`cli`]: the binary's command line: the server, `server
//!   check-config`, or `server replay`.
//! - [`config`]: the command line and environment options, checked once
//!   into [`settings`]: the values the server runs on, every file read.
//! - [`config_file`]: `--config FILE`, TOML options under the flags and
//!   the environment.
//! - [`check_config`]: `server check-config`'s report: each option's value
//!   and source, secrets redacted.
//! - [`logging`]: the log on stderr, as text or JSON lines.
//! - [`auth`]: tokens to topic rights (JWT, private topics, secrets).
//! - [`rate`]: publish rate limits per token or client.
//! - [`event_log`]: where events are stored: in memory, on disk
//!   (`--data-dir`), or a Redis stream shared by several servers.
//! - [`hub`]: the retained events (per topic, under global bounds), the
//!   topic index that wakes only matching subscribers, the lag policy.
//! - [`stream`]: one subscriber's response: resume, live, keep-alive, end.
//! - [`publish`]: `POST /publish` validation and storing.
//! - [`idempotency`]: `Idempotency-Key`: a retried publish gets the first
//!   answer instead of publishing again.
//! - [`error`]: every error answer as a status and JSON body.
//! - [`limits`]: what a client may hold, in count, bytes and time.
//! - [`connection`]: serving one connection under those limits: TLS,
//!   HTTP/1.1, HTTP/2 (h2c too), its kill switch, the head deadline, and a
//!   first `GET /stream` answered below hyper.
//! - [`cors`]: `--cors-origin`, tower-http's layer where it is needed.
//! - [`metrics`]: the counters.
//! - [`status`]: `/metrics` and `/healthz`.
//! - [`page`]: the built web page at `/`.
//! - [`ticker`]: the demo ticker.
//! - [`topics`]: `GET /topics`, the live topics a page at a time.
//! - [`time`]: `GET /time`, the server's clock, for a client's offset.
//! - [`replay`]: `server replay`, which publishes a recording made by the
//!   page back into a server at its original pace.
//! - [`request_log`]: the log line of one request.
//! - [`routes`]: the warp filters.
//! - [`serve`]: the accept loop and graceful shutdown.
//! - [`tls`]: HTTPS: the certificate, ALPN (h2, http/1.1), reload on
//!   SIGHUP.
//! - [`throttle`]: log lines a client can repeat, written once in a while.
//!
//! [`run`] is what `main` calls, and what the tests call with a listener on
//! port 0.

pub mod app;
pub mod auth;
pub mod check_config;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod cors;
pub mod error;
pub mod event_log;
pub mod hub;
pub mod idempotency;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod page;
pub mod publish;
pub mod rate;
pub mod replay;
pub mod request_log;
pub mod routes;
pub mod serve;
pub mod settings;
pub mod status;
pub mod stream;
pub mod throttle;
pub mod ticker;
pub mod time;
pub mod tls;
pub mod topics;

pub use app::App;
pub use config::{Config, ConfigError};
pub use hub::Hub;
pub use serve::{listen, run, shutdown_signal};
pub use settings::Settings;
