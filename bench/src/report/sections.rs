//! The report's sections beyond the main tables, each from the newest run
//! (the main one or one merged in later) that measured it: a target of
//! several servers sharing a Redis set against its single server (`pair`),
//! the topic workloads (`topics`), and one server with its log on disk or
//! in a Redis of its own set against the one with its log in memory
//! (`disk`), and publishing in batches next to the reference server's
//! single-event publishing (`batches`); and which servers the main tables
//! show, and how disturbed a run was.

use serde::Serialize;

use crate::server_proc::ServerSpec;
use crate::suite::{ServerResults, SuiteResults};
use crate::workloads::batch::Batch;
use crate::workloads::fanout::Fanout;
use crate::workloads::publish::Publish;
use crate::workloads::saturation::Saturation;
use crate::workloads::slow::Slow;
use crate::workloads::storm::Storm;
use crate::workloads::{Entry, Workload, REGISTRY};

/// The spec of the server `name` in the run's configuration.
fn spec<'a>(run: &'a SuiteResults, name: &str) -> Option<&'a ServerSpec> {
    run.config.servers.iter().find(|s| s.name == name)
}

/// The run's single servers that are not set against another one (every
/// server when the configuration does not say otherwise): a target set
/// against another server has a section of its own.
pub(super) fn single_servers(run: &SuiteResults) -> Vec<&ServerResults> {
    run.servers
        .iter()
        .filter(|s| spec(run, &s.name).is_none_or(|x| x.is_single() && x.compare_with.is_none()))
        .collect()
}

/// Whether anything was measured for `s` (of the main workloads: fan-out,
/// saturation, storm, slow consumer).
fn measured(s: &ServerResults) -> bool {
    [
        Fanout::SECTION,
        Saturation::SECTION,
        Storm::SECTION,
        Slow::SECTION,
    ]
    .iter()
    .any(|w| s.has(w))
}

/// The highest share of a core used by neither the servers nor the load
/// generator during any step of `servers` (of the workloads the run's
/// summaries count).
pub(super) fn disturbance<'a>(servers: impl IntoIterator<Item = &'a ServerResults>) -> f64 {
    let mut worst: f64 = 0.0;
    for s in servers {
        for w in REGISTRY.iter().filter(|w| w.summarised()) {
            if let Some(held) = s.workloads.get(w.section()) {
                worst = worst.max(w.held_disturbance(held));
            }
        }
    }
    worst
}

/// A target of several processes (servers sharing a Redis), the single
/// server it is set against, and the run that measured both.
#[derive(Debug, Serialize)]
pub(super) struct Pair<'a> {
    /// The run that measured both.
    run: &'a SuiteResults,
    /// The pair's spec.
    spec: &'a ServerSpec,
    /// The pair's results.
    pair: &'a ServerResults,
    /// The single server's results.
    single: &'a ServerResults,
    /// Whether `run` is a later run than the main one.
    later: bool,
    /// The highest share of a core used by neither of them nor the load
    /// generator in any step of `run`.
    disturbance: f64,
}

/// The newest run (the main one or a later one) that measured a target of
/// several servers and the single server its spec names.
pub(super) fn find_pair(results: &SuiteResults) -> Option<Pair<'_>> {
    let mut runs: Vec<&SuiteResults> = std::iter::once(results).chain(&results.later).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_unix));
    runs.into_iter().find_map(|run| {
        run.servers.iter().find_map(|pair| {
            let spec = spec(run, &pair.name).filter(|s| s.instances > 1)?;
            let name = spec.compare_with.as_deref()?;
            let single = run.servers.iter().find(|s| s.name == name)?;
            (measured(pair) && measured(single)).then_some(Pair {
                run,
                spec,
                pair,
                single,
                later: !std::ptr::eq(run, results),
                disturbance: disturbance([single, pair]),
            })
        })
    })
}

/// The newest run (the main one or one merged in later) that ran the topic
/// workloads, with its single servers that have topic results and the
/// reference server among them.
#[derive(Debug, Serialize)]
pub(super) struct Topics<'a> {
    /// The run.
    run: &'a SuiteResults,
    /// Its single servers with topic results, in order.
    servers: Vec<&'a ServerResults>,
    /// The reference server's results in it.
    #[serde(rename = "ref")]
    reference: Option<&'a ServerResults>,
    /// Whether `run` is a later run than the main one.
    later: bool,
    /// The highest share of a core used by neither the servers nor the
    /// load generator in any topic step of `run`.
    disturbance: f64,
}

/// Whether `section` is a topic workload's.
fn is_topic_workload(section: &str) -> bool {
    REGISTRY
        .iter()
        .any(|w| w.section() == section && w.group() == Some("topics"))
}

fn has_topic_results(s: &ServerResults) -> bool {
    s.workloads.keys().any(|k| is_topic_workload(k))
}

pub(super) fn find_topics<'a>(results: &'a SuiteResults, reference: &str) -> Option<Topics<'a>> {
    let mut runs: Vec<&SuiteResults> = std::iter::once(results).chain(&results.later).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_unix));
    runs.into_iter().find_map(|run| {
        let servers: Vec<&ServerResults> = single_servers(run)
            .into_iter()
            .filter(|s| has_topic_results(s))
            .collect();
        if servers.is_empty() {
            return None;
        }
        // Only the topic steps count here.
        let topic_only: Vec<ServerResults> = servers
            .iter()
            .map(|s| ServerResults {
                workloads: s
                    .workloads
                    .iter()
                    .filter(|(k, _)| is_topic_workload(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                ..ServerResults::default()
            })
            .collect();
        Some(Topics {
            run,
            reference: servers.iter().copied().find(|s| s.name == reference),
            servers,
            later: !std::ptr::eq(run, results),
            disturbance: disturbance(&topic_only),
        })
    })
}

/// One server with its log elsewhere than in memory (on disk, or in a
/// Redis of its own) next to the server it names, which keeps it in memory:
/// the newest run (the main one or one merged in later) that measured one
/// of them.
#[derive(Debug, Serialize)]
pub(super) struct LogTargets<'a> {
    /// The run.
    run: &'a SuiteResults,
    /// The server with its log in memory that the targets name, when the
    /// run measured it.
    base: Option<&'a ServerResults>,
    /// The targets that name it, in order, with their specs.
    targets: Vec<LogTarget<'a>>,
    /// Whether `run` is a later run than the main one.
    later: bool,
    /// The highest share of a core used by neither the server side nor the
    /// load generator in any step of these targets and `base` in `run`.
    disturbance: f64,
}

/// One target of [`LogTargets`].
#[derive(Debug, Serialize)]
pub(super) struct LogTarget<'a> {
    /// Its results.
    results: &'a ServerResults,
    /// Its spec.
    spec: &'a ServerSpec,
}

/// Whether anything of the disk section was measured for `s`.
fn has_log_results(s: &ServerResults) -> bool {
    s.has(Publish::SECTION) || s.has(Fanout::SECTION)
}

pub(super) fn find_log_targets(results: &SuiteResults) -> Option<LogTargets<'_>> {
    let mut runs: Vec<&SuiteResults> = std::iter::once(results).chain(&results.later).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_unix));
    runs.into_iter().find_map(|run| {
        // One server each (a Redis of its own at most), set against another.
        let targets: Vec<LogTarget<'_>> = run
            .servers
            .iter()
            .filter_map(|s| {
                let spec = spec(run, &s.name)?;
                (spec.instances <= 1 && spec.compare_with.is_some() && has_log_results(s))
                    .then_some(LogTarget { results: s, spec })
            })
            .collect();
        let name = targets.first()?.spec.compare_with.as_deref()?;
        let targets: Vec<LogTarget<'_>> = targets
            .into_iter()
            .filter(|t| t.spec.compare_with.as_deref() == Some(name))
            .collect();
        let base = run.servers.iter().find(|s| s.name == name);
        Some(LogTargets {
            run,
            base,
            disturbance: disturbance(base.into_iter().chain(targets.iter().map(|t| t.results))),
            targets,
            later: !std::ptr::eq(run, results),
        })
    })
}

/// The newest run (the main one or one merged in later) that published in
/// batches: its targets with batch results, and the reference server's
/// publishing alone in the same run (it takes no batches: its single-event
/// rate is what the batches are set against).
#[derive(Debug, Serialize)]
pub(super) struct Batches<'a> {
    /// The run.
    run: &'a SuiteResults,
    /// Its servers with batch results, in order.
    servers: Vec<&'a ServerResults>,
    /// The reference server's results in it, when it published alone there.
    #[serde(rename = "ref")]
    reference: Option<&'a ServerResults>,
    /// Whether `run` is a later run than the main one.
    later: bool,
    /// The highest share of a core used by neither the server side nor the
    /// load generator in any batch step of `run`, or in the reference's
    /// publishing.
    disturbance: f64,
}

pub(super) fn find_batches<'a>(results: &'a SuiteResults, reference: &str) -> Option<Batches<'a>> {
    let mut runs: Vec<&SuiteResults> = std::iter::once(results).chain(&results.later).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_unix));
    runs.into_iter().find_map(|run| {
        let servers: Vec<&ServerResults> = run
            .servers
            .iter()
            .filter(|s| s.has(Batch::SECTION))
            .collect();
        if servers.is_empty() {
            return None;
        }
        let reference = run
            .servers
            .iter()
            .find(|s| s.name == reference && s.has(Publish::SECTION));
        let batch_steps = servers
            .iter()
            .filter_map(|s| s.workloads.get(Batch::SECTION))
            .map(|held| Entry::held_disturbance(&Batch, held));
        let reference_steps = reference
            .and_then(|s| s.workloads.get(Publish::SECTION))
            .map(|held| Entry::held_disturbance(&Publish, held));
        let disturbance = batch_steps.chain(reference_steps).fold(0.0, f64::max);
        Some(Batches {
            run,
            servers,
            reference,
            later: !std::ptr::eq(run, results),
            disturbance,
        })
    })
}
