//! The limits over real TCP: what a client may hold in time (header, idle
//! and body deadlines), bytes (request head size) and count (connections),
//! what it gets past them, and that streams are never timed out.

use crate::common;

use std::process::Command;

use common::raw::Raw;
use common::{metric, publish, start, Sse, PATIENCE};
use shared::Item;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value of a metric, read over a connection the test already holds
/// (a new one may be over the connection cap).
async fn metric_over(raw: &mut Raw, name: &str) -> u64 {
    let answer = raw.get("/metrics").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name} in\n{}", answer.body))
        .parse()
        .expect("a number")
}

/// Waits until a metric reaches `value`: the server counts a closed
/// connection once it has let go of it, a moment after the client saw it.
async fn until_metric(addr: std::net::SocketAddr, name: &str, value: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(addr, name).await != value {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {value}"
        );
        tokio::task::yield_now().await;
    }
}

/// Waits for a keep-alive comment on a quiet stream: a clock that ticks
/// once per `--keep-alive`.
async fn next_keep_alive(sse: &mut Sse) {
    loop {
        match sse.next_item().await.expect("the stream stays open") {
            Item::Comment(text) if text != " stream open" => return,
            _ => {}
        }
    }
}

#[tokio::test]
async fn half_a_header_then_nothing_is_closed_at_the_header_timeout() {
    let server = start(&["--header-timeout", "200ms"]).await;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut raw = Raw::connect(server.addr).await;
        raw.send(b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-half: ")
            .await;
        stalled.push(raw);
    }
    // And one that sends nothing at all.
    stalled.push(Raw::connect(server.addr).await);
    for raw in &mut stalled {
        raw.until_closed().await;
    }
    until_metric(
        server.addr,
        "sse_refused_total{reason=\"header_timeout\"}",
        51,
    )
    .await;
    // Only the connection asking is left.
    until_metric(server.addr, "sse_connections", 1).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let server = start(&["--idle-timeout", "200ms"]).await;
    let mut raw = Raw::connect(server.addr).await;
    assert_eq!(raw.get("/healthz").await.status, 200);
    raw.until_closed().await;
    until_metric(server.addr, "sse_idle_closed_total", 1).await;
    assert_eq!(
        metric(server.addr, "sse_refused_total{reason=\"header_timeout\"}").await,
        0
    );
    server.stop().await;
}

#[tokio::test]
async fn between_requests_the_idle_timeout_applies_then_the_header_timeout_from_the_first_byte() {
    let server = start(&[
        "--header-timeout",
        "300ms",
        "--idle-timeout",
        "60s",
        "--keep-alive",
        "1s",
    ])
    .await;
    let mut raw = Raw::connect(server.addr).await;
    assert_eq!(raw.get("/healthz").await.status, 200);
    // A clock: a stream's keep-alive comes after a second of quiet, more
    // than the header timeout.
    let mut clock = Sse::open(server.addr, "/stream", None).await;
    next_keep_alive(&mut clock).await;
    // The idle keep-alive connection was not closed meanwhile.
    assert_eq!(raw.get("/healthz").await.status, 200);
    // A next request that starts and stalls gets the header timeout.
    raw.send(b"GET /healthz HTTP/1.1\r\n").await;
    raw.until_closed().await;
    until_metric(
        server.addr,
        "sse_refused_total{reason=\"header_timeout\"}",
        1,
    )
    .await;
    assert_eq!(metric(server.addr, "sse_idle_closed_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_stream_is_never_closed_by_the_timeouts() {
    let server = start(&[
        "--header-timeout",
        "200ms",
        "--idle-timeout",
        "200ms",
        "--body-timeout",
        "200ms",
        "--keep-alive",
        "500ms",
    ])
    .await;
    let mut sse = Sse::open(server.addr, "/stream", None).await;
    assert_eq!(sse.status, 200);
    for _ in 0..3 {
        next_keep_alive(&mut sse).await;
    }
    let seq = publish(server.addr, "news", "still here").await;
    let (_, message) = sse.next_message().await;
    assert_eq!((message.seq, message.message.as_str()), (seq, "still here"));
    assert_eq!(metric(server.addr, "sse_idle_closed_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_head_over_max_header_bytes_is_431() {
    let server = start(&["--max-header-bytes", "2048"]).await;
    let mut fits = Raw::connect(server.addr).await;
    let padding = "x".repeat(1500);
    fits.send(
        format!("GET /healthz HTTP/1.1\r\nhost: test\r\nx-pad: {padding}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(fits.response().await.status, 200);

    let mut over = Raw::connect(server.addr).await;
    let padding = "x".repeat(2100);
    over.send(
        format!("GET /healthz HTTP/1.1\r\nhost: test\r\nx-pad: {padding}\r\n\r\n").as_bytes(),
    )
    .await;
    let answer = over.response().await;
    assert_eq!(answer.status, 431, "{answer:?}");
    over.until_closed().await;
    until_metric(
        server.addr,
        "sse_refused_total{reason=\"header_too_large\"}",
        1,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_200_kb_head_is_431_by_default() {
    let server = start(&[]).await;
    let padding = "x".repeat(200 * 1024);
    let request = format!("GET /healthz HTTP/1.1\r\nhost: test\r\nx-pad: {padding}\r\n\r\n");
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (mut read, mut write) = tcp.into_split();
    // The answer comes before the client is done sending: write alongside,
    // and let the write fail once the server has closed.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(request.as_bytes()).await;
        write
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, read.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time");
    assert!(
        answer.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let _ = writer.await;
    server.stop().await;
}

#[tokio::test]
async fn a_publish_body_that_stops_half_way_is_408_and_publishes_nothing() {
    let server = start(&["--body-timeout", "200ms"]).await;
    let addr = server.addr;
    let mut watcher = Sse::open(addr, "/stream", None).await;
    assert_eq!(
        watcher.next_item().await,
        Some(Item::Comment(" stream open".into()))
    );
    let expected = serde_json::json!({
        "error": "request_timeout",
        "message": "the body did not arrive within 200ms",
    });

    // With a Content-Length.
    let mut raw = Raw::connect(addr).await;
    raw.send(
        b"POST /publish HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"message\":",
    )
    .await;
    let answer = raw.response().await;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(answer.json(), expected);
    raw.until_closed().await;

    // Chunked, stopping after a chunk.
    let mut raw = Raw::connect(addr).await;
    raw.send(
        b"POST /publish HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\n\r\nb\r\n{\"message\":\r\n",
    )
    .await;
    let answer = raw.response().await;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.json(), expected);
    raw.until_closed().await;

    assert_eq!(
        metric(addr, "sse_refused_total{reason=\"body_timeout\"}").await,
        2
    );
    assert_eq!(metric(addr, "sse_events_published_total").await, 0);
    let seq = publish(addr, "news", "after").await;
    assert_eq!(seq, 1);
    assert_eq!(watcher.next_message().await.1.message, "after");
    server.stop().await;
}

#[tokio::test]
async fn over_max_connections_is_503_with_retry_after_until_one_closes() {
    let server = start(&["--max-connections", "3"]).await;
    let addr = server.addr;
    let mut first = Raw::connect(addr).await;
    assert_eq!(first.get("/healthz").await.status, 200);
    let mut second = Raw::connect(addr).await;
    assert_eq!(second.get("/healthz").await.status, 200);
    // A stream counts like any connection.
    let mut stream = Sse::open(addr, "/stream", None).await;
    assert_eq!(
        stream.next_item().await,
        Some(Item::Comment(" stream open".into()))
    );
    assert_eq!(metric_over(&mut first, "sse_connections").await, 3);

    for refused in 1..=2 {
        let mut over = Raw::connect(addr).await;
        let answer = over.get("/healthz").await;
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(answer.header("retry-after"), Some("5"));
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(
            answer.json(),
            serde_json::json!({
                "error": "too_many_connections",
                "message": "the server holds its maximum of 3 connections; retry later",
            })
        );
        over.until_closed().await;
        assert_eq!(
            metric_over(
                &mut second,
                "sse_refused_total{reason=\"too_many_connections\"}"
            )
            .await,
            refused
        );
    }
    // Clients within the cap are served all along.
    let health = second.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(metric_over(&mut first, "sse_connections").await, 3);

    // Once one closes, a new connection is served again.
    drop(stream);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric_over(&mut first, "sse_connections").await != 2 {
        assert!(tokio::time::Instant::now() < deadline, "never freed");
        tokio::task::yield_now().await;
    }
    let mut again = Raw::connect(addr).await;
    assert_eq!(again.get("/healthz").await.status, 200);
    assert_eq!(metric_over(&mut again, "sse_connections").await, 3);
    assert_eq!(metric_over(&mut again, "sse_connections_total").await, 4);
    server.stop().await;
}

#[test]
fn bad_options_are_refused_before_listening() {
    let hard = server::limits::hard_open_files_limit();
    let too_many = server::limits::connections_allowed(hard) + 1;
    let too_many = too_many.to_string();
    for (args, says) in [
        (&["--keep-alive", "0s"][..], "must be more than 0"),
        (&["--header-timeout", "0ms"], "must be more than 0"),
        (&["--body-timeout", "0s"], "must be more than 0"),
        (&["--idle-timeout", "0s"], "must be more than 0"),
        (&["--max-header-bytes", "100"], "--max-header-bytes"),
        (&["--max-connections", "0"], "--max-connections"),
        (
            &["--max-connections", too_many.as_str()],
            "is more than the open-files limit allows",
        ),
        (&["--cors-origin", "http://a.example/"], "has a path"),
        (
            &["--cors-origin", "*,http://a.example"],
            "give it alone, not with other origins",
        ),
        (&["--publish-token", "tok en"], "printable ASCII"),
        (
            &["--idempotency-keys", "10", "--max-batch", "11"],
            "--idempotency-keys (10) must not be smaller than --max-batch (11)",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--addr", "127.0.0.1:0", "--ticker-interval", "off"])
            .args(args)
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            output.stdout.is_empty(),
            "{args:?}: printed {:?}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
