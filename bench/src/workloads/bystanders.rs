//! Bystanders: a busy topic's subscribers alone, then (on a fresh server)
//! with many idle subscribers of another topic connected too.

use serde::{Deserialize, Serialize};

use super::step::{log_step, StepResult};
use super::topic::{one_topic, stream, topic_step};
use super::{Bench, Harness, Restart, Workload};
use crate::server_proc::ServerSpec;
use crate::topics::TopicPlan;

/// Parameters of the bystanders workload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BystandersParams {
    /// Subscribers of the busy topic.
    pub subscribers: u32,
    /// Idle subscribers of another topic, added in the second run.
    pub bystanders: u32,
    /// Events per second, all to the busy topic.
    pub rate: f64,
    /// Publishing time of each run, s.
    pub seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
}

/// The bystanders workload's findings: the same publishing, with and
/// without idle subscribers of another topic, each on a fresh server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BystandersResult {
    /// Only the busy topic's subscribers.
    pub alone: StepResult,
    /// The same with the bystanders connected.
    pub with_bystanders: StepResult,
}

/// The topic the bystanders workload publishes to.
pub const BUSY_TOPIC: &str = "busy";
/// The one topic the bystanders follow (nothing is published to it).
pub const BYSTANDER_TOPIC: &str = "other";

/// `p.subscribers` follow the busy topic, which gets every event; then
/// the same on a fresh server with `p.bystanders` idle subscribers of one
/// other topic connected too.
///
/// # Errors
/// When the server cannot restart or a session cannot open.
pub async fn bystanders(
    h: &mut Harness,
    server: &mut dyn Restart,
    p: BystandersParams,
) -> anyhow::Result<BystandersResult> {
    let streams = vec![stream(BUSY_TOPIC, 1, 1)];
    let busy = one_topic(BUSY_TOPIC, p.subscribers, BUSY_TOPIC);
    let (target, servers) = server.restart().await?;
    let alone = TopicPlan {
        groups: vec![busy.clone()],
        streams: streams.clone(),
    };
    let alone = topic_step(
        h,
        &target,
        &servers,
        alone,
        p.rate,
        p.seconds,
        p.payload_bytes,
    )
    .await?;
    let (target, servers) = server.restart().await?;
    let with = TopicPlan {
        groups: vec![busy, one_topic("bystanders", p.bystanders, BYSTANDER_TOPIC)],
        streams,
    };
    let with_bystanders = topic_step(
        h,
        &target,
        &servers,
        with,
        p.rate,
        p.seconds,
        p.payload_bytes,
    )
    .await?;
    Ok(BystandersResult {
        alone,
        with_bystanders,
    })
}

/// The bystanders workload, on a fresh server for each run.
#[derive(Debug)]
pub struct Bystanders;

impl Workload for Bystanders {
    const NAME: &'static str = "bystanders";
    const SECTION: &'static str = "bystanders";
    const GROUP: Option<&'static str> = Some("topics");
    type Config = BystandersParams;
    type Output = BystandersResult;

    fn applies_to(spec: &ServerSpec) -> bool {
        spec.topics.is_some()
    }

    fn jobs(_: &BystandersParams) -> Vec<String> {
        vec!["bystanders".to_owned()]
    }

    async fn run(
        bench: Bench<'_>,
        p: &BystandersParams,
        _: usize,
    ) -> anyhow::Result<BystandersResult> {
        bystanders(bench.harness, bench.server, *p).await
    }

    fn disturbance(output: &BystandersResult) -> f64 {
        super::worst([&output.alone, &output.with_bystanders])
    }

    fn log(server: &str, output: &BystandersResult) {
        log_step(server, "bystanders: alone", &output.alone);
        log_step(server, "bystanders: with", &output.with_bystanders);
    }
}
