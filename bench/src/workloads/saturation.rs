//! The saturation search: the rate is stepped up on one set of subscribers
//! until a step loses events or its p99 exceeds the limit, then bisected
//! between the last passing and the first failing rate.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::session::Session;
use super::step::StepResult;
use super::{Bench, Harness, Restart, Workload};

/// Parameters of a saturation search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationParams {
    /// Subscribers.
    pub subscribers: u32,
    /// Event rates to try in order, each higher than the last.
    pub rates: Vec<f64>,
    /// Publishing time per step, s.
    pub seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
    /// A step passes when p99 latency stays under this, ms.
    pub p99_limit_ms: f64,
    /// After the first failing rate, this many bisection probes between it
    /// and the last passing one.
    pub refine: u32,
}

/// The saturation search's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SaturationResult {
    /// Every step tried, in order, with whether it passed.
    pub steps: Vec<(bool, StepResult)>,
    /// The passing step with the most deliveries per second.
    pub best: Option<StepResult>,
}

/// Judges one saturation step (clean and p99 under the limit), logs it as
/// `what` and records it; returns whether it passed.
fn judge(
    result: &mut SaturationResult,
    rate: f64,
    step: StepResult,
    p99_limit_ms: f64,
    what: &str,
) -> bool {
    let ok = step.is_clean() && step.latency.p99_ms < p99_limit_ms;
    tracing::info!(
        rate,
        ok,
        p99_ms = step.latency.p99_ms,
        lost = step.lost,
        "saturation {what}"
    );
    result.steps.push((ok, step));
    ok
}

/// Steps the rate up until a step loses events or its p99 exceeds the
/// limit, then bisects; each probe after a failure runs on a restarted
/// server.
///
/// # Errors
/// When the server cannot restart or a session cannot open.
pub async fn saturation(
    h: &mut Harness,
    server: &mut dyn Restart,
    p: &SaturationParams,
) -> anyhow::Result<SaturationResult> {
    let mut result = SaturationResult::default();
    let (target, servers) = server.restart().await?;
    let mut session = Session::open(h, &target, &servers, p.subscribers).await?;
    let mut last_pass: Option<f64> = None;
    let mut first_fail: Option<f64> = None;
    for &rate in &p.rates {
        let step = session
            .step(rate, p.seconds, p.payload_bytes, Duration::from_secs(5))
            .await?;
        if judge(&mut result, rate, step, p.p99_limit_ms, "step") {
            last_pass = Some(rate);
        } else {
            first_fail = Some(rate);
            break;
        }
    }
    session.close().await;
    if let (Some(mut lo), Some(mut hi)) = (last_pass, first_fail) {
        for _ in 0..p.refine {
            let rate = ((lo + hi) / 2.0).round();
            if rate <= lo || rate >= hi {
                break;
            }
            let (target, servers) = server.restart().await?;
            let mut session = Session::open(h, &target, &servers, p.subscribers).await?;
            let step = session
                .step(rate, p.seconds, p.payload_bytes, Duration::from_secs(5))
                .await;
            session.close().await;
            let step = step?;
            if judge(&mut result, rate, step, p.p99_limit_ms, "probe") {
                lo = rate;
            } else {
                hi = rate;
            }
        }
    }
    result.best = result
        .steps
        .iter()
        .filter(|(ok, _)| *ok)
        .map(|(_, s)| s)
        .max_by(|a, b| a.deliveries_per_s.total_cmp(&b.deliveries_per_s))
        .cloned();
    Ok(result)
}

/// The saturation search, from a fresh server.
#[derive(Debug)]
pub struct Saturation;

impl Workload for Saturation {
    const NAME: &'static str = "saturation";
    const SECTION: &'static str = "saturation";
    const REQUIRED: bool = true;
    type Config = SaturationParams;
    type Output = SaturationResult;

    fn jobs(_: &SaturationParams) -> Vec<String> {
        vec!["saturation".to_owned()]
    }

    async fn run(
        bench: Bench<'_>,
        p: &SaturationParams,
        _: usize,
    ) -> anyhow::Result<SaturationResult> {
        saturation(bench.harness, bench.server, p).await
    }

    fn disturbance(output: &SaturationResult) -> f64 {
        super::worst(output.steps.iter().map(|(_, s)| s))
    }
}
