//! Retention: a quiet topic's subscribers leave and come back with their
//! `Last-Event-ID` while a busy topic goes on; whether they get every quiet
//! event they missed, once, with no reset.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::session::{Action, Session};
use super::step::{log_step, StepResult};
use super::topic::{one_topic, stream};
use super::{Bench, Harness, Workload};
use crate::procstat::ServerProcess;
use crate::server_proc::ServerSpec;
use crate::target::Target;
use crate::topics::TopicPlan;

/// Parameters of the retention workload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionParams {
    /// Subscribers of the busy topic.
    pub busy_subscribers: u32,
    /// Subscribers of the quiet topic (all of them leave and come back).
    pub quiet_subscribers: u32,
    /// Events per second to the busy topic.
    pub busy_rate: f64,
    /// Seconds between two events of the quiet topic.
    pub quiet_every_seconds: f64,
    /// Publishing before the quiet subscribers leave, s.
    pub before_seconds: f64,
    /// How long they stay away, s.
    pub away_seconds: f64,
    /// Publishing after they left until the end, s (more than
    /// `away_seconds`: they are back for a while).
    pub after_seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
}

/// The retention workload's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionResult {
    /// How long the quiet subscribers were away, s.
    pub away_seconds: f64,
    /// Busy events published while they were away.
    pub busy_events_while_away: u64,
    /// Quiet events published while they were away, for each of them.
    pub quiet_events_while_away: u64,
    /// The whole step; its groups are `busy` and `quiet`.
    pub step: StepResult,
}

/// The busy topic of the retention workload.
pub const RETENTION_BUSY: &str = "busy";
/// Its quiet topic.
pub const RETENTION_QUIET: &str = "quiet";

/// A busy topic at `p.busy_rate` events/s next to a quiet one with an
/// event every `p.quiet_every_seconds`; after `p.before_seconds` the
/// quiet topic's subscribers disconnect, and `p.away_seconds` later they
/// reconnect with their `Last-Event-ID`. Exact retention means they get
/// every quiet event they missed, once, with no reset.
///
/// # Errors
/// When the session cannot be opened or a worker stops answering.
pub async fn retention(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    p: RetentionParams,
) -> anyhow::Result<RetentionResult> {
    // Of every cycle of events, the first goes to the quiet topic and the
    // rest to the busy one: a quiet event every `quiet_every_seconds`,
    // the first one at once.
    let busy_weight = (p.busy_rate * p.quiet_every_seconds).round().max(1.0) as u32;
    let plan = TopicPlan {
        groups: vec![
            one_topic(RETENTION_BUSY, p.busy_subscribers, RETENTION_BUSY),
            one_topic(RETENTION_QUIET, p.quiet_subscribers, RETENTION_QUIET),
        ],
        streams: vec![
            stream(RETENTION_QUIET, 1, 1),
            stream(RETENTION_BUSY, 1, busy_weight),
        ],
    };
    let rate = p.busy_rate + 1.0 / p.quiet_every_seconds;
    let seconds = p.before_seconds + p.after_seconds;
    let count = ((rate * seconds).round() as u64).max(1);
    // Which measured events fall into the time away, by their schedule.
    let away_from = (p.before_seconds * rate).ceil() as u64;
    let away_to = ((p.before_seconds + p.away_seconds) * rate).floor() as u64;
    let quiet_while_away = (away_from..=away_to.min(count - 1))
        .filter(|&i| plan.topic_of(i) == RETENTION_QUIET)
        .count() as u64;
    let busy_while_away = (away_to.min(count - 1) + 1).saturating_sub(away_from) - quiet_while_away;
    let mut session = Session::open_topics(h, target, servers, plan).await?;
    let step = session
        .step_count(
            rate,
            count,
            p.payload_bytes,
            Duration::from_secs(10),
            Action::Rejoin {
                at: Duration::from_secs_f64(p.before_seconds),
                group: 1,
                away: Duration::from_secs_f64(p.away_seconds),
            },
        )
        .await;
    session.close().await;
    Ok(RetentionResult {
        away_seconds: p.away_seconds,
        busy_events_while_away: busy_while_away,
        quiet_events_while_away: quiet_while_away,
        step: step?,
    })
}

/// The retention workload, on a fresh server.
#[derive(Debug)]
pub struct Retention;

impl Workload for Retention {
    const NAME: &'static str = "retention";
    const SECTION: &'static str = "retention";
    const GROUP: Option<&'static str> = Some("topics");
    type Config = RetentionParams;
    type Output = RetentionResult;

    fn applies_to(spec: &ServerSpec) -> bool {
        spec.topics.is_some()
    }

    fn jobs(_: &RetentionParams) -> Vec<String> {
        vec!["retention".to_owned()]
    }

    async fn run(
        bench: Bench<'_>,
        p: &RetentionParams,
        _: usize,
    ) -> anyhow::Result<RetentionResult> {
        let (target, servers) = bench.server.restart().await?;
        retention(bench.harness, &target, &servers, *p).await
    }

    fn disturbance(output: &RetentionResult) -> f64 {
        super::worst([&output.step])
    }

    fn log(server: &str, output: &RetentionResult) {
        log_step(server, "retention", &output.step);
    }
}
