//! The slow consumer: some subscribers stop reading while the others'
//! events keep flowing; whether the others miss anything, and whether the
//! server cuts the stalled ones.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::session::Session;
use super::step::{log_step, StepResult};
use super::{Bench, Harness, Workload};
use crate::procstat::ServerProcess;
use crate::target::Target;

/// Parameters of the slow-consumer case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SlowParams {
    /// Subscribers.
    pub subscribers: u32,
    /// Of them, how many stop reading.
    pub stalled: u32,
    /// Events per second.
    pub rate: f64,
    /// Publishing time, s.
    pub seconds: f64,
    /// Payload size, bytes (large, so that stalled sockets fill up).
    pub payload_bytes: usize,
}

/// The slow-consumer case's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlowResult {
    /// Subscribers that stopped reading.
    pub stalled: u32,
    /// Of them, how many the server had disconnected by the end.
    pub stalled_closed: u32,
    /// The other subscribers' step, with the server's memory.
    pub step: StepResult,
}

/// Stalls `p.stalled` subscribers, then publishes and measures the others.
///
/// # Errors
/// When the session cannot be opened or a worker stops answering.
pub async fn slow_consumer(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    p: SlowParams,
) -> anyhow::Result<SlowResult> {
    let mut session = Session::open(h, target, servers, p.subscribers).await?;
    let result = async {
        session.stall(p.stalled).await?;
        let step = session
            .step(p.rate, p.seconds, p.payload_bytes, Duration::from_secs(10))
            .await?;
        let last = session.next_seq - 1;
        let report = session.fleet.report(last, last).await?;
        Ok(SlowResult {
            stalled: p.stalled,
            stalled_closed: report.totals.stalled_closed,
            step,
        })
    }
    .await;
    session.close().await;
    result
}

/// The slow-consumer case, on a fresh server.
#[derive(Debug)]
pub struct Slow;

impl Workload for Slow {
    const NAME: &'static str = "slow";
    const SECTION: &'static str = "slow";
    const REQUIRED: bool = true;
    type Config = SlowParams;
    type Output = SlowResult;

    fn jobs(_: &SlowParams) -> Vec<String> {
        vec!["slow consumer".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &SlowParams, _: usize) -> anyhow::Result<SlowResult> {
        let (target, servers) = bench.server.restart().await?;
        slow_consumer(bench.harness, &target, &servers, *p).await
    }

    fn disturbance(output: &SlowResult) -> f64 {
        super::worst([&output.step])
    }

    fn log(server: &str, output: &SlowResult) {
        log_step(server, "slow consumer", &output.step);
    }
}
