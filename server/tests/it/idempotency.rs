//! `Idempotency-Key` on `POST /publish` against the real server: in memory,
//! with `--data-dir` (a retry after SIGKILL), and on Redis with two
//! servers. "Nothing was published" is checked the strict way: the next
//! publish without a key gets the very next seq.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::cluster::{Redis, ServerProcess};
use common::{fetch, get, metric, publish, start, try_send, Answer, Sse};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::Request;
use serde_json::{json, Value};

/// `POST /publish` of `body` with the key `key` (raw bytes, so that bad
/// keys can be sent), and `token` when given.
async fn publish_keyed(addr: SocketAddr, key: &[u8], body: &Value, token: Option<&str>) -> Answer {
    let mut request = Request::post("/publish")
        .header("content-type", "application/json")
        .header(
            "idempotency-key",
            HeaderValue::from_bytes(key).expect("a header value"),
        );
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    fetch(
        addr,
        request
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request"),
    )
    .await
}

fn replayed(answer: &Answer) -> bool {
    match answer.headers.get("idempotent-replayed") {
        None => false,
        Some(value) => {
            assert_eq!(value, "true", "the header says true or is absent");
            true
        }
    }
}

/// Checks a 200 answer and returns its JSON and whether it was replayed.
fn accepted(answer: &Answer) -> (Value, bool) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    (answer.json(), replayed(answer))
}

/// Publishes without a key and checks that it got seq `expected`: nothing
/// was stored since.
async fn assert_next_seq(addr: SocketAddr, expected: u64) {
    assert_eq!(publish(addr, "sentinel", "after").await, expected);
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_and_another_body_is_refused() {
    let server = start(&[]).await;
    let body = json!({ "message": "paid", "topic": "orders" });
    let (first, was) = accepted(&publish_keyed(server.addr, b"order-1", &body, None).await);
    assert!(!was, "the first answer is not a replay");
    for _ in 0..2 {
        let (again, was) = accepted(&publish_keyed(server.addr, b"order-1", &body, None).await);
        assert!(was);
        assert_eq!(again, first);
    }
    // The same key with another message, or another topic.
    for other in [
        json!({ "message": "refunded", "topic": "orders" }),
        json!({ "message": "paid", "topic": "other" }),
        json!({ "message": "paid" }),
    ] {
        let answer = publish_keyed(server.addr, b"order-1", &other, None).await;
        assert_eq!(answer.status, 422, "{}", answer.body);
        assert_eq!(answer.json()["error"], "idempotency_key_reused");
    }
    // A new key is a new event; a request without a key is unaffected.
    let (second, was) = accepted(&publish_keyed(server.addr, b"order-2", &body, None).await);
    assert!(!was);
    assert_eq!(second["seq"], 2);
    assert_next_seq(server.addr, 3).await;
    assert_eq!(metric(server.addr, "sse_idempotency_keys").await, 2);
    assert_eq!(
        metric(server.addr, "sse_idempotency_replayed_total").await,
        2
    );
    // One event per key in the stream.
    let epoch = first["event_id"]
        .as_str()
        .unwrap()
        .split('-')
        .next()
        .unwrap();
    let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-0"))).await;
    let seqs: Vec<(u64, String)> = [
        sse.next_message().await.1,
        sse.next_message().await.1,
        sse.next_message().await.1,
    ]
    .into_iter()
    .map(|e| (e.seq, e.message))
    .collect();
    assert_eq!(
        seqs,
        [(1, "paid".into()), (2, "paid".into()), (3, "after".into())]
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_keys_are_refused_and_change_nothing() {
    let server = start(&[]).await;
    let body = json!({ "message": "m" });
    let long = vec![b'k'; 256];
    for key in [&b""[..], &long, b"two words", b"caf\xc3\xa9", b"tab\there"] {
        let answer = publish_keyed(server.addr, key, &body, None).await;
        assert_eq!(answer.status, 400, "{key:?}: {}", answer.body);
        assert_eq!(answer.json()["error"], "bad_idempotency_key", "{key:?}");
    }
    // Two keys on one request.
    let answer = fetch(
        server.addr,
        Request::post("/publish")
            .header("content-type", "application/json")
            .header("idempotency-key", "a")
            .header("idempotency-key", "b")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request"),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["error"], "bad_idempotency_key");
    // The longest key and every visible character are fine.
    let longest = vec![b'k'; 255];
    accepted(&publish_keyed(server.addr, &longest, &body, None).await);
    accepted(&publish_keyed(server.addr, b"!~\"#{}[]", &body, None).await);
    assert_next_seq(server.addr, 3).await;
    server.stop().await;
}

const SECRET: &str = "correct horse battery staple";

fn token(subject: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": subject, "exp": exp, "sse": { "publish": ["*"] } }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .expect("encodes")
}

#[tokio::test]
async fn keys_are_scoped_to_the_publisher() {
    let server = start(&["--jwt-secret", SECRET]).await;
    let body = json!({ "message": "m", "topic": "t" });
    let (alice, bob) = (token("alice"), token("bob"));
    let (a, _) = accepted(&publish_keyed(server.addr, b"k", &body, Some(&alice)).await);
    let (b, was) = accepted(&publish_keyed(server.addr, b"k", &body, Some(&bob)).await);
    assert!(!was, "another publisher's key is another key");
    assert_ne!(a["event_id"], b["event_id"]);
    let (again, was) = accepted(&publish_keyed(server.addr, b"k", &body, Some(&alice)).await);
    assert!(was);
    assert_eq!(again, a);
    // Bob's key with another body is refused, Alice's stays as it was.
    let other = json!({ "message": "other", "topic": "t" });
    let answer = publish_keyed(server.addr, b"k", &other, Some(&bob)).await;
    assert_eq!(answer.status, 422);
    server.stop().await;
}

/// Sends the same keyed publish `n` times at once to `addrs` in turn;
/// returns the answers.
async fn at_once(addrs: &[SocketAddr], n: usize, key: &str, body: &Value) -> Vec<(Value, bool)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (addr, key, body) = (addrs[i % addrs.len()], key.to_owned(), body.clone());
            tokio::spawn(async move {
                accepted(&publish_keyed(addr, key.as_bytes(), &body, None).await)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("publisher"));
    }
    answers
}

/// Checks that `answers` are one event's: the same answer, all but one
/// replayed.
fn one_event(answers: &[(Value, bool)]) -> Value {
    let first = answers[0].0.clone();
    for (answer, _) in answers {
        assert_eq!(answer, &first, "every repeat gets the first answer");
    }
    let fresh = answers.iter().filter(|(_, was)| !was).count();
    assert_eq!(fresh, 1, "exactly one answer is not a replay");
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_fifty_times_at_once_is_one_event() {
    let server = start(&[]).await;
    let body = json!({ "message": "once", "topic": "t" });
    let answer = one_event(&at_once(&[server.addr], 50, "burst", &body).await);
    assert_eq!(answer["seq"], 1);
    assert_next_seq(server.addr, 2).await;
    assert_eq!(
        metric(server.addr, "sse_idempotency_replayed_total").await,
        49
    );
    server.stop().await;
}

#[tokio::test]
async fn the_oldest_keys_are_forgotten_first() {
    let server = start(&["--idempotency-keys", "2", "--max-batch", "2"]).await;
    let body = json!({ "message": "m" });
    for key in ["a", "b", "c"] {
        accepted(&publish_keyed(server.addr, key.as_bytes(), &body, None).await);
    }
    assert_eq!(metric(server.addr, "sse_idempotency_keys").await, 2);
    assert_eq!(
        metric(server.addr, "sse_idempotency_forgotten_total").await,
        1
    );
    // c is remembered; a is not, and publishes again.
    let (_, was) = accepted(&publish_keyed(server.addr, b"c", &body, None).await);
    assert!(was);
    let (again, was) = accepted(&publish_keyed(server.addr, b"a", &body, None).await);
    assert!(!was);
    assert_eq!(again["seq"], 4);
    server.stop().await;
}

#[tokio::test]
async fn a_key_is_forgotten_after_the_ttl() {
    let server = start(&["--idempotency-ttl", "200ms"]).await;
    let body = json!({ "message": "m" });
    let (first, _) = accepted(&publish_keyed(server.addr, b"k", &body, None).await);
    let (_, was) = accepted(&publish_keyed(server.addr, b"k", &body, None).await);
    assert!(was, "remembered within the TTL");
    // Not a synchronization: the TTL is a span of the wall clock, and the
    // test lets it pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (second, was) = accepted(&publish_keyed(server.addr, b"k", &body, None).await);
    assert!(!was, "forgotten after the TTL");
    assert_eq!(second["seq"], first["seq"].as_u64().unwrap() + 1);
    assert_eq!(
        metric(server.addr, "sse_idempotency_forgotten_total").await,
        1
    );
    server.stop().await;
}

/// A keyed publish to a server that may be killed: its answer, or `None`.
async fn try_publish_keyed(addr: SocketAddr, key: &str, body: &Value) -> Option<Value> {
    let request = Request::post("/publish")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = try_send(addr, request).await.ok()?;
    if response.status() != 200 {
        return None;
    }
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&bytes).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_disk_a_retry_after_sigkill_gets_the_first_answer() {
    const KEYS: usize = 60;
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = root.path().join("data");
    let dir = dir.to_str().expect("utf-8 path");
    let args = ["--data-dir", dir, "--fsync", "always"];
    let server = ServerProcess::start_alone(&args, &[]).await;
    let addr = server.addr;
    // Keyed publishes from several tasks; SIGKILL once half are
    // acknowledged, so that some are in flight.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let acked = acked_tx.clone();
            tokio::spawn(async move {
                for i in (p..KEYS).step_by(4) {
                    let body = json!({ "message": format!("event {i}"), "topic": "t" });
                    let Some(answer) = try_publish_keyed(addr, &format!("key-{i}"), &body).await
                    else {
                        return;
                    };
                    let _ = acked.send((i, answer));
                }
            })
        })
        .collect();
    drop(acked_tx);
    let mut acked = HashMap::new();
    while acked.len() < KEYS / 2 {
        let (i, answer) = acked_rx.recv().await.expect("publishes go on");
        acked.insert(i, answer);
    }
    server.kill().await;
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    while let Ok((i, answer)) = acked_rx.try_recv() {
        acked.insert(i, answer);
    }

    let server = ServerProcess::start_alone(&args, &[]).await;
    let addr = server.addr;
    // Every key again, twice: an acknowledged one gets its first answer,
    // one in flight at the kill is stored now or was stored then.
    let mut answers = HashMap::new();
    for i in 0..KEYS {
        let body = json!({ "message": format!("event {i}"), "topic": "t" });
        let (answer, was) =
            accepted(&publish_keyed(addr, format!("key-{i}").as_bytes(), &body, None).await);
        if let Some(first) = acked.get(&i) {
            assert!(was, "key-{i} was acknowledged before the kill");
            assert_eq!(&answer, first, "key-{i}");
        }
        let (again, was) =
            accepted(&publish_keyed(addr, format!("key-{i}").as_bytes(), &body, None).await);
        assert!(was);
        assert_eq!(again, answer);
        answers.insert(i, answer);
    }
    // The log holds each message exactly once.
    let epoch = answers[&0]["event_id"]
        .as_str()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    let last = answers
        .values()
        .map(|a| a["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(last as usize, KEYS, "one seq per key, no more");
    let mut sse = Sse::open(addr, "/stream?topic=t", Some(&format!("{epoch}-0"))).await;
    let mut seen = HashMap::new();
    while seen.len() < KEYS {
        let (_, event) = sse.next_message().await;
        assert!(
            seen.insert(event.message.clone(), event.seq).is_none(),
            "{} twice",
            event.message
        );
    }
    for (i, answer) in &answers {
        assert_eq!(seen[&format!("event {i}")], answer["seq"].as_u64().unwrap());
    }
    assert_eq!(metric(addr, "sse_idempotency_keys").await, KEYS as u64);
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_disk_fifty_at_once_is_one_event_and_forgotten_keys_stay_forgotten() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = root.path().join("data");
    let dir = dir.to_str().expect("utf-8 path");
    let args = [
        "--data-dir",
        dir,
        "--idempotency-keys",
        "2",
        "--max-batch",
        "2",
    ];
    let server = ServerProcess::start_alone(&args, &[]).await;
    let body = json!({ "message": "once" });
    let answer = one_event(&at_once(&[server.addr], 50, "burst", &body).await);
    assert_eq!(answer["seq"], 1);
    for key in ["b", "c"] {
        accepted(&publish_keyed(server.addr, key.as_bytes(), &body, None).await);
    }
    server.terminate().await;
    // After a restart: the two newest are remembered, the oldest is not.
    let server = ServerProcess::start_alone(&args, &[]).await;
    assert_eq!(metric(server.addr, "sse_idempotency_keys").await, 2);
    let (_, was) = accepted(&publish_keyed(server.addr, b"c", &body, None).await);
    assert!(was);
    let (again, was) = accepted(&publish_keyed(server.addr, b"burst", &body, None).await);
    assert!(!was, "the oldest key was forgotten");
    assert_eq!(again["seq"], 4);
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_retry_on_another_server_gets_the_first_answer() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &[]).await;
    let b = ServerProcess::start(&redis, &[]).await;
    let body = json!({ "message": "paid", "topic": "orders" });
    let (first, was) = accepted(&publish_keyed(a.addr, b"order-1", &body, None).await);
    assert!(!was);
    let (again, was) = accepted(&publish_keyed(b.addr, b"order-1", &body, None).await);
    assert!(was, "the other server finds the key in Redis");
    assert_eq!(again, first);
    let other = json!({ "message": "refunded", "topic": "orders" });
    let answer = publish_keyed(b.addr, b"order-1", &other, None).await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.json()["error"], "idempotency_key_reused");
    // Fifty at once, spread over both servers: one event.
    let burst = one_event(&at_once(&[a.addr, b.addr], 50, "burst", &body).await);
    assert_eq!(burst["seq"], first["seq"].as_u64().unwrap() + 1);
    assert_next_seq(a.addr, burst["seq"].as_u64().unwrap() + 1).await;
    let replayed = metric(a.addr, "sse_idempotency_replayed_total").await
        + metric(b.addr, "sse_idempotency_replayed_total").await;
    assert_eq!(replayed, 1 + 49);
    assert_eq!(get(a.addr, "/healthz").await.status, 200);
    a.terminate().await;
    b.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_the_oldest_keys_are_forgotten_for_every_server() {
    let redis = Redis::start().await;
    let a = ServerProcess::start(&redis, &["--idempotency-keys", "2", "--max-batch", "2"]).await;
    let b = ServerProcess::start(&redis, &["--idempotency-keys", "2", "--max-batch", "2"]).await;
    let body = json!({ "message": "m" });
    for key in ["a", "b", "c"] {
        accepted(&publish_keyed(a.addr, key.as_bytes(), &body, None).await);
    }
    assert_eq!(metric(a.addr, "sse_idempotency_keys").await, 2);
    assert_eq!(metric(a.addr, "sse_idempotency_forgotten_total").await, 1);
    let (_, was) = accepted(&publish_keyed(b.addr, b"c", &body, None).await);
    assert!(was);
    let (again, was) = accepted(&publish_keyed(b.addr, b"a", &body, None).await);
    assert!(!was, "the oldest key was forgotten");
    assert_eq!(again["seq"], 4);
    a.terminate().await;
    b.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_disk_a_key_whose_publish_failed_publishes_once_when_retried() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = root.path().join("data");
    let dir = dir.to_str().expect("utf-8 path");
    let fault = root.path().join("fault");
    let env = [("SSE_TEST_DISK_FAULT_FILE", fault.to_str().unwrap())];
    let server = ServerProcess::start_alone(&["--data-dir", dir], &env).await;
    let addr = server.addr;
    let body = json!({ "message": "m", "topic": "t" });
    std::fs::write(&fault, "").expect("fault file");
    // The disk fails: the publish is refused, and so is its retry (the key
    // was not stored, nor is anything waited for).
    for _ in 0..2 {
        let answer = publish_keyed(addr, b"k", &body, None).await;
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert_eq!(answer.json()["error"], "log_unavailable");
    }
    std::fs::remove_file(&fault).expect("remove the fault file");
    common::await_healthy(addr).await;
    // The first retry after the disk is back stores it, once.
    let (first, was) = accepted(&publish_keyed(addr, b"k", &body, None).await);
    assert!(!was);
    let (again, was) = accepted(&publish_keyed(addr, b"k", &body, None).await);
    assert!(was);
    assert_eq!(again, first);
    assert_next_seq(addr, first["seq"].as_u64().unwrap() + 1).await;
    server.kill().await;
}
