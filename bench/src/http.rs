//! The subscriber side of HTTP/1.1, kept minimal so that ten thousand
//! subscribers cost the load generator little: the request, the response
//! head, and a body decoder (chunked, fixed length or until close) that hands
//! out slices of the read buffer without copying.

use crate::target::Endpoint;

/// The `GET` request of a subscriber, with `Last-Event-ID` when resuming.
pub fn subscribe_request(endpoint: &Endpoint, last_event_id: Option<&str>) -> Vec<u8> {
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
        endpoint.path,
        endpoint.host()
    );
    if let Some(id) = last_event_id {
        req.push_str("Last-Event-ID: ");
        req.push_str(id);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length`.
    Length(u64),
    /// Neither: the body ends when the connection closes.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// How the body is delimited.
    pub body: BodyKind,
}

/// Why a response head or body is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head is not valid HTTP/1.x.
    #[error("malformed response head: {0}")]
    Head(String),
    /// The head did not end within the size limit.
    #[error("response head longer than {0} bytes")]
    HeadTooLong(usize),
    /// A chunk header or delimiter is malformed.
    #[error("malformed chunked body")]
    Chunk,
}

/// The longest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// Parses the response head at the start of `buf`: `Ok(None)` when more
/// bytes are needed, otherwise the head and its length in bytes.
///
/// # Errors
/// [`HttpError::Head`] for invalid HTTP, [`HttpError::HeadTooLong`] when no
/// head ends within [`MAX_HEAD`] bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let status = response.code.unwrap_or(0);
            let mut body = BodyKind::UntilClose;
            for header in response.headers.iter() {
                if header.name.eq_ignore_ascii_case("transfer-encoding") {
                    let value = String::from_utf8_lossy(header.value);
                    if value
                        .rsplit(',')
                        .next()
                        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
                    {
                        body = BodyKind::Chunked;
                    }
                } else if header.name.eq_ignore_ascii_case("content-length")
                    && body != BodyKind::Chunked
                {
                    let value = std::str::from_utf8(header.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or_else(|| HttpError::Head("bad Content-Length".to_owned()))?;
                    body = BodyKind::Length(value);
                }
            }
            Ok(Some((Head { status, body }, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            Err(HttpError::HeadTooLong(MAX_HEAD))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(HttpError::Head(e.to_string())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size (`in_ext`: past a `;`, skipping an extension).
    Size {
        size: u64,
        digits: u32,
        in_ext: bool,
    },
    /// Saw CR after the size line.
    SizeLf { size: u64 },
    /// Inside chunk data with this many bytes left.
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// In the trailer section; `empty`: the current line has no bytes yet.
    Trailer { empty: bool },
    /// The last chunk and trailer are read.
    Done,
}

/// Decodes a response body incrementally.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Chunked(Chunk),
    Length(u64),
    UntilClose,
}

impl BodyDecoder {
    /// A decoder for a body delimited as `kind`.
    pub fn new(kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::Chunked => State::Chunked(Chunk::Size {
                size: 0,
                digits: 0,
                in_ext: false,
            }),
            BodyKind::Length(n) => State::Length(n),
            BodyKind::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// Whether the body has ended (last chunk read, or length reached).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Chunked(Chunk::Done) | State::Length(0))
    }

    /// Decodes `input`, passing each run of body bytes to `sink`. Bytes after
    /// the end of the body are ignored.
    ///
    /// # Errors
    /// [`HttpError::Chunk`] on a malformed chunk header or delimiter; the
    /// decoder must not be used afterwards.
    pub fn decode(
        &mut self,
        mut input: &[u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), HttpError> {
        match &mut self.state {
            State::UntilClose => {
                if !input.is_empty() {
                    sink(input);
                }
                Ok(())
            }
            State::Length(left) => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                if take > 0 {
                    sink(&input[..take]);
                }
                *left -= take as u64;
                Ok(())
            }
            State::Chunked(chunk) => {
                while !input.is_empty() {
                    match chunk {
                        Chunk::Data(left) => {
                            let take = usize::try_from(*left)
                                .unwrap_or(usize::MAX)
                                .min(input.len());
                            sink(&input[..take]);
                            input = &input[take..];
                            *left -= take as u64;
                            if *left == 0 {
                                *chunk = Chunk::DataCr;
                            }
                        }
                        Chunk::Done => return Ok(()),
                        _ => {
                            *chunk = step(*chunk, input[0])?;
                            input = &input[1..];
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Advances the chunk framing by one byte outside chunk data.
fn step(chunk: Chunk, byte: u8) -> Result<Chunk, HttpError> {
    let after_size = |size: u64| {
        if size == 0 {
            Chunk::Trailer { empty: true }
        } else {
            Chunk::Data(size)
        }
    };
    Ok(match chunk {
        Chunk::Size {
            size,
            digits,
            in_ext,
        } => match byte {
            b'\r' if digits > 0 => Chunk::SizeLf { size },
            b'\n' if digits > 0 => after_size(size),
            _ if in_ext => chunk,
            b';' | b' ' | b'\t' if digits > 0 => Chunk::Size {
                size,
                digits,
                in_ext: true,
            },
            _ => {
                let digit = (byte as char).to_digit(16).ok_or(HttpError::Chunk)?;
                if digits >= 15 {
                    return Err(HttpError::Chunk);
                }
                Chunk::Size {
                    size: size * 16 + u64::from(digit),
                    digits: digits + 1,
                    in_ext: false,
                }
            }
        },
        Chunk::SizeLf { size } => match byte {
            b'\n' => after_size(size),
            _ => return Err(HttpError::Chunk),
        },
        Chunk::DataCr => match byte {
            b'\r' => Chunk::DataLf,
            b'\n' => Chunk::Size {
                size: 0,
                digits: 0,
                in_ext: false,
            },
            _ => return Err(HttpError::Chunk),
        },
        Chunk::DataLf => match byte {
            b'\n' => Chunk::Size {
                size: 0,
                digits: 0,
                in_ext: false,
            },
            _ => return Err(HttpError::Chunk),
        },
        Chunk::Trailer { empty } => match byte {
            b'\n' if empty => Chunk::Done,
            b'\n' => Chunk::Trailer { empty: true },
            b'\r' => Chunk::Trailer { empty },
            _ => Chunk::Trailer { empty: false },
        },
        Chunk::Data(_) | Chunk::Done => chunk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(kind: BodyKind, wire: &[u8], piece: usize) -> (Vec<u8>, bool) {
        let mut decoder = BodyDecoder::new(kind);
        let mut out = Vec::new();
        for part in wire.chunks(piece.max(1)) {
            decoder.decode(part, |b| out.extend_from_slice(b)).unwrap();
        }
        (out, decoder.is_done())
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nignored";
        for piece in 1..wire.len() {
            let (out, done) = decode_in_pieces(BodyKind::Chunked, wire, piece);
            assert_eq!(out, b"hello 0123456789", "piece size {piece}");
            assert!(done);
        }
    }

    #[test]
    fn open_chunked_stream_is_not_done() {
        let (out, done) = decode_in_pieces(BodyKind::Chunked, b"3\r\nabc\r\n", 2);
        assert_eq!(out, b"abc");
        assert!(!done);
    }

    #[test]
    fn bad_chunk_framing_is_an_error() {
        for wire in [&b"zz\r\n"[..], b"\r\n", b"3\r\nabcX", b"1\rX"] {
            let mut decoder = BodyDecoder::new(BodyKind::Chunked);
            assert_eq!(
                decoder.decode(wire, |_| {}),
                Err(HttpError::Chunk),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn length_and_close_delimited_bodies() {
        let (out, done) = decode_in_pieces(BodyKind::Length(4), b"abcdef", 3);
        assert_eq!(out, b"abcd");
        assert!(done);
        let (out, done) = decode_in_pieces(BodyKind::UntilClose, b"abcdef", 4);
        assert_eq!(out, b"abcdef");
        assert!(!done);
    }

    #[test]
    fn heads() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n";
        let (head, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            head,
            Head {
                status: 200,
                body: BodyKind::Chunked
            }
        );
        assert_eq!(&raw[len..], b"5\r\n");
        assert_eq!(parse_head(&raw[..20]).unwrap(), None);
        let (head, _) = parse_head(b"HTTP/1.1 503 Busy\r\ncontent-length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            head,
            Head {
                status: 503,
                body: BodyKind::Length(12)
            }
        );
        assert!(parse_head(b"NOPE\r\n\r\n").is_err());
    }

    #[test]
    fn request_carries_last_event_id() {
        let endpoint = Endpoint::parse("http://127.0.0.1:9/stream?topic=a").unwrap();
        let req = String::from_utf8(subscribe_request(&endpoint, Some("1-2"))).unwrap();
        assert!(req.starts_with("GET /stream?topic=a HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(req.ends_with("Last-Event-ID: 1-2\r\n\r\n"));
        let req = String::from_utf8(subscribe_request(&endpoint, None)).unwrap();
        assert!(!req.contains("Last-Event-ID"));
    }
}
