//! `--history-ttl`: events older than the TTL leave the history in memory,
//! on disk (across restarts and SIGKILL) and in a Redis stream shared by
//! two servers; a resume from before them gets a `reset` notice that
//! counts them, `GET /topics` and `?last=N` leave them out, and bad values
//! are refused at start.
//!
//! Where the point is that time passes (an event must grow older than the
//! TTL), the tests wait for the clock, or for the server to say it dropped
//! the events (`/metrics`, `/topics`, the stream's length in Redis), never
//! for a fixed time; nothing asserts on how long anything took.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::cluster::{Redis, ServerProcess};
use common::{get, metric, publish, start, Sse, PATIENCE};
use shared::{EventId, ResetNotice, ResetReason, ServerEvent, RESET_EVENT};
use tokio::time::Instant;

/// The clock, in ms since the Unix epoch (the server's clock too: it runs
/// on this machine).
fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    u64::try_from(since.as_millis()).expect("ms fit")
}

/// An event's `time` in ms since the Unix epoch.
fn event_ms(event: &ServerEvent) -> u64 {
    let at = humantime::parse_rfc3339(&event.time).expect("an RFC 3339 time");
    u64::try_from(
        at.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("ms")
}

/// Waits until the clock is past `ms`: for when time passing is the very
/// point (an event must grow older than the TTL while no server runs).
async fn await_clock_past(ms: u64) {
    loop {
        let now = now_ms();
        if now > ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(ms - now + 1)).await;
    }
}

/// Polls `check` until it holds, within [`PATIENCE`].
async fn await_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "never came true: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `/metrics` until `name` is `value`.
async fn await_metric(addr: SocketAddr, name: &str, value: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = metric(addr, name).await;
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} on {addr} stayed at {now}, never {value}:\n{}",
            get(addr, "/metrics").await.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The live topics of `GET /topics`, by name, with what each retains.
async fn retained(addr: SocketAddr) -> Vec<(String, u64)> {
    let page = get(addr, "/topics").await.json();
    page["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| {
            let name = t["name"].as_str().expect("name").to_owned();
            (name, t["retained"].as_u64().expect("retained"))
        })
        .collect()
}

/// The server's epoch and last seq, from `/healthz`.
async fn position(addr: SocketAddr) -> (u64, u64) {
    let health = get(addr, "/healthz").await.json();
    (
        health["epoch"].as_u64().expect("epoch"),
        health["last_seq"].as_u64().expect("last_seq"),
    )
}

/// The `position` a stream opens with.
async fn opening(sse: &mut Sse) -> EventId {
    sse.next_position().await.parse().expect("an event id")
}

/// The next `n` ordinary events' seqs and messages (a notice fails).
async fn messages(sse: &mut Sse, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (_, event) = sse.next_message().await;
        out.push((event.seq, event.message));
    }
    out
}

/// A reset notice for a resume from before expired events.
fn expired_notice(
    requested: &str,
    (from, to): (u64, u64),
    count: Option<u64>,
    resume_seq: u64,
) -> (
    ResetReason,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    u64,
) {
    (
        ResetReason::HistoryExceeded,
        Some(requested.to_owned()),
        Some(from),
        Some(to),
        count,
        resume_seq,
    )
}

/// The fields of `notice` that [`expired_notice`] names.
fn fields(
    notice: &ResetNotice,
) -> (
    ResetReason,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    u64,
) {
    (
        notice.reason,
        notice.requested.clone(),
        notice.missed_from,
        notice.missed_to,
        notice.missed_count,
        notice.resume_seq,
    )
}

/// Opens a resume from `from` on `path` and reads its reset notice.
async fn resume_with_reset(addr: SocketAddr, path: &str, from: &str) -> (Sse, ResetNotice) {
    let mut sse = Sse::open(addr, path, Some(from)).await;
    let (_, notice) = sse.next_reset().await;
    (sse, notice)
}

// In memory.

#[tokio::test]
async fn expired_events_leave_the_history_get_topics_and_are_counted_in_memory() {
    let server = start(&["--history-ttl", "1s"]).await;
    // A subscriber of b keeps b listed once its events are gone.
    let mut on_b = Sse::open(server.addr, "/stream?topic=b", None).await;
    opening(&mut on_b).await;
    for (topic, message) in [
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
        ("b", "b2"),
        ("a", "a3"),
    ] {
        publish(server.addr, topic, message).await;
    }
    assert_eq!(
        messages(&mut on_b, 2).await,
        [(2, "b1".to_owned()), (4, "b2".to_owned())]
    );
    assert_eq!(
        retained(server.addr).await,
        [("a".to_owned(), 3), ("b".to_owned(), 2)]
    );
    assert_eq!(metric(server.addr, "sse_history_expired_total").await, 0);

    // `retained` counts only what is still held: a, unfollowed, leaves
    // the list; b stays with nothing.
    await_until("every event expired from GET /topics", || async {
        retained(server.addr).await == [("b".to_owned(), 0)]
    })
    .await;
    assert_eq!(metric(server.addr, "sse_history_expired_total").await, 5);
    assert_eq!(metric(server.addr, "sse_history_events").await, 0);

    // The live subscriber had b's events: it hears of no loss, and the
    // next event follows as usual, its seq after the expired ones.
    assert_eq!(publish(server.addr, "b", "b3").await, 6);
    assert_eq!(messages(&mut on_b, 1).await, [(6, "b3".to_owned())]);
    assert_eq!(
        retained(server.addr).await,
        [("b".to_owned(), 1)],
        "a fresh event is retained"
    );
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_quiet_topic_expires_by_the_sweep_without_any_read_or_publish() {
    let server = start(&["--history-ttl", "300ms"]).await;
    for i in 1..=3 {
        publish(server.addr, "quiet", &format!("q{i}")).await;
    }
    assert_eq!(metric(server.addr, "sse_history_events").await, 3);
    // `/metrics` reads the counts without expiring anything, and nothing
    // else reads or publishes: only the background sweep drops them.
    await_metric(server.addr, "sse_history_expired_total", 3).await;
    assert_eq!(metric(server.addr, "sse_history_events").await, 0);
    assert_eq!(metric(server.addr, "sse_topics").await, 0);
    assert_eq!(retained(server.addr).await, []);
    server.stop().await;
}

#[tokio::test]
async fn a_resume_from_before_expired_events_gets_a_reset_with_the_exact_missed_count_then_the_survivors(
) {
    let server = start(&["--history-ttl", "2s"]).await;
    let (epoch, _) = position(server.addr).await;
    let id = |seq: u64| format!("{epoch}-{seq}");
    for (topic, message) in [
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
        ("b", "b2"),
        ("a", "a3"),
    ] {
        publish(server.addr, topic, message).await;
    }
    await_metric(server.addr, "sse_history_expired_total", 5).await;
    // Published once the first five expired: these survive them.
    assert_eq!(publish(server.addr, "a", "a4").await, 6);
    assert_eq!(publish(server.addr, "b", "b3").await, 7);

    // Every topic, from before all of them: five lost, then the survivors.
    let (mut all, notice) = resume_with_reset(server.addr, "/stream", &id(0)).await;
    assert_eq!(
        fields(&notice),
        expired_notice(&id(0), (1, 5), Some(5), 6),
        "{notice:?}"
    );
    assert_eq!(
        messages(&mut all, 2).await,
        [(6, "a4".to_owned()), (7, "b3".to_owned())]
    );

    // One topic counts its own losses only.
    let (mut on_a, notice) = resume_with_reset(server.addr, "/stream?topic=a", &id(0)).await;
    assert_eq!(
        fields(&notice),
        expired_notice(&id(0), (1, 5), Some(3), 6),
        "{notice:?}"
    );
    assert_eq!(messages(&mut on_a, 1).await, [(6, "a4".to_owned())]);
    // From after b1, b lost b2 alone.
    let (mut on_b, notice) = resume_with_reset(server.addr, "/stream?topic=b", &id(2)).await;
    assert_eq!(
        (notice.missed_count, notice.missed_to, notice.resume_seq),
        (Some(1), Some(4), 7),
        "{notice:?}"
    );
    assert_eq!(messages(&mut on_b, 1).await, [(7, "b3".to_owned())]);

    // From after the expired events, nothing was missed: no notice.
    let mut after = Sse::open(server.addr, "/stream", Some(&id(5))).await;
    assert_eq!(
        messages(&mut after, 2).await,
        [(6, "a4".to_owned()), (7, "b3".to_owned())]
    );
    assert_eq!(metric(server.addr, "sse_resets_total").await, 3);
    server.stop().await;
}

#[tokio::test]
async fn last_n_leaves_expired_events_out_in_memory() {
    let server = start(&["--history-ttl", "2s"]).await;
    for i in 1..=3 {
        publish(server.addr, "t", &format!("old{i}")).await;
    }
    await_metric(server.addr, "sse_history_expired_total", 3).await;
    publish(server.addr, "t", "new4").await;
    publish(server.addr, "u", "new5").await;

    // Five asked for, two held: the stream starts before the first of
    // them, with no notice, and goes live.
    let mut on_t = Sse::open(server.addr, "/stream?topic=t&last=5", None).await;
    assert_eq!(opening(&mut on_t).await.seq, 3);
    assert_eq!(messages(&mut on_t, 1).await, [(4, "new4".to_owned())]);
    let mut all = Sse::open(server.addr, "/stream?last=5", None).await;
    assert_eq!(opening(&mut all).await.seq, 3);
    assert_eq!(
        messages(&mut all, 2).await,
        [(4, "new4".to_owned()), (5, "new5".to_owned())]
    );
    publish(server.addr, "t", "live6").await;
    assert_eq!(messages(&mut on_t, 1).await, [(6, "live6".to_owned())]);
    assert_eq!(messages(&mut all, 1).await, [(6, "live6".to_owned())]);
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    server.stop().await;
}

// On disk.

fn data_dir(root: &Path) -> String {
    root.join("data").to_str().expect("utf-8 path").to_owned()
}

async fn start_on_disk(dir: &str, args: &[&str]) -> ServerProcess {
    let mut all = vec!["--data-dir", dir];
    all.extend_from_slice(args);
    ServerProcess::start_alone(&all, &[]).await
}

#[tokio::test]
async fn expired_events_stay_gone_from_disk_after_a_restart() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    let args = ["--history-ttl", "1s"];
    let server = start_on_disk(&dir, &args).await;
    let (epoch, _) = position(server.addr).await;
    for i in 1..=3 {
        publish(server.addr, "t", &format!("m{i}")).await;
    }
    await_metric(server.addr, "sse_history_expired_total", 3).await;
    server.terminate().await;

    let server = start_on_disk(&dir, &args).await;
    assert_eq!(position(server.addr).await, (epoch, 3), "the seqs go on");
    assert_eq!(metric(server.addr, "sse_history_events").await, 0);
    assert_eq!(retained(server.addr).await, []);
    // A resume from before them hears of the loss, then gets the next
    // event: none of the expired ones.
    let (mut sse, notice) = resume_with_reset(server.addr, "/stream", &format!("{epoch}-0")).await;
    assert_eq!(
        (
            notice.reason,
            notice.missed_from,
            notice.missed_to,
            notice.resume_seq
        ),
        (ResetReason::HistoryExceeded, Some(1), Some(3), 4),
        "{notice:?}"
    );
    assert_eq!(publish(server.addr, "t", "after").await, 4);
    assert_eq!(messages(&mut sse, 1).await, [(4, "after".to_owned())]);
    let mut last = Sse::open(server.addr, "/stream?last=10", None).await;
    assert_eq!(opening(&mut last).await.seq, 3);
    assert_eq!(messages(&mut last, 1).await, [(4, "after".to_owned())]);
    server.terminate().await;
}

#[tokio::test]
async fn an_event_that_expired_while_the_server_was_down_is_not_replayed_at_start() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    // The first run keeps events whatever their age: they are all on disk
    // when it stops.
    let server = start_on_disk(&dir, &[]).await;
    let (epoch, _) = position(server.addr).await;
    let id = |seq: u64| format!("{epoch}-{seq}");
    for (topic, message) in [("a", "a1"), ("b", "b1"), ("a", "a2")] {
        publish(server.addr, topic, message).await;
    }
    let published = now_ms();
    server.terminate().await;
    await_clock_past(published + 1_000).await;

    // Started with a TTL they are past: the hub drops them as it loads
    // them, counting them per topic.
    let server = start_on_disk(&dir, &["--history-ttl", "1s"]).await;
    assert_eq!(position(server.addr).await, (epoch, 3));
    assert_eq!(metric(server.addr, "sse_history_expired_total").await, 3);
    assert_eq!(metric(server.addr, "sse_history_events").await, 0);
    assert_eq!(retained(server.addr).await, []);
    let (mut all, notice) = resume_with_reset(server.addr, "/stream", &id(0)).await;
    assert_eq!(
        fields(&notice),
        expired_notice(&id(0), (1, 3), Some(3), 4),
        "{notice:?}"
    );
    let (mut on_a, notice) = resume_with_reset(server.addr, "/stream?topic=a", &id(0)).await;
    assert_eq!(
        fields(&notice),
        expired_notice(&id(0), (1, 3), Some(2), 4),
        "{notice:?}"
    );
    // From their last id, nothing is missed.
    let mut after = Sse::open(server.addr, "/stream", Some(&id(3))).await;
    assert_eq!(publish(server.addr, "a", "a3").await, 4);
    for sse in [&mut all, &mut on_a, &mut after] {
        assert_eq!(messages(sse, 1).await, [(4, "a3".to_owned())]);
    }
    server.terminate().await;
}

#[tokio::test]
async fn last_n_on_disk_leaves_expired_events_out() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    // The hub holds two events; the disk holds the rest.
    let args = ["--history-ttl", "2s", "--history", "2", "--max-lag", "2"];
    let server = start_on_disk(&dir, &args).await;
    for i in 1..=3 {
        publish(server.addr, "t", &format!("old{i}")).await;
    }
    // The hub's two (seq 1 left it for room, not for its age).
    await_metric(server.addr, "sse_history_expired_total", 2).await;
    for i in 4..=6 {
        publish(server.addr, "t", &format!("new{i}")).await;
    }
    for path in ["/stream?topic=t&last=10", "/stream?last=10"] {
        let mut sse = Sse::open(server.addr, path, None).await;
        assert_eq!(opening(&mut sse).await.seq, 3, "{path}");
        assert_eq!(
            messages(&mut sse, 3).await,
            [
                (4, "new4".to_owned()),
                (5, "new5".to_owned()),
                (6, "new6".to_owned())
            ],
            "{path}"
        );
    }
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    server.terminate().await;
}

/// An acknowledged publish, and the clock when it was sent (at or before
/// the event's time).
#[derive(Debug, Clone)]
struct Sent {
    id: EventId,
    uuid: String,
    sent_ms: u64,
}

async fn try_publish_sent(addr: SocketAddr, topic: &str, message: &str) -> Option<Sent> {
    let sent_ms = now_ms();
    let body = serde_json::json!({ "message": message, "topic": topic });
    let json = common::try_publish_json(addr, &body).await?;
    Some(Sent {
        id: json["event_id"].as_str()?.parse().ok()?,
        uuid: json["id"].as_str()?.to_owned(),
        sent_ms,
    })
}

/// What a resume from before every event read up to seq `through`: the
/// notices, and the events with the clock when each arrived.
#[derive(Default)]
struct Replay {
    notices: Vec<ResetNotice>,
    events: Vec<ServerEvent>,
}

async fn replay_through(sse: &mut Sse, through: u64) -> Replay {
    let mut replay = Replay::default();
    while replay.events.last().is_none_or(|e| e.seq < through) {
        let event = sse.next_event().await;
        if event.event == RESET_EVENT {
            replay
                .notices
                .push(serde_json::from_str(&event.data).expect("ResetNotice JSON"));
        } else {
            assert_eq!(event.event, "message", "{event:?}");
            replay
                .events
                .push(serde_json::from_str(&event.data).expect("ServerEvent JSON"));
        }
    }
    replay
}

/// A burst from 4 publishers on two topics, SIGKILLed once `kill_at` are
/// acknowledged: what was acknowledged.
async fn burst_then_sigkill(server: ServerProcess, round: usize, kill_at: usize) -> Vec<Sent> {
    server
        .kill_mid_burst(4, kill_at, move |addr, p, i| async move {
            let message = format!("round {round} publisher {p} #{i}");
            try_publish_sent(addr, &format!("topic-{}", p % 2), &message).await
        })
        .await
}

/// Checks a replay from seq 1 through `through`: no gap without a notice
/// before it, no event handed out that was expired when the stream was
/// opened (at `opened_ms`), every acknowledged event either replayed with
/// its uuid or announced lost, and lost only once expired (its publish was
/// sent at least a TTL before the notice came).
fn check_replay(replay: &Replay, acks: &[Sent], (opened_ms, read_ms): (u64, u64), ttl_ms: u64) {
    let mut next = 1;
    let mut events = replay.events.iter().peekable();
    let mut notices = replay.notices.iter();
    let mut lost_through = 0;
    while let Some(event) = events.peek() {
        if event.seq != next {
            let notice = notices
                .next()
                .unwrap_or_else(|| panic!("a gap before seq {} without a notice", event.seq));
            assert_eq!(notice.reason, ResetReason::HistoryExceeded, "{notice:?}");
            assert_eq!(notice.missed_from, Some(next), "{notice:?}");
            assert_eq!(notice.resume_seq, event.seq, "{notice:?}");
            let (from, to) = (next, notice.resume_seq - 1);
            assert_eq!(notice.missed_to, Some(to), "{notice:?}");
            // Every topic: when counted, every seq in the stretch.
            assert!(
                notice.missed_count.is_none_or(|n| n == to - from + 1),
                "{notice:?}"
            );
            lost_through = to;
            next = notice.resume_seq;
            continue;
        }
        assert!(
            event_ms(event) + ttl_ms > opened_ms,
            "seq {} was expired before the stream opened, yet replayed",
            event.seq
        );
        next += 1;
        events.next();
    }
    assert!(notices.next().is_none(), "more notices than gaps");
    let by_seq: std::collections::HashMap<u64, &ServerEvent> =
        replay.events.iter().map(|e| (e.seq, e)).collect();
    for ack in acks {
        match by_seq.get(&ack.id.seq) {
            Some(event) => assert_eq!(event.id.to_string(), ack.uuid, "{:?}", ack.id),
            None => {
                assert!(
                    ack.id.seq <= lost_through,
                    "{:?} neither kept nor lost",
                    ack.id
                );
                assert!(
                    ack.sent_ms + ttl_ms <= read_ms,
                    "{:?} was announced lost before it could have expired",
                    ack.id
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_burst_keeps_the_ttl_and_leaves_no_gap_without_a_reset() {
    const TTL_MS: u64 = 1_000;
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    let args = [
        "--history-ttl",
        "1s",
        "--fsync",
        "always",
        "--history",
        "100000",
    ];
    let mut acks: Vec<Sent> = Vec::new();
    let mut expected_epoch = None;
    for round in 0..2 {
        let server = start_on_disk(&dir, &args).await;
        let (epoch, _) = position(server.addr).await;
        assert_eq!(*expected_epoch.get_or_insert(epoch), epoch, "round {round}");
        let kill_at = 20 + (uuid::Uuid::new_v4().as_u128() % 100) as usize;
        eprintln!("round {round}: SIGKILL after {kill_at} acknowledged publishes");
        acks.extend(burst_then_sigkill(server, round, kill_at).await);

        let server = start_on_disk(&dir, &args).await;
        let (after_epoch, last_seq) = position(server.addr).await;
        assert_eq!(after_epoch, epoch, "the epoch survives a SIGKILL");
        let newest = acks.iter().map(|a| a.id.seq).max().expect("acks");
        assert!(last_seq >= newest, "{last_seq} < acknowledged {newest}");
        // A marker after the burst, so that the replay has an end even when
        // everything before it expired.
        let marker = try_publish_sent(server.addr, "marker", "marker")
            .await
            .expect("the marker is acknowledged");
        assert_eq!(marker.id, EventId::new(epoch, last_seq + 1));
        let opened_ms = now_ms();
        let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-0"))).await;
        let replay = replay_through(&mut sse, marker.id.seq).await;
        check_replay(&replay, &acks, (opened_ms, now_ms()), TTL_MS);
        acks.push(marker.clone());

        // The TTL still holds after the restart: once the marker is past
        // it, a resume from the start gets one notice for everything, then
        // the next event.
        await_clock_past(marker.sent_ms + TTL_MS + 1_000).await;
        let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-0"))).await;
        let next = try_publish_sent(server.addr, "marker", "next")
            .await
            .expect("acknowledged");
        let replay = replay_through(&mut sse, next.id.seq).await;
        assert_eq!(replay.notices.len(), 1, "{:?}", replay.notices);
        let notice = &replay.notices[0];
        assert_eq!(
            (notice.missed_from, notice.missed_to, notice.resume_seq),
            (Some(1), Some(marker.id.seq), next.id.seq),
            "{notice:?}"
        );
        assert!(
            notice.missed_count.is_none_or(|n| n == marker.id.seq),
            "{notice:?}"
        );
        let seqs: Vec<u64> = replay.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [next.id.seq]);
        assert_eq!(metric(server.addr, "sse_history_events").await, 1);
        acks.push(next);
        server.kill().await;
    }
}

// On Redis, two servers.

/// Publishes and returns the event's id (a server on an empty Redis
/// stream has no epoch before its first event).
async fn publish_id(addr: SocketAddr, topic: &str, message: &str) -> EventId {
    try_publish_sent(addr, topic, message)
        .await
        .unwrap_or_else(|| panic!("publishing {message:?} on {addr} is acknowledged"))
        .id
}

/// The seqs of the stream's entries in Redis.
async fn stream_seqs(redis: &Redis) -> Vec<u64> {
    redis
        .stream_ids()
        .await
        .iter()
        .map(|id| id.parse::<EventId>().expect("an event id").seq)
        .collect()
}

/// Polls until the stream in Redis holds `len` entries.
async fn await_xlen(redis: &Redis, len: u64) {
    await_until(&format!("XLEN = {len}"), || async {
        redis.stream_len().await == len
    })
    .await;
}

/// What a resume from `from` on `path` hears: its notice and the next `n`
/// events, the same for every server that agrees.
async fn resume_notice_and(
    addr: SocketAddr,
    path: &str,
    from: &str,
    n: usize,
) -> (ResetNotice, Vec<(u64, String)>) {
    let (mut sse, notice) = resume_with_reset(addr, path, from).await;
    (notice, messages(&mut sse, n).await)
}

#[tokio::test]
async fn on_redis_expired_entries_are_trimmed_and_both_servers_resume_alike() {
    let redis = Redis::start().await;
    let args = ["--history-ttl", "2s"];
    let a = ServerProcess::start(&redis, &args).await;
    let b = ServerProcess::start(&redis, &args).await;
    let mut epoch = 0;
    for (topic, message) in [("x", "x1"), ("y", "y1"), ("x", "x2")] {
        epoch = publish_id(a.addr, topic, message).await.epoch;
    }
    let id = |seq: u64| format!("{epoch}-{seq}");
    for server in [&a, &b] {
        await_metric(server.addr, "sse_history_expired_total", 3).await;
    }
    assert_eq!(publish(b.addr, "x", "x3").await, 4);
    assert_eq!(publish(a.addr, "y", "y2").await, 5);
    // The trim (XTRIM MINID) drops the expired entries and keeps the rest.
    await_xlen(&redis, 2).await;
    assert_eq!(stream_seqs(&redis).await, [4, 5]);

    let survivors = vec![(4, "x3".to_owned()), (5, "y2".to_owned())];
    let on_a = resume_notice_and(a.addr, "/stream", &id(0), 2).await;
    let on_b = resume_notice_and(b.addr, "/stream", &id(0), 2).await;
    assert_eq!(on_a, on_b, "both servers tell the same");
    assert_eq!(
        fields(&on_a.0),
        expired_notice(&id(0), (1, 3), Some(3), 4),
        "{:?}",
        on_a.0
    );
    assert_eq!(on_a.1, survivors);
    let on_a = resume_notice_and(a.addr, "/stream?topic=x", &id(0), 1).await;
    let on_b = resume_notice_and(b.addr, "/stream?topic=x", &id(0), 1).await;
    assert_eq!(on_a, on_b, "both servers tell the same");
    assert_eq!(
        fields(&on_a.0),
        expired_notice(&id(0), (1, 3), Some(2), 4),
        "{:?}",
        on_a.0
    );
    // From after the expired ones, both go on without a notice.
    for server in [&a, &b] {
        let mut sse = Sse::open(server.addr, "/stream", Some(&id(3))).await;
        assert_eq!(messages(&mut sse, 2).await, survivors);
        let mut last = Sse::open(server.addr, "/stream?last=5", None).await;
        assert_eq!(opening(&mut last).await.seq, 3);
        assert_eq!(messages(&mut last, 2).await, survivors);
    }
    for server in [&a, &b] {
        assert_eq!(metric(server.addr, "sse_resets_total").await, 2);
    }
}

#[tokio::test]
async fn on_redis_an_emptied_stream_keeps_its_epoch_and_seqs() {
    let redis = Redis::start().await;
    let args = ["--history-ttl", "1s"];
    let a = ServerProcess::start(&redis, &args).await;
    let b = ServerProcess::start(&redis, &args).await;
    let mut epoch = 0;
    for i in 1..=3 {
        epoch = publish_id(a.addr, "t", &format!("m{i}")).await.epoch;
    }
    let id = |seq: u64| format!("{epoch}-{seq}");
    // Every entry expires: the stream is there, empty.
    await_xlen(&redis, 0).await;
    let mut conn = redis.connection().await;
    let exists: bool = redis::cmd("EXISTS")
        .arg("sse:events")
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert!(exists, "the trim leaves the stream, empty");
    for server in [&a, &b] {
        await_metric(server.addr, "sse_history_expired_total", 3).await;
    }

    // A server started now reads an empty stream and goes on from its
    // last id: a client holding it resumes without a notice.
    let c = ServerProcess::start(&redis, &args).await;
    assert_eq!(position(c.addr).await, (epoch, 3));
    let mut on_c = Sse::open(c.addr, "/stream", Some(&id(3))).await;
    // The append script goes on from the stream's last id (Redis 7's
    // max-deleted-entry-id tells that its top entry was not deleted).
    assert_eq!(publish(b.addr, "t", "m4").await, 4);
    assert_eq!(messages(&mut on_c, 1).await, [(4, "m4".to_owned())]);
    let on_a = resume_notice_and(a.addr, "/stream", &id(0), 1).await;
    let on_b = resume_notice_and(b.addr, "/stream", &id(0), 1).await;
    assert_eq!(on_a, on_b, "both servers tell the same");
    assert_eq!(
        fields(&on_a.0),
        expired_notice(&id(0), (1, 3), Some(3), 4),
        "{:?}",
        on_a.0
    );
    assert_eq!(on_a.1, [(4, "m4".to_owned())]);
    // The server that never held them knows they are gone, not how many.
    let (notice, events) = resume_notice_and(c.addr, "/stream", &id(0), 1).await;
    assert_eq!(
        fields(&notice),
        expired_notice(&id(0), (1, 3), None, 4),
        "{notice:?}"
    );
    assert_eq!(events, [(4, "m4".to_owned())]);
    // Emptied again, and again the seqs go on, on every server.
    await_xlen(&redis, 0).await;
    assert_eq!(publish(c.addr, "t", "m5").await, 5);
    for server in [&a, &b, &c] {
        assert_eq!(position(server.addr).await.0, epoch);
    }
    assert_eq!(metric(a.addr, "sse_log_outages_total").await, 0);
}

// Bad values.

#[tokio::test]
async fn bad_history_ttl_values_are_refused_at_start_with_their_message() {
    let prefix =
        |value: &str| format!("error: invalid value '{value}' for '--history-ttl <DURATION>': ");
    let cases = [
        ("0", "must be more than 0"),
        ("0ms", "must be more than 0"),
        ("-5m", "must be more than 0"),
        (
            "500us",
            "must be at least 1ms (events' times are in milliseconds)",
        ),
        ("soon", "expected number at 0 (examples: 150ms, 2s, 1m)"),
        (
            "1h30",
            "time unit needed, for example 30sec or 30ms (examples: 150ms, 2s, 1m)",
        ),
        (
            "101y",
            "must be at most 100y; leave --history-ttl out to keep events whatever their age",
        ),
        (
            "99999999999999999999s",
            "number is too large or cannot be represented without a lack of precision \
             (values below 1ns are not supported) (examples: 150ms, 2s, 1m)",
        ),
    ];
    for (value, says) in cases {
        let flag = format!("--history-ttl={value}");
        let exited = ServerProcess::try_start_alone(&[&flag])
            .await
            .err()
            .unwrap_or_else(|| panic!("started with {flag}"));
        assert_eq!(exited.code, Some(2), "{flag}: {}", exited.stderr);
        let expected = format!("{}{says}\n", prefix(value));
        assert!(
            exited.stderr.contains(&expected),
            "{flag}: expected {expected:?} in\n{}",
            exited.stderr
        );
    }
    // The environment and the config file are held to the same rule.
    let exited = ServerProcess::try_start_alone_env(&[], &[("SSE_HISTORY_TTL", "0")])
        .await
        .err()
        .expect("refused");
    assert!(
        exited
            .stderr
            .contains(&format!("{}must be more than 0", prefix("0"))),
        "{}",
        exited.stderr
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("sse.toml");
    std::fs::write(&file, "history = 100\nhistory-ttl = \"-1s\"\n").expect("write");
    let path = file.to_str().expect("utf-8 path");
    let exited = ServerProcess::try_start_alone(&["--config", path])
        .await
        .err()
        .expect("refused");
    let expected = format!("{path}:2: `history-ttl`: invalid value \"-1s\": must be more than 0");
    assert!(
        exited.stderr.contains(&expected),
        "expected {expected:?} in\n{}",
        exited.stderr
    );
    // A good value starts.
    let server = ServerProcess::try_start_alone(&["--history-ttl", "1h"])
        .await
        .expect("starts with 1h");
    server.terminate().await;
}
