//! Starting and stopping a target under test: one server, or several
//! instances of one server sharing a Redis.
//!
//! A target is described by a [`ServerSpec`] ([`spec`]): a command line,
//! environment and optional configuration files, all minijinja templates
//! ([`template`]) in which `{{ port }}` is a free loopback port, `{{ dir }}`
//! a fresh temporary directory (for pid files, logs and temp paths),
//! `{{ root }}` the suite's root directory, `{{ redis_port }}` the port of
//! the target's Redis, `{{ backend_port }}` that of its backend,
//! `{{ publish_port }}` a second free port of the server's own, and
//! `{{ tls_cert }}` and `{{ tls_key }}` the certificate and key it serves
//! HTTPS with. Every process is started pinned to the given CPUs with
//! `taskset`, its output goes to files in its directory ([`process`]), and
//! a server is ready once `GET <ready>` answers (and, with a publish port,
//! once `GET <publish>` answers there too; [`probe`]).
//!
//! With `instances = N`, N copies of the command run side by side, each on
//! its own port and directory: subscribers are split evenly across them and
//! events are published through the first. With a `redis` table, a
//! `redis-server` is started before them on its own port and directory
//! (see [`RedisSpec`]), ready once it answers `PING`, and stopped after
//! them. With a `backend` table (a server that proxies its subscribers to
//! an application, as Pushpin does), the backend is started before the
//! server in the same way, ready once `GET <ready>` answers, and stopped
//! after it (see [`BackendSpec`]). Started with TLS files, a server with a
//! `tls` table serves HTTPS (see [`TlsSpec`]) and is probed over TLS.
//!
//! Stopping a process sends it SIGTERM and waits five seconds, then kills
//! it and every process it started; any of its descendants still running
//! once it is gone (a supervisor's services) are killed too.

pub mod probe;
pub mod process;
pub mod spec;
pub mod template;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

pub use self::probe::{ping, probe, probe_with};
pub use self::process::{free_port, free_ports, on_path};
use self::process::{process_dir, Process};
pub use self::spec::{BackendSpec, BatchSpec, RedisSpec, ServerSpec, TlsSpec};
pub use self::template::{render, Placeholders};
use crate::procstat::ServerProcess;
use crate::target::{Endpoint, Target};
use crate::tls::TlsFiles;

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

/// What a target's processes are started into, so that the caller can stop
/// what did start when a later step fails.
#[derive(Debug, Default)]
struct Started {
    servers: Vec<Process>,
    backend: Option<Process>,
    redis: Option<Process>,
}

impl RunningServer {
    /// Starts `spec` (its Redis first, then its backend, then each instance
    /// in turn), every process pinned to `cpus` (a `taskset -c` list) when
    /// given, and waits until each answers.
    ///
    /// # Errors
    /// When a template cannot be read or rendered, a process cannot start,
    /// exits, or is not ready within 30 seconds (the error quotes its log);
    /// whatever was started is stopped again.
    pub async fn start(spec: &ServerSpec, root: &Path, cpus: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(spec, root, cpus, None).await
    }

    /// As [`RunningServer::start`], serving HTTPS with `tls` when given (the
    /// spec needs a `tls` table then).
    ///
    /// # Errors
    /// As [`RunningServer::start`], and when the spec has no `tls` table.
    pub async fn start_with(
        spec: &ServerSpec,
        root: &Path,
        cpus: Option<&str>,
        tls: Option<&TlsFiles>,
    ) -> anyhow::Result<Self> {
        let mut started = Started::default();
        let result = start_all(spec, root, cpus, tls, &mut started).await;
        let running = Self {
            servers: started.servers,
            backend: started.backend,
            redis: started.redis,
            target: result
                .as_ref()
                .map_or_else(|_| empty_target(spec), Clone::clone),
        };
        match result {
            Ok(_) => Ok(running),
            Err(e) => {
                running.stop().await;
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
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
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

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
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
        tls: None,
    };
    let args = command
        .iter()
        .map(|a| render(a, p))
        .collect::<anyhow::Result<_>>()?;
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

/// Starts the target's Redis, when it has one, and waits for its `PONG`;
/// its port.
async fn start_redis(
    spec: &ServerSpec,
    root: &Path,
    cpus: Option<&str>,
    redis: &mut Option<Process>,
) -> anyhow::Result<Option<u16>> {
    let Some(r) = &spec.redis else {
        return Ok(None);
    };
    let (process, port) = spawn_beside(spec, "redis", &r.command, root, cpus).context(
        "this target needs redis-server (Debian: apt-get install redis-server; \
         scripts/bench.sh installs it)",
    )?;
    let process = redis.insert(process);
    let addr = loopback(port);
    process
        .wait_ready(|| async move { ping(addr).await.is_ok() })
        .await?;
    Ok(Some(port))
}

/// Starts the target's backend, when it has one, and waits until it
/// answers; its port.
async fn start_backend(
    spec: &ServerSpec,
    root: &Path,
    cpus: Option<&str>,
    backend: &mut Option<Process>,
) -> anyhow::Result<Option<u16>> {
    let Some(b) = &spec.backend else {
        return Ok(None);
    };
    let (process, port) = spawn_beside(spec, "backend", &b.command, root, cpus)?;
    let process = backend.insert(process);
    let ready = Endpoint {
        addr: loopback(port),
        path: b.ready.clone(),
    };
    process
        .wait_ready(|| {
            let ready = ready.clone();
            async move { probe(&ready).await.is_ok() }
        })
        .await?;
    Ok(Some(port))
}

/// Where one started instance listens: for subscribers, and for publishing.
struct Instance {
    addr: SocketAddr,
    publish_addr: SocketAddr,
}

/// Starts instance `i` of `count` with the ports of the Redis and the
/// backend already started, into `servers`, and waits until it is ready.
async fn start_instance(
    spec: &ServerSpec,
    (root, cpus, tls): (&Path, Option<&str>, Option<&TlsFiles>),
    (i, count): (u32, u32),
    (redis_port, backend_port): (Option<u16>, Option<u16>),
    servers: &mut Vec<Process>,
) -> anyhow::Result<Instance> {
    let role = if count == 1 {
        "server".to_owned()
    } else {
        format!("server {}", i + 1)
    };
    let dir = process_dir(&spec.name)?;
    // Each instance's ports are taken once the previous one has bound its
    // own.
    let ports = free_ports(if spec.publish_port { 2 } else { 1 })?;
    let (port, publish_port) = (ports[0], ports.get(1).copied());
    let p = Placeholders {
        port,
        dir: dir.path(),
        root,
        redis_port,
        backend_port,
        publish_port,
        tls,
    };
    let (args, env) = render_instance(spec, root, dir.path(), p)?;
    servers.push(Process::spawn(
        &spec.name, role, args, env, dir, root, cpus,
    )?);
    let addr = loopback(port);
    let publish_addr = publish_port.map(loopback);
    let process = servers.last_mut().expect("just pushed");
    wait_ready(spec, process, addr, publish_addr, tls).await?;
    Ok(Instance {
        addr,
        publish_addr: publish_addr.unwrap_or(addr),
    })
}

/// A process's command line and environment.
type CommandLine = (Vec<String>, Vec<(String, String)>);

/// Writes the instance's files into `dir` and renders its command line
/// (with the spec's HTTPS arguments when it serves HTTPS) and environment.
fn render_instance(
    spec: &ServerSpec,
    root: &Path,
    dir: &Path,
    p: Placeholders<'_>,
) -> anyhow::Result<CommandLine> {
    for (file, template) in &spec.files {
        let path = root.join(template);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let text = render(&text, p).with_context(|| format!("in {}", path.display()))?;
        std::fs::write(dir.join(file), text)?;
    }
    let tls_args = match (p.tls, &spec.tls) {
        (None, _) => &[][..],
        (Some(_), Some(tls)) => &tls.args[..],
        (Some(_), None) => anyhow::bail!("{} has no `tls` table: it cannot serve HTTPS", spec.name),
    };
    let args = spec
        .command
        .iter()
        .chain(tls_args)
        .map(|a| render(a, p))
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("in the command of {}", spec.name))?;
    let env = spec
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), render(v, p)?)))
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("in the environment of {}", spec.name))?;
    Ok((args, env))
}

/// Waits until the server answers `GET <ready>` at `addr` (over TLS when it
/// serves HTTPS) and, with a publish port of its own, `GET <publish>` there
/// too (a GET there may well be refused, but not with a 5xx).
async fn wait_ready(
    spec: &ServerSpec,
    process: &mut Process,
    addr: SocketAddr,
    publish_addr: Option<SocketAddr>,
    tls: Option<&TlsFiles>,
) -> anyhow::Result<()> {
    let connector = tls
        .map(|t| t.connector(&[crate::tls::ALPN_HTTP1]))
        .transpose()?;
    let ready = Endpoint {
        addr,
        path: spec.ready.clone(),
    };
    let publish_ready = publish_addr.map(|addr| Endpoint {
        addr,
        path: spec.publish.clone(),
    });
    process
        .wait_ready(|| {
            let (ready, publish_ready) = (ready.clone(), publish_ready.clone());
            let connector = connector.clone();
            async move {
                probe_with(&ready, connector.as_ref()).await.is_ok()
                    && match &publish_ready {
                        Some(publish) => probe(publish).await.is_ok(),
                        None => true,
                    }
            }
        })
        .await
}

/// Starts what `spec` describes into `started`; where to subscribe and
/// publish.
async fn start_all(
    spec: &ServerSpec,
    root: &Path,
    cpus: Option<&str>,
    tls: Option<&TlsFiles>,
    started: &mut Started,
) -> anyhow::Result<Target> {
    let redis_port = start_redis(spec, root, cpus, &mut started.redis).await?;
    let backend_port = start_backend(spec, root, cpus, &mut started.backend).await?;
    let count = spec.instances.max(1);
    let mut instances = Vec::new();
    for i in 0..count {
        instances.push(
            start_instance(
                spec,
                (root, cpus, tls),
                (i, count),
                (redis_port, backend_port),
                &mut started.servers,
            )
            .await?,
        );
    }
    Ok(Target {
        subscribe: instances
            .iter()
            .map(|instance| Endpoint {
                addr: instance.addr,
                path: spec.subscribe.clone(),
            })
            .collect(),
        publish: Endpoint {
            addr: instances[0].publish_addr,
            path: spec.publish.clone(),
        },
        ..empty_target(spec)
    })
}
