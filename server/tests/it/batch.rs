//! Batches (`POST /publish` with `application/x-ndjson`) against the real
//! server: in memory, with `--data-dir` (SIGKILL mid-burst), and on Redis
//! with two servers. "Nothing was stored" is checked the strict way: the
//! next publish gets the very next seq.

use crate::common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::cluster::{Redis, ServerProcess};
use common::{fetch, metric, publish, start, try_send, Answer, Sse};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::{json, Value};

/// A batch body: one JSON line per `(topic, message)`.
fn ndjson(events: &[(&str, &str)]) -> String {
    events
        .iter()
        .map(|(topic, message)| format!("{}\n", json!({ "topic": topic, "message": message })))
        .collect()
}

fn batch_request(body: &str, key: Option<&str>, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::post("/publish").header("content-type", "application/x-ndjson");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

async fn post_batch(addr: SocketAddr, body: &str, key: Option<&str>) -> Answer {
    fetch(addr, batch_request(body, key, None)).await
}

/// The events of a 200 answer, and whether it was replayed.
fn accepted(answer: &Answer) -> (Vec<Value>, bool) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let replayed = answer
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let events = answer.json()["events"]
        .as_array()
        .expect("an events array")
        .clone();
    (events, replayed)
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn assert_consecutive(events: &[Value]) {
    let seqs = seqs(events);
    let first = seqs[0];
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
}

fn epoch_of(event: &Value) -> String {
    let id = event["event_id"].as_str().expect("event_id");
    id.split('-').next().expect("epoch").to_owned()
}

/// Checks an error answer: status, and the whole JSON body.
fn assert_error(answer: &Answer, status: u16, body: &Value) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(&answer.json(), body);
}

#[tokio::test]
async fn a_batch_is_stored_in_order_with_consecutive_seqs() {
    let server = start(&[]).await;
    let body = format!(
        "{}\n  \r\n{}\r\n{}",
        json!({ "message": "a", "topic": "prices" }),
        json!({ "message": "b" }),
        json!({ "message": "c", "topic": "status" }),
    );
    let (events, replayed) = accepted(&post_batch(server.addr, &body, None).await);
    assert!(!replayed);
    assert_eq!(seqs(&events), [1, 2, 3]);
    let topics: Vec<&str> = events
        .iter()
        .map(|e| e["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["prices", "default", "status"]);
    for event in &events {
        assert_eq!(
            event["event_id"],
            format!("{}-{}", epoch_of(&events[0]), event["seq"])
        );
    }
    let mut sse = Sse::open(
        server.addr,
        "/stream",
        Some(&format!("{}-0", epoch_of(&events[0]))),
    )
    .await;
    for (event, message) in events.iter().zip(["a", "b", "c"]) {
        let (_, got) = sse.next_message().await;
        assert_eq!(got.message, message);
        assert_eq!(got.seq, event["seq"].as_u64().unwrap());
        assert_eq!(got.id.to_string(), event["id"].as_str().unwrap());
    }
    assert_eq!(publish(server.addr, "t", "after").await, 4);
    server.stop().await;
}

#[tokio::test]
async fn bad_batches_are_refused_by_line_and_store_nothing() {
    let server = start(&[
        "--max-batch",
        "3",
        "--max-batch-bytes",
        "300",
        "--max-body",
        "60",
    ])
    .await;
    let good = json!({ "message": "fine" }).to_string();
    let cases: Vec<(String, u16, Value)> = vec![
        (
            format!("{good}\n\n{}\n", json!({ "message": " " })),
            400,
            json!({ "error": "bad_request", "line": 3, "reason": "empty_message",
                    "message": "line 3: message must not be empty" }),
        ),
        (
            format!("{good}\n{}\n", json!({ "message": "x", "topic": "a b" })),
            400,
            // The message is the topic rule's own, after "line 2: ".
            json!({ "error": "bad_request", "line": 2, "reason": "invalid_topic" }),
        ),
        (
            format!("{good}\n[\"hello\"]\n"),
            400,
            json!({ "error": "bad_request", "line": 2, "reason": "invalid_body",
                    "message": "line 2: the JSON body is not a publish request: it is an array; send an object like {\"message\": \"...\"}" }),
        ),
        (
            format!("{good}\n{}\n", json!({ "message": "x".repeat(60) })),
            413,
            json!({ "error": "payload_too_large", "line": 2, "reason": "payload_too_large",
                    "message": "line 2: the body is larger than the limit of 60 bytes" }),
        ),
        (
            format!("{good}\n").repeat(4),
            413,
            json!({ "error": "too_many_events",
                    "message": "the batch holds 4 events, over the limit of 3 (--max-batch)" }),
        ),
        (
            format!("{}\n", json!({ "message": "x".repeat(50) })).repeat(5),
            413,
            json!({ "error": "payload_too_large",
                    "message": "the body is larger than the limit of 300 bytes" }),
        ),
        (
            "\n \n".to_owned(),
            400,
            json!({ "error": "invalid_body",
                    "message": "the JSON body is not a publish request: the batch holds no events; send one JSON object like {\"message\": \"...\"} per line" }),
        ),
    ];
    for (body, status, expected) in &cases {
        let answer = post_batch(server.addr, body, None).await;
        if expected["reason"] == "invalid_topic" {
            // The topic rule's wording is the single publish's own.
            assert_eq!(answer.status, 400, "{}", answer.body);
            let got = answer.json();
            assert_eq!(
                (&got["error"], &got["line"], &got["reason"]),
                (&expected["error"], &expected["line"], &expected["reason"])
            );
            assert!(got["message"].as_str().unwrap().starts_with("line 2: "));
            continue;
        }
        assert_error(&answer, *status, expected);
    }
    // A JSON body (not a batch) keeps --max-body; a line-delimited body
    // with the JSON type is one JSON body, refused as such.
    let answer = fetch(
        server.addr,
        Request::post("/publish")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("{good}\n{good}\n"))))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["error"], "invalid_json");
    assert_eq!(
        publish(server.addr, "t", "after").await,
        1,
        "nothing was stored"
    );
    server.stop().await;
}

const SECRET: &str = "correct horse battery staple";

fn token(subject: &str, publish: &[&str]) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": subject, "exp": exp, "sse": { "publish": publish } }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .expect("encodes")
}

#[tokio::test]
async fn a_topic_the_token_may_not_publish_to_names_its_line() {
    let server = start(&["--jwt-secret", SECRET]).await;
    let news = token("alice", &["news"]);
    let body = ndjson(&[("news", "a"), ("news", "b"), ("secret", "c")]);
    let answer = fetch(server.addr, batch_request(&body, None, Some(&news))).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    let got = answer.json();
    assert_eq!(got["error"], "forbidden");
    assert_eq!(got["line"], 3);
    assert_eq!(got["reason"], "forbidden");
    assert!(
        got["message"].as_str().unwrap().starts_with("line 3: "),
        "{got}"
    );
    // Without a token, 401 before the body is read.
    let answer = post_batch(server.addr, &body, None).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    let body = ndjson(&[("news", "a"), ("news", "b")]);
    let (events, _) = accepted(&fetch(server.addr, batch_request(&body, None, Some(&news))).await);
    assert_eq!(seqs(&events), [1, 2], "the refused batch stored nothing");
    server.stop().await;
}

#[tokio::test]
async fn rate_limits_count_events() {
    // One publish a second refills the bucket far slower than the test
    // runs: what is left of the burst is what the test spent.
    let server = start(&["--publish-rate", "1", "--publish-burst", "100"]).await;
    let batch = |n: usize| ndjson(&vec![("t", "m"); n]);
    let answer = post_batch(server.addr, &batch(101), None).await;
    assert_error(
        &answer,
        413,
        &json!({ "error": "too_many_events",
                 "message": "the batch holds 101 events, over the limit of 100 (--publish-burst)" }),
    );
    let (events, _) = accepted(&post_batch(server.addr, &batch(95), None).await);
    assert_eq!(events.len(), 95);
    let answer = post_batch(server.addr, &batch(10), None).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.json()["error"], "rate_limited");
    assert!(answer.headers.contains_key("retry-after"));
    // The refused batch took nothing: five single publishes still pass.
    let (events, _) = accepted(&post_batch(server.addr, &batch(4), None).await);
    assert_eq!(seqs(&events), [96, 97, 98, 99]);
    assert_eq!(publish(server.addr, "t", "last").await, 100);
    let answer = common::publish_raw(server.addr, &json!({ "message": "m" }).to_string()).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    server.stop().await;
}

/// Sends the same keyed batch `n` times at once to `addrs` in turn.
async fn at_once(addrs: &[SocketAddr], n: usize, key: &str, body: &str) -> Vec<(Vec<Value>, bool)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (addr, key, body) = (addrs[i % addrs.len()], key.to_owned(), body.to_owned());
            tokio::spawn(async move { accepted(&post_batch(addr, &body, Some(&key)).await) })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("publisher"));
    }
    answers
}

/// Checks that `answers` are one batch's: the same answer, all but one
/// replayed.
fn one_batch(answers: &[(Vec<Value>, bool)]) -> Vec<Value> {
    let first = answers[0].0.clone();
    for (answer, _) in answers {
        assert_eq!(answer, &first, "every repeat gets the first answer");
    }
    assert_eq!(answers.iter().filter(|(_, was)| !was).count(), 1);
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_covers_a_whole_batch() {
    let server = start(&[]).await;
    let body = ndjson(&[("t", "a"), ("t", "b"), ("u", "c")]);
    let (first, was) = accepted(&post_batch(server.addr, &body, Some("batch-1")).await);
    assert!(!was);
    for _ in 0..2 {
        let (again, was) = accepted(&post_batch(server.addr, &body, Some("batch-1")).await);
        assert!(was);
        assert_eq!(again, first);
    }
    // Another batch, a batch of one of its lines, or its first line as a
    // JSON body: another body.
    let answer = post_batch(
        server.addr,
        &ndjson(&[("t", "a"), ("t", "b")]),
        Some("batch-1"),
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.json()["error"], "idempotency_key_reused");
    let answer = fetch(
        server.addr,
        Request::post("/publish")
            .header("content-type", "application/json")
            .header("idempotency-key", "batch-1")
            .body(Full::new(Bytes::from(
                json!({ "topic": "t", "message": "a" }).to_string(),
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    // Fifty at once: one batch.
    let burst = one_batch(&at_once(&[server.addr], 50, "burst", &body).await);
    assert_eq!(seqs(&burst), [4, 5, 6]);
    assert_eq!(publish(server.addr, "t", "after").await, 7);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_racing_single_publishes_stays_consecutive() {
    const BATCHES: usize = 10;
    const SIZE: usize = 50;
    const SINGLES: usize = 200;
    let server = start(&["--history", "2000"]).await;
    let addr = server.addr;
    let batches: Vec<_> = (0..BATCHES)
        .map(|b| {
            tokio::spawn(async move {
                let messages: Vec<String> = (0..SIZE).map(|i| format!("batch {b} #{i}")).collect();
                let events: Vec<(&str, &str)> =
                    messages.iter().map(|m| ("t", m.as_str())).collect();
                accepted(&post_batch(addr, &ndjson(&events), None).await).0
            })
        })
        .collect();
    let singles: Vec<_> = (0..4)
        .map(|p| {
            tokio::spawn(async move {
                for i in (p..SINGLES).step_by(4) {
                    publish(addr, "t", &format!("single {i}")).await;
                }
            })
        })
        .collect();
    let mut answered = Vec::new();
    for batch in batches {
        let events = batch.await.expect("batch");
        assert_consecutive(&events);
        answered.push(events);
    }
    for single in singles {
        single.await.expect("singles");
    }
    // The stream agrees: each batch's events come one after the other.
    let total = BATCHES * SIZE + SINGLES;
    let epoch = epoch_of(&answered[0][0]);
    let mut sse = Sse::open(addr, "/stream", Some(&format!("{epoch}-0"))).await;
    let mut by_seq = BTreeMap::new();
    while by_seq.len() < total {
        let (_, event) = sse.next_message().await;
        by_seq.insert(event.seq, event.message);
    }
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>()
    );
    for (b, events) in answered.iter().enumerate() {
        for (i, seq) in seqs(events).into_iter().enumerate() {
            assert_eq!(by_seq[&seq], format!("batch {b} #{i}"));
        }
    }
    server.stop().await;
}

/// A keyed batch to a server that may be killed: its events, or `None`.
async fn try_batch(addr: SocketAddr, key: &str, body: &str) -> Option<Vec<Value>> {
    let response = try_send(addr, batch_request(body, Some(key), None))
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).ok()?;
    answer["events"].as_array().cloned()
}

fn batch_body(b: usize, size: usize) -> String {
    let messages: Vec<String> = (0..size).map(|i| format!("batch {b} #{i}")).collect();
    let events: Vec<(&str, &str)> = messages.iter().map(|m| ("t", m.as_str())).collect();
    ndjson(&events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_disk_sigkill_never_leaves_half_a_batch() {
    const BATCHES: usize = 40;
    const SIZE: usize = 25;
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = root.path().join("data");
    let dir = dir.to_str().expect("utf-8 path");
    let args = ["--data-dir", dir, "--fsync", "always"];
    let server = ServerProcess::start_alone(&args, &[]).await;
    let addr = server.addr;
    // Keyed batches from several tasks; SIGKILL once a quarter are
    // acknowledged, so that some are in flight.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let acked = acked_tx.clone();
            tokio::spawn(async move {
                for b in (p..BATCHES).step_by(4) {
                    let Some(events) =
                        try_batch(addr, &format!("batch-{b}"), &batch_body(b, SIZE)).await
                    else {
                        return;
                    };
                    let _ = acked.send((b, events));
                }
            })
        })
        .collect();
    drop(acked_tx);
    let mut acked = HashMap::new();
    while acked.len() < BATCHES / 4 {
        let (b, events) = acked_rx.recv().await.expect("publishes go on");
        acked.insert(b, events);
    }
    server.kill().await;
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    while let Ok((b, events)) = acked_rx.try_recv() {
        acked.insert(b, events);
    }

    let server = ServerProcess::start_alone(&args, &[]).await;
    let addr = server.addr;
    // What the disk holds: whole batches only, each acknowledged one with
    // the seqs it was answered with.
    let stored = publish(addr, "sentinel", "after").await - 1;
    assert_eq!(stored % SIZE as u64, 0, "{stored} events: a batch was cut");
    let epoch = epoch_of(&acked.values().next().unwrap()[0]);
    let mut sse = Sse::open(addr, "/stream?topic=t", Some(&format!("{epoch}-0"))).await;
    let mut by_seq = BTreeMap::new();
    while (by_seq.len() as u64) < stored {
        let (_, event) = sse.next_message().await;
        by_seq.insert(event.seq, event.message);
    }
    let mut batches: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (seq, message) in &by_seq {
        let b: usize = message
            .strip_prefix("batch ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a batch number");
        batches.entry(b).or_default().push(*seq);
    }
    for (b, seqs) in &batches {
        assert_eq!(seqs.len(), SIZE, "batch {b} is whole");
        assert_eq!(
            seqs[SIZE - 1] - seqs[0],
            SIZE as u64 - 1,
            "batch {b} is consecutive"
        );
    }
    for (b, events) in &acked {
        assert_eq!(
            batches.get(b),
            Some(&seqs(events)),
            "acknowledged batch {b}"
        );
        // Its retry gets its first answer.
        let (again, was) =
            accepted(&post_batch(addr, &batch_body(*b, SIZE), Some(&format!("batch-{b}"))).await);
        assert!(was, "batch {b} was acknowledged before the kill");
        assert_eq!(&again, events);
    }
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_batch_is_one_script_call_shared_by_every_server() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &[]).await;
    let b = ServerProcess::start(&redis, &[]).await;
    let first_single = publish(a.addr, "t", "before").await;
    let body = ndjson(&[("t", "a"), ("u", "b"), ("t", "c")]);
    let (first, was) = accepted(&post_batch(a.addr, &body, Some("batch-1")).await);
    assert!(!was);
    assert_eq!(
        seqs(&first),
        [first_single + 1, first_single + 2, first_single + 3]
    );
    let (again, was) = accepted(&post_batch(b.addr, &body, Some("batch-1")).await);
    assert!(was, "the other server finds the key in Redis");
    assert_eq!(again, first);
    let answer = post_batch(b.addr, &ndjson(&[("t", "a")]), Some("batch-1")).await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    // Fifty at once over both servers: one batch.
    let burst = one_batch(&at_once(&[a.addr, b.addr], 50, "burst", &body).await);
    assert_eq!(seqs(&burst)[0], first_single + 4);
    // The other server's subscribers get the batch, in order.
    let epoch = epoch_of(&first[0]);
    let mut sse = Sse::open(b.addr, "/stream", Some(&format!("{epoch}-{first_single}"))).await;
    for (event, message) in first
        .iter()
        .chain(&burst)
        .zip(["a", "b", "c", "a", "b", "c"])
    {
        let (_, got) = sse.next_message().await;
        assert_eq!(
            (got.seq, got.message.as_str()),
            (event["seq"].as_u64().unwrap(), message)
        );
    }
    // The stream holds the entries with the answered ids.
    let ids = redis.stream_ids().await;
    let answered: Vec<&str> = first
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(&ids[1..4], answered.as_slice());
    a.terminate().await;
    b.terminate().await;
}

/// The bound on remembered answers for the tests below: 10 events, in
/// batches of at most 4.
const WEIGHED: [&str; 4] = ["--idempotency-keys", "10", "--max-batch", "4"];

/// A batch of `n` events whose messages name `key`.
fn batch_of(key: &str, n: usize) -> String {
    ndjson(&vec![("t", key); n])
}

/// The keys sent by [`weighed_keys`], with their batch sizes, in order.
const SENT: [(&str, usize); 6] = [
    ("k1", 4),
    ("k2", 4),
    ("p", 2),
    ("k3", 4),
    ("k1", 4),
    ("k2", 4),
];

/// Keyed batches to `servers` in turn, checking after each which keys are
/// remembered: a key's record weighs its events, and the oldest keys go as
/// soon as the events held pass 10. Returns the last answer of each key;
/// `k1` and `k2` are remembered at the end (8 events).
async fn weighed_keys(servers: &[SocketAddr]) -> HashMap<&'static str, Vec<Value>> {
    let mut answers: HashMap<&str, Vec<Value>> = HashMap::new();
    // What should be remembered, oldest first, and how many were forgotten.
    let mut held: VecDeque<(&str, usize)> = VecDeque::new();
    let mut forgotten = 0;
    let mut next = None;
    for (i, (key, n)) in SENT.into_iter().enumerate() {
        let addr = servers[i % servers.len()];
        let (events, was) = accepted(&post_batch(addr, &batch_of(key, n), Some(key)).await);
        assert!(!was, "{key} (batch {i}) is new or forgotten");
        assert_eq!(events.len(), n);
        assert_consecutive(&events);
        let first = seqs(&events)[0];
        assert_eq!(first, next.unwrap_or(first), "nothing else was stored");
        next = Some(first + n as u64);
        answers.insert(key, events);
        held.push_back((key, n));
        while held.iter().map(|(_, n)| n).sum::<usize>() > 10 {
            held.pop_front();
            forgotten += 1;
        }
        let other = servers[(i + 1) % servers.len()];
        for (key, n) in &held {
            let (again, was) = accepted(&post_batch(other, &batch_of(key, *n), Some(key)).await);
            assert!(was, "{key} is remembered after batch {i}");
            assert_eq!(again, answers[key]);
        }
        let mut total = 0;
        for addr in servers {
            total += metric(*addr, "sse_idempotency_forgotten_total").await;
        }
        assert_eq!(total, forgotten, "forgotten after batch {i}");
        assert_eq!(
            metric(addr, "sse_idempotency_keys").await,
            held.len() as u64,
            "held after batch {i}"
        );
    }
    let remembered: Vec<&str> = held.iter().map(|(key, _)| *key).collect();
    assert_eq!(remembered, ["k1", "k2"]);
    assert_eq!(forgotten, 4, "k1, k2, then p and k3 at once");
    answers
}

#[tokio::test]
async fn a_keyed_batch_counts_as_its_events_against_the_bound() {
    let server = start(&WEIGHED).await;
    weighed_keys(&[server.addr]).await;
    server.stop().await;
}

/// A keyed batch of 4 to `addr`: its events, and whether it was replayed.
async fn keyed_four(addr: SocketAddr, key: &str) -> (Vec<Value>, bool) {
    accepted(&post_batch(addr, &batch_of(key, 4), Some(key)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_disk_a_keyed_batch_counts_as_its_events_also_after_a_restart() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = root.path().join("data");
    let dir = dir.to_str().expect("utf-8 path");
    let args = |keys| {
        [
            "--data-dir",
            dir,
            "--idempotency-keys",
            keys,
            "--max-batch",
            "4",
        ]
    };
    let server = ServerProcess::start_alone(&args("10"), &[]).await;
    let answers = weighed_keys(&[server.addr]).await;
    server.terminate().await;
    // The store holds what memory did: k1 and k2.
    let server = ServerProcess::start_alone(&args("10"), &[]).await;
    assert_eq!(metric(server.addr, "sse_idempotency_keys").await, 2);
    for key in ["k1", "k2"] {
        let (again, was) = keyed_four(server.addr, key).await;
        assert!(was, "{key} is remembered after the restart");
        assert_eq!(again, answers[key]);
    }
    server.terminate().await;
    // A lower bound at start keeps the newest that fit (k2), and drops
    // the rest from the store: a restart with the higher bound does not
    // bring k1 back.
    let server = ServerProcess::start_alone(&args("4"), &[]).await;
    assert_eq!(metric(server.addr, "sse_idempotency_keys").await, 1);
    server.terminate().await;
    let server = ServerProcess::start_alone(&args("10"), &[]).await;
    assert_eq!(metric(server.addr, "sse_idempotency_keys").await, 1);
    let (_, was) = keyed_four(server.addr, "k2").await;
    assert!(was, "k2 is remembered");
    let last = seqs(&answers["k2"])[3];
    let (k1, was) = keyed_four(server.addr, "k1").await;
    assert!(!was, "k1 was dropped at the lower bound");
    assert_eq!(seqs(&k1)[0], last + 1);
    // 12 events: k2 goes, in memory and in the store.
    let (k3, was) = keyed_four(server.addr, "k3").await;
    assert!(!was);
    assert_eq!(metric(server.addr, "sse_idempotency_keys").await, 2);
    assert_eq!(
        metric(server.addr, "sse_idempotency_forgotten_total").await,
        1
    );
    server.terminate().await;
    let server = ServerProcess::start_alone(&args("10"), &[]).await;
    assert_eq!(metric(server.addr, "sse_idempotency_keys").await, 2);
    for (key, first) in [("k1", &k1), ("k3", &k3)] {
        let (again, was) = keyed_four(server.addr, key).await;
        assert!(was, "{key} is remembered after the restart");
        assert_eq!(&again, first);
    }
    let (k2, was) = keyed_four(server.addr, "k2").await;
    assert!(!was, "k2 was forgotten before the restart");
    assert_eq!(seqs(&k2)[0], last + 9);
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_keyed_batch_counts_as_its_events_for_every_server() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &WEIGHED).await;
    let b = ServerProcess::start(&redis, &WEIGHED).await;
    weighed_keys(&[a.addr, b.addr]).await;
    // Redis holds the two newest records, their weights and their sum.
    let mut conn = redis.connection().await;
    let names: Vec<String> = redis::cmd("ZRANGE")
        .arg("sse:events:idempotency:order")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    let keys: Vec<&str> = names.iter().map(|n| n.split(' ').next().unwrap()).collect();
    assert_eq!(keys, ["k1", "k2"]);
    let weights: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("sse:events:idempotency:weights")
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    let mut weighed: Vec<u64> = weights.into_values().collect();
    weighed.sort_unstable();
    assert_eq!(weighed, [4, 4]);
    let weight: u64 = redis::cmd("GET")
        .arg("sse:events:idempotency:weight")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(weight, 8);
    // Without the sum (lost, or left by an older server), the script counts
    // it anew from the order and the weights: k4 brings it to 12, k1 goes.
    let () = redis::cmd("DEL")
        .arg("sse:events:idempotency:weight")
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let (_, was) = keyed_four(b.addr, "k4").await;
    assert!(!was);
    let names: Vec<String> = redis::cmd("ZRANGE")
        .arg("sse:events:idempotency:order")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    let keys: Vec<&str> = names.iter().map(|n| n.split(' ').next().unwrap()).collect();
    assert_eq!(keys, ["k2", "k4"]);
    let weight: u64 = redis::cmd("GET")
        .arg("sse:events:idempotency:weight")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(weight, 8);
    let (_, was) = keyed_four(a.addr, "k2").await;
    assert!(was, "k2 is remembered");
    a.terminate().await;
    b.terminate().await;
}
