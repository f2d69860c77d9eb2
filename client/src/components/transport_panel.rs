//! Transport diagnosis: what stands between the server and this page.

use leptos::prelude::*;

use crate::render;
use crate::stream::Stream;

/// The HTTP version, the advised retry delay, the clock offset, the hints
/// for a buffering proxy and for the connection limit, and the timeline of
/// connects, errors and resumes (with the id each resume carried).
#[component]
pub fn TransportPanel(
    /// The live stream.
    stream: Stream,
) -> impl IntoView {
    let facts = Memo::new(move |_| {
        let retry = stream.stats.with(|s| s.advised_retry_ms);
        stream.insight.with(|i| render::transport(i, retry))
    });
    let timeline = Memo::new(move |_| stream.timeline.with(|t| render::timeline(t)));
    view! {
        <details id="transport" class="card panel" open>
            <summary><h2>"Transport"</h2></summary>
            <div inner_html=facts></div>
            <h3>"Timeline"</h3>
            <ol id="timeline" class="timeline" inner_html=timeline></ol>
        </details>
    }
}
