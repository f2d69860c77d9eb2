//! `/stream` over real TCP: framing, fan-out, topics, resume, keep-alive.

use crate::common;

use common::{get, metric, publish, start, Sse};
use shared::{Item, ResetNotice, ResetReason, RESET_EVENT, TICKER_TOPIC};

#[tokio::test]
async fn headers_and_opening_bytes_come_at_once() {
    let server = start(&[]).await;
    let mut sse = Sse::open(server.addr, "/stream", None).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    assert!(
        sse.headers.get("content-encoding").is_none(),
        "the stream must never be compressed"
    );
    // Nothing was published: what arrives is the opening itself.
    assert_eq!(
        sse.next_item().await,
        Some(Item::Comment(" stream open".into()))
    );
    assert_eq!(sse.next_item().await, Some(Item::Retry(2000)));
    server.stop().await;
}

#[tokio::test]
async fn the_old_console_test_still_works() {
    // `new EventSource("/stream")` with an `onmessage` logger saw unnamed
    // events whose JSON had `id` (a uuid) and `message`.
    let server = start(&["--ticker-interval", "10ms"]).await;
    let mut sse = Sse::open(server.addr, "/stream", None).await;
    let epoch = get(server.addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .expect("epoch");
    let mut last_seq = 0;
    let mut last_n = 0;
    for _ in 0..3 {
        let (event, message) = sse.next_message().await;
        let json: serde_json::Value = serde_json::from_str(&event.data).expect("JSON");
        assert!(uuid::Uuid::parse_str(json["id"].as_str().expect("id")).is_ok());
        let n: u64 = message
            .message
            .strip_prefix("Data pushed from server: (")
            .and_then(|rest| rest.strip_suffix(')'))
            .expect("demo text")
            .parse()
            .expect("a number");
        assert!(n > last_n);
        assert!(message.seq > last_seq, "seq strictly increases");
        assert_eq!(message.topic, TICKER_TOPIC);
        assert_eq!(event.last_event_id, format!("{epoch}-{}", message.seq));
        assert!(
            humantime::parse_rfc3339(&message.time).is_ok(),
            "{}",
            message.time
        );
        last_seq = message.seq;
        last_n = n;
    }
    server.stop().await;
}

#[tokio::test]
async fn publish_reaches_every_subscriber_in_order() {
    let server = start(&[]).await;
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let mut sse = Sse::open(server.addr, "/stream", None).await;
        assert_eq!(
            sse.next_item().await,
            Some(Item::Comment(" stream open".into()))
        );
        subscribers.push(sse);
    }
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(publish(server.addr, "chat", &format!("hello {i}")).await);
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    for sse in &mut subscribers {
        for (i, seq) in seqs.iter().enumerate() {
            let (_, message) = sse.next_message().await;
            assert_eq!(message.seq, *seq);
            assert_eq!(message.message, format!("hello {i}"));
            assert_eq!(message.topic, "chat");
        }
    }
    assert_eq!(metric(server.addr, "sse_events_published_total").await, 5);
    assert_eq!(metric(server.addr, "sse_events_delivered_total").await, 15);
    assert_eq!(metric(server.addr, "sse_subscribers").await, 3);
    server.stop().await;
}

#[tokio::test]
async fn topics_filter_the_stream() {
    let server = start(&[]).await;
    let mut only_a = Sse::open(server.addr, "/stream?topic=a", None).await;
    let mut a_and_b = Sse::open(server.addr, "/stream?topic=a&topic=b", None).await;
    let mut all = Sse::open(server.addr, "/stream", None).await;
    for sse in [&mut only_a, &mut a_and_b, &mut all] {
        sse.next_item().await;
    }
    for topic in ["a", "b", "c", "a"] {
        publish(server.addr, topic, topic).await;
    }
    // A marker on every topic ends each subscriber's expectations.
    for topic in ["a", "b", "c"] {
        publish(server.addr, topic, "end").await;
    }
    async fn topics_until_end(sse: &mut Sse, last_topic: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let (_, message) = sse.next_message().await;
            let done = message.message == "end" && message.topic == last_topic;
            if message.message != "end" {
                seen.push(message.topic);
            }
            if done {
                return seen;
            }
        }
    }
    assert_eq!(topics_until_end(&mut only_a, "a").await, ["a", "a"]);
    assert_eq!(topics_until_end(&mut a_and_b, "b").await, ["a", "b", "a"]);
    assert_eq!(topics_until_end(&mut all, "c").await, ["a", "b", "c", "a"]);

    let bad = get(server.addr, "/stream?topic=no%20spaces").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "invalid_topic");
    server.stop().await;
}

#[tokio::test]
async fn resume_with_last_event_id_gives_exactly_the_missed_events() {
    let server = start(&[]).await;
    let mut first = Sse::open(server.addr, "/stream", None).await;
    first.next_item().await;
    for i in 1..=3 {
        publish(server.addr, "t", &format!("m{i}")).await;
    }
    let mut last_id = String::new();
    for _ in 1..=3 {
        last_id = first.next_message().await.0.last_event_id;
    }
    drop(first);
    for i in 4..=6 {
        publish(server.addr, "t", &format!("m{i}")).await;
    }

    let mut resumed = Sse::open(server.addr, "/stream", Some(&last_id)).await;
    for seq in 4..=6 {
        let (_, message) = resumed.next_message().await;
        assert_eq!((message.seq, message.message), (seq, format!("m{seq}")));
    }
    publish(server.addr, "t", "m7").await;
    assert_eq!(
        resumed.next_message().await.1.seq,
        7,
        "live after replay, no duplicates"
    );

    // The query parameter works for a first connection; the header, sent on
    // reconnect, wins over it.
    let epoch = last_id.split('-').next().expect("epoch");
    let mut by_query =
        Sse::open(server.addr, &format!("/stream?lastEventId={epoch}-5"), None).await;
    assert_eq!(by_query.next_message().await.1.seq, 6);
    let path = format!("/stream?lastEventId={epoch}-1");
    let mut both = Sse::open(server.addr, &path, Some(&format!("{epoch}-6"))).await;
    assert_eq!(both.next_message().await.1.seq, 7);

    // Resuming with topics replays only those topics.
    publish(server.addr, "other", "skip me").await;
    publish(server.addr, "t", "m9").await;
    let mut filtered = Sse::open(server.addr, "/stream?topic=t", Some(&format!("{epoch}-7"))).await;
    assert_eq!(filtered.next_message().await.1.seq, 9);
    server.stop().await;
}

#[tokio::test]
async fn a_too_old_id_gets_a_reset_notice_then_the_history() {
    let server = start(&["--history", "3", "--max-lag", "3"]).await;
    for i in 1..=10 {
        publish(server.addr, "t", &format!("m{i}")).await;
    }
    let epoch = get(server.addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .expect("epoch");
    let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-2"))).await;
    let (reset, notice) = sse.next_reset().await;
    assert_eq!(reset.last_event_id, format!("{epoch}-7"));
    assert_eq!(notice.reason, ResetReason::HistoryExceeded);
    assert_eq!(
        (notice.missed_from, notice.missed_to, notice.resume_seq),
        (Some(3), Some(7), 8)
    );
    for seq in 8..=10 {
        assert_eq!(sse.next_message().await.1.seq, seq);
    }
    assert_eq!(metric(server.addr, "sse_resets_total").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn an_id_from_an_earlier_run_gets_a_reset_notice() {
    let server = start(&[]).await;
    publish(server.addr, "t", "new run 1").await;
    publish(server.addr, "t", "new run 2").await;
    let epoch = get(server.addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .expect("epoch");
    let old = format!("{}-41", epoch - 1000);
    let mut sse = Sse::open(server.addr, "/stream", Some(&old)).await;
    let reset = sse.next_event().await;
    assert_eq!(reset.event, RESET_EVENT);
    let notice: ResetNotice = serde_json::from_str(&reset.data).expect("notice");
    assert_eq!(notice.reason, ResetReason::ServerRestarted);
    assert_eq!(notice.requested.as_deref(), Some(old.as_str()));
    assert_eq!(notice.resume_seq, 1);
    assert_eq!(sse.next_message().await.1.message, "new run 1");
    assert_eq!(sse.next_message().await.1.message, "new run 2");
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_last_event_id_counts_as_none() {
    let server = start(&[]).await;
    publish(server.addr, "t", "before").await;
    for bad in ["nonsense", "12", "-1-2", "1-x", ""] {
        let mut sse = Sse::open(server.addr, "/stream", Some(bad)).await;
        assert_eq!(sse.status, 200);
        assert_eq!(
            sse.next_item().await,
            Some(Item::Comment(" stream open".into()))
        );
        assert_eq!(sse.next_item().await, Some(Item::Retry(2000)));
    }
    let mut sse = Sse::open(server.addr, "/stream", Some("garbage")).await;
    sse.next_item().await;
    publish(server.addr, "t", "after").await;
    let event = sse.next_event().await;
    assert_eq!(event.event, "message", "no reset for a malformed id");
    assert!(event.data.contains("\"after\""));
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_quiet_stream_gets_keep_alive_comments() {
    let server = start(&["--keep-alive", "50ms"]).await;
    let mut sse = Sse::open(server.addr, "/stream", None).await;
    assert_eq!(
        sse.next_item().await,
        Some(Item::Comment(" stream open".into()))
    );
    assert_eq!(sse.next_item().await, Some(Item::Retry(2000)));
    sse.next_position().await;
    assert_eq!(
        sse.next_item().await,
        Some(Item::Comment(" keep-alive".into()))
    );
    assert_eq!(
        sse.next_item().await,
        Some(Item::Comment(" keep-alive".into()))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stream_may_name_only_so_many_topics() {
    let server = start(&["--max-topics-per-stream", "3"]).await;
    let ok = Sse::open(server.addr, "/stream?topic=a&topic=b&topic=c&topic=a", None).await;
    assert_eq!(ok.status, 200, "a repeated topic counts once");
    let refused = get(server.addr, "/stream?topic=a&topic=b&topic=c&topic=d").await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json(),
        serde_json::json!({
            "error": "too_many_topics",
            "message": "the stream names 4 topics; the limit is 3 per stream",
        })
    );
    // The default limit, 32.
    let server = start(&[]).await;
    let query: Vec<String> = (0..33).map(|i| format!("topic=t{i}")).collect();
    let refused = get(server.addr, &format!("/stream?{}", query.join("&"))).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "too_many_topics");
    assert_eq!(metric(server.addr, "sse_subscribers").await, 0);
}

#[tokio::test]
async fn the_history_is_bounded_in_bytes_too() {
    // Each frame is about 200 bytes plus its message: ten 1 KB messages
    // cannot all fit in 4 KB.
    let server = start(&["--history-bytes", "4096"]).await;
    let body = "x".repeat(1000);
    for _ in 0..10 {
        publish(server.addr, "t", &body).await;
    }
    let kept = metric(server.addr, "sse_history_events").await;
    assert!((1..=4).contains(&kept), "{kept} events kept");
    let epoch = get(server.addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .expect("epoch");
    let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-0"))).await;
    let (_, notice) = sse.next_reset().await;
    assert_eq!(notice.reason, ResetReason::HistoryExceeded);
    assert_eq!(notice.resume_seq, 11 - kept);
    for seq in notice.resume_seq..=10 {
        assert_eq!(sse.next_message().await.1.seq, seq);
    }
    // One event larger than the whole bound is still kept, alone.
    let big = "y".repeat(8000);
    publish(server.addr, "t", &big).await;
    assert_eq!(metric(server.addr, "sse_history_events").await, 1);
}
