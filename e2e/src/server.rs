//! The real `server` binary, started as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::workspace_root;

/// How long the server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The ticker's interval (`--ticker-interval`), e.g. `50ms` or `off`.
    pub ticker: String,
    /// More command-line arguments.
    pub extra: Vec<String>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with a certificate for 127.0.0.1
    /// made for this server (rcgen); browsers need
    /// `--ignore-certificate-errors` ([`crate::browser::Browser::start_with`]).
    pub tls: bool,
}

impl ServerOptions {
    /// A server on a free port whose ticker publishes every `ticker`.
    pub fn ticker(ticker: &str) -> Self {
        Self {
            port: 0,
            ticker: ticker.to_owned(),
            extra: Vec::new(),
            tls: false,
        }
    }

    /// The same over HTTPS.
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }
}

/// Makes a self-signed certificate and key for 127.0.0.1 (and `localhost`)
/// in `dir`; returns their paths.
///
/// # Errors
/// When the files cannot be written.
pub fn make_certificate(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let made = rcgen::generate_simple_self_signed(["127.0.0.1".to_owned(), "localhost".to_owned()])
        .context("making a certificate")?;
    std::fs::write(&cert, made.cert.pem()).context("writing the certificate")?;
    std::fs::write(&key, made.signing_key.serialize_pem()).context("writing the key")?;
    Ok((cert, key))
}

/// A running server; stopped (killed) when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    /// `https` or `http`.
    scheme: &'static str,
    /// The certificate and key, with TLS; removed when the server is dropped.
    _certificate: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the server binary serving the workspace's `dist/` and waits
    /// for its `listening on http://…` line.
    ///
    /// # Errors
    /// When `dist/index.html` is missing (the page must be built first), the
    /// binary cannot be built or started, or it does not announce its
    /// address in time.
    pub fn start(options: &ServerOptions) -> Result<Self> {
        let dist = workspace_root().join("dist");
        if !dist.join("index.html").is_file() {
            bail!(
                "{} is missing: build the page first with `trunk build --release` \
                 at the workspace root (scripts/test.sh does this before the tests)",
                dist.join("index.html").display()
            );
        }
        let binary = server_binary()?;
        let mut command = Command::new(binary);
        let certificate = if options.tls {
            let dir = tempfile::Builder::new()
                .prefix("e2e-tls-")
                .tempdir()
                .context("creating a directory for the certificate")?;
            let (cert, key) = make_certificate(dir.path())?;
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
            Some(dir)
        } else {
            None
        };
        let scheme = if options.tls { "https" } else { "http" };
        command
            .arg("--addr")
            .arg(format!("127.0.0.1:{}", options.port))
            .arg("--dist")
            .arg(&dist)
            .arg("--ticker-interval")
            .arg(&options.ticker)
            .args(&options.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("E2E_SERVER_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let announced = line
                    .strip_prefix("listening on http://")
                    .or_else(|| line.strip_prefix("listening on https://"));
                if let Some(url) = announced {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let mut server = Self {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            scheme,
            _certificate: certificate,
        };
        let announced = rx.recv_timeout(START_TIMEOUT).map_err(|_| {
            anyhow!(
                "the server did not print `listening on http://…` within {START_TIMEOUT:?} \
                 (set E2E_SERVER_LOGS=1 to see its log)"
            )
        })?;
        server.addr = announced
            .parse()
            .with_context(|| format!("the server announced {announced:?}"))?;
        Ok(server)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://…` with TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Kills the process (SIGKILL) and reaps it; does nothing the second time.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The path of the server binary: `E2E_SERVER_BIN` if set, else this
/// package's `e2e-server` (the server exactly, see `src/bin/e2e_server.rs`),
/// which cargo builds before this package's tests run, beside them.
///
/// # Errors
/// When neither is there.
pub fn server_binary() -> Result<&'static Path> {
    static BINARY: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| find_server().map_err(|err| format!("{err:#}")))
        .as_deref()
        .map_err(|err| anyhow!("{err}"))
}

fn find_server() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("E2E_SERVER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let name = format!("e2e-server{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().context("finding this test's own binary")?;
    // A test runs from target/<profile>/deps; a binary of this package (the
    // screenshot) from target/<profile>.
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&name))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "no {name} beside {}: build it with `cargo build -p e2e --bins`, or set \
                 E2E_SERVER_BIN",
                exe.display()
            )
        })
}
