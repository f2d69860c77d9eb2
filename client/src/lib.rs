//! The live stream's web page, a client-side rendered Leptos app that trunk
//! builds from the workspace's `index.html`.
//!
//! - [`stream`]: the `EventSource` hook that exposes the connection as signals.
//! - [`feed`]: the bounded, duplicate-free list of rows (plain Rust, tested on
//!   any machine).
//! - [`topic`]: the topic choice and the `/stream` URL it opens.
//! - [`api`]: `POST /publish`, and the probe of a refused stream.
//! - [`token`]: the access token (session storage, the reading cookie).
//! - [`components`]: status bar, message list, publish form, topic picker.
//!
//! Every URL is relative (`/stream`, `/publish`), so the page works when the
//! server serves it from `dist/` and under `trunk serve` with its proxies.

use leptos::prelude::*;

pub mod api;
pub mod components;
pub mod feed;
pub mod stream;
pub mod token;
pub mod topic;

use components::{MessageList, PublishForm, StatusBar, TokenPanel, TopicPicker};
use topic::TopicChoice;

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let topic = RwSignal::new(TopicChoice::All);
    let paused = RwSignal::new(false);
    let stream = stream::use_stream(topic.into(), paused.into());

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
                <PublishForm />
                <TokenPanel stream=stream />
            </div>
            <MessageList stream=stream paused=paused />
        </main>
        <footer class="page-foot">
            <p>
                "The list keeps the newest " {feed::MAX_ROWS}
                " rows. After a reconnect the server replays what was missed; "
                "when it cannot, a notice in the list says so."
            </p>
        </footer>
    }
}
