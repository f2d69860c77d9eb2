//! The fault matrix over real processes: the server killed in the middle of
//! a publish burst, Redis killed, frozen and brought back with less than it
//! had under publishing and subscribing load, a connection cut in the middle
//! of a frame. Each test asserts what every client receives: nothing lost,
//! nothing duplicated, and the in-band notices wherever the history cannot
//! cover. The figures each test prints (`fault matrix:` lines) are the ones
//! RELIABILITY.md quotes.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::cluster::{Redis, ServerProcess};
use common::{await_healthy, try_publish_json, Sse, PATIENCE};
use shared::{EventId, Item, ResetReason, ServerEvent, POSITION_EVENT, RESET_EVENT};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// Publishes; the acknowledged id, or `None` when refused or unreachable.
async fn try_publish(addr: SocketAddr, message: &str) -> Option<EventId> {
    let json = try_publish_json(addr, &serde_json::json!({ "message": message })).await?;
    json["event_id"].as_str()?.parse().ok()
}

/// What one subscriber saw: events by id, and the notices.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<(EventId, ServerEvent)>,
    notices: Vec<(EventId, shared::ResetNotice)>,
}

impl Seen {
    /// Takes one stream item.
    fn take(&mut self, item: Item) -> Option<EventId> {
        let Item::Event(event) = item else {
            return None;
        };
        let id: EventId = event.last_event_id.parse().ok()?;
        match event.event.as_str() {
            RESET_EVENT => {
                self.notices
                    .push((id, serde_json::from_str(&event.data).expect("notice")));
            }
            POSITION_EVENT => {}
            _ => {
                self.events
                    .push((id, serde_json::from_str(&event.data).expect("event")));
            }
        }
        Some(id)
    }

    /// No id twice, ids increasing within each epoch, and every epoch
    /// change announced by a notice before its first event.
    fn check_order(&self) {
        let mut ids = HashSet::new();
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        // Epochs in the order they appeared (an in-memory epoch is partly
        // random: a later one may be a smaller number).
        let mut epochs: Vec<u64> = Vec::new();
        for (id, _) in &self.events {
            assert!(ids.insert(*id), "{id} delivered twice");
            let previous = last.insert(id.epoch, id.seq).unwrap_or(0);
            assert!(id.seq > previous, "{id} after seq {previous}");
            if !epochs.contains(&id.epoch) {
                epochs.push(id.epoch);
            }
        }
        for epoch in epochs.iter().skip(1) {
            assert!(
                self.notices
                    .iter()
                    .any(|(id, n)| id.epoch == *epoch && n.reason == ResetReason::ServerRestarted),
                "epoch {epoch} began without a notice"
            );
        }
    }
}

#[tokio::test]
async fn an_in_memory_server_killed_mid_burst_comes_back_with_a_notice_and_no_stale_ids() {
    // The server binary, on a fixed port so that the client comes back to
    // the same address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = || async {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--addr", &addr.to_string(), "--ticker-interval", "off"])
            .args(["--dist", "/nonexistent"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("server binary");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::time::timeout(PATIENCE, BufReader::new(stdout).lines().next_line())
            .await
            .expect("listening in time")
            .expect("output")
            .expect("a line");
        assert!(line.starts_with("listening on"), "{line}");
        child
    };
    let mut server: Child = start().await;
    let mut sse = Sse::open(addr, "/stream", None).await;
    let mut seen = Seen::default();
    let burst = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..2000 {
            match try_publish(addr, &format!("burst {i}")).await {
                Some(id) => acked.push(id),
                None => break,
            }
        }
        acked
    });
    // Kill it once the subscriber has received 200 events: mid-burst.
    while seen.events.len() < 200 {
        let item = sse.next_item().await.expect("stream open");
        seen.take(item);
    }
    server.start_kill().expect("SIGKILL");
    server.wait().await.expect("killed");
    let acked = burst.await.expect("publisher");
    assert!(
        acked.len() < 2000,
        "the kill came in the middle of the burst"
    );
    // What arrived before the kill: in order, nothing twice.
    while let Some(item) = sse.next_item().await {
        seen.take(item);
    }
    let before = seen.events.len();
    let last = seen.events.last().expect("events").0;

    let mut server = start().await;
    let fresh = try_publish(addr, "after the restart")
        .await
        .expect("published");
    assert_ne!(fresh.epoch, last.epoch, "a new run, a new epoch");
    let mut back = Sse::open(addr, "/stream", Some(&last.to_string())).await;
    let (_, notice) = back.next_reset().await;
    assert_eq!(notice.reason, ResetReason::ServerRestarted);
    assert_eq!(notice.requested, Some(last.to_string()));
    let (raw, event) = back.next_message().await;
    assert_eq!(raw.last_event_id, fresh.to_string());
    assert_eq!(event.message, "after the restart");
    seen.events.push((fresh, event));
    seen.notices.push((EventId::new(fresh.epoch, 0), notice));
    seen.check_order();
    eprintln!(
        "fault matrix: memory server SIGKILL after {} acknowledged publishes; the client \
         had {before}, all in order, none twice; on restart: one server_restarted notice, \
         then the new epoch",
        acked.len()
    );
    server.start_kill().ok();
}

/// A subscriber that records everything until it has the event that
/// `until` names once it is set (or, failing that, for [`PATIENCE`] after
/// it was set), reconnecting with its last id when the stream breaks (as
/// EventSource does).
fn follow(addr: SocketAddr, until: Until) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let mut last: Option<EventId> = None;
        while !until.reached(last) {
            let Ok(Ok(mut sse)) = tokio::time::timeout(PATIENCE, async {
                Ok::<_, ()>(
                    Sse::open(addr, "/stream", last.map(|id| id.to_string()).as_deref()).await,
                )
            })
            .await
            else {
                continue;
            };
            loop {
                let next = tokio::select! {
                    item = sse.next_item() => item,
                    () = async {
                        while !until.reached(last) {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    } => None,
                };
                let Some(item) = next else { break };
                if let Some(id) = seen.take(item) {
                    last = Some(id);
                }
            }
        }
        seen
    })
}

/// The last event a [`follow`]er must have before it stops, once known.
#[derive(Clone, Default)]
struct Until(Arc<std::sync::Mutex<Option<(EventId, std::time::Instant)>>>);

impl Until {
    fn set(&self, id: EventId) {
        *self.0.lock().unwrap() = Some((id, std::time::Instant::now()));
    }

    /// Whether a subscriber whose last id is `last` is done: it has the
    /// event, or has waited for it too long (the test then fails on what
    /// is missing rather than hanging).
    fn reached(&self, last: Option<EventId>) -> bool {
        let Some((id, since)) = *self.0.lock().unwrap() else {
            return false;
        };
        let has = last.is_some_and(|l| l.epoch == id.epoch && l.seq >= id.seq);
        has || since.elapsed() > PATIENCE
    }
}

#[tokio::test]
async fn redis_killed_frozen_and_restored_short_under_load_loses_nothing_silently() {
    let mut redis = Redis::start_with_snapshots_only().await;
    let args = ["--keep-alive", "100ms"];
    let a = ServerProcess::start(&redis, &args).await;
    let b = ServerProcess::start(&redis, &args).await;
    let until = Until::default();
    let subscribers: Vec<_> = (0..6)
        .map(|i| follow(if i % 2 == 0 { a.addr } else { b.addr }, until.clone()))
        .collect();
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (a, b, publishing) = (a.addr, b.addr, publishing.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0u64;
            let mut i = 0u64;
            while publishing.load(Ordering::Relaxed) {
                let target = if i.is_multiple_of(2) { a } else { b };
                match try_publish(target, &format!("m{i}")).await {
                    Some(id) => acked.push(id),
                    None => refused += 1,
                }
                i += 1;
            }
            (acked, refused)
        })
    };
    let mut conn = redis.connection().await;
    let len = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("XLEN")
                .arg("sse:events")
                .query_async::<u64>(&mut conn)
                .await
                .unwrap_or(0)
        }
    };
    // Let it run, then the faults, one after another, each once the
    // servers are healthy again.
    while len(&mut conn).await < 100 {
        tokio::task::yield_now().await;
    }
    let () = redis::cmd("SAVE")
        .query_async(&mut conn)
        .await
        .expect("SAVE");
    let saved = len(&mut conn).await;
    while len(&mut conn).await < saved + 100 {
        tokio::task::yield_now().await;
    }
    // 1. Killed, and back from the snapshot: it lost what came after it.
    redis.kill().await;
    redis.restart().await;
    await_healthy(a.addr).await;
    await_healthy(b.addr).await;
    let mut conn = redis.connection().await;
    let restored = len(&mut conn).await;
    while len(&mut conn).await < restored + 100 {
        tokio::task::yield_now().await;
    }
    // 2. Frozen, then thawed.
    redis.freeze();
    common::await_health(a.addr, 503).await;
    redis.thaw();
    await_healthy(a.addr).await;
    await_healthy(b.addr).await;
    let thawed = len(&mut conn).await;
    while len(&mut conn).await < thawed + 100 {
        tokio::task::yield_now().await;
    }
    publishing.store(false, Ordering::Relaxed);
    let (acked, refused) = publisher.await.expect("publisher");
    // Every acknowledged event of the epoch that survived is delivered.
    let final_epoch = acked.last().expect("acks").epoch;
    let last = *acked.last().unwrap();
    // Each subscriber stops once it has the last acknowledged event (a
    // server whose reader is catching up after the freeze gets it later
    // than the other).
    until.set(last);
    let mut total = 0;
    for subscriber in subscribers {
        let seen = subscriber.await.expect("subscriber");
        seen.check_order();
        let got: HashSet<EventId> = seen.events.iter().map(|(id, _)| *id).collect();
        for id in acked.iter().filter(|id| id.epoch == final_epoch) {
            assert!(
                got.contains(id),
                "acknowledged {id} of the final epoch never arrived"
            );
        }
        // Events of the lost stretch (acknowledged, then lost by Redis)
        // are covered by the notice that opened the new epoch.
        assert!(
            seen.notices
                .iter()
                .any(|(id, n)| id.epoch == final_epoch && n.reason == ResetReason::ServerRestarted),
            "the loss was announced"
        );
        total += seen.events.len();
    }
    eprintln!(
        "fault matrix: Redis SIGKILL + restart from an older snapshot, SIGSTOP/SIGCONT, \
         under load: {} publishes acknowledged, {refused} refused with 503 during outages, \
         {total} deliveries to 6 subscribers on 2 servers: none twice, none out of order, \
         every acknowledged event of the surviving epoch delivered, the lost stretch announced",
        acked.len()
    );
}

/// A proxy that forwards one connection's response up to `cut_at` bytes
/// and then closes it: a frame is cut in the middle.
async fn cutting_proxy(backend: SocketAddr, cut_at: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.expect("accept");
        let mut server = TcpStream::connect(backend).await.expect("connect");
        let mut request = vec![0u8; 4096];
        let n = client.read(&mut request).await.expect("request");
        server.write_all(&request[..n]).await.expect("forward");
        let mut forwarded = 0;
        let mut buf = vec![0u8; 4096];
        while forwarded < cut_at {
            let n = server.read(&mut buf).await.expect("response");
            let take = n.min(cut_at - forwarded);
            client.write_all(&buf[..take]).await.expect("to client");
            forwarded += take;
        }
        // Both sides closed here, in the middle of a frame.
    });
    addr
}

#[tokio::test]
async fn a_connection_cut_in_the_middle_of_a_frame_loses_and_repeats_nothing() {
    let server = common::start(&[]).await;
    for i in 0..5 {
        common::publish(server.addr, "t", &format!("whole {i}")).await;
    }
    // Find where the third event's frame begins, then cut ten bytes into it.
    let raw = {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /stream?lastEventId=0-0 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 8192];
        while !String::from_utf8_lossy(&got).contains("whole 4") {
            let n = stream.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    };
    let third = raw.find("\"whole 2\"").expect("third event");
    let frame_start = raw[..third].rfind("id: ").expect("its id line");
    let proxy = cutting_proxy(server.addr, frame_start + 10).await;
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(b"GET /stream?lastEventId=0-0 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    let text = String::from_utf8_lossy(&got);
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    // The chunked body, decoded for the parser.
    let mut parser = shared::Parser::new();
    let mut items = Vec::new();
    parser.feed(dechunk(body).as_bytes(), &mut items);
    let mut seen = Seen::default();
    let mut last = None;
    for item in items {
        if let Some(id) = seen.take(item) {
            last = Some(id);
        }
    }
    // The cut frame is not an event: the client has two.
    assert_eq!(seen.events.len(), 2, "{:?}", seen.events);
    let last = last.expect("an id").to_string();
    // EventSource reconnects with the last whole event's id.
    let mut back = Sse::open(server.addr, "/stream", Some(&last)).await;
    for i in 2..5 {
        let (raw, event) = back.next_message().await;
        assert_eq!(event.message, format!("whole {i}"));
        seen.take(Item::Event(raw));
    }
    seen.check_order();
    assert_eq!(seen.events.len(), 5);
    eprintln!("fault matrix: a frame cut 10 bytes in: the partial event dropped, replayed whole on resume, 0 lost, 0 twice");
    server.stop().await;
}

/// Decodes as much of an HTTP/1.1 chunked body as arrived.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some(line_end) = body.find("\r\n") {
        let Ok(size) = usize::from_str_radix(body[..line_end].trim(), 16) else {
            break;
        };
        let data = &body[line_end + 2..];
        if size == 0 {
            break;
        }
        let take = size.min(data.len());
        out.push_str(&data[..take]);
        if data.len() < size + 2 {
            break;
        }
        body = &data[size + 2..];
    }
    out
}

/// The server binary with `args`, its address, and a raised open-files
/// limit in this process for the test's own sockets.
async fn binary(args: &[&str]) -> (Child, SocketAddr) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--addr", "127.0.0.1:0", "--ticker-interval", "off"])
        .args(["--dist", "/nonexistent"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("server binary");
    let addr = common::listening_addr(&mut child, "http").await;
    (child, addr)
}

/// A metric, read over `conn` (a connection the test already holds).
async fn metric_over(conn: &mut common::raw::Raw, name: &str) -> u64 {
    let answer = conn.get("/metrics").await;
    assert_eq!(answer.status, 200);
    answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_of_thousands_is_cut_while_ordinary_clients_are_served() {
    const HEADERS: usize = 2000;
    const BODIES: usize = 1000;
    let (mut server, addr) = binary(&[
        "--header-timeout",
        "2s",
        "--body-timeout",
        "2s",
        "--max-connections",
        "5000",
    ])
    .await;
    let mut subscriber = Sse::open(addr, "/stream", None).await;
    subscriber.next_position().await;
    // Half a request head, or a publish whose body stops half-way.
    let mut slow = Vec::with_capacity(HEADERS + BODIES);
    for i in 0..HEADERS + BODIES {
        let mut conn = common::raw::Raw::connect(addr).await;
        if i < HEADERS {
            conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await;
        } else {
            conn.send(
                b"POST /publish HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"message\":",
            )
            .await;
        }
        slow.push(conn);
    }
    // Meanwhile ordinary clients are served.
    let acked = try_publish(addr, "served during the slowloris")
        .await
        .expect("published");
    let (raw, _) = subscriber.next_message().await;
    assert_eq!(raw.last_event_id, acked.to_string());
    // Every slow connection is closed by the server.
    for conn in &mut slow {
        conn.until_closed().await;
    }
    let mut probe = common::raw::Raw::connect(addr).await;
    let headers = metric_over(&mut probe, "sse_refused_total{reason=\"header_timeout\"}").await;
    let bodies = metric_over(&mut probe, "sse_refused_total{reason=\"body_timeout\"}").await;
    assert!(headers >= HEADERS as u64, "{headers}");
    assert_eq!(bodies, BODIES as u64);
    // Nothing of the half-sent publishes was published.
    assert_eq!(
        metric_over(&mut probe, "sse_events_published_total").await,
        1
    );
    eprintln!(
        "fault matrix: slowloris of {HEADERS} half heads and {BODIES} half bodies: all {} \
         closed by the server ({headers} header timeouts, {bodies} body timeouts, 0 \
         published), an ordinary publish and stream served meanwhile",
        HEADERS + BODIES
    );
    server.start_kill().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_stops_at_the_cap_and_health_is_still_answered() {
    const CAP: usize = 3000;
    let (mut server, addr) = binary(&["--max-connections", &CAP.to_string()]).await;
    // One keep-alive connection for the health checks, then the flood.
    let mut health = common::raw::Raw::connect(addr).await;
    assert_eq!(health.get("/healthz").await.status, 200);
    let mut flood = Vec::with_capacity(CAP);
    for _ in 0..CAP - 1 {
        flood.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // The server has taken them all in: the next one is over the cap.
    let mut refused = 0;
    for _ in 0..200 {
        let mut conn = common::raw::Raw::connect(addr).await;
        conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let answer = conn.response().await;
        if answer.status == 503 {
            assert_eq!(answer.header("retry-after"), Some("5"));
            assert!(
                answer.body.contains("too_many_connections"),
                "{}",
                answer.body
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 200, "every connection over the cap is refused");
    assert_eq!(
        health.get("/healthz").await.status,
        200,
        "health is still answered"
    );
    assert_eq!(
        metric_over(&mut health, "sse_connections").await,
        CAP as u64
    );
    // Room again once the flood goes.
    drop(flood);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric_over(&mut health, "sse_connections").await > 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    let acked = try_publish(addr, "after the flood").await;
    assert!(acked.is_some());
    eprintln!(
        "fault matrix: a flood of {CAP} connections: held at the cap, 200 more refused with \
         503 too_many_connections, /healthz answered throughout, served again afterwards"
    );
    server.start_kill().ok();
}
