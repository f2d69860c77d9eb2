//! The coordinator's handle on its worker processes.
//!
//! Subscribers are split across workers of at most `per_worker` each (one
//! process holds at most its open-files limit, and one source address at
//! most ~28k ports towards one server port); each worker connects from its
//! own loopback source address, taken from an [`AddrPool`] that never hands
//! out an address twice in a run, so no run meets the `TIME_WAIT` sockets of
//! an earlier one.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::payload::DataFormat;
use crate::protocol::{Command, Reply, Status, TopicSetup, WorkerReport};
use crate::target::{Endpoint, TopicRoutes};
use crate::topics::{Receivers, TopicPlan};
use crate::tracker::{add_pairs, latency_histogram};

/// Loopback source addresses, 127.0.1.1 upwards, each handed out once.
#[derive(Debug, Clone)]
pub struct AddrPool {
    next: u32,
}

impl Default for AddrPool {
    fn default() -> Self {
        Self::new()
    }
}

impl AddrPool {
    /// A pool starting at 127.0.1.1 (127.0.0.1 is left to the publisher).
    pub fn new() -> Self {
        Self {
            next: u32::from(Ipv4Addr::new(127, 0, 1, 1)),
        }
    }

    /// The next unused address (skipping .0 and .255 host bytes).
    pub fn take(&mut self) -> Ipv4Addr {
        loop {
            let addr = Ipv4Addr::from(self.next);
            self.next += 1;
            let last = addr.octets()[3];
            if last != 0 && last != 255 {
                return addr;
            }
        }
    }
}

/// How subscribers are spread over processes.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The executable that runs `worker` (normally the `bench` binary).
    pub worker_exe: PathBuf,
    /// Subscribers per worker process at most.
    pub per_worker: u32,
    /// Connection attempts in flight per worker at most.
    pub connect_concurrency: u32,
    /// How long connecting all subscribers may take.
    pub connect_timeout: Duration,
}

struct WorkerProc {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    count: u32,
}

impl WorkerProc {
    async fn send(&mut self, command: &Command) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(command)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn receive(&mut self) -> anyhow::Result<Reply> {
        let line = self
            .stdout
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("worker exited"))?;
        Ok(serde_json::from_str(&line)?)
    }
}

/// The subscribers of one run, across worker processes.
pub struct Fleet {
    workers: Vec<WorkerProc>,
    /// Total subscribers asked for.
    pub subscribers: u32,
    /// In a topic workload, how many subscribers must receive each event.
    receivers: Option<Receivers>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("workers", &self.workers.len())
            .field("subscribers", &self.subscribers)
            .finish()
    }
}

/// What connecting the fleet achieved.
#[derive(Debug, Clone, Default)]
pub struct Connected {
    /// Subscribers with an open stream.
    pub ok: u32,
    /// Subscribers that could not connect.
    pub failed: u32,
    /// The first failure.
    pub first_error: Option<String>,
    /// How long connecting took.
    pub elapsed: Duration,
}

/// The merged results of one step across workers.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Latency of every first arrival, µs.
    pub latency: Histogram<u64>,
    /// For each event received by every active subscriber, the latency of
    /// its last arrival, µs.
    pub completion: Histogram<u64>,
    /// Events of the step not received by every active subscriber.
    pub incomplete_events: u64,
    /// Sums over workers.
    pub totals: WorkerReport,
    /// Time from reconnect to caught up, µs.
    pub catch_up: Histogram<u64>,
    /// In a topic workload, per group of the plan.
    pub groups: Vec<GroupTotals>,
}

/// One subscriber group's merged results for a step.
#[derive(Debug, Clone)]
pub struct GroupTotals {
    /// Sums over workers (latency pairs left empty).
    pub totals: crate::protocol::GroupReport,
    /// Latency of every first arrival, µs.
    pub latency: Histogram<u64>,
}

impl Fleet {
    /// Spawns enough workers for `subscribers`, each with its own source
    /// address from `addrs`.
    ///
    /// # Errors
    /// When a worker process cannot be started.
    pub fn spawn(
        config: &FleetConfig,
        subscribers: u32,
        addrs: &mut AddrPool,
    ) -> anyhow::Result<(Self, Vec<Ipv4Addr>)> {
        let per = config.per_worker.max(1);
        let n = subscribers.div_ceil(per).max(1);
        let mut workers = Vec::new();
        let mut sources = Vec::new();
        for i in 0..n {
            let count = (subscribers - i * per).min(per);
            let mut child = spawn_worker(&config.worker_exe)?;
            let stdin = child.stdin.take().context("worker stdin")?;
            let stdout = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
            workers.push(WorkerProc {
                child,
                stdin,
                stdout,
                count,
            });
            sources.push(addrs.take());
        }
        Ok((
            Self {
                workers,
                subscribers,
                receivers: None,
            },
            sources,
        ))
    }

    /// The worker processes' ids, for CPU accounting.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    async fn call_each(
        &mut self,
        command: impl Fn(usize, &WorkerProc) -> Command,
    ) -> anyhow::Result<Vec<Reply>> {
        for i in 0..self.workers.len() {
            let cmd = command(i, &self.workers[i]);
            self.workers[i].send(&cmd).await?;
        }
        let mut replies = Vec::with_capacity(self.workers.len());
        for worker in &mut self.workers {
            match worker.receive().await? {
                Reply::Error(e) => bail!("worker: {e}"),
                reply => replies.push(reply),
            }
        }
        Ok(replies)
    }

    async fn call_all(&mut self, command: &Command) -> anyhow::Result<Vec<Reply>> {
        self.call_each(|_, _| command.clone()).await
    }

    /// Connects every subscriber from the `sources` given by
    /// [`Fleet::spawn`], split evenly across `endpoints`: subscriber `i` of
    /// the fleet (counting across workers) connects to `endpoints[i % len]`.
    /// Events will be published over `lanes` connections. With `topics`,
    /// each subscriber follows the topics the plan gives it, on the
    /// server's topic routes (the endpoints' addresses, the routes' paths).
    ///
    /// # Errors
    /// When a worker fails or stops answering.
    pub async fn connect(
        &mut self,
        config: &FleetConfig,
        endpoints: &[Endpoint],
        data_format: DataFormat,
        lanes: u32,
        sources: &[Ipv4Addr],
        topics: Option<(&TopicPlan, &TopicRoutes)>,
    ) -> anyhow::Result<Connected> {
        self.receivers = topics.map(|(plan, _)| plan.receivers());
        let start = Instant::now();
        let timeout_ms = u64::try_from(config.connect_timeout.as_millis()).unwrap_or(u64::MAX);
        // Each worker's list starts at the endpoint of its first subscriber.
        let mut first = 0usize;
        let mut firsts = Vec::new();
        let lists: Vec<Vec<Endpoint>> = self
            .workers
            .iter()
            .map(|w| {
                let mut list = endpoints.to_vec();
                if !list.is_empty() {
                    let len = list.len();
                    list.rotate_left(first % len);
                }
                firsts.push(u32::try_from(first).unwrap_or(u32::MAX));
                first += usize::try_from(w.count).unwrap_or(0);
                list
            })
            .collect();
        let replies = self
            .call_each(|i, w| Command::Connect {
                endpoints: lists[i].clone(),
                data_format,
                lanes,
                count: w.count,
                source: sources[i],
                concurrency: config.connect_concurrency,
                timeout_ms,
                topics: topics.map(|(plan, routes)| TopicSetup {
                    plan: plan.clone(),
                    routes: routes.clone(),
                    first_index: firsts[i],
                }),
            })
            .await?;
        let mut connected = Connected::default();
        for reply in replies {
            if let Reply::Connected {
                ok,
                failed,
                first_error,
            } = reply
            {
                connected.ok += ok;
                connected.failed += failed;
                connected.first_error = connected.first_error.or(first_error);
            }
        }
        connected.elapsed = start.elapsed();
        Ok(connected)
    }

    /// The workers' counters, summed (`contiguous_min`: the minimum).
    ///
    /// # Errors
    /// When a worker fails or stops answering.
    pub async fn status(&mut self) -> anyhow::Result<Status> {
        let mut total = Status {
            contiguous_min: u64::MAX,
            ..Status::default()
        };
        for reply in self.call_all(&Command::Status).await? {
            if let Reply::Status(s) = reply {
                total.open += s.open;
                total.warm += s.warm;
                total.active += s.active;
                total.contiguous_min = total.contiguous_min.min(s.contiguous_min);
                total.received += s.received;
                total.caught_up += s.caught_up;
                total.errors += s.errors;
            }
        }
        Ok(total)
    }

    /// Polls [`Fleet::status`] every 20 ms until `done` holds or `timeout`
    /// passes; returns the last status and whether `done` held.
    ///
    /// # Errors
    /// When a worker fails or stops answering.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Status) -> bool,
    ) -> anyhow::Result<(Status, bool)> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status().await?;
            if done(&status) {
                return Ok((status, true));
            }
            if Instant::now() >= deadline {
                return Ok((status, false));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a measurement step at `from_seq`.
    ///
    /// # Errors
    /// When a worker fails or stops answering.
    pub async fn measure(&mut self, from_seq: u64) -> anyhow::Result<()> {
        self.call_all(&Command::Measure { from_seq }).await?;
        Ok(())
    }

    /// Tells every subscriber to reconnect `behind` events back.
    ///
    /// # Errors
    /// When a worker fails or stops answering.
    pub async fn reconnect(&mut self, behind: u32, caught_up_seq: u64) -> anyhow::Result<()> {
        self.call_all(&Command::Reconnect {
            behind,
            caught_up_seq,
        })
        .await?;
        Ok(())
    }

    /// Every subscriber of the plan's group `group` leaves, and comes back
    /// with its last event id after `away`.
    ///
    /// # Errors
    /// When a worker fails or stops answering.
    pub async fn rejoin(&mut self, group: usize, away: Duration) -> anyhow::Result<()> {
        self.call_all(&Command::Rejoin {
            group,
            after_ms: u64::try_from(away.as_millis()).unwrap_or(u64::MAX),
        })
        .await?;
        Ok(())
    }

    /// How many deliveries events `from..=to` must make: every event to
    /// every one of `active` subscribers, or in a topic workload, each
    /// event to its topic's subscribers.
    pub fn expected(&self, from: u64, to: u64, active: u32) -> u64 {
        match &self.receivers {
            Some(r) => (from..=to).map(|s| r.of(s)).sum(),
            None => (to + 1).saturating_sub(from) * u64::from(active),
        }
    }

    /// Makes `count` subscribers, spread over the workers, stop reading.
    ///
    /// # Errors
    /// When a worker fails or stops answering.
    pub async fn stall(&mut self, count: u32) -> anyhow::Result<()> {
        let total = self.subscribers.max(1);
        let mut left = count;
        let shares: Vec<u32> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let share = if i + 1 == self.workers.len() {
                    left
                } else {
                    (u64::from(count) * u64::from(w.count) / u64::from(total)) as u32
                };
                let share = share.min(left).min(w.count);
                left -= share;
                share
            })
            .collect();
        self.call_each(|i, _| Command::Stall { count: shares[i] })
            .await?;
        Ok(())
    }

    /// Collects and merges the step's results for events
    /// `from_seq..=to_seq`.
    ///
    /// # Errors
    /// When a worker fails or stops answering.
    pub async fn report(&mut self, from_seq: u64, to_seq: u64) -> anyhow::Result<StepReport> {
        let replies = self.call_all(&Command::Report { from_seq, to_seq }).await?;
        let mut latency = latency_histogram();
        let mut catch_up = latency_histogram();
        let mut totals = WorkerReport::default();
        let len = usize::try_from(to_seq.saturating_sub(from_seq) + 1).unwrap_or(0);
        let mut worst = vec![0u64; len];
        let mut received_by = vec![0u64; len];
        let mut groups: Vec<GroupTotals> = Vec::new();
        for reply in replies {
            let Reply::Report(r) = reply else { continue };
            for (g, report) in r.groups.iter().enumerate() {
                if groups.len() <= g {
                    groups.push(GroupTotals {
                        totals: crate::protocol::GroupReport::default(),
                        latency: latency_histogram(),
                    });
                }
                let into = &mut groups[g];
                add_pairs(&mut into.latency, &report.latency_us);
                let t = &mut into.totals;
                t.active += report.active;
                t.expected += report.expected;
                t.delivered += report.delivered;
                t.lost += report.lost;
                t.duplicated += report.duplicated;
                t.reordered += report.reordered;
                t.resets += report.resets;
                t.disconnects += report.disconnects;
            }
            add_pairs(&mut latency, &r.latency_us);
            add_pairs(&mut catch_up, &r.catch_up_us);
            for (i, (&w, &n)) in r.worst_us.iter().zip(&r.received_by).enumerate().take(len) {
                worst[i] = worst[i].max(w);
                received_by[i] += u64::from(n);
            }
            totals.active += r.active;
            totals.delivered += r.delivered;
            totals.lost += r.lost;
            totals.duplicated += r.duplicated;
            totals.replayed += r.replayed;
            totals.reordered += r.reordered;
            totals.resets += r.resets;
            totals.connect_errors += r.connect_errors;
            totals.disconnects += r.disconnects;
            totals.caught_up += r.caught_up;
            totals.stalled_closed += r.stalled_closed;
            totals.first_error = totals.first_error.or(r.first_error);
        }
        let mut completion = latency_histogram();
        let mut incomplete_events = 0;
        for (i, (w, n)) in worst.iter().zip(&received_by).enumerate() {
            let needed = match &self.receivers {
                Some(r) => r.of(from_seq + i as u64),
                None => u64::from(totals.active),
            };
            if needed == 0 {
                // An event no subscriber follows has no last subscriber.
                continue;
            }
            if *n >= needed && totals.active > 0 {
                crate::tracker::record_clamped(&mut completion, *w);
            } else {
                incomplete_events += 1;
            }
        }
        Ok(StepReport {
            latency,
            completion,
            incomplete_events,
            totals,
            catch_up,
            groups,
        })
    }

    /// Tells every worker to quit and waits for them (killing any that take
    /// longer than five seconds).
    pub async fn shutdown(mut self) {
        let _ = self.call_all(&Command::Quit).await;
        for worker in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(5), worker.child.wait())
                .await
                .is_err()
            {
                let _ = worker.child.kill().await;
            }
        }
    }
}

fn spawn_worker(exe: &Path) -> anyhow::Result<Child> {
    tokio::process::Command::new(exe)
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start worker {}", exe.display()))
}
