//! HTTPS and HTTP/2 over real TCP, with a certificate each test makes with
//! rcgen: h2 negotiated by ALPN, many streams on one connection, a
//! stalled stream reset alone while its siblings go on, the certificate
//! swapped on SIGHUP under open streams (a bad one refused), GOAWAY at
//! shutdown, the handshake deadline, HTTP/1.1 over TLS, cleartext HTTP/2
//! with `--h2c`, and the stream limit.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{make_cert, start, PATIENCE};
use h2::client::SendRequest;
use h2::RecvStream;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use shared::{Item, Parser, ServerEvent};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

fn der(cert: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(cert).expect("PEM certificate")
}

/// A client trusting `certs` only, offering `alpn`.
fn connector(certs: &[&Path], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(der(cert)).expect("a trust anchor");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(addr: SocketAddr, connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::IpAddress(addr.ip().into());
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("TLS handshake")
}

/// An HTTP/2 connection over `io`: a 16 KiB window per stream, 1 MiB for
/// the connection. The connection's task returns how it ended.
async fn h2_on<T>(
    io: T,
) -> (
    SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .initial_connection_window_size(1 << 20)
        .handshake::<_, Bytes>(io)
        .await
        .expect("h2 handshake");
    (send, tokio::spawn(connection))
}

fn uri(addr: SocketAddr, scheme: &str, path: &str) -> String {
    format!("{scheme}://{addr}{path}")
}

/// Sends a request with `body` on the connection; the response.
async fn h2_request(
    send: &mut SendRequest<Bytes>,
    request: http::request::Builder,
    body: Option<&str>,
) -> http::Response<RecvStream> {
    let mut ready = send.clone().ready().await.expect("connection ready");
    let (response, mut stream) = ready
        .send_request(request.body(()).expect("request"), body.is_none())
        .expect("send request");
    if let Some(body) = body {
        stream
            .send_data(Bytes::from(body.to_owned()), true)
            .expect("send body");
    }
    tokio::time::timeout(PATIENCE, response)
        .await
        .expect("response in time")
        .expect("response")
}

/// A whole body, releasing capacity as it goes.
async fn read_all(mut body: RecvStream) -> String {
    let mut out = Vec::new();
    while let Some(chunk) = tokio::time::timeout(PATIENCE, body.data())
        .await
        .expect("body in time")
    {
        let chunk = chunk.expect("body chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).expect("utf-8")
}

async fn h2_get(send: &mut SendRequest<Bytes>, base: &str, path: &str) -> (u16, String) {
    let response = h2_request(send, http::Request::get(format!("{base}{path}")), None).await;
    let status = response.status().as_u16();
    (status, read_all(response.into_body()).await)
}

async fn h2_publish(send: &mut SendRequest<Bytes>, base: &str, topic: &str, message: &str) {
    let body = serde_json::json!({ "message": message, "topic": topic }).to_string();
    let response = h2_request(
        send,
        http::Request::post(format!("{base}/publish")).header("content-type", "application/json"),
        Some(&body),
    )
    .await;
    let status = response.status().as_u16();
    let text = read_all(response.into_body()).await;
    assert_eq!(status, 200, "{text}");
}

async fn h2_metric(send: &mut SendRequest<Bytes>, base: &str, name: &str) -> u64 {
    let (_, text) = h2_get(send, base, "/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .parse()
        .expect("a number")
}

/// An open stream over HTTP/2, read through the shared parser.
struct H2Sse {
    body: RecvStream,
    parser: Parser,
    items: std::collections::VecDeque<Item>,
}

impl H2Sse {
    async fn open(send: &mut SendRequest<Bytes>, base: &str, path: &str) -> H2Sse {
        let response = h2_request(send, http::Request::get(format!("{base}{path}")), None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        H2Sse {
            body: response.into_body(),
            parser: Parser::new(),
            items: Default::default(),
        }
    }

    /// The next ordinary event (skipping comments, retry and `position`),
    /// or `None` when the stream ended cleanly. A reset fails the test.
    async fn next_message(&mut self) -> Option<ServerEvent> {
        loop {
            while let Some(item) = self.items.pop_front() {
                if let Item::Event(event) = item {
                    if event.event == "message" {
                        return Some(serde_json::from_str(&event.data).expect("ServerEvent"));
                    }
                }
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.data())
                .await
                .expect("stream data in time")?
                .expect("stream data, not a reset");
            let _ = self.body.flow_control().release_capacity(chunk.len());
            let mut out = Vec::new();
            self.parser.feed(&chunk, &mut out);
            self.items.extend(out);
        }
    }
}

#[tokio::test]
async fn h2_is_negotiated_and_many_streams_share_one_connection() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = make_cert(dir.path(), "server");
    let server = start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let base = uri(server.addr, "https", "");
    let tls = tls_connect(server.addr, &connector(&[&cert], &[b"h2", b"http/1.1"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, _connection) = h2_on(tls).await;

    let mut streams = Vec::new();
    for _ in 0..12 {
        streams.push(H2Sse::open(&mut send, &base, "/stream?topic=news").await);
    }
    h2_publish(&mut send, &base, "news", "to all twelve").await;
    for stream in &mut streams {
        let event = stream.next_message().await.expect("an event");
        assert_eq!(event.message, "to all twelve");
    }
    // One connection carries the twelve streams, the publish and this.
    assert_eq!(h2_metric(&mut send, &base, "sse_connections").await, 1);
    assert_eq!(h2_metric(&mut send, &base, "sse_subscribers").await, 12);
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_stream_is_reset_alone_while_its_siblings_go_on() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = make_cert(dir.path(), "server");
    let server = start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--max-lag",
        "5",
    ])
    .await;
    let base = uri(server.addr, "https", "");
    let tls = tls_connect(server.addr, &connector(&[&cert], &[b"h2"])).await;
    let (mut send, connection) = h2_on(tls).await;

    // Both on one connection; `stalled` is never read, so its 16 KiB
    // window is never given back.
    let stalled = h2_request(
        &mut send,
        http::Request::get(format!("{base}/stream?topic=load")),
        None,
    )
    .await;
    let mut sibling = H2Sse::open(&mut send, &base, "/stream?topic=load").await;

    let message = "x".repeat(1000);
    for i in 0..100 {
        h2_publish(&mut send, &base, "load", &format!("{i} {message}")).await;
        let event = sibling.next_message().await.expect("the sibling receives");
        assert!(event.message.starts_with(&format!("{i} ")));
    }

    // The reaper resets the stalled stream: what reached the client before
    // comes first, then RST_STREAM.
    let mut body = stalled.into_body();
    let mut received = 0;
    let reset = loop {
        match tokio::time::timeout(PATIENCE, body.data())
            .await
            .expect("the stalled stream is reset in time")
        {
            Some(Ok(chunk)) => received += chunk.len(),
            Some(Err(error)) => break error,
            None => panic!("the stalled stream ended instead of being reset"),
        }
    };
    assert_eq!(reset.reason(), Some(h2::Reason::CANCEL), "{reset}");
    assert!(received <= 16 * 1024, "no more than its window: {received}");

    // The sibling and the connection go on.
    h2_publish(&mut send, &base, "load", "after the reset").await;
    let event = sibling.next_message().await.expect("the sibling receives");
    assert_eq!(event.message, "after the reset");
    assert_eq!(
        h2_metric(&mut send, &base, "sse_subscribers_dropped_total").await,
        1
    );
    assert_eq!(h2_metric(&mut send, &base, "sse_subscribers").await, 1);
    assert_eq!(h2_metric(&mut send, &base, "sse_connections").await, 1);
    assert!(!connection.is_finished());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_sends_goaway_and_ends_the_streams() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = make_cert(dir.path(), "server");
    let server = start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--shutdown-grace",
        "5s",
    ])
    .await;
    let base = uri(server.addr, "https", "");
    let tls = tls_connect(server.addr, &connector(&[&cert], &[b"h2"])).await;
    let (mut send, connection) = h2_on(tls).await;
    let mut first = H2Sse::open(&mut send, &base, "/stream").await;
    let mut second = H2Sse::open(&mut send, &base, "/stream").await;

    let stopped = tokio::spawn(server.stop());
    // Each stream ends cleanly (END_STREAM, no reset)...
    assert!(first.next_message().await.is_none());
    assert!(second.next_message().await.is_none());
    // ...and the connection closes after the server's GOAWAY.
    let ended = tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("connection ends in time")
        .expect("connection task");
    assert!(ended.is_ok(), "{ended:?}");
    let refused = send.clone().ready().await;
    assert!(
        refused.as_ref().is_err_and(|e| e.is_go_away()
            && e.is_remote()
            && e.reason() == Some(h2::Reason::NO_ERROR)),
        "no new stream after GOAWAY: {:?}",
        refused.err()
    );
    stopped.await.expect("server stops");
}

#[tokio::test]
async fn http1_over_tls_still_works_and_frees_a_stream_whose_client_left() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = make_cert(dir.path(), "server");
    let server = start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let tls_h1 = connector(&[&cert], &[b"http/1.1"]);
    let tls = tls_connect(server.addr, &tls_h1).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let response = sender
        .send_request(
            hyper::Request::get("/stream")
                .header("host", server.addr.to_string())
                .body(Full::<Bytes>::default())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_11);
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert!(first
        .into_data()
        .expect("data")
        .starts_with(b": stream open"));

    let trust = connector(&[&cert], &[b"h2"]);
    assert_eq!(tls_subscribers(server.addr, &trust).await, 1);
    // The client goes away (close_notify, then FIN): the subscriber is freed.
    drop(body);
    drop(sender);
    conn.abort();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tls_subscribers(server.addr, &trust).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriber not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

/// `sse_subscribers`, asked on a connection of its own.
async fn tls_subscribers(addr: SocketAddr, connector: &TlsConnector) -> u64 {
    let tls = tls_connect(addr, connector).await;
    let (mut send, _connection) = h2_on(tls).await;
    h2_metric(&mut send, &uri(addr, "https", ""), "sse_subscribers").await
}

#[tokio::test]
async fn a_handshake_not_complete_in_time_is_cut_and_counted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = make_cert(dir.path(), "server");
    let server = start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        // Room for a handshake on a loaded machine; the silent ones wait
        // this long.
        "--header-timeout",
        "1s",
    ])
    .await;
    // TCP open, no ClientHello: closed at the deadline.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(PATIENCE, silent.read(&mut byte))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // A client that is not speaking TLS at all.
    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut rest)).await;

    // An h2 connection that opens no stream is closed too.
    let tls = tls_connect(server.addr, &connector(&[&cert], &[b"h2"])).await;
    let (_send, connection) = h2_on(tls).await;
    tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("an idle h2 connection is closed in time")
        .expect("connection task")
        .ok();

    let tls = tls_connect(server.addr, &connector(&[&cert], &[b"h2"])).await;
    let (mut send, _connection) = h2_on(tls).await;
    let base = uri(server.addr, "https", "");
    assert_eq!(
        h2_metric(
            &mut send,
            &base,
            "sse_refused_total{reason=\"tls_handshake\"}"
        )
        .await,
        2
    );
    assert_eq!(
        h2_metric(
            &mut send,
            &base,
            "sse_refused_total{reason=\"header_timeout\"}"
        )
        .await,
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn h2c_serves_http2_by_prior_knowledge_and_http1_beside_it() {
    let server = start(&["--h2c", "--h2-max-streams", "2"]).await;
    let base = uri(server.addr, "http", "");
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let (mut send, _connection) = h2_on(tcp).await;
    let mut stream = H2Sse::open(&mut send, &base, "/stream").await;
    // The server's SETTINGS carry --h2-max-streams.
    assert_eq!(send.current_max_send_streams(), 2);
    h2_publish(&mut send, &base, "default", "over h2c").await;
    assert_eq!(
        stream.next_message().await.expect("an event").message,
        "over h2c"
    );
    // Plain HTTP/1.1 on the same port, as before.
    let answer = common::get(server.addr, "/healthz").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        common::metric(server.addr, "sse_subscribers").await,
        1,
        "the h2c stream is still open"
    );
    server.stop().await;
}

/// The server binary with TLS, as a child process.
struct Binary {
    addr: SocketAddr,
    child: tokio::process::Child,
    /// Its log lines (stderr).
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Binary {
    async fn start(cert: &Path, key: &Path) -> Binary {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--addr", "127.0.0.1:0", "--ticker-interval", "off"])
            .args(["--dist", "/nonexistent"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the server binary");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("server: {line}");
                let _ = tx.send(line);
            }
        });
        let addr = common::listening_addr(&mut child, "https").await;
        Binary { addr, child, log }
    }

    /// Waits for a log line containing `text`.
    async fn logged(&mut self, text: &str) {
        let wait = async {
            while let Some(line) = self.log.recv().await {
                if line.contains(text) {
                    return;
                }
            }
            panic!("the server exited without logging {text:?}");
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no log line {text:?} in time"));
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// The leaf certificate a new connection is shown.
async fn served_cert(addr: SocketAddr, connector: &TlsConnector) -> CertificateDer<'static> {
    let tls = tls_connect(addr, connector).await;
    tls.get_ref().1.peer_certificates().expect("certificates")[0].clone()
}

#[tokio::test]
async fn sighup_swaps_the_certificate_while_streams_stay_open() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = make_cert(dir.path(), "live");
    let (old_cert, _) = make_cert(dir.path(), "old");
    std::fs::copy(&cert, &old_cert).expect("keep the first certificate");
    let (new_cert, new_key) = make_cert(dir.path(), "new");
    let mut server = Binary::start(&cert, &key).await;
    let base = uri(server.addr, "https", "");
    let trust = connector(&[&old_cert, &new_cert], &[b"h2"]);
    assert_eq!(served_cert(server.addr, &trust).await, der(&old_cert));

    let tls = tls_connect(server.addr, &trust).await;
    let (mut send, connection) = h2_on(tls).await;
    let mut stream = H2Sse::open(&mut send, &base, "/stream").await;

    // A new pair in place, then SIGHUP: new connections get it.
    std::fs::copy(&new_cert, &cert).expect("new certificate");
    std::fs::copy(&new_key, &key).expect("new key");
    server.signal("HUP");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while served_cert(server.addr, &trust).await != der(&new_cert) {
        assert!(tokio::time::Instant::now() < deadline, "not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The stream opened before goes on, on its connection.
    h2_publish(&mut send, &base, "default", "after the reload").await;
    assert_eq!(
        stream.next_message().await.expect("an event").message,
        "after the reload"
    );

    // A key that is not the certificate's: logged, the current pair stays.
    std::fs::copy(&old_cert, &cert).expect("mismatched certificate");
    server.signal("HUP");
    server.logged("keeping the current one").await;
    // Nor one that is not a key at all.
    std::fs::write(&key, "not a key").expect("garbage key");
    server.signal("HUP");
    server.logged("keeping the current one").await;
    assert_eq!(served_cert(server.addr, &trust).await, der(&new_cert));
    h2_publish(&mut send, &base, "default", "still here").await;
    assert_eq!(
        stream.next_message().await.expect("an event").message,
        "still here"
    );
    assert!(!connection.is_finished());
}

#[tokio::test]
async fn cookie_fields_split_by_an_http2_client_are_joined() {
    let secret = "h2 cookie secret";
    let server = start(&["--h2c", "--jwt-secret", secret, "--private", "vip"]).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "exp": exp, "sse": { "subscribe": ["vip"] } }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    let base = uri(server.addr, "http", "");
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let (mut send, _connection) = h2_on(tcp).await;
    // RFC 9113, section 8.2.3: one field per cookie.
    let split = http::Request::get(format!("{base}/stream?topic=vip"))
        .header("cookie", "theme=dark")
        .header("cookie", format!("sse_token={token}"))
        .header("cookie", "lang=en");
    let response = h2_request(&mut send, split, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // Without the token's field, the same request needs a token.
    let without = http::Request::get(format!("{base}/stream?topic=vip"))
        .header("cookie", "theme=dark")
        .header("cookie", "lang=en");
    let response = h2_request(&mut send, without, None).await;
    assert_eq!(response.status(), 401);
    server.stop().await;
}
