//! The page's HTTP calls: `POST /publish`, the probe of `/stream` that
//! tells why a stream was refused (an `EventSource` never sees the status),
//! `GET /time` for the clock offset and the HTTP version, `GET /topics` for
//! the topic list and for how many events a new stream may ask for.

use gloo_net::http::Request;
use shared::{PublishRequest, PublishResponse, TopicsPage};
use wasm_bindgen::JsCast;

use crate::clock::{parse_server_time, Probe};
use crate::decode;

/// Publishes `request` through the server that served the page, with
/// `Authorization: Bearer <token>` when the page holds a token.
///
/// # Errors
/// The server's own `message` when it refuses the request (its
/// `shared::ErrorBody`), or a sentence saying the server could not be reached or
/// answered something unexpected.
pub async fn publish(request: &PublishRequest) -> Result<PublishResponse, String> {
    let mut builder = Request::post("/publish");
    if let Some(token) = crate::token::stored() {
        builder = builder.header("authorization", &format!("Bearer {token}"));
    }
    let response = builder
        .header("content-type", "application/json")
        .body(decode::publish_request(request))
        .map_err(|err| format!("could not encode the request: {err}"))?
        .send()
        .await
        .map_err(|err| format!("could not reach the server: {err}"))?;
    let text = response.text().await.unwrap_or_default();
    if response.ok() {
        return decode::publish_response(&text)
            .map_err(|err| format!("the server's answer was not understood: {err}"));
    }
    let status = response.status();
    match decode::error_body(&text) {
        Ok(body) => Err(body.message),
        Err(_) => Err(format!(
            "the server answered {status} {}",
            response.status_text()
        )),
    }
}

/// Asks for the stream at `url` once with `fetch`, to learn why the browser
/// refused it: `Some(message)` for a 401 or 403 (the server's own message),
/// `None` when the stream opens (it is closed at once) or fails another way.
pub async fn stream_refusal(url: &str) -> Option<(u16, String)> {
    let abort = web_sys::AbortController::new().ok()?;
    let response = Request::get(url)
        .abort_signal(Some(&abort.signal()))
        .send()
        .await
        .ok()?;
    let status = response.status();
    if !matches!(status, 401 | 403) {
        // A stream that opened would go on for good.
        abort.abort();
        return None;
    }
    let text = response.text().await.unwrap_or_default();
    let message = decode::error_body(&text)
        .map_or_else(|_| format!("the server answered {status}"), |b| b.message);
    Some((status, message))
}

/// Aborts whatever `controller` signals after `ms` milliseconds: a request
/// to an origin whose connections are all taken waits for good.
fn abort_after(controller: &web_sys::AbortController, ms: u64) {
    let controller = send_wrapper::SendWrapper::new(controller.clone());
    leptos::prelude::set_timeout(
        move || controller.abort(),
        std::time::Duration::from_millis(ms),
    );
}

/// How long a probe or a poll may take.
const TIMEOUT_MS: u64 = 3000;

/// One `GET /time` round trip, and the HTTP version it went over (the
/// resource timing's `nextHopProtocol`), when the browser tells it.
/// `None` when the server did not answer in time or answered otherwise.
pub async fn probe_time() -> Option<(Probe, Option<String>)> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // A distinct URL for each probe: its own resource timing entry.
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let url = format!("/time?probe={n}");
    let abort = web_sys::AbortController::new().ok()?;
    abort_after(&abort, TIMEOUT_MS);
    let sent_ms = js_sys::Date::now();
    let response = Request::get(&url)
        .abort_signal(Some(&abort.signal()))
        .send()
        .await
        .ok()?;
    if !response.ok() {
        return None;
    }
    let text = response.text().await.ok()?;
    let received_ms = js_sys::Date::now();
    let probe = Probe {
        sent_ms,
        received_ms,
        server_ms: parse_server_time(&text)?,
    };
    Some((probe, next_hop_protocol(&url)))
}

/// The protocol the request for `path` went over, from its resource timing
/// entry; the entries are cleared after, so the browser's buffer of them
/// (250 by default) never fills with the page's polls.
fn next_hop_protocol(path: &str) -> Option<String> {
    let window = web_sys::window()?;
    let performance = window.performance()?;
    let origin = window.location().origin().ok()?;
    let entries = performance.get_entries_by_name(&format!("{origin}{path}"));
    let protocol = entries
        .iter()
        .filter_map(|entry| entry.dyn_into::<web_sys::PerformanceResourceTiming>().ok())
        .map(|timing| timing.next_hop_protocol())
        .find(|protocol| !protocol.is_empty());
    performance.clear_resource_timings();
    protocol
}

/// `GET /topics`: the first `limit` live topics this page may read, and
/// the server's `history_per_topic`.
///
/// # Errors
/// A sentence saying what failed.
pub async fn topics(limit: u32) -> Result<TopicsPage, String> {
    let abort = web_sys::AbortController::new().map_err(|_| "no AbortController".to_owned())?;
    abort_after(&abort, TIMEOUT_MS);
    let response = Request::get(&format!("/topics?limit={limit}"))
        .abort_signal(Some(&abort.signal()))
        .send()
        .await
        .map_err(|err| format!("could not reach the server: {err}"))?;
    if !response.ok() {
        return Err(format!("the server answered {}", response.status()));
    }
    let text = response
        .text()
        .await
        .map_err(|err| format!("the answer was cut: {err}"))?;
    decode::topics_page(&text).map_err(|err| format!("the answer was not a list of topics: {err}"))
}
