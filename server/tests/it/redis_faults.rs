//! A Redis that misbehaves never costs a subscriber an event silently and
//! never makes the servers issue an id twice: a lagging or cut link, an
//! error in the middle of a replay, a restart from an older snapshot, entries
//! deleted at the top, an outage, a freeze. Real `redis-server` and server
//! processes; the faults are signals to Redis and a link in front of it that
//! the test pauses and cuts.

use crate::common;

use std::net::SocketAddr;

use common::cluster::{Redis, ServerProcess};
use common::link::Link;
use common::{await_health, await_healthy, get, metric, publish_raw, Sse};
use shared::{EventId, Item, ResetReason, ServerEvent};

/// Publishes and returns the acknowledged id.
async fn publish(addr: SocketAddr, message: &str) -> EventId {
    let body = serde_json::json!({ "message": message }).to_string();
    let answer = publish_raw(addr, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["event_id"]
        .as_str()
        .expect("event_id")
        .parse()
        .expect("an id")
}

/// The next ordinary event, with its id.
async fn next(sse: &mut Sse) -> (EventId, ServerEvent) {
    let (raw, event) = sse.next_message().await;
    (raw.last_event_id.parse().expect("an id"), event)
}

/// Reads until a keep-alive comment; an event before it fails the test.
async fn await_keep_alive(sse: &mut Sse) {
    loop {
        match sse.next_item().await.expect("still connected") {
            Item::Comment(text) if text.trim() == "keep-alive" => return,
            Item::Event(event) if event.event == shared::POSITION_EVENT => {}
            Item::Event(event) => panic!("no event expected yet: {event:?}"),
            Item::Comment(_) | Item::Retry(_) => {}
        }
    }
}

/// Waits until the server at `addr` has read the event `id` from Redis.
async fn await_seen(addr: SocketAddr, id: EventId) {
    let mut sse = Sse::open(
        addr,
        "/stream",
        Some(&EventId::new(id.epoch, id.seq - 1).to_string()),
    )
    .await;
    assert_eq!(next(&mut sse).await.0, id);
}

#[tokio::test]
async fn a_resume_on_a_lagging_server_waits_for_it_and_repeats_nothing() {
    let redis = Redis::start().await;
    let link = Link::start(redis.addr()).await;
    let a = ServerProcess::start(&redis, &[]).await;
    let b = ServerProcess::start_at(&link.redis_url(), &["--keep-alive", "100ms"]).await;
    let mut on_a = Sse::open(a.addr, "/stream", None).await;
    let first = publish(a.addr, "both see this").await;
    await_seen(b.addr, first).await;

    // B's link to Redis stalls: A goes on, B is behind.
    link.pause();
    let mut last = first;
    for i in 0..5 {
        last = publish(a.addr, &format!("only A has read {i}")).await;
    }
    let mut seen_on_a = EventId::new(0, 0);
    while seen_on_a != last {
        seen_on_a = next(&mut on_a).await.0;
    }
    // The client moves to B with the last id it had from A. B has not read
    // it yet: it states the client's own place and waits.
    let mut on_b = Sse::open(b.addr, "/stream", Some(&seen_on_a.to_string())).await;
    assert_eq!(on_b.next_position().await, seen_on_a.to_string());
    await_keep_alive(&mut on_b).await;
    let after = publish(a.addr, "after the move").await;
    link.open();
    let (id, event) = next(&mut on_b).await;
    assert_eq!(
        (id, event.message.as_str()),
        (after, "after the move"),
        "nothing the client had is sent again"
    );
}

#[tokio::test]
async fn a_resume_on_a_server_whose_link_is_cut_and_restored_is_exact() {
    let redis = Redis::start().await;
    let link = Link::start(redis.addr()).await;
    let a = ServerProcess::start(&redis, &[]).await;
    let b = ServerProcess::start_at(&link.redis_url(), &["--keep-alive", "100ms"]).await;
    let first = publish(a.addr, "both see this").await;
    await_seen(b.addr, first).await;
    link.pause();
    let mut last = first;
    for i in 0..4 {
        last = publish(a.addr, &format!("behind {i}")).await;
    }
    let mut on_b = Sse::open(b.addr, "/stream", Some(&last.to_string())).await;
    assert_eq!(on_b.next_position().await, last.to_string());
    // The link drops while the resume waits, and comes back: B reconnects
    // and reads on from where it was.
    link.cut();
    let after = publish(a.addr, "after the cut").await;
    link.open();
    let (id, event) = next(&mut on_b).await;
    assert_eq!((id, event.message.as_str()), (after, "after the cut"));
    assert_eq!(metric(b.addr, "sse_resets_total").await, 0);
}

#[tokio::test]
async fn a_replay_that_meets_a_redis_error_is_retried_not_turned_into_a_reset() {
    let redis = Redis::start().await;
    let args = [
        "--history",
        "20",
        "--max-lag",
        "20",
        "--redis-max-len",
        "200",
        "--keep-alive",
        "100ms",
    ];
    let link = Link::start(redis.addr()).await;
    let a = ServerProcess::start_at(&link.redis_url(), &args).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(publish(a.addr, &format!("m{i}")).await);
    }
    // Seq 10 is far older than A's 20 events: the replay reads Redis. Redis
    // is cut off while it does.
    link.cut();
    await_health(a.addr, 503).await;
    let errors = metric(a.addr, "sse_log_errors_total").await;
    let mut resumed = Sse::open(a.addr, "/stream", Some(&ids[9].to_string())).await;
    assert_eq!(resumed.next_position().await, ids[9].to_string());
    // The replay has failed at least once before Redis comes back.
    while metric(a.addr, "sse_log_errors_total").await == errors {
        await_keep_alive(&mut resumed).await;
    }
    link.open();
    for expected in &ids[10..] {
        let (id, _) = next(&mut resumed).await;
        assert_eq!(id, *expected, "exact, with no reset notice");
    }
    assert_eq!(metric(a.addr, "sse_resets_total").await, 0);

    // Redis that stays away past the retries: the stream ends (the client
    // reconnects) rather than claim the events are gone.
    link.cut();
    await_health(a.addr, 503).await;
    let mut cut_off = Sse::open(a.addr, "/stream", Some(&ids[9].to_string())).await;
    for item in cut_off.until_end().await {
        if let Item::Event(event) = item {
            assert_eq!(event.event, shared::POSITION_EVENT, "{event:?}");
        }
    }
    assert_eq!(metric(a.addr, "sse_resets_total").await, 0);
    // Ended by the replay giving up, not cut as a stalled subscriber.
    assert_eq!(metric(a.addr, "sse_subscribers_dropped_total").await, 0);
}

#[tokio::test]
async fn redis_restarted_from_an_older_snapshot_begins_a_new_epoch_and_reuses_no_id() {
    let mut redis = Redis::start_with_snapshots_only().await;
    let a = ServerProcess::start(&redis, &["--keep-alive", "100ms"]).await;
    let mut live = Sse::open(a.addr, "/stream", None).await;
    let mut issued = Vec::new();
    for i in 0..3 {
        issued.push(publish(a.addr, &format!("saved {i}")).await);
    }
    let mut conn = redis.connection().await;
    let () = redis::cmd("SAVE")
        .query_async(&mut conn)
        .await
        .expect("SAVE");
    for i in 0..2 {
        issued.push(publish(a.addr, &format!("acknowledged, never saved {i}")).await);
    }
    for id in &issued {
        assert_eq!(next(&mut live).await.0, *id);
    }
    // Redis dies and comes back with the snapshot: three of five events.
    redis.kill().await;
    redis.restart().await;
    assert_eq!(redis.stream_len().await, 3);
    await_healthy(a.addr).await;

    let fresh = publish(a.addr, "after the restart").await;
    assert!(
        !issued.contains(&fresh),
        "{fresh} was issued before the restart"
    );
    assert!(fresh.epoch > issued[0].epoch && fresh.seq == 1, "{fresh}");
    // The live subscriber hears that the log lost events, then gets the
    // new event.
    let (reset, notice) = live.next_reset().await;
    assert_eq!(notice.reason, ResetReason::ServerRestarted);
    assert!(
        notice
            .message
            .contains(&format!("lost events after {}", issued[4])),
        "{}",
        notice.message
    );
    assert_eq!(
        reset.last_event_id,
        EventId::new(fresh.epoch, 0).to_string()
    );
    let (id, event) = next(&mut live).await;
    assert_eq!((id, event.message.as_str()), (fresh, "after the restart"));
    // A server started now resumes a client of the old epoch with a notice.
    let b = ServerProcess::start(&redis, &[]).await;
    let mut moved = Sse::open(b.addr, "/stream", Some(&issued[4].to_string())).await;
    let (_, notice) = moved.next_reset().await;
    assert_eq!(notice.reason, ResetReason::ServerRestarted);
    assert_eq!(next(&mut moved).await.0, fresh);
}

#[tokio::test]
async fn entries_deleted_at_the_top_begin_a_new_epoch_instead_of_failing_every_publish() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &[]).await;
    let mut live = Sse::open(a.addr, "/stream", None).await;
    let mut issued = Vec::new();
    for i in 0..5 {
        issued.push(publish(a.addr, &format!("m{i}")).await);
    }
    for id in &issued {
        assert_eq!(next(&mut live).await.0, *id);
    }
    let mut conn = redis.connection().await;
    let deleted: u64 = redis::cmd("XDEL")
        .arg("sse:events")
        .arg(issued[3].to_string())
        .arg(issued[4].to_string())
        .query_async(&mut conn)
        .await
        .expect("XDEL");
    assert_eq!(deleted, 2);
    // A second server that reads the stream from now on has seen less.
    let b = ServerProcess::start(&redis, &[]).await;
    for server in [a.addr, b.addr] {
        let fresh = publish(server, "after the delete").await;
        assert!(!issued.contains(&fresh), "{fresh}");
        issued.push(fresh);
    }
    assert!(issued[5].epoch > issued[0].epoch, "{issued:?}");
    assert_eq!(issued[6], EventId::new(issued[5].epoch, 2));
    let (_, notice) = live.next_reset().await;
    assert_eq!(notice.reason, ResetReason::ServerRestarted);
    assert_eq!(next(&mut live).await.0, issued[5]);
    assert_eq!(next(&mut live).await.0, issued[6]);
}

#[tokio::test]
async fn publishes_during_an_outage_are_refused_at_once_without_trying_redis() {
    let mut redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &[]).await;
    publish(a.addr, "before").await;
    redis.stop().await;
    await_health(a.addr, 503).await;
    let errors = metric(a.addr, "sse_log_errors_total").await;
    let mut attempts = Vec::new();
    for i in 0..20 {
        let addr = a.addr;
        attempts.push(tokio::spawn(async move {
            let body = serde_json::json!({ "message": format!("during {i}") }).to_string();
            publish_raw(addr, &body).await
        }));
    }
    for attempt in attempts {
        let answer = attempt.await.expect("publisher");
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert_eq!(answer.headers["retry-after"], "1");
        assert_eq!(
            answer.json(),
            serde_json::json!({
                "error": "log_unavailable",
                "message": "the event log (Redis) is unreachable; the event was not published",
            })
        );
    }
    // Not one of them went to Redis (and waited there): a command that
    // fails is counted, a publish refused at once is not.
    let counted = metric(a.addr, "sse_log_errors_total").await;
    assert!(
        counted - errors <= 1,
        "{} publishes tried Redis",
        counted - errors
    );
}

#[tokio::test]
async fn a_frozen_redis_is_reported_down_and_recovered_from() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &["--keep-alive", "100ms"]).await;
    let mut live = Sse::open(a.addr, "/stream", None).await;
    let before = publish(a.addr, "before").await;
    assert_eq!(next(&mut live).await.0, before);
    redis.freeze();
    // A publish waits for Redis no longer than its timeout, and says that
    // it cannot know whether the event was stored.
    let body = serde_json::json!({ "message": "into the freeze" }).to_string();
    let answer = publish_raw(a.addr, &body).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        answer.json()["message"],
        "the event log (Redis) did not answer in time; the event may or may not have been stored"
    );
    await_health(a.addr, 503).await;
    let health = get(a.addr, "/healthz").await.json();
    assert_eq!(
        (health["status"].as_str(), health["log_up"].as_bool()),
        (Some("degraded"), Some(false))
    );
    assert_eq!(metric(a.addr, "sse_log_up").await, 0);
    await_keep_alive(&mut live).await;

    redis.thaw();
    await_healthy(a.addr).await;
    let after = publish(a.addr, "after the thaw").await;
    // The event sent into the freeze was stored once Redis went on: the
    // subscriber gets it, then the next, in order and once each.
    let (id, event) = next(&mut live).await;
    assert_eq!(event.message, "into the freeze");
    assert_eq!(id, EventId::new(before.epoch, before.seq + 1));
    assert_eq!(next(&mut live).await.0, after);
}
