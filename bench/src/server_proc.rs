//! Starting and stopping a target under test: one server, or several
//! instances of one server sharing a Redis.
//!
//! A target is described by a [`ServerSpec`]: a command line, environment
//! and optional configuration files, all templates in which `{port}` becomes
//! a free loopback port, `{dir}` a fresh temporary directory (for pid files,
//! logs and temp paths), `{root}` the suite's root directory,
//! `{redis_port}` the port of the target's Redis, `{backend_port}` that of
//! its backend and `{publish_port}` a second free port of the server's own
//! (see [`render`]). Every process is started pinned to the given CPUs with
//! `taskset`, its output goes to files in its directory, and a server is
//! ready once `GET <ready>` answers (and, with a publish port, once `GET
//! <publish>` answers there too).
//!
//! With `instances = N`, N copies of the command run side by side, each on
//! its own port and directory: subscribers are split evenly across them and
//! events are published through the first. With a `redis` table, a
//! `redis-server` is started before them on its own port and directory
//! (see [`RedisSpec`]), ready once it answers `PING`, and stopped after
//! them. With a `backend` table (a server that proxies its subscribers to
//! an application, as Pushpin does), the backend is started before the
//! server in the same way, ready once `GET <ready>` answers, and stopped
//! after it (see [`BackendSpec`]).
//!
//! Stopping a process sends it SIGTERM and waits five seconds, then kills
//! it and every process it started; any of its descendants still running
//! once it is gone (a supervisor's services) are killed too.

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
use crate::procstat::{self, ServerProcess};
use crate::target::{Endpoint, PublishFormat, Target, TopicRoutes};

/// How to run and talk to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// A short name for tables (`ours`, `nchan`, ...).
    pub name: String,
    /// One line saying what it is, for the report.
    #[serde(default)]
    pub description: String,
    /// The command line; `{port}`, `{dir}`, `{root}`, `{redis_port}`,
    /// `{backend_port}` and `{publish_port}` are replaced. Relative program
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
    /// Path and query that events are `POST`ed to (on `{publish_port}` when
    /// `publish_port` is set, on `{port}` otherwise).
    pub publish: String,
    /// Whether events are published on a port of the server's own, apart
    /// from its subscribers' (Pushpin's HTTP control API): a second free
    /// port per instance, `{publish_port}` in the templates.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_port: bool,
    /// The publish body's form.
    pub publish_format: PublishFormat,
    /// Where the payload sits in an event's data.
    pub data_format: DataFormat,
    /// The topic to publish to (JSON publishing; the channel of Pushpin's,
    /// which needs one).
    #[serde(default)]
    pub topic: Option<String>,
    /// How the server names topics; the topic workloads run only against
    /// servers that have them.
    #[serde(default)]
    pub topics: Option<TopicRoutes>,
    /// A path that answers `GET` once the server is ready.
    pub ready: String,
    /// Whether the server resumes a stream from `Last-Event-ID`.
    #[serde(default)]
    pub resumes: bool,
    /// How many copies of `command` run side by side, each on its own
    /// `{port}` and `{dir}`: subscribers are split evenly across them and
    /// events are published through the first.
    #[serde(default = "one")]
    pub instances: u32,
    /// A Redis that the instances share, started before them and stopped
    /// after them.
    #[serde(default)]
    pub redis: Option<RedisSpec>,
    /// An application the server proxies to (Pushpin's GRIP backend),
    /// started before it and stopped after it; a part of the server, whose
    /// CPU time and memory count with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendSpec>,
    /// For a target of several processes, or one with a section of its own
    /// in the report: the single server of the suite it is set against there
    /// (measured in the same run).
    #[serde(default)]
    pub compare_with: Option<String>,
    /// The workloads this target runs (`fanout`, `publish`, ...); all when
    /// absent, except those that run only where asked for (publishing
    /// alone; see the suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<String>>,
    /// The workloads that run only where asked for (`publish`, `heavy`)
    /// that this server runs besides its others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

fn one() -> u32 {
    1
}

impl ServerSpec {
    /// Whether the target is one server (no Redis, one instance; a backend
    /// it proxies to is a part of it).
    pub fn is_single(&self) -> bool {
        self.instances <= 1 && self.redis.is_none()
    }

    /// Whether the target runs the workload named `workload`.
    pub fn runs(&self, workload: &str) -> bool {
        self.workloads
            .as_ref()
            .is_none_or(|w| w.iter().any(|name| name == workload))
    }
}

/// A `redis-server` started for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// Its command line, in which `{port}` is a free loopback port, `{dir}`
    /// a fresh temporary directory (its working directory, for `--dir`) and
    /// `{root}` the suite's root directory.
    pub command: Vec<String>,
}

/// A backend started for one target, before its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Its command line, in which `{port}` is a free loopback port (the
    /// server's templates name it `{backend_port}`), `{dir}` a fresh
    /// temporary directory and `{root}` the suite's root directory.
    pub command: Vec<String>,
    /// A path that answers `GET` once it is ready.
    pub ready: String,
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
    /// `{redis_port}`, when the target has a Redis.
    pub redis_port: Option<u16>,
    /// `{backend_port}`, when the target has a backend.
    pub backend_port: Option<u16>,
    /// `{publish_port}`, when the server publishes on a port of its own.
    pub publish_port: Option<u16>,
}

/// Replaces `{port}`, `{dir}`, `{root}` and (when known) `{redis_port}`,
/// `{backend_port}` and `{publish_port}` in `text`; an unknown one is left
/// as it is.
pub fn render(text: &str, p: Placeholders<'_>) -> String {
    let mut text = text.to_owned();
    for (name, port) in [
        ("{redis_port}", p.redis_port),
        ("{backend_port}", p.backend_port),
        ("{publish_port}", p.publish_port),
    ] {
        if let Some(port) = port {
            text = text.replace(name, &port.to_string());
        }
    }
    text.replace("{port}", &p.port.to_string())
        .replace("{dir}", &p.dir.display().to_string())
        .replace("{root}", &p.root.display().to_string())
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it next).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `n` distinct free TCP ports on 127.0.0.1 (all bound at once while they
/// are chosen, so none is handed out twice).
///
/// # Errors
/// When a port cannot be bound.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Whether `program` (a bare name) is an executable file in a `PATH`
/// directory.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// How long a process may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One started process, its output in files in its own directory.
#[derive(Debug)]
struct Process {
    /// Its part in the target, for the report (`server`, `server 2`, `redis`).
    role: String,
    /// The target's name and its role, for messages.
    label: String,
    child: Child,
    pid: u32,
    dir: tempfile::TempDir,
}

/// A fresh temporary directory that other users can enter (nginx's workers
/// run as another user and need to reach their paths).
fn process_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("bench-{prefix}-"))
        .tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

impl Process {
    /// Starts `args` in `dir`, pinned to `cpus` when given, as `role` of
    /// the target `target`.
    fn spawn(
        target: &str,
        role: String,
        mut args: Vec<String>,
        env: Vec<(String, String)>,
        dir: tempfile::TempDir,
        root: &Path,
        cpus: Option<&str>,
    ) -> anyhow::Result<Self> {
        let label = if role == "server" {
            target.to_owned()
        } else {
            format!("{target} ({role})")
        };
        let Some(first) = args.first() else {
            bail!("{label} has an empty command");
        };
        let program = PathBuf::from(first);
        if program.components().count() > 1 {
            if program.is_relative() {
                args[0] = root.join(program).display().to_string();
            }
        } else if !on_path(first) {
            bail!("cannot start {label}: {first} is not on PATH");
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
            .with_context(|| format!("cannot start {label}: {}", args.join(" ")))?;
        let pid = child
            .id()
            .with_context(|| format!("{label} exited at once"))?;
        Ok(Self {
            role,
            label,
            child,
            pid,
            dir,
        })
    }

    /// Polls `ready` every 50 ms until it holds; fails when the process
    /// exits or is not ready within [`READY_TIMEOUT`] (the error quotes its
    /// log).
    async fn wait_ready<F, Fut>(&mut self, ready: F) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} while starting:\n{}",
                    self.label,
                    self.log_tail()
                );
            }
            if ready().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready within {} s:\n{}",
                    self.label,
                    READY_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the process's stderr and stdout, then of the other
    /// `*.log` files in its directory (nginx's `error.log`, each Pushpin
    /// service's log).
    fn log_tail(&self) -> String {
        let mut names = vec!["stderr.log".to_owned(), "stdout.log".to_owned()];
        let mut others: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".log") && !names.contains(n))
                    .collect()
            })
            .unwrap_or_default();
        others.sort();
        names.extend(others);
        let mut out = String::new();
        for name in names {
            if let Ok(text) = std::fs::read_to_string(self.dir.path().join(&name)) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                if !tail.is_empty() {
                    out.push_str(&format!("--- {} {name}\n{}\n", self.label, tail.join("\n")));
                }
            }
        }
        out
    }

    /// Sends SIGTERM, waits up to five seconds, then kills it and its
    /// descendants; then kills whatever descendant outlived it (a
    /// supervisor such as Pushpin's runner stops its services itself, and
    /// this makes sure none is left behind).
    async fn stop(mut self) {
        let descendants: Vec<(u32, u64)> = procstat::tree(self.pid)
            .into_iter()
            .filter(|&p| p != self.pid)
            .filter_map(|p| Some((p, procstat::start_time(p)?)))
            .collect();
        signal(self.pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            for p in procstat::tree(self.pid) {
                signal(p, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = self.child.kill().await;
        }
        let left: Vec<u32> = descendants
            .into_iter()
            .filter(|&(p, started)| procstat::start_time(p) == Some(started))
            .map(|(p, _)| p)
            .collect();
        if !left.is_empty() {
            tracing::warn!(process = %self.label, ?left, "killing what it left running");
            for p in left {
                signal(p, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Sends `signal` to process `pid` (gone already: nothing).
fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// A started target: its servers and, when it has them, its backend and
/// its Redis.
#[derive(Debug)]
pub struct RunningServer {
    /// In instance order.
    servers: Vec<Process>,
    backend: Option<Process>,
    redis: Option<Process>,
    /// Where and how to subscribe and publish.
    pub target: Target,
}

impl RunningServer {
    /// Starts `spec` (its Redis first, then its backend, then each instance
    /// in turn), every process pinned to `cpus` (a `taskset -c` list) when
    /// given, and waits until each answers.
    ///
    /// # Errors
    /// When a template cannot be read, a process cannot start, exits, or
    /// is not ready within 30 seconds (the error quotes its log); whatever
    /// was started is stopped again.
    pub async fn start(spec: &ServerSpec, root: &Path, cpus: Option<&str>) -> anyhow::Result<Self> {
        let mut redis = None;
        let mut backend = None;
        let mut servers = Vec::new();
        match start_all(spec, root, cpus, &mut redis, &mut backend, &mut servers).await {
            Ok(target) => Ok(Self {
                servers,
                backend,
                redis,
                target,
            }),
            Err(e) => {
                Self {
                    servers,
                    backend,
                    redis,
                    target: empty_target(spec),
                }
                .stop()
                .await;
                Err(e)
            }
        }
    }

    /// The server-side processes: the servers in instance order, then the
    /// backend, then the Redis.
    pub fn processes(&self) -> Vec<ServerProcess> {
        self.servers
            .iter()
            .chain(&self.backend)
            .chain(&self.redis)
            .map(|p| ServerProcess {
                name: p.role.clone(),
                pid: p.pid,
            })
            .collect()
    }

    /// The last lines of every process's output.
    pub fn log_tail(&self) -> String {
        self.servers
            .iter()
            .chain(&self.backend)
            .chain(&self.redis)
            .map(Process::log_tail)
            .collect()
    }

    /// Stops the servers (SIGTERM, then a kill after five seconds), then
    /// the backend, then the Redis.
    pub async fn stop(self) {
        for server in self.servers {
            server.stop().await;
        }
        if let Some(backend) = self.backend {
            backend.stop().await;
        }
        if let Some(redis) = self.redis {
            redis.stop().await;
        }
    }
}

fn empty_target(spec: &ServerSpec) -> Target {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    Target {
        subscribe: Vec::new(),
        publish: Endpoint {
            addr,
            path: spec.publish.clone(),
        },
        publish_format: spec.publish_format,
        data_format: spec.data_format,
        topic: spec.topic.clone(),
        topics: spec.topics.clone(),
    }
}

/// Starts a process a target needs beside its servers (its Redis, its
/// backend) from `command`, in a fresh directory with a free port of its
/// own; the process and that port.
fn spawn_beside(
    spec: &ServerSpec,
    role: &str,
    command: &[String],
    root: &Path,
    cpus: Option<&str>,
) -> anyhow::Result<(Process, u16)> {
    let dir = process_dir(&format!("{}-{role}", spec.name))?;
    let port = free_port()?;
    let p = Placeholders {
        port,
        dir: dir.path(),
        root,
        redis_port: None,
        backend_port: None,
        publish_port: None,
    };
    let args = command.iter().map(|a| render(a, p)).collect();
    let process = Process::spawn(
        &spec.name,
        role.to_owned(),
        args,
        Vec::new(),
        dir,
        root,
        cpus,
    )?;
    Ok((process, port))
}

/// Starts what `spec` describes into `redis`, `backend` and `servers` (so
/// that the caller can stop what did start when a later step fails).
async fn start_all(
    spec: &ServerSpec,
    root: &Path,
    cpus: Option<&str>,
    redis: &mut Option<Process>,
    backend: &mut Option<Process>,
    servers: &mut Vec<Process>,
) -> anyhow::Result<Target> {
    let redis_port = match &spec.redis {
        Some(r) => {
            let (process, port) = spawn_beside(spec, "redis", &r.command, root, cpus).context(
                "this target needs redis-server (Debian: apt-get install redis-server; \
                 scripts/bench.sh installs it)",
            )?;
            let process = redis.insert(process);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            process
                .wait_ready(|| async move { ping(addr).await.is_ok() })
                .await?;
            Some(port)
        }
        None => None,
    };
    let backend_port = match &spec.backend {
        Some(b) => {
            let (process, port) = spawn_beside(spec, "backend", &b.command, root, cpus)?;
            let process = backend.insert(process);
            let ready = Endpoint {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                path: b.ready.clone(),
            };
            process
                .wait_ready(|| {
                    let ready = ready.clone();
                    async move { probe(&ready).await.is_ok() }
                })
                .await?;
            Some(port)
        }
        None => None,
    };
    let count = spec.instances.max(1);
    let mut addrs = Vec::new();
    let mut publish_addrs = Vec::new();
    for i in 0..count {
        let role = if count == 1 {
            "server".to_owned()
        } else {
            format!("server {}", i + 1)
        };
        let dir = process_dir(&spec.name)?;
        // Each instance's ports are taken once the previous one has bound
        // its own.
        let ports = free_ports(if spec.publish_port { 2 } else { 1 })?;
        let (port, publish_port) = (ports[0], ports.get(1).copied());
        let p = Placeholders {
            port,
            dir: dir.path(),
            root,
            redis_port,
            backend_port,
            publish_port,
        };
        for (file, template) in &spec.files {
            let path = root.join(template);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            std::fs::write(dir.path().join(file), render(&text, p))?;
        }
        let args = spec.command.iter().map(|a| render(a, p)).collect();
        let env = spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), render(v, p)))
            .collect();
        servers.push(Process::spawn(
            &spec.name, role, args, env, dir, root, cpus,
        )?);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let ready = Endpoint {
            addr,
            path: spec.ready.clone(),
        };
        // With a publish port of its own, the server is ready once that
        // answers too (a GET there may well be refused, but not with a 5xx).
        let publish_addr = publish_port.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)));
        let publish_ready = publish_addr.map(|addr| Endpoint {
            addr,
            path: spec.publish.clone(),
        });
        let process = servers.last_mut().expect("just pushed");
        process
            .wait_ready(|| {
                let ready = ready.clone();
                let publish_ready = publish_ready.clone();
                async move {
                    probe(&ready).await.is_ok()
                        && match &publish_ready {
                            Some(publish) => probe(publish).await.is_ok(),
                            None => true,
                        }
                }
            })
            .await?;
        addrs.push(addr);
        publish_addrs.push(publish_addr.unwrap_or(addr));
    }
    Ok(Target {
        subscribe: addrs
            .iter()
            .map(|&addr| Endpoint {
                addr,
                path: spec.subscribe.clone(),
            })
            .collect(),
        publish: Endpoint {
            addr: publish_addrs[0],
            path: spec.publish.clone(),
        },
        publish_format: spec.publish_format,
        data_format: spec.data_format,
        topic: spec.topic.clone(),
        topics: spec.topics.clone(),
    })
}

/// Sends `PING` to the Redis at `addr`; `Ok` once it answers `+PONG` (not
/// while it is still loading its data).
///
/// # Errors
/// When the connection fails, times out, or the answer is another.
pub async fn ping(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        while !buf.ends_with(b"\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("closed before answering");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        if buf != b"+PONG\r\n" {
            bail!("answered {:?}", String::from_utf8_lossy(&buf).trim_end());
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .context("timed out")?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_every_known_placeholder() {
        let (dir, root) = (Path::new("/tmp/bench-x"), Path::new("/repo"));
        let p = Placeholders {
            port: 8000,
            dir,
            root,
            redis_port: Some(6000),
            backend_port: Some(7000),
            publish_port: Some(9000),
        };
        assert_eq!(
            render(
                "http_port=127.0.0.1:{port} push_in_http_port={publish_port} \
                 route=127.0.0.1:{backend_port} redis={redis_port} {dir}/run {root}/x",
                p
            ),
            "http_port=127.0.0.1:8000 push_in_http_port=9000 route=127.0.0.1:7000 \
             redis=6000 /tmp/bench-x/run /repo/x"
        );
        // Placeholders the target has no value for stay as they are.
        let bare = Placeholders {
            redis_port: None,
            backend_port: None,
            publish_port: None,
            ..p
        };
        assert_eq!(
            render("{port} {publish_port} {backend_port} {redis_port}", bare),
            "8000 {publish_port} {backend_port} {redis_port}"
        );
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&p| p > 0));
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        assert!(free_port().unwrap() > 0);
    }

    #[test]
    fn a_publish_port_and_a_backend_read_from_the_spec() {
        let spec: ServerSpec = toml::from_str(
            r#"
            name = "pushpin"
            command = ["pushpin", "--config", "{dir}/pushpin.conf"]
            subscribe = "/sub/bench"
            publish = "/publish/"
            publish_port = true
            publish_format = "pushpin"
            data_format = "raw"
            topic = "bench"
            ready = "/ready"
            backend = { command = ["target/release/grip-backend", "--addr", "127.0.0.1:{port}"], ready = "/ready" }
            "#,
        )
        .unwrap();
        assert!(spec.publish_port && spec.is_single());
        assert_eq!(spec.publish_format, PublishFormat::Pushpin);
        assert_eq!(spec.backend.as_ref().unwrap().ready, "/ready");
        // Without them, the spec reads (and writes) as before.
        let plain: ServerSpec = toml::from_str(
            r#"
            name = "x"
            command = ["x"]
            subscribe = "/s"
            publish = "/p"
            publish_format = "raw"
            data_format = "raw"
            ready = "/r"
            "#,
        )
        .unwrap();
        assert!(!plain.publish_port && plain.backend.is_none());
        let json = serde_json::to_string(&plain).unwrap();
        assert!(
            !json.contains("publish_port") && !json.contains("backend"),
            "{json}"
        );
    }
}
