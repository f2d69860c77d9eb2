//! What the coordinator and its worker processes say to each other: one JSON
//! command per line on the worker's stdin, one JSON reply per line on its
//! stdout (logs go to stderr).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::payload::DataFormat;
use crate::target::{Endpoint, TopicRoutes};
use crate::topics::TopicPlan;

/// What a worker's subscribers follow in a topic workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicSetup {
    /// The run's layout.
    pub plan: TopicPlan,
    /// How the server names topics in its URLs.
    pub routes: TopicRoutes,
    /// The run-wide index of the worker's first subscriber.
    pub first_index: u32,
}

/// A command to a worker. Every command gets exactly one [`Reply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Open `count` subscribers from `source` to `endpoints`, at most
    /// `concurrency` connection attempts at a time; reply
    /// [`Reply::Connected`] once every one has its response head or failed,
    /// or when `timeout_ms` has passed.
    Connect {
        /// Where to subscribe: subscriber `i` of the worker connects to
        /// `endpoints[i % len]`.
        endpoints: Vec<Endpoint>,
        /// Where the payload sits in an event's data.
        data_format: DataFormat,
        /// Publishing connections: seq `s` is published on lane `s % lanes`,
        /// and order is judged within a lane.
        lanes: u32,
        /// How many subscribers.
        count: u32,
        /// The local address to connect from.
        source: Ipv4Addr,
        /// Connection attempts in flight at most.
        concurrency: u32,
        /// How long to wait for all of them.
        timeout_ms: u64,
        /// In a topic workload: what each subscriber follows (its path) and
        /// so which events it must receive; every event otherwise.
        #[serde(default)]
        topics: Option<TopicSetup>,
    },
    /// Reply [`Reply::Status`].
    Status,
    /// Start a measurement step: clear the histograms and per-event data and
    /// count per-event completion from `from_seq` on.
    Measure {
        /// The first seq of the step.
        from_seq: u64,
    },
    /// Reply [`Reply::Report`] for the step's events `from_seq..=to_seq`.
    Report {
        /// The first seq of the step.
        from_seq: u64,
        /// The last seq of the step.
        to_seq: u64,
    },
    /// Every subscriber drops its connection and reconnects with the
    /// `Last-Event-ID` of the event `behind` events before the newest it
    /// has; it has caught up once it holds every event up to `caught_up_seq`.
    Reconnect {
        /// How many events behind to resume.
        behind: u32,
        /// The newest event published before the drop.
        caught_up_seq: u64,
    },
    /// Every subscriber of group `group` (of the topic plan) closes its
    /// connection, waits `after_ms`, and reconnects with the
    /// `Last-Event-ID` of the newest event it had, as `EventSource` does.
    Rejoin {
        /// The group, by index in the plan.
        group: usize,
        /// How long to stay away.
        after_ms: u64,
    },
    /// The first `count` subscribers of this worker stop reading (and keep
    /// their connections open).
    Stall {
        /// How many subscribers stall.
        count: u32,
    },
    /// Close everything and exit.
    Quit,
}

/// The answer to a [`Command`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    /// After [`Command::Connect`].
    Connected {
        /// Subscribers with a `200` response head.
        ok: u32,
        /// Subscribers that failed to connect or got another status.
        failed: u32,
        /// The first failure, for the log.
        first_error: Option<String>,
    },
    /// After [`Command::Status`].
    Status(Status),
    /// After [`Command::Report`].
    Report(WorkerReport),
    /// The command was done.
    Done,
    /// The command could not be done.
    Error(String),
}

/// A worker's live counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Subscribers with an open stream.
    pub open: u32,
    /// Subscribers that received a warm-up event on their current stream.
    pub warm: u32,
    /// Subscribers that are not stalled.
    pub active: u32,
    /// The lowest seq some active, open subscriber still waits for: every
    /// one of them holds every measured event below it.
    pub contiguous_min: u64,
    /// Measured events received since the step began (duplicates included).
    pub received: u64,
    /// Active subscribers that have caught up after the last reconnect.
    pub caught_up: u32,
    /// Connection failures and unexpected stream ends so far.
    pub errors: u64,
}

/// One worker's results for a step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Latency of every first arrival of a measured event in the step, in
    /// microseconds, as `(value, count)` histogram pairs.
    pub latency_us: Vec<(u64, u64)>,
    /// For each seq of the step, the largest latency (µs) among this
    /// worker's active subscribers that received it.
    pub worst_us: Vec<u64>,
    /// For each seq of the step, how many active subscribers received it.
    pub received_by: Vec<u32>,
    /// Subscribers counted (not stalled).
    pub active: u32,
    /// First arrivals in the step.
    pub delivered: u64,
    /// Events of the step some active subscriber never received (summed
    /// over subscribers).
    pub lost: u64,
    /// Events received more than once (beyond a resume's replay).
    pub duplicated: u64,
    /// Events received again as a resume's replay.
    pub replayed: u64,
    /// Events received after a later one.
    pub reordered: u64,
    /// `reset` events received (our server's notice of a gap).
    pub resets: u64,
    /// Connection failures (refused, timed out, non-200).
    pub connect_errors: u64,
    /// Streams the server ended or broke.
    pub disconnects: u64,
    /// Time from the reconnect command to caught up, µs, as histogram pairs.
    pub catch_up_us: Vec<(u64, u64)>,
    /// Active subscribers that caught up after the last reconnect.
    pub caught_up: u32,
    /// Stalled subscribers whose connection the server has closed.
    pub stalled_closed: u32,
    /// The first error seen, for the log.
    pub first_error: Option<String>,
    /// In a topic workload, the same per subscriber group of the plan.
    #[serde(default)]
    pub groups: Vec<GroupReport>,
}

/// One group's results for a step, on one worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupReport {
    /// Subscribers of the group on this worker (not stalled).
    pub active: u32,
    /// Deliveries the group's subscribers had to receive in the step.
    pub expected: u64,
    /// First arrivals in the step.
    pub delivered: u64,
    /// Expected deliveries that never happened.
    pub lost: u64,
    /// Events received more than once.
    pub duplicated: u64,
    /// Events received after a later one.
    pub reordered: u64,
    /// `reset` notices.
    pub resets: u64,
    /// Streams that ended or broke.
    pub disconnects: u64,
    /// Latency of every first arrival, µs, as histogram pairs.
    pub latency_us: Vec<(u64, u64)>,
}
