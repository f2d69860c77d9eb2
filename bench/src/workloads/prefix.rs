//! Prefix patterns: subscribers of every room, by exact names and then (on
//! a fresh server, when it has patterns) by `room.*`, beside per-user
//! traffic.

use serde::{Deserialize, Serialize};

use super::step::{log_step, StepResult};
use super::topic::{stream, topic_step, ROOM_TOPICS, USER_TOPICS};
use super::{Bench, Harness, Restart, Workload};
use crate::server_proc::ServerSpec;
use crate::topics::TopicPlan;

/// Parameters of the prefix-pattern workload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixParams {
    /// Per-user topics, one subscriber each.
    pub users: u32,
    /// Events per second over the per-user topics.
    pub user_rate: f64,
    /// Subscribers of every room.
    pub subscribers: u32,
    /// Room topics `room.0`, `room.1`, ...
    pub rooms: u32,
    /// Events per second over the rooms.
    pub room_rate: f64,
    /// Publishing time of each run, s.
    pub seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
}

/// The prefix-pattern workload's findings: the same events and
/// deliveries, with the room subscribers following the rooms by exact
/// names and by the pattern `room.*`, each on a fresh server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrefixResult {
    /// Room subscribers naming every room exactly.
    pub exact: Option<StepResult>,
    /// Room subscribers following `room.*`; `None` for a server without
    /// patterns.
    pub pattern: Option<StepResult>,
}

/// `p.users` subscribers of their own topics get `p.user_rate` events/s
/// between them, while `p.subscribers` subscribers follow every one of
/// `p.rooms` rooms, which get `p.room_rate` events/s between them: first
/// with the rooms named exactly, then (when the server has patterns) with
/// `room.*`, each on a fresh server.
///
/// # Errors
/// When the server cannot restart or a session cannot open.
pub async fn prefix(
    h: &mut Harness,
    server: &mut dyn Restart,
    p: PrefixParams,
) -> anyhow::Result<PrefixResult> {
    use crate::topics::{Follow, Group};
    // Room events are spread evenly among the user events: `ratio` user
    // events, then one room event.
    let ratio = (p.user_rate / p.room_rate).round().max(1.0) as u32;
    let rate = p.room_rate * f64::from(ratio + 1);
    let streams = vec![
        stream(USER_TOPICS, p.users, ratio),
        stream(ROOM_TOPICS, p.rooms, 1),
    ];
    let users = Group {
        name: "users".to_owned(),
        count: p.users,
        follow: Follow::Spread {
            prefix: USER_TOPICS.to_owned(),
            topics: p.users,
        },
    };
    let rooms = (0..p.rooms)
        .map(|k| crate::topics::topic_name(ROOM_TOPICS, p.rooms, k))
        .collect();
    let mut result = PrefixResult::default();
    let (target, servers) = server.restart().await?;
    let patterns = target.topics.as_ref().is_some_and(|t| t.patterns);
    let plan = TopicPlan {
        groups: vec![
            users.clone(),
            Group {
                name: "rooms by name".to_owned(),
                count: p.subscribers,
                follow: Follow::Names(rooms),
            },
        ],
        streams: streams.clone(),
    };
    result.exact =
        Some(topic_step(h, &target, &servers, plan, rate, p.seconds, p.payload_bytes).await?);
    if patterns {
        let (target, servers) = server.restart().await?;
        let plan = TopicPlan {
            groups: vec![
                users,
                Group {
                    name: format!("{ROOM_TOPICS}*"),
                    count: p.subscribers,
                    follow: Follow::Prefix(ROOM_TOPICS.to_owned()),
                },
            ],
            streams,
        };
        result.pattern =
            Some(topic_step(h, &target, &servers, plan, rate, p.seconds, p.payload_bytes).await?);
    }
    Ok(result)
}

/// The prefix-pattern workload, on a fresh server for each run.
#[derive(Debug)]
pub struct Prefix;

impl Workload for Prefix {
    const NAME: &'static str = "prefix";
    const SECTION: &'static str = "prefix";
    const GROUP: Option<&'static str> = Some("topics");
    type Config = PrefixParams;
    type Output = PrefixResult;

    fn applies_to(spec: &ServerSpec) -> bool {
        spec.topics.is_some()
    }

    fn jobs(_: &PrefixParams) -> Vec<String> {
        vec!["prefix patterns".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &PrefixParams, _: usize) -> anyhow::Result<PrefixResult> {
        prefix(bench.harness, bench.server, *p).await
    }

    fn disturbance(output: &PrefixResult) -> f64 {
        super::worst(output.exact.iter().chain(&output.pattern))
    }

    fn log(server: &str, output: &PrefixResult) {
        for s in output.exact.iter().chain(&output.pattern) {
            log_step(server, "prefix", s);
        }
    }
}
