//! Publishing alone: how many publishes a second a server acknowledges,
//! and how long each waits for its answer, with N concurrent publishers and
//! no subscribers. It is what the event log costs: in memory, on disk
//! (fsynced at every commit, or in batches) or in Redis.
//!
//! Each publisher is a keep-alive HTTP/1.1 connection in a closed loop: it
//! sends the next publish as soon as the previous one is answered. A step
//! runs every publisher for a short warm-up, then for the measured time;
//! latency is request to answer, in an HDR histogram. The server side's
//! CPU time (the server, and its Redis when it has one) and the load
//! generator's are read from `/proc` around the measured time, as in the
//! other workloads.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use super::step::Percentiles;
use super::{Bench, Workload};
use crate::procstat::{self, ServerProcess};
use crate::target::Target;

/// The publish workload's parameters (`[publish]` in the suite's
/// configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishParams {
    /// Concurrent publishers, one step each.
    pub publishers: Vec<u32>,
    /// Measured time per step, s.
    pub seconds: f64,
    /// Message size, bytes.
    pub payload_bytes: usize,
}

/// One step: `publishers` publishing for `seconds`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishStep {
    /// Concurrent publishers.
    pub publishers: u32,
    /// Measured time, s.
    pub seconds: f64,
    /// Publishes answered 2xx in that time.
    pub ok: u64,
    /// Publishes that failed.
    pub failed: u64,
    /// `ok` per second.
    pub per_s: f64,
    /// Request-to-answer time of the acknowledged publishes.
    pub latency: Percentiles,
    /// Server-side CPU time during the step, s (every process of the
    /// target together).
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s` by process (`server 1`, `redis`, ...).
    pub server_cpu_by_process: Vec<(String, f64)>,
    /// The load generator's CPU time over the step, as a share of a core.
    pub loadgen_cpu_share: f64,
    /// Of the CPUs' busy time, the share (of one core) used by neither the
    /// server nor the load generator: above the suite's limit, the step is
    /// run again.
    pub other_cpu_share: f64,
    /// The first failure.
    pub first_error: Option<String>,
}

/// Every step of the workload on one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishResult {
    /// In the order of the configuration.
    pub steps: Vec<PublishStep>,
}

/// How long every publisher runs before the measured time.
const WARM_UP: Duration = Duration::from_millis(500);

/// How long one publish may wait for its answer before it counts as failed
/// (and its connection is dropped).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(target.publish.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn body(target: &Target, size: usize) -> (Bytes, &'static str) {
    let text = "x".repeat(size.max(1));
    let format = target.publish_format;
    (
        format.body(target.topic.as_deref(), text),
        format.content_type(),
    )
}

/// One publisher's counts.
struct Lane {
    histogram: Histogram<u64>,
    ok: u64,
    failed: u64,
    first_error: Option<String>,
}

/// Publishes in a closed loop until `stop`; counts only while `measuring`.
async fn lane(
    target: Arc<Target>,
    size: usize,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Lane {
    let mut out = Lane {
        histogram: Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
        ok: 0,
        failed: 0,
        first_error: None,
    };
    let (payload, content_type) = body(&target, size);
    let mut sender: Option<Sender> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut s = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => match connect(&target).await {
                Ok(s) => s,
                Err(e) => {
                    out.failed += 1;
                    out.first_error
                        .get_or_insert_with(|| format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let request = http::Request::post(target.publish.path.as_str())
            .header(http::header::HOST, target.publish.host())
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(payload.clone()))
            .expect("a request");
        let started = Instant::now();
        let counted = measuring.load(Ordering::Relaxed);
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            s.ready().await?;
            let response = s.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            anyhow::ensure!(status.is_success(), "status {status}");
            anyhow::Ok(())
        })
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer in {REQUEST_TIMEOUT:?}")));
        match result {
            Ok(()) => {
                sender = Some(s);
                if counted {
                    out.ok += 1;
                    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    out.histogram.saturating_record(us.max(1));
                }
            }
            Err(e) => {
                if counted {
                    out.failed += 1;
                    out.first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
    }
    out
}

/// Runs one step on `target`, whose server side is `servers`.
async fn step(
    target: &Arc<Target>,
    servers: &[ServerProcess],
    publishers: u32,
    seconds: f64,
    size: usize,
) -> PublishStep {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let lanes: Vec<_> = (0..publishers.max(1))
        .map(|_| tokio::spawn(lane(target.clone(), size, measuring.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(WARM_UP).await;
    let server_before = procstat::sample_servers(servers);
    let me = [std::process::id()];
    let lg_before = procstat::sample_pids(&me);
    let cpus_before = procstat::cpu_ticks();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let server_after = procstat::sample_servers(servers);
    let lg_after = procstat::sample_pids(&me);
    let cpus = procstat::cpu_use(&cpus_before, &procstat::cpu_ticks());
    stop.store(true, Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let (mut ok, mut failed, mut first_error) = (0, 0, None);
    for lane in lanes {
        if let Ok(lane) = lane.await {
            let _ = histogram.add(&lane.histogram);
            ok += lane.ok;
            failed += lane.failed;
            first_error = first_error.or(lane.first_error);
        }
    }
    let by_process =
        procstat::cpu_by_process(servers, server_before.as_deref(), server_after.as_deref());
    let server_cpu_s = by_process
        .as_ref()
        .map(|v| v.iter().map(|(_, c)| c).sum::<f64>());
    let loadgen_cpu_s = lg_after.cpu_seconds - lg_before.cpu_seconds;
    PublishStep {
        publishers,
        seconds: elapsed,
        ok,
        failed,
        per_s: ok as f64 / elapsed.max(1e-9),
        latency: Percentiles::of(&histogram),
        server_cpu_s,
        server_cpu_by_process: by_process.unwrap_or_default(),
        loadgen_cpu_share: loadgen_cpu_s / elapsed.max(1e-9),
        other_cpu_share: cpus.iter().map(|c| c.busy).sum::<f64>()
            - server_cpu_s.unwrap_or(0.0) / elapsed.max(1e-9)
            - loadgen_cpu_s / elapsed.max(1e-9),
        first_error,
    }
}

/// Runs every step of `params` on one server.
///
/// # Errors
/// Never at present; the signature leaves room for a failed start.
pub async fn publish(
    target: &Target,
    servers: &[ServerProcess],
    params: &PublishParams,
) -> anyhow::Result<PublishResult> {
    let target = Arc::new(target.clone());
    let mut steps = Vec::new();
    for &publishers in &params.publishers {
        let s = step(
            &target,
            servers,
            publishers,
            params.seconds,
            params.payload_bytes,
        )
        .await;
        tracing::info!(
            publishers,
            per_s = s.per_s as u64,
            p99_ms = s.latency.p99_ms,
            failed = s.failed,
            "publish step"
        );
        steps.push(s);
    }
    Ok(PublishResult { steps })
}

/// Publishing alone, on a fresh server, for the targets that ask for it.
#[derive(Debug)]
pub struct Publish;

impl Workload for Publish {
    const NAME: &'static str = "publish";
    const SECTION: &'static str = "publish";
    const OPT_IN: bool = true;
    type Config = PublishParams;
    type Output = PublishResult;

    fn jobs(_: &PublishParams) -> Vec<String> {
        vec!["publish".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &PublishParams, _: usize) -> anyhow::Result<PublishResult> {
        let (target, servers) = bench.server.restart().await?;
        publish(&target, &servers, p).await
    }

    fn disturbance(output: &PublishResult) -> f64 {
        output
            .steps
            .iter()
            .map(|s| s.other_cpu_share)
            .fold(0.0, f64::max)
    }
}
