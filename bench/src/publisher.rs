//! The open-loop publisher.
//!
//! Events are scheduled at fixed intervals from the start of a run and
//! handed to a pool of keep-alive HTTP/1.1 connections; the scheduler never
//! waits for answers. Event `seq` always goes out on connection (lane)
//! `seq % connections`, one request after the other, so the publishing
//! order is defined within a lane (lanes run concurrently). Each payload carries its scheduled send time, so when
//! the server (or the publisher) falls behind, the delay shows in every
//! subscriber's latency instead of silently lowering the rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::payload;
use crate::target::{Endpoint, PublishFormat, Target, TopicRoutes};
use crate::topics::TopicPlan;

/// One request: its path when it is not the endpoint's, and its body.
type Job = (Option<String>, Bytes);

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(error);
        }
    }
}

/// Counts of publish requests so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishCounts {
    /// Requests handed to the pool.
    pub queued: u64,
    /// Answered with a 2xx status.
    pub ok: u64,
    /// Failed (connection error or another status).
    pub failed: u64,
    /// The first failure.
    pub first_error: Option<String>,
}

/// What one open-loop run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenLoopRun {
    /// The first seq published.
    pub first_seq: u64,
    /// The last seq published.
    pub last_seq: u64,
    /// How late the scheduler handed out an event at worst.
    pub max_lateness: Duration,
    /// From the first scheduled send to the last answer.
    pub elapsed: Duration,
}

/// A pool of publishing connections to one server.
#[derive(Debug)]
pub struct Publisher {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    next_lane: AtomicU64,
    counters: Arc<Counters>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    format: PublishFormat,
    topic: Option<String>,
    routes: Option<TopicRoutes>,
}

impl Publisher {
    /// Starts `connections` publishing connections (opened lazily) to
    /// `target`.
    pub fn new(target: &Target, connections: usize) -> Self {
        Self::with_tls(target, connections, None)
    }

    /// As [`Publisher::new`], over TLS when `tls` is given (a server that
    /// serves HTTPS only).
    pub fn with_tls(target: &Target, connections: usize, tls: Option<&TlsConnector>) -> Self {
        let counters = Arc::new(Counters::default());
        let endpoint = Arc::new(target.publish.clone());
        let content_type = target.publish_format.content_type();
        let (lanes, tasks) = (0..connections.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel::<Job>();
                let task = tokio::spawn(connection(
                    Lane {
                        endpoint: endpoint.clone(),
                        content_type,
                        tls: tls.cloned(),
                    },
                    rx,
                    counters.clone(),
                ));
                (tx, task)
            })
            .unzip();
        Self {
            lanes,
            next_lane: AtomicU64::new(0),
            counters,
            tasks,
            format: target.publish_format,
            topic: target.topic.clone(),
            routes: target.topics.clone(),
        }
    }

    /// How many lanes (connections) there are.
    pub fn lanes(&self) -> u64 {
        self.lanes.len() as u64
    }

    /// Queues the publication of `text` on the next lane in turn, without
    /// waiting for it.
    pub fn publish(&self, text: String) {
        let lane = self.next_lane.fetch_add(1, Ordering::Relaxed);
        self.publish_on(lane, text);
    }

    /// Queues the publication of `text` on lane `lane % lanes`, without
    /// waiting for it.
    pub fn publish_on(&self, lane: u64, text: String) {
        self.publish_to(lane, None, text);
    }

    /// Queues the publication of `text` to `topic` (on the target's topic
    /// routes; the target's own topic when `None`) on lane `lane % lanes`,
    /// without waiting for it.
    pub fn publish_to(&self, lane: u64, topic: Option<&str>, text: String) {
        let path = topic
            .zip(self.routes.as_ref())
            .map(|(t, routes)| routes.publish_path(t));
        let body = self.format.body(topic.or(self.topic.as_deref()), text);
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        let lane = usize::try_from(lane % self.lanes()).unwrap_or(0);
        if self
            .lanes
            .get(lane)
            .is_none_or(|l| l.send((path, body)).is_err())
        {
            self.counters.fail("the publisher is shut down".to_owned());
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> PublishCounts {
        PublishCounts {
            queued: self.counters.queued.load(Ordering::Relaxed),
            ok: self.counters.ok.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            first_error: self
                .counters
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Waits until every queued request is answered or `timeout` passes;
    /// returns whether all were answered.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.counts();
            if c.ok + c.failed >= c.queued {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Publishes measured events `first_seq..first_seq + count` at `rate`
    /// per second, each padded to `size` bytes (with a `plan`, each to its
    /// topic), then waits (at most `answer_timeout`) for the answers.
    pub async fn open_loop(
        &self,
        first_seq: u64,
        count: u64,
        rate: f64,
        size: usize,
        answer_timeout: Duration,
        plan: Option<&TopicPlan>,
    ) -> OpenLoopRun {
        let interval_ns = 1e9 / rate.max(1e-3);
        let start = Instant::now();
        let start_ns = crate::now_ns();
        let mut max_lateness = Duration::ZERO;
        for i in 0..count {
            let due = Duration::from_nanos((i as f64 * interval_ns) as u64);
            let elapsed = start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
            max_lateness = max_lateness.max(start.elapsed().saturating_sub(due));
            let sent_ns = start_ns + u64::try_from(due.as_nanos()).unwrap_or(u64::MAX);
            let seq = first_seq + i;
            let topic = plan.map(|p| p.topic_of(seq));
            self.publish_to(seq, topic.as_deref(), payload::measured(seq, sent_ns, size));
        }
        self.wait_idle(answer_timeout).await;
        OpenLoopRun {
            first_seq,
            last_seq: (first_seq + count).saturating_sub(1),
            max_lateness,
            elapsed: start.elapsed(),
        }
    }

    /// Closes the pool after the queued requests.
    pub async fn shutdown(mut self) {
        self.lanes.clear();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(endpoint: &Endpoint, tls: Option<&TlsConnector>) -> anyhow::Result<Sender> {
    let (stream, _) = crate::tls::connect(endpoint.addr, tls)
        .await
        .with_context(|| format!("connect {}", endpoint.addr))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Where one publishing connection sends its requests, and how.
struct Lane {
    endpoint: Arc<Endpoint>,
    content_type: &'static str,
    tls: Option<TlsConnector>,
}

/// Why a publish request failed.
enum SendError {
    /// The request never left: the connection was unusable. Safe to retry.
    NotSent(anyhow::Error),
    /// The request was sent and failed: retrying could publish twice.
    Failed(anyhow::Error),
}

async fn send(
    sender: &mut Sender,
    endpoint: &Endpoint,
    path: Option<&str>,
    content_type: &'static str,
    body: Bytes,
) -> Result<(), SendError> {
    sender
        .ready()
        .await
        .map_err(|e| SendError::NotSent(e.into()))?;
    let request = http::Request::post(path.unwrap_or(endpoint.path.as_str()))
        .header(http::header::HOST, endpoint.host())
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .map_err(|e| SendError::Failed(e.into()))?;
    let response = sender.send_request(request).await.map_err(|e| {
        if e.is_canceled() {
            SendError::NotSent(e.into())
        } else {
            SendError::Failed(e.into())
        }
    })?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| SendError::Failed(e.into()))?
        .to_bytes();
    if !status.is_success() {
        return Err(SendError::Failed(anyhow::anyhow!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )));
    }
    Ok(())
}

async fn connection(lane: Lane, mut jobs: mpsc::UnboundedReceiver<Job>, counters: Arc<Counters>) {
    let Lane {
        endpoint,
        content_type,
        tls,
    } = lane;
    let mut sender: Option<Sender> = None;
    loop {
        let Some((path, body)) = jobs.recv().await else {
            return;
        };
        // One retry on a fresh connection when the request never left: the
        // server may close an idle keep-alive connection between requests.
        let mut result = Err(anyhow::anyhow!("not sent"));
        for _ in 0..2 {
            let current = match sender.take() {
                Some(s) if !s.is_closed() => Ok(s),
                _ => connect(&endpoint, tls.as_ref()).await,
            };
            let mut s = match current {
                Ok(s) => s,
                Err(e) => {
                    result = Err(e);
                    continue;
                }
            };
            match send(
                &mut s,
                &endpoint,
                path.as_deref(),
                content_type,
                body.clone(),
            )
            .await
            {
                Ok(()) => {
                    sender = Some(s);
                    result = Ok(());
                    break;
                }
                Err(SendError::NotSent(e)) => result = Err(e),
                Err(SendError::Failed(e)) => {
                    result = Err(e);
                    break;
                }
            }
        }
        match result {
            Ok(()) => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => counters.fail(format!("{e:#}")),
        }
    }
}
