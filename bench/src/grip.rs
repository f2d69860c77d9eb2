//! The GRIP backend behind Pushpin in the suite (the `grip-backend`
//! binary).
//!
//! Pushpin is a reverse proxy: it passes each subscriber's `GET` to a
//! backend once, and the backend's answer says, in GRIP headers, to hold
//! the response open as a stream on some channels. From then on Pushpin
//! alone keeps the stream, and what is published to its control API on one
//! of those channels is written to it; nothing more reaches the backend.
//! This one is all such a backend needs to be for the benchmark:
//!
//! - `GET /sub/<topics>` (topic names joined by `,`): `200` with
//!   `Content-Type: text/event-stream`, `Grip-Hold: stream`, one
//!   `Grip-Channel` value per topic (`Grip-Channel: a, b`), and
//!   `Grip-Keep-Alive`: a `: keep-alive` comment after 15 s without an
//!   event, as our server's `--keep-alive 15s` sends; the body is empty.
//! - `GET /ready`: `200 ready`, not held: the suite's readiness probe,
//!   through Pushpin.
//!
//! It keeps no history, so a stream cannot resume from `Last-Event-ID`.

use std::net::SocketAddr;

use warp::Filter;

/// The keep-alive instruction: the comment our server sends, as a GRIP
/// `cstring`, after 15 s without data on a stream.
pub const KEEP_ALIVE: &str = r": keep-alive\n\n; format=cstring; timeout=15";

/// The channels of `topics` (names joined by `,`), or `None` when a name is
/// empty or has a character outside `A-Z a-z 0-9 _ . -` (a channel name is
/// a GRIP header value: no `,`, `;`, spaces or control characters).
pub fn channels(topics: &str) -> Option<Vec<&str>> {
    topics
        .split(',')
        .map(|t| {
            let ok = !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            ok.then_some(t)
        })
        .collect()
}

/// The headers that hold a stream on `channels`, in order.
pub fn hold_headers(channels: &[&str]) -> [(&'static str, String); 4] {
    [
        ("content-type", "text/event-stream".to_owned()),
        ("grip-hold", "stream".to_owned()),
        ("grip-channel", channels.join(", ")),
        ("grip-keep-alive", KEEP_ALIVE.to_owned()),
    ]
}

/// The routes: `GET /sub/<topics>` and `GET /ready`.
pub fn routes() -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone
{
    let sub = warp::path!("sub" / String)
        .and(warp::get())
        .map(|topics: String| {
            let Some(channels) = channels(&topics) else {
                return warp::http::Response::builder()
                    .status(400)
                    .body("bad topic names\n".into())
                    .expect("a response");
            };
            let mut response = warp::http::Response::builder();
            for (name, value) in hold_headers(&channels) {
                response = response.header(name, value);
            }
            response.body(Vec::new().into()).expect("a response")
        });
    let ready = warp::path!("ready")
        .and(warp::get())
        .map(|| warp::http::Response::new("ready\n".into()));
    sub.or(ready).unify()
}

/// Serves the backend on `listener` until the process is stopped.
pub async fn serve(listener: tokio::net::TcpListener) {
    warp::serve(routes()).incoming(listener).run().await;
}

/// Serves the backend on `addr`, printing `listening on http://<addr>` on
/// stdout once it listens, until the process is stopped.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_on(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    serve(listener).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn topics_become_channels() {
        assert_eq!(channels("bench"), Some(vec!["bench"]));
        assert_eq!(
            channels("room.0,room.1,user_7-x"),
            Some(vec!["room.0", "room.1", "user_7-x"])
        );
        assert_eq!(channels(""), None);
        assert_eq!(channels("a,,b"), None);
        assert_eq!(channels("a;b"), None);
        assert_eq!(channels("a b"), None);
        let headers = hold_headers(&["room.0", "room.1"]);
        assert_eq!(headers[2], ("grip-channel", "room.0, room.1".to_owned()));
        assert_eq!(headers[1].1, "stream");
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text.to_ascii_lowercase()
    }

    #[tokio::test]
    async fn answers_with_a_hold() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener));
        let held = get(addr, "/sub/user.1,user.2").await;
        assert!(held.starts_with("http/1.1 200"), "{held}");
        for line in [
            "content-type: text/event-stream\r\n",
            "grip-hold: stream\r\n",
            "grip-channel: user.1, user.2\r\n",
            "grip-keep-alive: : keep-alive\\n\\n; format=cstring; timeout=15\r\n",
            "content-length: 0\r\n",
        ] {
            assert!(held.contains(line), "{line:?} in {held}");
        }
        let ready = get(addr, "/ready").await;
        assert!(ready.starts_with("http/1.1 200") && ready.ends_with("ready\n"));
        assert!(!ready.contains("grip-"));
        assert!(get(addr, "/sub/a;b").await.starts_with("http/1.1 400"));
        assert!(get(addr, "/other").await.starts_with("http/1.1 404"));
        server.abort();
    }
}
