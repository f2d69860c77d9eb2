//! The load generator's smoke run against the real servers: our `server`
//! binary and the warp baseline, each on 127.0.0.1:0, and two of our servers
//! sharing a Redis (the suite's `ours-redis-pair` target, which needs
//! `redis-server` on PATH), with subscribers in two worker processes.
//! Asserts correctness only (every event delivered once and in order,
//! nothing lost, the reconnect storm resumes without gaps; with topics,
//! every subscriber gets exactly its topics' events and a quiet topic's
//! subscribers resume exactly; batches are acknowledged whole, and a wrong
//! count in an answer is a failure); timings are measured but never judged
//! here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bench::fleet::{AddrPool, FleetConfig};
use bench::payload::DataFormat;
use bench::procstat::ServerProcess;
use bench::server_proc::RunningServer;
use bench::suite::SuiteConfig;
use bench::target::{Endpoint, PublishFormat, Target, TopicRoutes};
use bench::workloads::batch::{self, BatchParams, BatchResult};
use bench::workloads::{self, Harness, SmokeResult, StepResult, TopicSmokeResult};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const SUBSCRIBERS: u32 = 40;

/// The workspace's `server` binary, next to this package's binaries; built
/// when a narrower test run did not build it.
fn server_binary() -> PathBuf {
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

/// Starts `program args`, which prints `listening on http://ADDR` on stdout,
/// and returns the process and that address.
async fn start(program: &Path, args: &[&str]) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server announces its address within 30 s")
        .expect("stdout readable")
        .expect("a line on stdout");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");
    (child, addr)
}

fn harness() -> Harness {
    Harness {
        fleet: FleetConfig {
            worker_exe: PathBuf::from(env!("CARGO_BIN_EXE_bench")),
            per_worker: SUBSCRIBERS / 2,
            connect_concurrency: 16,
            connect_timeout: Duration::from_secs(30),
        },
        addrs: AddrPool::new(),
        publish_connections: 4,
    }
}

fn target(addr: std::net::SocketAddr, data_format: DataFormat) -> Target {
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
        data_format,
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

fn assert_every_event_once_in_order(step: &StepResult) {
    assert_eq!(step.subscribers, SUBSCRIBERS);
    assert_eq!(
        step.active, SUBSCRIBERS,
        "every subscriber connected: {step:?}"
    );
    assert_eq!(step.connect_failed, 0, "{step:?}");
    assert!(step.events > 0);
    assert_eq!(step.expected, step.events * u64::from(SUBSCRIBERS));
    assert_eq!(step.delivered, step.expected, "{step:?}");
    assert_eq!(step.lost, 0, "{step:?}");
    assert_eq!(step.duplicated, 0, "{step:?}");
    assert_eq!(step.reordered, 0, "{step:?}");
    assert_eq!(step.publish_failed, 0, "{step:?}");
    assert!(step.drained, "{step:?}");
    assert_eq!(step.latency.count, step.delivered);
    assert_eq!(step.completion.count, step.events);
}

#[tokio::test]
async fn smoke_against_our_server() {
    let (mut server, addr) = start(
        &server_binary(),
        &["--addr", "127.0.0.1:0", "--ticker-interval", "off"],
    )
    .await;
    let SmokeResult { fanout, storm } = workloads::smoke(
        &mut harness(),
        &target(addr, DataFormat::ServerEvent),
        &process(&server),
        SUBSCRIBERS,
        true,
    )
    .await
    .expect("the smoke run completes");
    assert_every_event_once_in_order(&fanout);
    assert!(
        fanout.server_cpu_s.is_some(),
        "the server's /proc entry is read"
    );
    assert_resumed_without_gaps(storm);
    server.kill().await.expect("the server stops");
}

fn assert_resumed_without_gaps(storm: Option<workloads::StormResult>) {
    let storm = storm.expect("a storm for a resuming server");
    assert_eq!(storm.caught_up, SUBSCRIBERS, "{storm:?}");
    assert_eq!(storm.lost, 0, "resuming leaves no gap: {storm:?}");
    assert_eq!(storm.duplicated, 0, "{storm:?}");
    assert_eq!(
        storm.replayed,
        5 * u64::from(SUBSCRIBERS),
        "each subscriber got the 5 events it asked for again: {storm:?}"
    );
    assert_eq!(storm.reordered, 0, "{storm:?}");
    assert_eq!(storm.resets, 0, "{storm:?}");
    assert_eq!(storm.connect_errors, 0, "{storm:?}");
    assert_eq!(storm.catch_up.count, u64::from(SUBSCRIBERS));
    assert_every_event_once_in_order(&storm.during);
}

#[tokio::test]
async fn smoke_against_the_baseline() {
    let (mut server, addr) = start(
        Path::new(env!("CARGO_BIN_EXE_baseline")),
        &["--addr", "127.0.0.1:0"],
    )
    .await;
    let result = workloads::smoke(
        &mut harness(),
        &target(addr, DataFormat::Raw),
        &process(&server),
        SUBSCRIBERS,
        false,
    )
    .await
    .expect("the smoke run completes");
    assert_every_event_once_in_order(&result.fanout);
    assert!(result.storm.is_none());
    server.kill().await.expect("the baseline stops");
}

/// One of our server's `/metrics` counters.
async fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the server accepts");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("the request is sent");
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .await
        .expect("the answer is read");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// The suite's two-server target: two of our servers with `--redis` on a
/// Redis the suite starts itself, subscribers alternating between the
/// servers, every event published through the first. Every subscriber, on
/// either server, gets every event once and in order, and resumes without
/// gaps on its server after a reconnect storm.
#[tokio::test]
async fn smoke_against_two_servers_sharing_redis() {
    assert!(
        bench::server_proc::on_path("redis-server"),
        "redis-server is not on PATH: this test starts two servers on a Redis of its own \
         (Debian/Ubuntu: apt-get install redis-server; scripts/setup.sh installs it)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config =
        SuiteConfig::load(&root.join("bench/configs/suite.toml")).expect("the suite config");
    let mut spec = config
        .servers
        .into_iter()
        .find(|s| s.name == "ours-redis-pair")
        .expect("the suite has the Redis pair");
    spec.command[0] = server_binary().display().to_string();
    let running = RunningServer::start(&spec, &root, None)
        .await
        .expect("Redis and both servers start");
    let processes = running.processes();
    let names: Vec<&str> = processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["server 1", "server 2", "redis"]);
    let target = running.target.clone();
    assert_eq!(target.subscribe.len(), 2);
    assert_ne!(target.subscribe[0].addr, target.subscribe[1].addr);
    assert_eq!(target.publish.addr, target.subscribe[0].addr);

    let SmokeResult { fanout, storm } =
        workloads::smoke(&mut harness(), &target, &processes, SUBSCRIBERS, true)
            .await
            .expect("the smoke run completes");
    assert_every_event_once_in_order(&fanout);
    let cpu: Vec<&str> = fanout
        .server_cpu_by_process
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(cpu, names, "every server-side process is measured");
    assert_resumed_without_gaps(storm);

    // Both servers held half of the subscribers (each connected twice: once,
    // and again in the storm) and wrote them the same events.
    let (a, b) = (target.subscribe[0].addr, target.subscribe[1].addr);
    let subscriptions = (
        metric(a, "sse_subscriptions_total").await,
        metric(b, "sse_subscriptions_total").await,
    );
    assert_eq!(
        subscriptions,
        (u64::from(SUBSCRIBERS), u64::from(SUBSCRIBERS))
    );
    let delivered = (
        metric(a, "sse_events_delivered_total").await,
        metric(b, "sse_events_delivered_total").await,
    );
    assert!(delivered.0 > 0, "{delivered:?}");
    assert_eq!(
        delivered.0, delivered.1,
        "both servers wrote the same events"
    );
    running.stop().await;
}

/// The topic routes of our server and of the baseline (as in the suite).
fn with_topics(mut target: Target) -> Target {
    target.topics = Some(TopicRoutes {
        subscribe: "/stream?topic={topics}".to_owned(),
        join: "&topic=".to_owned(),
        publish: "/publish".to_owned(),
        patterns: true,
    });
    target
}

/// Every group of the topic step got exactly its topics' events: per-user
/// topics, rooms, rooms by name, `room.*`, and bystanders (nothing).
fn assert_every_subscriber_got_its_topics(step: &StepResult) {
    let names: Vec<&str> = step.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        ["users", "rooms", "rooms by name", "bystanders", "room.*"]
    );
    assert!(step.events > 0);
    for g in &step.groups {
        assert!(g.active > 0, "{g:?}");
        assert!(g.is_exact(), "{g:?}");
        if g.name == "bystanders" {
            assert_eq!(g.expected, 0, "nothing is published to their topic");
        } else {
            assert!(g.expected > 0, "{g:?}");
        }
    }
    // Each event reached its topic's subscribers only.
    let expected: u64 = step.groups.iter().map(|g| g.expected).sum();
    assert_eq!(step.expected, expected);
    assert_eq!(step.delivered, expected, "{step:?}");
    assert!(step.drained, "{step:?}");
    assert_eq!(step.publish_failed, 0, "{step:?}");
    assert_eq!(step.connect_failed, 0, "{step:?}");
    assert_eq!(step.completion.count, step.events, "{step:?}");
}

#[tokio::test]
async fn topic_smoke_against_our_server() {
    let (mut server, addr) = start(
        &server_binary(),
        &["--addr", "127.0.0.1:0", "--ticker-interval", "off"],
    )
    .await;
    let TopicSmokeResult { topics, retention } = workloads::topic_smoke(
        &mut harness(),
        &with_topics(target(addr, DataFormat::ServerEvent)),
        &process(&server),
        SUBSCRIBERS,
    )
    .await
    .expect("the topic smoke run completes");
    assert_every_subscriber_got_its_topics(&topics);
    // The quiet topic's subscribers were away while it had events, and got
    // every one of them back, once, with no reset; the busy topic went on.
    assert!(retention.quiet_events_while_away > 0, "{retention:?}");
    let [busy, quiet] = &retention.step.groups[..] else {
        panic!("two groups: {retention:?}");
    };
    assert!(busy.is_exact(), "{busy:?}");
    assert!(quiet.is_exact(), "{quiet:?}");
    assert!(quiet.expected > 3 * retention.quiet_events_while_away);
    assert_eq!(quiet.resets, 0);
    server.kill().await.expect("the server stops");
}

#[tokio::test]
async fn topic_smoke_against_the_baseline() {
    let (mut server, addr) = start(
        Path::new(env!("CARGO_BIN_EXE_baseline")),
        &["--addr", "127.0.0.1:0"],
    )
    .await;
    let TopicSmokeResult { topics, retention } = workloads::topic_smoke(
        &mut harness(),
        &with_topics(target(addr, DataFormat::Raw)),
        &process(&server),
        SUBSCRIBERS,
    )
    .await
    .expect("the topic smoke run completes");
    assert_every_subscriber_got_its_topics(&topics);
    // No history: what the quiet topic had while its subscribers were away
    // is gone.
    let [busy, quiet] = &retention.step.groups[..] else {
        panic!("two groups: {retention:?}");
    };
    assert!(busy.is_exact(), "{busy:?}");
    assert!(quiet.lost > 0, "{quiet:?}");
    server.kill().await.expect("the baseline stops");
}

/// A short run of the batch workload: `publishers` 1 and 2, batches of
/// `BATCH` 16-byte events, 0.3 s each.
fn batch_params() -> BatchParams {
    BatchParams {
        publishers: vec![1, 2],
        events: BATCH,
        seconds: 0.3,
        payload_bytes: 16,
    }
}

const BATCH: u64 = 50;

/// Every step acknowledged whole batches, nothing failed, and its figures
/// are its counts over its measured time.
fn assert_batches_acknowledged(result: &BatchResult, params: &BatchParams) {
    let publishers: Vec<u32> = result.steps.iter().map(|s| s.publishers).collect();
    assert_eq!(publishers, params.publishers);
    for s in &result.steps {
        assert_eq!(s.events_per_batch, BATCH);
        assert_eq!(s.failed, 0, "{s:?}");
        assert!(s.batches > 0, "{s:?}");
        assert_eq!(s.events, s.batches * BATCH, "{s:?}");
        assert!(s.seconds >= params.seconds, "{s:?}");
        assert!(s.events_per_s > 0.0, "{s:?}");
        assert_eq!(s.events_per_s, s.events as f64 / s.seconds, "{s:?}");
        assert_eq!(s.batches_per_s, s.batches as f64 / s.seconds, "{s:?}");
        assert_eq!(s.latency.count, s.batches, "one latency per batch: {s:?}");
        assert!(s.server_cpu_s.is_some(), "the server's /proc entry is read");
    }
}

#[tokio::test]
async fn batch_against_our_server() {
    let (mut server, addr) = start(
        &server_binary(),
        &["--addr", "127.0.0.1:0", "--ticker-interval", "off"],
    )
    .await;
    let params = batch_params();
    let result = batch::batch(
        &target(addr, DataFormat::ServerEvent),
        &process(&server),
        &params,
    )
    .await
    .expect("the batch run completes");
    assert_batches_acknowledged(&result, &params);
    // The server stored whole batches only, at least every one counted
    // (and the warm-up's, and those answered after the measured time).
    let published = metric(addr, "sse_events_published_total").await;
    let counted: u64 = result.steps.iter().map(|s| s.events).sum();
    assert!(published >= counted, "{published} < {counted}");
    assert_eq!(published % BATCH, 0, "{published} events in whole batches");
    server.kill().await.expect("the server stops");
}

/// The suite's batch targets with the log elsewhere than in memory, as
/// the suite starts them: on disk (fsync at every commit, and every
/// 100 ms) and in a Redis of their own (needs `redis-server` on PATH).
#[tokio::test]
async fn batch_against_the_suites_log_targets() {
    assert!(
        bench::server_proc::on_path("redis-server"),
        "redis-server is not on PATH: this test starts our server on a Redis of its own \
         (Debian/Ubuntu: apt-get install redis-server; scripts/setup.sh installs it)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config =
        SuiteConfig::load(&root.join("bench/configs/suite.toml")).expect("the suite config");
    let params = batch_params();
    for name in [
        "ours-disk-always",
        "ours-disk-batch",
        "ours-redis-always",
        "ours-redis-everysec",
    ] {
        let mut spec = config
            .servers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("the suite has {name}"))
            .clone();
        let limits = spec.batch.expect("a target that takes batches");
        params.fits(&limits, None).expect("the test's batches fit");
        spec.command[0] = server_binary().display().to_string();
        let running = RunningServer::start(&spec, &root, None)
            .await
            .unwrap_or_else(|e| panic!("{name} starts: {e:#}"));
        let result = batch::batch(&running.target, &running.processes(), &params).await;
        running.stop().await;
        let result = result.unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_batches_acknowledged(&result, &params);
    }
}

/// A server that answers every batch with one event too few.
async fn short_answering_server() -> std::net::SocketAddr {
    use warp::Filter;
    let route = warp::post()
        .and(warp::body::bytes())
        .map(|body: bytes::Bytes| {
            let lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
            let events = (0..lines.count().saturating_sub(1) as u64)
                .map(|seq| shared::PublishResponse {
                    event_id: format!("1-{seq}"),
                    id: uuid::Uuid::nil(),
                    seq,
                    topic: "default".to_owned(),
                })
                .collect();
            warp::reply::json(&shared::PublishBatchResponse { events })
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    addr
}

/// A 2xx that lists fewer events than the batch had acknowledges none of
/// them: every such batch is a failure, and no event is counted.
#[tokio::test]
async fn a_batch_answered_with_another_count_is_a_failure() {
    let addr = short_answering_server().await;
    let params = BatchParams {
        publishers: vec![1],
        ..batch_params()
    };
    let result = batch::batch(&target(addr, DataFormat::ServerEvent), &[], &params)
        .await
        .expect("the batch run completes");
    let [s] = &result.steps[..] else {
        panic!("one step: {result:?}");
    };
    assert!(s.failed > 0, "{s:?}");
    assert_eq!((s.batches, s.events, s.latency.count), (0, 0, 0), "{s:?}");
    assert_eq!(s.events_per_s, 0.0);
    assert_eq!(
        s.first_error.as_deref(),
        Some("the answer lists 49 stored events of the batch's 50")
    );
}
