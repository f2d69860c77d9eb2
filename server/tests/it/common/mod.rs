//! Test support: the real server on 127.0.0.1:0 and small HTTP/SSE clients
//! over real TCP.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod cluster;
pub mod link;
pub mod raw;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use server::Config;
use shared::{
    Item, ParsedEvent, Parser, ResetNotice, ServerEvent, StreamPosition, POSITION_EVENT,
    RESET_EVENT,
};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A safety net so a broken server fails a test instead of hanging it; the
/// tests never wait on a timer to synchronize.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Reads the server binary's first line, `listening on SCHEME://ADDR`,
/// from `child`'s piped stdout, within [`PATIENCE`], and returns the address.
///
/// # Panics
/// When the line does not come in time or is not that line.
pub async fn listening_addr(child: &mut tokio::process::Child, scheme: &str) -> SocketAddr {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let stdout = child.stdout.take().expect("a piped stdout");
    let line = tokio::time::timeout(PATIENCE, BufReader::new(stdout).lines().next_line())
        .await
        .expect("the server starts in time")
        .expect("the server's output")
        .expect("a first line");
    line.strip_prefix(&format!("listening on {scheme}://"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address")
}

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Starts the server with `args` (after `--addr 127.0.0.1:0`; the ticker is
/// off unless `args` turn it on).
pub async fn start(args: &[&str]) -> TestServer {
    let mut argv = vec![
        "server",
        "--addr",
        "127.0.0.1:0",
        "--ticker-interval",
        "off",
    ];
    argv.extend_from_slice(args);
    let settings = <Config as clap::Parser>::try_parse_from(&argv)
        .expect("valid test arguments")
        .into_settings()
        .expect("usable test settings");
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server::run(listener, settings, async {
            let _ = stopped.await;
        })
        .await
        .expect("server runs");
    });
    TestServer {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn stop(mut self) {
        self.stop.take().expect("running").send(()).ok();
        tokio::time::timeout(PATIENCE, self.task.take().expect("running"))
            .await
            .expect("server stops")
            .expect("server task ends cleanly");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Sends one request on a fresh connection.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Response<Incoming> {
    try_send(addr, request).await.expect("a response")
}

/// Sends one request on a fresh connection; an error when the server cannot
/// be reached or cuts the connection.
pub async fn try_send(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut request = request;
    request
        .headers_mut()
        .entry(hyper::header::HOST)
        .or_insert_with(|| addr.to_string().parse().expect("host header"));
    tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .expect("answer in time")
        .map_err(|e| format!("request: {e}"))
}

/// A whole response: status, headers, body text.
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn fetch(addr: SocketAddr, request: Request<Full<Bytes>>) -> Answer {
    let response = send(addr, request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).expect("utf-8 body"),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    fetch(
        addr,
        Request::get(path).body(Full::default()).expect("request"),
    )
    .await
}

/// `POST /publish` with a JSON content type.
pub async fn publish_raw(addr: SocketAddr, body: &str) -> Answer {
    fetch(
        addr,
        Request::post("/publish")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request"),
    )
    .await
}

/// Publishes `body` and returns the JSON of its `200` answer; `None` when
/// the server could not be reached (killed, restarting) or answered
/// otherwise (an outage's `503`), so a load test can count refusals.
pub async fn try_publish_json(
    addr: SocketAddr,
    body: &serde_json::Value,
) -> Option<serde_json::Value> {
    let request = Request::post("/publish")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = try_send(addr, request).await.ok()?;
    if response.status() != 200 {
        return None;
    }
    let body = response.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

/// Publishes and returns the answer's seq.
pub async fn publish(addr: SocketAddr, topic: &str, message: &str) -> u64 {
    let body = serde_json::json!({ "message": message, "topic": topic }).to_string();
    let answer = publish_raw(addr, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["seq"].as_u64().expect("seq")
}

/// Polls `/healthz` until it answers 200: the event log is reachable and a
/// publish would be tried.
pub async fn await_healthy(addr: SocketAddr) {
    await_health(addr, 200).await;
}

/// Polls `/healthz` until it answers `status`.
pub async fn await_health(addr: SocketAddr, status: u16) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while get(addr, "/healthz").await.status != status {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz of {addr} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one metric from `/metrics`.
pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = get(addr, "/metrics").await.body;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
        .parse()
        .expect("a number")
}

/// An open `/stream`, read through the shared parser.
pub struct Sse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    body: Incoming,
    parser: Parser,
    items: VecDeque<Item>,
    /// The last `position` event's id that `next_event` skipped over.
    pub last_position: Option<String>,
}

impl Sse {
    pub async fn open(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = Request::get(path);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        Self::open_request(addr, request).await
    }

    /// Opens a stream with the request `request` builds (extra headers).
    pub async fn open_request(addr: SocketAddr, request: hyper::http::request::Builder) -> Sse {
        let response = send(
            addr,
            request
                .header("accept", "text/event-stream")
                .header("accept-encoding", "gzip, br")
                .body(Full::default())
                .expect("request"),
        )
        .await;
        Self::from_response(response)
    }

    /// The stream of a response already received (over any connection).
    pub fn from_response(response: Response<Incoming>) -> Sse {
        Sse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.into_body(),
            parser: Parser::new(),
            items: VecDeque::new(),
            last_position: None,
        }
    }

    /// The next item, or `None` when the stream ended.
    pub async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Some(item);
            }
            // A connection cut by the server's end (a killed process) ends
            // the stream like a clean close does.
            let Ok(frame) = tokio::time::timeout(PATIENCE, self.body.frame())
                .await
                .expect("stream item in time")?
            else {
                return None;
            };
            if let Ok(data) = frame.into_data() {
                let mut out = Vec::new();
                self.parser.feed(&data, &mut out);
                self.items.extend(out);
            }
        }
    }

    /// The next dispatched event, skipping comments, retry and `position`
    /// events (the last one's id is kept in `last_position`).
    /// Fails the test when none comes within [`PATIENCE`], even while the
    /// server keeps the stream alive with comments.
    pub async fn next_event(&mut self) -> ParsedEvent {
        let next = async {
            loop {
                match self.next_item().await.expect("stream still open") {
                    Item::Event(event) if event.event == POSITION_EVENT => {
                        self.last_position = Some(decode_position(&event));
                    }
                    Item::Event(event) => return event,
                    Item::Comment(_) | Item::Retry(_) => {}
                }
            }
        };
        tokio::time::timeout(PATIENCE, next)
            .await
            .expect("an event in time (the stream sent only comments, retry or position events)")
    }

    /// The next `position` event's id; an ordinary event or notice before it
    /// fails the test.
    pub async fn next_position(&mut self) -> String {
        let next = async {
            loop {
                match self.next_item().await.expect("stream still open") {
                    Item::Event(event) if event.event == POSITION_EVENT => {
                        let id = decode_position(&event);
                        self.last_position = Some(id.clone());
                        return id;
                    }
                    Item::Event(event) => panic!("expected a position event: {event:?}"),
                    Item::Comment(_) | Item::Retry(_) => {}
                }
            }
        };
        tokio::time::timeout(PATIENCE, next)
            .await
            .expect("a position event in time (the stream sent only comments or retry)")
    }

    /// The next ordinary event, decoded.
    pub async fn next_message(&mut self) -> (ParsedEvent, ServerEvent) {
        let event = self.next_event().await;
        assert_eq!(
            event.event, "message",
            "expected an ordinary event: {event:?}"
        );
        let message = serde_json::from_str(&event.data).expect("ServerEvent JSON");
        (event, message)
    }

    /// The next dispatched event, which must be a reset notice, decoded.
    pub async fn next_reset(&mut self) -> (ParsedEvent, ResetNotice) {
        let event = self.next_event().await;
        assert_eq!(
            event.event, RESET_EVENT,
            "expected a reset notice: {event:?}"
        );
        let notice = serde_json::from_str(&event.data).expect("ResetNotice JSON");
        (event, notice)
    }

    /// Reads until the server ends the stream.
    pub async fn until_end(&mut self) -> Vec<Item> {
        let mut rest = Vec::new();
        while let Some(item) = self.next_item().await {
            rest.push(item);
        }
        rest
    }
}

/// Checks a `position` event (its id line and its JSON agree) and returns
/// its id.
pub fn decode_position(event: &ParsedEvent) -> String {
    let position: StreamPosition = serde_json::from_str(&event.data).expect("StreamPosition JSON");
    assert_eq!(
        position.id, event.last_event_id,
        "a position's id line and JSON agree"
    );
    position.id
}

/// A certificate and its key for 127.0.0.1 (and `localhost`), made with
/// rcgen in `dir` under `name`: a self-signed leaf (rustls refuses a CA
/// certificate as the server's).
pub fn make_cert(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let made = rcgen::generate_simple_self_signed(["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("a certificate");
    std::fs::write(&cert, made.cert.pem()).expect("write the certificate");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write the key");
    (cert, key)
}
