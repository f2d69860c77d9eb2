//! `server replay FILE --to URL [--speed N] [--token T] [--ca-cert FILE]`:
//! publishes a recording made by the page back into a server.
//!
//! The recording is NDJSON, one [`shared::RecordedEvent`] a line. Every
//! event is published with `POST /publish` to its own topic, with its own
//! message, at `offset_ms / speed` after the start, one at a time over one
//! keep-alive connection, so the target receives them in the recorded
//! order, over HTTPS for an `https://` target. Events already due when one
//! is sent (publishing has fallen behind, or a high `--speed` makes many due
//! at once) go together as one batch (`application/x-ndjson`), up to
//! `--batch` events and [`MAX_BATCH_BYTES`]. Reset notices mark where
//! the recorded stream missed events; they are counted and skipped. The whole file is checked before the first
//! publish (one line in memory at a time, each at most `--max-line-bytes`,
//! each offset at most [`MAX_OFFSET_MS`]), then read again to publish, and
//! the first refusal stops the replay with the server's status and error
//! body.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use shared::{ErrorBody, PublishRequest, Recorded, RecordedEvent};
use tokio::time::Instant;
use url::Url;

/// How long one publish (connect, send, answer) may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest offset a recorded line may have: 30 days.
pub const MAX_OFFSET_MS: u64 = 30 * 24 * 3600 * 1000;

/// The longest line read unless `--max-line-bytes` says: the server's
/// largest body by default (64 KiB) many times over, with the record's own
/// fields.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 1024 * 1024;

/// The largest batch body sent: the server's default `--max-batch-bytes`.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The slowest and the fastest speed.
const SPEEDS: std::ops::RangeInclusive<f64> = 0.01..=1_000_000.0;

/// The `replay` subcommand's options.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "server replay",
    bin_name = "server replay",
    about = "Publishes a recording downloaded from the page (NDJSON) to a server, at its original pace or N times faster."
)]
pub struct ReplayArgs {
    /// The recording: one {"offset_ms", "event"} or {"offset_ms", "reset"}
    /// object a line.
    pub file: PathBuf,

    /// The server to publish to, like `http://127.0.0.1:3000` or
    /// `https://sse.example`.
    #[arg(long, value_parser = target)]
    pub to: Target,

    /// A PEM certificate to trust beside the system's roots, for an HTTPS
    /// server whose certificate they do not sign (a self-signed one).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// How many times faster than recorded (2 halves every pause; 1 is the
    /// original pace), from 0.01 to 1000000.
    #[arg(long, default_value_t = 1.0, value_parser = speed)]
    pub speed: f64,

    /// The longest line the recording may have; a longer one stops the
    /// replay before anything is published.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_line_bytes: u64,

    /// Most events sent in one request when several are due at once (a
    /// batch, up to the server's --max-batch); 1 sends each event alone.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,

    /// Sent as `Authorization: Bearer <token>` with every publish (a JWT
    /// that may publish to the recorded topics, or the --publish-token).
    #[arg(long, env = "SSE_REPLAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Where the publishes go: `POST <scheme>://<authority><base>/publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL publishes are posted to.
    pub publish: Url,
    /// `host:port`, for messages.
    pub authority: String,
}

fn target(text: &str) -> Result<Target, String> {
    let url =
        Url::parse(text).map_err(|err| format!("not a URL ({err}); try http://127.0.0.1:3000"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{}:// is not supported; replay publishes over http:// or https://",
            url.scheme()
        ));
    }
    let host = url.host_str().ok_or("the URL has no host")?;
    if url.query().is_some() {
        return Err("the URL must not have a query".to_owned());
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = format!("{host}:{port}");
    let mut publish = url.clone();
    publish.set_path(&format!("{}/publish", url.path().trim_end_matches('/')));
    Ok(Target { publish, authority })
}

fn speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if SPEEDS.contains(&speed) => Ok(speed),
        _ => Err(format!(
            "{text:?} is not a speed from {} to {}, like 1 or 2.5",
            SPEEDS.start(),
            SPEEDS.end()
        )),
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The recording.
        path: PathBuf,
        /// What went wrong.
        reason: std::io::Error,
    },
    /// A line is not a recorded event; nothing was published.
    #[error("line {line} of {path} is not a recorded event ({reason}); nothing was published")]
    Line {
        /// The recording.
        path: PathBuf,
        /// Its number, from 1.
        line: usize,
        /// What serde found.
        reason: serde_json::Error,
    },
    /// A line is longer than `--max-line-bytes`; nothing was published.
    #[error(
        "line {line} of {path} is longer than {limit} bytes (--max-line-bytes); nothing was \
         published"
    )]
    LineTooLong {
        /// The recording.
        path: PathBuf,
        /// Its number, from 1.
        line: usize,
        /// The limit.
        limit: u64,
    },
    /// A line's offset is beyond [`MAX_OFFSET_MS`]; nothing was published.
    #[error(
        "line {line} of {path} has offset_ms {offset_ms}, beyond 30 days ({MAX_OFFSET_MS}); \
         nothing was published"
    )]
    OffsetTooLate {
        /// The recording.
        path: PathBuf,
        /// Its number, from 1.
        line: usize,
        /// The offset it has.
        offset_ms: u64,
    },
    /// The `--ca-cert` file cannot be used.
    #[error("--ca-cert {}: {reason}", path.display())]
    CaCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached or the connection failed.
    #[error("line {line}: cannot publish to {authority}: {reason}")]
    Connection {
        /// The line being published.
        line: usize,
        /// The target.
        authority: String,
        /// What went wrong.
        reason: String,
    },
    /// The server refused a publish.
    #[error("line {line}: the server refused the publish with {status}: {error}: {message}")]
    Refused {
        /// The line being published.
        line: usize,
        /// The HTTP status.
        status: u16,
        /// The error code of its body (`unauthorized`, …), or `-`.
        error: String,
        /// The message of its body, or the body itself.
        message: String,
    },
}

/// What a finished replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Events published.
    pub published: u64,
    /// Requests they took (fewer than the events when batches were sent).
    pub requests: u64,
    /// Distinct topics they went to.
    pub topics: usize,
    /// Reset notices skipped.
    pub resets: u64,
    /// The recording's span: the last line's offset.
    pub recorded: Duration,
    /// How long publishing took.
    pub elapsed: Duration,
    /// The speed asked for.
    pub speed: f64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published {} events to {} topic{} in {} request{} in {:.2} s (recorded over \
             {:.2} s, speed {})",
            self.published,
            self.topics,
            if self.topics == 1 { "" } else { "s" },
            self.requests,
            if self.requests == 1 { "" } else { "s" },
            self.elapsed.as_secs_f64(),
            self.recorded.as_secs_f64(),
            self.speed
        )?;
        if self.resets > 0 {
            write!(
                f,
                "; skipped {} reset notice{} (the recorded stream missed events there)",
                self.resets,
                if self.resets == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

/// A recording, read one line at a time.
struct Lines {
    path: PathBuf,
    reader: std::io::BufReader<std::fs::File>,
    limit: u64,
    number: usize,
    line: Vec<u8>,
}

impl Lines {
    fn open(path: &Path, limit: u64) -> Result<Self, ReplayError> {
        let file = std::fs::File::open(path).map_err(|reason| ReplayError::Read {
            path: path.to_owned(),
            reason,
        })?;
        Ok(Self {
            path: path.to_owned(),
            reader: std::io::BufReader::new(file),
            limit,
            number: 0,
            line: Vec::new(),
        })
    }

    /// The next non-blank line as a recorded event, with its number; `None`
    /// at the end of the file.
    fn next_event(&mut self) -> Result<Option<(usize, RecordedEvent)>, ReplayError> {
        loop {
            self.number += 1;
            self.line.clear();
            // One byte past the limit tells a line that is too long from one
            // exactly as long; nothing past that is read into memory.
            let read = (&mut self.reader)
                .take(self.limit + 1)
                .read_until(b'\n', &mut self.line)
                .map_err(|reason| ReplayError::Read {
                    path: self.path.clone(),
                    reason,
                })?;
            if read == 0 {
                return Ok(None);
            }
            let text = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.len() as u64 > self.limit {
                return Err(ReplayError::LineTooLong {
                    path: self.path.clone(),
                    line: self.number,
                    limit: self.limit,
                });
            }
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: RecordedEvent =
                serde_json::from_slice(text).map_err(|reason| ReplayError::Line {
                    path: self.path.clone(),
                    line: self.number,
                    reason,
                })?;
            if event.offset_ms > MAX_OFFSET_MS {
                return Err(ReplayError::OffsetTooLate {
                    path: self.path.clone(),
                    line: self.number,
                    offset_ms: event.offset_ms,
                });
            }
            return Ok(Some((self.number, event)));
        }
    }
}

/// Checks a whole recording, one line at a time: the number of lines that
/// hold an event or a reset notice.
///
/// # Errors
/// [`ReplayError::Read`], [`ReplayError::Line`],
/// [`ReplayError::LineTooLong`] or [`ReplayError::OffsetTooLate`] for the
/// first line that is not a [`RecordedEvent`] within the bounds.
pub fn check(path: &Path, max_line_bytes: u64) -> Result<usize, ReplayError> {
    let mut lines = Lines::open(path, max_line_bytes)?;
    let mut count = 0;
    while lines.next_event()?.is_some() {
        count += 1;
    }
    Ok(count)
}

/// Publishes the recording `args.file` to `args.to`, pacing each event at
/// its `offset_ms / speed` from the start (at once when publishing has
/// fallen behind).
///
/// # Errors
/// See [`ReplayError`]: the file is checked whole before anything is
/// published; then the first failed or refused publish stops the replay.
pub async fn replay(args: &ReplayArgs) -> Result<Summary, ReplayError> {
    check(&args.file, args.max_line_bytes)?;
    let mut lines = Lines::open(&args.file, args.max_line_bytes)?;
    let mut link = Link::new(args.to.clone(), args.ca_cert.as_deref())?;
    let mut pace = Pace {
        start: Instant::now(),
        speed: args.speed,
        most: usize::try_from(args.batch).unwrap_or(usize::MAX),
        topics: HashSet::new(),
        recorded: 0,
        resets: 0,
    };
    let (mut published, mut requests) = (0, 0);
    let mut next = pace.next_event(&mut lines)?;
    while let Some((line, offset_ms, event)) = next.take() {
        if let Some(at) = pace.start.checked_add(pace.due(offset_ms)) {
            tokio::time::sleep_until(at).await;
        }
        let mut batch = Batch::default();
        batch.push(line, &event);
        // Whatever is due already goes with it.
        loop {
            next = pace.next_event(&mut lines)?;
            match next.take() {
                Some((line, offset_ms, event))
                    if batch.lines.len() < pace.most
                        && pace.due(offset_ms) <= pace.start.elapsed()
                        && batch.fits(&event) =>
                {
                    batch.push(line, &event);
                }
                other => {
                    next = other;
                    break;
                }
            }
        }
        published += batch.lines.len() as u64;
        requests += 1;
        link.publish(&batch, args.token.as_deref()).await?;
    }
    Ok(Summary {
        published,
        requests,
        topics: pace.topics.len(),
        resets: pace.resets,
        recorded: Duration::from_millis(pace.recorded),
        elapsed: pace.start.elapsed(),
        speed: args.speed,
    })
}

/// A replay's clock and what it has seen so far.
struct Pace {
    start: Instant,
    speed: f64,
    /// `--batch`.
    most: usize,
    topics: HashSet<String>,
    /// The latest offset read.
    recorded: u64,
    resets: u64,
}

impl Pace {
    /// When an event recorded at `offset_ms` is due, from the start.
    fn due(&self, offset_ms: u64) -> Duration {
        // Both bounded (offset and speed), so the quotient is finite; the
        // checked form keeps it so whatever the bounds become.
        Duration::try_from_secs_f64(offset_ms as f64 / 1000.0 / self.speed).unwrap_or(Duration::MAX)
    }

    /// The next recorded event (its line, offset and body), counting and
    /// skipping reset notices.
    fn next_event(
        &mut self,
        lines: &mut Lines,
    ) -> Result<Option<(usize, u64, PublishRequest)>, ReplayError> {
        while let Some((line, recorded)) = lines.next_event()? {
            self.recorded = self.recorded.max(recorded.offset_ms);
            match recorded.item {
                Recorded::Event(event) => {
                    self.topics.insert(event.topic.clone());
                    let body = PublishRequest {
                        message: event.message,
                        topic: Some(event.topic),
                    };
                    return Ok(Some((line, recorded.offset_ms, body)));
                }
                Recorded::Reset(_) => self.resets += 1,
            }
        }
        Ok(None)
    }
}

/// Events sent in one request: their bodies, one JSON line each, and the
/// recording's line of each.
#[derive(Debug, Default)]
struct Batch {
    lines: Vec<usize>,
    body: Vec<u8>,
    /// The first event's body alone, sent as JSON when it stays alone.
    first: Vec<u8>,
}

impl Batch {
    fn push(&mut self, line: usize, event: &PublishRequest) {
        let json = serde_json::to_vec(event).expect("a PublishRequest serializes");
        if self.lines.is_empty() {
            self.first.clone_from(&json);
        }
        self.body.extend_from_slice(&json);
        self.body.push(b'\n');
        self.lines.push(line);
    }

    /// Whether `event` still fits in [`MAX_BATCH_BYTES`].
    fn fits(&self, event: &PublishRequest) -> bool {
        let size = serde_json::to_vec(event).map_or(usize::MAX, |json| json.len() + 1);
        self.body.len().saturating_add(size) <= MAX_BATCH_BYTES
    }

    /// The recording's line of the batch's `n`th line (from 1), as the
    /// server names it; the first line's when it names none.
    fn line(&self, n: Option<u64>) -> usize {
        n.and_then(|n| usize::try_from(n).ok())
            .and_then(|n| self.lines.get(n.checked_sub(1)?).copied())
            .unwrap_or(self.lines[0])
    }
}

/// The HTTP/1.1 client of a replay, over TLS for an `https://` target
/// (hyper-util's pooled client: its keep-alive connection is opened again
/// when the server has closed it, e.g. after its idle timeout in a long
/// pause).
struct Link {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    target: Target,
}

/// What a publish got back.
struct Answer {
    status: hyper::StatusCode,
    body: Bytes,
}

impl Link {
    /// A client trusting the system's roots, and `ca_cert` when given.
    fn new(target: Target, ca_cert: Option<&Path>) -> Result<Self, ReplayError> {
        let tls = client_tls(ca_cert)?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, target })
    }

    /// Sends `batch`: one event as JSON, more as one NDJSON batch.
    async fn publish(&mut self, batch: &Batch, token: Option<&str>) -> Result<(), ReplayError> {
        let line = batch.lines[0];
        let failed = |reason: String| ReplayError::Connection {
            line,
            authority: self.target.authority.clone(),
            reason,
        };
        let (content_type, body) = match batch.lines.len() {
            1 => ("application/json", batch.first.clone()),
            _ => ("application/x-ndjson", batch.body.clone()),
        };
        let mut request = Request::post(self.target.publish.as_str())
            .header(hyper::header::CONTENT_TYPE, content_type);
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| failed(format!("cannot build the request: {err}")))?;
        let answer = tokio::time::timeout(PUBLISH_TIMEOUT, self.send(request))
            .await
            .map_err(|_| format!("no answer within {PUBLISH_TIMEOUT:?}"))
            .and_then(|answer| answer)
            .map_err(failed)?;
        if answer.status.is_success() {
            return Ok(());
        }
        let refused = serde_json::from_slice::<serde_json::Value>(&answer.body).ok();
        let (error, message) = match serde_json::from_slice::<ErrorBody>(&answer.body) {
            Ok(body) => (body.error, body.message),
            Err(_) => (
                "-".to_owned(),
                String::from_utf8_lossy(&answer.body).into_owned(),
            ),
        };
        let named = refused.as_ref().and_then(|body| body["line"].as_u64());
        // The server numbers the batch's lines; the error names the
        // recording's.
        let message = named
            .and_then(|n| message.strip_prefix(&format!("line {n}: ")))
            .map_or(message.clone(), str::to_owned);
        Err(ReplayError::Refused {
            line: batch.line(named),
            status: answer.status.as_u16(),
            error,
            message,
        })
    }

    /// Sends `request` and reads the whole answer.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Answer, String> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|err| error_chain(&err))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|err| err.to_string())?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

/// An error and its causes, as one line (hyper-util's client error says
/// only "client error (Connect)" itself).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// TLS for `https://` targets: the system's roots, and `ca_cert`.
fn client_tls(ca_cert: Option<&Path>) -> Result<rustls::ClientConfig, ReplayError> {
    let mut roots = rustls::RootCertStore::empty();
    // Roots that do not parse are skipped, as a browser would.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_cert {
        let bad = |reason: String| ReplayError::CaCert {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|err| bad(err.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| bad(err.to_string()))?;
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".to_owned()));
        }
        for cert in certs {
            roots.add(cert).map_err(|err| bad(err.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ReplayError::CaCert {
            path: PathBuf::new(),
            reason: err.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_http_or_https_urls() {
        let local = target("http://127.0.0.1:3000").unwrap();
        assert_eq!(local.publish.as_str(), "http://127.0.0.1:3000/publish");
        assert_eq!(local.authority, "127.0.0.1:3000");
        let behind = target("http://localhost/sse/").unwrap();
        assert_eq!(behind.publish.as_str(), "http://localhost/sse/publish");
        assert_eq!(behind.authority, "localhost:80");
        let secure = target("https://sse.example").unwrap();
        assert_eq!(secure.publish.as_str(), "https://sse.example/publish");
        assert_eq!(secure.authority, "sse.example:443");
        assert!(target("ftp://127.0.0.1:3000")
            .unwrap_err()
            .contains("not supported"));
        assert!(target("127.0.0.1:3000").is_err());
        assert!(target("http://127.0.0.1:3000/?a=b").is_err());
    }

    #[test]
    fn speeds_are_positive() {
        assert_eq!(speed("2"), Ok(2.0));
        assert_eq!(speed("0.5"), Ok(0.5));
        assert_eq!(speed("0.01"), Ok(0.01));
        assert_eq!(speed("1000000"), Ok(1_000_000.0));
        for bad in [
            "0", "-1", "inf", "NaN", "fast", "1e-300", "0.001", "1e7", "1e400",
        ] {
            assert!(speed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_summary_says_what_was_done() {
        let summary = Summary {
            published: 3,
            requests: 2,
            topics: 1,
            resets: 1,
            recorded: Duration::from_millis(1500),
            elapsed: Duration::from_millis(750),
            speed: 2.0,
        };
        assert_eq!(
            summary.to_string(),
            "published 3 events to 1 topic in 2 requests in 0.75 s (recorded over 1.50 s, speed 2); \
             skipped 1 reset notice (the recorded stream missed events there)"
        );
    }
}
