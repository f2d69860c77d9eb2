//! The state every request handler shares, and what the whole run owns:
//! its counters and its shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::event_log::SharedLog;
use crate::hub::Hub;
use crate::limits::ConnectionCap;
use crate::metrics::Metrics;
use crate::publish::PublishSettings;
use crate::rate::PublishLimiter;
use crate::stream::StreamSettings;

/// Shared state, cheap to clone into each filter.
#[derive(Debug, Clone)]
pub struct App {
    /// History and fan-out.
    pub hub: Arc<Hub>,
    /// Where published events are stored.
    pub log: SharedLog,
    /// Keep-alive and retry of every stream.
    pub stream: StreamSettings,
    /// Size and time limits of `POST /publish`.
    pub publish: Arc<PublishSettings>,
    /// Tokens and topic rights.
    pub auth: Arc<Auth>,
    /// Publish rate limits, when `--publish-rate` is set.
    pub limiter: Option<Arc<PublishLimiter>>,
    /// Folder of the built page.
    pub dist: Arc<PathBuf>,
    /// The open connections and their cap, for `/metrics`.
    pub connections: Arc<ConnectionCap>,
    /// The address the server listens on, for the help text at `/`.
    pub addr: SocketAddr,
    /// The counters of connections and requests.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down: every task of the run stops.
    pub shutdown: CancellationToken,
}
