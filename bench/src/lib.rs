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
//! only some of the events), publishing alone and in batches (what the
//! event log costs in memory, on disk or in Redis), and subscribers over HTTPS (HTTP/1.1 and
//! HTTP/2). It reads the server's CPU time and memory from `/proc`.
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
//! - [`tls`]: a certificate for 127.0.0.1 (rcgen) and the client side
//!   that trusts it.
//! - [`inprocess`]: subscribers in the coordinator's own process over
//!   hyper and h2 (HTTP/1.1 plain or over TLS, HTTP/2), for the `https`
//!   workload.
//! - [`json`]: a JSON value that keeps its keys' order, in which the suite
//!   holds each workload's configuration and results.
//! - [`procstat`]: CPU time and resident memory of a process tree, CPU
//!   use, connections closed by the peer (`/proc`, with `procfs`).
//! - [`server_proc`]: starting and stopping the servers under test (and the
//!   Redis or the backend of a target that has one), from their specs and
//!   minijinja templates.
//! - [`workloads`]: the [`workloads::Workload`] trait and the registry of
//!   workloads, one file each: fan-out, saturation, reconnect storm, slow
//!   consumer, the topic workloads (bystanders, per-user topics, rooms,
//!   retention, prefix patterns), publishing alone and in batches (in a
//!   closed loop), the heavy fan-out, HTTPS; the session they measure on,
//!   and the smoke runs.
//! - [`suite`]: the configuration file, a run of every workload against
//!   every server, and its results.
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
pub mod inprocess;
pub mod json;
pub mod payload;
pub mod procstat;
pub mod protocol;
pub mod publisher;
pub mod report;
pub mod server_proc;
pub mod suite;
pub mod target;
pub mod tls;
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

/// A helper server's command line: the address it listens on (its default
/// is the binary's, set by [`listen_addr`]).
#[derive(Debug, clap::Parser)]
struct Listen {
    /// The address to listen on.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:0")]
    addr: std::net::SocketAddr,
}

/// The address a helper server binary listens on: `--addr IP:PORT` from
/// its arguments, or `default`; `program` names it in the usage line and
/// `about` says what it is in its `--help`. Exits with clap's usage message
/// for an unknown argument, a missing value or an address that does not
/// parse.
pub fn listen_addr(
    default: &'static str,
    program: &'static str,
    about: &'static str,
) -> std::net::SocketAddr {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Listen::command()
        .name(program)
        .about(about)
        .mut_arg("addr", |a| a.default_value(default))
        .get_matches();
    Listen::from_arg_matches(&matches).map_or_else(|e| e.exit(), |listen| listen.addr)
}
