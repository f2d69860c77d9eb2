//! A [`Session`]: N subscribers connected to one target through a fleet of
//! workers, warmed up, and a publisher; its steps publish measured events
//! and collect what the subscribers saw and what the server spent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::step::{GroupResult, IdleMemory, Percentiles, StepResult};
use super::Harness;
use crate::fleet::{Fleet, StepReport};
use crate::procstat::{self, ServerProcess};
use crate::publisher::{OpenLoopRun, Publisher};
use crate::target::Target;
use crate::topics::TopicPlan;

/// What a step does besides publishing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Action {
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

/// N subscribers connected to one target, warmed up, and a publisher.
#[derive(Debug)]
pub struct Session {
    pub(super) fleet: Fleet,
    publisher: Publisher,
    servers: Vec<ServerProcess>,
    /// In a topic workload, who follows what and where events go.
    plan: Option<TopicPlan>,
    pub(super) next_seq: u64,
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
    pub(super) async fn step_count(
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
        let sampler = PeakSampler::start(&self.servers);
        let run = self
            .publish(from, count, (rate, size), drain_timeout, action)
            .await?;
        let (_, drained) = self
            .fleet
            .wait_for(drain_timeout, |s| s.contiguous_min > to)
            .await?;
        let elapsed = start.elapsed();
        let server_after = procstat::sample_servers(&self.servers);
        let lg_after = procstat::sample_pids(&lg_pids);
        let cpus = procstat::cpu_use(&cpus_before, &procstat::cpu_ticks());
        let rss_peak = sampler.finish().await;
        let report = self.fleet.report(from, to).await?;
        let publish_after = self.publisher.counts();
        let by_process = procstat::cpu_by_process(
            &self.servers,
            server_before.as_deref(),
            server_after.as_deref(),
        );
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
            rss_peak,
            publish_failed: publish_after.failed - publish_before.failed,
            publish_error: publish_after.first_error,
            lateness: run.max_lateness,
        }))
    }

    /// Publishes events `from..from + count` at `rate`, each `size` bytes,
    /// doing a rejoin `action` meanwhile.
    async fn publish(
        &mut self,
        from: u64,
        count: u64,
        (rate, size): (f64, usize),
        drain_timeout: Duration,
        action: Action,
    ) -> anyhow::Result<OpenLoopRun> {
        let answer_timeout = drain_timeout.max(Duration::from_secs(5));
        let publishing =
            self.publisher
                .open_loop(from, count, rate, size, answer_timeout, self.plan.as_ref());
        Ok(match action {
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
        })
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

/// The server side's resident memory at its highest, sampled every 100 ms
/// from [`PeakSampler::start`] to [`PeakSampler::finish`].
struct PeakSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PeakSampler {
    /// Starts sampling `servers` (nothing when there is none).
    fn start(servers: &[ServerProcess]) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = (!servers.is_empty()).then(|| {
            let (peak, stop) = (peak.clone(), stop.clone());
            let servers = servers.to_vec();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(s) = procstat::sample_servers(&servers) {
                        peak.fetch_max(procstat::total(&s).rss_bytes, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        Self { peak, stop, task }
    }

    /// Stops sampling; the highest reading, when there were servers.
    async fn finish(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let task = self.task?;
        let _ = task.await;
        Some(self.peak.load(Ordering::Relaxed))
    }
}
