//! The workloads: fan-out, saturation, reconnect storm, slow consumer, and
//! the quick smoke run that the tests use.
//!
//! Every workload works on a [`Session`]: N subscribers connected through a
//! fleet of workers, warmed up (warm-up events are published until every
//! subscriber has received one, so no measured event races a subscription),
//! and a publisher. A *step* publishes measured events open-loop at a fixed
//! rate, waits (bounded) until every subscriber holds every event, and
//! collects latency, completion time, loss, duplicates, reordering and the
//! server's CPU time and memory.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::fleet::{AddrPool, Fleet, FleetConfig, StepReport};
use crate::procstat::{self, ServerProcess};
use crate::publisher::Publisher;
use crate::target::Target;
use crate::topics::TopicPlan;

/// What every workload shares: how to spread subscribers over processes and
/// where source addresses come from.
#[derive(Debug, Clone)]
pub struct Harness {
    /// Worker processes.
    pub fleet: FleetConfig,
    /// Source addresses, never reused within a run.
    pub addrs: AddrPool,
    /// Publishing connections.
    pub publish_connections: usize,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Reads a µs histogram.
    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: hist.len(),
            p50_ms: ms(hist.value_at_quantile(0.5)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            p999_ms: ms(hist.value_at_quantile(0.999)),
            max_ms: ms(hist.max()),
        }
    }
}

/// The results of one measured step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepResult {
    /// Subscribers asked for.
    pub subscribers: u32,
    /// Subscribers counted (connected and not stalled).
    pub active: u32,
    /// Subscribers that could not connect.
    pub connect_failed: u32,
    /// Events published per second.
    pub rate: f64,
    /// Events published in the step.
    pub events: u64,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Publish-to-receive latency of every delivery.
    pub latency: Percentiles,
    /// Per event, the time until the last active subscriber had it.
    pub completion: Percentiles,
    /// First arrivals.
    pub delivered: u64,
    /// Events × active subscribers.
    pub expected: u64,
    /// Deliveries that never happened.
    pub lost: u64,
    /// Events received twice.
    pub duplicated: u64,
    /// Events received after a later one.
    pub reordered: u64,
    /// `reset` notices received.
    pub resets: u64,
    /// Streams the server ended or broke.
    pub disconnects: u64,
    /// Failed (re)connection attempts.
    pub connect_errors: u64,
    /// Publish requests that failed.
    pub publish_failed: u64,
    /// The first error anywhere, for the log.
    pub first_error: Option<String>,
    /// How late the publisher's schedule ran at worst, ms.
    pub publish_lateness_ms: f64,
    /// Whether every subscriber had every event before the drain timeout.
    pub drained: bool,
    /// Wall time of the step (publishing and draining), s.
    pub seconds: f64,
    /// Deliveries per second over the step.
    pub deliveries_per_s: f64,
    /// Server CPU time during the step, s (summed over the target's server
    /// side: for servers sharing a Redis, every server and Redis).
    pub server_cpu_s: Option<f64>,
    /// Of `server_cpu_s`, each server-side process's share: (name, s).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_cpu_by_process: Vec<(String, f64)>,
    /// Server CPU seconds per million deliveries.
    pub server_cpu_s_per_million: Option<f64>,
    /// Load generator CPU time during the step, as a share of one core.
    pub loadgen_cpu_share: f64,
    /// Each CPU's use during the step (network softirq work done by
    /// ksoftirqd is charged to no process, so this shows saturation that
    /// process CPU times miss).
    pub cpus: Vec<procstat::CpuUse>,
    /// CPU busy time not charged to the server or the load generator, as a
    /// share of one core: other processes, and softirq work charged to no
    /// process. High values mean the run was disturbed.
    pub other_cpu_share: f64,
    /// Server resident memory before the step, bytes.
    pub server_rss_before: Option<u64>,
    /// Server resident memory at its highest during the step, bytes.
    pub server_rss_peak: Option<u64>,
    /// In a topic workload, the same per subscriber group of the plan.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupResult>,
}

/// One subscriber group's part of a step in a topic workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupResult {
    /// The group's name in the plan.
    pub name: String,
    /// Its subscribers (connected and not stalled).
    pub active: u32,
    /// Deliveries its subscribers had to receive (their topics' events).
    pub expected: u64,
    /// First arrivals.
    pub delivered: u64,
    /// Expected deliveries that never happened.
    pub lost: u64,
    /// Events received twice.
    pub duplicated: u64,
    /// Events received after a later one.
    pub reordered: u64,
    /// `reset` notices received.
    pub resets: u64,
    /// Streams the server ended or broke.
    pub disconnects: u64,
    /// Publish-to-receive latency of its deliveries.
    pub latency: Percentiles,
}

impl GroupResult {
    /// Every expected delivery made once, in order, with no reset.
    pub fn is_exact(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.resets == 0
            && self.delivered == self.expected
    }
}

/// What a step does besides publishing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    /// Nothing.
    None,
    /// Before publishing, every subscriber reconnects `behind` events
    /// back; it has caught up once it holds every event up to
    /// `caught_up_seq`.
    Storm { behind: u32, caught_up_seq: u64 },
    /// `at` after publishing starts, the plan's group `group` leaves and
    /// comes back after `away` with its last event id.
    Rejoin {
        at: Duration,
        group: usize,
        away: Duration,
    },
}

impl StepResult {
    /// Nothing lost, duplicated or reordered, every publish accepted.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.publish_failed == 0
            && self.connect_failed == 0
            && self.drained
            && self.delivered == self.expected
    }
}

/// Memory of the server before and after the subscribers connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleMemory {
    /// RSS with no subscribers, bytes.
    pub rss_before: u64,
    /// RSS with every subscriber connected and idle, bytes.
    pub rss_after: u64,
    /// The difference per connected subscriber, bytes.
    pub per_subscriber: f64,
}

/// N subscribers connected to one target, warmed up, and a publisher.
#[derive(Debug)]
pub struct Session {
    fleet: Fleet,
    publisher: Publisher,
    servers: Vec<ServerProcess>,
    /// In a topic workload, who follows what and where events go.
    plan: Option<TopicPlan>,
    next_seq: u64,
    warmups: u64,
    connect_failed: u32,
    /// Subscribers connected.
    pub connected: u32,
    /// How long connecting took.
    pub connect_time: Duration,
    /// Server memory per idle subscriber, when the server's processes are
    /// known.
    pub idle_memory: Option<IdleMemory>,
}

fn loadgen_pids(fleet: &Fleet) -> Vec<u32> {
    let mut pids = fleet.pids();
    pids.push(std::process::id());
    pids
}

impl Session {
    /// Connects `subscribers` to `target` (whose server side is `servers`,
    /// when known; empty otherwise), measures the server side's memory per
    /// idle subscriber and warms up.
    ///
    /// # Errors
    /// When workers cannot start or stop answering, or no subscriber
    /// connects.
    pub async fn open(
        h: &mut Harness,
        target: &Target,
        servers: &[ServerProcess],
        subscribers: u32,
    ) -> anyhow::Result<Self> {
        Self::open_with(h, target, servers, subscribers, None).await
    }

    /// As [`Session::open`] for a topic workload: the plan's subscribers,
    /// each following its topics on the target's topic routes.
    ///
    /// # Errors
    /// As [`Session::open`], and when the target has no topics.
    pub async fn open_topics(
        h: &mut Harness,
        target: &Target,
        servers: &[ServerProcess],
        plan: TopicPlan,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(target.topics.is_some(), "the target has no topics");
        Self::open_with(h, target, servers, plan.subscribers(), Some(plan)).await
    }

    async fn open_with(
        h: &mut Harness,
        target: &Target,
        servers: &[ServerProcess],
        subscribers: u32,
        plan: Option<TopicPlan>,
    ) -> anyhow::Result<Self> {
        let (mut fleet, sources) = Fleet::spawn(&h.fleet, subscribers, &mut h.addrs)?;
        let before = procstat::sample_servers(servers).map(|s| procstat::total(&s));
        let connected = fleet
            .connect(
                &h.fleet,
                &target.subscribe,
                target.data_format,
                u32::try_from(h.publish_connections.max(1)).unwrap_or(1),
                &sources,
                plan.as_ref().zip(target.topics.as_ref()),
            )
            .await?;
        if connected.ok == 0 {
            fleet.shutdown().await;
            anyhow::bail!(
                "no subscriber could connect: {}",
                connected.first_error.unwrap_or_default()
            );
        }
        if connected.failed > 0 {
            tracing::warn!(
                failed = connected.failed,
                error = connected.first_error.as_deref().unwrap_or(""),
                "some subscribers could not connect"
            );
        }
        // Let the server finish setting the connections up before reading
        // its memory.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let after = procstat::sample_servers(servers).map(|s| procstat::total(&s));
        let idle_memory = before.zip(after).map(|(b, a)| IdleMemory {
            rss_before: b.rss_bytes,
            rss_after: a.rss_bytes,
            per_subscriber: (a.rss_bytes as f64 - b.rss_bytes as f64) / f64::from(connected.ok),
        });
        let publisher = Publisher::new(target, h.publish_connections);
        let mut session = Self {
            fleet,
            publisher,
            servers: servers.to_vec(),
            plan,
            next_seq: 0,
            warmups: 0,
            connect_failed: connected.failed,
            connected: connected.ok,
            connect_time: connected.elapsed,
            idle_memory,
        };
        session.warm_up().await?;
        Ok(session)
    }

    /// Publishes warm-up events until every open subscriber has one (at
    /// most 20 s).
    async fn warm_up(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        // In a topic workload, one warm-up event to every topic that has
        // subscribers (the patterns' through one matching topic).
        let topics = self.plan.as_ref().map(TopicPlan::warmup_topics);
        // Many topics take longer to publish to and to reach.
        let settle = Duration::from_millis(200)
            + Duration::from_micros(100) * topics.as_ref().map_or(0, |t| t.len() as u32);
        loop {
            match &topics {
                Some(topics) => {
                    for (lane, topic) in topics.iter().enumerate() {
                        self.publisher.publish_to(
                            lane as u64,
                            Some(topic),
                            crate::payload::warmup(self.warmups),
                        );
                    }
                }
                None => self.publisher.publish(crate::payload::warmup(self.warmups)),
            }
            self.warmups += 1;
            self.publisher.wait_idle(Duration::from_secs(5)).await;
            let (status, done) = self
                .fleet
                .wait_for(settle, |s| s.warm >= s.open && s.open > 0)
                .await?;
            if done {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(warm = status.warm, open = status.open, "warm-up incomplete");
                return Ok(());
            }
        }
    }

    /// Makes `count` subscribers stop reading.
    ///
    /// # Errors
    /// When a worker stops answering.
    pub async fn stall(&mut self, count: u32) -> anyhow::Result<()> {
        self.fleet.stall(count).await?;
        // Stalled subscribers stop counting once they have seen the command.
        let active = self.fleet.subscribers.saturating_sub(count);
        self.fleet
            .wait_for(Duration::from_secs(5), |s| s.active <= active)
            .await?;
        Ok(())
    }

    /// Publishes `rate × seconds` measured events, waits at most
    /// `drain_timeout` for them to reach every subscriber, and reports.
    ///
    /// # Errors
    /// When a worker stops answering.
    pub async fn step(
        &mut self,
        rate: f64,
        seconds: f64,
        size: usize,
        drain_timeout: Duration,
    ) -> anyhow::Result<StepResult> {
        let count = ((rate * seconds).round() as u64).max(1);
        self.step_count(rate, count, size, drain_timeout, Action::None)
            .await
    }

    /// As [`Session::step`] with `count` events, doing `action` too (see
    /// [`Action`]): a storm once the step's counters are reset, just before
    /// publishing starts; a rejoin while publishing.
    async fn step_count(
        &mut self,
        rate: f64,
        count: u64,
        size: usize,
        drain_timeout: Duration,
        action: Action,
    ) -> anyhow::Result<StepResult> {
        let from = self.next_seq;
        let to = from + count - 1;
        self.next_seq = to + 1;
        self.fleet.measure(from).await?;
        if let Action::Storm {
            behind,
            caught_up_seq,
        } = action
        {
            self.fleet.reconnect(behind, caught_up_seq).await?;
        }
        let publish_before = self.publisher.counts();
        let server_before = procstat::sample_servers(&self.servers);
        let lg_pids = loadgen_pids(&self.fleet);
        let lg_before = procstat::sample_pids(&lg_pids);
        let cpus_before = procstat::cpu_ticks();
        let start = Instant::now();

        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = (!self.servers.is_empty()).then(|| {
            let (peak, stop) = (peak.clone(), stop.clone());
            let servers = self.servers.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(s) = procstat::sample_servers(&servers) {
                        peak.fetch_max(procstat::total(&s).rss_bytes, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });

        let answer_timeout = drain_timeout.max(Duration::from_secs(5));
        let publishing =
            self.publisher
                .open_loop(from, count, rate, size, answer_timeout, self.plan.as_ref());
        let run = match action {
            Action::Rejoin { at, group, away } => {
                let fleet = &mut self.fleet;
                let (run, rejoined) = tokio::join!(publishing, async {
                    tokio::time::sleep(at).await;
                    fleet.rejoin(group, away).await
                });
                rejoined?;
                run
            }
            _ => publishing.await,
        };
        let (_, drained) = self
            .fleet
            .wait_for(drain_timeout, |s| s.contiguous_min > to)
            .await?;
        let elapsed = start.elapsed();
        let server_after = procstat::sample_servers(&self.servers);
        let lg_after = procstat::sample_pids(&lg_pids);
        let cpus = procstat::cpu_use(&cpus_before, &procstat::cpu_ticks());
        stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = sampler {
            let _ = sampler.await;
        }
        let report = self.fleet.report(from, to).await?;
        let publish_after = self.publisher.counts();
        let by_process: Option<Vec<(String, f64)>> = server_before
            .as_deref()
            .zip(server_after.as_deref())
            .map(|(b, a)| {
                self.servers
                    .iter()
                    .zip(b.iter().zip(a))
                    .map(|(p, (b, a))| (p.name.clone(), a.cpu_seconds - b.cpu_seconds))
                    .collect()
            });
        let server_cpu_s = by_process
            .as_ref()
            .map(|v| v.iter().map(|(_, c)| c).sum::<f64>());
        Ok(self.result(StepInputs {
            rate,
            count,
            size,
            report: &report,
            drained,
            elapsed,
            server_cpu_s,
            server_cpu_by_process: by_process.unwrap_or_default(),
            loadgen_cpu_s: lg_after.cpu_seconds - lg_before.cpu_seconds,
            cpus,
            rss_before: server_before.map(|s| procstat::total(&s).rss_bytes),
            rss_peak: (!self.servers.is_empty()).then(|| peak.load(Ordering::Relaxed)),
            publish_failed: publish_after.failed - publish_before.failed,
            publish_error: publish_after.first_error,
            lateness: run.max_lateness,
        }))
    }

    fn result(&self, i: StepInputs<'_>) -> StepResult {
        let t = &i.report.totals;
        let secs = i.elapsed.as_secs_f64();
        let from = self.next_seq - i.count;
        let groups = self.plan.as_ref().map_or_else(Vec::new, |plan| {
            plan.groups
                .iter()
                .zip(&i.report.groups)
                .map(|(g, r)| GroupResult {
                    name: g.name.clone(),
                    active: r.totals.active,
                    expected: r.totals.expected,
                    delivered: r.totals.delivered,
                    lost: r.totals.lost,
                    duplicated: r.totals.duplicated,
                    reordered: r.totals.reordered,
                    resets: r.totals.resets,
                    disconnects: r.totals.disconnects,
                    latency: Percentiles::of(&r.latency),
                })
                .collect()
        });
        StepResult {
            subscribers: self.fleet.subscribers,
            active: t.active,
            connect_failed: self.connect_failed,
            rate: i.rate,
            events: i.count,
            payload_bytes: i.size,
            latency: Percentiles::of(&i.report.latency),
            completion: Percentiles::of(&i.report.completion),
            delivered: t.delivered,
            expected: self.fleet.expected(from, self.next_seq - 1, t.active),
            lost: t.lost,
            duplicated: t.duplicated,
            reordered: t.reordered,
            resets: t.resets,
            disconnects: t.disconnects,
            connect_errors: t.connect_errors,
            publish_failed: i.publish_failed,
            first_error: i.publish_error.or_else(|| t.first_error.clone()),
            publish_lateness_ms: i.lateness.as_secs_f64() * 1000.0,
            drained: i.drained,
            seconds: secs,
            deliveries_per_s: t.delivered as f64 / secs.max(1e-9),
            server_cpu_s: i.server_cpu_s,
            server_cpu_by_process: i.server_cpu_by_process,
            server_cpu_s_per_million: i
                .server_cpu_s
                .filter(|_| t.delivered > 0)
                .map(|c| c / t.delivered as f64 * 1e6),
            loadgen_cpu_share: i.loadgen_cpu_s / secs.max(1e-9),
            other_cpu_share: i.cpus.iter().map(|c| c.busy).sum::<f64>()
                - i.server_cpu_s.unwrap_or(0.0) / secs.max(1e-9)
                - i.loadgen_cpu_s / secs.max(1e-9),
            cpus: i.cpus,
            server_rss_before: i.rss_before,
            server_rss_peak: i.rss_peak,
            groups,
        }
    }

    /// Closes the subscribers and the publisher.
    pub async fn close(self) {
        self.fleet.shutdown().await;
        self.publisher.shutdown().await;
    }
}

struct StepInputs<'a> {
    rate: f64,
    count: u64,
    size: usize,
    report: &'a StepReport,
    drained: bool,
    elapsed: Duration,
    server_cpu_s: Option<f64>,
    server_cpu_by_process: Vec<(String, f64)>,
    loadgen_cpu_s: f64,
    cpus: Vec<procstat::CpuUse>,
    rss_before: Option<u64>,
    rss_peak: Option<u64>,
    publish_failed: u64,
    publish_error: Option<String>,
    lateness: Duration,
}

/// One fan-out measurement: N idle subscribers' memory, then latency at a
/// fixed rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FanoutResult {
    /// Server memory per idle subscriber.
    pub idle_memory: Option<IdleMemory>,
    /// Time to connect every subscriber, s.
    pub connect_seconds: f64,
    /// The measured step.
    pub step: StepResult,
}

/// Parameters of a fan-out run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FanoutParams {
    /// Subscribers.
    pub subscribers: u32,
    /// Events per second.
    pub rate: f64,
    /// Publishing time, s.
    pub seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
}

/// Connects `p.subscribers`, reads idle memory, publishes at `p.rate` for
/// `p.seconds`.
///
/// # Errors
/// When the session cannot be opened or a worker stops answering.
pub async fn fanout(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    p: FanoutParams,
) -> anyhow::Result<FanoutResult> {
    let mut session = Session::open(h, target, servers, p.subscribers).await?;
    let step = session
        .step(p.rate, p.seconds, p.payload_bytes, Duration::from_secs(10))
        .await;
    let result = step.map(|step| FanoutResult {
        idle_memory: session.idle_memory,
        connect_seconds: session.connect_time.as_secs_f64(),
        step,
    });
    session.close().await;
    result
}

/// Restarts the target under test so that a step starts from a clean state.
pub trait Restart {
    /// Stops the target if it runs, starts a fresh one, and returns where it
    /// listens and its server-side processes.
    fn restart(&mut self) -> impl Future<Output = anyhow::Result<(Target, Vec<ServerProcess>)>>;
}

/// Parameters of a saturation search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationParams {
    /// Subscribers.
    pub subscribers: u32,
    /// Event rates to try in order, each higher than the last.
    pub rates: Vec<f64>,
    /// Publishing time per step, s.
    pub seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
    /// A step passes when p99 latency stays under this, ms.
    pub p99_limit_ms: f64,
    /// After the first failing rate, this many bisection probes between it
    /// and the last passing one.
    pub refine: u32,
}

/// The saturation search's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SaturationResult {
    /// Every step tried, in order, with whether it passed.
    pub steps: Vec<(bool, StepResult)>,
    /// The passing step with the most deliveries per second.
    pub best: Option<StepResult>,
}

/// Judges one saturation step (clean and p99 under the limit), logs it as
/// `what` and records it; returns whether it passed.
fn judge(
    result: &mut SaturationResult,
    rate: f64,
    step: StepResult,
    p99_limit_ms: f64,
    what: &str,
) -> bool {
    let ok = step.is_clean() && step.latency.p99_ms < p99_limit_ms;
    tracing::info!(
        rate,
        ok,
        p99_ms = step.latency.p99_ms,
        lost = step.lost,
        "saturation {what}"
    );
    result.steps.push((ok, step));
    ok
}

/// Steps the rate up until a step loses events or its p99 exceeds the
/// limit, then bisects; each probe after a failure runs on a restarted
/// server.
///
/// # Errors
/// When the server cannot restart or a session cannot open.
pub async fn saturation(
    h: &mut Harness,
    server: &mut impl Restart,
    p: &SaturationParams,
) -> anyhow::Result<SaturationResult> {
    let mut result = SaturationResult::default();
    let (target, servers) = server.restart().await?;
    let mut session = Session::open(h, &target, &servers, p.subscribers).await?;
    let mut last_pass: Option<f64> = None;
    let mut first_fail: Option<f64> = None;
    for &rate in &p.rates {
        let step = session
            .step(rate, p.seconds, p.payload_bytes, Duration::from_secs(5))
            .await?;
        if judge(&mut result, rate, step, p.p99_limit_ms, "step") {
            last_pass = Some(rate);
        } else {
            first_fail = Some(rate);
            break;
        }
    }
    session.close().await;
    if let (Some(mut lo), Some(mut hi)) = (last_pass, first_fail) {
        for _ in 0..p.refine {
            let rate = ((lo + hi) / 2.0).round();
            if rate <= lo || rate >= hi {
                break;
            }
            let (target, servers) = server.restart().await?;
            let mut session = Session::open(h, &target, &servers, p.subscribers).await?;
            let step = session
                .step(rate, p.seconds, p.payload_bytes, Duration::from_secs(5))
                .await;
            session.close().await;
            let step = step?;
            if judge(&mut result, rate, step, p.p99_limit_ms, "probe") {
                lo = rate;
            } else {
                hi = rate;
            }
        }
    }
    result.best = result
        .steps
        .iter()
        .filter(|(ok, _)| *ok)
        .map(|(_, s)| s)
        .max_by(|a, b| a.deliveries_per_s.total_cmp(&b.deliveries_per_s))
        .cloned();
    Ok(result)
}

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

async fn storm_on(session: &mut Session, p: StormParams) -> anyhow::Result<StormResult> {
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

/// Parameters of the slow-consumer case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SlowParams {
    /// Subscribers.
    pub subscribers: u32,
    /// Of them, how many stop reading.
    pub stalled: u32,
    /// Events per second.
    pub rate: f64,
    /// Publishing time, s.
    pub seconds: f64,
    /// Payload size, bytes (large, so that stalled sockets fill up).
    pub payload_bytes: usize,
}

/// The slow-consumer case's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlowResult {
    /// Subscribers that stopped reading.
    pub stalled: u32,
    /// Of them, how many the server had disconnected by the end.
    pub stalled_closed: u32,
    /// The other subscribers' step, with the server's memory.
    pub step: StepResult,
}

/// Stalls `p.stalled` subscribers, then publishes and measures the others.
///
/// # Errors
/// When the session cannot be opened or a worker stops answering.
pub async fn slow_consumer(
    h: &mut Harness,
    target: &Target,
    servers: &[ServerProcess],
    p: SlowParams,
) -> anyhow::Result<SlowResult> {
    let mut session = Session::open(h, target, servers, p.subscribers).await?;
    let result = async {
        session.stall(p.stalled).await?;
        let step = session
            .step(p.rate, p.seconds, p.payload_bytes, Duration::from_secs(10))
            .await?;
        let last = session.next_seq - 1;
        let report = session.fleet.report(last, last).await?;
        Ok(SlowResult {
            stalled: p.stalled,
            stalled_closed: report.totals.stalled_closed,
            step,
        })
    }
    .await;
    session.close().await;
    result
}

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

/// The plan of `count` subscribers that all follow the one topic `topic`.
fn one_topic(name: &str, count: u32, topic: &str) -> crate::topics::Group {
    crate::topics::Group {
        name: name.to_owned(),
        count,
        follow: crate::topics::Follow::Names(vec![topic.to_owned()]),
    }
}

/// A stream of `weight` events per cycle spread over `topics` topics
/// `prefix0`, `prefix1`, ... (the one topic `prefix` when `topics` is 1).
fn stream(prefix: &str, topics: u32, weight: u32) -> crate::topics::Stream {
    crate::topics::Stream {
        prefix: prefix.to_owned(),
        topics,
        weight,
    }
}

/// Opens a topic session on `plan`, publishes `rate × seconds` events and
/// closes it.
async fn topic_step(
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
    server: &mut impl Restart,
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

/// The per-user topics' set.
pub const USER_TOPICS: &str = "user.";
/// The rooms' set, and the pattern's prefix.
pub const ROOM_TOPICS: &str = "room.";

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
    server: &mut impl Restart,
    patterns: bool,
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
