//! The fan-out sweep: for each subscriber count, N subscribers connect (the
//! server's memory per idle subscriber is read), then events are published
//! at a fixed rate and every delivery's latency is measured.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::session::Session;
use super::step::{log_step, IdleMemory, StepResult};
use super::{Bench, Harness, Workload};
use crate::procstat::ServerProcess;
use crate::target::Target;

/// The fan-out sweep (`[fanout]` in the suite's configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanoutConfig {
    /// Subscriber counts, one run each.
    pub subscribers: Vec<u32>,
    /// Events per second.
    pub rate: f64,
    /// Publishing time per run, s.
    pub seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
}

/// One fan-out measurement: N idle subscribers' memory, then latency at a
/// fixed rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FanoutResult {
    /// Server memory per idle subscriber.
    pub idle_memory: Option<IdleMemory>,
    /// Time to connect every subscriber, s.
    pub connect_seconds: f64,
    /// The measured step.
    pub step: StepResult,
}

/// Parameters of a fan-out run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FanoutParams {
    /// Subscribers.
    pub subscribers: u32,
    /// Events per second.
    pub rate: f64,
    /// Publishing time, s.
    pub seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
}

/// Connects `p.subscribers`, reads idle memory, publishes at `p.rate` for
/// `p.seconds`.
///
/// # Errors
/// When the session cannot be opened or a worker stops answering.
pub async fn fanout(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    p: FanoutParams,
) -> anyhow::Result<FanoutResult> {
    let mut session = Session::open(h, target, servers, p.subscribers).await?;
    let step = session
        .step(p.rate, p.seconds, p.payload_bytes, Duration::from_secs(10))
        .await;
    let result = step.map(|step| FanoutResult {
        idle_memory: session.idle_memory,
        connect_seconds: session.connect_time.as_secs_f64(),
        step,
    });
    session.close().await;
    result
}

/// The fan-out sweep, one job per subscriber count on a fresh server each.
#[derive(Debug)]
pub struct Fanout;

impl Workload for Fanout {
    const NAME: &'static str = "fanout";
    const SECTION: &'static str = "fanout";
    const REQUIRED: bool = true;
    const SWEEP: bool = true;
    type Config = FanoutConfig;
    type Output = FanoutResult;

    fn jobs(config: &FanoutConfig) -> Vec<String> {
        config
            .subscribers
            .iter()
            .map(|n| format!("fan-out {n}"))
            .collect()
    }

    async fn run(bench: Bench<'_>, c: &FanoutConfig, job: usize) -> anyhow::Result<FanoutResult> {
        let (target, servers) = bench.server.restart().await?;
        let p = FanoutParams {
            subscribers: c.subscribers[job],
            rate: c.rate,
            seconds: c.seconds,
            payload_bytes: c.payload_bytes,
        };
        fanout(bench.harness, &target, &servers, p).await
    }

    fn disturbance(output: &FanoutResult) -> f64 {
        super::worst([&output.step])
    }

    fn log(server: &str, output: &FanoutResult) {
        log_step(server, "fan-out", &output.step);
    }

    fn measured(output: &FanoutResult) -> String {
        format!("fanout {}", output.step.subscribers)
    }
}
