//! A minimal HTTP/1.1 client, enough to publish from outside the browser
//! and to read what a stream holds.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use shared::{ErrorBody, Item, Parser, PublishRequest, PublishResponse, ServerEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer: status code and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Sends `POST path` with a JSON body and reads the whole answer.
///
/// # Errors
/// On I/O errors or an answer that is not HTTP/1.1.
pub async fn post_json(addr: SocketAddr, path: &str, json: &str) -> Result<Answer> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_answer(&raw)
}

/// Publishes through `POST /publish`.
///
/// # Errors
/// When the server refuses (its error code and message are in the error).
pub async fn publish(
    addr: SocketAddr,
    message: &str,
    topic: Option<&str>,
) -> Result<PublishResponse> {
    let request = PublishRequest {
        message: message.to_owned(),
        topic: topic.map(str::to_owned),
    };
    let answer = post_json(addr, "/publish", &serde_json::to_string(&request)?).await?;
    if answer.status != 200 {
        let error: ErrorBody = serde_json::from_slice(&answer.body)?;
        bail!(
            "publish refused ({}): {} {}",
            answer.status,
            error.error,
            error.message
        );
    }
    Ok(serde_json::from_slice(&answer.body)?)
}

/// What the server answers to a publish it refuses.
///
/// # Errors
/// When it does not refuse, or the body is not an [`ErrorBody`].
pub async fn publish_error(addr: SocketAddr, json: &str) -> Result<ErrorBody> {
    let answer = post_json(addr, "/publish", json).await?;
    if answer.status == 200 {
        bail!("the server accepted {json}");
    }
    Ok(serde_json::from_slice(&answer.body)?)
}

/// Opens `GET /stream` and waits for its first bytes, so the server counts
/// the subscriber; it stays subscribed until the connection is dropped.
///
/// # Errors
/// When the connection fails or the server answers anything but 200.
pub async fn hold_stream(addr: SocketAddr) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request =
        format!("GET /stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buf).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET /stream answered {head:?}");
    }
    Ok(stream)
}

/// `GET path` and the whole answer.
///
/// # Errors
/// On I/O errors or an answer that is not HTTP/1.1.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Answer> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_answer(&raw)
}

/// Reads the first `count` ordinary events of `GET path` resumed with
/// `Last-Event-ID: last_event_id`, each with the SSE id it came with. The
/// request is HTTP/1.0, so the stream comes without chunked framing.
///
/// # Errors
/// When the stream fails, ends first, or the events do not come within
/// 20 s.
pub async fn read_events(
    addr: SocketAddr,
    path: &str,
    last_event_id: &str,
    count: usize,
) -> Result<Vec<(String, ServerEvent)>> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Last-Event-ID: {last_event_id}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let read = async {
        let mut head = Vec::new();
        let mut in_body = false;
        let mut parser = Parser::new();
        let mut items = Vec::new();
        let mut events = Vec::new();
        let mut buf = vec![0; 16 * 1024];
        while events.len() < count {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                bail!("the stream ended after {} events", events.len());
            }
            if in_body {
                parser.feed(&buf[..n], &mut items);
            } else {
                head.extend_from_slice(&buf[..n]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    in_body = true;
                    parser.feed(&head[end + 4..], &mut items);
                }
            }
            for item in items.drain(..) {
                if let Item::Event(event) = item {
                    if event.event == "message" {
                        let parsed = serde_json::from_str(&event.data)?;
                        events.push((event.last_event_id, parsed));
                    }
                }
            }
        }
        events.truncate(count);
        Ok(events)
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .context("the events did not come within 20 s")?
}

fn parse_answer(raw: &[u8]) -> Result<Answer> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers in the answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .context("not an HTTP/1.1 status line")?;
    let chunked = lines.any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Answer { status, body })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk size line")?;
        let size_text = String::from_utf8_lossy(&body[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        body = &body[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).context("short chunk")?);
        body = body.get(size + 2..).context("short chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_answers() {
        let plain =
            parse_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (400, &b"{}"[..]));
        let chunked = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (chunked.status, chunked.body.as_slice()),
            (200, &b"abcde"[..])
        );
    }
}
