//! `GET /metrics` (Prometheus text) and `GET /healthz`, read from the whole
//! [`App`]: the hub's counters, the event log's health, the open
//! connections.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use warp::http::StatusCode;
use warp::Reply;

use crate::app::App;
use crate::metrics::Refusal;

/// Renders every metric in the Prometheus text format (version 0.0.4).
pub fn render(app: &App) -> String {
    let hub = &app.hub;
    let m = &hub.metrics;
    let log = app.log.health();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let rows: [(&str, &str, &str, u64); 22] = [
        (
            "sse_subscribers",
            "gauge",
            "Subscribers connected now.",
            hub.subscribers() as u64,
        ),
        (
            "sse_events_published_total",
            "counter",
            "Events added to the history (published here, or read from the shared log).",
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
            "sse_history_bytes",
            "gauge",
            "Bytes held in the resume history (frames and bookkeeping).",
            hub.history_bytes() as u64,
        ),
        (
            "sse_topics",
            "gauge",
            "Live topics: topics that hold events or are followed.",
            hub.live_topics() as u64,
        ),
        (
            "sse_topic_evictions_total",
            "counter",
            "Topics no one followed, evicted whole to make room for new ones (--max-live-topics).",
            hub.topic_evictions(),
        ),
        (
            "sse_wakeups_total",
            "counter",
            "Subscribers woken by publishes (only those whose filter matches).",
            load(&m.wakeups),
        ),
        (
            "sse_last_seq",
            "gauge",
            "Sequence number of the newest event.",
            hub.last_seq(),
        ),
        (
            "sse_log_up",
            "gauge",
            "1 when the event log (memory, or Redis) can take events, else 0.",
            u64::from(log.up),
        ),
        (
            "sse_log_outages_total",
            "counter",
            "Times the event log became unreachable.",
            log.outages,
        ),
        (
            "sse_log_errors_total",
            "counter",
            "Commands to the event log that failed (reads and publishes).",
            log.errors,
        ),
        (
            "sse_connections",
            "gauge",
            "Connections open now under --max-connections (streams included).",
            app.connections.open() as u64,
        ),
        (
            "sse_connections_total",
            "counter",
            "Connections accepted under --max-connections.",
            load(&m.connections),
        ),
        (
            "sse_idle_closed_total",
            "counter",
            "Keep-alive connections closed after --idle-timeout without a request.",
            load(&m.idle_closed),
        ),
        (
            "sse_accept_errors_total",
            "counter",
            "Failed accepts (most often: out of file descriptors); each is followed by a pause.",
            load(&m.accept_errors),
        ),
        (
            "sse_rate_limit_keys",
            "gauge",
            "Clients (token subjects, IPv4 addresses, IPv6 prefixes) the publish rate limiter holds a bucket for.",
            app.limiter.as_ref().map_or(0, |l| l.keys() as u64),
        ),
    ];
    let mut out = String::with_capacity(4096);
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP sse_refused_total Connections and requests refused by a limit or as malformed HTTP.\n\
         # TYPE sse_refused_total counter"
    );
    for reason in Refusal::ALL {
        let _ = writeln!(
            out,
            "sse_refused_total{{reason=\"{}\"}} {}",
            reason.label(),
            m.refusals(reason)
        );
    }
    out
}

/// Answers `GET /healthz`: 200 `ok`, or 503 `degraded` while the event log
/// cannot take events (subscribers are still served); which log, which
/// epoch, how far, how many listening.
pub fn health(app: &App) -> warp::reply::Response {
    let hub = &app.hub;
    let log = app.log.health();
    let (status, code) = if log.up {
        ("ok", StatusCode::OK)
    } else {
        ("degraded", StatusCode::SERVICE_UNAVAILABLE)
    };
    let body = warp::reply::json(&serde_json::json!({
        "status": status,
        "log": log.kind,
        "log_up": log.up,
        "epoch": hub.epoch(),
        "last_seq": hub.last_seq(),
        "subscribers": hub.subscribers(),
    }));
    warp::reply::with_status(body, code).into_response()
}
