//! The connection's state and counters, always in view.

use leptos::prelude::*;

use crate::components::ProtocolStat;
use crate::feed::ago;
use crate::stream::Stream;
use crate::topic::TopicChoice;

/// The state (announced to screen readers when it changes) and the counters:
/// events received, per second, reconnects, duplicates dropped, the last
/// event id and the time since the last event (or the connection opening;
/// keep-alive comments are invisible to `EventSource`), and the HTTP
/// version in use.
#[component]
pub fn StatusBar(
    /// The live stream.
    stream: Stream,
    /// The subscription shown beside the state.
    topic: Signal<TopicChoice>,
) -> impl IntoView {
    let state = stream.state;
    let stats = stream.stats;
    view! {
        <section class="status-bar" aria-label="Connection">
            <p id="status" class="status" role="status" aria-live="polite" data-state=move || state.get().as_str()
                data-subscription=move || stats.with(|s| s.subscription.clone())
            >
                <span class="dot" aria-hidden="true"></span>
                <span class="state-label">{move || state.get().label()}</span>
            </p>
            <p id="retry-note" class="retry-note">
                {move || {
                    stats
                        .with(|s| s.retry_in_ms)
                        .map(|ms| format!("new connection in {:.0} s", (ms / 1000.0).ceil()))
                }}
            </p>
            <dl id="stats" class="stats">
                <div>
                    <dt>"Topic"</dt>
                    <dd id="stat-topic">{move || topic.with(|t| t.label().to_owned())}</dd>
                </div>
                <div>
                    <dt>"Received"</dt>
                    <dd id="stat-received">{move || stats.with(|s| s.received)}</dd>
                </div>
                <div>
                    <dt>"Per second"</dt>
                    <dd id="stat-rate">{move || stats.with(|s| format!("{:.1}", s.per_second))}</dd>
                </div>
                <div>
                    <dt>"Reconnects"</dt>
                    <dd id="stat-reconnects">{move || stats.with(|s| s.reconnects)}</dd>
                </div>
                <div>
                    <dt>"Duplicates dropped"</dt>
                    <dd id="stat-duplicates">{move || stats.with(|s| s.duplicates)}</dd>
                </div>
                <div>
                    <dt>"Last event id"</dt>
                    <dd id="stat-last-id">
                        {move || stats.with(|s| s.last_id.map_or_else(|| "—".to_owned(), |id| id.to_string()))}
                    </dd>
                </div>
                <div>
                    <dt>"Last event"</dt>
                    <dd id="stat-ago">{move || stats.with(|s| s.since_last_ms.map_or_else(|| "—".to_owned(), ago))}</dd>
                </div>
                <ProtocolStat />
            </dl>
        </section>
    }
}
