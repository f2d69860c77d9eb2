//! Subscribers in the coordinator's own process, for the `https` workload
//! (the worker fleet speaks plain HTTP/1.1 only): over hyper, HTTP/1.1
//! plain or over TLS, one connection each; or over h2, HTTP/2 over TLS,
//! several streams to a connection as a browser's tabs share one. Each
//! reads its stream through the shared WHATWG [`Parser`] and counts the
//! measured payloads it gets, with their latency, in a shared [`Tally`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::bail;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use shared::{Item, Parser};
use tokio_rustls::TlsConnector;

use crate::payload::{self, DataFormat, Payload};
use crate::target::Endpoint;
use crate::tracker::{latency_histogram, record_clamped};

/// What the subscribers share.
#[derive(Debug)]
pub struct Tally {
    data_format: DataFormat,
    /// Subscribers whose response head arrived.
    open: AtomicU64,
    /// Measured events received.
    delivered: AtomicU64,
    /// Their latency, µs.
    latency: Mutex<Histogram<u64>>,
}

impl Tally {
    /// An empty tally for streams whose payloads sit in `data_format`.
    pub fn new(data_format: DataFormat) -> Self {
        Self {
            data_format,
            open: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            latency: Mutex::new(latency_histogram()),
        }
    }

    /// Subscribers whose response head arrived.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Measured events received.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The latency of every measured event received, µs.
    pub fn latency(&self) -> Histogram<u64> {
        self.latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn feed(&self, parser: &mut Parser, chunk: &[u8]) {
        let mut items = Vec::new();
        parser.feed(chunk, &mut items);
        let now = crate::now_ns();
        for item in items {
            let Item::Event(event) = item else { continue };
            let Some(text) = payload::extract(self.data_format, &event.data) else {
                continue;
            };
            if let Some(Payload::Measured { sent_ns, .. }) = payload::parse(&text) {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                let mut latency = self
                    .latency
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                record_clamped(&mut latency, now.saturating_sub(sent_ns) / 1000);
            }
        }
    }
}

/// How the subscribers talk to the server.
#[derive(Clone)]
pub enum Wire {
    /// HTTP/1.1, one connection per subscriber; over TLS with a connector.
    Http1(Option<TlsConnector>),
    /// HTTP/2 over TLS (the connector offers `h2`), this many streams per
    /// connection.
    Http2(TlsConnector, usize),
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http1(tls) => write!(f, "Http1(tls: {})", tls.is_some()),
            Self::Http2(_, streams) => write!(f, "Http2(streams: {streams})"),
        }
    }
}

/// Running subscribers; dropped, they close.
#[derive(Debug)]
pub struct Subscribers {
    tasks: tokio::task::JoinSet<()>,
    /// The connections they use.
    pub connections: usize,
}

impl Subscribers {
    /// Opens `n` subscribers of `endpoint` over `wire`, counting into
    /// `tally`; each runs until it is closed (failures show as subscribers
    /// that never open).
    pub async fn open(wire: &Wire, endpoint: &Endpoint, n: usize, tally: &Arc<Tally>) -> Self {
        let mut tasks = tokio::task::JoinSet::new();
        let endpoint = Arc::new(endpoint.clone());
        let connections = match wire {
            Wire::Http1(tls) => {
                for i in 0..n {
                    let (endpoint, tls, tally) = (endpoint.clone(), tls.clone(), tally.clone());
                    tasks.spawn(async move {
                        let _ = http1(&endpoint, tls.as_ref(), &tally).await;
                    });
                    // Do not flood the accept queue.
                    if i % 64 == 63 {
                        tokio::task::yield_now().await;
                    }
                }
                n
            }
            Wire::Http2(tls, per) => {
                let per = (*per).max(1);
                for first in (0..n).step_by(per) {
                    let streams = per.min(n - first);
                    let (endpoint, tls, tally) = (endpoint.clone(), tls.clone(), tally.clone());
                    tasks.spawn(async move {
                        let _ = http2(&endpoint, &tls, streams, &tally).await;
                    });
                }
                n.div_ceil(per)
            }
        };
        Self { tasks, connections }
    }

    /// Closes every subscriber.
    pub fn close(mut self) {
        self.tasks.abort_all();
    }
}

/// One HTTP/1.1 subscriber (plain or TLS), reading until the end.
async fn http1(
    endpoint: &Endpoint,
    tls: Option<&TlsConnector>,
    tally: &Tally,
) -> anyhow::Result<()> {
    let (io, _) = crate::tls::connect(endpoint.addr, tls).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let response = sender
        .send_request(
            hyper::Request::get(endpoint.path.as_str())
                .header("host", endpoint.host())
                .header("accept", "text/event-stream")
                .body(Full::<Bytes>::default())?,
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
async fn http2(
    endpoint: &Endpoint,
    tls: &TlsConnector,
    streams: usize,
    tally: &Arc<Tally>,
) -> anyhow::Result<()> {
    let (io, _) = crate::tls::connect(endpoint.addr, Some(tls)).await?;
    let (send, connection) = h2::client::handshake(io).await?;
    tokio::spawn(connection);
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let mut send = send.clone().ready().await?;
        let request =
            http::Request::get(format!("https://{}{}", endpoint.addr, endpoint.path)).body(())?;
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
