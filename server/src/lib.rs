//! A Server-Sent Events server: a live, resumable, topic-filtered event
//! stream built to fan out to many subscribers.
//!
//! Modules, each named for what it holds:
//! - [`config`]: the command line and environment options.
//! - [`event_log`]: where events are stored: in memory, on disk
//!   (`--data-dir`), or a Redis stream shared by several servers.
//! - [`hub`]: the retained events (per topic, under global bounds), the
//!   topic index that wakes only matching subscribers, the lag policy.
//! - [`stream`]: one subscriber's response: resume, live, keep-alive, end.
//! - [`publish`]: `POST /publish` validation and storing.
//! - [`error`]: every error answer as a status and JSON body.
//! - [`metrics`]: counters, `/metrics` and `/healthz`.
//! - [`page`]: the built web page at `/`.
//! - [`ticker`]: the demo ticker.
//! - [`topics`]: `GET /topics`, the live topics a page at a time.
//! - [`routes`]: the warp filters.
//! - [`serve`]: the accept loop and graceful shutdown.
//!
//! [`run`] is what `main` calls, and what the tests call with a listener on
//! port 0.

pub mod app;
pub mod config;
pub mod error;
pub mod event_log;
pub mod hub;
pub mod metrics;
pub mod page;
pub mod publish;
pub mod routes;
pub mod serve;
pub mod stream;
pub mod ticker;
pub mod topics;

pub use app::App;
pub use config::{Config, ConfigError};
pub use hub::Hub;
pub use serve::{run, shutdown_signal};
