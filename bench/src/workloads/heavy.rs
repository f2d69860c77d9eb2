//! The heavy fan-out: one fan-out with many subscribers at a high rate
//! (`[heavy]`), for the servers that ask for it.

use super::fanout::{fanout, FanoutParams, FanoutResult};
use super::step::log_step;
use super::{Bench, Workload};

/// The heavy fan-out, on a fresh server.
#[derive(Debug)]
pub struct Heavy;

impl Workload for Heavy {
    const NAME: &'static str = "heavy";
    const SECTION: &'static str = "heavy";
    const OPT_IN: bool = true;
    // Kept out of the run's summaries, as it always was: what a run
    // measured, and the report's highest disturbance, leave it out.
    const SUMMARISED: bool = false;
    type Config = FanoutParams;
    type Output = FanoutResult;

    fn jobs(_: &FanoutParams) -> Vec<String> {
        vec!["heavy fan-out".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &FanoutParams, _: usize) -> anyhow::Result<FanoutResult> {
        let (target, servers) = bench.server.restart().await?;
        fanout(bench.harness, &target, &servers, *p).await
    }

    fn disturbance(output: &FanoutResult) -> f64 {
        super::worst([&output.step])
    }

    fn log(server: &str, output: &FanoutResult) {
        log_step(server, "heavy fan-out", &output.step);
    }
}
