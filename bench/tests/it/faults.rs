//! Two rows of the fault matrix that need many clients, run by the load
//! generator's own worker processes against the real `server` binary: a
//! reconnect storm of 10,000 clients at once within the history window,
//! spread over several processes (the open-files limit is 20,000 per
//! process), and 5% of subscribers that stop reading while the others'
//! events keep flowing. Correctness only; the figures they print
//! (`fault matrix:` lines) are the ones RELIABILITY.md quotes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bench::fleet::{AddrPool, FleetConfig};
use bench::payload::DataFormat;
use bench::procstat::ServerProcess;
use bench::target::{Endpoint, PublishFormat, Target};
use bench::workloads::{self, Harness, SlowParams, StormParams};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The workspace's `server` binary, built when a narrower test run did not
/// build it.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FAULTS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_bench"));
    let server = bench.with_file_name(format!("server{}", std::env::consts::EXE_SUFFIX));
    if !server.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "server", "--bin", "server"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the server failed");
    }
    server
}

async fn start_server(args: &[&str]) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(server_binary())
        .args(["--addr", "127.0.0.1:0", "--ticker-interval", "off"])
        .args(["--dist", "/nonexistent"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the server binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("the server announces its address")
    .expect("stdout readable")
    .expect("a line on stdout");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");
    (child, addr)
}

fn harness(per_worker: u32) -> Harness {
    Harness {
        fleet: FleetConfig {
            worker_exe: PathBuf::from(env!("CARGO_BIN_EXE_bench")),
            per_worker,
            connect_concurrency: 256,
            connect_timeout: Duration::from_secs(60),
        },
        addrs: AddrPool::new(),
        // One publishing connection: the events' order in the log is the
        // order the load generator numbered them, which its replay
        // accounting relies on.
        publish_connections: 1,
    }
}

fn target(addr: std::net::SocketAddr) -> Target {
    Target {
        subscribe: vec![Endpoint {
            addr,
            path: "/stream".to_owned(),
        }],
        publish: Endpoint {
            addr,
            path: "/publish".to_owned(),
        },
        publish_format: PublishFormat::Json,
        data_format: DataFormat::ServerEvent,
        topic: None,
        topics: None,
    }
}

fn process(child: &Child) -> Vec<ServerProcess> {
    vec![ServerProcess {
        name: "server".to_owned(),
        pid: child.id().expect("the server runs"),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients_reconnect_at_once_and_miss_nothing() {
    const CLIENTS: u32 = 10_000;
    let (mut server, addr) = start_server(&["--max-subscribers", "20000"]).await;
    // Four worker processes of 2,500 clients each.
    let storm = workloads::reconnect_storm(
        &mut harness(CLIENTS / 4),
        &target(addr),
        &process(&server),
        StormParams {
            subscribers: CLIENTS,
            rate: 20.0,
            before_seconds: 1.5,
            // Long enough for every client to be back before publishing
            // ends: the step's drain wait counts the clients that are.
            during_seconds: 5.0,
            behind: 10,
            payload_bytes: 100,
        },
    )
    .await
    .expect("the storm runs");
    assert_eq!(storm.subscribers, CLIENTS, "{storm:?}");
    assert_eq!(
        storm.caught_up, CLIENTS,
        "every client caught up: {storm:?}"
    );
    assert_eq!(storm.lost, 0, "{storm:?}");
    assert_eq!(storm.duplicated, 0, "{storm:?}");
    assert_eq!(storm.reordered, 0, "{storm:?}");
    assert_eq!(storm.resets, 0, "all within the history: {storm:?}");
    assert_eq!(
        storm.replayed,
        10 * u64::from(CLIENTS),
        "each client got the 10 events it asked for again: {storm:?}"
    );
    eprintln!(
        "fault matrix: {CLIENTS} clients in 4 processes reconnected at once, 10 events behind: \
         {} caught up, {} events replayed, 0 lost, 0 twice, 0 out of order, 0 resets \
         (p99 catch-up {:.0} ms)",
        storm.caught_up, storm.replayed, storm.catch_up.p99_ms
    );
    server.kill().await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_of_subscribers_stop_reading_and_the_others_miss_nothing() {
    const SUBSCRIBERS: u32 = 100;
    const STALLED: u32 = 5;
    let (mut server, addr) = start_server(&["--max-lag", "50"]).await;
    let slow = workloads::slow_consumer(
        &mut harness(SUBSCRIBERS / 2),
        &target(addr),
        &process(&server),
        SlowParams {
            subscribers: SUBSCRIBERS,
            stalled: STALLED,
            // 400 KB/s to each: a stalled subscriber's socket buffers (a
            // few MB on loopback) fill within seconds, and then its lag
            // grows past --max-lag.
            rate: 100.0,
            seconds: 15.0,
            payload_bytes: 4096,
        },
    )
    .await
    .expect("the slow-consumer case runs");
    let step = &slow.step;
    let flowing = u64::from(SUBSCRIBERS - STALLED);
    assert_eq!(step.expected, step.events * flowing, "{step:?}");
    assert_eq!(step.delivered, step.expected, "{step:?}");
    assert_eq!(step.lost, 0, "{step:?}");
    assert_eq!(step.duplicated, 0, "{step:?}");
    assert_eq!(step.reordered, 0, "{step:?}");
    assert_eq!(
        slow.stalled_closed, STALLED,
        "every stalled subscriber was cut: {slow:?}"
    );
    eprintln!(
        "fault matrix: {STALLED} of {SUBSCRIBERS} subscribers stalled: {} cut by the server, \
         the other {flowing} got all {} events (0 lost, 0 twice, p99 {:.1} ms)",
        slow.stalled_closed, step.events, step.latency.p99_ms
    );
    server.kill().await.expect("the server stops");
}
