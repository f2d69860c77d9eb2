//! The connection's state and counters, always in view.

use leptos::prelude::*;

use crate::components::ProtocolStat;
use crate::decimal::fixed;
use crate::feed::ago;
use crate::render;
use crate::stream::Stream;
use crate::topic::TopicChoice;

/// The state (announced to screen readers when it changes) and the counters:
/// events received, per second, reconnects, duplicates dropped, the last
/// event id, the time since the last event (or the connection opening;
/// keep-alive comments are invisible to `EventSource`), the HTTP version in
/// use, the live p50 and p99 latency, and a chart of them over the last
/// three minutes.
#[component]
pub fn StatusBar(
    /// The live stream.
    stream: Stream,
    /// The subscription shown beside the state.
    topic: Signal<TopicChoice>,
) -> impl IntoView {
    let state = stream.state;
    let stats = stream.stats;
    let latency = Memo::new(move |_| stream.insight.with(render::latency_now));
    let chart = Memo::new(move |_| stream.chart.with(render::chart));
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
                        .map(|ms| format!("new connection in {} s", fixed((ms / 1000.0).ceil(), 0)))
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
                    <dd id="stat-rate">{move || stats.with(|s| fixed(s.per_second, 1))}</dd>
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
                <ProtocolStat stream=stream />
                <div title="From each event's time to its arrival over the last 5 s, corrected by the clock offset; events replayed at a resume left out">
                    <dt>"Latency p50 · p99"</dt>
                    <dd id="stat-latency" inner_html=latency></dd>
                </div>
            </dl>
            <div id="latency" class="sparkline" title="p50 and p99 latency, the last 3 minutes" inner_html=chart></div>
        </section>
    }
}
