//! A plain HTTP/1.1 connection whose first request is an ordinary
//! `GET /stream`, answered on the socket without hyper.
//!
//! hyper keeps a read buffer and a write buffer of 8 KiB each for every
//! HTTP/1 connection, for the connection's whole life: for an idle
//! subscriber, most of what it costs the server. Here the connection reads
//! its first request head into a small buffer of its own (within
//! `--max-header-bytes` and the head deadline), parses it with `httparse`
//! (hyper's own parser), and when it is a `GET /stream` that the route
//! grants, with no body, no upgrade and nothing after it, writes the
//! stream's head and then each chunk of the subscriber's feed straight
//! from its bytes. Everything else (another request, HTTP/1.0, `HEAD`, a
//! body, a pipelined request, `Connection: close`, a refusal of the route,
//! a head that is incomplete when the deadline passes) goes to hyper with
//! the bytes read so far put back before the socket's, and is answered as
//! before.

use std::io::{self, IoSlice};
use std::time::SystemTime;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warp::http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use warp::http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::socket::Socket;
use super::{Connection, Ended};
use crate::stream;

/// What answers a plain HTTP/1.1 `GET /stream` below hyper: the routes'
/// `DirectStreams`, which decide as the stream route does.
pub(crate) trait OpenStream: Send + Sync + std::fmt::Debug {
    /// Opens the stream that an HTTP/1.1 `GET` of `target` (`/stream`,
    /// with its query) with `headers` asks for, on `conn`; `None` when the
    /// route would answer anything but the stream (then nothing has
    /// changed, nothing is counted).
    fn open(&self, target: &Uri, headers: HeaderMap, conn: &Connection) -> Option<DirectStream>;
}

/// A stream the connection sends itself.
#[derive(Debug)]
pub(crate) struct DirectStream {
    /// The answer's headers, as hyper would have sent them before its own
    /// `transfer-encoding` and `date`.
    pub(crate) headers: HeaderMap,
    /// The events.
    pub(crate) feed: stream::Feed,
}

/// The request line of every request this path answers, up to its query.
const STREAM_GET: &[u8] = b"GET /stream";

/// Most header fields a head may have to be answered here (hyper's own
/// default limit); a head with more goes to hyper.
const MAX_HEADERS: usize = 100;

/// What the first head's buffer grows by.
const READ_CHUNK: usize = 1024;

/// A parsed `GET /stream` head that may be answered here.
#[derive(Debug)]
pub(super) struct Asked {
    /// The request target: `/stream` and its query.
    pub(super) target: Uri,
    /// Its header fields.
    pub(super) headers: HeaderMap,
}

/// Whether `bytes`, the start of a connection, may still turn out to be a
/// `GET /stream` request.
fn may_be_stream(bytes: &[u8]) -> bool {
    if bytes.len() <= STREAM_GET.len() {
        return STREAM_GET.starts_with(bytes);
    }
    bytes.starts_with(STREAM_GET) && matches!(bytes[STREAM_GET.len()], b' ' | b'?')
}

/// Whether reading on may make `head` a `GET /stream` to answer here: it
/// may still be one, is not complete, and has room under `max` bytes.
fn read_on(head: &[u8], max: usize) -> bool {
    if !may_be_stream(head) || head.len() >= max {
        return false;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    matches!(
        httparse::Request::new(&mut fields).parse(head),
        Ok(httparse::Status::Partial)
    )
}

/// Reads the connection's first request head into `head`, for as long as
/// [`read_on`] says, or until the client's end of the connection (a few
/// bytes more than `max` may be read). Cancelling it keeps in `head` what
/// was read.
pub(super) async fn read_head(socket: &mut Socket, head: &mut Vec<u8>, max: usize) {
    while read_on(head, max) {
        if head.capacity() == head.len() {
            head.reserve_exact(READ_CHUNK);
        }
        match socket.read_buf(head).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The request in `bytes` when it is a whole `GET /stream` head of HTTP/1.1
/// with no body, no upgrade, no `Expect`, keep-alive, and nothing after it.
pub(super) fn asked(bytes: &[u8]) -> Option<Asked> {
    if !may_be_stream(bytes) {
        return None;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(length) = request.parse(bytes).ok()? else {
        return None;
    };
    if length != bytes.len() || request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let target: Uri = request.path?.parse().ok()?;
    if target.path() != "/stream" || target.scheme().is_some() {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let handed_on = [CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE, EXPECT];
        if handed_on.contains(&name)
            || (name == CONNECTION && !field.value.eq_ignore_ascii_case(b"keep-alive"))
        {
            return None;
        }
        headers.append(name, HeaderValue::from_bytes(field.value).ok()?);
    }
    Some(Asked { target, headers })
}

/// The head hyper writes for a stream's answer with `headers`: the status
/// line, the headers in order, then its own `transfer-encoding` and `date`.
fn response_head(headers: &HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\ndate: ");
    head.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// Writes every byte of `parts`, in order.
async fn write_all(socket: &mut Socket, parts: &[&[u8]]) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut written = 0;
    while written < total {
        let mut skip = written;
        let mut slices = Vec::with_capacity(parts.len());
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices.push(IoSlice::new(&part[skip..]));
            skip = 0;
        }
        let n = socket.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    Ok(())
}

/// Sends `stream` on `socket`: its head, each chunk of its feed in the
/// chunked coding, and the last chunk when the feed ends.
pub(super) async fn send(socket: &mut Socket, stream: DirectStream) -> Ended {
    let DirectStream { headers, mut feed } = stream;
    let head = response_head(&headers);
    drop(headers);
    if let Err(error) = write_all(socket, &[&head]).await {
        return Ended::Broken(error);
    }
    drop(head);
    while let Some(chunk) = feed.next_chunk().await {
        let size = format!("{:X}\r\n", chunk.len());
        if let Err(error) = write_all(socket, &[size.as_bytes(), &chunk, b"\r\n"]).await {
            return Ended::Broken(error);
        }
    }
    match write_all(socket, &[b"0\r\n\r\n"]).await {
        Ok(()) => Ended::Done,
        Err(error) => Ended::Broken(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stream_request_line_is_read_on() {
        assert!(may_be_stream(b""));
        assert!(may_be_stream(b"GE"));
        assert!(may_be_stream(b"GET /stream"));
        assert!(may_be_stream(b"GET /stream?topic=a"));
        assert!(may_be_stream(b"GET /stream HTTP/1.1\r\n"));
        assert!(!may_be_stream(b"POST"));
        assert!(!may_be_stream(b"GET /streams"));
        assert!(!may_be_stream(b"GET /stream/"));
        assert!(!may_be_stream(b"HEAD /stream"));
    }

    #[test]
    fn a_plain_stream_get_is_answered_here() {
        let plain =
            asked(b"GET /stream?topic=a HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n")
                .expect("answered here");
        assert_eq!(plain.target, "/stream?topic=a");
        assert_eq!(plain.headers.get_all("cookie").iter().count(), 2);
        let kept = asked(b"GET /stream HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(kept.is_some());
    }

    #[test]
    fn anything_unusual_goes_to_hyper() {
        for head in [
            &b"GET /stream HTTP/1.0\r\n\r\n"[..],
            b"GET /stream HTTP/1.1\r\nHost: x\r\n",
            b"GET /stream HTTP/1.1\r\n\r\nGET /time HTTP/1.1\r\n\r\n",
            b"GET /stream HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"GET /stream HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /stream HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /stream HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET /stream HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET /stream HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET /stream/ HTTP/1.1\r\n\r\n",
            b"HEAD /stream HTTP/1.1\r\n\r\n",
        ] {
            assert!(asked(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn the_head_is_hypers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert("vary", HeaderValue::from_static("origin"));
        let head = String::from_utf8(response_head(&headers)).expect("ASCII");
        let (before, date) = head.split_once("date: ").expect("a date");
        assert_eq!(
            before,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nvary: origin\r\n\
             transfer-encoding: chunked\r\n"
        );
        assert!(date.ends_with(" GMT\r\n\r\n"), "{date:?}");
    }
}
