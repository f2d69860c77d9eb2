//! The files in deploy/, against the real binary and real tools:
//! `example.toml` is every option with its default and passes
//! `check-config`; `sse.service` passes `systemd-analyze verify` and has
//! the directives it promises; `nginx.conf` runs in Debian's nginx in front
//! of two servers on one Redis, where a client over HTTPS streams, resumes
//! on the other server when its own stops, and gets each event while the
//! connection stays open (nothing held in nginx's buffers).

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::cluster::{free_port, Redis, ServerProcess};
use common::{metric, Sse, PATIENCE};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_rustls::TlsConnector;

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// `server check-config ARGS`, with no `SSE_*` variables; its report.
fn check_config(args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("check-config")
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .output()
        .expect("run server check-config");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The report's options: key to (value, source).
fn report_rows(report: &str) -> BTreeMap<String, (String, String)> {
    report
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (key, rest) = line.split_once(" = ").expect("key = value");
            let (value, source) = rest.rsplit_once("  # ").expect("value  # source");
            (
                key.trim().to_owned(),
                (value.trim().to_owned(), source.trim().to_owned()),
            )
        })
        .collect()
}

/// The example's `key = value` lines, commented out or not: key to
/// (value as written, commented).
fn example_lines(example: &str) -> BTreeMap<String, (String, bool)> {
    let mut lines = BTreeMap::new();
    for line in example.lines() {
        let (commented, line) = match line.strip_prefix("# ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        if key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            let old = lines.insert(key.to_owned(), (value.to_owned(), commented));
            assert!(old.is_none(), "deploy/example.toml has {key} twice");
        }
    }
    lines
}

/// A TOML value as check-config shows it: strings unquoted, lists joined.
fn shown(value: &str) -> String {
    value
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|v| v.trim_matches('"'))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_example_config_is_every_option_with_its_default_and_passes_check_config() {
    let example = example_lines(&read("example.toml"));
    let (ok, defaults, stderr) = check_config(&[]);
    assert!(ok, "{stderr}");
    let path = deploy("example.toml");
    let (ok, with_file, stderr) = check_config(&["--config", path.to_str().unwrap()]);
    assert!(ok, "check-config refuses deploy/example.toml: {stderr}");
    let defaults = report_rows(&defaults);
    let with_file = report_rows(&with_file);
    for (key, (default, source)) in &defaults {
        let (written, commented) = example
            .get(key)
            .unwrap_or_else(|| panic!("deploy/example.toml does not name {key}"));
        let (value, from) = &with_file[key];
        if *commented {
            assert_ne!(from.split(',').next(), Some("file"), "{key}");
        } else {
            assert!(from.starts_with("file, line "), "{key}: {from}");
        }
        assert_eq!(value, default, "{key}: the example's value is the default");
        if source == "default" {
            assert_eq!(
                &shown(written),
                default,
                "{key}: the example shows the default"
            );
        }
    }
    for key in example.keys() {
        assert!(
            defaults.contains_key(key),
            "deploy/example.toml names {key}, no option"
        );
    }
}

#[test]
fn the_unit_has_what_a_service_needs_and_verifies() {
    let unit = read("sse.service");
    for directive in [
        "DynamicUser=yes",
        "StateDirectory=sse",
        "Environment=SSE_DATA_DIR=/var/lib/sse",
        "LimitNOFILE=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/local/bin/sse-server --config /etc/sse/sse.toml",
        "Environment=SSE_LOG_FORMAT=json",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(directive)),
            "deploy/sse.service has no {directive}"
        );
    }
    // What it starts is a valid command line: the example as its config.
    let example = deploy("example.toml");
    let (ok, _, stderr) = check_config(&[
        "--config",
        example.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    assert!(ok, "{stderr}");
    let Ok(found) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("no systemd-analyze on this machine: deploy/sse.service is not verified");
        return;
    };
    assert!(found.status.success());
    // verify checks that the programs exist: the binary under test stands
    // in for the installed one.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("sse.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/sse-server", env!("CARGO_BIN_EXE_server")),
    )
    .unwrap();
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warns:\n{stderr}"
    );
}

/// Debian's nginx, one process in the foreground, with deploy/nginx.conf as
/// its site (the upstreams, the listen address and the certificate put in
/// for the test).
struct Nginx {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

/// `site` with `from` replaced by `to`, where `from` must occur once, so
/// that a change in deploy/nginx.conf breaks this test loudly instead of
/// testing something else.
fn replace_once(site: &str, from: &str, to: &str) -> String {
    assert_eq!(
        site.matches(from).count(),
        1,
        "deploy/nginx.conf should have {from:?} once"
    );
    site.replace(from, to)
}

impl Nginx {
    async fn start(upstreams: [SocketAddr; 2], cert: &Path, key: &Path) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut site = read("nginx.conf");
        for (from, to) in [
            (
                "server 127.0.0.1:3000 ",
                format!("server {} ", upstreams[0]),
            ),
            (
                "server 127.0.0.1:3001 ",
                format!("server {} ", upstreams[1]),
            ),
            (
                "listen 443 ssl http2;",
                format!("listen 127.0.0.1:{port} ssl http2;"),
            ),
            ("    listen [::]:443 ssl http2;\n", String::new()),
            (
                "/etc/ssl/certs/sse.example.com.pem",
                cert.display().to_string(),
            ),
            (
                "/etc/ssl/private/sse.example.com.key",
                key.display().to_string(),
            ),
        ] {
            site = replace_once(&site, from, &to);
        }
        std::fs::write(dir.path().join("site.conf"), site).unwrap();
        let temp = |name: &str| dir.path().join(name).display().to_string();
        let main = format!(
            "daemon off;\n\
             master_process off;\n\
             pid {pid};\n\
             error_log stderr warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             access_log off;\n\
             client_body_temp_path {body};\n\
             proxy_temp_path {proxy};\n\
             fastcgi_temp_path {fastcgi};\n\
             uwsgi_temp_path {uwsgi};\n\
             scgi_temp_path {scgi};\n\
             include {site};\n\
             }}\n",
            pid = temp("nginx.pid"),
            body = temp("body"),
            proxy = temp("proxy"),
            fastcgi = temp("fastcgi"),
            uwsgi = temp("uwsgi"),
            scgi = temp("scgi"),
            site = temp("site.conf"),
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "nginx is not installed: this test runs Debian's nginx in front of the \
                     servers (`apt-get install nginx`, or scripts/setup.sh --for-tests)"
                )
            });
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            port,
            child,
            _dir: dir,
        };
        nginx.await_listening().await;
        nginx
    }

    /// Connects until nginx accepts (it prints nothing when ready), failing
    /// if it exits.
    async fn await_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            if let Some(status) = self.child.try_wait().expect("nginx status") {
                panic!("nginx exited with {status} (its messages are above)");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A browser-like client of nginx: HTTPS (HTTP/1.1), trusting the test's
/// certificate, one connection per request.
struct Client {
    port: u16,
    tls: TlsConnector,
}

impl Client {
    fn new(port: u16, cert: &Path) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(cert).expect("PEM certificate"))
            .expect("a trust anchor");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Client {
            port,
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    async fn send(
        &self,
        request: hyper::http::request::Builder,
        body: Bytes,
    ) -> Response<Incoming> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to nginx");
        let name = ServerName::try_from("localhost").unwrap();
        let tls = self.tls.connect(name, tcp).await.expect("TLS with nginx");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        let request = request
            .header("host", "localhost")
            .body(Full::new(body))
            .expect("request");
        tokio::time::timeout(PATIENCE, sender.send_request(request))
            .await
            .expect("an answer in time")
            .expect("an answer")
    }

    async fn publish(&self, message: &str) -> u64 {
        let body = serde_json::json!({ "topic": "deploy", "message": message }).to_string();
        let response = self
            .send(
                Request::post("/publish").header("content-type", "application/json"),
                Bytes::from(body),
            )
            .await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        answer["seq"].as_u64().expect("seq")
    }

    async fn stream(&self, last_event_id: Option<&str>) -> Sse {
        let mut request =
            Request::get("/stream?topic=deploy").header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = self.send(request, Bytes::new()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "through nginx"
        );
        Sse::from_response(response)
    }
}

/// Publishes `message` and awaits it on `stream`, which must be open: the
/// servers write nothing else (no keep-alive within the test), so an event
/// held in nginx's buffers would never arrive. Returns its id.
async fn publish_and_see(
    client: &Client,
    stream: &mut Sse,
    message: &str,
    seen: &mut Vec<u64>,
) -> String {
    let seq = client.publish(message).await;
    let (event, data) = stream.next_message().await;
    assert_eq!((data.seq, data.message.as_str()), (seq, message));
    seen.push(seq);
    event.last_event_id
}

#[tokio::test]
async fn nginx_in_front_of_two_servers_streams_resumes_on_the_other_and_does_not_buffer() {
    let site = read("nginx.conf");
    for directive in [
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "proxy_set_header Last-Event-ID $http_last_event_id;",
    ] {
        assert!(
            site.contains(directive),
            "deploy/nginx.conf has no {directive}"
        );
    }
    let timeout = site
        .lines()
        .find_map(|l| l.trim().strip_prefix("proxy_read_timeout "))
        .and_then(|v| humantime::parse_duration(v.trim_end_matches(';')).ok())
        .expect("a proxy_read_timeout");
    assert!(
        timeout > Duration::from_secs(15),
        "read timeout above --keep-alive's default"
    );

    let redis = Redis::start().await;
    // No keep-alive comments while the test runs: every byte on the stream
    // is an event the test published.
    let quiet = ["--keep-alive", "1h"];
    let servers = vec![
        ServerProcess::start(&redis, &quiet).await,
        ServerProcess::start(&redis, &quiet).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::make_cert(dir.path(), "nginx");
    let nginx = Nginx::start([servers[0].addr, servers[1].addr], &cert, &key).await;
    let client = Client::new(nginx.port, &cert);

    let mut seen = Vec::new();
    let mut stream = client.stream(None).await;
    let mut last = String::new();
    for n in 0..3 {
        last = publish_and_see(&client, &mut stream, &format!("before {n}"), &mut seen).await;
    }
    // Stop the server that holds the stream; the stream ends.
    let mut holder = None;
    for (i, server) in servers.iter().enumerate() {
        if metric(server.addr, "sse_subscribers").await == 1 {
            holder = Some(i);
        }
    }
    let holder = holder.expect("one server holds the stream");
    let mut servers = servers;
    let other = servers.remove(1 - holder);
    let stopped = servers.pop().expect("the holder");
    assert_eq!(metric(other.addr, "sse_subscribers").await, 0);
    stopped.terminate().await;
    stream.until_end().await;
    // Published while the client is away, through nginx to the other one.
    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(client.publish(&format!("while away {n}")).await);
    }
    let mut resumed = client.stream(Some(&last)).await;
    for (n, seq) in missed.iter().enumerate() {
        let (_, data) = resumed.next_message().await;
        assert_eq!((data.seq, data.message), (*seq, format!("while away {n}")));
        seen.push(*seq);
    }
    assert_eq!(metric(other.addr, "sse_subscribers").await, 1);
    for n in 0..3 {
        publish_and_see(&client, &mut resumed, &format!("after {n}"), &mut seen).await;
    }
    let first = seen[0];
    assert_eq!(
        seen,
        (first..first + 9).collect::<Vec<_>>(),
        "every event once, in order, across the stop"
    );
    drop(resumed);
    other.terminate().await;
    drop(nginx);
}
