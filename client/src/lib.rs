//! The live stream's web page, a client-side rendered Leptos app that trunk
//! builds from the workspace's `index.html`.
//!
//! - [`stream`]: the `EventSource` hook that exposes the connection as signals.
//! - [`feed`]: the bounded, duplicate-free list of rows and the search in it
//!   (plain Rust, tested on any machine, as are the modules below but
//!   `api`, `token` and `components`).
//! - [`inspector`]: what the inspector panels know, built from
//!   [`clock`] (the clock offset from `GET /time`), [`latency`]
//!   (percentiles and the chart), [`bulk`] (bulk arrival: a buffering
//!   proxy), [`conn_limit`] (the browser's six connections per origin, and
//!   what the other tabs say), [`timeline`] and [`record`] (NDJSON lines
//!   for `server replay`); [`render`]: the panels' display-only markup.
//! - [`decimal`]: figures as text without float formatting.
//! - [`details`]: an event's SSE lines and the `curl` command that resumes
//!   after it.
//! - [`topic`]: the topic choice and the `/stream` URL it opens;
//!   [`topic_rates`]: the rates of `GET /topics`.
//! - [`api`]: `POST /publish`, the probe of a refused stream, `GET /time`,
//!   `GET /topics`.
//! - [`decode`]: the JSON bodies as the shared types, through the browser's
//!   `JSON.parse`.
//! - [`token`]: the access token (session storage, the reading cookie).
//! - [`components`]: status bar, message list, publish form, topic picker,
//!   token panel, and the inspector's panels.
//!
//! Every URL is relative (`/stream`, `/publish`), so the page works when the
//! server serves it from `dist/` and under `trunk serve` with its proxies.

use leptos::prelude::*;

pub mod api;
pub mod bulk;
pub mod clock;
pub mod components;
pub mod conn_limit;
pub mod decimal;
pub mod decode;
pub mod details;
pub mod feed;
pub mod inspector;
pub mod latency;
pub mod record;
pub mod render;
pub mod stream;
pub mod timeline;
pub mod token;
pub mod topic;
pub mod topic_rates;

use std::sync::Arc;

use components::{
    use_shortcuts, EventDetails, MessageList, PublishForm, Recorder, StatusBar, TokenPanel,
    TopicList, TopicPicker, TransportPanel,
};
use feed::Row;
use topic::TopicChoice;

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let topic = RwSignal::new(TopicChoice::All);
    let paused = RwSignal::new(false);
    let query = RwSignal::new(String::new());
    let selected = RwSignal::new(None::<Arc<Row>>);
    let stream = stream::use_stream(topic.into(), paused.into());
    use_shortcuts(paused, selected);

    view! {
        <header class="page-head">
            <div class="title">
                <h1>"Live events"</h1>
                <p class="tagline">"Server-Sent Events from this server, as they happen."</p>
            </div>
            <StatusBar stream=stream topic=topic.into() />
        </header>
        <main class="layout">
            <div class="side">
                <TopicPicker topic=topic refused=stream.refused />
                <TopicList topic=topic />
                <PublishForm />
                <TokenPanel stream=stream />
            </div>
            <MessageList stream=stream paused=paused query=query selected=selected />
            <div class="inspector">
                <TransportPanel stream=stream />
                <EventDetails selected=selected topic=topic.into() />
                <Recorder stream=stream />
            </div>
        </main>
        <footer class="page-foot">
            <p>
                "The list keeps the newest " {feed::MAX_ROWS}
                " rows. After a reconnect the server replays what was missed; "
                "when it cannot, a notice in the list says so. Keys: / search, p pause, "
                "arrows move in the list, Enter opens an event, Escape closes it."
            </p>
        </footer>
    }
}
