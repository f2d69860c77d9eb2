//! The server's counters of connections and requests, which the
//! [`crate::App`] owns (the hub's own are [`crate::hub::HubStats`]).
//! [`crate::status`] renders both for `GET /metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::throttle::Throttle;

/// Monotonic counters of one server run's connections and requests.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Publish requests refused for bad input.
    pub(crate) publish_errors: AtomicU64,
    /// Connections accepted under the connection cap.
    pub(crate) connections: AtomicU64,
    /// Keep-alive connections closed after `--idle-timeout` without a
    /// request: housekeeping, not a refusal.
    pub(crate) idle_closed: AtomicU64,
    /// Failed accepts (most often: out of file descriptors).
    pub(crate) accept_errors: AtomicU64,
    /// Connections and requests refused by a limit or as malformed HTTP,
    /// indexed by [`Refusal`].
    refusals: [AtomicU64; Refusal::ALL.len()],
}

impl Metrics {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a refusal, and logs it unless a refusal of the same kind was
    /// logged less than [`crate::throttle::EVERY`] ago: a client can repeat
    /// refused requests cheaply, the log must not grow with them. `peer` is
    /// the client, when known.
    pub(crate) fn refuse(&self, reason: Refusal, peer: Option<SocketAddr>) {
        static LOGGED: [Throttle; Refusal::ALL.len()] =
            [const { Throttle::new() }; Refusal::ALL.len()];
        self.refusals[reason as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(left_out) = LOGGED[reason as usize].admit() {
            tracing::info!(
                reason = reason.label(),
                peer = ?peer,
                not_logged_since_last = left_out,
                "{}",
                reason.describe()
            );
        }
    }

    /// How many refusals of this kind there were.
    pub fn refusals(&self, reason: Refusal) -> u64 {
        self.refusals[reason as usize].load(Ordering::Relaxed)
    }
}

/// Why a connection or request was refused: the `reason` label of
/// `sse_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// At `--max-connections`: answered 503 and closed (or closed at once
    /// when even those answers are at their limit).
    TooManyConnections,
    /// A request head not complete within `--header-timeout`: closed.
    HeaderTimeout,
    /// A request head over `--max-header-bytes`: 431.
    HeaderTooLarge,
    /// A request head hyper cannot parse: 400 (or 414 for a long URI).
    MalformedRequest,
    /// A publish body not complete within `--body-timeout`: 408.
    BodyTimeout,
    /// A transfer coding other than chunked: 501.
    TransferCoding,
    /// A missing or invalid token where one is needed: 401.
    Unauthorized,
    /// A token that does not cover the topic: 403.
    Forbidden,
    /// Over `--publish-rate`: 429.
    RateLimited,
    /// A TLS handshake that failed or was not complete within
    /// `--header-timeout`: closed.
    TlsHandshake,
}

impl Refusal {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Refusal; 10] = [
        Refusal::TooManyConnections,
        Refusal::HeaderTimeout,
        Refusal::HeaderTooLarge,
        Refusal::MalformedRequest,
        Refusal::BodyTimeout,
        Refusal::TransferCoding,
        Refusal::Unauthorized,
        Refusal::Forbidden,
        Refusal::RateLimited,
        Refusal::TlsHandshake,
    ];

    /// The reason of an access refusal (401, 403, 429), if `error` is one.
    pub fn of_auth(error: &crate::error::ApiError) -> Option<Refusal> {
        use crate::error::ApiError;
        match error {
            ApiError::Unauthorized(_) => Some(Refusal::Unauthorized),
            ApiError::Forbidden(_) => Some(Refusal::Forbidden),
            ApiError::RateLimited { .. } => Some(Refusal::RateLimited),
            _ => None,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::MalformedRequest => "malformed_request",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::TransferCoding => "transfer_coding",
            Refusal::Unauthorized => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::RateLimited => "rate_limited",
            Refusal::TlsHandshake => "tls_handshake",
        }
    }

    /// The log line.
    fn describe(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "connection refused: at --max-connections",
            Refusal::HeaderTimeout => "connection closed: no complete request head in time",
            Refusal::HeaderTooLarge => "request refused: head over --max-header-bytes",
            Refusal::MalformedRequest => "request refused: not parseable as HTTP/1.1",
            Refusal::BodyTimeout => "publish refused: body not complete in time",
            Refusal::TransferCoding => "request refused: a transfer coding other than chunked",
            Refusal::Unauthorized => "request refused: no valid token",
            Refusal::Forbidden => "request refused: the token does not cover the topic",
            Refusal::RateLimited => "publish refused: over --publish-rate",
            Refusal::TlsHandshake => {
                "connection closed: TLS handshake failed or not complete in time"
            }
        }
    }
}
