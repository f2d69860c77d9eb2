//! HTTP conformance over real TCP, for odd but legal requests: HEAD, the
//! 404/405 rule and `Allow`, a half-closed request, header values that are
//! not ASCII, the bearer scheme's case, bodies that are not an object,
//! transfer codings, CORS origins, the help text at `/`.

use crate::common;

use bytes::Bytes;
use common::raw::Raw;
use common::{fetch, metric, publish, start, Answer};
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::Request;
use shared::Item;
use tokio::io::AsyncWriteExt;

fn assert_error(answer: &Answer, status: u16, code: &str, message: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        answer.json(),
        serde_json::json!({ "error": code, "message": message })
    );
}

async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> Answer {
    fetch(
        addr,
        Request::builder()
            .method(method)
            .uri(path)
            .body(Full::default())
            .expect("request"),
    )
    .await
}

async fn post_publish(
    addr: std::net::SocketAddr,
    headers: &[(&str, HeaderValue)],
    body: &str,
) -> Answer {
    let mut request = Request::post("/publish");
    for (name, value) in headers {
        request = request.header(*name, value.clone());
    }
    fetch(
        addr,
        request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request"),
    )
    .await
}

fn body_text() -> &'static str {
    r#"{"message":"x"}"#
}

const JSON: (&str, HeaderValue) = ("content-type", HeaderValue::from_static("application/json"));

#[tokio::test]
async fn head_answers_every_get_route_without_a_body() {
    let dist = tempfile::tempdir().expect("temp dir");
    std::fs::write(dist.path().join("index.html"), "<p>page</p>").expect("write");
    std::fs::write(dist.path().join("app.js"), "let x = 1;").expect("write");
    let server = start(&["--dist", dist.path().to_str().expect("UTF-8 path")]).await;
    let addr = server.addr;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript"),
        ("/healthz", "application/json"),
        ("/time", "application/json"),
        ("/topics", "application/json"),
        ("/metrics", "text/plain; version=0.0.4; charset=utf-8"),
        ("/stream", "text/event-stream"),
        ("/stream?topic=news&lastEventId=1-1", "text/event-stream"),
    ] {
        let head = request(addr, "HEAD", path).await;
        assert_eq!(head.status, 200, "HEAD {path}");
        assert_eq!(head.headers["content-type"], content_type, "HEAD {path}");
        assert_eq!(head.body, "", "HEAD {path}");
    }
    // A HEAD of the stream subscribes no one.
    assert_eq!(metric(addr, "sse_subscribers").await, 0);
    assert_eq!(metric(addr, "sse_subscriptions_total").await, 0);
    // The same checks as GET, without the body.
    assert_eq!(request(addr, "HEAD", "/stream?topic=a/b").await.status, 400);
    assert_eq!(request(addr, "HEAD", "/nowhere").await.status, 404);
    assert_eq!(request(addr, "HEAD", "/publish").await.status, 405);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow_and_an_unknown_path_is_404() {
    let server = start(&[]).await;
    let addr = server.addr;
    for (method, path, allow) in [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/stream", "GET, HEAD"),
        ("PUT", "/metrics", "GET, HEAD"),
        ("POST", "/time", "GET, HEAD"),
        ("POST", "/", "GET, HEAD"),
        ("GET", "/publish", "POST"),
        ("PATCH", "/publish", "POST"),
    ] {
        let answer = request(addr, method, path).await;
        assert_error(
            &answer,
            405,
            "method_not_allowed",
            "method not allowed for this endpoint",
        );
        assert_eq!(answer.headers["allow"], allow, "{method} {path}");
    }
    for (method, path) in [
        ("GET", "/nowhere"),
        ("POST", "/nowhere"),
        ("DELETE", "/no/such/path"),
        ("PUT", "/stream/more"),
    ] {
        assert_error(
            &request(addr, method, path).await,
            404,
            "not_found",
            "no such endpoint; see GET / for the list",
        );
    }
    server.stop().await;
}

// The server on threads of its own, as in production: on the test's one
// thread it would read each request before its close had arrived. Whether
// the close arrives before hyper reads the request is a race, so it runs
// many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_then_a_half_close_gets_its_answer() {
    let server = start(&[]).await;
    let addr = server.addr;
    for i in 1..=20 {
        let mut raw = Raw::connect(addr).await;
        raw.send(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
            .await;
        raw.stream.shutdown().await.expect("half-close");
        let answer = raw.response().await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.json()["status"], "ok");
        raw.until_closed().await;

        let mut raw = Raw::connect(addr).await;
        let body = r#"{"message":"sent, then half-closed"}"#;
        raw.send(
            format!(
                "POST /publish HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
        raw.stream.shutdown().await.expect("half-close");
        let answer = raw.response().await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.json()["seq"], i);
        raw.until_closed().await;
    }
    assert_eq!(metric(addr, "sse_events_published_total").await, 20);
    server.stop().await;
}

#[tokio::test]
async fn a_header_that_is_not_ascii_gets_that_headers_own_answer() {
    let server = start(&["--publish-token", "s3cret"]).await;
    let addr = server.addr;
    let bearer = ("authorization", HeaderValue::from_static("Bearer s3cret"));
    let body = body_text();

    let odd_type = (
        "content-type",
        HeaderValue::from_bytes(b"application/j\xc3\xa9son").expect("obs-text is allowed"),
    );
    assert_error(
        &post_publish(addr, &[bearer.clone(), odd_type], body).await,
        415,
        "unsupported_media_type",
        "content type application/j\u{e9}son is not accepted; send Content-Type: application/json (or application/x-ndjson for a batch)",
    );
    let odd_auth = (
        "authorization",
        HeaderValue::from_bytes(b"Bearer s3cr\xe9t").expect("obs-text is allowed"),
    );
    let answer = post_publish(addr, &[odd_auth, JSON], body).await;
    assert_error(
        &answer,
        401,
        "unauthorized",
        "publishing needs the header Authorization: Bearer <token> with the server's publish token",
    );
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    assert_eq!(metric(addr, "sse_events_published_total").await, 0);

    let ok = post_publish(addr, &[bearer.clone(), JSON], body).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // A Last-Event-ID that is not ASCII counts as none: the stream opens
    // live, without replaying seq 1.
    let response = common::send(
        addr,
        Request::get("/stream")
            .header(
                "last-event-id",
                HeaderValue::from_bytes(b"\xff\xfe-0").expect("obs-text is allowed"),
            )
            .body(Full::default())
            .expect("request"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut parser = shared::Parser::new();
    let mut items = Vec::new();
    // The opening first, so the subscriber is registered before publishing.
    while !items.contains(&Item::Comment(" stream open".into())) {
        let frame = tokio::time::timeout(common::PATIENCE, body.frame())
            .await
            .expect("in time")
            .expect("open")
            .expect("a frame");
        parser.feed(&frame.into_data().expect("data"), &mut items);
    }
    let ok = post_publish(addr, &[bearer, JSON], body_text()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let event = loop {
        if let Some(Item::Event(event)) = items
            .iter()
            .find(|i| matches!(i, Item::Event(e) if e.event == "message"))
        {
            break event.clone();
        }
        let frame = tokio::time::timeout(common::PATIENCE, body.frame())
            .await
            .expect("in time")
            .expect("open")
            .expect("a frame");
        parser.feed(&frame.into_data().expect("data"), &mut items);
    };
    let message: shared::ServerEvent = serde_json::from_str(&event.data).expect("JSON");
    assert_eq!(message.seq, 2, "the stream started live");
    server.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let server = start(&["--publish-token", "s3cret"]).await;
    for (i, auth) in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret"]
        .into_iter()
        .enumerate()
    {
        let answer = post_publish(
            server.addr,
            &[JSON, ("authorization", HeaderValue::from_static(auth))],
            r#"{"message":"x"}"#,
        )
        .await;
        assert_eq!(answer.status, 200, "{auth}: {}", answer.body);
        assert_eq!(answer.json()["seq"], i + 1);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_publish_body_that_is_not_a_json_object_is_invalid_body() {
    let server = start(&[]).await;
    let addr = server.addr;
    for (body, kind) in [
        (r#"["hello","news"]"#, "an array"),
        (r#"  "hello""#, "a string"),
        ("42", "a number"),
        ("null", "null"),
    ] {
        assert_error(
            &post_publish(addr, &[JSON], body).await,
            400,
            "invalid_body",
            &format!(
                "the JSON body is not a publish request: it is {kind}; send an object like {{\"message\": \"...\"}}"
            ),
        );
    }
    assert_eq!(metric(addr, "sse_events_published_total").await, 0);
    assert_eq!(metric(addr, "sse_publish_errors_total").await, 4);
    server.stop().await;
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_501() {
    let server = start(&[]).await;
    let addr = server.addr;
    let expected = serde_json::json!({
        "error": "not_implemented",
        "message": "Transfer-Encoding \"gzip\" is not supported; send the body as it is, \
                    with Content-Length or Transfer-Encoding: chunked",
    });
    for path in ["/publish", "/nowhere"] {
        let mut raw = Raw::connect(addr).await;
        raw.send(
            format!(
                "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                 transfer-encoding: gzip, chunked\r\n\r\n\
                 f\r\n{{\"message\":\"x\"}}\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let answer = raw.response().await;
        assert_eq!(answer.status, 501, "{answer:?}");
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.json(), expected);
    }
    assert_eq!(metric(addr, "sse_events_published_total").await, 0);
    assert_eq!(
        metric(addr, "sse_refused_total{reason=\"transfer_coding\"}").await,
        2
    );
    // Chunked alone is fine.
    let mut raw = Raw::connect(addr).await;
    raw.send(
        b"POST /publish HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\n\r\nf\r\n{\"message\":\"x\"}\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(raw.response().await.status, 200);
    server.stop().await;
}

async fn preflight(addr: std::net::SocketAddr, origin: &str) -> Answer {
    fetch(
        addr,
        Request::options("/publish")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Full::default())
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn cors_origins_are_trimmed_and_a_wildcard_allows_any() {
    let any = start(&["--cors-origin", "*"]).await;
    let answer = preflight(any.addr, "http://anything.example").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    // Still serving after the first request.
    assert_eq!(publish(any.addr, "news", "x").await, 1);
    any.stop().await;

    let listed = start(&["--cors-origin", "http://a.example:1, HTTP://B.example:2"]).await;
    for origin in ["http://a.example:1", "http://b.example:2"] {
        let answer = preflight(listed.addr, origin).await;
        assert_eq!(answer.headers["access-control-allow-origin"], origin);
    }
    let answer = preflight(listed.addr, "http://c.example:3").await;
    assert!(answer.headers.get("access-control-allow-origin").is_none());
    listed.stop().await;
}

#[tokio::test]
async fn the_help_text_at_the_root_does_not_echo_the_host_header() {
    let empty = tempfile::tempdir().expect("temp dir");
    let server = start(&["--dist", empty.path().to_str().expect("UTF-8 path")]).await;
    let answer = fetch(
        server.addr,
        Request::get("/")
            .header("host", "evil.example")
            .body(Full::default())
            .expect("request"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(!answer.body.contains("evil.example"), "{}", answer.body);
    assert!(
        answer
            .body
            .contains(&format!("curl -N http://{}/stream", server.addr)),
        "{}",
        answer.body
    );
    server.stop().await;
}

#[tokio::test]
async fn a_target_without_a_path_is_answered_not_dropped() {
    // Found by fuzzing: the authority form (meant for CONNECT) with a Host
    // that is not ASCII reached a path filter that cannot read a target
    // without a path, and the connection's task panicked.
    let server = start(&[]).await;
    let mut raw = common::raw::Raw::connect(server.addr).await;
    raw.send(b"GET sxt HTTP/1.1\r\nhost: \xa9\r\n\r\n").await;
    let answer = raw.response().await;
    assert!((200..500).contains(&answer.status), "{}", answer.status);
    // And the server goes on.
    assert_eq!(common::get(server.addr, "/healthz").await.status, 200);
    server.stop().await;
}
