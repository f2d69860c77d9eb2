//! The baseline: an SSE broadcast server written the way most Rust users
//! would write one with warp 0.4: a `tokio::sync::broadcast` channel,
//! `POST /publish` sends the message into it, and `GET /stream` turns a
//! receiver into `warp::sse::reply` events with keep-alive.
//!
//! Topics are what most users add next: the publish names a topic, and a
//! stream with `?topic=NAME` (repeatable; `NAME.*` for a prefix) keeps
//! only the matching messages of the one channel. So every publish still
//! wakes every subscriber, whatever its topic.
//!
//! It keeps no history, so it cannot resume from `Last-Event-ID`, and a
//! subscriber that falls more than the channel's capacity behind silently
//! skips what it missed. It is here to show what the usual approach costs,
//! not as something to deploy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use shared::PublishRequest;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use warp::Filter;

/// How many messages a subscriber may fall behind before it skips some (the
/// value tokio's documentation examples and most tutorials use).
pub const CHANNEL_CAPACITY: usize = 1024;

/// A published message: its topic, when the publish named one, and its
/// text.
pub type Message = (Option<Arc<str>>, String);

/// The topics a stream asked for (`?topic=a&topic=b.*`); none: every
/// message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicFilter {
    names: Vec<String>,
    prefixes: Vec<String>,
}

impl TopicFilter {
    /// Reads every `topic=` of a raw query string.
    pub fn from_query(query: &str) -> Self {
        let mut filter = Self::default();
        for pair in query.split('&') {
            if let Some(topic) = pair.strip_prefix("topic=") {
                match topic.strip_suffix('*') {
                    Some(prefix) => filter.prefixes.push(prefix.to_owned()),
                    None => filter.names.push(topic.to_owned()),
                }
            }
        }
        filter
    }

    /// Whether a message of `topic` goes to this stream.
    pub fn matches(&self, topic: Option<&str>) -> bool {
        if self.names.is_empty() && self.prefixes.is_empty() {
            return true;
        }
        topic.is_some_and(|t| {
            self.names.iter().any(|n| n == t)
                || self
                    .prefixes
                    .iter()
                    .any(|p| t.len() > p.len() && t.starts_with(p.as_str()))
        })
    }
}

/// The routes: `GET /stream[?topic=...]`, `POST /publish` and `GET
/// /healthz`.
pub fn routes(
    tx: broadcast::Sender<Message>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let stream_tx = tx.clone();
    let stream = warp::path("stream")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(move |query: String| {
            let filter = TopicFilter::from_query(&query);
            let events = BroadcastStream::new(stream_tx.subscribe()).filter_map(move |message| {
                // A lagging receiver skips what it missed; other topics'
                // messages are dropped here, after the wake-up.
                let event = message
                    .ok()
                    .filter(|(topic, _)| filter.matches(topic.as_deref()))
                    .map(|(_, m)| Ok::<_, Infallible>(warp::sse::Event::default().data(m)));
                async move { event }
            });
            warp::sse::reply(warp::sse::keep_alive().stream(events))
        });
    let publish = warp::path("publish")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::json())
        .map(move |req: PublishRequest| {
            let receivers = tx
                .send((req.topic.map(Arc::from), req.message))
                .unwrap_or(0);
            warp::reply::json(&serde_json::json!({ "receivers": receivers }))
        });
    let health = warp::path("healthz")
        .and(warp::path::end())
        .map(|| warp::reply::json(&serde_json::json!({ "status": "ok" })));
    stream.or(publish).or(health)
}

/// Serves the baseline on `addr`, printing `listening on http://<addr>` on
/// stdout once it listens, until the process is stopped.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
    warp::serve(routes(tx)).incoming(listener).run().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_keeps_its_topics() {
        let all = TopicFilter::from_query("");
        assert!(all.matches(None) && all.matches(Some("a")));
        let some = TopicFilter::from_query("topic=a&topic=room.*&x=1");
        assert!(some.matches(Some("a")));
        assert!(some.matches(Some("room.7")));
        assert!(!some.matches(Some("room.")));
        assert!(!some.matches(Some("b")));
        assert!(!some.matches(None));
    }
}
