//! Publishing alone: how many publishes a second a server acknowledges,
//! and how long each waits for its answer, with N concurrent publishers and
//! no subscribers. It is what the event log costs: in memory, on disk
//! (fsynced at every commit, or in batches) or in Redis.
//!
//! Each publisher is a keep-alive HTTP/1.1 connection in a closed loop: it
//! sends the next publish as soon as the previous one is answered (see
//! [`closed_loop`], which the batch workload shares); a 2xx acknowledges
//! the publish.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::closed_loop::{self, Acknowledgement, Measured, Request};
use super::step::Percentiles;
use super::{Bench, Workload};
use crate::procstat::ServerProcess;
use crate::target::Target;

/// The publish workload's parameters (`[publish]` in the suite's
/// configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishParams {
    /// Concurrent publishers, one step each.
    pub publishers: Vec<u32>,
    /// Measured time per step, s.
    pub seconds: f64,
    /// Message size, bytes.
    pub payload_bytes: usize,
}

/// One step: `publishers` publishing for `seconds`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishStep {
    /// Concurrent publishers.
    pub publishers: u32,
    /// Measured time, s.
    pub seconds: f64,
    /// Publishes answered 2xx in that time.
    pub ok: u64,
    /// Publishes that failed.
    pub failed: u64,
    /// `ok` per second.
    pub per_s: f64,
    /// Request-to-answer time of the acknowledged publishes.
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

/// Every step of the workload on one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishResult {
    /// In the order of the configuration.
    pub steps: Vec<PublishStep>,
}

/// The request every publisher sends: one event.
fn request(target: &Target, size: usize) -> Request {
    let text = "x".repeat(size.max(1));
    let format = target.publish_format;
    Request {
        body: format.body(target.topic.as_deref(), text),
        content_type: format.content_type(),
        acknowledgement: Acknowledgement::Status,
    }
}

impl From<Measured> for PublishStep {
    fn from(m: Measured) -> Self {
        Self {
            publishers: m.publishers,
            seconds: m.seconds,
            ok: m.ok,
            failed: m.failed,
            per_s: m.per_s(m.ok),
            latency: m.latency,
            server_cpu_s: m.server_cpu_s,
            server_cpu_by_process: m.server_cpu_by_process,
            loadgen_cpu_share: m.loadgen_cpu_share,
            other_cpu_share: m.other_cpu_share,
            first_error: m.first_error,
        }
    }
}

/// Runs every step of `params` on one server.
///
/// # Errors
/// Never at present; the signature leaves room for a failed start.
pub async fn publish(
    target: &Target,
    servers: &[ServerProcess],
    params: &PublishParams,
) -> anyhow::Result<PublishResult> {
    let target = Arc::new(target.clone());
    let mut steps = Vec::new();
    for &publishers in &params.publishers {
        let s = PublishStep::from(
            closed_loop::step(
                &target,
                servers,
                publishers,
                params.seconds,
                request(&target, params.payload_bytes),
            )
            .await,
        );
        tracing::info!(
            publishers,
            per_s = s.per_s as u64,
            p99_ms = s.latency.p99_ms,
            failed = s.failed,
            "publish step"
        );
        steps.push(s);
    }
    Ok(PublishResult { steps })
}

/// Publishing alone, on a fresh server, for the targets that ask for it.
#[derive(Debug)]
pub struct Publish;

impl Workload for Publish {
    const NAME: &'static str = "publish";
    const SECTION: &'static str = "publish";
    const OPT_IN: bool = true;
    type Config = PublishParams;
    type Output = PublishResult;

    fn jobs(_: &PublishParams) -> Vec<String> {
        vec!["publish".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &PublishParams, _: usize) -> anyhow::Result<PublishResult> {
        let (target, servers) = bench.server.restart().await?;
        publish(&target, &servers, p).await
    }

    fn disturbance(output: &PublishResult) -> f64 {
        output
            .steps
            .iter()
            .map(|s| s.other_cpu_share)
            .fold(0.0, f64::max)
    }
}
