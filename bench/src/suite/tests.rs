//! The suite's tests: the shipped configuration, which servers run which
//! workloads, and merging results.

use std::path::Path;

use super::*;
use crate::target::PublishFormat;
use crate::workloads::batch::Batch;
use crate::workloads::bystanders::Bystanders;
use crate::workloads::fanout::Fanout;
use crate::workloads::heavy::Heavy;
use crate::workloads::per_user::PerUser;
use crate::workloads::prefix::Prefix;
use crate::workloads::publish::Publish;
use crate::workloads::retention::Retention;
use crate::workloads::saturation::Saturation;
use crate::workloads::slow::Slow;
use crate::workloads::{self, Entry};

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
    assert!(config
        .section::<Fanout>()
        .unwrap()
        .subscribers
        .windows(2)
        .all(|w| w[0] < w[1]));
    let saturation = config.section::<Saturation>().unwrap();
    assert!(saturation.rates.windows(2).all(|w| w[0] < w[1]));
    let slow = config.section::<Slow>().unwrap();
    assert!(slow.stalled < slow.subscribers);
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
    let r = config.section::<Retention>().unwrap();
    assert!(r.away_seconds < r.after_seconds);
    assert!(r.away_seconds >= 3.0 * r.quiet_every_seconds);
    assert!(config.section::<Bystanders>().is_some() && config.section::<Prefix>().is_some());
    assert_eq!(config.section::<PerUser>().unwrap().per_topic, 1);
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
        "redis://127.0.0.1:{{ redis_port }}/".to_owned(),
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
            // The topic workloads, the heavy fan-out and HTTPS run
            // on the single server only.
            topics: single.topics.clone(),
            also: single.also.clone(),
            tls: single.tls.clone(),
            ..pair.clone()
        },
        *single,
        "every other setting is the single server's"
    );
    let redis = pair.redis.as_ref().unwrap().command.join(" ");
    assert!(redis.starts_with("redis-server --bind 127.0.0.1 --port {{ port }} --dir {{ dir }} "));
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
    let running = |workload: &dyn Entry| -> Vec<&str> {
        config
            .servers
            .iter()
            .filter(|s| runs(&config, s, workload))
            .map(|s| s.name.as_str())
            .collect()
    };
    assert_eq!(
        running(&Publish),
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
    // Batches: our server in each log mode, none of the peers (they take
    // no batches), not the Redis pair (which does not ask for them).
    assert_eq!(
        running(&Batch),
        [
            "ours",
            "ours-disk-always",
            "ours-disk-batch",
            "ours-redis-always",
            "ours-redis-everysec"
        ]
    );
    assert_eq!(running(&Heavy), ["ours", "nchan", "warp-broadcast"]);
    let fanout = running(&Fanout);
    assert!(fanout.contains(&"ours-disk-always") && fanout.contains(&"ours-disk-batch"));
    assert!(!fanout.contains(&"ours-redis-always") && fanout.contains(&"nchan"));
    assert!(!running(&Saturation).contains(&"ours-disk-always"));
    assert_eq!(
        running(&PerUser),
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
            ["--data-dir", "{{ dir }}/data"]
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
    let publish = config.section::<Publish>().unwrap();
    assert!(publish.publishers.windows(2).all(|w| w[0] < w[1]));
}

/// A `[batch]` table whose batches a server would refuse (more events or
/// bytes than its `batch` table says it takes) is refused when the
/// configuration is read, naming the server; so is a `batch` table on a
/// server that does not publish JSON.
#[test]
fn batches_over_a_servers_bounds_are_refused_up_front() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/suite.toml");
    let shipped = std::fs::read_to_string(&path).unwrap();
    let batch = SuiteConfig::load(&path)
        .unwrap()
        .section::<Batch>()
        .unwrap();
    assert_eq!(batch.events, 1000);
    let load = |text: &str| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        SuiteConfig::load(file.path()).map_err(|e| format!("{e:#}"))
    };
    let table = "[batch]\npublishers = [1, 4]\nevents = 1000\n";
    assert!(shipped.contains(table));
    let error =
        load(&shipped.replace(table, "[batch]\npublishers = [1, 4]\nevents = 1001\n")).unwrap_err();
    assert!(
        error.contains("server \"ours\": [batch] events = 1001 is over the server's 1000"),
        "{error}"
    );
    let large = shipped.replace(
        "events = 1000\nseconds = 5\npayload_bytes = 100\n",
        "events = 1000\nseconds = 5\npayload_bytes = 2000\n",
    );
    let error = load(&large).unwrap_err();
    assert!(
        error.contains("bytes, over the server's 1048576"),
        "{error}"
    );
    let raw = shipped.replace(
        "publish_format = \"raw\"\n",
        "publish_format = \"raw\"\nbatch = { max_events = 1, max_bytes = 1 }\n",
    );
    let error = load(&raw).unwrap_err();
    assert!(
        error.contains("server \"nchan\" has a `batch` table"),
        "{error}"
    );
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
        tls: None,
    };
    let read = |name: &str| {
        let template = root.join(&pushpin.files[name]);
        crate::server_proc::render(&std::fs::read_to_string(template).unwrap(), p).unwrap()
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
        assert!(!line.contains("_port }}"), "left unrendered: {line}");
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
        server.set::<Fanout>(&workloads::FanoutResult {
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
