//! Private topics over real TCP: JWT rights per topic for subscribe, resume
//! and publish, where a token may come from, what every refusal says, the
//! stream's end at expiry, rate limits, and that no token reaches the log.

mod common;

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
    let private = dir.path().join("key.pem");
    let public = dir.path().join("pub.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&private)
        .status()
        .expect("openssl");
    assert!(status.success());
    let status = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl");
    assert!(status.success());
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
    let key = EncodingKey::from_ec_pem(&std::fs::read(&private).unwrap()).unwrap();
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
