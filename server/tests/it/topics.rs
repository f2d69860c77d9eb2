//! Topics over real TCP: a publish wakes only its own subscribers, every
//! topic keeps its own history under the global bounds, prefix patterns,
//! the live-topic limit, and `GET /topics`.

use crate::common;

use common::{get, metric, publish, publish_raw, start, Sse};
use shared::ResetReason;

async fn epoch_of(addr: std::net::SocketAddr) -> u64 {
    get(addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .expect("epoch")
}

#[tokio::test]
async fn a_subscriber_of_one_topic_is_not_woken_by_publishes_to_another() {
    let server = start(&[]).await;
    let mut a = Sse::open(server.addr, "/stream?topic=a", None).await;
    a.next_position().await;
    let mut bystanders = Vec::new();
    for _ in 0..20 {
        let mut sse = Sse::open(server.addr, "/stream?topic=b", None).await;
        sse.next_position().await;
        bystanders.push(sse);
    }
    let before = metric(server.addr, "sse_wakeups_total").await;
    for i in 0..10 {
        publish(server.addr, "a", &format!("for a {i}")).await;
    }
    for i in 0..10 {
        assert_eq!(a.next_message().await.1.message, format!("for a {i}"));
    }
    // Ten publishes to `a` woke its one subscriber ten times at most, and
    // none of the twenty subscribers of `b`.
    let woken = metric(server.addr, "sse_wakeups_total").await - before;
    assert!((1..=10).contains(&woken), "{woken} wake-ups");
    server.stop().await;
}

#[tokio::test]
async fn a_quiet_topic_keeps_its_events_while_a_busy_one_turns_the_history_over() {
    let server = start(&[
        "--history",
        "50",
        "--max-lag",
        "50",
        "--history-per-topic",
        "5",
    ])
    .await;
    let epoch = epoch_of(server.addr).await;
    let mut quiet = Vec::new();
    for i in 0..3 {
        quiet.push(publish(server.addr, "quiet", &format!("q{i}")).await);
    }
    // Twenty times the history on another topic.
    for i in 0..1000 {
        publish(server.addr, "busy", &format!("b{i}")).await;
    }
    assert_eq!(metric(server.addr, "sse_history_events").await, 50);
    // A resume from before all of it is exact for the quiet topic.
    let mut back = Sse::open(
        server.addr,
        "/stream?topic=quiet",
        Some(&format!("{epoch}-0")),
    )
    .await;
    for (i, seq) in quiet.iter().enumerate() {
        let (_, event) = back.next_message().await;
        assert_eq!((event.seq, event.message), (*seq, format!("q{i}")));
    }
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    // One of the busy topic from the same point hears exactly what it lost.
    let mut busy = Sse::open(
        server.addr,
        "/stream?topic=busy",
        Some(&format!("{epoch}-0")),
    )
    .await;
    let (reset, notice) = busy.next_reset().await;
    assert_eq!(notice.reason, ResetReason::HistoryExceeded);
    assert_eq!(notice.missed_count, Some(1000 - 47));
    assert_eq!((notice.missed_from, notice.missed_to), (Some(4), Some(956)));
    assert_eq!(notice.resume_seq, 957);
    assert_eq!(reset.last_event_id, format!("{epoch}-956"));
    for seq in 957..=1003 {
        assert_eq!(busy.next_message().await.1.seq, seq);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_notice_names_only_the_subscribers_own_losses() {
    let server = start(&[
        "--history",
        "10",
        "--max-lag",
        "10",
        "--history-per-topic",
        "2",
    ])
    .await;
    let epoch = epoch_of(server.addr).await;
    // a: 4 events, b: 12 events, interleaved.
    let mut a_seqs = Vec::new();
    for i in 0..12 {
        if i % 3 == 0 {
            a_seqs.push(publish(server.addr, "a", &format!("a{i}")).await);
        }
        publish(server.addr, "b", &format!("b{i}")).await;
    }
    let mut sse = Sse::open(server.addr, "/stream?topic=a", Some(&format!("{epoch}-0"))).await;
    let got = get(server.addr, "/topics").await.json();
    let a = got["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "a")
        .unwrap()
        .clone();
    let retained = a["retained"].as_u64().unwrap() as usize;
    // Sixteen events in a history of ten: a keeps its floor of two, b
    // loses the rest of what has to go.
    assert_eq!(retained, 2);
    let lost = a_seqs.len() - retained;
    let (_, notice) = sse.next_reset().await;
    assert_eq!(notice.missed_count, Some(lost as u64));
    assert_eq!(notice.missed_from, Some(a_seqs[0]));
    assert_eq!(notice.missed_to, Some(a_seqs[lost - 1]));
    assert_eq!(notice.resume_seq, a_seqs[lost]);
    for seq in &a_seqs[lost..] {
        assert_eq!(sse.next_message().await.1.seq, *seq);
    }
    // Nothing of b's turnover is named for a subscriber of a that is
    // current: a resume from a's last event is silent.
    let last = a_seqs.last().unwrap();
    for i in 0..30 {
        publish(server.addr, "b", &format!("more b{i}")).await;
    }
    let next = publish(server.addr, "a", "after").await;
    let mut current = Sse::open(
        server.addr,
        "/stream?topic=a",
        Some(&format!("{epoch}-{last}")),
    )
    .await;
    assert_eq!(current.next_message().await.1.seq, next);
    server.stop().await;
}

#[tokio::test]
async fn prefix_patterns_follow_every_topic_under_them() {
    let server = start(&[]).await;
    let mut rooms = Sse::open(server.addr, "/stream?topic=room.*", None).await;
    let mut both = Sse::open(server.addr, "/stream?topic=room.*&topic=lobby", None).await;
    let mut all = Sse::open(server.addr, "/stream?topic=*", None).await;
    for sse in [&mut rooms, &mut both, &mut all] {
        sse.next_position().await;
    }
    for topic in ["room.1", "room", "lobby", "room.eu.2", "roomy.3", "room.1"] {
        publish(server.addr, topic, topic).await;
    }
    publish(server.addr, "end", "end").await;
    publish(server.addr, "room.end", "end").await;
    async fn until_end(sse: &mut Sse) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let (_, event) = sse.next_message().await;
            if event.message == "end" {
                return seen;
            }
            seen.push(event.topic);
        }
    }
    assert_eq!(
        until_end(&mut rooms).await,
        ["room.1", "room.eu.2", "room.1"]
    );
    assert_eq!(
        until_end(&mut both).await,
        ["room.1", "lobby", "room.eu.2", "room.1"]
    );
    assert_eq!(
        until_end(&mut all).await,
        ["room.1", "room", "lobby", "room.eu.2", "roomy.3", "room.1"]
    );
    // A resume by pattern replays only its topics.
    let epoch = epoch_of(server.addr).await;
    let mut back = Sse::open(
        server.addr,
        "/stream?topic=room.*",
        Some(&format!("{epoch}-0")),
    )
    .await;
    let seqs: Vec<u64> = [
        back.next_message().await.1.seq,
        back.next_message().await.1.seq,
        back.next_message().await.1.seq,
    ]
    .to_vec();
    assert_eq!(seqs, [1, 4, 6]);
    // Bad patterns are refused with what is wrong.
    for (bad, message) in [
        (
            "room*",
            "topic pattern \"room*\" has a '*' that is not its last part; use NAME.* or *",
        ),
        (
            "*.room",
            "topic pattern \"*.room\" has a '*' that is not its last part; use NAME.* or *",
        ),
    ] {
        let answer = get(server.addr, &format!("/stream?topic={bad}")).await;
        assert_eq!(answer.status, 400);
        assert_eq!(
            answer.json(),
            serde_json::json!({ "error": "invalid_topic", "message": message })
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_live_topic_limit_evicts_topics_no_one_follows_or_refuses() {
    let server = start(&["--max-live-topics", "3"]).await;
    let mut followed = Sse::open(server.addr, "/stream?topic=kept", None).await;
    followed.next_position().await;
    publish(server.addr, "old", "oldest idle").await;
    publish(server.addr, "newer", "newer idle").await;
    assert_eq!(metric(server.addr, "sse_topics").await, 3);
    // A fourth topic: the least recently published one no one follows goes.
    publish(server.addr, "fresh", "fresh").await;
    assert_eq!(metric(server.addr, "sse_topic_evictions_total").await, 1);
    let names: Vec<String> = get(server.addr, "/topics").await.json()["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["fresh", "kept", "newer"]);
    // Every topic followed: a new one is refused, and nothing changes.
    let mut subs = Vec::new();
    for topic in ["fresh", "newer"] {
        let mut sse = Sse::open(server.addr, &format!("/stream?topic={topic}"), None).await;
        sse.next_position().await;
        subs.push(sse);
    }
    let refused = publish_raw(server.addr, r#"{"message":"x","topic":"one.too.many"}"#).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.headers["retry-after"], "5");
    assert_eq!(
        refused.json(),
        serde_json::json!({
            "error": "topic_limit",
            "message": "the server holds its maximum of 3 live topics, all of them followed; retry later",
        })
    );
    let refused = get(server.addr, "/stream?topic=one.too.many").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["error"], "topic_limit");
    assert_eq!(metric(server.addr, "sse_topics").await, 3);
    server.stop().await;
}

#[tokio::test]
async fn topics_are_listed_by_name_a_page_at_a_time() {
    let server = start(&[]).await;
    let mut sse = Sse::open(server.addr, "/stream?topic=t03", None).await;
    sse.next_position().await;
    for i in (0..7).rev() {
        publish(server.addr, &format!("t{i:02}"), "x").await;
    }
    publish(server.addr, "t03", "again").await;
    let page = get(server.addr, "/topics?limit=3").await.json();
    assert_eq!(page["next"], "t02");
    let first = &page["topics"][0];
    assert_eq!(first["name"], "t00");
    assert_eq!(first["subscribers"], 0);
    assert_eq!(first["retained"], 1);
    assert_eq!(first["last_seq"], 7);
    assert_eq!(first["published_total"], 1);
    let page = get(server.addr, "/topics?limit=3&after=t02").await.json();
    let names: Vec<&str> = page["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["t03", "t04", "t05"]);
    let t03 = &page["topics"][0];
    assert_eq!(
        (
            t03["subscribers"].as_u64(),
            t03["retained"].as_u64(),
            t03["published_total"].as_u64()
        ),
        (Some(1), Some(2), Some(2))
    );
    let page = get(server.addr, "/topics?limit=3&after=t05").await.json();
    assert_eq!(page["topics"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], serde_json::Value::Null);
    // Every page says how many events a topic keeps (the default).
    assert_eq!(page["history_per_topic"], 100);
    // The page reads the body as the shared type.
    let typed: shared::TopicsPage = serde_json::from_value(page).expect("a TopicsPage");
    assert_eq!(typed.topics[0].name, "t06");
    assert_eq!(typed.topics[0].published_total, 1);
    assert_eq!(typed.history_per_topic, 100);
    for (query, message) in [
        (
            "limit=0",
            "limit must be a number from 1 to 1000, not \"0\"",
        ),
        (
            "limit=x",
            "limit must be a number from 1 to 1000, not \"x\"",
        ),
        (
            "after=a%20b",
            "after: topic \"a b\" contains ' '; use ASCII letters, digits, '-', '_' and '.'",
        ),
    ] {
        let answer = get(server.addr, &format!("/topics?{query}")).await;
        assert_eq!(answer.status, 400, "{query}");
        assert_eq!(
            answer.json(),
            serde_json::json!({ "error": "invalid_query", "message": message })
        );
    }
    server.stop().await;
}
