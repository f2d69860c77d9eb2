//! HTTPS next to plain HTTP/1.1: idle memory per subscriber and fan-out
//! latency of this server over plain HTTP/1.1, HTTP/1.1 over TLS, HTTP/2
//! over TLS (one connection per subscriber, and 100 streams per
//! connection, as a browser's tabs share one), and of nginx + nchan over
//! plain HTTP/1.1 and behind TLS (`listen … ssl`, HTTP/1.1: nchan's
//! EventSource over HTTP/2 is reported broken, slact/nchan#576).
//!
//! Every target is started fresh, pinned to CPU 0 with `taskset`; run this
//! tool on the other core:
//!
//! ```sh
//! cargo build --release -p server -p bench
//! taskset -c 1 target/release/tls-bench --subscribers 2000
//! ```
//!
//! Each target: `--subscribers` streams are opened and left idle for 2 s
//! (resident memory before and after, over the subscriber count, is the
//! memory per idle subscriber); then `--rate` events per second for
//! `--seconds`, each carrying its send time, and every delivery's latency
//! is recorded. Prints a Markdown table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser as _;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use shared::{Item, Parser};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The options.
#[derive(Debug, clap::Parser)]
#[command(
    name = "tls-bench",
    about = "HTTPS/HTTP2 next to plain HTTP/1.1 and nchan"
)]
struct Args {
    /// Idle subscribers per target.
    #[arg(long, default_value_t = 2000)]
    subscribers: usize,
    /// Events per second during the fan-out.
    #[arg(long, default_value_t = 5)]
    rate: u32,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Streams per HTTP/2 connection in the multiplexed target.
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    /// Only these targets (comma separated), e.g. `ours,ours-h2`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The repository root (for target/release/server and the configs).
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Ours,
    Nchan,
}

/// How subscribers talk to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// HTTP/1.1, one connection per subscriber.
    H1,
    /// HTTP/1.1 over TLS.
    H1Tls,
    /// HTTP/2 over TLS, this many streams per connection.
    H2Tls(usize),
}

#[derive(Debug, Clone)]
struct Target {
    name: &'static str,
    server: Server,
    wire: Wire,
}

/// The send time carried in a message: nanoseconds since this process's
/// start.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Makes a certificate for 127.0.0.1 in `dir`.
fn make_certificate(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("openssl")?;
    if !status.success() {
        bail!("openssl req failed");
    }
    Ok((cert, key))
}

fn connector(cert: &Path, alpn: &[u8]) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(cert)?)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A started target.
struct Running {
    child: tokio::process::Child,
    addr: SocketAddr,
    tls: Option<TlsConnector>,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start(target: &Target, root: &Path) -> Result<Running> {
    let dir = tempfile::Builder::new().prefix("tls-bench-").tempdir()?;
    // nginx's workers run as another user.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let port = free_port()?;
    let tls = target.wire != Wire::H1;
    let (cert, key) = make_certificate(dir.path())?;
    let mut command = tokio::process::Command::new("taskset");
    command.args(["-c", "0"]);
    match target.server {
        Server::Ours => {
            command
                .arg(root.join("target/release/server"))
                .args(["--addr", &format!("127.0.0.1:{port}")])
                .args(["--ticker-interval", "off", "--history", "10000"])
                .args(["--max-subscribers", "30000", "--dist"])
                .arg(dir.path().join("no-dist"))
                .env("RUST_LOG", "warn");
            if tls {
                command
                    .arg("--tls-cert")
                    .arg(&cert)
                    .arg("--tls-key")
                    .arg(&key);
            }
        }
        Server::Nchan => {
            let template = std::fs::read_to_string(root.join("bench/configs/nchan.conf"))?;
            let listen = format!("listen 127.0.0.1:{port} backlog=1024;");
            let mut config = template
                .replace("{dir}", &dir.path().display().to_string())
                .replace("{port}", &port.to_string());
            if tls {
                config = config.replace(
                    &listen,
                    &format!(
                        "listen 127.0.0.1:{port} ssl backlog=1024;\n        \
                         ssl_certificate {};\n        ssl_certificate_key {};",
                        cert.display(),
                        key.display()
                    ),
                );
            }
            std::fs::write(dir.path().join("nginx.conf"), config)?;
            command
                .arg("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"));
        }
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the target")?;
    let running = Running {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: if tls {
            Some(connector(&cert, b"http/1.1")?)
        } else {
            None
        },
        _dir: dir,
    };
    let ready = if target.server == Server::Ours {
        "/healthz"
    } else {
        "/ready"
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Ok(status)) =
            tokio::time::timeout(Duration::from_secs(1), get_status(&running, ready)).await
        {
            if status == 200 {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("{} did not get ready", target.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(running)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

async fn connect(running: &Running, tls: Option<&TlsConnector>) -> Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(running.addr).await?;
    tcp.set_nodelay(true)?;
    Ok(match tls {
        Some(tls) => Box::new(
            tls.connect(ServerName::IpAddress(running.addr.ip().into()), tcp)
                .await?,
        ),
        None => Box::new(tcp),
    })
}

async fn h1_sender(
    running: &Running,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let io = connect(running, running.tls.as_ref()).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn get_status(running: &Running, path: &str) -> Result<u16> {
    let mut sender = h1_sender(running).await?;
    let response = sender
        .send_request(
            hyper::Request::get(path)
                .header("host", running.addr.to_string())
                .body(Full::default())?,
        )
        .await?;
    Ok(response.status().as_u16())
}

/// What the subscribers share.
#[derive(Default)]
struct Tally {
    /// Subscribers whose response head arrived.
    open: AtomicU64,
    /// Deliveries with a send time.
    delivered: AtomicU64,
    /// Latency, in microseconds.
    latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl Tally {
    fn record(&self, data: &str) {
        let Some(at) = data.find("t=") else { return };
        let digits: String = data[at + 2..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let Ok(sent) = digits.parse::<u64>() else {
            return;
        };
        let micros = now_ns().saturating_sub(sent) / 1000;
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = self.latency.lock().expect("lock").as_mut() {
            let _ = h.record(micros.max(1));
        }
    }

    fn feed(&self, parser: &mut Parser, chunk: &[u8]) {
        let mut items = Vec::new();
        parser.feed(chunk, &mut items);
        for item in items {
            if let Item::Event(event) = item {
                if event.event == "message" {
                    self.record(&event.data);
                }
            }
        }
    }
}

fn subscribe_path(server: Server) -> &'static str {
    match server {
        Server::Ours => "/stream?topic=bench",
        Server::Nchan => "/sub?id=bench",
    }
}

/// One HTTP/1.1 subscriber (plain or TLS), reading until the end.
async fn h1_subscriber(running: Arc<Running>, server: Server, tally: Arc<Tally>) -> Result<()> {
    let mut sender = h1_sender(&running).await?;
    let response = sender
        .send_request(
            hyper::Request::get(subscribe_path(server))
                .header("host", running.addr.to_string())
                .header("accept", "text/event-stream")
                .body(Full::default())?,
        )
        .await?;
    if response.status() != 200 {
        bail!("status {}", response.status());
    }
    tally.open.fetch_add(1, Ordering::Relaxed);
    let mut body = response.into_body();
    let mut parser = Parser::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            tally.feed(&mut parser, &data);
        }
    }
    Ok(())
}

/// One HTTP/2 connection carrying `streams` subscribers.
async fn h2_connection(
    running: Arc<Running>,
    tls: TlsConnector,
    streams: usize,
    tally: Arc<Tally>,
) -> Result<()> {
    let io = connect(&running, Some(&tls)).await?;
    let (send, connection) = h2::client::handshake(io).await?;
    tokio::spawn(connection);
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let mut send = send.clone().ready().await?;
        let request = http::Request::get(format!(
            "https://{}{}",
            running.addr,
            subscribe_path(Server::Ours)
        ))
        .body(())?;
        let (response, _) = send.send_request(request, true)?;
        let tally = tally.clone();
        readers.spawn(async move {
            let Ok(response) = response.await else { return };
            if response.status() != 200 {
                return;
            }
            tally.open.fetch_add(1, Ordering::Relaxed);
            let mut body = response.into_body();
            let mut parser = Parser::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                tally.feed(&mut parser, &chunk);
            }
        });
    }
    while readers.join_next().await.is_some() {}
    Ok(())
}

/// One publish with the send time in it.
async fn publish(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    running: &Running,
    server: Server,
) -> Result<()> {
    let stamp = format!("t={}", now_ns());
    let (path, body, kind) = match server {
        Server::Ours => (
            "/publish",
            serde_json::json!({ "message": stamp, "topic": "bench" }).to_string(),
            "application/json",
        ),
        Server::Nchan => ("/pub?id=bench", stamp, "text/plain"),
    };
    sender.ready().await?;
    let response = sender
        .send_request(
            hyper::Request::post(path)
                .header("host", running.addr.to_string())
                .header("content-type", kind)
                .body(Full::new(Bytes::from(body)))?,
        )
        .await?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    if !(200..300).contains(&status) {
        bail!("publish answered {status}");
    }
    Ok(())
}

/// What one target measured.
#[derive(Debug)]
struct Measured {
    name: &'static str,
    connections: usize,
    kib_per_subscriber: f64,
    expected: u64,
    delivered: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

async fn measure(target: &Target, args: &Args) -> Result<Measured> {
    let running = Arc::new(start(target, &args.root).await?);
    let pid = running.child.id().context("pid")?;
    // taskset execs the server: the pid is the server's (nginx: its master,
    // whose tree includes the worker).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = bench::procstat::sample_tree(pid)?.rss_bytes;
    let tally = Arc::new(Tally::default());
    let n = args.subscribers;
    let mut tasks = tokio::task::JoinSet::new();
    let connections = match target.wire {
        Wire::H1 | Wire::H1Tls => {
            for _ in 0..n {
                tasks.spawn(h1_subscriber(running.clone(), target.server, tally.clone()));
                // Do not flood the accept queue.
                if tasks.len() % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            n
        }
        Wire::H2Tls(per) => {
            let tls = connector(&running._dir.path().join("cert.pem"), b"h2")?;
            let mut left = n;
            let mut connections = 0;
            while left > 0 {
                let streams = left.min(per);
                left -= streams;
                connections += 1;
                tasks.spawn(h2_connection(
                    running.clone(),
                    tls.clone(),
                    streams,
                    tally.clone(),
                ));
            }
            connections
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (tally.open.load(Ordering::Relaxed) as usize) < n {
        if Instant::now() > deadline {
            bail!(
                "{}: only {} of {n} subscribers opened",
                target.name,
                tally.open.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = bench::procstat::sample_tree(pid)?.rss_bytes;
    let kib_per_subscriber = after.saturating_sub(before) as f64 / 1024.0 / n as f64;

    *tally.latency.lock().expect("lock") =
        Some(hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?);
    let mut sender = h1_sender(&running).await?;
    let events = u64::from(args.rate) * u64::from(args.seconds);
    let every = Duration::from_secs(1) / args.rate.max(1);
    let mut tick = tokio::time::interval(every);
    for _ in 0..events {
        tick.tick().await;
        publish(&mut sender, &running, target.server).await?;
    }
    let expected = events * n as u64;
    let drain = Instant::now() + Duration::from_secs(5);
    while tally.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let histogram = tally
        .latency
        .lock()
        .expect("lock")
        .take()
        .context("histogram")?;
    tasks.abort_all();
    Ok(Measured {
        name: target.name,
        connections,
        kib_per_subscriber,
        expected,
        delivered: tally.delivered.load(Ordering::Relaxed),
        p50_ms: histogram.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: histogram.max() as f64 / 1000.0,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let per = args.streams_per_connection;
    let targets = [
        Target {
            name: "ours",
            server: Server::Ours,
            wire: Wire::H1,
        },
        Target {
            name: "ours-tls",
            server: Server::Ours,
            wire: Wire::H1Tls,
        },
        Target {
            name: "ours-h2",
            server: Server::Ours,
            wire: Wire::H2Tls(1),
        },
        Target {
            name: "ours-h2-mux",
            server: Server::Ours,
            wire: Wire::H2Tls(per),
        },
        Target {
            name: "nchan",
            server: Server::Nchan,
            wire: Wire::H1,
        },
        Target {
            name: "nchan-tls",
            server: Server::Nchan,
            wire: Wire::H1Tls,
        },
    ];
    let mut rows = Vec::new();
    for target in targets
        .iter()
        .filter(|t| args.only.is_empty() || args.only.iter().any(|o| o == t.name))
    {
        eprintln!("[tls-bench] {} ...", target.name);
        let measured = measure(target, &args).await?;
        eprintln!("[tls-bench] {measured:?}");
        rows.push(measured);
        // Let the sockets of the last target go away.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!("| target | connections | memory per idle subscriber | p50 | p99 | max | delivered |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.1} KiB | {:.1} ms | {:.1} ms | {:.1} ms | {} of {} |",
            row.name,
            row.connections,
            row.kib_per_subscriber,
            row.p50_ms,
            row.p99_ms,
            row.max_ms,
            row.delivered,
            row.expected
        );
    }
    Ok(())
}
