//! A suite run's results: the machine, the configuration, and for each
//! server what each workload measured (under the workload's section, in the
//! registry's order), with later runs of some servers or workloads merged
//! in next to them.

use std::collections::{BTreeMap, BTreeSet};

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::config::SuiteConfig;
use super::machine::Machine;
use crate::json::Json;
use crate::workloads::{Entry, Workload, REGISTRY};

/// Everything measured for one server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerResults {
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Whether it resumes from `Last-Event-ID`.
    pub resumes: bool,
    /// What each workload that ran measured, by the workload's section: its
    /// result, or a sweep's list of them (see [`crate::workloads::Entry`]).
    pub workloads: BTreeMap<String, Json>,
    /// Workloads that could not run, and why.
    pub errors: Vec<String>,
}

impl ServerResults {
    /// Keeps what one job of `workload` measured: as its result, or added
    /// to a sweep's list.
    pub fn record(&mut self, workload: &dyn Entry, result: Json) {
        self.keep(workload.section(), workload.sweep(), result);
    }

    /// Keeps `output` as what `W` measured (added to the list of a sweep).
    ///
    /// # Panics
    /// When `output` does not serialize (results always do).
    pub fn set<W: Workload>(&mut self, output: &W::Output) {
        let value = Json::from_typed(output).expect("results serialize");
        self.keep(W::SECTION, W::SWEEP, value);
    }

    fn keep(&mut self, section: &str, sweep: bool, result: Json) {
        if !sweep {
            self.workloads.insert(section.to_owned(), result);
            return;
        }
        match self
            .workloads
            .entry(section.to_owned())
            .or_insert_with(|| Json::Array(Vec::new()))
        {
            Json::Array(list) => list.push(result),
            other => *other = Json::Array(vec![result]),
        }
    }

    /// What `W` measured, when it ran (a sweep: see [`ServerResults::sweep`]).
    pub fn get<W: Workload>(&self) -> Option<W::Output> {
        self.workloads.get(W::SECTION)?.to_typed().ok()
    }

    /// Every result of the sweep `W`, in the order they were measured.
    pub fn sweep<W: Workload>(&self) -> Vec<W::Output> {
        match self.workloads.get(W::SECTION) {
            Some(Json::Array(list)) => list.iter().filter_map(|v| v.to_typed().ok()).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the workload with section `section` has a result here.
    pub fn has(&self, section: &str) -> bool {
        self.workloads.contains_key(section)
    }
}

impl Serialize for ServerResults {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("description", &self.description)?;
        map.serialize_entry("resumes", &self.resumes)?;
        for w in REGISTRY {
            match self.workloads.get(w.section()) {
                Some(result) => map.serialize_entry(w.section(), result)?,
                None if w.required() && w.sweep() => {
                    map.serialize_entry(w.section(), &Json::Array(Vec::new()))?;
                }
                None if w.required() => map.serialize_entry(w.section(), &Json::Null)?,
                None => {}
            }
        }
        map.serialize_entry("errors", &self.errors)?;
        map.end()
    }
}

/// A server's results as they are written.
#[derive(Deserialize)]
struct RawServer {
    name: String,
    description: String,
    resumes: bool,
    errors: Vec<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, Json>,
}

impl<'de> Deserialize<'de> for ServerResults {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawServer::deserialize(d)?;
        // Only the registered workloads' results; a workload that did not
        // run is written as nothing, `null` or an empty list.
        let workloads = raw
            .rest
            .into_iter()
            .filter(|(key, value)| {
                REGISTRY.iter().any(|w| w.section() == key)
                    && !value.is_null()
                    && !matches!(value, Json::Array(list) if list.is_empty())
            })
            .collect();
        Ok(Self {
            name: raw.name,
            description: raw.description,
            resumes: raw.resumes,
            workloads,
            errors: raw.errors,
        })
    }
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
    fn measured(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for s in &self.servers {
            for w in REGISTRY.iter().filter(|w| w.summarised()) {
                if let Some(held) = s.workloads.get(w.section()) {
                    out.extend(w.measured(held).into_iter().map(|m| (s.name.clone(), m)));
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
