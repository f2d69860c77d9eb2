//! How a target under test is described in the suite's configuration: its
//! command, files, environment and ports, and the Redis, backend and HTTPS
//! settings it may have.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::payload::DataFormat;
use crate::target::{PublishFormat, TopicRoutes};

/// How to run and talk to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// A short name for tables (`ours`, `nchan`, ...).
    pub name: String,
    /// One line saying what it is, for the report.
    #[serde(default)]
    pub description: String,
    /// The command line, each argument a template (see
    /// [`super::template`]: `{{ port }}`, `{{ dir }}`, `{{ root }}`,
    /// `{{ redis_port }}`, `{{ backend_port }}`, `{{ publish_port }}`).
    /// Relative program paths are resolved against the suite's root
    /// directory.
    pub command: Vec<String>,
    /// Files to write into `{{ dir }}` before starting: file name → template
    /// path (relative to the root directory), rendered.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// Extra environment variables (each value a template).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Path and query that subscribers `GET`.
    pub subscribe: String,
    /// Path and query that events are `POST`ed to (on `{{ publish_port }}`
    /// when `publish_port` is set, on `{{ port }}` otherwise).
    pub publish: String,
    /// Whether events are published on a port of the server's own, apart
    /// from its subscribers' (Pushpin's HTTP control API): a second free
    /// port per instance, `{{ publish_port }}` in the templates.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_port: bool,
    /// The publish body's form.
    pub publish_format: PublishFormat,
    /// Where the payload sits in an event's data.
    pub data_format: DataFormat,
    /// The topic to publish to (JSON publishing; the channel of Pushpin's,
    /// which needs one).
    #[serde(default)]
    pub topic: Option<String>,
    /// How the server names topics; the topic workloads run only against
    /// servers that have them.
    #[serde(default)]
    pub topics: Option<TopicRoutes>,
    /// A path that answers `GET` once the server is ready.
    pub ready: String,
    /// Whether the server resumes a stream from `Last-Event-ID`.
    #[serde(default)]
    pub resumes: bool,
    /// How many copies of `command` run side by side, each on its own
    /// `{{ port }}` and `{{ dir }}`: subscribers are split evenly across them and
    /// events are published through the first.
    #[serde(default = "one")]
    pub instances: u32,
    /// A Redis that the instances share, started before them and stopped
    /// after them.
    #[serde(default)]
    pub redis: Option<RedisSpec>,
    /// An application the server proxies to (Pushpin's GRIP backend),
    /// started before it and stopped after it; a part of the server, whose
    /// CPU time and memory count with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendSpec>,
    /// For a target of several processes, or one with a section of its own
    /// in the report: the single server of the suite it is set against there
    /// (measured in the same run).
    #[serde(default)]
    pub compare_with: Option<String>,
    /// The workloads this target runs (`fanout`, `publish`, ...); all when
    /// absent, except those that run only where asked for (publishing
    /// alone; see the suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<String>>,
    /// The workloads that run only where asked for (`publish`, `heavy`)
    /// that this server runs besides its others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    /// How the server serves HTTPS, for the `https` workload (which runs
    /// only against the servers that have this table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// How the server takes a batch of events (one `POST` to `publish`
    /// of NDJSON, one JSON publish body a line), for the `batch` workload,
    /// which runs only against the servers that have this table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSpec>,
}

fn one() -> u32 {
    1
}

impl ServerSpec {
    /// Whether the target is one server (no Redis, one instance; a backend
    /// it proxies to is a part of it).
    pub fn is_single(&self) -> bool {
        self.instances <= 1 && self.redis.is_none()
    }

    /// Whether the target runs the workload named `workload`.
    pub fn runs(&self, workload: &str) -> bool {
        self.workloads
            .as_ref()
            .is_none_or(|w| w.iter().any(|name| name == workload))
    }
}

/// A `redis-server` started for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// Its command line, in which `{{ port }}` is a free loopback port,
    /// `{{ dir }}` a fresh temporary directory (its working directory, for
    /// `--dir`) and `{{ root }}` the suite's root directory.
    pub command: Vec<String>,
}

/// A backend started for one target, before its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Its command line, in which `{{ port }}` is a free loopback port (the
    /// server's templates name it `{{ backend_port }}`), `{{ dir }}` a fresh
    /// temporary directory and `{{ root }}` the suite's root directory.
    pub command: Vec<String>,
    /// A path that answers `GET` once it is ready.
    pub ready: String,
}

/// How a server serves HTTPS: started with a certificate for 127.0.0.1 and
/// its key (PEM files, `{{ tls_cert }}` and `{{ tls_key }}` in its
/// templates, none otherwise), made afresh for every start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Arguments added to the command line when it serves HTTPS (templates,
    /// as the command's); a server whose configuration file says it (nginx)
    /// needs none.
    #[serde(default)]
    pub args: Vec<String>,
}

/// The most a server takes in one batch (our server's `--max-batch` and
/// `--max-batch-bytes`, as it is started): the suite refuses a `[batch]`
/// table whose batches would be over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// Events in one batch at most.
    pub max_events: u64,
    /// Bytes of one batch's body at most.
    pub max_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_port_and_a_backend_read_from_the_spec() {
        let spec: ServerSpec = toml::from_str(
            r#"
            name = "pushpin"
            command = ["pushpin", "--config", "{{ dir }}/pushpin.conf"]
            subscribe = "/sub/bench"
            publish = "/publish/"
            publish_port = true
            publish_format = "pushpin"
            data_format = "raw"
            topic = "bench"
            ready = "/ready"
            backend = { command = ["target/release/grip-backend", "--addr", "127.0.0.1:{{ port }}"], ready = "/ready" }
            "#,
        )
        .unwrap();
        assert!(spec.publish_port && spec.is_single());
        assert_eq!(spec.publish_format, PublishFormat::Pushpin);
        assert_eq!(spec.backend.as_ref().unwrap().ready, "/ready");
        // Without them, the spec reads (and writes) as before.
        let plain: ServerSpec = toml::from_str(
            r#"
            name = "x"
            command = ["x"]
            subscribe = "/s"
            publish = "/p"
            publish_format = "raw"
            data_format = "raw"
            ready = "/r"
            "#,
        )
        .unwrap();
        assert!(!plain.publish_port && plain.backend.is_none());
        let json = serde_json::to_string(&plain).unwrap();
        assert!(
            !json.contains("publish_port") && !json.contains("backend"),
            "{json}"
        );
    }
}
