//! Test support for servers sharing a Redis stream: a `redis-server` of the
//! test's own (free loopback port, temporary directory, append-only file
//! fsynced on every write) and server binaries started as child processes,
//! so that they can be killed like real deployments.

use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use super::PATIENCE;

/// A `redis-server` child process, stopped (and its files removed) on drop.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Persistence options: AOF fsynced on every write, unless the test
    /// asked for snapshots only.
    persistence: Vec<&'static str>,
}

impl Redis {
    /// Starts Redis on a free loopback port and waits until it accepts
    /// connections.
    pub async fn start() -> Redis {
        Self::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .await
    }

    /// Starts Redis that persists only by snapshots (`SAVE`), with no
    /// append-only file: a restart brings back the last snapshot.
    pub async fn start_with_snapshots_only() -> Redis {
        Self::start_with(&["--save", "", "--appendonly", "no"]).await
    }

    async fn start_with(persistence: &[&'static str]) -> Redis {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let mut redis = Redis {
            port,
            dir,
            child: None,
            persistence: persistence.to_vec(),
        };
        redis.launch().await;
        redis
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A connection for the test's own commands.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test's redis")
    }

    /// The length of the servers' stream, `sse:events`.
    pub async fn stream_len(&self) -> u64 {
        redis::cmd("XLEN")
            .arg("sse:events")
            .query_async(&mut self.connection().await)
            .await
            .expect("XLEN")
    }

    /// The ids of the entries in the servers' stream, oldest first.
    pub async fn stream_ids(&self) -> Vec<String> {
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg("sse:events")
            .arg("-")
            .arg("+")
            .query_async(&mut self.connection().await)
            .await
            .expect("XRANGE");
        entries.into_iter().map(|(id, _)| id).collect()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the process on this port and directory (loading what an
    /// earlier run wrote) and waits for "Ready to accept connections".
    async fn launch(&mut self) {
        assert!(self.child.is_none(), "Redis is already running");
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.persistence)
            .args(["--logfile", ""])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need Debian's redis-server \
                     on PATH (scripts/setup.sh --for-tests installs it)"
                )
            });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await.expect("redis output") {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        };
        let ready = tokio::time::timeout(PATIENCE, ready)
            .await
            .expect("redis-server ready in time");
        assert!(ready, "redis-server exited before it was ready");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// Stops Redis cleanly (SIGTERM: it finishes writing its append-only
    /// file) and waits for the process to end.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("Redis is running");
        signal(&child, "TERM");
        let status = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .expect("redis-server stops in time")
            .expect("wait for redis-server");
        assert!(status.success(), "redis-server exited with {status}");
    }

    /// SIGKILL: Redis ends without writing anything more.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("Redis is running");
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("wait for redis-server");
    }

    /// SIGSTOP: Redis keeps its connections but answers nothing, as behind
    /// a partition.
    pub fn freeze(&self) {
        signal(self.child.as_ref().expect("Redis is running"), "STOP");
    }

    /// SIGCONT after [`Redis::freeze`].
    pub fn thaw(&self) {
        signal(self.child.as_ref().expect("Redis is running"), "CONT");
    }

    /// Starts it again on the same port with the same files.
    pub async fn restart(&mut self) {
        self.launch().await;
    }
}

/// A free loopback port, found by binding port 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("process still running");
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// A server binary that exited instead of listening.
#[derive(Debug)]
pub struct Exited {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// What it printed on stderr.
    pub stderr: String,
}

/// The server binary as a child process.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: Child,
}

impl ServerProcess {
    /// Starts the server binary on a free port with `--redis <redis>` and
    /// `args`, the ticker off, and waits for its `listening on` line (the
    /// server prints it once the stream is loaded, or after a bounded wait
    /// when Redis is down).
    pub async fn start(redis: &Redis, args: &[&str]) -> ServerProcess {
        Self::start_at(&redis.url(), args).await
    }

    /// Like [`ServerProcess::start`] with the Redis at `url` (a
    /// [`super::link::Link`] in front of the test's Redis, say).
    pub async fn start_at(url: &str, args: &[&str]) -> ServerProcess {
        let mut all = vec!["--redis", url];
        all.extend_from_slice(args);
        Self::start_alone(&all, &[]).await
    }

    /// Starts the server binary on a free port with `args` alone (no
    /// Redis), the ticker off, with the environment variables `env`, and
    /// waits for its `listening on` line.
    pub async fn start_alone(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--addr", "127.0.0.1:0", "--ticker-interval", "off"])
            .args(["--dist", "/nonexistent"])
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the server binary");
        let addr = super::listening_addr(&mut child, "http").await;
        ServerProcess { addr, child }
    }

    /// Like [`ServerProcess::start_alone`], for a start that may be
    /// refused: the running server, or how it exited and what it printed
    /// on stderr.
    pub async fn try_start_alone(args: &[&str]) -> Result<ServerProcess, Exited> {
        Self::try_start_alone_env(args, &[]).await
    }

    /// Like [`ServerProcess::try_start_alone`], with the environment
    /// variables `env`.
    pub async fn try_start_alone_env(
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<ServerProcess, Exited> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--addr", "127.0.0.1:0", "--ticker-interval", "off"])
            .args(["--dist", "/nonexistent"])
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the server binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("the server starts or exits in time")
            .expect("server output");
        let Some(line) = line else {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
                .await
                .expect("stderr");
            let status = tokio::time::timeout(PATIENCE, child.wait())
                .await
                .expect("exits in time")
                .expect("wait");
            return Err(Exited {
                code: status.code(),
                stderr: text,
            });
        };
        // What it prints from here on goes to the test's output.
        tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut stderr, &mut chunk).await {
                eprint!("{}", String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        Ok(ServerProcess { addr, child })
    }

    /// SIGKILL: no shutdown, no goodbye to anyone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("wait for the server");
    }

    /// A burst from `publishers` tasks at once, SIGKILLed once `kill_at`
    /// publishes are acknowledged, so that some are in flight: every
    /// acknowledgement, `kill_at` or more. `publish(addr, publisher, i)`
    /// sends that publisher's `i`th event and answers `None` once the
    /// server is gone.
    pub async fn kill_mid_burst<T, F, Fut>(
        self,
        publishers: usize,
        kill_at: usize,
        publish: F,
    ) -> Vec<T>
    where
        T: Clone + Send + 'static,
        F: Fn(SocketAddr, usize, u64) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Option<T>> + Send,
    {
        let addr = self.addr;
        let acks = Arc::new(Mutex::new(Vec::new()));
        let reached = Arc::new(Notify::new());
        let tasks: Vec<_> = (0..publishers)
            .map(|p| {
                let (acks, reached, publish) = (acks.clone(), reached.clone(), publish.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let Some(ack) = publish(addr, p, i).await else {
                            return;
                        };
                        let mut acks = acks.lock();
                        acks.push(ack);
                        if acks.len() == kill_at {
                            reached.notify_one();
                        }
                    }
                })
            })
            .collect();
        tokio::time::timeout(PATIENCE, reached.notified())
            .await
            .expect("the burst reaches the kill point");
        self.kill().await;
        for task in tasks {
            task.await.expect("publisher task");
        }
        let acks = acks.lock().clone();
        acks
    }

    /// SIGTERM, and waits for a clean exit.
    pub async fn terminate(mut self) {
        signal(&self.child, "TERM");
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("server stops in time")
            .expect("wait for the server");
        assert!(status.success(), "server exited with {status}");
    }
}
