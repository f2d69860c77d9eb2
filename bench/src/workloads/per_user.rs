//! Per-user topics: one topic per subscriber; each event goes to the next user in turn.

use super::step::{log_step, StepResult};
use super::topic::{spread, SpreadParams, USER_TOPICS};
use super::{Bench, Workload};
use crate::server_proc::ServerSpec;

/// The per-user topics workload, on a fresh server.
#[derive(Debug)]
pub struct PerUser;

impl Workload for PerUser {
    const NAME: &'static str = "per-user";
    const SECTION: &'static str = "per_user";
    const GROUP: Option<&'static str> = Some("topics");
    type Config = SpreadParams;
    type Output = StepResult;

    fn applies_to(spec: &ServerSpec) -> bool {
        spec.topics.is_some()
    }

    fn jobs(_: &SpreadParams) -> Vec<String> {
        vec!["per-user topics".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &SpreadParams, _: usize) -> anyhow::Result<StepResult> {
        let (target, servers) = bench.server.restart().await?;
        spread(bench.harness, &target, &servers, USER_TOPICS, *p).await
    }

    fn disturbance(output: &StepResult) -> f64 {
        super::worst([output])
    }

    fn log(server: &str, output: &StepResult) {
        log_step(server, "per-user topics", output);
    }
}
