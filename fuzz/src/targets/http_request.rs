//! Whole raw HTTP requests into the real server, running in this process.
//!
//! `server::run` starts once (its own multi-thread runtime) on
//! `127.0.0.1:0` with `--ticker-interval off --history 100 --max-lag 100
//! --keep-alive 1s` and a `--dist` folder holding a small page; beside that
//! folder, outside it, lies a file the server must never serve. Each input
//! is written to a fresh connection, which is half-closed once the answer
//! begins, or after 30 ms without one (see `exchange` for why not at once).
//!
//! Property:
//! - the server never panics (libFuzzer's panic hook makes a panic in any
//!   of its tasks a crash) and never stops: `run` has not returned, and it
//!   answers `GET /healthz` with 200 `"status":"ok"` at the first input and
//!   every 64 inputs after;
//! - whatever it answers starts with `HTTP/1.1 ` (`HTTP/1.0 ` for a request
//!   that names that version), a status from 100 to 599 and a space;
//!   otherwise it closes the connection without an answer (within 10 s of
//!   the half-close). An event stream's answer is read up to its headers,
//!   as it never ends on its own;
//! - no answer holds the file outside `--dist` unless the input itself
//!   holds its text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// The content of the file outside `--dist`.
const SECRET: &[u8] = b"outside-dist-7d1f0c9e4b2a";

/// How long a connection may stay open with nothing answered.
const NO_ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// `GET /healthz` is checked at the first input and every this many after.
const HEALTH_EVERY: u64 = 64;

/// How long to wait for an answer to begin before half-closing.
const HALF_CLOSE_AFTER: Duration = Duration::from_millis(30);

/// How long an answer may take to end once it has begun.
const ANSWER_END_LIMIT: Duration = Duration::from_secs(2);

/// The server, started by the first input.
struct Harness {
    runtime: Runtime,
    addr: SocketAddr,
    server: JoinHandle<()>,
    inputs: AtomicU64,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// A `--dist` folder with a page and an asset, and the file beside it.
fn site() -> PathBuf {
    let root = std::env::temp_dir().join("sse-fuzz-http");
    let dist = root.join("dist");
    std::fs::create_dir_all(&dist).expect("create the dist folder");
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>fuzz</title>\n",
    )
    .expect("write index.html");
    std::fs::write(dist.join("app.js"), "console.log('fuzz');\n").expect("write app.js");
    std::fs::write(root.join("secret.txt"), SECRET).expect("write secret.txt");
    dist
}

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let dist = site();
        let argv = [
            "server",
            "--addr",
            "127.0.0.1:0",
            "--ticker-interval",
            "off",
            "--history",
            "100",
            "--max-lag",
            "100",
            "--keep-alive",
            "1s",
            "--dist",
            dist.to_str().expect("a UTF-8 temporary path"),
        ];
        let settings = <server::Config as clap::Parser>::try_parse_from(argv)
            .expect("valid server arguments")
            .into_settings()
            .expect("usable server settings");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(settings.addr))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        let server = runtime.spawn(async move {
            server::run(listener, settings, std::future::pending())
                .await
                .expect("the server runs");
        });
        Harness {
            runtime,
            addr,
            server,
            inputs: AtomicU64::new(0),
        }
    })
}

/// What came back on one connection.
struct Answer {
    bytes: Vec<u8>,
    /// The server closed (or reset) the connection.
    closed: bool,
}

/// Whether `bytes` hold the complete headers of an event stream's answer.
fn stream_headers_done(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    text.find("content-type: text/event-stream")
        .is_some_and(|at| text[at..].contains("\r\n\r\n"))
}

/// Writes `request` on a fresh connection, then reads the answer until the
/// server closes, an event stream's headers are in, or the time limits
/// pass.
///
/// The connection is half-closed as soon as the answer begins, or after
/// `half_close_after` without one (an incomplete request then ends), not
/// at once: hyper, with half-closed connections off as the server leaves
/// them, drops a request whose client has half-closed before the answer.
async fn exchange(addr: SocketAddr, request: &[u8], half_close_after: Duration) -> Answer {
    let mut stream = timeout(NO_ANSWER_LIMIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect to the server");
    // Closing with a reset leaves no TIME_WAIT behind, so a long run does
    // not use up the loopback's ephemeral ports.
    stream.set_zero_linger().expect("SO_LINGER 0");
    // The server may answer and close before it has read everything (a bad
    // request line): a failed write still leaves an answer to read.
    let mut half_closed = stream.write_all(request).await.is_err();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let mut since = Instant::now();
    let mut first_byte = None;
    loop {
        let deadline = match (first_byte, half_closed) {
            (Some(at), _) => at + ANSWER_END_LIMIT,
            (None, false) => since + half_close_after,
            (None, true) => since + NO_ANSWER_LIMIT,
        };
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) if !half_closed => {
                let _ = stream.shutdown().await;
                half_closed = true;
                since = Instant::now();
            }
            Err(_) => {
                return Answer {
                    bytes,
                    closed: false,
                }
            }
            Ok(Ok(0) | Err(_)) => {
                return Answer {
                    bytes,
                    closed: true,
                }
            }
            Ok(Ok(n)) => {
                first_byte.get_or_insert_with(Instant::now);
                bytes.extend_from_slice(&buf[..n]);
                if stream_headers_done(&bytes) {
                    return Answer {
                        bytes,
                        closed: false,
                    };
                }
                if !half_closed {
                    let _ = stream.shutdown().await;
                    half_closed = true;
                }
            }
        }
    }
}

/// `HTTP/1.1 ` (or `HTTP/1.0 `, which hyper answers a request line of
/// that version with, when `http10` says the request has one), a status
/// from 100 to 599, a space.
fn status_line_ok(bytes: &[u8], http10: bool) -> bool {
    let version_ok = bytes.starts_with(b"HTTP/1.1 ") || (http10 && bytes.starts_with(b"HTTP/1.0 "));
    match bytes.get(9..13) {
        Some([a, b, c, b' ']) if version_ok => {
            (b'1'..=b'5').contains(a) && b.is_ascii_digit() && c.is_ascii_digit()
        }
        _ => false,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn check_health(harness: &Harness) {
    let answer = harness.runtime.block_on(exchange(
        harness.addr,
        b"GET /healthz HTTP/1.1\r\nhost: fuzz\r\nconnection: close\r\n\r\n",
        // The server closes after this answer: no need to half-close.
        NO_ANSWER_LIMIT,
    ));
    let text = String::from_utf8_lossy(&answer.bytes);
    assert!(
        text.starts_with("HTTP/1.1 200 ") && text.contains(r#""status":"ok""#),
        "GET /healthz answered {text:?}"
    );
}

/// Checks the property on one input, a raw request; starts the server
/// at the first.
pub fn run(request: &[u8]) {
    let harness = harness();
    let n = harness.inputs.fetch_add(1, Ordering::Relaxed);
    if n.is_multiple_of(HEALTH_EVERY) {
        check_health(harness);
    }

    let answer = harness
        .runtime
        .block_on(exchange(harness.addr, request, HALF_CLOSE_AFTER));
    assert!(!harness.server.is_finished(), "the server stopped");
    let shown = String::from_utf8_lossy(&answer.bytes);
    if answer.bytes.is_empty() {
        assert!(
            answer.closed,
            "no answer, and the connection still open {NO_ANSWER_LIMIT:?} after the request"
        );
    } else {
        assert!(
            status_line_ok(&answer.bytes, contains(request, b"HTTP/1.0")),
            "the answer does not start with a status line: {shown:?}"
        );
    }
    assert!(
        !contains(&answer.bytes, SECRET) || contains(request, SECRET),
        "served the file outside --dist: {shown:?}"
    );
}
