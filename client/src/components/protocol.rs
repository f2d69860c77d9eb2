//! The HTTP version the page talks to the server in (`h2`, `http/1.1`).
//!
//! An open `EventSource` has no resource timing entry until it ends, so the
//! inspector reads the `nextHopProtocol` of its `GET /time` probes: the
//! same origin, so the same connection pool, as the stream. This entry of
//! the status bar shows what they found.

use leptos::prelude::*;

use crate::stream::Stream;

/// One entry of the status bar's list: "Protocol: h2".
#[component]
pub fn ProtocolStat(
    /// The live stream, whose inspector probes the protocol.
    stream: Stream,
) -> impl IntoView {
    let found = move || {
        stream
            .insight
            .with(|i| i.protocol.clone())
            .unwrap_or_else(|| "—".to_owned())
    };
    view! {
        <div>
            <dt>"Protocol"</dt>
            <dd id="stat-protocol">{found}</dd>
        </div>
    }
}
