//! One process of a target: started in a fresh directory of its own,
//! pinned to the given CPUs with `taskset`, its output in files there;
//! waited for until it is ready, and stopped with its descendants.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::Child;

use crate::procstat;

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
pub(super) struct Process {
    /// Its part in the target, for the report (`server`, `server 2`, `redis`).
    pub(super) role: String,
    /// The target's name and its role, for messages.
    label: String,
    child: Child,
    pub(super) pid: u32,
    dir: tempfile::TempDir,
}

/// A fresh temporary directory that other users can enter (nginx's workers
/// run as another user and need to reach their paths).
pub(super) fn process_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("bench-{prefix}-"))
        .tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

impl Process {
    /// Starts `args` in `dir`, pinned to `cpus` when given, as `role` of
    /// the target `target`.
    pub(super) fn spawn(
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
    pub(super) async fn wait_ready<F, Fut>(&mut self, ready: F) -> anyhow::Result<()>
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
    pub(super) fn log_tail(&self) -> String {
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
    pub(super) async fn stop(mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&p| p > 0));
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        assert!(free_port().unwrap() > 0);
    }
}
