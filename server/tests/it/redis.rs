//! Several servers sharing one Redis stream: real `redis-server` and server
//! processes on loopback, started by each test.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::cluster::{Redis, ServerProcess};
use common::{await_healthy, get, metric, publish_raw, try_publish_json, Sse};
use shared::{EventId, Item, ResetReason, ServerEvent};

/// An acknowledged publish: the answer's event id and event uuid.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    event_id: String,
    uuid: String,
}

/// Publishes and returns the acknowledgement, or `None` when the server
/// could not be reached or did not answer 200.
async fn try_publish(addr: SocketAddr, message: &str) -> Option<Ack> {
    let json = try_publish_json(addr, &serde_json::json!({ "message": message })).await?;
    Some(Ack {
        event_id: json["event_id"].as_str()?.to_owned(),
        uuid: json["id"].as_str()?.to_owned(),
    })
}

async fn publish(addr: SocketAddr, message: &str) -> Ack {
    try_publish(addr, message)
        .await
        .unwrap_or_else(|| panic!("publishing {message:?} on {addr} is acknowledged"))
}

/// The next `n` ordinary events as (id, event).
async fn receive(sse: &mut Sse, n: usize) -> Vec<(String, ServerEvent)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (raw, event) = sse.next_message().await;
        out.push((raw.last_event_id, event));
    }
    out
}

/// Waits for a keep-alive comment: the stream is open and quiet (an event
/// before it fails the test).
async fn await_keep_alive(sse: &mut Sse) {
    loop {
        match sse.next_item().await.expect("still connected") {
            Item::Comment(text) if text.trim() == "keep-alive" => return,
            Item::Event(event) => panic!("no event expected yet: {event:?}"),
            Item::Comment(_) | Item::Retry(_) => {}
        }
    }
}

/// Checks that `events` are seqs `from..` with no gap or repeat, one epoch.
fn assert_contiguous(events: &[(String, ServerEvent)], from: u64) {
    let epoch = events
        .first()
        .map(|(id, _)| id.parse::<EventId>().unwrap().epoch);
    for (i, (id, event)) in events.iter().enumerate() {
        let expected = from + i as u64;
        assert_eq!(event.seq, expected, "seq {i} of {}", events.len());
        assert_eq!(id, &format!("{}-{expected}", epoch.unwrap()));
    }
}

/// Checks every acknowledged publish is among `events` with its uuid.
fn assert_all_acknowledged_received(acks: &[Ack], events: &[(String, ServerEvent)]) {
    let received: HashMap<&str, String> = events
        .iter()
        .map(|(id, event)| (id.as_str(), event.id.to_string()))
        .collect();
    for ack in acks {
        assert_eq!(
            received.get(ack.event_id.as_str()),
            Some(&ack.uuid),
            "acknowledged event {} was not received",
            ack.event_id
        );
    }
}

#[tokio::test]
async fn a_publish_on_either_server_reaches_subscribers_of_both_once_in_one_order() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &[]).await;
    let b = ServerProcess::start(&redis, &[]).await;
    let mut on_a = Sse::open(a.addr, "/stream", None).await;
    let mut on_b = Sse::open(b.addr, "/stream", None).await;
    assert_eq!((on_a.status, on_b.status), (200, 200));

    // Two publishers at once, one per server: the stream orders them.
    let (a_addr, b_addr) = (a.addr, b.addr);
    let via_a = tokio::spawn(async move {
        let mut acks = Vec::new();
        for i in 0..150 {
            acks.push(publish(a_addr, &format!("a{i}")).await);
        }
        acks
    });
    let via_b = tokio::spawn(async move {
        let mut acks = Vec::new();
        for i in 0..150 {
            acks.push(publish(b_addr, &format!("b{i}")).await);
        }
        acks
    });
    let from_a = receive(&mut on_a, 300).await;
    let from_b = receive(&mut on_b, 300).await;
    let mut acks = via_a.await.unwrap();
    acks.extend(via_b.await.unwrap());

    assert_contiguous(&from_a, 1);
    // Same events, same ids, same order, byte for byte the same data.
    let key = |events: &[(String, ServerEvent)]| {
        events
            .iter()
            .map(|(id, e)| (id.clone(), serde_json::to_string(e).unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&from_a), key(&from_b));
    assert_all_acknowledged_received(&acks, &from_a);
    // Each publisher's events keep their order.
    for prefix in ["a", "b"] {
        let mine: Vec<String> = from_a
            .iter()
            .map(|(_, e)| e.message.clone())
            .filter(|m| m.starts_with(prefix))
            .collect();
        let expected: Vec<String> = (0..150).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(mine, expected);
    }
    let health = get(b.addr, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["log"], "redis");
    assert_eq!(health.json()["last_seq"], 300);
}

#[tokio::test]
async fn a_subscriber_moves_to_another_server_after_a_sigkill_and_misses_nothing() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &[]).await;
    let b = ServerProcess::start(&redis, &[]).await;
    let mut on_a = Sse::open(a.addr, "/stream", None).await;

    // A burst over both servers; once A is gone its publishes fail, and
    // only the acknowledged ones are promised.
    let (a_addr, b_addr) = (a.addr, b.addr);
    let burst = tokio::spawn(async move {
        let mut acks = Vec::new();
        for i in 0..600 {
            let target = if i % 2 == 0 { a_addr } else { b_addr };
            if let Some(ack) = try_publish(target, &format!("m{i}")).await {
                acks.push(ack);
            }
        }
        acks
    });

    // Kill A in the middle of the burst, then read what it had sent.
    let mut before = receive(&mut on_a, 150).await;
    a.kill().await;
    while let Some(item) = on_a.next_item().await {
        if let Item::Event(event) = item {
            let message = serde_json::from_str(&event.data).expect("ServerEvent");
            before.push((event.last_event_id, message));
        }
    }
    let acks = burst.await.unwrap();
    assert!(
        acks.len() >= 300,
        "B acknowledged its share: {}",
        acks.len()
    );
    let last_seq = get(b.addr, "/healthz").await.json()["last_seq"]
        .as_u64()
        .unwrap();

    // The EventSource reconnects to B with the last id it saw.
    let last_id = before.last().unwrap().0.clone();
    let mut on_b = Sse::open(b.addr, "/stream", Some(&last_id)).await;
    let after = receive(&mut on_b, (last_seq - before.len() as u64) as usize).await;
    let mut all = before;
    all.extend(after);
    assert_contiguous(&all, 1);
    assert_eq!(all.len() as u64, last_seq);
    assert_all_acknowledged_received(&acks, &all);
}

#[tokio::test]
async fn every_acknowledged_publish_survives_a_restart_of_both_servers() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &[]).await;
    let b = ServerProcess::start(&redis, &[]).await;
    let mut acks = Vec::new();
    for i in 0..300 {
        let target = if i % 2 == 0 { a.addr } else { b.addr };
        acks.push(publish(target, &format!("m{i}")).await);
    }
    a.terminate().await;
    b.kill().await;

    let a = ServerProcess::start(&redis, &[]).await;
    let b = ServerProcess::start(&redis, &[]).await;
    let epoch = acks[0].event_id.parse::<EventId>().unwrap().epoch;
    // From the very start, on one server.
    let mut on_a = Sse::open(a.addr, "/stream", Some(&format!("{epoch}-0"))).await;
    let all = receive(&mut on_a, 300).await;
    assert_contiguous(&all, 1);
    assert_all_acknowledged_received(&acks, &all);
    // From the middle, on the other, with the query parameter.
    let path = format!("/stream?lastEventId={}", acks[149].event_id);
    let mut on_b = Sse::open(b.addr, &path, None).await;
    let rest = receive(&mut on_b, 150).await;
    assert_eq!(rest, all[150..]);
    // Numbering goes on in the same stream.
    let next = publish(b.addr, "after the restart").await;
    assert_eq!(next.event_id, format!("{epoch}-301"));
    let (id, event) = receive(&mut on_a, 1).await.remove(0);
    assert_eq!(
        (id.as_str(), event.message.as_str()),
        (next.event_id.as_str(), "after the restart")
    );
}

#[tokio::test]
async fn an_id_older_than_the_trimmed_stream_gets_the_reset_notice_on_any_server() {
    let redis = Redis::start().await;
    let args = [
        "--history",
        "50",
        "--max-lag",
        "50",
        "--redis-max-len",
        "50",
    ];
    let a = ServerProcess::start(&redis, &args).await;
    let mut acks = Vec::new();
    for i in 0..120 {
        acks.push(publish(a.addr, &format!("m{i}")).await);
    }
    let epoch = acks[0].event_id.parse::<EventId>().unwrap().epoch;
    // A server that starts later loads the same 50 the stream holds.
    let b = ServerProcess::start(&redis, &args).await;
    for server in [&a, &b] {
        let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-10"))).await;
        let (reset, notice) = sse.next_reset().await;
        assert_eq!(reset.last_event_id, format!("{epoch}-70"));
        assert_eq!(notice.reason, ResetReason::HistoryExceeded);
        assert_eq!(
            (notice.missed_from, notice.missed_to, notice.resume_seq),
            (Some(11), Some(70), 71)
        );
        let rest = receive(&mut sse, 50).await;
        assert_contiguous(&rest, 71);
    }
    assert_eq!(redis.stream_len().await, 50);
}

#[tokio::test]
async fn while_redis_is_down_publishing_fails_subscribers_wait_and_then_catch_up() {
    let mut redis = Redis::start().await;
    let args = ["--keep-alive", "100ms"];
    let a = ServerProcess::start(&redis, &args).await;
    let b = ServerProcess::start(&redis, &args).await;
    let mut on_a = Sse::open(a.addr, "/stream", None).await;
    let mut on_b = Sse::open(b.addr, "/stream", None).await;
    let mut acks = Vec::new();
    for i in 0..50 {
        acks.push(publish(a.addr, &format!("before {i}")).await);
    }
    let mut seen_a = receive(&mut on_a, 50).await;
    let mut seen_b = receive(&mut on_b, 50).await;

    redis.stop().await;
    let refused = publish_raw(a.addr, r#"{"message":"during"}"#).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.headers["retry-after"], "1");
    let body = refused.json();
    assert_eq!(body["error"], "log_unavailable");
    assert_eq!(
        body["message"],
        "the event log (Redis) is unreachable; the event was not published"
    );
    let health = get(a.addr, "/healthz").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "degraded");
    assert_eq!(health.json()["log_up"], false);
    assert_eq!(metric(a.addr, "sse_log_up").await, 0);
    assert!(metric(a.addr, "sse_log_outages_total").await >= 1);
    // Subscribers stay connected and hear keep-alives.
    await_keep_alive(&mut on_a).await;
    await_keep_alive(&mut on_b).await;

    redis.restart().await;
    await_healthy(a.addr).await;
    await_healthy(b.addr).await;
    for i in 0..10 {
        let target = if i % 2 == 0 { a.addr } else { b.addr };
        acks.push(publish(target, &format!("after {i}")).await);
    }
    seen_a.extend(receive(&mut on_a, 10).await);
    seen_b.extend(receive(&mut on_b, 10).await);
    assert_contiguous(&seen_a, 1);
    assert_eq!(seen_a, seen_b);
    assert_all_acknowledged_received(&acks, &seen_a);
    assert_eq!(get(a.addr, "/healthz").await.status, 200);
    // Nothing acknowledged was lost by Redis's restart: a reader from the
    // start finds all 60.
    let epoch = acks[0].event_id.parse::<EventId>().unwrap().epoch;
    let mut replay = Sse::open(b.addr, "/stream", Some(&format!("{epoch}-0"))).await;
    let all = receive(&mut replay, 60).await;
    assert_eq!(all, seen_a);
}

#[tokio::test]
async fn a_replaced_stream_is_announced_to_live_subscribers() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &[]).await;
    let b = ServerProcess::start(&redis, &[]).await;
    let mut on_b = Sse::open(b.addr, "/stream", None).await;
    let first = publish(a.addr, "old stream").await;
    assert_eq!(receive(&mut on_b, 1).await[0].0, first.event_id);

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg("sse:events")
        .query_async(&mut conn)
        .await
        .unwrap();
    let next = publish(a.addr, "new stream").await;
    let old = first.event_id.parse::<EventId>().unwrap();
    let new = next.event_id.parse::<EventId>().unwrap();
    assert!(
        new.epoch > old.epoch && new.seq == 1,
        "{new:?} after {old:?}"
    );

    let (_, notice) = on_b.next_reset().await;
    assert_eq!(
        (notice.reason, notice.resume_seq),
        (ResetReason::ServerRestarted, 1)
    );
    let (id, event) = receive(&mut on_b, 1).await.remove(0);
    assert_eq!((id, event.message.as_str()), (next.event_id, "new stream"));
    assert_eq!(metric(b.addr, "sse_resets_total").await, 1);
}

#[tokio::test]
async fn a_server_started_while_redis_is_down_resumes_its_subscribers_once_it_is_back() {
    let mut redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &[]).await;
    let mut acks = Vec::new();
    for i in 0..5 {
        acks.push(publish(a.addr, &format!("m{i}")).await);
    }
    a.terminate().await;
    redis.stop().await;

    // B cannot load the stream: it serves anyway, degraded, and holds its
    // subscribers' resume points until it can.
    let b = ServerProcess::start(&redis, &["--keep-alive", "100ms"]).await;
    let health = get(b.addr, "/healthz").await;
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (503, Some("degraded"))
    );
    let mut resuming = Sse::open(b.addr, "/stream", Some(&acks[1].event_id)).await;
    let mut live = Sse::open(b.addr, "/stream", None).await;
    assert_eq!((resuming.status, live.status), (200, 200));
    await_keep_alive(&mut resuming).await;

    redis.restart().await;
    let replayed = receive(&mut resuming, 3).await;
    assert_contiguous(&replayed, 3);
    assert_all_acknowledged_received(&acks[2..], &replayed);
    await_healthy(b.addr).await;
    let next = publish(b.addr, "after").await;
    for sse in [&mut resuming, &mut live] {
        let (id, event) = receive(sse, 1).await.remove(0);
        assert_eq!(
            (id, event.message),
            (next.event_id.clone(), "after".to_owned())
        );
    }
}

#[tokio::test]
async fn a_resume_from_before_the_history_is_replayed_from_the_longer_stream() {
    let redis = Redis::start().await;
    // Each server keeps the last 20 events; the stream keeps 100.
    let args = [
        "--history",
        "20",
        "--max-lag",
        "20",
        "--redis-max-len",
        "100",
    ];
    let a = ServerProcess::start(&redis, &args).await;
    for i in 0..150 {
        let topic = if i % 2 == 0 { "a" } else { "b" };
        common::publish(a.addr, topic, &format!("m{i}")).await;
    }
    let b = ServerProcess::start(&redis, &args).await;
    let epoch = get(a.addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .unwrap();

    // Within the stream: exact, from the stream and then the history.
    for server in [&a, &b] {
        let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-60"))).await;
        let events = receive(&mut sse, 90).await;
        assert_contiguous(&events, 61);
    }
    // Older than the stream: the notice for what it no longer holds.
    let mut sse = Sse::open(b.addr, "/stream", Some(&format!("{epoch}-10"))).await;
    let (_, notice) = sse.next_reset().await;
    assert_eq!(notice.reason, ResetReason::HistoryExceeded);
    assert_eq!(
        (notice.missed_from, notice.missed_to, notice.resume_seq),
        (Some(11), Some(50), 51)
    );
    assert_contiguous(&receive(&mut sse, 100).await, 51);
    // Topic filters apply to the replay too, and live events follow it.
    let path = "/stream?topic=b";
    let mut only_b = Sse::open(a.addr, path, Some(&format!("{epoch}-60"))).await;
    let events = receive(&mut only_b, 45).await;
    let seqs: Vec<u64> = events.iter().map(|(_, e)| e.seq).collect();
    assert_eq!(seqs, (62..=150).step_by(2).collect::<Vec<_>>());
    assert!(events.iter().all(|(_, e)| e.topic == "b"));
    let next = common::publish(b.addr, "b", "live").await;
    assert_eq!(receive(&mut only_b, 1).await[0].1.seq, next);
    assert_eq!(metric(a.addr, "sse_resets_total").await, 0);
}
