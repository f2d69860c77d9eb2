//! The running settings: the command line checked once and turned into the
//! values the server runs on, with every file it names read exactly once
//! (the JWT key, the TLS certificate and key, the data dir's store). Build
//! them with [`crate::Config::into_settings`]; [`crate::run`] takes them.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::event_log::LogChoice;
use crate::hub::HubOptions;
use crate::limits::{self, Limits};
use crate::publish::PublishSettings;
use crate::rate::PublishLimiter;
use crate::stream::StreamSettings;
use crate::tls::Tls;

/// Everything the server runs on.
#[derive(Debug)]
pub struct Settings {
    /// The address asked for (the help text's when the listener has none).
    pub addr: SocketAddr,
    /// What the hub keeps, and how far a subscriber may fall behind.
    pub history: HistorySettings,
    /// Where events are stored.
    pub log: LogChoice,
    /// What one client may hold, in bytes and time, and how many at once.
    pub connections: ConnectionSettings,
    /// Keep-alive, retry and topic count of every stream.
    pub stream: StreamSettings,
    /// Size and time limits of `POST /publish`.
    pub publish: PublishSettings,
    /// Tokens and topic rights.
    pub auth: Auth,
    /// Publish rate limits (`--publish-rate`).
    pub rate: Option<RateSettings>,
    /// Origins allowed by CORS.
    pub cors_origins: Vec<String>,
    /// HTTPS, its certificate loaded (`--tls-cert`, `--tls-key`).
    pub tls: Option<Arc<Tls>>,
    /// HTTP/2 in cleartext beside HTTP/1.1 (`--h2c`).
    pub h2c: bool,
    /// The folder of the built page.
    pub dist: PathBuf,
    /// The demo ticker's interval; `None` when off.
    pub ticker_interval: Option<Duration>,
    /// How long connections get to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Settings {
    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// What the hub keeps for resuming clients, and the lag policy.
#[derive(Debug, Clone, Copy)]
pub struct HistorySettings {
    /// `--history`.
    pub events: u64,
    /// `--history-bytes`.
    pub bytes: u64,
    /// `--history-per-topic`.
    pub per_topic: u64,
    /// `--history-ttl`.
    pub ttl: Option<Duration>,
    /// `--max-live-topics`.
    pub max_live_topics: u64,
    /// `--max-lag`.
    pub max_lag: u64,
}

impl HistorySettings {
    /// The hub's options, with room for `max_subscribers`.
    pub fn hub_options(&self, max_subscribers: usize) -> HubOptions {
        HubOptions {
            history: self.events,
            history_bytes: self.bytes,
            history_per_topic: self.per_topic,
            max_live_topics: self.max_live_topics,
            max_lag: self.max_lag,
            max_subscribers,
            history_ttl: self.ttl,
        }
    }
}

/// The connection limits as asked for; [`ConnectionSettings::limits`]
/// resolves the caps against the open-files limit at start.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// `--header-timeout`.
    pub header_timeout: Duration,
    /// `--idle-timeout`.
    pub idle_timeout: Duration,
    /// `--max-header-bytes`.
    pub max_header_bytes: usize,
    /// `--max-connections`; `None` for what the open-files limit allows.
    pub max_connections: Option<u64>,
    /// `--max-subscribers`; `None` for the connection cap.
    pub max_subscribers: Option<usize>,
    /// `--h2-max-streams`.
    pub h2_max_streams: u32,
}

impl ConnectionSettings {
    /// The limits every connection is served under, with `open_files` the
    /// process's open-files limit.
    pub fn limits(&self, open_files: u64) -> Limits {
        Limits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_header_bytes: self.max_header_bytes,
            max_connections: limits::max_connections(self.max_connections, open_files),
            h2_max_streams: self.h2_max_streams,
        }
    }

    /// The most subscribers at once, under `limits`.
    pub fn max_subscribers(&self, limits: &Limits) -> usize {
        self.max_subscribers.unwrap_or(limits.max_connections)
    }
}

/// Publish rate limits: per token subject, or per client without a token.
#[derive(Debug, Clone)]
pub struct RateSettings {
    /// Publishes per second.
    pub rate: NonZeroU32,
    /// Publishes at once after a quiet time.
    pub burst: NonZeroU32,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trust_proxy: Vec<ipnet::IpNet>,
    /// The IPv6 prefix length that counts as one client.
    pub ipv6_prefix: u8,
}

impl RateSettings {
    /// The limiter these settings describe.
    pub fn limiter(&self) -> PublishLimiter {
        PublishLimiter::new(
            self.rate,
            self.burst,
            self.trust_proxy.clone(),
            self.ipv6_prefix,
        )
    }
}
