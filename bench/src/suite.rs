//! The suite: a configuration file naming the servers and the workload
//! parameters, and a run of every workload against every server.
//!
//! Workloads run one after another, and within a workload every server in
//! turn, each on a freshly started process, so that the servers of one
//! workload are measured minutes apart at most and their ratios hold even
//! when the machine's speed drifts. A server runs only the workloads its
//! spec lists (all when it lists none), the topic workloads only when it
//! has topics, and publishing alone only when it lists it or a server that
//! lists it is set against it (see [`runs`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::fleet::{AddrPool, FleetConfig};
use crate::procstat::ServerProcess;
use crate::publish_load::{self, PublishParams, PublishResult};
use crate::server_proc::{RunningServer, ServerSpec};
use crate::target::{PublishFormat, Target};
use crate::workloads::{
    self, BystandersParams, BystandersResult, FanoutParams, FanoutResult, Harness, PrefixParams,
    PrefixResult, Restart, RetentionParams, RetentionResult, SaturationParams, SaturationResult,
    SlowParams, SlowResult, SpreadParams, StepResult, StormParams, StormResult,
};

/// The fan-out sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanoutConfig {
    /// Subscriber counts, one run each.
    pub subscribers: Vec<u32>,
    /// Events per second.
    pub rate: f64,
    /// Publishing time per run, s.
    pub seconds: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
}

/// The suite's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteConfig {
    /// CPUs the servers are pinned to (`taskset -c` list).
    pub server_cpus: Option<String>,
    /// CPUs the load generator runs on (informational: the script pins it).
    pub loadgen_cpus: Option<String>,
    /// Subscribers per worker process at most.
    pub per_worker: u32,
    /// Connection attempts in flight per worker at most.
    pub connect_concurrency: u32,
    /// Publishing connections.
    pub publish_connections: usize,
    /// The fan-out sweep.
    pub fanout: FanoutConfig,
    /// The saturation search.
    pub saturation: SaturationParams,
    /// The reconnect storm.
    pub storm: StormParams,
    /// The slow-consumer case.
    pub slow: SlowParams,
    /// Topics: a busy topic with and without idle subscribers of another.
    #[serde(default)]
    pub bystanders: Option<BystandersParams>,
    /// Topics: one topic per subscriber.
    #[serde(default)]
    pub per_user: Option<SpreadParams>,
    /// Topics: many small rooms.
    #[serde(default)]
    pub rooms: Option<SpreadParams>,
    /// Topics: a quiet topic's subscribers resume beside a busy topic.
    #[serde(default)]
    pub retention: Option<RetentionParams>,
    /// Topics: prefix-pattern subscribers beside per-user traffic.
    #[serde(default)]
    pub prefix: Option<PrefixParams>,
    /// Publishing alone: N publishers in a closed loop, no subscribers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishParams>,
    /// One heavy fan-out (many subscribers, a high rate), for the servers
    /// that ask for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heavy: Option<FanoutParams>,
    /// A job is run again when CPU time used by neither the server nor
    /// the load generator exceeded this share of a core in one of its steps.
    #[serde(default = "default_disturbance_limit")]
    pub disturbance_limit: f64,
    /// How many times a disturbed job is run again at most.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long to wait for a quiet machine before running again, s.
    #[serde(default = "default_quiet_wait")]
    pub quiet_wait_seconds: u64,
    /// The servers.
    #[serde(rename = "server")]
    pub servers: Vec<ServerSpec>,
    /// Commands whose output names a version, for the report: name → argv.
    #[serde(default)]
    pub versions: std::collections::BTreeMap<String, Vec<String>>,
}

fn default_disturbance_limit() -> f64 {
    0.25
}

fn default_retries() -> u32 {
    2
}

fn default_quiet_wait() -> u64 {
    180
}

impl SuiteConfig {
    /// Reads a TOML configuration file.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid configuration.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("invalid configuration {}", path.display()))?;
        for s in &config.servers {
            anyhow::ensure!(
                s.publish_format != PublishFormat::Pushpin || s.topic.is_some(),
                "{}: server {:?} publishes to Pushpin and needs a `topic` (the channel its \
                 streams are held on)",
                path.display(),
                s.name
            );
        }
        Ok(config)
    }
}

/// The machine the suite ran on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// CPUs available.
    pub cpus: usize,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Tool versions: name → first line of its version output.
    pub versions: Vec<(String, String)>,
}

impl Machine {
    /// Reads `/proc` and runs the version commands.
    pub fn detect(versions: &std::collections::BTreeMap<String, Vec<String>>) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let versions = versions
            .iter()
            .filter_map(|(name, argv)| {
                let out = std::process::Command::new(argv.first()?)
                    .args(&argv[1..])
                    .output()
                    .ok()?;
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                Some((name.clone(), text.lines().next()?.trim().to_owned()))
            })
            .collect();
        Self {
            cpu,
            // Every CPU of the machine, not only those this process may use.
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            memory_mib,
            kernel,
            versions,
        }
    }
}

/// Everything measured for one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerResults {
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Whether it resumes from `Last-Event-ID`.
    pub resumes: bool,
    /// One entry per fan-out subscriber count.
    pub fanout: Vec<FanoutResult>,
    /// The saturation search.
    pub saturation: Option<SaturationResult>,
    /// The reconnect storm.
    pub storm: Option<StormResult>,
    /// The slow-consumer case.
    pub slow: Option<SlowResult>,
    /// Topics: the busy topic with and without bystanders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bystanders: Option<BystandersResult>,
    /// Topics: one topic per subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user: Option<StepResult>,
    /// Topics: many small rooms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<StepResult>,
    /// Topics: the quiet topic's resume beside a busy one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionResult>,
    /// Topics: prefix patterns against exact names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<PrefixResult>,
    /// Publishing alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishResult>,
    /// The heavy fan-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heavy: Option<FanoutResult>,
    /// Workloads that could not run, and why.
    pub errors: Vec<String>,
}

/// A suite run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteResults {
    /// The machine.
    pub machine: Machine,
    /// The configuration used.
    pub config: SuiteConfig,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix: u64,
    /// How long it took, s.
    pub seconds: f64,
    /// Per server, in configuration order.
    pub servers: Vec<ServerResults>,
    /// Later runs of some of the servers or workloads, merged in by `bench
    /// suite --merge`, oldest first. They are kept apart from this run so
    /// that every table compares servers measured in the same run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later: Vec<SuiteResults>,
}

impl SuiteResults {
    /// What the run measured, as (server, workload) pairs.
    fn measured(&self) -> std::collections::BTreeSet<(String, String)> {
        let mut out = std::collections::BTreeSet::new();
        for s in &self.servers {
            let mut add = |w: String| out.insert((s.name.clone(), w));
            for f in &s.fanout {
                add(format!("fanout {}", f.step.subscribers));
            }
            if s.saturation.is_some() {
                add("saturation".to_owned());
            }
            if s.storm.is_some() {
                add("storm".to_owned());
            }
            if s.slow.is_some() {
                add("slow".to_owned());
            }
            for (name, done) in [
                ("bystanders", s.bystanders.is_some()),
                ("per-user", s.per_user.is_some()),
                ("rooms", s.rooms.is_some()),
                ("retention", s.retention.is_some()),
                ("prefix", s.prefix.is_some()),
                ("publish", s.publish.is_some()),
            ] {
                if done {
                    add(name.to_owned());
                }
            }
        }
        out
    }

    /// Keeps `run` (of some of the servers or workloads) next to these
    /// results as the newest later run; earlier later runs that measured
    /// nothing `run` did not measure again are dropped.
    pub fn merge(mut self, mut run: SuiteResults) -> SuiteResults {
        let now = run.measured();
        let earlier = std::mem::take(&mut run.later);
        self.later.extend(earlier);
        self.later.retain(|r| !r.measured().is_subset(&now));
        self.later.push(run);
        self
    }
}

/// A server that the suite (re)starts from its spec.
#[derive(Debug)]
struct Managed<'a> {
    spec: &'a ServerSpec,
    root: &'a Path,
    cpus: Option<&'a str>,
    current: Option<RunningServer>,
}

impl Managed<'_> {
    async fn stop(&mut self) {
        if let Some(server) = self.current.take() {
            server.stop().await;
        }
    }
}

impl Restart for Managed<'_> {
    async fn restart(&mut self) -> anyhow::Result<(Target, Vec<ServerProcess>)> {
        self.stop().await;
        let server = RunningServer::start(self.spec, self.root, self.cpus).await?;
        let started = (server.target.clone(), server.processes());
        self.current = Some(server);
        Ok(started)
    }
}

/// Which workloads to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// The fan-out sweep (latency and idle memory against subscribers).
    pub fanout: bool,
    /// The saturation search.
    pub saturation: bool,
    /// The reconnect storm.
    pub storm: bool,
    /// The slow-consumer case.
    pub slow: bool,
    /// Topics: bystanders.
    pub bystanders: bool,
    /// Topics: one per subscriber.
    pub per_user: bool,
    /// Topics: many small rooms.
    pub rooms: bool,
    /// Topics: retention of a quiet topic.
    pub retention: bool,
    /// Topics: prefix patterns.
    pub prefix: bool,
    /// Publishing alone.
    pub publish: bool,
    /// The heavy fan-out.
    pub heavy: bool,
}

impl Selection {
    /// Every workload.
    pub const ALL: Self = Self {
        fanout: true,
        saturation: true,
        storm: true,
        slow: true,
        bystanders: true,
        per_user: true,
        rooms: true,
        retention: true,
        prefix: true,
        publish: true,
        heavy: true,
    };

    /// No workload.
    pub const NONE: Self = Self {
        fanout: false,
        saturation: false,
        storm: false,
        slow: false,
        bystanders: false,
        per_user: false,
        rooms: false,
        retention: false,
        prefix: false,
        publish: false,
        heavy: false,
    };

    /// The workloads named (`fanout`, `saturation`, `storm`, `slow`,
    /// `bystanders`, `per-user`, `rooms`, `retention`, `prefix`, and
    /// `topics` for those five; `publish`, `heavy`); every one when `names`
    /// is empty.
    ///
    /// # Errors
    /// For an unknown name.
    pub fn parse(names: &[String]) -> anyhow::Result<Self> {
        if names.is_empty() {
            return Ok(Self::ALL);
        }
        let mut s = Self::NONE;
        for name in names {
            match name.as_str() {
                "fanout" => s.fanout = true,
                "saturation" => s.saturation = true,
                "storm" => s.storm = true,
                "slow" => s.slow = true,
                "bystanders" => s.bystanders = true,
                "per-user" => s.per_user = true,
                "rooms" => s.rooms = true,
                "retention" => s.retention = true,
                "prefix" => s.prefix = true,
                "publish" => s.publish = true,
                "heavy" => s.heavy = true,
                "topics" => {
                    s.bystanders = true;
                    s.per_user = true;
                    s.rooms = true;
                    s.retention = true;
                    s.prefix = true;
                }
                other => anyhow::bail!(
                    "unknown workload {other:?}: fanout, saturation, storm, slow, bystanders, \
                     per-user, rooms, retention, prefix, topics, publish or heavy"
                ),
            }
        }
        Ok(s)
    }
}

/// Runs the selected workloads against `servers` (all when empty).
///
/// `root` is the directory that relative paths in the configuration start
/// from; `worker_exe` is the `bench` binary.
///
/// # Errors
/// Only when nothing can run at all; a workload that fails for one server
/// is recorded in that server's `errors` and the suite goes on.
pub async fn run(
    config: &SuiteConfig,
    root: &Path,
    worker_exe: PathBuf,
    servers: &[String],
    selection: Selection,
) -> anyhow::Result<SuiteResults> {
    let started = Instant::now();
    let started_unix = crate::now_ns() / 1_000_000_000;
    let specs: Vec<&ServerSpec> = config
        .servers
        .iter()
        .filter(|s| servers.is_empty() || servers.contains(&s.name))
        .collect();
    anyhow::ensure!(!specs.is_empty(), "no server selected");
    let mut harness = Harness {
        fleet: FleetConfig {
            worker_exe,
            per_worker: config.per_worker,
            connect_concurrency: config.connect_concurrency,
            connect_timeout: Duration::from_secs(60),
        },
        addrs: AddrPool::new(),
        publish_connections: config.publish_connections,
    };
    let mut results: Vec<ServerResults> = specs
        .iter()
        .map(|s| ServerResults {
            name: s.name.clone(),
            description: s.description.clone(),
            resumes: s.resumes,
            ..ServerResults::default()
        })
        .collect();
    let cpus = config.server_cpus.as_deref();
    let mut jobs = Vec::new();
    if selection.fanout {
        jobs.extend(config.fanout.subscribers.iter().map(|&n| Job::Fanout(n)));
    }
    if selection.saturation {
        jobs.push(Job::Saturation);
    }
    if selection.storm {
        jobs.push(Job::Storm);
    }
    if selection.slow {
        jobs.push(Job::Slow);
    }
    // The topic workloads, for the servers that have topics.
    for (wanted, configured, job) in [
        (
            selection.bystanders,
            config.bystanders.is_some(),
            Job::Bystanders,
        ),
        (selection.per_user, config.per_user.is_some(), Job::PerUser),
        (selection.rooms, config.rooms.is_some(), Job::Rooms),
        (
            selection.retention,
            config.retention.is_some(),
            Job::Retention,
        ),
        (selection.prefix, config.prefix.is_some(), Job::Prefix),
    ] {
        if wanted && configured {
            jobs.push(job);
        }
    }
    if selection.publish && config.publish.is_some() {
        jobs.push(Job::Publish);
    }
    if selection.heavy && config.heavy.is_some() {
        jobs.push(Job::Heavy);
    }
    for job in jobs {
        for (spec, out) in specs.iter().zip(&mut results) {
            if !runs(config, spec, job) {
                continue;
            }
            let mut attempt = 0;
            let outcome = loop {
                attempt += 1;
                tracing::info!(server = %spec.name, job = %job, attempt, "start");
                let mut server = Managed {
                    spec,
                    root,
                    cpus,
                    current: None,
                };
                let outcome = run_job(&mut harness, &mut server, config, job).await;
                server.stop().await;
                let disturbance = outcome.as_ref().map_or(0.0, JobResult::disturbance);
                if disturbance <= config.disturbance_limit || attempt > config.retries {
                    if disturbance > config.disturbance_limit {
                        tracing::warn!(server = %spec.name, job = %job, disturbance, "disturbed; keeping the last attempt");
                    }
                    break outcome;
                }
                tracing::warn!(
                    server = %spec.name,
                    job = %job,
                    disturbance,
                    "other processes used the CPUs; waiting for quiet and running it again"
                );
                wait_quiet(Duration::from_secs(config.quiet_wait_seconds)).await;
            };
            match outcome {
                Ok(JobResult::Fanout(r)) => {
                    log_step(&spec.name, "fan-out", &r.step);
                    out.fanout.push(r);
                }
                Ok(JobResult::Saturation(r)) => out.saturation = Some(r),
                Ok(JobResult::Storm(r)) => out.storm = Some(r),
                Ok(JobResult::Slow(r)) => {
                    log_step(&spec.name, "slow consumer", &r.step);
                    out.slow = Some(r);
                }
                Ok(JobResult::Bystanders(r)) => {
                    log_step(&spec.name, "bystanders: alone", &r.alone);
                    log_step(&spec.name, "bystanders: with", &r.with_bystanders);
                    out.bystanders = Some(r);
                }
                Ok(JobResult::PerUser(r)) => {
                    log_step(&spec.name, "per-user topics", &r);
                    out.per_user = Some(r);
                }
                Ok(JobResult::Rooms(r)) => {
                    log_step(&spec.name, "rooms", &r);
                    out.rooms = Some(r);
                }
                Ok(JobResult::Retention(r)) => {
                    log_step(&spec.name, "retention", &r.step);
                    out.retention = Some(r);
                }
                Ok(JobResult::Prefix(r)) => {
                    for s in r.exact.iter().chain(&r.pattern) {
                        log_step(&spec.name, "prefix", s);
                    }
                    out.prefix = Some(r);
                }
                Ok(JobResult::Publish(r)) => out.publish = Some(r),
                Ok(JobResult::Heavy(r)) => {
                    log_step(&spec.name, "heavy fan-out", &r.step);
                    out.heavy = Some(r);
                }
                Err(e) => out.errors.push(format!("{job}: {e:#}")),
            }
        }
    }
    for r in &results {
        for e in &r.errors {
            tracing::warn!(server = %r.name, "{e}");
        }
    }
    Ok(SuiteResults {
        machine: Machine::detect(&config.versions),
        config: config.clone(),
        started_unix,
        seconds: started.elapsed().as_secs_f64(),
        servers: results,
        later: Vec::new(),
    })
}

/// Whether the server `spec` of `config` runs `job`: the workloads its
/// `workloads` list names (every one when it has none), the topic workloads
/// only when it has topics, and publishing alone only when its list names
/// it or the list of a server set against it does (the log in memory is
/// measured next to the log on disk, and no one else).
fn runs(config: &SuiteConfig, spec: &ServerSpec, job: Job) -> bool {
    let name = job.workload();
    if job.needs_topics() && spec.topics.is_none() {
        return false;
    }
    if !job.opt_in() {
        return spec.runs(name);
    }
    let names = |s: &ServerSpec| {
        s.workloads
            .as_ref()
            .is_some_and(|w| w.iter().any(|x| x == name))
    };
    names(spec)
        || spec.also.iter().any(|x| x == name)
        || config
            .servers
            .iter()
            .any(|s| names(s) && s.compare_with.as_deref() == Some(spec.name.as_str()))
}

/// One workload for one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Fanout(u32),
    Saturation,
    Storm,
    Slow,
    Bystanders,
    PerUser,
    Rooms,
    Retention,
    Prefix,
    Publish,
    Heavy,
}

impl Job {
    /// Whether the job needs a server with topics.
    fn needs_topics(self) -> bool {
        matches!(
            self,
            Self::Bystanders | Self::PerUser | Self::Rooms | Self::Retention | Self::Prefix
        )
    }

    /// Whether the job runs only against the servers that ask for it (see
    /// [`runs`]).
    fn opt_in(self) -> bool {
        matches!(self, Self::Publish | Self::Heavy)
    }

    /// The workload's name, as `--workloads` and a server's `workloads`
    /// list give it.
    fn workload(self) -> &'static str {
        match self {
            Self::Fanout(_) => "fanout",
            Self::Saturation => "saturation",
            Self::Storm => "storm",
            Self::Slow => "slow",
            Self::Bystanders => "bystanders",
            Self::PerUser => "per-user",
            Self::Rooms => "rooms",
            Self::Retention => "retention",
            Self::Prefix => "prefix",
            Self::Publish => "publish",
            Self::Heavy => "heavy",
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fanout(n) => write!(f, "fan-out {n}"),
            Self::Saturation => f.write_str("saturation"),
            Self::Storm => f.write_str("reconnect storm"),
            Self::Slow => f.write_str("slow consumer"),
            Self::Bystanders => f.write_str("bystanders"),
            Self::PerUser => f.write_str("per-user topics"),
            Self::Rooms => f.write_str("rooms"),
            Self::Retention => f.write_str("retention"),
            Self::Prefix => f.write_str("prefix patterns"),
            Self::Publish => f.write_str("publish"),
            Self::Heavy => f.write_str("heavy fan-out"),
        }
    }
}

enum JobResult {
    Fanout(FanoutResult),
    Saturation(SaturationResult),
    Storm(StormResult),
    Slow(SlowResult),
    Bystanders(BystandersResult),
    PerUser(StepResult),
    Rooms(StepResult),
    Retention(RetentionResult),
    Prefix(PrefixResult),
    Publish(PublishResult),
    Heavy(FanoutResult),
}

impl JobResult {
    /// The most CPU (share of a core) that neither the server nor the load
    /// generator used during any of the job's steps.
    fn disturbance(&self) -> f64 {
        let steps: Vec<&workloads::StepResult> = match self {
            Self::Fanout(r) | Self::Heavy(r) => vec![&r.step],
            Self::Saturation(r) => r.steps.iter().map(|(_, s)| s).collect(),
            Self::Storm(r) => vec![&r.during],
            Self::Slow(r) => vec![&r.step],
            Self::Bystanders(r) => vec![&r.alone, &r.with_bystanders],
            Self::PerUser(r) | Self::Rooms(r) => vec![r],
            Self::Retention(r) => vec![&r.step],
            Self::Prefix(r) => r.exact.iter().chain(&r.pattern).collect(),
            Self::Publish(r) => {
                return r
                    .steps
                    .iter()
                    .map(|s| s.other_cpu_share)
                    .fold(0.0, f64::max);
            }
        };
        steps.iter().map(|s| s.other_cpu_share).fold(0.0, f64::max)
    }
}

async fn run_job(
    harness: &mut Harness,
    server: &mut Managed<'_>,
    config: &SuiteConfig,
    job: Job,
) -> anyhow::Result<JobResult> {
    let missing = || anyhow::anyhow!("{job} is not configured");
    match job {
        Job::Saturation => {
            return workloads::saturation(harness, server, &config.saturation)
                .await
                .map(JobResult::Saturation);
        }
        Job::Bystanders => {
            let p = config.bystanders.ok_or_else(missing)?;
            return workloads::bystanders(harness, server, p)
                .await
                .map(JobResult::Bystanders);
        }
        Job::Prefix => {
            let p = config.prefix.ok_or_else(missing)?;
            let patterns = server.spec.topics.as_ref().is_some_and(|t| t.patterns);
            return workloads::prefix(harness, server, patterns, p)
                .await
                .map(JobResult::Prefix);
        }
        _ => {}
    }
    let (target, servers) = server.restart().await?;
    Ok(match job {
        Job::Fanout(n) => JobResult::Fanout(
            workloads::fanout(
                harness,
                &target,
                &servers,
                FanoutParams {
                    subscribers: n,
                    rate: config.fanout.rate,
                    seconds: config.fanout.seconds,
                    payload_bytes: config.fanout.payload_bytes,
                },
            )
            .await?,
        ),
        Job::Storm => JobResult::Storm(
            workloads::reconnect_storm(harness, &target, &servers, config.storm).await?,
        ),
        Job::Slow => JobResult::Slow(
            workloads::slow_consumer(harness, &target, &servers, config.slow).await?,
        ),
        Job::PerUser => JobResult::PerUser(
            workloads::spread(
                harness,
                &target,
                &servers,
                workloads::USER_TOPICS,
                config.per_user.ok_or_else(missing)?,
            )
            .await?,
        ),
        Job::Rooms => JobResult::Rooms(
            workloads::spread(
                harness,
                &target,
                &servers,
                workloads::ROOM_TOPICS,
                config.rooms.ok_or_else(missing)?,
            )
            .await?,
        ),
        Job::Retention => JobResult::Retention(
            workloads::retention(
                harness,
                &target,
                &servers,
                config.retention.ok_or_else(missing)?,
            )
            .await?,
        ),
        Job::Publish => JobResult::Publish(
            publish_load::publish(
                &target,
                &servers,
                config.publish.as_ref().ok_or_else(missing)?,
            )
            .await?,
        ),
        Job::Heavy => JobResult::Heavy(
            workloads::fanout(
                harness,
                &target,
                &servers,
                config.heavy.ok_or_else(missing)?,
            )
            .await?,
        ),
        Job::Saturation | Job::Bystanders | Job::Prefix => unreachable!("handled above"),
    })
}

/// Waits until less than 10% of all CPUs were busy over two seconds, or
/// `max` has passed.
pub async fn wait_quiet(max: Duration) {
    let deadline = Instant::now() + max;
    loop {
        let before = crate::procstat::cpu_ticks();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used = crate::procstat::cpu_use(&before, &crate::procstat::cpu_ticks());
        let busy = used.iter().map(|c| c.busy).sum::<f64>() / used.len().max(1) as f64;
        if busy < 0.10 || Instant::now() >= deadline {
            return;
        }
        tracing::info!(busy, "waiting for the machine to be quiet");
    }
}

fn log_step(server: &str, workload: &str, s: &workloads::StepResult) {
    tracing::info!(
        server,
        workload,
        subscribers = s.active,
        p50_ms = s.latency.p50_ms,
        p99_ms = s.latency.p99_ms,
        lost = s.lost,
        cpu_per_m = s.server_cpu_s_per_million.unwrap_or(f64::NAN),
        loadgen = s.loadgen_cpu_share,
        other_cpu = s.other_cpu_share,
        "done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/suite.toml");
        let config = SuiteConfig::load(&path).unwrap();
        let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names[..5],
            [
                "ours",
                "ours-redis-pair",
                "nchan",
                "pushpin",
                "warp-broadcast"
            ]
        );
        for spec in &config.servers {
            for template in spec.files.values() {
                assert!(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("..")
                        .join(template)
                        .is_file(),
                    "{}",
                    template.display()
                );
            }
        }
        assert!(config.fanout.subscribers.windows(2).all(|w| w[0] < w[1]));
        assert!(config.saturation.rates.windows(2).all(|w| w[0] < w[1]));
        assert!(config.slow.stalled < config.slow.subscribers);
        // The topic workloads: ours, nchan, Pushpin and the baseline have
        // topics, nchan and Pushpin no patterns; the retention run comes
        // back before it ends, and the quiet topic has several events
        // meanwhile.
        let with_topics: Vec<&str> = config
            .servers
            .iter()
            .filter(|s| s.topics.is_some())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(with_topics, ["ours", "nchan", "pushpin", "warp-broadcast"]);
        let without_patterns: Vec<&str> = config
            .servers
            .iter()
            .filter(|s| s.topics.as_ref().is_some_and(|t| !t.patterns))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(without_patterns, ["nchan", "pushpin"]);
        let r = config.retention.unwrap();
        assert!(r.away_seconds < r.after_seconds);
        assert!(r.away_seconds >= 3.0 * r.quiet_every_seconds);
        assert!(config.bystanders.is_some() && config.prefix.is_some());
        assert_eq!(config.per_user.unwrap().per_topic, 1);
    }

    /// The Redis pair runs our server with the single server's flags plus
    /// `--redis` on the Redis the suite starts for it, and that Redis keeps
    /// no snapshots and fsyncs its append-only file once a second.
    #[test]
    fn the_redis_pair_is_our_server_with_redis() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/suite.toml");
        let config = SuiteConfig::load(&path).unwrap();
        let find = |name: &str| config.servers.iter().find(|s| s.name == name).unwrap();
        let (single, pair) = (find("ours"), find("ours-redis-pair"));
        assert!(single.is_single());
        assert!(!pair.is_single());
        assert_eq!(pair.instances, 2);
        assert_eq!(pair.compare_with.as_deref(), Some("ours"));
        let mut expected = single.command.clone();
        expected.extend([
            "--redis".to_owned(),
            "redis://127.0.0.1:{redis_port}/".to_owned(),
        ]);
        assert_eq!(pair.command, expected);
        assert!(single.command.contains(&"off".to_owned()), "no ticker");
        assert_eq!(
            ServerSpec {
                name: single.name.clone(),
                description: single.description.clone(),
                command: single.command.clone(),
                instances: 1,
                redis: None,
                compare_with: None,
                // The topic workloads and the heavy fan-out run on the
                // single server only.
                topics: single.topics.clone(),
                also: single.also.clone(),
                ..pair.clone()
            },
            *single,
            "every other setting is the single server's"
        );
        let redis = pair.redis.as_ref().unwrap().command.join(" ");
        assert!(redis.starts_with("redis-server --bind 127.0.0.1 --port {port} --dir {dir} "));
        assert!(redis.ends_with("--save  --appendonly yes --appendfsync everysec"));
    }

    /// The log on disk and in a Redis of its own: the disk targets run the
    /// fan-out and publishing, the Redis ones publishing only, set against
    /// `ours`, which publishes too; of the peers, nchan, Pushpin and the
    /// warp baseline publish alone, and nchan and the warp baseline run the
    /// heavy fan-out beside ours.
    #[test]
    fn the_log_targets_run_their_workloads_against_ours() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/suite.toml");
        let config = SuiteConfig::load(&path).unwrap();
        let running = |job: Job| -> Vec<&str> {
            config
                .servers
                .iter()
                .filter(|s| runs(&config, s, job))
                .map(|s| s.name.as_str())
                .collect()
        };
        assert_eq!(
            running(Job::Publish),
            [
                "ours",
                "nchan",
                "pushpin",
                "warp-broadcast",
                "ours-disk-always",
                "ours-disk-batch",
                "ours-redis-always",
                "ours-redis-everysec"
            ]
        );
        assert_eq!(running(Job::Heavy), ["ours", "nchan", "warp-broadcast"]);
        let fanout = running(Job::Fanout(100));
        assert!(fanout.contains(&"ours-disk-always") && fanout.contains(&"ours-disk-batch"));
        assert!(!fanout.contains(&"ours-redis-always") && fanout.contains(&"nchan"));
        assert!(!running(Job::Saturation).contains(&"ours-disk-always"));
        assert_eq!(
            running(Job::PerUser),
            ["ours", "nchan", "pushpin", "warp-broadcast"]
        );
        let find = |name: &str| config.servers.iter().find(|s| s.name == name).unwrap();
        let single = find("ours");
        for name in ["ours-disk-always", "ours-disk-batch"] {
            let disk = find(name);
            assert!(disk.is_single());
            assert_eq!(disk.compare_with.as_deref(), Some("ours"));
            assert_eq!(disk.command[..single.command.len()], single.command[..]);
            assert_eq!(
                disk.command[single.command.len()..][..2],
                ["--data-dir", "{dir}/data"]
            );
        }
        for (name, fsync) in [
            ("ours-redis-always", "always"),
            ("ours-redis-everysec", "everysec"),
        ] {
            let own = find(name);
            assert_eq!(
                (own.instances, own.compare_with.as_deref()),
                (1, Some("ours"))
            );
            let redis = own.redis.as_ref().unwrap().command.join(" ");
            assert!(
                redis.ends_with(&format!("--appendfsync {fsync}")),
                "{redis}"
            );
        }
        let publish = config.publish.unwrap();
        assert!(publish.publishers.windows(2).all(|w| w[0] < w[1]));
    }

    /// Pushpin runs with its GRIP backend, publishes on a port of its own
    /// in its control API's format, and its configuration puts every path
    /// in the target's directory and every port in the suite's hands.
    #[test]
    fn pushpin_runs_with_its_backend_and_its_own_paths() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config = SuiteConfig::load(&root.join("bench/configs/suite.toml")).unwrap();
        let pushpin = config.servers.iter().find(|s| s.name == "pushpin").unwrap();
        assert!(pushpin.is_single() && pushpin.compare_with.is_none());
        assert!(pushpin.publish_port);
        assert_eq!(pushpin.publish_format, PublishFormat::Pushpin);
        assert_eq!(pushpin.topic.as_deref(), Some("bench"));
        assert_eq!(pushpin.subscribe, "/sub/bench");
        let backend = pushpin.backend.as_ref().unwrap();
        assert_eq!(backend.command[0], "target/release/grip-backend");
        let routes = pushpin.topics.as_ref().unwrap();
        assert_eq!(routes.subscribe_path(&["a".into(), "b".into()]), "/sub/a,b");
        assert_eq!(routes.publish_path("a"), pushpin.publish);
        let dir = Path::new("/tmp/bench-pushpin-x");
        let p = crate::server_proc::Placeholders {
            port: 8000,
            dir,
            root: &root,
            redis_port: None,
            backend_port: Some(7000),
            publish_port: Some(9000),
        };
        let read = |name: &str| {
            let template = root.join(&pushpin.files[name]);
            crate::server_proc::render(&std::fs::read_to_string(template).unwrap(), p)
        };
        let conf = read("pushpin.conf");
        let setting = |key: &str| -> Vec<&str> {
            conf.lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .collect()
        };
        assert_eq!(setting("http_port"), ["127.0.0.1:8000"]);
        assert_eq!(setting("push_in_http_port"), ["9000"]);
        assert_eq!(setting("push_in_http_addr"), ["127.0.0.1"]);
        assert_eq!(setting("rundir"), ["/tmp/bench-pushpin-x/run"]);
        assert_eq!(setting("logdir"), ["/tmp/bench-pushpin-x"]);
        assert_eq!(setting("routesfile"), ["routes"]);
        assert_eq!(
            setting("services"),
            ["condure,zurl,pushpin-proxy,pushpin-handler"]
        );
        // No fixed TCP port, no system path: every ZeroMQ socket is an ipc
        // one in the run directory.
        for line in conf.lines().filter(|l| !l.starts_with('#')) {
            assert!(!line.contains("tcp://"), "{line}");
            assert!(!line.contains("/var/") && !line.contains("/etc/"), "{line}");
            if let Some((_, spec)) = line.split_once("ipc://") {
                assert!(spec.starts_with("/tmp/bench-pushpin-x/run/"), "{line}");
            }
            assert!(!line.contains("_port}"), "left unrendered: {line}");
        }
        // Tuned: no delivery rate limit, quiet logs, a bound on requests
        // open towards the backend.
        assert_eq!(setting("message_rate"), ["0"]);
        assert_eq!(setting("message_hwm"), ["0"]);
        assert_eq!(setting("log_level"), ["1"]);
        assert_eq!(setting("max_open_requests"), ["64"]);
        let routes = read("routes");
        let targets: Vec<&str> = routes.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(targets, ["* 127.0.0.1:7000"]);
    }

    fn results(started_unix: u64, measured: &[(&str, u32)]) -> SuiteResults {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/suite.toml");
        let mut servers: Vec<ServerResults> = Vec::new();
        for &(name, n) in measured {
            if !servers.iter().any(|s| s.name == name) {
                servers.push(ServerResults {
                    name: name.to_owned(),
                    ..ServerResults::default()
                });
            }
            let server = servers.iter_mut().find(|s| s.name == name).unwrap();
            server.fanout.push(workloads::FanoutResult {
                step: workloads::StepResult {
                    subscribers: n,
                    // Floats that a parser without exact rounding reads
                    // back one unit in the last place off.
                    server_cpu_s: Some(10.950000000000001),
                    other_cpu_share: 0.025565743450458922,
                    ..workloads::StepResult::default()
                },
                ..workloads::FanoutResult::default()
            });
        }
        SuiteResults {
            machine: Machine::default(),
            config: SuiteConfig::load(&path).unwrap(),
            started_unix,
            seconds: 1.0,
            servers,
            later: Vec::new(),
        }
    }

    #[test]
    fn a_merged_run_is_kept_next_to_the_full_one() {
        let full = results(1, &[("ours", 100), ("nchan", 100)]);
        let merged = full
            .clone()
            .merge(results(2, &[("ours", 100), ("ours-redis-pair", 100)]));
        assert_eq!(merged.servers, full.servers, "the full run stays whole");
        assert_eq!(merged.later.len(), 1);
        // A run measuring more replaces the earlier partial one; one
        // measuring something else is kept next to it.
        let merged = merged.merge(results(
            3,
            &[("ours", 100), ("ours", 1000), ("ours-redis-pair", 100)],
        ));
        assert_eq!(merged.later.len(), 1);
        assert_eq!(merged.later[0].started_unix, 3);
        let merged = merged.merge(results(4, &[("nchan", 1000)]));
        let starts: Vec<u64> = merged.later.iter().map(|r| r.started_unix).collect();
        assert_eq!(starts, [3, 4]);
        assert_eq!(merged.started_unix, 1);
        // The file format round-trips exactly, and results written before
        // later runs existed still read.
        let text = serde_json::to_string(&merged).unwrap();
        assert_eq!(serde_json::from_str::<SuiteResults>(&text).unwrap(), merged);
        let text = serde_json::to_string(&full).unwrap();
        assert!(!text.contains("\"later\""));
    }
}
