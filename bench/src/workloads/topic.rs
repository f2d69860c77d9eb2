//! What the topic workloads share: plans of one topic or numbered sets of
//! topics, a topic step on a fresh session, and the many-topics case
//! ([`spread`]) that per-user topics and rooms are.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::session::Session;
use super::step::StepResult;
use super::Harness;
use crate::procstat::ServerProcess;
use crate::target::Target;
use crate::topics::TopicPlan;

/// The per-user topics' set.
pub const USER_TOPICS: &str = "user.";
/// The rooms' set, and the pattern's prefix.
pub const ROOM_TOPICS: &str = "room.";

/// The plan of `count` subscribers that all follow the one topic `topic`.
pub(super) fn one_topic(name: &str, count: u32, topic: &str) -> crate::topics::Group {
    crate::topics::Group {
        name: name.to_owned(),
        count,
        follow: crate::topics::Follow::Names(vec![topic.to_owned()]),
    }
}

/// A stream of `weight` events per cycle spread over `topics` topics
/// `prefix0`, `prefix1`, ... (the one topic `prefix` when `topics` is 1).
pub(super) fn stream(prefix: &str, topics: u32, weight: u32) -> crate::topics::Stream {
    crate::topics::Stream {
        prefix: prefix.to_owned(),
        topics,
        weight,
    }
}

/// Opens a topic session on `plan`, publishes `rate × seconds` events and
/// closes it.
pub(super) async fn topic_step(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    plan: TopicPlan,
    rate: f64,
    seconds: f64,
    payload_bytes: usize,
) -> anyhow::Result<StepResult> {
    let mut session = Session::open_topics(h, target, servers, plan).await?;
    let step = session
        .step(rate, seconds, payload_bytes, Duration::from_secs(10))
        .await;
    session.close().await;
    step
}

/// Parameters of a workload of many topics with a few subscribers each:
/// per-user topics (one subscriber each) or rooms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpreadParams {
    /// Topics.
    pub topics: u32,
    /// Subscribers of each topic.
    pub per_topic: u32,
    /// Events per second, spread evenly and in turn over the topics.
    pub rate: f64,
    /// Publishing time, s.
    pub seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
}

/// `p.topics` topics `prefix0`, `prefix1`, ... with `p.per_topic`
/// subscribers each; every event goes to the next topic in turn.
///
/// # Errors
/// When the session cannot be opened or a worker stops answering.
pub async fn spread(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    prefix: &str,
    p: SpreadParams,
) -> anyhow::Result<StepResult> {
    let plan = TopicPlan {
        groups: vec![crate::topics::Group {
            name: format!("{prefix}N"),
            count: p.topics * p.per_topic,
            follow: crate::topics::Follow::Spread {
                prefix: prefix.to_owned(),
                topics: p.topics,
            },
        }],
        streams: vec![stream(prefix, p.topics, 1)],
    };
    topic_step(h, target, servers, plan, p.rate, p.seconds, p.payload_bytes).await
}
