//! Counters and their Prometheus text exposition for `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hub::Hub;

/// Monotonic counters of one server run.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events stored and broadcast.
    pub(crate) published: AtomicU64,
    /// Events handed to subscriber connections (one per event per subscriber).
    pub(crate) delivered: AtomicU64,
    /// Subscribers disconnected for falling behind.
    pub(crate) dropped: AtomicU64,
    /// Subscriber connections accepted.
    pub(crate) subscriptions: AtomicU64,
    /// Subscribers refused because the limit was reached.
    pub(crate) refused: AtomicU64,
    /// Reset notices sent (a resume that could not be exact).
    pub(crate) resets: AtomicU64,
    /// Publish requests refused for bad input.
    pub(crate) publish_errors: AtomicU64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Renders every metric in the Prometheus text format (version 0.0.4).
pub fn render(hub: &Hub) -> String {
    let m = &hub.metrics;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let rows: [(&str, &str, &str, u64); 10] = [
        (
            "sse_subscribers",
            "gauge",
            "Subscribers connected now.",
            hub.subscribers() as u64,
        ),
        (
            "sse_events_published_total",
            "counter",
            "Events stored and broadcast.",
            load(&m.published),
        ),
        (
            "sse_events_delivered_total",
            "counter",
            "Events written to subscriber connections.",
            load(&m.delivered),
        ),
        (
            "sse_subscribers_dropped_total",
            "counter",
            "Subscribers disconnected for falling behind.",
            load(&m.dropped),
        ),
        (
            "sse_subscriptions_total",
            "counter",
            "Subscriber connections accepted.",
            load(&m.subscriptions),
        ),
        (
            "sse_subscribers_refused_total",
            "counter",
            "Subscribers refused at the subscriber limit.",
            load(&m.refused),
        ),
        (
            "sse_resets_total",
            "counter",
            "Reset notices sent for resumes that could not be exact.",
            load(&m.resets),
        ),
        (
            "sse_publish_errors_total",
            "counter",
            "Publish requests refused for bad input.",
            load(&m.publish_errors),
        ),
        (
            "sse_history_events",
            "gauge",
            "Events held in the resume history.",
            hub.history_len() as u64,
        ),
        (
            "sse_last_seq",
            "gauge",
            "Sequence number of the newest event.",
            hub.last_seq(),
        ),
    ];
    let mut out = String::with_capacity(2048);
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

/// Answers `GET /healthz`: up, which run, how far, how many listening.
pub fn health(hub: &Hub) -> warp::reply::Response {
    use warp::Reply;
    warp::reply::json(&serde_json::json!({
        "status": "ok",
        "epoch": hub.epoch(),
        "last_seq": hub.last_seq(),
        "subscribers": hub.subscribers(),
    }))
    .into_response()
}
