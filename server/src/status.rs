//! `GET /metrics` (Prometheus text) and `GET /healthz`, read from the whole
//! [`App`]: the hub's counters, the event log's health, the open
//! connections.
//!
//! The exposition is the Prometheus text format 0.0.4, written from a table
//! of rows. `prometheus-client` writes OpenMetrics text only: another
//! content type, a closing `# EOF`, and a counter's `# TYPE` named without
//! its `_total`, which would change what every scraper and dashboard of
//! this server reads today; the values themselves are read from the hub's,
//! the log's and the connections' own counters at each scrape, so a
//! registry would only copy them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use warp::http::StatusCode;
use warp::Reply;

use crate::app::App;
use crate::event_log::LogHealth;
use crate::hub::Hub;
use crate::idempotency::KeyStats;
use crate::metrics::{Metrics, Refusal};

/// One metric: its name, Prometheus type, help text and value.
struct Row {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: u64,
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Renders every metric in the Prometheus text format (version 0.0.4).
pub fn render(app: &App) -> String {
    let log = app.log.health();
    let mut out = String::with_capacity(4096);
    let rows = event_rows(app)
        .into_iter()
        .chain(history_rows(&app.hub))
        .chain(log_rows(&log))
        .chain(key_rows(&app.log.keys().stats))
        .chain(connection_rows(app));
    for Row {
        name,
        kind,
        help,
        value,
    } in rows
    {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    write_refusals(&mut out, &app.metrics);
    out
}

/// The events and subscribers: what came in, what went out.
fn event_rows(app: &App) -> [Row; 8] {
    let hub = &app.hub;
    [
        Row {
            name: "sse_subscribers",
            kind: "gauge",
            help: "Subscribers connected now.",
            value: hub.subscribers() as u64,
        },
        Row {
            name: "sse_events_published_total",
            kind: "counter",
            help: "Events added to the history (published here, or read from the shared log).",
            value: load(&hub.stats.published),
        },
        Row {
            name: "sse_events_delivered_total",
            kind: "counter",
            help: "Events written to subscriber connections.",
            value: load(&hub.stats.delivered),
        },
        Row {
            name: "sse_subscribers_dropped_total",
            kind: "counter",
            help: "Subscribers disconnected for falling behind.",
            value: load(&hub.stats.dropped),
        },
        Row {
            name: "sse_subscriptions_total",
            kind: "counter",
            help: "Subscriber connections accepted.",
            value: load(&hub.stats.subscriptions),
        },
        Row {
            name: "sse_subscribers_refused_total",
            kind: "counter",
            help: "Subscribers refused at the subscriber limit.",
            value: load(&hub.stats.refused),
        },
        Row {
            name: "sse_resets_total",
            kind: "counter",
            help: "Reset notices sent for resumes that could not be exact.",
            value: load(&hub.stats.resets),
        },
        Row {
            name: "sse_publish_errors_total",
            kind: "counter",
            help: "Publish requests refused for bad input.",
            value: load(&app.metrics.publish_errors),
        },
    ]
}

/// What the hub holds.
fn history_rows(hub: &Hub) -> [Row; 7] {
    [
        Row {
            name: "sse_history_events",
            kind: "gauge",
            help: "Events held in the resume history.",
            value: hub.history_len() as u64,
        },
        Row {
            name: "sse_history_expired_total",
            kind: "counter",
            help: "Events dropped from the resume history for their age (--history-ttl).",
            value: load(&hub.stats.expired),
        },
        Row {
            name: "sse_history_bytes",
            kind: "gauge",
            help: "Bytes held in the resume history (frames and bookkeeping).",
            value: hub.history_bytes() as u64,
        },
        Row {
            name: "sse_topics",
            kind: "gauge",
            help: "Live topics: topics that hold events or are followed.",
            value: hub.live_topics() as u64,
        },
        Row {
            name: "sse_topic_evictions_total",
            kind: "counter",
            help: "Topics no one followed, evicted whole to make room for new ones (--max-live-topics).",
            value: hub.topic_evictions(),
        },
        Row {
            name: "sse_wakeups_total",
            kind: "counter",
            help: "Subscribers woken by publishes (only those whose filter matches).",
            value: load(&hub.stats.wakeups),
        },
        Row {
            name: "sse_last_seq",
            kind: "gauge",
            help: "Sequence number of the newest event.",
            value: hub.last_seq(),
        },
    ]
}

/// The event log's health.
fn log_rows(log: &LogHealth) -> [Row; 3] {
    [
        Row {
            name: "sse_log_up",
            kind: "gauge",
            help: "1 when the event log (memory, or Redis) can take events, else 0.",
            value: u64::from(log.up),
        },
        Row {
            name: "sse_log_outages_total",
            kind: "counter",
            help: "Times the event log became unreachable.",
            value: log.outages,
        },
        Row {
            name: "sse_log_errors_total",
            kind: "counter",
            help: "Commands to the event log that failed (reads and publishes).",
            value: log.errors,
        },
    ]
}

/// The idempotency keys.
fn key_rows(keys: &KeyStats) -> [Row; 3] {
    [
        Row {
            name: "sse_idempotency_keys",
            kind: "gauge",
            help: "Idempotency keys remembered now (with --redis: in Redis, as of this server's last keyed publish).",
            value: load(&keys.held),
        },
        Row {
            name: "sse_idempotency_replayed_total",
            kind: "counter",
            help: "Publishes answered with the first answer to their Idempotency-Key, nothing published.",
            value: load(&keys.replayed),
        },
        Row {
            name: "sse_idempotency_forgotten_total",
            kind: "counter",
            help: "Idempotency keys forgotten: past --idempotency-ttl, or the oldest over --idempotency-keys.",
            value: load(&keys.forgotten),
        },
    ]
}

/// The connections, and the rate limiter's clients.
fn connection_rows(app: &App) -> [Row; 5] {
    [
        Row {
            name: "sse_connections",
            kind: "gauge",
            help: "Connections open now under --max-connections (streams included).",
            value: app.connections.open() as u64,
        },
        Row {
            name: "sse_connections_total",
            kind: "counter",
            help: "Connections accepted under --max-connections.",
            value: load(&app.metrics.connections),
        },
        Row {
            name: "sse_idle_closed_total",
            kind: "counter",
            help: "Keep-alive connections closed after --idle-timeout without a request.",
            value: load(&app.metrics.idle_closed),
        },
        Row {
            name: "sse_accept_errors_total",
            kind: "counter",
            help: "Failed accepts (most often: out of file descriptors); each is followed by a pause.",
            value: load(&app.metrics.accept_errors),
        },
        Row {
            name: "sse_rate_limit_keys",
            kind: "gauge",
            help: "Clients (token subjects, IPv4 addresses, IPv6 prefixes) the publish rate limiter holds a bucket for.",
            value: app.limiter.as_ref().map_or(0, |l| l.keys() as u64),
        },
    ]
}

/// `sse_refused_total`, one line per reason.
fn write_refusals(out: &mut String, metrics: &Metrics) {
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
            metrics.refusals(reason)
        );
    }
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
