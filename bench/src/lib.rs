//! A load generator for Server-Sent Events servers, and the harness that
//! compares servers with it.
//!
//! The `bench` binary opens many subscribers (split across worker processes
//! that it spawns from itself, each with its own loopback source address),
//! publishes at a fixed open-loop rate with a send timestamp and a sequence
//! number in every payload, and measures what subscribers see: latency of
//! every delivery, time until the last subscriber has each event, loss,
//! duplicates and reordering, the saturation point, reconnect storms with
//! `Last-Event-ID`, slow consumers, topics (subscribers that follow
//! only some of the events), and publishing alone (what the event log costs
//! in memory, on disk or in Redis). It reads the server's CPU time and
//! memory from `/proc`.
//!
//! Modules, each named for what it holds:
//! - [`payload`]: the benchmark payload (sequence, send time, padding) and
//!   how it is found in an event's `data`.
//! - [`target`]: where to subscribe and how to publish on one target (a
//!   server, or several sharing a Redis), and how it names topics.
//! - [`topics`]: the layout of a topic workload: who follows which topics,
//!   where each event goes, and so what each subscriber must receive.
//! - [`http`]: the subscriber side of HTTP/1.1: request, response head,
//!   chunked body decoding.
//! - [`tracker`]: per-subscriber sequence bookkeeping and a worker's
//!   histograms.
//! - [`protocol`]: the commands and replies between the coordinator and its
//!   worker processes.
//! - [`worker`]: a worker process: its subscribers and command loop.
//! - [`fleet`]: the coordinator's handle on its workers.
//! - [`publisher`]: the open-loop publisher.
//! - [`publish_load`]: publishing alone, N publishers in a closed loop with
//!   no subscribers: throughput and latency of the event log.
//! - [`procstat`]: CPU time and resident memory of a process tree.
//! - [`server_proc`]: starting and stopping the servers under test (and the
//!   Redis or the backend of a target that has one).
//! - [`workloads`]: fan-out, saturation, reconnect storm, slow consumer,
//!   the topic workloads (bystanders, per-user topics, rooms, retention,
//!   prefix patterns) and the smoke runs.
//! - [`suite`]: the configuration file and a run of every workload against
//!   every server.
//! - [`report`]: `BENCHMARKS.md` from its template (minijinja) over the
//!   results, and the latency plot.
//! - [`baseline`]: the comparison server written the usual warp way.
//! - [`grip`]: the GRIP backend behind the Pushpin peer.
//! - [`cli`]: the command line.

pub mod baseline;
pub mod cli;
pub mod fleet;
pub mod grip;
pub mod http;
pub mod payload;
pub mod procstat;
pub mod protocol;
pub mod publish_load;
pub mod publisher;
pub mod report;
pub mod server_proc;
pub mod suite;
pub mod target;
pub mod topics;
pub mod tracker;
pub mod worker;
pub mod workloads;

/// Raises this process's soft open-files limit to its hard limit and
/// returns the new soft limit.
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Nanoseconds since the Unix epoch on the wall clock, which every process
/// on the machine shares: the unit of send and receive timestamps.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The address a helper server binary listens on: `--addr IP:PORT` from
/// its arguments, or `default`; `program` names it in the usage line.
///
/// # Errors
/// For an unknown argument, a missing value or an address that does not
/// parse.
pub fn listen_addr(default: &str, program: &str) -> anyhow::Result<std::net::SocketAddr> {
    let mut args = std::env::args().skip(1);
    let mut addr = default.parse()?;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                addr = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--addr needs a value"))?
                    .parse()?;
            }
            other => anyhow::bail!("unknown argument {other:?}; usage: {program} [--addr IP:PORT]"),
        }
    }
    Ok(addr)
}
