//! The smoke runs: a few seconds of the workloads at small scale, for the
//! tests (and `bench run --workload smoke`); correctness, not timing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bystanders::BYSTANDER_TOPIC;
use super::retention::{retention, RetentionParams, RetentionResult};
use super::session::Session;
use super::step::StepResult;
use super::storm::{storm_on, StormParams, StormResult};
use super::topic::{one_topic, stream, topic_step, ROOM_TOPICS, USER_TOPICS};
use super::Harness;
use crate::procstat::ServerProcess;
use crate::target::Target;
use crate::topics::TopicPlan;

/// The smoke run's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SmokeResult {
    /// A small fan-out step.
    pub fanout: StepResult,
    /// A small reconnect storm, for servers that resume.
    pub storm: Option<StormResult>,
}

/// A few seconds of everything at small scale: `subscribers` subscribers
/// (spread over at least two workers when there are two or more), 60
/// events, and a reconnect storm five events behind when `resumes`.
///
/// # Errors
/// When the session cannot be opened or a worker stops answering.
pub async fn smoke(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    subscribers: u32,
    resumes: bool,
) -> anyhow::Result<SmokeResult> {
    let mut h = h.clone();
    h.fleet.per_worker = h.fleet.per_worker.min(subscribers.div_ceil(2).max(1));
    let mut session = Session::open(&mut h, target, servers, subscribers).await?;
    let result = async {
        let fanout = session
            .step(200.0, 0.3, 128, Duration::from_secs(10))
            .await?;
        let storm = if resumes {
            Some(
                storm_on(
                    &mut session,
                    StormParams {
                        subscribers,
                        rate: 200.0,
                        before_seconds: 0.1,
                        during_seconds: 0.2,
                        behind: 5,
                        payload_bytes: 128,
                    },
                )
                .await?,
            )
        } else {
            None
        };
        Ok(SmokeResult { fanout, storm })
    }
    .await;
    session.close().await;
    result
}

/// The topic smoke run's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopicSmokeResult {
    /// Per-user topics, rooms, a pattern (when the server has them) and
    /// subscribers of a topic nothing is published to, side by side.
    pub topics: StepResult,
    /// A quiet topic's subscribers leave and come back with their last
    /// event id while a busy topic goes on.
    pub retention: RetentionResult,
}

/// A few seconds of the topic workloads at small scale, for tests: `users`
/// per-user topics, rooms of three, `room.*` (when the server has
/// patterns) and idle bystanders in one step, then a short retention run.
///
/// # Errors
/// When a session cannot be opened or a worker stops answering.
pub async fn topic_smoke(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    users: u32,
) -> anyhow::Result<TopicSmokeResult> {
    use crate::topics::{Follow, Group};
    let mut h = h.clone();
    let patterns = target.topics.as_ref().is_some_and(|t| t.patterns);
    let mut groups = vec![
        Group {
            name: "users".to_owned(),
            count: users,
            follow: Follow::Spread {
                prefix: USER_TOPICS.to_owned(),
                topics: users,
            },
        },
        Group {
            name: "rooms".to_owned(),
            count: 12,
            follow: Follow::Spread {
                prefix: ROOM_TOPICS.to_owned(),
                topics: 4,
            },
        },
        Group {
            name: "rooms by name".to_owned(),
            count: 3,
            follow: Follow::Names(vec!["room.1".to_owned(), "room.2".to_owned()]),
        },
        one_topic("bystanders", 5, BYSTANDER_TOPIC),
    ];
    if patterns {
        groups.push(Group {
            name: "room.*".to_owned(),
            count: 3,
            follow: Follow::Prefix(ROOM_TOPICS.to_owned()),
        });
    }
    let plan = TopicPlan {
        groups,
        streams: vec![stream(USER_TOPICS, users, 3), stream(ROOM_TOPICS, 4, 2)],
    };
    h.fleet.per_worker = h
        .fleet
        .per_worker
        .min(plan.subscribers().div_ceil(2).max(1));
    let topics = topic_step(&mut h, target, servers, plan, 200.0, 0.5, 128).await?;
    let retention = retention(
        &mut h,
        target,
        servers,
        RetentionParams {
            busy_subscribers: 3,
            quiet_subscribers: 3,
            busy_rate: 200.0,
            quiet_every_seconds: 0.1,
            before_seconds: 0.25,
            away_seconds: 0.5,
            after_seconds: 0.75,
            payload_bytes: 128,
        },
    )
    .await?;
    Ok(TopicSmokeResult { topics, retention })
}
