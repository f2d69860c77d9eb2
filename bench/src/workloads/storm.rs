//! The reconnect storm: after a while of publishing, every subscriber drops
//! its connection and reconnects with `Last-Event-ID` some events back,
//! while publishing goes on; how long each takes to catch up, and what it
//! missed or got twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::session::{Action, Session};
use super::step::{Percentiles, StepResult};
use super::{Bench, Harness, Workload};
use crate::procstat::ServerProcess;
use crate::target::Target;

/// Parameters of a reconnect storm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StormParams {
    /// Subscribers.
    pub subscribers: u32,
    /// Events per second, throughout.
    pub rate: f64,
    /// Publishing before the storm, s.
    pub before_seconds: f64,
    /// Publishing during and after the storm, s.
    pub during_seconds: f64,
    /// Each subscriber resumes this many events behind its newest.
    pub behind: u32,
    /// Payload size, bytes.
    pub payload_bytes: usize,
}

/// The reconnect storm's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StormResult {
    /// Subscribers that reconnected.
    pub subscribers: u32,
    /// How far behind they resumed.
    pub behind: u32,
    /// Per subscriber, time from the drop until it held every event
    /// published before the drop.
    pub catch_up: Percentiles,
    /// Subscribers that caught up.
    pub caught_up: u32,
    /// Deliveries never made over the whole run (gaps).
    pub lost: u64,
    /// Events received twice (beyond the asked-for replay).
    pub duplicated: u64,
    /// Events received again as the asked-for replay.
    pub replayed: u64,
    /// Events received out of order.
    pub reordered: u64,
    /// `reset` notices (the server could not resume).
    pub resets: u64,
    /// Failed reconnection attempts.
    pub connect_errors: u64,
    /// Streams that broke.
    pub disconnects: u64,
    /// The step during and after the storm (latency includes replays).
    pub during: StepResult,
}

/// Publishes for a while, then every subscriber drops its connection and
/// reconnects with the id of the event `behind` events before its newest,
/// while publishing goes on.
///
/// # Errors
/// When the session cannot be opened or a worker stops answering.
pub async fn reconnect_storm(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    p: StormParams,
) -> anyhow::Result<StormResult> {
    let mut session = Session::open(h, target, servers, p.subscribers).await?;
    let result = storm_on(&mut session, p).await;
    session.close().await;
    result
}

pub(super) async fn storm_on(session: &mut Session, p: StormParams) -> anyhow::Result<StormResult> {
    let before = session
        .step(
            p.rate,
            p.before_seconds,
            p.payload_bytes,
            Duration::from_secs(10),
        )
        .await?;
    let caught_up_seq = session.next_seq - 1;
    let count = ((p.rate * p.during_seconds).round() as u64).max(1);
    let during = session
        .step_count(
            p.rate,
            count,
            p.payload_bytes,
            Duration::from_secs(10),
            Action::Storm {
                behind: p.behind,
                caught_up_seq,
            },
        )
        .await?;
    // Catch-up is judged over the whole run, from seq 0.
    let last = session.next_seq - 1;
    let whole = session.fleet.report(0, last).await?;
    let t = &whole.totals;
    Ok(StormResult {
        subscribers: before.active,
        behind: p.behind,
        catch_up: Percentiles::of(&whole.catch_up),
        caught_up: t.caught_up,
        lost: t.lost,
        duplicated: t.duplicated,
        replayed: t.replayed,
        reordered: t.reordered,
        resets: t.resets,
        connect_errors: t.connect_errors,
        disconnects: t.disconnects,
        during,
    })
}

/// The reconnect storm, on a fresh server.
#[derive(Debug)]
pub struct Storm;

impl Workload for Storm {
    const NAME: &'static str = "storm";
    const SECTION: &'static str = "storm";
    const REQUIRED: bool = true;
    type Config = StormParams;
    type Output = StormResult;

    fn jobs(_: &StormParams) -> Vec<String> {
        vec!["reconnect storm".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &StormParams, _: usize) -> anyhow::Result<StormResult> {
        let (target, servers) = bench.server.restart().await?;
        reconnect_storm(bench.harness, &target, &servers, *p).await
    }

    fn disturbance(output: &StormResult) -> f64 {
        super::worst([&output.during])
    }
}
