//! The log line of one request. Its target stays `server::serve`, where
//! it was first written, so that filters (`RUST_LOG`) and JSON logs keep
//! their meaning.

use std::net::SocketAddr;
use std::time::Instant;

use warp::http::{Method, StatusCode};

/// One line per request: at info when it succeeded, at debug when it was
/// refused, so that a client repeating bad requests cannot grow the log
/// (refusals are counted in `/metrics`, and logged once in a while).
pub(crate) fn log_request(
    remote: SocketAddr,
    method: &Method,
    path: &str,
    status: StatusCode,
    started: Instant,
) {
    let status = status.as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    if status < 400 {
        tracing::info!(target: "server::serve", %remote, %method, path, status, elapsed_ms, "request");
    } else {
        tracing::debug!(target: "server::serve", %remote, %method, path, status, elapsed_ms, "request");
    }
}
