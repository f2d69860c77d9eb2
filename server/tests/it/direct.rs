//! `GET /stream` as a connection's first plain HTTP/1.1 request, answered
//! below hyper (server/src/connection/direct.rs), over raw TCP: the same
//! bytes as hyper's answer, events in the chunked coding, the last chunk
//! at shutdown, a client that leaves; and what is handed to hyper instead
//! (half a head, a pipelined request, HEAD, POST, HTTP/1.0, a refusal) is
//! answered as before, and counted once.
//!
//! hyper answers a `GET /stream` that is not a connection's first request,
//! or has a body (`content-length: 0`): the tests compare those answers
//! with the direct one.

use crate::common;

use std::net::SocketAddr;

use common::raw::Raw;
use common::{metric, publish, start, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection, read by hand: heads, and the chunks of a body.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn connect(addr: SocketAddr) -> Wire {
        Wire {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads more; `false` when the server closed the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk))
            .await
            .expect("the server answers or closes in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The bytes up to `end`, which they include, taken off the buffer.
    async fn until(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                return self.buf.drain(..at + end.len()).collect();
            }
            assert!(
                self.fill().await,
                "closed before {:?}: {:?}",
                String::from_utf8_lossy(end),
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// The next response head, its date's value replaced by `DATE`.
    async fn head(&mut self) -> String {
        let head = String::from_utf8(self.until(b"\r\n\r\n").await).expect("ASCII head");
        without_date(&head)
    }

    /// The next chunk of a chunked body (empty for the last one).
    async fn chunk(&mut self) -> Vec<u8> {
        let line = self.until(b"\r\n").await;
        let size = std::str::from_utf8(&line[..line.len() - 2]).expect("a chunk size");
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        while self.buf.len() < size + 2 {
            assert!(self.fill().await, "closed in the middle of a chunk");
        }
        let chunk: Vec<u8> = self.buf.drain(..size).collect();
        assert_eq!(self.buf.drain(..2).collect::<Vec<_>>(), b"\r\n");
        chunk
    }

    /// Body bytes, chunk after chunk, until they hold `text`.
    async fn body_until(&mut self, text: &str) -> String {
        let mut body = String::new();
        while !body.contains(text) {
            let chunk = self.chunk().await;
            assert!(
                !chunk.is_empty(),
                "the stream ended before {text:?}: {body}"
            );
            body.push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
        }
        body
    }

    /// Waits until the server closes the connection; what came before.
    async fn rest(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }
}

/// `head` with the value of its `date` field replaced by `DATE`.
fn without_date(head: &str) -> String {
    head.split("\r\n")
        .map(|line| {
            if line.to_ascii_lowercase().starts_with("date: ") {
                "date: DATE"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Waits until a metric reaches `value`.
async fn until_metric(addr: SocketAddr, name: &str, value: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(addr, name).await != value {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {value}"
        );
        tokio::task::yield_now().await;
    }
}

/// The head of the direct answer to a first `GET /stream` with `fields`,
/// and the opening chunk after it.
async fn direct_head(addr: SocketAddr, fields: &str) -> String {
    let mut wire = Wire::connect(addr).await;
    wire.send(format!("GET /stream HTTP/1.1\r\nhost: test\r\n{fields}\r\n").as_bytes())
        .await;
    let head = wire.head().await;
    let opening = wire.chunk().await;
    assert!(opening.starts_with(b": stream open\n"), "{opening:?}");
    head
}

/// hyper's heads for the same request: as a connection's second request,
/// and with `content-length: 0`.
async fn hyper_heads(addr: SocketAddr, fields: &str) -> [String; 2] {
    let mut second = Wire::connect(addr).await;
    second
        .send(b"GET /time HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    second.until(b"}").await;
    second
        .send(format!("GET /stream HTTP/1.1\r\nhost: test\r\n{fields}\r\n").as_bytes())
        .await;
    let mut with_length = Wire::connect(addr).await;
    with_length
        .send(
            format!("GET /stream HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n{fields}\r\n")
                .as_bytes(),
        )
        .await;
    [second.head().await, with_length.head().await]
}

#[tokio::test]
async fn the_direct_head_is_hypers_byte_for_byte() {
    let origins = [
        "",
        "origin: http://a.example\r\n",
        "origin: http://b.example\r\n",
        "origin: http://a.example\r\nlast-event-id: 1-2\r\nconnection: keep-alive\r\n",
    ];
    for cors in [
        &[][..],
        &["--cors-origin", "http://a.example"],
        &["--cors-origin", "*"],
    ] {
        let server = start(cors).await;
        for fields in origins {
            let direct = direct_head(server.addr, fields).await;
            assert!(direct.starts_with("HTTP/1.1 200 OK\r\n"), "{direct}");
            assert!(
                direct.contains("\r\ntransfer-encoding: chunked\r\n"),
                "{direct}"
            );
            for hyper in hyper_heads(server.addr, fields).await {
                assert_eq!(direct, hyper, "{cors:?} {fields:?}");
            }
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn events_reach_a_raw_client_in_the_chunked_coding() {
    let server = start(&[]).await;
    let mut wire = Wire::connect(server.addr).await;
    wire.send(b"GET /stream?topic=a HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    assert!(wire
        .head()
        .await
        .contains("content-type: text/event-stream"));
    wire.body_until("event: position").await;
    publish(server.addr, "b", "not for a").await;
    publish(server.addr, "a", "first for a").await;
    let body = wire.body_until("first for a").await;
    assert!(!body.contains("not for a"), "{body}");
    publish(server.addr, "a", "second for a").await;
    wire.body_until("second for a").await;
    assert_eq!(metric(server.addr, "sse_subscribers").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_a_direct_stream_with_the_last_chunk_and_closes() {
    let server = start(&[]).await;
    let mut wire = Wire::connect(server.addr).await;
    wire.send(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    wire.head().await;
    wire.body_until("event: position").await;
    server.stop().await;
    assert!(wire.chunk().await.is_empty(), "the last chunk");
    assert!(wire.rest().await.is_empty(), "closed after it");
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_subscriber() {
    let server = start(&[]).await;
    let mut wire = Wire::connect(server.addr).await;
    wire.send(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    wire.head().await;
    until_metric(server.addr, "sse_subscribers", 1).await;
    drop(wire);
    until_metric(server.addr, "sse_subscribers", 0).await;
    // Only the connection asking is left.
    until_metric(server.addr, "sse_connections", 1).await;
    server.stop().await;
}

#[tokio::test]
async fn half_a_stream_head_then_silence_gets_the_header_timeout_answer() {
    let server = start(&["--header-timeout", "200ms"]).await;
    let mut answers = Vec::new();
    for half in [
        &b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-half: "[..],
        b"GET /stream HTTP/1.1\r\nhost: test\r\nx-half: ",
        b"GET /str",
    ] {
        let mut wire = Wire::connect(server.addr).await;
        wire.send(half).await;
        answers.push(wire.rest().await);
    }
    assert_eq!(answers[1], answers[0]);
    assert_eq!(answers[2], answers[0]);
    until_metric(
        server.addr,
        "sse_refused_total{reason=\"header_timeout\"}",
        3,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_request_pipelined_after_get_stream_is_served_by_hyper() {
    let server = start(&[]).await;
    let mut wire = Wire::connect(server.addr).await;
    wire.send(
        b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\nGET /time HTTP/1.1\r\nhost: test\r\n\r\n",
    )
    .await;
    let head = wire.head().await;
    assert_eq!(head, direct_head(server.addr, "").await);
    wire.body_until("event: position").await;
    publish(server.addr, "t", "pipelined").await;
    wire.body_until("pipelined").await;
    server.stop().await;
}

#[tokio::test]
async fn head_post_and_http_1_0_on_the_stream_are_answered_as_before() {
    let server = start(&[]).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send(b"HEAD /stream HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    let head = raw.response().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("transfer-encoding"), None);
    // No body came: the next request's answer is next on the connection.
    assert_eq!(raw.get("/time").await.status, 200);
    assert_eq!(metric(server.addr, "sse_subscribers").await, 0);

    let mut raw = Raw::connect(server.addr).await;
    raw.send(b"POST /stream HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n\r\n")
        .await;
    let post = raw.response().await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(post.json()["error"], "method_not_allowed");

    let mut wire = Wire::connect(server.addr).await;
    wire.send(b"GET /stream HTTP/1.0\r\n\r\n").await;
    let head = wire.head().await;
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(wire.until(b"stream open").await.ends_with(b": stream open"));
    server.stop().await;
}

#[tokio::test]
async fn refusals_are_answered_by_the_route_and_counted_once() {
    let server = start(&[
        "--jwt-secret",
        "correct horse battery staple",
        "--private",
        "vip",
        "--max-subscribers",
        "1",
    ])
    .await;
    let addr = server.addr;
    let mut raw = Raw::connect(addr).await;
    let bad = raw.get("/stream?topic=no%20spaces").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "invalid_topic");

    let mut raw = Raw::connect(addr).await;
    let private = raw.get("/stream?topic=vip").await;
    assert_eq!(private.status, 401);
    assert_eq!(
        metric(addr, "sse_refused_total{reason=\"unauthorized\"}").await,
        1
    );

    let mut first = Wire::connect(addr).await;
    first
        .send(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    first.head().await;
    let mut raw = Raw::connect(addr).await;
    let full = raw.get("/stream").await;
    assert_eq!(full.status, 503);
    assert_eq!(full.json()["error"], "too_many_subscribers");
    assert_eq!(metric(addr, "sse_subscribers_refused_total").await, 1);
    server.stop().await;
}
