//! The baseline: an SSE broadcast server written the way most Rust users
//! would write one with warp 0.4: a `tokio::sync::broadcast` channel,
//! `POST /publish` sends the message into it, and `GET /stream` turns a
//! receiver into `warp::sse::reply` events with keep-alive.
//!
//! It keeps no history, so it cannot resume from `Last-Event-ID`, and a
//! subscriber that falls more than the channel's capacity behind silently
//! skips what it missed. It is here to show what the usual approach costs,
//! not as something to deploy.

use std::convert::Infallible;
use std::net::SocketAddr;

use futures_util::StreamExt;
use shared::PublishRequest;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use warp::Filter;

/// How many messages a subscriber may fall behind before it skips some (the
/// value tokio's documentation examples and most tutorials use).
pub const CHANNEL_CAPACITY: usize = 1024;

/// The routes: `GET /stream`, `POST /publish` and `GET /healthz`.
pub fn routes(
    tx: broadcast::Sender<String>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let stream_tx = tx.clone();
    let stream = warp::path("stream")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let events = BroadcastStream::new(stream_tx.subscribe()).filter_map(|message| async {
                // A lagging receiver skips what it missed.
                message
                    .ok()
                    .map(|m| Ok::<_, Infallible>(warp::sse::Event::default().data(m)))
            });
            warp::sse::reply(warp::sse::keep_alive().stream(events))
        });
    let publish = warp::path("publish")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::json())
        .map(move |req: PublishRequest| {
            let receivers = tx.send(req.message).unwrap_or(0);
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
