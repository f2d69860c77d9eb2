//! The log on stderr in both formats, from the real binary at debug level:
//! the request line's documented fields, every line of `json` a JSON
//! object, and no secret, token or `access_token` in either format, with
//! tokens sent in the query, a cookie and the `Authorization` header.

use crate::common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{fetch, Sse};
use http_body_util::Full;
use hyper::Request;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const JWT_SECRET: &str = "jwt-secret-never-logged";
const PUBLISH_TOKEN: &str = "publish-token-never-logged";
const METRICS_TOKEN: &str = "metrics-token-never-logged";

/// The server binary with its stderr collected.
struct Logged {
    addr: SocketAddr,
    child: Child,
    log: JoinHandle<String>,
}

impl Logged {
    async fn start(format: &str, secret_file: &std::path::Path) -> Logged {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--addr", "127.0.0.1:0", "--ticker-interval", "off"])
            .args(["--dist", "/nonexistent", "--log-format", format])
            .arg("--jwt-secret-file")
            .arg(secret_file)
            .args(["--private", "vip", "--publish-token", PUBLISH_TOKEN])
            .env("SSE_METRICS_TOKEN", METRICS_TOKEN)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the server binary");
        let stderr = child.stderr.take().expect("stderr");
        let log = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut all = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let addr = common::listening_addr(&mut child, "http").await;
        Logged { addr, child, log }
    }

    /// SIGTERM, then everything the server logged.
    async fn stop(mut self) -> String {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let exit = tokio::time::timeout(common::PATIENCE, self.child.wait())
            .await
            .expect("stops in time")
            .expect("wait");
        assert!(exit.success(), "{exit}");
        self.log.await.expect("the log")
    }
}

fn token(exp_from_now: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = now.saturating_add_signed(exp_from_now);
    encode(
        &Header::default(),
        &json!({ "sub": "reader", "exp": exp, "sse": { "subscribe": ["vip"] } }),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    )
    .expect("encodes")
}

/// Requests that carry every kind of secret, accepted and refused.
async fn requests_with_secrets(addr: SocketAddr, good: &str, expired: &str) {
    let stream = |path: String, cookie: Option<String>| {
        let mut request = Request::get(path);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request
    };
    let mut open = Sse::open_request(
        addr,
        stream(
            format!("/stream?topic=vip&access_token={good}"),
            Some(format!("sse_token={expired}; other=1")),
        ),
    )
    .await;
    assert_eq!(open.status, 200);
    let refused = Sse::open_request(
        addr,
        stream(format!("/stream?topic=vip&access_token={expired}"), None),
    )
    .await;
    assert_eq!(refused.status, 401);
    let by_cookie = Sse::open_request(
        addr,
        stream(
            "/stream?topic=vip".into(),
            Some(format!("sse_token={good}")),
        ),
    )
    .await;
    assert_eq!(by_cookie.status, 200);
    for (bearer, status) in [(PUBLISH_TOKEN, 200), ("wrong-publish-token", 401)] {
        let request = Request::post("/publish?access_token=in-a-publish-query")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {bearer}"))
            .body(Full::new(Bytes::from(
                json!({ "topic": "vip", "message": "hello" }).to_string(),
            )))
            .unwrap();
        assert_eq!(fetch(addr, request).await.status, status);
    }
    // The event reached the open stream: the request lines were written.
    let (_, event) = open.next_message().await;
    assert_eq!(event.message, "hello");
    for (bearer, status) in [(METRICS_TOKEN, 200), ("wrong-metrics-token", 401)] {
        let request = Request::get("/metrics")
            .header("authorization", format!("Bearer {bearer}"))
            .body(Full::default())
            .unwrap();
        assert_eq!(fetch(addr, request).await.status, status);
    }
}

/// No secret, no token and no `access_token` anywhere in `log`.
fn assert_no_secret(log: &str, tokens: &[&str]) {
    let mut secrets = vec![
        JWT_SECRET,
        PUBLISH_TOKEN,
        METRICS_TOKEN,
        "wrong-publish-token",
        "wrong-metrics-token",
        "in-a-publish-query",
        "access_token",
        "sse_token=",
    ];
    // A token's signature part alone would give it away too.
    secrets.extend(tokens.iter().map(|t| t.rsplit('.').next().unwrap()));
    for secret in secrets {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

#[tokio::test]
async fn the_text_log_has_request_lines_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, format!("{JWT_SECRET}\n")).unwrap();
    let server = Logged::start("text", &secret_file).await;
    let (good, expired) = (token(3600), token(-3600));
    requests_with_secrets(server.addr, &good, &expired).await;
    let log = server.stop().await;
    assert_no_secret(&log, &[&good, &expired]);
    let request = log
        .lines()
        .find(|l| {
            l.contains(" request ") && l.contains("path=\"/stream\"") && l.contains("status=200")
        })
        .unwrap_or_else(|| panic!("no request line of the stream in\n{log}"));
    for field in ["remote=127.0.0.1:", "method=GET", "elapsed_ms="] {
        assert!(request.contains(field), "{field} in {request}");
    }
    assert!(
        log.lines().any(|l| l.contains(" request ")
            && l.contains("path=\"/publish\"")
            && l.contains("status=401")),
        "a refused request is logged at debug:\n{log}"
    );
}

#[tokio::test]
async fn the_json_log_is_one_object_a_line_with_stable_fields_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, format!("{JWT_SECRET}\n")).unwrap();
    let server = Logged::start("json", &secret_file).await;
    let (good, expired) = (token(3600), token(-3600));
    requests_with_secrets(server.addr, &good, &expired).await;
    let log = server.stop().await;
    assert_no_secret(&log, &[&good, &expired]);
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
    }
    let request = |path: &str, status: u64| {
        lines
            .iter()
            .find(|l| l["message"] == "request" && l["path"] == path && l["status"] == status)
    };
    let stream = request("/stream", 200).unwrap_or_else(|| panic!("no stream request in\n{log}"));
    assert_eq!(stream["level"], "INFO");
    assert_eq!(stream["method"], "GET");
    assert_eq!(stream["target"], "server::serve");
    assert!(
        stream["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{stream}"
    );
    assert!(stream["elapsed_ms"].is_number(), "{stream}");
    let refused =
        request("/publish", 401).unwrap_or_else(|| panic!("no refused publish in\n{log}"));
    assert_eq!(refused["level"], "DEBUG");
    assert_eq!(refused["method"], "POST");
}
