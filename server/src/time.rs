//! `GET /time`: the server's clock, `{"unix_ms": N}`.
//!
//! The page asks it a few times when it connects and keeps the answer with
//! the fastest round trip: the server's clock minus the middle of that
//! round trip is the page's clock offset, which turns an event's `time` into
//! how late it arrived.
//!
//! It is also the server's clock for everything that ages: an event's age
//! under `--history-ttl` is this clock minus the event's `time`.

use std::time::{SystemTime, UNIX_EPOCH};

use shared::ServerTime;
use warp::http::header::CACHE_CONTROL;
use warp::http::HeaderValue;
use warp::Reply;

/// The server's clock: milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms() -> u64 {
    ms_of(SystemTime::now())
}

/// `at` in milliseconds since the Unix epoch (0 before it).
pub(crate) fn ms_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An event's `time` (RFC 3339, as events carry it) in milliseconds since
/// the Unix epoch; `None` when it is not such a time.
pub(crate) fn event_ms(time: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(time).ok().map(ms_of)
}

/// Whether an event of `time_ms` is older than `ttl` at `now_ms`: it is
/// expired once `time_ms + ttl <= now_ms`.
pub(crate) fn expired(time_ms: u64, ttl: std::time::Duration, now_ms: u64) -> bool {
    let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    time_ms.saturating_add(ttl) <= now_ms
}

/// Whether an event whose `time` is as events carry it is older than `ttl`
/// at `now_ms`. One whose time does not read counts from now, so it is not
/// (a TTL is at least 1 ms).
pub(crate) fn event_expired(time: &str, ttl: std::time::Duration, now_ms: u64) -> bool {
    event_ms(time).is_some_and(|time_ms| expired(time_ms, ttl, now_ms))
}

/// The answer to `GET /time`: the clock now, never cached.
pub fn now() -> warp::reply::Response {
    let unix_ms = unix_ms();
    let mut response = warp::reply::json(&ServerTime { unix_ms }).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
