//! The HTTP version the page talks to the server in (`h2`, `http/1.1`).
//!
//! An open `EventSource` has no resource timing entry until it ends, so
//! the page fetches `/healthz` once and reads that entry's
//! `nextHopProtocol`: the same origin, so the same connection pool, as the
//! stream.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

/// The path fetched to learn the protocol.
const PROBE: &str = "/healthz";

/// How many times, [`RETRY`] apart, the page looks for the probe's timing
/// entry (the browser adds it shortly after the response ends).
const TRIES: u32 = 20;
const RETRY: Duration = Duration::from_millis(100);

/// The protocol of the newest timing entry of `url`, if the browser has one.
fn next_hop_protocol(url: &str) -> Option<String> {
    let performance = web_sys::window()?.performance()?;
    let entries = performance.get_entries_by_name(url);
    let last = entries.get(entries.length().checked_sub(1)?);
    let timing = last.dyn_into::<web_sys::PerformanceResourceTiming>().ok()?;
    Some(timing.next_hop_protocol()).filter(|p| !p.is_empty())
}

fn look(url: String, found: RwSignal<String>, tries: u32) {
    if let Some(protocol) = next_hop_protocol(&url) {
        found.set(protocol);
    } else if tries > 0 {
        set_timeout(move || look(url, found, tries - 1), RETRY);
    }
}

/// One entry of the status bar's list: "Protocol: h2".
#[component]
pub fn ProtocolStat() -> impl IntoView {
    let found = RwSignal::new("—".to_owned());
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default();
    let url = format!("{origin}{PROBE}");
    spawn_local(async move {
        let Ok(response) = gloo_net::http::Request::get(PROBE).send().await else {
            return;
        };
        // The entry is written once the body is read to its end.
        let _ = response.text().await;
        look(url, found, TRIES);
    });
    view! {
        <div>
            <dt>"Protocol"</dt>
            <dd id="stat-protocol">{move || found.get()}</dd>
        </div>
    }
}
