//! Private topics over real TCP: JWT rights per topic for subscribe, resume
//! and publish, where a token may come from, what every refusal says, the
//! stream's end at expiry, rate limits, and that no token reaches the log.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{fetch, get, metric, start, Answer, Sse};
use http_body_util::Full;
use hyper::Request;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::{Item, AUTH_EXPIRED_EVENT};

const SECRET: &str = "correct horse battery staple";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token with `claims` (an `exp` an hour away unless given).
fn token(claims: Value) -> String {
    let mut claims = claims;
    if claims.get("exp").is_none() {
        claims["exp"] = json!(now() + 3600);
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .expect("encodes")
}

fn may_read(patterns: &[&str]) -> String {
    token(json!({ "sub": "reader", "sse": { "subscribe": patterns } }))
}

async fn server(extra: &[&str]) -> common::TestServer {
    let mut args = vec![
        "--jwt-secret",
        SECRET,
        "--private",
        "secret.*",
        "--private",
        "vip",
    ];
    args.extend_from_slice(extra);
    start(&args).await
}

/// GET with optional bearer token and cookie.
async fn get_with(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    cookie: Option<&str>,
) -> Answer {
    let mut request = Request::get(path);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    fetch(addr, request.body(Full::default()).unwrap()).await
}

/// The status, headers and first bytes of a stream request (a 200 stream
/// is left open and dropped).
async fn stream_status(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    cookie: Option<&str>,
) -> (u16, Option<Value>, hyper::HeaderMap) {
    let mut request = Request::get(path);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = common::send(addr, request.body(Full::default()).unwrap()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if status == 200 {
        return (status, None, headers);
    }
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&body).ok(), headers)
}

async fn publish_with(addr: SocketAddr, topic: &str, bearer: Option<&str>) -> Answer {
    let mut request = Request::post("/publish").header("content-type", "application/json");
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = json!({ "message": format!("to {topic}"), "topic": topic }).to_string();
    fetch(addr, request.body(Full::new(Bytes::from(body))).unwrap()).await
}

fn unauthorized(message: &str) -> Value {
    json!({ "error": "unauthorized", "message": message })
}

#[tokio::test]
async fn a_private_topic_needs_a_token_that_covers_it() {
    let server = server(&["--jwt-leeway", "0s"]).await;
    let addr = server.addr;
    // No token.
    let (status, body, headers) = stream_status(addr, "/stream?topic=secret.a", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(
        body.unwrap(),
        unauthorized("reading secret.a needs a token")
    );
    // A bad signature, an expired token, a malformed one.
    let forged = encode(
        &Header::default(),
        &json!({ "exp": now() + 60, "sse": { "subscribe": ["*"] } }),
        &EncodingKey::from_secret(b"another secret").unwrap(),
    )
    .unwrap();
    let expired = token(json!({ "exp": now() - 10, "sse": { "subscribe": ["*"] } }));
    for (bad, message) in [
        (
            forged.as_str(),
            "the token is not valid: its signature does not match",
        ),
        (expired.as_str(), "the token is not valid: it has expired"),
        (
            "not.a.jwt",
            "the token is not valid: it is not a well-formed JWT",
        ),
    ] {
        let (status, body, _) =
            stream_status(addr, "/stream?topic=secret.a", Some(bad), None).await;
        assert_eq!(
            (status, body.unwrap()),
            (401, unauthorized(message)),
            "{bad}"
        );
        // Even for a public topic: a token sent must be valid.
        let (status, _, _) = stream_status(addr, "/stream?topic=public", Some(bad), None).await;
        assert_eq!(status, 401);
    }
    // A token without exp.
    let no_exp = encode(
        &Header::default(),
        &json!({ "sse": { "subscribe": ["*"] } }),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, body, _) =
        stream_status(addr, "/stream?topic=secret.a", Some(&no_exp), None).await;
    assert_eq!(
        (status, body.unwrap()),
        (
            401,
            unauthorized("the token is not valid: it has no exp claim")
        )
    );
    // A token that covers some topics.
    let some = may_read(&["secret.a", "vip"]);
    for ok in [
        "/stream?topic=secret.a",
        "/stream?topic=vip&topic=public",
        "/stream",
    ] {
        let (status, _, _) = stream_status(addr, ok, Some(&some), None).await;
        assert_eq!(status, 200, "{ok}");
    }
    let (status, body, _) = stream_status(addr, "/stream?topic=secret.b", Some(&some), None).await;
    assert_eq!(status, 403);
    assert_eq!(
        body.unwrap(),
        json!({ "error": "forbidden", "message": "the token does not allow reading secret.b" })
    );
    // A prefix pattern needs a claim that covers it whole.
    let (status, body, _) = stream_status(addr, "/stream?topic=secret.*", Some(&some), None).await;
    assert_eq!(status, 403);
    assert_eq!(
        body.unwrap()["message"],
        "the token does not allow reading secret.*"
    );
    let all_secret = may_read(&["secret.*"]);
    for ok in ["/stream?topic=secret.*", "/stream?topic=secret.eu.*"] {
        assert_eq!(
            stream_status(addr, ok, Some(&all_secret), None).await.0,
            200,
            "{ok}"
        );
    }
    // Public topics and patterns need nothing.
    for ok in ["/stream?topic=public", "/stream?topic=news.*", "/stream"] {
        assert_eq!(stream_status(addr, ok, None, None).await.0, 200, "{ok}");
    }
    assert!(metric(addr, "sse_refused_total{reason=\"unauthorized\"}").await >= 5);
    assert_eq!(
        metric(addr, "sse_refused_total{reason=\"forbidden\"}").await,
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn only_the_configured_algorithm_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let key_pair = rcgen::KeyPair::generate().expect("a P-256 key");
    let public = dir.path().join("pub.pem");
    std::fs::write(&public, key_pair.public_key_pem()).unwrap();
    let server = start(&[
        "--jwt-public-key",
        public.to_str().unwrap(),
        "--private",
        "vip",
        "--jwt-audience",
        "sse.example",
    ])
    .await;
    let claims =
        |aud: &str| json!({ "exp": now() + 600, "aud": aud, "sse": { "subscribe": ["vip"] } });
    let key = EncodingKey::from_ec_pem(key_pair.serialize_pem().as_bytes()).unwrap();
    let good = encode(&Header::new(Algorithm::ES256), &claims("sse.example"), &key).unwrap();
    assert_eq!(
        stream_status(server.addr, "/stream?topic=vip", Some(&good), None)
            .await
            .0,
        200
    );
    let wrong_aud = encode(&Header::new(Algorithm::ES256), &claims("elsewhere"), &key).unwrap();
    let (status, body, _) =
        stream_status(server.addr, "/stream?topic=vip", Some(&wrong_aud), None).await;
    assert_eq!(
        (status, body.unwrap()),
        (
            401,
            unauthorized("the token is not valid: its audience (aud) is not accepted")
        )
    );
    // Algorithm confusion: HS256 signed with the public key as the secret.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("sse.example"),
        &EncodingKey::from_secret(&std::fs::read(&public).unwrap()).unwrap(),
    )
    .unwrap();
    // `alg: none`, unsigned.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims("sse.example").to_string())
    );
    for (bad, message) in [
        (
            confused.as_str(),
            "the token is not valid: it is not signed with ES256, the one algorithm accepted",
        ),
        (
            none.as_str(),
            "the token is not valid: it is not signed with ES256, the one algorithm accepted",
        ),
    ] {
        let (status, body, _) =
            stream_status(server.addr, "/stream?topic=vip", Some(bad), None).await;
        assert_eq!(
            (status, body.unwrap()),
            (401, unauthorized(message)),
            "{bad}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_stream_of_every_topic_gets_the_public_ones_and_what_its_token_covers() {
    let server = server(&[]).await;
    let addr = server.addr;
    let publisher = token(json!({ "sse": { "publish": ["*"] } }));
    let epoch = get(addr, "/healthz").await.json()["epoch"]
        .as_u64()
        .unwrap();
    for topic in ["public", "secret.a", "vip", "secret.b", "public"] {
        assert_eq!(
            publish_with(addr, topic, Some(&publisher)).await.status,
            200
        );
    }
    async fn topics_of(
        addr: SocketAddr,
        path: &str,
        token: Option<&str>,
        until: u64,
    ) -> Vec<String> {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut sse = Sse::open_request(addr, request).await;
        assert_eq!(sse.status, 200);
        let mut seen = Vec::new();
        loop {
            let (_, event) = sse.next_message().await;
            seen.push(event.topic);
            if event.seq == until {
                return seen;
            }
        }
    }
    // An anonymous resume from the start: public events only.
    let from_zero = format!("/stream?lastEventId={epoch}-0");
    assert_eq!(
        topics_of(addr, &from_zero, None, 5).await,
        ["public", "public"]
    );
    // A token for secret.a: that too, never secret.b or vip.
    let reader = may_read(&["secret.a"]);
    assert_eq!(
        topics_of(addr, &from_zero, Some(&reader), 5).await,
        ["public", "secret.a", "public"]
    );
    // Live the same way; and no notice names the hidden events.
    let mut anonymous = Sse::open(addr, "/stream", None).await;
    anonymous.next_position().await;
    assert_eq!(
        publish_with(addr, "vip", Some(&publisher)).await.status,
        200
    );
    assert_eq!(
        publish_with(addr, "public", Some(&publisher)).await.status,
        200
    );
    let (_, event) = anonymous.next_message().await;
    assert_eq!((event.topic.as_str(), event.seq), ("public", 7));
    // GET /topics lists what the caller may read.
    let names = |answer: Answer| -> Vec<String> {
        answer.json()["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(get_with(addr, "/topics", None, None).await),
        ["public"]
    );
    assert_eq!(
        names(get_with(addr, "/topics", Some(&reader), None).await),
        ["public", "secret.a"]
    );
    assert_eq!(metric(addr, "sse_resets_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn the_token_may_come_in_a_cookie_or_the_query() {
    let server = server(&["--jwt-cookie", "my_token"]).await;
    let addr = server.addr;
    let reader = may_read(&["vip"]);
    let cookie = format!("theme=dark; my_token={reader}");
    assert_eq!(
        stream_status(addr, "/stream?topic=vip", None, Some(&cookie))
            .await
            .0,
        200
    );
    let query = format!("/stream?topic=vip&access_token={reader}");
    assert_eq!(stream_status(addr, &query, None, None).await.0, 200);
    // A cookie that fails counts as none: public topics stay readable.
    let stale = "my_token=expired.or.forged";
    assert_eq!(
        stream_status(addr, "/stream?topic=public", None, Some(stale))
            .await
            .0,
        200
    );
    let (status, body, _) = stream_status(addr, "/stream?topic=vip", None, Some(stale)).await;
    assert_eq!(
        (status, body.unwrap()),
        (401, unauthorized("reading vip needs a token"))
    );
    // A query token that fails is refused.
    let (status, body, _) =
        stream_status(addr, "/stream?topic=public&access_token=x.y.z", None, None).await;
    assert_eq!(
        (status, body.unwrap()),
        (
            401,
            unauthorized("the token is not valid: it is not a well-formed JWT")
        )
    );
    // The header wins over the cookie.
    let (status, _, _) = stream_status(
        addr,
        "/stream?topic=vip",
        Some(&may_read(&["public"])),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test]
async fn publishing_needs_a_token_whose_claim_covers_the_topic() {
    let server = server(&[
        "--publish-token",
        "the-one-secret",
        "--jwt-cookie",
        "sse_token",
    ])
    .await;
    let addr = server.addr;
    let needs = "publishing needs the header Authorization: Bearer <token> with a token whose sse.publish claim covers the topic";
    let answer = publish_with(addr, "news", None).await;
    assert_eq!((answer.status, answer.json()), (401, unauthorized(needs)));
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    let writer = token(json!({ "sub": "w", "sse": { "publish": ["news.*"], "subscribe": ["*"] } }));
    assert_eq!(
        publish_with(addr, "news.eu", Some(&writer)).await.status,
        200
    );
    let answer = publish_with(addr, "news", Some(&writer)).await;
    assert_eq!(
        (answer.status, answer.json()),
        (
            403,
            json!({ "error": "forbidden", "message": "the token does not allow publishing to news" })
        )
    );
    // A reader's token cannot publish.
    let answer = publish_with(addr, "news.eu", Some(&may_read(&["*"]))).await;
    assert_eq!(answer.status, 403);
    // The publish token still publishes everywhere.
    assert_eq!(
        publish_with(addr, "vip", Some("the-one-secret"))
            .await
            .status,
        200
    );
    // A cookie never authorizes a publish.
    let request = Request::post("/publish")
        .header("content-type", "application/json")
        .header("cookie", format!("sse_token={writer}"))
        .body(Full::new(Bytes::from(
            r#"{"message":"x","topic":"news.eu"}"#,
        )))
        .unwrap();
    let answer = fetch(addr, request).await;
    assert_eq!((answer.status, answer.json()), (401, unauthorized(needs)));
    server.stop().await;
}

#[tokio::test]
async fn a_stream_ends_with_auth_expired_when_its_token_does_and_resumes_with_a_fresh_one() {
    let server = server(&["--jwt-leeway", "0s"]).await;
    let addr = server.addr;
    let publisher = token(json!({ "sse": { "publish": ["*"] } }));
    let short = token(json!({ "exp": now() + 2, "sse": { "subscribe": ["vip"] } }));
    let request =
        Request::get("/stream?topic=vip").header("authorization", format!("Bearer {short}"));
    let mut sse = Sse::open_request(addr, request).await;
    assert_eq!(sse.status, 200);
    assert_eq!(
        publish_with(addr, "vip", Some(&publisher)).await.status,
        200
    );
    let (first, _) = sse.next_message().await;
    // The stream ends at expiry, saying so, with the place to resume from.
    let expired = loop {
        match sse.next_item().await.expect("auth_expired before the end") {
            Item::Event(event) if event.event == AUTH_EXPIRED_EVENT => break event,
            Item::Event(event) if event.event == "message" => panic!("{event:?}"),
            _ => {}
        }
    };
    let data: Value = serde_json::from_str(&expired.data).unwrap();
    assert!(humantime::parse_rfc3339(data["expired_at"].as_str().unwrap()).is_ok());
    assert_eq!(expired.last_event_id, first.last_event_id);
    assert!(
        sse.until_end().await.is_empty(),
        "nothing after auth_expired"
    );
    // Published meanwhile; a fresh token resumes exactly.
    let missed = publish_with(addr, "vip", Some(&publisher)).await.json()["seq"]
        .as_u64()
        .unwrap();
    let fresh = may_read(&["vip"]);
    let request = Request::get("/stream?topic=vip")
        .header("authorization", format!("Bearer {fresh}"))
        .header("last-event-id", &expired.last_event_id);
    let mut back = Sse::open_request(addr, request).await;
    assert_eq!(back.next_message().await.1.seq, missed);
    // The expired token gets nothing more: refused, or (within the second
    // of its exp) a stream that ends at once with auth_expired.
    let request =
        Request::get("/stream?topic=vip").header("authorization", format!("Bearer {short}"));
    let mut again = Sse::open_request(addr, request).await;
    if again.status == 200 {
        let rest = again.until_end().await;
        assert!(
            rest.iter()
                .all(|item| !matches!(item, Item::Event(e) if e.event == "message")),
            "{rest:?}"
        );
    } else {
        assert_eq!(again.status, 401);
    }
    server.stop().await;
}

#[tokio::test]
async fn publishes_over_the_rate_get_429_per_subject() {
    let server = server(&["--publish-rate", "1", "--publish-burst", "3"]).await;
    let addr = server.addr;
    let alice = token(json!({ "sub": "alice", "sse": { "publish": ["*"] } }));
    let bob = token(json!({ "sub": "bob", "sse": { "publish": ["*"] } }));
    for _ in 0..3 {
        assert_eq!(publish_with(addr, "t", Some(&alice)).await.status, 200);
    }
    let refused = publish_with(addr, "t", Some(&alice)).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(
        refused.json(),
        json!({ "error": "rate_limited", "message": "too many publishes; retry in 1 s" })
    );
    // Another subject has its own bucket; a new token of alice does not.
    assert_eq!(publish_with(addr, "t", Some(&bob)).await.status, 200);
    let alice_again =
        token(json!({ "sub": "alice", "exp": now() + 7200, "sse": { "publish": ["*"] } }));
    assert_eq!(
        publish_with(addr, "t", Some(&alice_again)).await.status,
        429
    );
    assert_eq!(
        metric(addr, "sse_refused_total{reason=\"rate_limited\"}").await,
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_and_health_can_need_a_token() {
    let server = start(&["--metrics-token", "m3trics"]).await;
    for path in ["/metrics", "/healthz"] {
        let answer = get(server.addr, path).await;
        assert_eq!(answer.status, 401, "{path}");
        assert_eq!(answer.json()["error"], "unauthorized");
        assert_eq!(
            get_with(server.addr, path, Some("m3trics"), None)
                .await
                .status,
            200
        );
        assert_eq!(
            get_with(server.addr, path, Some("wrong"), None)
                .await
                .status,
            401
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn no_token_reaches_the_log() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--ticker-interval",
            "off",
            "--dist",
            "/nonexistent",
        ])
        .args(["--jwt-secret", SECRET, "--private", "vip"])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    let addr: SocketAddr = line
        .strip_prefix("listening on http://")
        .unwrap()
        .parse()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let good = may_read(&["vip"]);
    let expired = token(json!({ "exp": now() - 3600, "sse": { "subscribe": ["vip"] } }));
    let query = format!("/stream?topic=vip&access_token={good}");
    let query_bad = format!("/stream?topic=vip&access_token={expired}");
    assert_eq!(stream_status(addr, &query, None, None).await.0, 200);
    assert_eq!(stream_status(addr, &query_bad, None, None).await.0, 401);
    assert_eq!(
        stream_status(addr, "/stream?topic=vip", Some(&good), None)
            .await
            .0,
        200
    );
    assert_eq!(
        stream_status(addr, "/stream?topic=vip", Some(&expired), None)
            .await
            .0,
        401
    );
    let cookie = format!("sse_token={expired}");
    assert_eq!(
        stream_status(addr, "/stream?topic=vip", None, Some(&cookie))
            .await
            .0,
        401
    );
    assert_eq!(publish_with(addr, "vip", Some(&expired)).await.status, 401);
    let _ = tokio::time::timeout(Duration::from_secs(1), get(addr, "/healthz")).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let log = log.await.unwrap();
    assert!(log.contains("request"), "the log has request lines:\n{log}");
    for secret in [good.as_str(), expired.as_str(), SECRET] {
        // A token's signature part alone would give it away too.
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a secret in the log:\n{log}");
    }
}

#[tokio::test]
async fn contradictory_options_are_refused_before_listening() {
    for (args, message) in [
        (
            vec!["--jwt-secret", "s", "--jwt-public-key", "/k.pem"],
            "cannot be used with",
        ),
        (
            vec!["--private", "vip"],
            "--private needs --jwt-secret or --jwt-public-key",
        ),
        (
            vec!["--jwt-public-key", "/nonexistent.pem"],
            "--jwt-public-key /nonexistent.pem:",
        ),
        (
            vec!["--jwt-secret", "s", "--private", "a*"],
            "has a '*' that is not its last part",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--addr", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// The status of `GET path` sent as raw HTTP/1.1 with these header lines.
async fn raw_status(addr: SocketAddr, path: &str, lines: &[String]) -> common::raw::RawAnswer {
    let mut raw = common::raw::Raw::connect(addr).await;
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for line in lines {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    raw.send(head.as_bytes()).await;
    raw.response().await
}

#[tokio::test]
async fn a_token_that_never_expires_is_valid_until_a_far_future_and_panics_nothing() {
    let server = server(&[]).await;
    let addr = server.addr;
    for exp in [u64::MAX, 1 << 63, (1 << 63) - 1, 253_402_300_800] {
        let reader = token(json!({
            "exp": exp,
            "sub": "forever",
            "sse": { "subscribe": ["vip"], "publish": ["vip"] }
        }));
        let mut sse = Sse::open_request(
            addr,
            Request::get("/stream?topic=vip").header("authorization", format!("Bearer {reader}")),
        )
        .await;
        let topics = get_with(addr, "/topics", Some(&reader), None).await;
        assert_eq!(topics.status, 200, "exp {exp}: {}", topics.body);
        let published = publish_with(addr, "vip", Some(&reader)).await;
        assert_eq!(published.status, 200, "exp {exp}: {}", published.body);
        let (_, event) = sse.next_message().await;
        assert_eq!(event.message, "to vip", "exp {exp}");
        // The query and the cookie take the same token the same way.
        let by_query = format!("/stream?topic=vip&access_token={reader}");
        assert_eq!(stream_status(addr, &by_query, None, None).await.0, 200);
        let cookie = format!("sse_token={reader}");
        assert_eq!(
            stream_status(addr, "/stream?topic=vip", None, Some(&cookie))
                .await
                .0,
            200
        );
    }
    // Far in the past is still expired, and `nbf` far in the future is
    // not valid yet: the ordinary answers, no overflow either way.
    let old = token(json!({ "exp": 1, "sse": { "subscribe": ["vip"] } }));
    let (status, body, _) = stream_status(addr, "/stream?topic=vip", Some(&old), None).await;
    assert_eq!(
        (status, body.unwrap()),
        (401, unauthorized("the token is not valid: it has expired"))
    );
    let later = token(json!({ "nbf": u64::MAX, "sse": { "subscribe": ["vip"] } }));
    let (status, body, _) = stream_status(addr, "/stream?topic=vip", Some(&later), None).await;
    assert_eq!(
        (status, body.unwrap()),
        (
            401,
            unauthorized("the token is not valid: it is not valid yet (nbf)")
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn cookie_fields_split_over_several_header_lines_are_joined() {
    let server = server(&[]).await;
    let addr = server.addr;
    let reader = may_read(&["vip"]);
    let split = [
        "cookie: theme=dark".to_owned(),
        format!("cookie: sse_token={reader}"),
    ];
    let answer = raw_status(addr, "/stream?topic=vip", &split).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("text/event-stream"),
        "{answer:?}"
    );
    let answer = raw_status(addr, "/topics", &split).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // Three fields, the token in the middle one.
    let three = [
        "cookie: a=1".to_owned(),
        format!("cookie: sse_token={reader}; b=2"),
        "cookie: c=3".to_owned(),
    ];
    assert_eq!(
        raw_status(addr, "/stream?topic=vip", &three).await.status,
        200
    );
    // Joined, the first of two tokens still wins: a stale one first is a
    // stale cookie, which counts as none.
    let twice = [
        "cookie: sse_token=stale.token.here".to_owned(),
        format!("cookie: sse_token={reader}"),
    ];
    let answer = raw_status(addr, "/stream?topic=vip", &twice).await;
    assert_eq!(
        (answer.status, answer.json()),
        (401, unauthorized("reading vip needs a token"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stale_cookie_never_hides_a_valid_query_token() {
    let server = server(&[]).await;
    let addr = server.addr;
    let reader = may_read(&["vip"]);
    let expired = token(json!({ "exp": now() - 3600, "sse": { "subscribe": ["vip"] } }));
    let forged = encode(
        &Header::default(),
        &json!({ "exp": now() + 3600, "sse": { "subscribe": ["vip"] } }),
        &EncodingKey::from_secret(b"another key").unwrap(),
    )
    .unwrap();
    let query = format!("/stream?topic=vip&access_token={reader}");
    for stale in [expired.as_str(), forged.as_str(), "not-a-jwt"] {
        let cookie = format!("sse_token={stale}");
        let (status, _, _) = stream_status(addr, &query, None, Some(&cookie)).await;
        assert_eq!(status, 200, "stale cookie {stale}");
        let topics = format!("/topics?access_token={reader}");
        assert_eq!(
            get_with(addr, &topics, None, Some(&cookie)).await.status,
            200
        );
    }
    // A stale cookie and a bad query token: the query's answer.
    let cookie = format!("sse_token={expired}");
    let (status, body, _) = stream_status(
        addr,
        "/stream?topic=vip&access_token=x.y.z",
        None,
        Some(&cookie),
    )
    .await;
    assert_eq!(
        (status, body.unwrap()),
        (
            401,
            unauthorized("the token is not valid: it is not a well-formed JWT")
        )
    );
    // A valid cookie still wins over the query.
    let public_only = may_read(&["public"]);
    let cookie = format!("sse_token={reader}");
    let query = format!("/stream?topic=vip&access_token={public_only}");
    assert_eq!(
        stream_status(addr, &query, None, Some(&cookie)).await.0,
        200
    );
    server.stop().await;
}

/// The order of P-256, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `n - s` for a big-endian `s` below `n`.
fn order_minus(s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut digit = i16::from(P256_ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(digit < 0);
        if digit < 0 {
            digit += 256;
        }
        out[i] = digit as u8;
    }
    out
}

#[tokio::test]
async fn an_es256_tokens_twin_signature_is_the_same_token_to_the_rate_limit() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let dir = tempfile::tempdir().unwrap();
    let key_pair = rcgen::KeyPair::generate().expect("a P-256 key");
    let public = dir.path().join("pub.pem");
    std::fs::write(&public, key_pair.public_key_pem()).unwrap();
    let server = start(&[
        "--jwt-public-key",
        public.to_str().unwrap(),
        "--private",
        "vip",
        "--publish-rate",
        "1",
        "--publish-burst",
        "1",
    ])
    .await;
    let key = EncodingKey::from_ec_pem(key_pair.serialize_pem().as_bytes()).unwrap();
    // No `sub`: the rate limiter keys the token itself.
    let claims = json!({ "exp": now() + 600, "sse": { "subscribe": ["vip"], "publish": ["vip"] } });
    let signed = encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap();
    let (body, signature) = signed.rsplit_once('.').unwrap();
    let signature = b64.decode(signature).unwrap();
    assert_eq!(signature.len(), 64, "r || s");
    let (r, s) = signature.split_at(32);
    let twin = format!("{body}.{}", b64.encode([r, &order_minus(s)].concat()));
    assert_ne!(twin, signed);
    // Both are valid signatures of the same claims: signers (OpenSSL among
    // them) give either, so both are accepted...
    for token in [&signed, &twin] {
        let (status, _, _) =
            stream_status(server.addr, "/stream?topic=vip", Some(token), None).await;
        assert_eq!(status, 200);
    }
    // ...and they are one token: the twin gets no burst of its own.
    assert_eq!(
        publish_with(server.addr, "vip", Some(&signed)).await.status,
        200
    );
    let refused = publish_with(server.addr, "vip", Some(&twin)).await;
    assert_eq!(
        (refused.status, refused.json()["error"].clone()),
        (429, json!("rate_limited"))
    );
    // A signature changed otherwise is refused.
    let mut forged = signature.clone();
    forged[40] ^= 1;
    let forged = format!("{body}.{}", b64.encode(forged));
    let (status, body, _) =
        stream_status(server.addr, "/stream?topic=vip", Some(&forged), None).await;
    assert_eq!(
        (status, body.unwrap()),
        (
            401,
            unauthorized("the token is not valid: its signature does not match")
        )
    );
    server.stop().await;
}

/// An anonymous publish sent through a trusted proxy for `client`.
async fn publish_for(addr: SocketAddr, client: &str) -> Answer {
    let request = Request::post("/publish")
        .header("content-type", "application/json")
        .header("x-forwarded-for", client)
        .body(Full::new(Bytes::from(r#"{"message":"m"}"#)))
        .unwrap();
    fetch(addr, request).await
}

#[tokio::test]
async fn an_ipv6_prefix_shares_one_bucket_and_idle_buckets_are_forgotten() {
    let server = start(&[
        "--publish-rate",
        "1",
        "--publish-burst",
        "2",
        "--trust-proxy",
        "127.0.0.1/32",
    ])
    .await;
    let addr = server.addr;
    // Two addresses of one /64: one burst between them.
    assert_eq!(publish_for(addr, "2001:db8::1").await.status, 200);
    assert_eq!(publish_for(addr, "2001:db8::2").await.status, 200);
    let refused = publish_for(addr, "2001:db8::ffff:1").await;
    assert_eq!(
        (refused.status, refused.json()["error"].clone()),
        (429, json!("rate_limited"))
    );
    // Another /64 has its own.
    assert_eq!(publish_for(addr, "2001:db8:0:1::1").await.status, 200);
    // An IPv4-mapped address is the IPv4 address.
    assert_eq!(publish_for(addr, "198.51.100.7").await.status, 200);
    assert_eq!(publish_for(addr, "::ffff:198.51.100.7").await.status, 200);
    assert_eq!(publish_for(addr, "198.51.100.7").await.status, 429);
    assert_eq!(metric(addr, "sse_rate_limit_keys").await, 3);
    // Once their buckets refill, the keys are forgotten by time, not only
    // when the table is full.
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while metric(addr, "sse_rate_limit_keys").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle keys are never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_ipv6_prefix_is_configurable() {
    let server = start(&[
        "--publish-rate",
        "1",
        "--publish-burst",
        "1",
        "--trust-proxy",
        "127.0.0.1/32",
        "--rate-ipv6-prefix",
        "128",
    ])
    .await;
    let addr = server.addr;
    assert_eq!(publish_for(addr, "2001:db8::1").await.status, 200);
    assert_eq!(publish_for(addr, "2001:db8::2").await.status, 200);
    assert_eq!(publish_for(addr, "2001:db8::1").await.status, 429);
    server.stop().await;
    for bad in ["0", "129", "x"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--addr", "127.0.0.1:0", "--rate-ipv6-prefix", bad])
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--rate-ipv6-prefix"), "{bad}: {stderr}");
    }
}
