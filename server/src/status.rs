//! `GET /metrics` (Prometheus text) and `GET /healthz`, read from the whole
//! [`App`]: the hub's counters, the event log's health, the open
//! connections.
//!
//! The exposition is `prometheus-client`'s Prometheus text format 0.0.4.
//! The values live in the hub's, the log's and the connections' own
//! counters, so a scrape reads them once into a [`Scrape`], the registry's
//! one collector, rather than copying them into registered metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use warp::http::StatusCode;
use warp::Reply;

use crate::app::App;
use crate::event_log::LogHealth;
use crate::hub::Hub;
use crate::idempotency::KeyStats;
use crate::metrics::{Metrics, Refusal};

/// One metric: its name as scraped, Prometheus type, help text and value.
#[derive(Debug)]
struct Row {
    name: &'static str,
    kind: MetricType,
    help: &'static str,
    value: u64,
}

impl Row {
    /// Writes its `# HELP`, `# TYPE` and sample lines. A counter's name is
    /// given to the encoder without the `_total` it adds back.
    fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        match self.kind {
            MetricType::Counter => {
                let name = self.name.strip_suffix("_total").unwrap_or(self.name);
                let sample = encoder.encode_descriptor(name, self.help, None, self.kind)?;
                ConstCounter::new(self.value).encode(sample)
            }
            _ => {
                let sample = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
                ConstGauge::new(self.value).encode(sample)
            }
        }
    }
}

/// Everything `/metrics` shows, read from the [`App`] at one scrape.
#[derive(Debug)]
struct Scrape {
    rows: Vec<Row>,
    /// `sse_refused_total`'s value for each reason label.
    refusals: Vec<(&'static str, u64)>,
}

impl Scrape {
    fn of(app: &App) -> Self {
        let log = app.log.health();
        let rows = event_rows(app)
            .into_iter()
            .chain(history_rows(&app.hub))
            .chain(log_rows(&log))
            .chain(key_rows(&app.log.keys().stats))
            .chain(connection_rows(app))
            .collect();
        Self {
            rows,
            refusals: refusals(&app.metrics),
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        for row in &self.rows {
            row.encode(&mut encoder)?;
        }
        let mut refused = encoder.encode_descriptor(
            "sse_refused",
            "Connections and requests refused by a limit or as malformed HTTP.",
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in &self.refusals {
            ConstCounter::new(*value).encode(refused.encode_family(&[("reason", *reason)])?)?;
        }
        Ok(())
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Renders every metric in the Prometheus text format (version 0.0.4).
pub fn render(app: &App) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape::of(app)));
    let mut out = String::with_capacity(4096);
    if let Err(error) = prometheus_text::encode(&mut out, &registry) {
        tracing::error!(%error, "the metrics could not be written");
    }
    out
}

/// The events and subscribers: what came in, what went out.
fn event_rows(app: &App) -> [Row; 8] {
    let hub = &app.hub;
    [
        Row {
            name: "sse_subscribers",
            kind: MetricType::Gauge,
            help: "Subscribers connected now.",
            value: hub.subscribers() as u64,
        },
        Row {
            name: "sse_events_published_total",
            kind: MetricType::Counter,
            help: "Events added to the history (published here, or read from the shared log).",
            value: load(&hub.stats.published),
        },
        Row {
            name: "sse_events_delivered_total",
            kind: MetricType::Counter,
            help: "Events written to subscriber connections.",
            value: load(&hub.stats.delivered),
        },
        Row {
            name: "sse_subscribers_dropped_total",
            kind: MetricType::Counter,
            help: "Subscribers disconnected for falling behind.",
            value: load(&hub.stats.dropped),
        },
        Row {
            name: "sse_subscriptions_total",
            kind: MetricType::Counter,
            help: "Subscriber connections accepted.",
            value: load(&hub.stats.subscriptions),
        },
        Row {
            name: "sse_subscribers_refused_total",
            kind: MetricType::Counter,
            help: "Subscribers refused at the subscriber limit.",
            value: load(&hub.stats.refused),
        },
        Row {
            name: "sse_resets_total",
            kind: MetricType::Counter,
            help: "Reset notices sent for resumes that could not be exact.",
            value: load(&hub.stats.resets),
        },
        Row {
            name: "sse_publish_errors_total",
            kind: MetricType::Counter,
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
            kind: MetricType::Gauge,
            help: "Events held in the resume history.",
            value: hub.history_len() as u64,
        },
        Row {
            name: "sse_history_expired_total",
            kind: MetricType::Counter,
            help: "Events dropped from the resume history for their age (--history-ttl).",
            value: load(&hub.stats.expired),
        },
        Row {
            name: "sse_history_bytes",
            kind: MetricType::Gauge,
            help: "Bytes held in the resume history (frames and bookkeeping).",
            value: hub.history_bytes() as u64,
        },
        Row {
            name: "sse_topics",
            kind: MetricType::Gauge,
            help: "Live topics: topics that hold events or are followed.",
            value: hub.live_topics() as u64,
        },
        Row {
            name: "sse_topic_evictions_total",
            kind: MetricType::Counter,
            help: "Topics no one followed, evicted whole to make room for new ones (--max-live-topics).",
            value: hub.topic_evictions(),
        },
        Row {
            name: "sse_wakeups_total",
            kind: MetricType::Counter,
            help: "Subscribers woken by publishes (only those whose filter matches).",
            value: load(&hub.stats.wakeups),
        },
        Row {
            name: "sse_last_seq",
            kind: MetricType::Gauge,
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
            kind: MetricType::Gauge,
            help: "1 when the event log (memory, or Redis) can take events, else 0.",
            value: u64::from(log.up),
        },
        Row {
            name: "sse_log_outages_total",
            kind: MetricType::Counter,
            help: "Times the event log became unreachable.",
            value: log.outages,
        },
        Row {
            name: "sse_log_errors_total",
            kind: MetricType::Counter,
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
            kind: MetricType::Gauge,
            help: "Idempotency keys remembered now (with --redis: in Redis, as of this server's last keyed publish).",
            value: load(&keys.held),
        },
        Row {
            name: "sse_idempotency_replayed_total",
            kind: MetricType::Counter,
            help: "Publishes answered with the first answer to their Idempotency-Key, nothing published.",
            value: load(&keys.replayed),
        },
        Row {
            name: "sse_idempotency_forgotten_total",
            kind: MetricType::Counter,
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
            kind: MetricType::Gauge,
            help: "Connections open now under --max-connections (streams included).",
            value: app.connections.open() as u64,
        },
        Row {
            name: "sse_connections_total",
            kind: MetricType::Counter,
            help: "Connections accepted under --max-connections.",
            value: load(&app.metrics.connections),
        },
        Row {
            name: "sse_idle_closed_total",
            kind: MetricType::Counter,
            help: "Keep-alive connections closed after --idle-timeout without a request.",
            value: load(&app.metrics.idle_closed),
        },
        Row {
            name: "sse_accept_errors_total",
            kind: MetricType::Counter,
            help: "Failed accepts (most often: out of file descriptors); each is followed by a pause.",
            value: load(&app.metrics.accept_errors),
        },
        Row {
            name: "sse_rate_limit_keys",
            kind: MetricType::Gauge,
            help: "Clients (token subjects, IPv4 addresses, IPv6 prefixes) the publish rate limiter holds a bucket for.",
            value: app.limiter.as_ref().map_or(0, |l| l.keys() as u64),
        },
    ]
}

/// `sse_refused_total`'s value for each reason.
fn refusals(metrics: &Metrics) -> Vec<(&'static str, u64)> {
    Refusal::ALL
        .iter()
        .map(|&reason| (reason.label(), metrics.refusals(reason)))
        .collect()
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
