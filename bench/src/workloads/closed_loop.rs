//! Publishers in a closed loop, what publishing alone ([`super::publish`],
//! one event a request) and in batches ([`super::batch`], many a request)
//! share: each publisher is a keep-alive HTTP/1.1 connection that sends
//! the next request as soon as the previous one is answered. A step runs
//! every publisher for a short warm-up, then for the measured time; latency
//! is request to answer, in an HDR histogram. The server side's CPU time
//! (the server, and its Redis when it has one) and the load generator's are
//! read from `/proc` around the measured time, as in the other workloads.
//!
//! A request counts in the measured time when it was sent in it. What an
//! answer acknowledges is judged by an [`Acknowledgement`]: a 2xx for one
//! event, or a 2xx listing the batch's every event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::step::Percentiles;
use crate::procstat::{self, ServerProcess};
use crate::target::Target;

/// How long every publisher runs before the measured time.
pub const WARM_UP: Duration = Duration::from_millis(500);

/// How long one request may wait for its answer before it counts as failed
/// (and its connection is dropped).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a refused answer's body a failure quotes.
const QUOTED: usize = 200;

/// What a successful answer must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledgement {
    /// A 2xx acknowledges the request's one event, whatever its body.
    Status,
    /// A 2xx must be a batch answer (`{"events": [...]}`) listing exactly
    /// this many stored events.
    Batch(u64),
}

impl Acknowledgement {
    /// The events a 2xx answer with `body` acknowledges.
    ///
    /// # Errors
    /// For a batch, when the body is not a batch answer or lists another
    /// number of events than the batch has.
    pub fn events(self, body: &[u8]) -> Result<u64, String> {
        match self {
            Self::Status => Ok(1),
            Self::Batch(expected) => {
                let answer: shared::PublishBatchResponse = serde_json::from_slice(body)
                    .map_err(|e| format!("the answer is not a batch answer: {e}"))?;
                let listed = answer.events.len() as u64;
                if listed == expected {
                    Ok(listed)
                } else {
                    Err(format!(
                        "the answer lists {listed} stored events of the batch's {expected}"
                    ))
                }
            }
        }
    }
}

/// The request every publisher sends, again and again.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its body.
    pub body: Bytes,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// What its answer must say.
    pub acknowledgement: Acknowledgement,
}

/// What one step measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Concurrent publishers.
    pub publishers: u32,
    /// Measured time, s.
    pub seconds: f64,
    /// Requests sent in that time and acknowledged.
    pub ok: u64,
    /// The events those acknowledged (by their answers).
    pub events: u64,
    /// Requests sent in that time that failed (and connections that could
    /// not be opened).
    pub failed: u64,
    /// Request-to-answer time of the acknowledged requests.
    pub latency: Percentiles,
    /// Server-side CPU time during the step, s (every process of the target
    /// together).
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s` by process (`server 1`, `redis`, ...).
    pub server_cpu_by_process: Vec<(String, f64)>,
    /// The load generator's CPU time over the step, as a share of a core.
    pub loadgen_cpu_share: f64,
    /// Of the CPUs' busy time, the share (of one core) used by neither the
    /// server nor the load generator.
    pub other_cpu_share: f64,
    /// The first failure.
    pub first_error: Option<String>,
}

impl Measured {
    /// `count` per measured second.
    pub fn per_s(&self, count: u64) -> f64 {
        count as f64 / self.seconds.max(1e-9)
    }
}

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

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// One publisher's counts.
struct Lane {
    histogram: Histogram<u64>,
    ok: u64,
    events: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Lane {
    fn fail(&mut self, error: String) {
        self.failed += 1;
        self.first_error.get_or_insert(error);
    }
}

/// How one request went.
enum Outcome {
    /// Acknowledged: the events its answer acknowledged.
    Acknowledged(u64),
    /// Answered, but refused or not as it must be; the connection goes on.
    Refused(String),
    /// No answer (a broken connection, a timeout): the connection is
    /// dropped.
    Broken(String),
}

/// Sends `request` on `sender` and judges its answer.
async fn send(sender: &mut Sender, target: &Target, request: &Request) -> Outcome {
    let http_request = http::Request::post(target.publish.path.as_str())
        .header(http::header::HOST, target.publish.host())
        .header(http::header::CONTENT_TYPE, request.content_type)
        .body(Full::new(request.body.clone()))
        .expect("a request");
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
        sender.ready().await?;
        let response = sender.send_request(http_request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer in {REQUEST_TIMEOUT:?}")));
    match answer {
        Err(e) => Outcome::Broken(format!("{e:#}")),
        Ok((status, body)) if !status.is_success() => Outcome::Refused(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(QUOTED)])
        )),
        Ok((_, body)) => match request.acknowledgement.events(&body) {
            Ok(events) => Outcome::Acknowledged(events),
            Err(e) => Outcome::Refused(e),
        },
    }
}

/// Publishes `request` in a closed loop until `stop`; counts only the
/// requests sent while `measuring`.
async fn lane(
    target: Arc<Target>,
    request: Arc<Request>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Lane {
    let mut out = Lane {
        histogram: histogram(),
        ok: 0,
        events: 0,
        failed: 0,
        first_error: None,
    };
    let mut sender: Option<Sender> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut s = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => match connect(&target).await {
                Ok(s) => s,
                Err(e) => {
                    out.fail(format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let started = Instant::now();
        let counted = measuring.load(Ordering::Relaxed);
        let outcome = send(&mut s, &target, &request).await;
        if !matches!(outcome, Outcome::Broken(_)) {
            sender = Some(s);
        }
        if !counted {
            continue;
        }
        match outcome {
            Outcome::Acknowledged(events) => {
                out.ok += 1;
                out.events += events;
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                out.histogram.saturating_record(us.max(1));
            }
            Outcome::Refused(e) | Outcome::Broken(e) => out.fail(e),
        }
    }
    out
}

/// Runs one step on `target`, whose server side is `servers`: `publishers`
/// publishers sending `request` for the warm-up, then for `seconds`.
pub async fn step(
    target: &Arc<Target>,
    servers: &[ServerProcess],
    publishers: u32,
    seconds: f64,
    request: Request,
) -> Measured {
    let request = Arc::new(request);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let lanes: Vec<_> = (0..publishers.max(1))
        .map(|_| {
            tokio::spawn(lane(
                target.clone(),
                request.clone(),
                measuring.clone(),
                stop.clone(),
            ))
        })
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
    let mut all = Lane {
        histogram: histogram(),
        ok: 0,
        events: 0,
        failed: 0,
        first_error: None,
    };
    for lane in lanes {
        if let Ok(lane) = lane.await {
            let _ = all.histogram.add(&lane.histogram);
            all.ok += lane.ok;
            all.events += lane.events;
            all.failed += lane.failed;
            all.first_error = all.first_error.or(lane.first_error);
        }
    }
    let by_process =
        procstat::cpu_by_process(servers, server_before.as_deref(), server_after.as_deref());
    let server_cpu_s = by_process
        .as_ref()
        .map(|v| v.iter().map(|(_, c)| c).sum::<f64>());
    let loadgen_cpu_s = lg_after.cpu_seconds - lg_before.cpu_seconds;
    let seconds = elapsed.max(1e-9);
    Measured {
        publishers,
        seconds: elapsed,
        ok: all.ok,
        events: all.events,
        failed: all.failed,
        latency: Percentiles::of(&all.histogram),
        server_cpu_s,
        server_cpu_by_process: by_process.unwrap_or_default(),
        loadgen_cpu_share: loadgen_cpu_s / seconds,
        other_cpu_share: cpus.iter().map(|c| c.busy).sum::<f64>()
            - server_cpu_s.unwrap_or(0.0) / seconds
            - loadgen_cpu_s / seconds,
        first_error: all.first_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(events: u64) -> Vec<u8> {
        let events: Vec<serde_json::Value> = (0..events)
            .map(|seq| {
                serde_json::json!({
                    "event_id": format!("e-{seq}"),
                    "id": "00000000-0000-0000-0000-000000000000",
                    "seq": seq,
                    "topic": "default",
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
    }

    #[test]
    fn a_batch_answer_must_list_every_event() {
        assert_eq!(Acknowledgement::Batch(3).events(&answer(3)), Ok(3));
        let short = Acknowledgement::Batch(3).events(&answer(2)).unwrap_err();
        assert_eq!(short, "the answer lists 2 stored events of the batch's 3");
        assert!(Acknowledgement::Batch(3).events(&answer(4)).is_err());
        // A single event's answer, or no JSON, is not a batch answer.
        let single = br#"{"event_id":"e-1","id":"00000000-0000-0000-0000-000000000000","seq":1,"topic":"default"}"#;
        for body in [&single[..], b"", b"ok"] {
            let error = Acknowledgement::Batch(1).events(body).unwrap_err();
            assert!(
                error.starts_with("the answer is not a batch answer"),
                "{error}"
            );
        }
        // One event: any 2xx body.
        assert_eq!(Acknowledgement::Status.events(b""), Ok(1));
    }
}
