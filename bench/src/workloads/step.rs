//! What a measured step reports: latency percentiles, delivery counts, the
//! server's CPU time and memory, per subscriber group in a topic workload;
//! and the server's memory per idle subscriber.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::procstat;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Reads a µs histogram.
    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: hist.len(),
            p50_ms: ms(hist.value_at_quantile(0.5)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            p999_ms: ms(hist.value_at_quantile(0.999)),
            max_ms: ms(hist.max()),
        }
    }
}

/// The results of one measured step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepResult {
    /// Subscribers asked for.
    pub subscribers: u32,
    /// Subscribers counted (connected and not stalled).
    pub active: u32,
    /// Subscribers that could not connect.
    pub connect_failed: u32,
    /// Events published per second.
    pub rate: f64,
    /// Events published in the step.
    pub events: u64,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Publish-to-receive latency of every delivery.
    pub latency: Percentiles,
    /// Per event, the time until the last active subscriber had it.
    pub completion: Percentiles,
    /// First arrivals.
    pub delivered: u64,
    /// Events × active subscribers.
    pub expected: u64,
    /// Deliveries that never happened.
    pub lost: u64,
    /// Events received twice.
    pub duplicated: u64,
    /// Events received after a later one.
    pub reordered: u64,
    /// `reset` notices received.
    pub resets: u64,
    /// Streams the server ended or broke.
    pub disconnects: u64,
    /// Failed (re)connection attempts.
    pub connect_errors: u64,
    /// Publish requests that failed.
    pub publish_failed: u64,
    /// The first error anywhere, for the log.
    pub first_error: Option<String>,
    /// How late the publisher's schedule ran at worst, ms.
    pub publish_lateness_ms: f64,
    /// Whether every subscriber had every event before the drain timeout.
    pub drained: bool,
    /// Wall time of the step (publishing and draining), s.
    pub seconds: f64,
    /// Deliveries per second over the step.
    pub deliveries_per_s: f64,
    /// Server CPU time during the step, s (summed over the target's server
    /// side: for servers sharing a Redis, every server and Redis).
    pub server_cpu_s: Option<f64>,
    /// Of `server_cpu_s`, each server-side process's share: (name, s).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_cpu_by_process: Vec<(String, f64)>,
    /// Server CPU seconds per million deliveries.
    pub server_cpu_s_per_million: Option<f64>,
    /// Load generator CPU time during the step, as a share of one core.
    pub loadgen_cpu_share: f64,
    /// Each CPU's use during the step (network softirq work done by
    /// ksoftirqd is charged to no process, so this shows saturation that
    /// process CPU times miss).
    pub cpus: Vec<procstat::CpuUse>,
    /// CPU busy time not charged to the server or the load generator, as a
    /// share of one core: other processes, and softirq work charged to no
    /// process. High values mean the run was disturbed.
    pub other_cpu_share: f64,
    /// Server resident memory before the step, bytes.
    pub server_rss_before: Option<u64>,
    /// Server resident memory at its highest during the step, bytes.
    pub server_rss_peak: Option<u64>,
    /// In a topic workload, the same per subscriber group of the plan.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupResult>,
}

/// One subscriber group's part of a step in a topic workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupResult {
    /// The group's name in the plan.
    pub name: String,
    /// Its subscribers (connected and not stalled).
    pub active: u32,
    /// Deliveries its subscribers had to receive (their topics' events).
    pub expected: u64,
    /// First arrivals.
    pub delivered: u64,
    /// Expected deliveries that never happened.
    pub lost: u64,
    /// Events received twice.
    pub duplicated: u64,
    /// Events received after a later one.
    pub reordered: u64,
    /// `reset` notices received.
    pub resets: u64,
    /// Streams the server ended or broke.
    pub disconnects: u64,
    /// Publish-to-receive latency of its deliveries.
    pub latency: Percentiles,
}

impl GroupResult {
    /// Every expected delivery made once, in order, with no reset.
    pub fn is_exact(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.resets == 0
            && self.delivered == self.expected
    }
}

impl StepResult {
    /// Nothing lost, duplicated or reordered, every publish accepted.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.publish_failed == 0
            && self.connect_failed == 0
            && self.drained
            && self.delivered == self.expected
    }
}

/// Memory of the server before and after the subscribers connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleMemory {
    /// RSS with no subscribers, bytes.
    pub rss_before: u64,
    /// RSS with every subscriber connected and idle, bytes.
    pub rss_after: u64,
    /// The difference per connected subscriber, bytes.
    pub per_subscriber: f64,
}

/// Logs a finished step of `workload` on `server`.
pub fn log_step(server: &str, workload: &str, s: &StepResult) {
    tracing::info!(
        server,
        workload,
        subscribers = s.active,
        p50_ms = s.latency.p50_ms,
        p99_ms = s.latency.p99_ms,
        lost = s.lost,
        cpu_per_m = s.server_cpu_s_per_million.unwrap_or(f64::NAN),
        loadgen = s.loadgen_cpu_share,
        other_cpu = s.other_cpu_share,
        "done"
    );
}
