//! Publishing in batches: how many events a second a server acknowledges
//! when each request carries many (`POST` of `application/x-ndjson`, one
//! JSON publish body a line), with N concurrent publishers and no
//! subscribers; for the servers that take batches (a `batch` table in their
//! spec: ours, with its log in memory, on disk or in Redis).
//!
//! Each publisher is a keep-alive HTTP/1.1 connection in a closed loop, as
//! in publishing alone ([`super::closed_loop`]), sending the same batch of
//! B events again and again. Events are counted from the answers: a 2xx
//! must list B stored events, and one that lists another number (or is not
//! a batch answer) is a failed batch. Latency is per batch, request to
//! answer.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::closed_loop::{self, Acknowledgement, Measured, Request};
use super::step::Percentiles;
use super::{Bench, Workload};
use crate::procstat::ServerProcess;
use crate::server_proc::{BatchSpec, ServerSpec};
use crate::target::{PublishFormat, Target};

/// A batch's `Content-Type`.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// Events in a batch when the configuration does not say (our server's
/// default `--max-batch`).
pub const DEFAULT_EVENTS: u64 = 1000;

fn default_events() -> u64 {
    DEFAULT_EVENTS
}

/// The batch workload's parameters (`[batch]` in the suite's
/// configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchParams {
    /// Concurrent publishers, one step each.
    pub publishers: Vec<u32>,
    /// Events in every batch (B).
    #[serde(default = "default_events")]
    pub events: u64,
    /// Measured time per step, s.
    pub seconds: f64,
    /// Each event's message size, bytes.
    pub payload_bytes: usize,
}

impl BatchParams {
    /// Whether a server that takes at most `limits` takes these batches
    /// (published to `topic`, or to its default topic).
    ///
    /// # Errors
    /// A sentence saying which bound a batch is over.
    pub fn fits(&self, limits: &BatchSpec, topic: Option<&str>) -> Result<(), String> {
        if self.events == 0 {
            return Err("[batch] events must be at least 1".to_owned());
        }
        if self.events > limits.max_events {
            return Err(format!(
                "[batch] events = {} is over the server's {} events a batch (max_events)",
                self.events, limits.max_events
            ));
        }
        let bytes = body(topic, self.events, self.payload_bytes).len() as u64;
        if bytes > limits.max_bytes {
            return Err(format!(
                "a batch of {} events of {} bytes is {bytes} bytes, over the server's {} \
                 (max_bytes)",
                self.events, self.payload_bytes, limits.max_bytes
            ));
        }
        Ok(())
    }
}

/// One step: `publishers` posting batches for `seconds`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchStep {
    /// Concurrent publishers.
    pub publishers: u32,
    /// Events in every batch.
    pub events_per_batch: u64,
    /// Measured time, s.
    pub seconds: f64,
    /// Batches sent in that time and acknowledged whole.
    pub batches: u64,
    /// The events their answers listed.
    pub events: u64,
    /// Batches that failed: refused, unanswered, or answered with another
    /// count of events.
    pub failed: u64,
    /// `events` per second.
    pub events_per_s: f64,
    /// `batches` per second.
    pub batches_per_s: f64,
    /// Request-to-answer time of the acknowledged batches.
    pub latency: Percentiles,
    /// Server-side CPU time during the step, s (every process of the
    /// target together).
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s` by process (`server 1`, `redis`, ...).
    pub server_cpu_by_process: Vec<(String, f64)>,
    /// The load generator's CPU time over the step, as a share of a core.
    pub loadgen_cpu_share: f64,
    /// Of the CPUs' busy time, the share (of one core) used by neither the
    /// server nor the load generator: above the suite's limit, the step is
    /// run again.
    pub other_cpu_share: f64,
    /// The first failure.
    pub first_error: Option<String>,
}

impl BatchStep {
    fn of(m: Measured, events_per_batch: u64) -> Self {
        Self {
            publishers: m.publishers,
            events_per_batch,
            seconds: m.seconds,
            batches: m.ok,
            events: m.events,
            failed: m.failed,
            events_per_s: m.per_s(m.events),
            batches_per_s: m.per_s(m.ok),
            latency: m.latency,
            server_cpu_s: m.server_cpu_s,
            server_cpu_by_process: m.server_cpu_by_process,
            loadgen_cpu_share: m.loadgen_cpu_share,
            other_cpu_share: m.other_cpu_share,
            first_error: m.first_error,
        }
    }
}

/// Every step of the workload on one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchResult {
    /// In the order of the configuration.
    pub steps: Vec<BatchStep>,
}

/// The body of one batch: `events` lines, each the JSON publish body of a
/// `size`-byte message (to `topic`, or the server's default topic).
pub fn body(topic: Option<&str>, events: u64, size: usize) -> Bytes {
    let line = PublishFormat::Json.body(topic, "x".repeat(size.max(1)));
    let mut out = Vec::with_capacity((line.len() + 1) * usize::try_from(events).unwrap_or(0));
    for _ in 0..events {
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// Runs every step of `params` on one server.
///
/// # Errors
/// When the target does not publish JSON (a batch is JSON publish bodies)
/// or a batch would hold no event.
pub async fn batch(
    target: &Target,
    servers: &[ServerProcess],
    params: &BatchParams,
) -> anyhow::Result<BatchResult> {
    anyhow::ensure!(
        target.publish_format == PublishFormat::Json,
        "batches are JSON publish bodies, one a line; this target publishes {:?}",
        target.publish_format
    );
    anyhow::ensure!(params.events > 0, "a batch needs at least one event");
    let target = Arc::new(target.clone());
    let request = Request {
        body: body(target.topic.as_deref(), params.events, params.payload_bytes),
        content_type: CONTENT_TYPE,
        acknowledgement: Acknowledgement::Batch(params.events),
    };
    let mut steps = Vec::new();
    for &publishers in &params.publishers {
        let measured = closed_loop::step(
            &target,
            servers,
            publishers,
            params.seconds,
            request.clone(),
        )
        .await;
        let s = BatchStep::of(measured, params.events);
        tracing::info!(
            publishers,
            events_per_s = s.events_per_s as u64,
            batches_per_s = s.batches_per_s as u64,
            p99_ms = s.latency.p99_ms,
            failed = s.failed,
            "batch step"
        );
        steps.push(s);
    }
    Ok(BatchResult { steps })
}

/// Publishing in batches, on a fresh server, for the targets that take
/// batches and ask for it.
#[derive(Debug)]
pub struct Batch;

impl Workload for Batch {
    const NAME: &'static str = "batch";
    const SECTION: &'static str = "batch";
    const OPT_IN: bool = true;
    type Config = BatchParams;
    type Output = BatchResult;

    fn applies_to(spec: &ServerSpec) -> bool {
        spec.batch.is_some()
    }

    fn jobs(_: &BatchParams) -> Vec<String> {
        vec!["batch".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &BatchParams, _: usize) -> anyhow::Result<BatchResult> {
        let (target, servers) = bench.server.restart().await?;
        batch(&target, &servers, p).await
    }

    fn disturbance(output: &BatchResult) -> f64 {
        output
            .steps
            .iter()
            .map(|s| s.other_cpu_share)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_one_publish_body_a_line() {
        let text = body(None, 3, 4);
        assert_eq!(
            text,
            "{\"message\":\"xxxx\"}\n{\"message\":\"xxxx\"}\n{\"message\":\"xxxx\"}\n"
        );
        let to_topic = body(Some("t"), 1, 1);
        assert_eq!(to_topic, "{\"message\":\"x\",\"topic\":\"t\"}\n");
    }

    #[test]
    fn batches_over_the_servers_bounds_are_refused() {
        let limits = BatchSpec {
            max_events: 1000,
            max_bytes: 1 << 20,
        };
        let params = |events, payload_bytes| BatchParams {
            publishers: vec![1],
            events,
            seconds: 1.0,
            payload_bytes,
        };
        assert_eq!(params(1000, 100).fits(&limits, None), Ok(()));
        let many = params(1001, 100).fits(&limits, None).unwrap_err();
        assert!(many.contains("1001 is over the server's 1000"), "{many}");
        let large = params(1000, 1100).fits(&limits, None).unwrap_err();
        assert!(
            large.starts_with("a batch of 1000 events of 1100 bytes is 1115000 bytes"),
            "{large}"
        );
        assert!(params(0, 100).fits(&limits, None).is_err());
        // The default is the server's default --max-batch.
        let read: BatchParams =
            toml::from_str("publishers = [1]\nseconds = 1\npayload_bytes = 100").unwrap();
        assert_eq!(read.events, DEFAULT_EVENTS);
    }
}
