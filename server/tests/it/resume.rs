//! No silent gap for any subscriber: the stream carries its position, so a
//! quiet or filtered subscriber's reconnect resumes exactly; odd ids never
//! break a stream; keep-alives follow every interval of real silence.

use crate::common;

use std::time::{Duration, Instant};

use common::{get, metric, publish, start, Sse};
use shared::{EventId, Item, POSITION_EVENT};

async fn epoch_of(addr: std::net::SocketAddr) -> u64 {
    get(addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .expect("epoch")
}

#[tokio::test]
async fn a_stream_states_its_position_once_its_start_is_settled() {
    let server = start(&[]).await;
    let epoch = epoch_of(server.addr).await;
    // An empty log: the client has everything up to seq 0.
    let mut sse = Sse::open(server.addr, "/stream", None).await;
    assert_eq!(
        sse.next_item().await,
        Some(Item::Comment(" stream open".into()))
    );
    assert_eq!(sse.next_item().await, Some(Item::Retry(2000)));
    let Some(Item::Event(event)) = sse.next_item().await else {
        panic!("a position event follows the opening");
    };
    assert_eq!(event.event, POSITION_EVENT);
    assert_eq!(event.last_event_id, format!("{epoch}-0"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&event.data).expect("JSON"),
        serde_json::json!({ "id": format!("{epoch}-0"), "retry_ms": 2000 })
    );
    for i in 1..=3 {
        publish(server.addr, "other", &format!("m{i}")).await;
    }
    // A filtered subscriber that arrives later starts after seq 3.
    let mut filtered = Sse::open(server.addr, "/stream?topic=mine", None).await;
    assert_eq!(filtered.next_position().await, format!("{epoch}-3"));
    server.stop().await;
}

#[tokio::test]
async fn a_quiet_subscriber_that_reconnects_with_its_position_misses_nothing() {
    // The ticker is off and the topic has no events yet: before `position`
    // such a stream carried no id at all, and a reconnect started live.
    let server = start(&[]).await;
    publish(server.addr, "elsewhere", "before").await;
    let mut quiet = Sse::open(server.addr, "/stream?topic=quiet", None).await;
    let position = quiet.next_position().await;
    drop(quiet);
    // Published while the client is away.
    let mut expected = Vec::new();
    for i in 1..=3 {
        expected.push(publish(server.addr, "quiet", &format!("q{i}")).await);
        publish(server.addr, "elsewhere", "noise").await;
    }
    // The browser's way: EventSource sends the last id it saw, the
    // position's, as Last-Event-ID.
    let mut back = Sse::open(server.addr, "/stream?topic=quiet", Some(&position)).await;
    for (i, seq) in expected.iter().enumerate() {
        let (_, event) = back.next_message().await;
        assert_eq!((event.seq, event.message), (*seq, format!("q{}", i + 1)));
    }
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_filtered_subscriber_keeps_its_place_while_other_topics_turn_the_history_over() {
    let server = start(&[
        "--history",
        "10",
        "--max-lag",
        "10",
        "--keep-alive",
        "100ms",
    ])
    .await;
    let epoch = epoch_of(server.addr).await;
    let mut rare = Sse::open(server.addr, "/stream?topic=rare", None).await;
    assert_eq!(rare.next_position().await, format!("{epoch}-0"));
    // Ten times the history, all of other topics.
    let mut last = 0;
    for i in 0..100 {
        last = publish(server.addr, "busy", &format!("b{i}")).await;
    }
    // The quiet stream's next write says where it is now.
    let mut position = rare.next_position().await;
    while position != format!("{epoch}-{last}") {
        position = rare.next_position().await;
    }
    drop(rare);
    let seq = publish(server.addr, "rare", "at last").await;
    let mut back = Sse::open(server.addr, "/stream?topic=rare", Some(&position)).await;
    let (_, event) = back.next_message().await;
    assert_eq!(
        (event.seq, event.message.as_str()),
        (seq, "at last"),
        "no false reset: nothing of this topic was missed"
    );
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn an_unfiltered_stream_repeats_no_position_its_events_carry() {
    let server = start(&["--keep-alive", "50ms"]).await;
    let epoch = epoch_of(server.addr).await;
    let mut sse = Sse::open(server.addr, "/stream", None).await;
    assert_eq!(sse.next_position().await, format!("{epoch}-0"));
    let seq = publish(server.addr, "t", "one").await;
    assert_eq!(sse.next_message().await.1.seq, seq);
    // Quiet from here on: keep-alives only, the event's id already holds.
    for _ in 0..3 {
        match sse.next_item().await.expect("open") {
            Item::Comment(text) => assert_eq!(text, " keep-alive"),
            other => panic!("only keep-alives expected, got {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn odd_ids_never_break_a_stream() {
    let server = start(&[]).await;
    let epoch = epoch_of(server.addr).await;
    for i in 1..=3 {
        publish(server.addr, "t", &format!("m{i}")).await;
    }
    // Over 128 bytes counts as none, even when its digits would be valid.
    let oversized = format!("{epoch}-{}1", "0".repeat(130));
    // Ahead of the log (an id this run has not issued), at the very top of
    // the number range, and of an epoch of zero.
    let ahead = format!("{epoch}-99");
    let top = format!("{epoch}-{}", u64::MAX);
    let mut head = 3;
    for id in [oversized.as_str(), ahead.as_str(), top.as_str()] {
        let mut sse = Sse::open(server.addr, "/stream", Some(id)).await;
        assert_eq!(sse.status, 200, "{id}");
        assert_eq!(sse.next_position().await, format!("{epoch}-{head}"), "{id}");
        head = publish(server.addr, "t", "next").await;
        assert_eq!(sse.next_message().await.1.seq, head, "{id}");
    }
    // An epoch of zero is a position taken before the log had any event:
    // the whole log is new to the client.
    let mut sse = Sse::open(server.addr, "/stream", Some("0-0")).await;
    assert_eq!(sse.next_message().await.1.seq, 1);
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn servers_started_at_the_same_moment_get_different_epochs() {
    let mut servers = Vec::new();
    for _ in 0..10 {
        servers.push(start(&[]));
    }
    let servers = futures_util::future::join_all(servers).await;
    let mut epochs = Vec::new();
    for server in &servers {
        epochs.push(epoch_of(server.addr).await);
    }
    let mut distinct = epochs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), epochs.len(), "{epochs:?}");
    // Still a short id: at most 16 digits of epoch.
    assert!(
        epochs.iter().all(|e| e.to_string().len() <= 16),
        "{epochs:?}"
    );
    // A client moving from one to another gets a reset notice, not another
    // server's events as if they continued its own.
    let (a, b) = (&servers[0], &servers[1]);
    publish(a.addr, "t", "on a").await;
    publish(b.addr, "t", "on b").await;
    let id_on_a = EventId::new(epochs[0], 1).to_string();
    let mut moved = Sse::open(b.addr, "/stream", Some(&id_on_a)).await;
    let (_, notice) = moved.next_reset().await;
    assert_eq!(notice.requested.as_deref(), Some(id_on_a.as_str()));
    for server in servers {
        server.stop().await;
    }
}

#[tokio::test]
async fn a_keep_alive_follows_every_interval_of_real_silence() {
    // With a keep-alive timer that only checked whether anything had been
    // written since it last fired, an event just after a tick left the
    // connection silent for almost two intervals.
    let interval = Duration::from_millis(300);
    let server = start(&["--keep-alive", "300ms"]).await;
    let mut sse = Sse::open(server.addr, "/stream", None).await;
    sse.next_position().await;
    let mut last_write = Instant::now();
    let mut largest = Duration::ZERO;
    let mut keep_alives = 0;
    let addr = server.addr;
    // Events at uneven moments between the keep-alives.
    let publisher = tokio::spawn(async move {
        for delay in [40, 330, 170, 290, 20, 410] {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            publish(addr, "t", "tick").await;
        }
    });
    while keep_alives < 8 {
        let item = sse.next_item().await.expect("open");
        let now = Instant::now();
        largest = largest.max(now - last_write);
        last_write = now;
        if item == Item::Comment(" keep-alive".into()) {
            keep_alives += 1;
        }
    }
    publisher.await.expect("publisher");
    // Silence never lasts much longer than one interval (two, before).
    assert!(
        largest < interval * 3 / 2,
        "largest silence {largest:?} for an interval of {interval:?}"
    );
    server.stop().await;
}
