//! The suite: a configuration file naming the servers and the workload
//! parameters ([`config`]), a run of every workload against every server,
//! and its results ([`results`], with the [`machine`] it ran on).
//!
//! Workloads run one after another, in the order of
//! [`crate::workloads::REGISTRY`], and within a workload every server in
//! turn, each on a freshly started process, so that the servers of one
//! workload are measured minutes apart at most and their ratios hold even
//! when the machine's speed drifts. A server runs only the workloads its
//! spec lists (all when it lists none) and those that apply to it (the
//! topic workloads when it has topics, HTTPS when it has a `tls` table),
//! and the opt-in ones (publishing alone, the heavy fan-out) only when it
//! lists them or a server that lists them is set against it (see [`runs`]).

pub mod config;
pub mod machine;
pub mod results;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;

pub use self::config::SuiteConfig;
pub use self::machine::Machine;
pub use self::results::{ServerResults, SuiteResults};
use crate::fleet::{AddrPool, FleetConfig};
use crate::json::Json;
use crate::server_proc::{RunningServer, ServerSpec};
use crate::tls::TlsFiles;
use crate::workloads::{Bench, Entry, Harness, Restart, Started, REGISTRY};

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

    async fn start(&mut self, tls: Option<&TlsFiles>) -> anyhow::Result<Started> {
        self.stop().await;
        let server = RunningServer::start_with(self.spec, self.root, self.cpus, tls).await?;
        let started = (server.target.clone(), server.processes());
        self.current = Some(server);
        Ok(started)
    }
}

impl Restart for Managed<'_> {
    fn restart(&mut self) -> LocalBoxFuture<'_, anyhow::Result<Started>> {
        Box::pin(self.start(None))
    }

    fn restart_tls<'a>(
        &'a mut self,
        tls: &'a TlsFiles,
    ) -> LocalBoxFuture<'a, anyhow::Result<Started>> {
        Box::pin(self.start(Some(tls)))
    }
}

/// Which workloads to run, in the registry's order.
#[derive(Clone)]
pub struct Selection {
    /// For each registered workload, whether it runs.
    chosen: Vec<bool>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.workloads().map(|w| w.name()))
            .finish()
    }
}

impl Selection {
    /// The names `--workloads` takes: every workload's, and each kind's
    /// (`topics`: the topic workloads).
    pub fn names() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = REGISTRY.iter().map(|w| w.name()).collect();
        for group in REGISTRY.iter().filter_map(|w| w.group()) {
            if !names.contains(&group) {
                names.push(group);
            }
        }
        names
    }

    /// The workloads named (or of a kind named); when `names` is empty,
    /// every one that runs by default (all but HTTPS).
    ///
    /// # Errors
    /// For an unknown name.
    pub fn parse(names: &[String]) -> anyhow::Result<Self> {
        let chosen = REGISTRY
            .iter()
            .map(|w| {
                if names.is_empty() {
                    w.by_default()
                } else {
                    names
                        .iter()
                        .any(|n| n == w.name() || Some(n.as_str()) == w.group())
                }
            })
            .collect();
        if let Some(unknown) = names.iter().find(|n| !Self::names().contains(&n.as_str())) {
            anyhow::bail!("unknown workload {unknown:?}: {}", Self::names().join(", "));
        }
        Ok(Self { chosen })
    }

    /// The workloads chosen, in the order they run.
    pub fn workloads(&self) -> impl Iterator<Item = &'static dyn Entry> + '_ {
        REGISTRY
            .iter()
            .zip(&self.chosen)
            .filter_map(|(w, &chosen)| chosen.then_some(*w))
    }
}

/// One job of a workload: the workload, its index among the workload's
/// jobs, and what the log and the errors call it.
type Job = (&'static dyn Entry, usize, String);

/// The selected workloads' jobs that the configuration has tables for, in
/// order.
fn jobs(config: &SuiteConfig, selection: &Selection) -> Vec<Job> {
    let mut jobs = Vec::new();
    for w in selection.workloads() {
        if let Some(table) = config.workloads.get(w.section()) {
            jobs.extend(
                w.jobs(table)
                    .into_iter()
                    .enumerate()
                    .map(|(i, title)| (w, i, title)),
            );
        }
    }
    jobs
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
    for job in jobs(config, &selection) {
        for (spec, out) in specs.iter().zip(&mut results) {
            if !runs(config, spec, job.0) {
                continue;
            }
            let server = Managed {
                spec,
                root,
                cpus: config.server_cpus.as_deref(),
                current: None,
            };
            match attempts(&mut harness, server, config, &job).await {
                Ok(result) => {
                    job.0.log(&spec.name, &result);
                    out.record(job.0, result);
                }
                Err(e) => out.errors.push(format!("{}: {e:#}", job.2)),
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

/// Runs `job` against `server`, again (after waiting for a quiet machine)
/// while other processes used the CPUs during it, up to the configured
/// retries; the last attempt's outcome.
async fn attempts(
    harness: &mut Harness,
    mut server: Managed<'_>,
    config: &SuiteConfig,
    (workload, index, title): &Job,
) -> anyhow::Result<Json> {
    let table = &config.workloads[workload.section()];
    let name = &server.spec.name;
    let mut attempt = 0;
    loop {
        attempt += 1;
        tracing::info!(server = %name, job = %title, attempt, "start");
        let bench = Bench {
            harness: &mut *harness,
            server: &mut server,
        };
        let outcome = workload.run(bench, table, *index).await;
        server.stop().await;
        let disturbance = outcome.as_ref().map_or(0.0, |r| workload.disturbance(r));
        if disturbance <= config.disturbance_limit || attempt > config.retries {
            if disturbance > config.disturbance_limit {
                tracing::warn!(server = %name, job = %title, disturbance, "disturbed; keeping the last attempt");
            }
            return outcome;
        }
        tracing::warn!(
            server = %name,
            job = %title,
            disturbance,
            "other processes used the CPUs; waiting for quiet and running it again"
        );
        wait_quiet(Duration::from_secs(config.quiet_wait_seconds)).await;
    }
}

/// Whether the server `spec` of `config` runs `workload`: the workloads its
/// `workloads` list names (every one when it has none) that apply to it
/// (the topic workloads only when it has topics), and an opt-in one only
/// when its `workloads` or `also` list names it or the `workloads` list of
/// a server set against it does (the log in memory is measured next to the
/// log on disk, and no one else).
fn runs(config: &SuiteConfig, spec: &ServerSpec, workload: &dyn Entry) -> bool {
    let name = workload.name();
    if !workload.applies_to(spec) {
        return false;
    }
    if !workload.opt_in() {
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
