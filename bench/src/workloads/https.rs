//! HTTPS next to plain HTTP/1.1: idle memory per subscriber and fan-out
//! latency of one server over plain HTTP/1.1, HTTP/1.1 over TLS, HTTP/2
//! over TLS with one stream per connection, and HTTP/2 over TLS with
//! `streams_per_connection` streams per connection (as a browser's tabs
//! share one), each wire on a fresh server with a fresh certificate
//! ([`crate::tls`]). HTTP/2 runs where the server picks `h2` by ALPN
//! (nginx with nchan does not: nchan's EventSource over HTTP/2 is reported
//! broken, slact/nchan#576, so it is measured over HTTP/1.1 with TLS).
//!
//! For each wire, `subscribers` streams are opened (in-process: see
//! [`crate::inprocess`]) and left idle for 2 s (the server side's resident
//! memory before and after, over the subscribers, is the memory per idle
//! subscriber); then `rate` events per second for `seconds`, published
//! open-loop with their send time as in every other workload, and every
//! delivery's latency is recorded. It runs only when named
//! (`--workloads https`), against the servers with a `tls` table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::step::{IdleMemory, Percentiles};
use super::{Bench, Restart, Started, Workload};
use crate::inprocess::{Subscribers, Tally, Wire};
use crate::procstat::{self, ServerProcess};
use crate::publisher::Publisher;
use crate::server_proc::ServerSpec;
use crate::tls::{TlsFiles, ALPN_H2, ALPN_HTTP1};

/// How subscribers talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WireName {
    /// Plain HTTP/1.1, one connection per subscriber.
    H1,
    /// HTTP/1.1 over TLS, one connection per subscriber.
    H1Tls,
    /// HTTP/2 over TLS, one stream per connection.
    H2Tls,
    /// HTTP/2 over TLS, `streams_per_connection` streams per connection.
    H2TlsMux,
}

impl WireName {
    fn is_h2(self) -> bool {
        matches!(self, Self::H2Tls | Self::H2TlsMux)
    }
}

fn every_wire() -> Vec<WireName> {
    vec![
        WireName::H1,
        WireName::H1Tls,
        WireName::H2Tls,
        WireName::H2TlsMux,
    ]
}

/// The workload's parameters (`[https]` in the suite's configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsParams {
    /// Idle subscribers per wire.
    pub subscribers: u32,
    /// Events per second during the fan-out.
    pub rate: f64,
    /// Publishing time, s.
    pub seconds: f64,
    /// Streams per HTTP/2 connection on the multiplexed wire.
    pub streams_per_connection: u32,
    /// Payload size, bytes.
    pub payload_bytes: usize,
    /// The wires to measure, in order (all four when absent).
    #[serde(default = "every_wire")]
    pub wires: Vec<WireName>,
}

/// What one wire measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireResult {
    /// The wire.
    pub wire: WireName,
    /// Subscribers asked for.
    pub subscribers: u32,
    /// Connections they used.
    pub connections: u32,
    /// Server memory per idle subscriber.
    pub idle_memory: Option<IdleMemory>,
    /// Events published.
    pub events: u64,
    /// Events × subscribers.
    pub expected: u64,
    /// Measured events received.
    pub delivered: u64,
    /// Publish-to-receive latency of every delivery.
    pub latency: Percentiles,
    /// Publish requests that failed.
    pub publish_failed: u64,
}

/// Every wire measured on one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpsResult {
    /// In the order of the configuration.
    pub wires: Vec<WireResult>,
    /// Wires not measured, and why.
    pub skipped: Vec<String>,
}

/// Starts the server afresh for `wire`: plain for plain HTTP/1.1, serving
/// HTTPS with `tls` otherwise.
async fn start(
    server: &mut dyn Restart,
    wire: WireName,
    tls: &TlsFiles,
) -> anyhow::Result<Started> {
    if wire == WireName::H1 {
        server.restart().await
    } else {
        server.restart_tls(tls).await
    }
}

/// Whether the server at `addr` picks HTTP/2 by ALPN.
async fn speaks_h2(addr: std::net::SocketAddr, tls: &TlsFiles) -> anyhow::Result<bool> {
    let connector = tls.connector(&[ALPN_H2, ALPN_HTTP1])?;
    let (_, alpn) = crate::tls::connect(addr, Some(&connector)).await?;
    Ok(alpn.as_deref() == Some(ALPN_H2))
}

/// The server side's resident memory now, when its processes are known.
fn rss(servers: &[ServerProcess]) -> Option<u64> {
    procstat::sample_servers(servers).map(|s| procstat::total(&s).rss_bytes)
}

/// Waits until `done` holds or `within` has passed; whether it held.
async fn wait_until(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Measures `wire` on a fresh server; `None` when the server does not
/// speak it.
async fn measure(
    server: &mut dyn Restart,
    p: &HttpsParams,
    wire: WireName,
) -> anyhow::Result<Option<WireResult>> {
    let files = TlsFiles::make()?;
    let (target, servers) = start(server, wire, &files).await?;
    let endpoint = target
        .subscribe
        .first()
        .cloned()
        .unwrap_or_else(|| target.publish.clone());
    if wire.is_h2() && !speaks_h2(endpoint.addr, &files).await? {
        return Ok(None);
    }
    let http1 = (wire != WireName::H1)
        .then(|| files.connector(&[ALPN_HTTP1]))
        .transpose()?;
    let way = match wire {
        WireName::H1 | WireName::H1Tls => Wire::Http1(http1.clone()),
        WireName::H2Tls => Wire::Http2(files.connector(&[ALPN_H2])?, 1),
        WireName::H2TlsMux => Wire::Http2(
            files.connector(&[ALPN_H2])?,
            usize::try_from(p.streams_per_connection).unwrap_or(1),
        ),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss(&servers);
    let tally = Arc::new(Tally::new(target.data_format));
    let n = usize::try_from(p.subscribers).unwrap_or(0);
    let subscribers = Subscribers::open(&way, &endpoint, n, &tally).await;
    if !wait_until(Duration::from_secs(60), || tally.open() >= n as u64).await {
        anyhow::bail!("{wire:?}: only {} of {n} subscribers opened", tally.open());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_memory = before.zip(rss(&servers)).map(|(b, a)| IdleMemory {
        rss_before: b,
        rss_after: a,
        per_subscriber: (a as f64 - b as f64) / f64::from(p.subscribers.max(1)),
    });
    let publisher = Publisher::with_tls(&target, 1, http1.as_ref());
    let events = ((p.rate * p.seconds).round() as u64).max(1);
    let expected = events * u64::from(p.subscribers);
    publisher
        .open_loop(
            0,
            events,
            p.rate,
            p.payload_bytes,
            Duration::from_secs(5),
            None,
        )
        .await;
    wait_until(Duration::from_secs(5), || tally.delivered() >= expected).await;
    let publish_failed = publisher.counts().failed;
    publisher.shutdown().await;
    let connections = u32::try_from(subscribers.connections).unwrap_or(u32::MAX);
    subscribers.close();
    Ok(Some(WireResult {
        wire,
        subscribers: p.subscribers,
        connections,
        idle_memory,
        events,
        expected,
        delivered: tally.delivered(),
        latency: Percentiles::of(&tally.latency()),
        publish_failed,
    }))
}

/// HTTPS next to plain HTTP/1.1, every wire on a fresh server.
#[derive(Debug)]
pub struct Https;

impl Workload for Https {
    const NAME: &'static str = "https";
    const SECTION: &'static str = "https";
    const BY_DEFAULT: bool = false;
    type Config = HttpsParams;
    type Output = HttpsResult;

    fn applies_to(spec: &ServerSpec) -> bool {
        spec.tls.is_some()
    }

    fn jobs(_: &HttpsParams) -> Vec<String> {
        vec!["https".to_owned()]
    }

    async fn run(bench: Bench<'_>, p: &HttpsParams, _: usize) -> anyhow::Result<HttpsResult> {
        let server = bench.server;
        let mut result = HttpsResult::default();
        for &wire in &p.wires {
            match measure(&mut *server, p, wire).await? {
                Some(measured) => result.wires.push(measured),
                None => result
                    .skipped
                    .push(format!("{wire:?}: the server does not pick h2 by ALPN")),
            }
        }
        Ok(result)
    }

    fn disturbance(_: &HttpsResult) -> f64 {
        // Not measured: every wire is one short step on a fresh server.
        0.0
    }

    fn log(server: &str, output: &HttpsResult) {
        for w in &output.wires {
            tracing::info!(
                server,
                wire = ?w.wire,
                connections = w.connections,
                kib_per_subscriber = w.idle_memory.map_or(f64::NAN, |m| m.per_subscriber / 1024.0),
                p50_ms = w.latency.p50_ms,
                p99_ms = w.latency.p99_ms,
                max_ms = w.latency.max_ms,
                delivered = w.delivered,
                expected = w.expected,
                "https"
            );
        }
    }
}
