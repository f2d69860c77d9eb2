//! Starting and stopping a server under test.
//!
//! A server is described by a [`ServerSpec`]: a command line, environment
//! and optional configuration files, all templates in which `{port}` becomes
//! a free loopback port, `{dir}` a fresh temporary directory (for pid files,
//! logs and temp paths) and `{root}` the suite's root directory. The server is started pinned to the given CPUs
//! with `taskset`, its output goes to files in that directory, and it is
//! ready once `GET <ready>` answers.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

use crate::http::parse_head;
use crate::payload::DataFormat;
use crate::target::{Endpoint, PublishFormat, Target};

/// How to run and talk to one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// A short name for tables (`ours`, `nchan`, ...).
    pub name: String,
    /// One line saying what it is, for the report.
    #[serde(default)]
    pub description: String,
    /// The command line; `{port}`, `{dir}` and `{root}` are replaced. Relative program
    /// paths are resolved against the suite's root directory.
    pub command: Vec<String>,
    /// Files to write into `{dir}` before starting: file name → template
    /// path (relative to the root directory); placeholders are replaced.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// Extra environment variables (placeholders are replaced).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Path and query that subscribers `GET`.
    pub subscribe: String,
    /// Path and query that events are `POST`ed to.
    pub publish: String,
    /// The publish body's form.
    pub publish_format: PublishFormat,
    /// Where the payload sits in an event's data.
    pub data_format: DataFormat,
    /// The topic to publish to (JSON publishing only).
    #[serde(default)]
    pub topic: Option<String>,
    /// A path that answers `GET` once the server is ready.
    pub ready: String,
    /// Whether the server resumes a stream from `Last-Event-ID`.
    #[serde(default)]
    pub resumes: bool,
}

/// The values of a template's placeholders.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders<'a> {
    /// `{port}`.
    pub port: u16,
    /// `{dir}`.
    pub dir: &'a Path,
    /// `{root}`.
    pub root: &'a Path,
}

/// Replaces `{port}`, `{dir}` and `{root}` in `text`.
pub fn render(text: &str, p: Placeholders<'_>) -> String {
    text.replace("{port}", &p.port.to_string())
        .replace("{dir}", &p.dir.display().to_string())
        .replace("{root}", &p.root.display().to_string())
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it next).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    child: Child,
    pid: u32,
    dir: tempfile::TempDir,
    /// Where and how to subscribe and publish.
    pub target: Target,
}

impl RunningServer {
    /// Starts `spec`, pinned to `cpus` (a `taskset -c` list) when given, and
    /// waits until it answers on its ready path.
    ///
    /// # Errors
    /// When a template cannot be read, the process cannot start, exits, or
    /// is not ready within 30 seconds (the error quotes its log).
    pub async fn start(spec: &ServerSpec, root: &Path, cpus: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bench-{}-", spec.name))
            .tempdir()?;
        // nginx's workers run as another user and need to reach their paths.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let port = free_port()?;
        let p = Placeholders {
            port,
            dir: dir.path(),
            root,
        };
        for (name, template) in &spec.files {
            let path = root.join(template);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            std::fs::write(dir.path().join(name), render(&text, p))?;
        }
        let mut args: Vec<String> = spec.command.iter().map(|a| render(a, p)).collect();
        let env: Vec<(String, String)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), render(v, p)))
            .collect();
        if args.is_empty() {
            bail!("server {} has an empty command", spec.name);
        }
        let program = PathBuf::from(&args[0]);
        if program.components().count() > 1 && program.is_relative() {
            args[0] = root.join(program).display().to_string();
        }
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = tokio::process::Command::new("taskset");
                c.arg("-c").arg(cpus).args(&args);
                c
            }
            None => {
                let mut c = tokio::process::Command::new(&args[0]);
                c.args(&args[1..]);
                c
            }
        };
        let stdout = std::fs::File::create(dir.path().join("stdout.log"))?;
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
        command
            .envs(env)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}: {}", spec.name, args.join(" ")))?;
        let pid = child.id().context("the server exited at once")?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let target = Target {
            subscribe: Endpoint {
                addr,
                path: spec.subscribe.clone(),
            },
            publish: Endpoint {
                addr,
                path: spec.publish.clone(),
            },
            publish_format: spec.publish_format,
            data_format: spec.data_format,
            topic: spec.topic.clone(),
        };
        let mut server = Self {
            child,
            pid,
            dir,
            target,
        };
        let ready = Endpoint {
            addr,
            path: spec.ready.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "{} exited with {status} while starting:\n{}",
                    spec.name,
                    server.log_tail()
                );
            }
            if probe(&ready).await.is_ok() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready within 30 s:\n{}",
                    spec.name,
                    server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id (of `taskset`'s exec, which is the server itself).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last lines of the server's stderr and stdout.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in ["stderr.log", "stdout.log", "error.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.path().join(name)) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                if !tail.is_empty() {
                    out.push_str(&format!("--- {name}\n{}\n", tail.join("\n")));
                }
            }
        }
        out
    }

    /// Sends SIGTERM, waits up to five seconds, then kills.
    pub async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// One `GET` on a fresh connection; `Ok` with the status when the server
/// answered with one below 500.
///
/// # Errors
/// When the connection fails, the answer is not HTTP, or the status is 5xx.
pub async fn probe(endpoint: &Endpoint) -> anyhow::Result<u16> {
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(endpoint.addr).await?;
        stream
            .write_all(
                format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    endpoint.path,
                    endpoint.host()
                )
                .as_bytes(),
            )
            .await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("closed before the response head");
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((head, _)) = parse_head(&buf)? {
                return Ok(head.status);
            }
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .context("timed out")??;
    if status >= 500 {
        bail!("status {status}");
    }
    Ok(status)
}
