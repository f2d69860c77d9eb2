//! `GET /time`: the server's clock, `{"unix_ms": N}`.
//!
//! The page asks it a few times when it connects and keeps the answer with
//! the fastest round trip: the server's clock minus the middle of that
//! round trip is the page's clock offset, which turns an event's `time` into
//! how late it arrived.

use std::time::{SystemTime, UNIX_EPOCH};

use shared::ServerTime;
use warp::http::header::CACHE_CONTROL;
use warp::http::HeaderValue;
use warp::Reply;

/// The answer to `GET /time`: the clock now, never cached.
pub fn now() -> warp::reply::Response {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut response = warp::reply::json(&ServerTime { unix_ms }).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
