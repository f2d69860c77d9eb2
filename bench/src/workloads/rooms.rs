//! Rooms: many small topics with a few subscribers each; each event goes to the next room in turn.

use super::step::{log_step, StepResult};
use super::topic::{spread, SpreadParams, ROOM_TOPICS};
use super::{Bench, Workload};
use crate::server_proc::ServerSpec;

/// The rooms workload, on a fresh server.
#[derive(Debug)]
pub struct Rooms;

impl Workload for Rooms {
    const NAME: &'static str = "rooms";
    const SECTION: &'static str = "rooms";
    const GROUP: Option<&'static str> = Some("topics");
    type Config = SpreadParams;
    type Output = StepResult;

    fn applies_to(spec: &ServerSpec) -> bool {
        spec.topics.is_some()
    }

    fn jobs(_: &SpreadParams) -> Vec<String> {
        vec!["rooms".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &SpreadParams, _: usize) -> anyhow::Result<StepResult> {
        let (target, servers) = bench.server.restart().await?;
        spread(bench.harness, &target, &servers, ROOM_TOPICS, *p).await
    }

    fn disturbance(output: &StepResult) -> f64 {
        super::worst([output])
    }

    fn log(server: &str, output: &StepResult) {
        log_step(server, "rooms", output);
    }
}
