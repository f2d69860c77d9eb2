//! The suite's configuration file: how the load generator runs, each
//! workload's table (read by the workload the registry names for it), and
//! the servers.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use crate::json::Json;
use crate::server_proc::ServerSpec;
use crate::target::PublishFormat;
use crate::workloads::batch::Batch;
use crate::workloads::{Workload, REGISTRY};

/// The suite's configuration file.
#[derive(Debug, Clone, PartialEq)]
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
    /// Each configured workload's table, by its name in the file (the
    /// workload's section; see [`crate::workloads::REGISTRY`]), as the
    /// workload reads it.
    pub workloads: BTreeMap<String, Json>,
    /// A job is run again when CPU time used by neither the server nor
    /// the load generator exceeded this share of a core in one of its steps.
    pub disturbance_limit: f64,
    /// How many times a disturbed job is run again at most.
    pub retries: u32,
    /// How long to wait for a quiet machine before running again, s.
    pub quiet_wait_seconds: u64,
    /// The servers.
    pub servers: Vec<ServerSpec>,
    /// Commands whose output names a version, for the report: name → argv.
    pub versions: BTreeMap<String, Vec<String>>,
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

/// The file as it is written, before each workload reads its table.
#[derive(Deserialize)]
struct Raw {
    server_cpus: Option<String>,
    loadgen_cpus: Option<String>,
    per_worker: u32,
    connect_concurrency: u32,
    publish_connections: usize,
    #[serde(default = "default_disturbance_limit")]
    disturbance_limit: f64,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_quiet_wait")]
    quiet_wait_seconds: u64,
    #[serde(rename = "server")]
    servers: Vec<ServerSpec>,
    #[serde(default)]
    versions: BTreeMap<String, Vec<String>>,
    /// Everything else: the workloads' tables.
    #[serde(flatten)]
    tables: BTreeMap<String, Json>,
}

impl TryFrom<Raw> for SuiteConfig {
    type Error = String;

    fn try_from(raw: Raw) -> Result<Self, String> {
        let mut workloads = BTreeMap::new();
        for (name, table) in raw.tables {
            let workload = REGISTRY
                .iter()
                .find(|w| w.section() == name)
                .ok_or_else(|| format!("unknown field `{name}`"))?;
            if table.is_null() {
                continue;
            }
            let table = workload
                .read_config(table)
                .map_err(|e| format!("[{name}]: {e}"))?;
            workloads.insert(name, table);
        }
        if let Some(w) = REGISTRY
            .iter()
            .find(|w| w.required() && !workloads.contains_key(w.section()))
        {
            return Err(format!("missing field `{}`", w.section()));
        }
        Ok(Self {
            server_cpus: raw.server_cpus,
            loadgen_cpus: raw.loadgen_cpus,
            per_worker: raw.per_worker,
            connect_concurrency: raw.connect_concurrency,
            publish_connections: raw.publish_connections,
            workloads,
            disturbance_limit: raw.disturbance_limit,
            retries: raw.retries,
            quiet_wait_seconds: raw.quiet_wait_seconds,
            servers: raw.servers,
            versions: raw.versions,
        })
    }
}

impl<'de> Deserialize<'de> for SuiteConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Raw::deserialize(d)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for SuiteConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("server_cpus", &self.server_cpus)?;
        map.serialize_entry("loadgen_cpus", &self.loadgen_cpus)?;
        map.serialize_entry("per_worker", &self.per_worker)?;
        map.serialize_entry("connect_concurrency", &self.connect_concurrency)?;
        map.serialize_entry("publish_connections", &self.publish_connections)?;
        for w in REGISTRY {
            if let Some(table) = self.workloads.get(w.section()) {
                map.serialize_entry(w.section(), table)?;
            }
        }
        map.serialize_entry("disturbance_limit", &self.disturbance_limit)?;
        map.serialize_entry("retries", &self.retries)?;
        map.serialize_entry("quiet_wait_seconds", &self.quiet_wait_seconds)?;
        map.serialize_entry("server", &self.servers)?;
        map.serialize_entry("versions", &self.versions)?;
        map.end()
    }
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
            if let Some(limits) = &s.batch {
                anyhow::ensure!(
                    s.publish_format == PublishFormat::Json,
                    "{}: server {:?} has a `batch` table but does not publish JSON (a batch \
                     is JSON publish bodies, one a line)",
                    path.display(),
                    s.name
                );
                if let Some(params) = config.section::<Batch>() {
                    params.fits(limits, s.topic.as_deref()).map_err(|e| {
                        anyhow::anyhow!("{}: server {:?}: {e}", path.display(), s.name)
                    })?;
                }
            }
        }
        Ok(config)
    }

    /// Workload `W`'s table, when the configuration has it.
    pub fn section<W: Workload>(&self) -> Option<W::Config> {
        self.workloads.get(W::SECTION)?.to_typed().ok()
    }
}
