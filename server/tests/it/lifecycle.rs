//! Limits and lifecycle over real TCP: slow subscribers, the subscriber
//! limit, CORS, the page at `/`, shutdown of the library and of the binary.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use bytes::Bytes;
use common::{fetch, get, metric, publish, start, Sse, PATIENCE};
use http_body_util::Full;
use hyper::Request;
use shared::Item;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_dropped_and_holds_no_one_back() {
    let server = start(&["--history", "200", "--max-lag", "20"]).await;
    let addr = server.addr;
    // The slow one: asks for the stream, then never reads.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(format!("GET /stream HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut fast = Sse::open(addr, "/stream", None).await;
    fast.next_item().await;
    // Wait until both are registered before publishing.
    while metric(addr, "sse_subscribers").await < 2 {
        tokio::task::yield_now().await;
    }

    let payload = "x".repeat(32 * 1024);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let published = loop {
        let published = publish(addr, "bulk", &payload).await;
        let (_, message) = fast.next_message().await;
        assert_eq!(
            message.seq, published,
            "the fast subscriber keeps up, in order"
        );
        if metric(addr, "sse_subscribers_dropped_total").await >= 1 {
            break published;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow subscriber was never dropped ({published} events)"
        );
    };
    assert_eq!(metric(addr, "sse_subscribers_dropped_total").await, 1);

    // The slow connection was closed: draining it reaches its end.
    let mut sink = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(PATIENCE, slow.read(&mut sink))
            .await
            .expect("the slow connection ends")
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert_eq!(metric(addr, "sse_subscribers").await, 1);
    // And the others go on.
    let next = publish(addr, "bulk", "after").await;
    assert_eq!(next, published + 1);
    assert_eq!(fast.next_message().await.1.seq, next);
    server.stop().await;
}

#[tokio::test]
async fn over_the_subscriber_limit_is_503_with_retry_after() {
    let server = start(&["--max-subscribers", "1"]).await;
    let mut first = Sse::open(server.addr, "/stream", None).await;
    first.next_item().await;
    let refused = get(server.addr, "/stream").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.headers["retry-after"], "5");
    assert_eq!(refused.json()["error"], "too_many_subscribers");
    assert_eq!(
        refused.json()["message"],
        "the server holds its maximum of 1 subscribers; retry later"
    );
    assert_eq!(
        metric(server.addr, "sse_subscribers_refused_total").await,
        1
    );
    drop(first);
    while metric(server.addr, "sse_subscribers").await != 0 {
        tokio::task::yield_now().await;
    }
    let mut again = Sse::open(server.addr, "/stream", None).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.next_item().await,
        Some(Item::Comment(" stream open".into()))
    );
    server.stop().await;
}

#[tokio::test]
async fn cors_allows_the_configured_origins_only() {
    let server = start(&["--cors-origin", "http://127.0.0.1:8080"]).await;
    let preflight = fetch(
        server.addr,
        Request::options("/publish")
            .header("origin", "http://127.0.0.1:8080")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(Full::default())
            .expect("request"),
    )
    .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "http://127.0.0.1:8080"
    );
    assert!(preflight.headers["access-control-allow-methods"]
        .to_str()
        .expect("ascii")
        .contains("POST"));

    for (origin, allowed) in [
        ("http://127.0.0.1:8080", true),
        ("http://evil.example", false),
    ] {
        let answer = fetch(
            server.addr,
            Request::post("/publish")
                .header("origin", origin)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"message\":\"x\"}")))
                .expect("request"),
        )
        .await;
        assert_eq!(
            answer.headers.get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_root_serves_the_built_page_or_says_how_to_build_it() {
    let without = start(&["--dist", "/nonexistent/dist"]).await;
    let answer = get(without.addr, "/").await;
    assert_eq!(answer.status, 200);
    assert!(answer
        .body
        .contains(&format!("curl -N http://{}/stream", without.addr)));
    assert!(answer.body.contains("trunk build --release"));
    without.stop().await;

    let dist = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dist.path().join("index.html"),
        "<!doctype html><title>page</title>",
    )
    .expect("write");
    std::fs::write(dist.path().join("app.js"), "console.log(1)").expect("write");
    let dist_arg = dist.path().to_str().expect("utf-8 path");
    let with = start(&["--dist", dist_arg]).await;
    let page = get(with.addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/html"));
    assert_eq!(page.body, "<!doctype html><title>page</title>");
    let script = get(with.addr, "/app.js").await;
    assert_eq!(script.body, "console.log(1)");
    with.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_cleanly() {
    let server = start(&[]).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut sse = Sse::open(server.addr, "/stream", None).await;
        sse.next_item().await;
        streams.push(sse);
    }
    // One more that never reads must not keep the server alive.
    let mut stalled = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stalled
        .write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("request");
    publish(server.addr, "t", "last words").await;
    server.stop().await;
    for sse in &mut streams {
        let rest = sse.until_end().await;
        assert!(
            rest.iter()
                .any(|i| matches!(i, Item::Event(e) if e.data.contains("last words"))),
            "{rest:?}"
        );
    }
}

#[test]
fn the_binary_prints_its_address_and_exits_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--addr", "127.0.0.1:0", "--ticker-interval", "20ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server binary");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let addr: std::net::SocketAddr = url
        .strip_prefix("http://")
        .expect("http url")
        .parse()
        .expect("address");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut sse = Sse::open(addr, "/stream", None).await;
        let (_, message) = sse.next_message().await;
        assert!(message.message.starts_with("Data pushed from server: ("));
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        // The open stream ends cleanly rather than being cut.
        sse.until_end().await;
    });
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "{exit:?}");
}
