//! `GET /stream?last=N`: a new stream starts with the newest N events of
//! its selection, then goes live; in memory, from disk beyond what the
//! memory holds (also after SIGKILL), and from Redis on another server.

use crate::common;

use std::net::SocketAddr;

use common::cluster::{Redis, ServerProcess};
use common::{get, metric, publish, start, Sse};
use shared::EventId;

/// Reads `count` ordinary events: their seqs and messages.
async fn messages(sse: &mut Sse, count: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    for _ in 0..count {
        let (_, event) = sse.next_message().await;
        got.push((event.seq, event.message));
    }
    got
}

/// Publishes `messages` to `topic` and returns their seqs and messages.
async fn publish_all(addr: SocketAddr, topic: &str, messages: &[&str]) -> Vec<(u64, String)> {
    let mut sent = Vec::new();
    for message in messages {
        sent.push((publish(addr, topic, message).await, (*message).to_owned()));
    }
    sent
}

/// Polls `/healthz` until the server has read the log up to `seq`.
async fn await_last_seq(addr: SocketAddr, seq: u64) {
    tokio::time::timeout(common::PATIENCE, async {
        while get(addr, "/healthz").await.json()["last_seq"].as_u64() < Some(seq) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the server reads the shared log in time");
}

/// The `position` a stream opens with, as an id.
async fn opening_position(sse: &mut Sse) -> EventId {
    sse.next_position().await.parse().expect("an event id")
}

#[tokio::test]
async fn a_topic_stream_starts_with_its_last_events_then_goes_live() {
    let server = start(&[]).await;
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.extend(publish_all(server.addr, "prices", &[&format!("p{i}")]).await);
        publish(server.addr, "noise", "n").await;
    }
    let mut sse = Sse::open(server.addr, "/stream?topic=prices&last=3", None).await;
    // The position stands before the first of them: a reconnect with it
    // gets the same three again, not the whole history.
    assert_eq!(opening_position(&mut sse).await.seq, sent[2].0 - 1);
    assert_eq!(messages(&mut sse, 3).await, sent[2..].to_vec());
    let live = publish_all(server.addr, "prices", &["p6"]).await;
    assert_eq!(messages(&mut sse, 1).await, live);
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn patterns_and_every_topic_get_the_last_events_of_the_selection_in_seq_order() {
    let server = start(&[]).await;
    let mut rooms = Vec::new();
    for i in 1..=4 {
        rooms.extend(publish_all(server.addr, "room.a", &[&format!("a{i}")]).await);
        publish(server.addr, "lobby", "l").await;
        rooms.extend(publish_all(server.addr, "room.b", &[&format!("b{i}")]).await);
    }
    let mut pattern = Sse::open(server.addr, "/stream?topic=room.*&last=5", None).await;
    assert_eq!(messages(&mut pattern, 5).await, rooms[3..].to_vec());

    // Every topic: the lobby's last event and room.b's, then live.
    let mut all = Sse::open(server.addr, "/stream?last=2", None).await;
    let newest = publish_all(server.addr, "lobby", &["l-last"]).await;
    let got = messages(&mut all, 3).await;
    assert_eq!(got[0], (rooms[7].0 - 1, "l".to_owned()));
    assert_eq!(got[1..].to_vec(), vec![rooms[7].clone(), newest[0].clone()]);
    server.stop().await;
}

#[tokio::test]
async fn fewer_events_than_asked_gives_all_there_are_and_zero_starts_live() {
    let server = start(&[]).await;
    let sent = publish_all(server.addr, "rare", &["r1", "r2"]).await;
    let mut sse = Sse::open(server.addr, "/stream?topic=rare&last=50", None).await;
    assert_eq!(messages(&mut sse, 2).await, sent);

    let mut live = Sse::open(server.addr, "/stream?topic=rare&last=0", None).await;
    assert_eq!(opening_position(&mut live).await.seq, sent[1].0);
    let next = publish_all(server.addr, "rare", &["r3"]).await;
    assert_eq!(messages(&mut live, 1).await, next);
    server.stop().await;
}

#[tokio::test]
async fn an_id_wins_over_last() {
    let server = start(&[]).await;
    let sent = publish_all(server.addr, "t", &["1", "2", "3", "4"]).await;
    let after_first = format!("{}", get_epoch_id(server.addr, sent[0].0).await);
    // The header, as a reconnecting EventSource sends it.
    let mut by_header = Sse::open(server.addr, "/stream?topic=t&last=1", Some(&after_first)).await;
    assert_eq!(messages(&mut by_header, 3).await, sent[1..].to_vec());
    // And the query parameter.
    let path = format!("/stream?topic=t&last=1&lastEventId={after_first}");
    let mut by_query = Sse::open(server.addr, &path, None).await;
    assert_eq!(messages(&mut by_query, 3).await, sent[1..].to_vec());
    server.stop().await;
}

/// The id of seq `seq` in the server's epoch.
async fn get_epoch_id(addr: SocketAddr, seq: u64) -> EventId {
    let epoch = get(addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .expect("epoch");
    EventId::new(epoch, seq)
}

#[tokio::test]
async fn a_bad_last_is_refused_with_its_reason_and_opens_nothing() {
    let server = start(&["--history-per-topic", "20"]).await;
    for (value, shown) in [
        ("21", "\"21\""),
        ("-1", "\"-1\""),
        ("abc", "\"abc\""),
        ("", "\"\""),
    ] {
        let answer = get(server.addr, &format!("/stream?topic=t&last={value}")).await;
        assert_eq!(answer.status, 400, "last={value}: {}", answer.body);
        assert_eq!(
            answer.json(),
            serde_json::json!({
                "error": "invalid_query",
                "message": format!("last must be a number from 0 to 20 (--history-per-topic), not {shown}")
            })
        );
    }
    assert_eq!(metric(server.addr, "sse_subscribers").await, 0);
    // `GET /topics` tells the largest allowed, and it is fine.
    let topics = get(server.addr, "/topics?limit=1").await.json();
    assert_eq!(topics["history_per_topic"], 20);
    let mut sse = Sse::open(server.addr, "/stream?topic=t&last=20", None).await;
    assert_eq!(sse.status, 200);
    opening_position(&mut sse).await;
    server.stop().await;
}

#[tokio::test]
async fn private_topics_stay_hidden_from_the_last_events() {
    let server = start(&[
        "--jwt-secret",
        "a-secret-for-tests-only",
        "--private",
        "secret.*",
        "--publish-token",
        PUBLISHER,
    ])
    .await;
    let n1 = publish_as(server.addr, "news", "n1").await;
    let n2 = publish_as(server.addr, "news", "n2").await;
    publish_as(server.addr, "secret.plans", "s1").await;
    publish_as(server.addr, "secret.plans", "s2").await;
    // An anonymous stream of every topic: the secret ones are not among
    // its last two.
    let mut sse = Sse::open(server.addr, "/stream?last=2", None).await;
    assert_eq!(messages(&mut sse, 2).await, vec![n1, n2]);
    let n3 = publish_as(server.addr, "news", "n3").await;
    assert_eq!(messages(&mut sse, 1).await, vec![n3]);
    server.stop().await;
}

const PUBLISHER: &str = "publisher-token-for-tests";

/// Publishes with the publish token: its seq and message.
async fn publish_as(addr: SocketAddr, topic: &str, message: &str) -> (u64, String) {
    let body = serde_json::json!({ "message": message, "topic": topic }).to_string();
    let request = hyper::Request::post("/publish")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {PUBLISHER}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let answer = common::fetch(addr, request).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seq = answer.json()["seq"].as_u64().expect("seq");
    (seq, message.to_owned())
}

/// `--data-dir` with a memory history far smaller than the disk's.
async fn start_on_disk(dir: &str) -> ServerProcess {
    ServerProcess::start_alone(
        &[
            "--data-dir",
            dir,
            "--history",
            "5",
            "--max-lag",
            "5",
            "--history-per-topic",
            "20",
        ],
        &[],
    )
    .await
}

#[tokio::test]
async fn on_disk_the_last_events_of_a_quiet_topic_come_from_disk_also_after_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data");
    let path = path.to_str().expect("utf-8 path");
    let server = start_on_disk(path).await;
    let quiet: Vec<String> = (1..=12).map(|i| format!("q{i}")).collect();
    let quiet: Vec<&str> = quiet.iter().map(String::as_str).collect();
    let sent = publish_all(server.addr, "quiet", &quiet).await;
    // The memory's five places go to a busy topic.
    for i in 0..10 {
        publish(server.addr, "busy", &format!("b{i}")).await;
    }
    let mut sse = Sse::open(server.addr, "/stream?topic=quiet&last=10", None).await;
    assert_eq!(messages(&mut sse, 10).await, sent[2..].to_vec());
    let live = publish_all(server.addr, "quiet", &["q13"]).await;
    assert_eq!(messages(&mut sse, 1).await, live);
    drop(sse);

    server.kill().await;
    let server = start_on_disk(path).await;
    let mut sse = Sse::open(server.addr, "/stream?topic=quiet&last=4", None).await;
    let mut expected = sent[9..].to_vec();
    expected.extend(live);
    assert_eq!(messages(&mut sse, 4).await, expected);
    assert_eq!(metric(server.addr, "sse_resets_total").await, 0);
    server.terminate().await;
}

#[tokio::test]
async fn on_redis_another_server_gives_the_last_events_from_the_stream() {
    let redis = Redis::start().await;
    let args = [
        "--history",
        "5",
        "--max-lag",
        "5",
        "--history-per-topic",
        "20",
        "--redis-max-len",
        "1000",
    ];
    let a = ServerProcess::start(&redis, &args).await;
    let b = ServerProcess::start(&redis, &args).await;
    let mut sent = Vec::new();
    for i in 1..=10 {
        sent.extend(publish_all(a.addr, "status", &[&format!("s{i}")]).await);
        publish(a.addr, "other", "o").await;
    }
    // B holds the newest five events, of which two or three are status's:
    // the rest of the eight comes from Redis.
    await_last_seq(b.addr, sent[9].0 + 1).await;
    let mut sse = Sse::open(b.addr, "/stream?topic=status&last=8", None).await;
    assert_eq!(messages(&mut sse, 8).await, sent[2..].to_vec());
    let live = publish_all(a.addr, "status", &["s11"]).await;
    assert_eq!(messages(&mut sse, 1).await, live);
    a.terminate().await;
    b.terminate().await;
}
