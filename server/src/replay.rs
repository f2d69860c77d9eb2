//! `server replay FILE --to URL [--speed N] [--token T]`: publishes a
//! recording made by the page back into a server.
//!
//! The recording is NDJSON, one [`shared::RecordedEvent`] a line. Every
//! event is published with `POST /publish` to its own topic, with its own
//! message, at `offset_ms / speed` after the start, one at a time over one
//! keep-alive connection, so the target receives them in the recorded
//! order. Reset notices mark where the recorded stream missed events; they
//! are counted and skipped. The whole file is read and checked before the
//! first publish, and the first refusal stops the replay with the server's
//! status and error body.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use shared::{ErrorBody, PublishRequest, Recorded, RecordedEvent};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long one publish (connect, send, answer) may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// The server to publish to, like `http://127.0.0.1:3000`.
    #[arg(long, value_parser = target)]
    pub to: Target,

    /// How many times faster than recorded (2 halves every pause; 1 is the
    /// original pace).
    #[arg(long, default_value_t = 1.0, value_parser = speed)]
    pub speed: f64,

    /// Sent as `Authorization: Bearer <token>` with every publish (a JWT
    /// that may publish to the recorded topics, or the --publish-token).
    #[arg(long, env = "SSE_REPLAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Where the publishes go: `POST http://<authority><base>/publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, also sent as `Host`.
    pub authority: String,
    /// The path before `/publish`, without a trailing `/` (usually empty).
    pub base: String,
}

fn target(text: &str) -> Result<Target, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|err| format!("not a URL ({err}); try http://127.0.0.1:3000"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "{other}:// is not supported; replay publishes over plain http://"
            ))
        }
        None => return Err("the URL needs a scheme, like http://127.0.0.1:3000".to_owned()),
    }
    let host = uri.host().ok_or("the URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    if uri.query().is_some() {
        return Err("the URL must not have a query".to_owned());
    }
    Ok(Target {
        authority: format!("{host}:{port}"),
        base: uri.path().trim_end_matches('/').to_owned(),
    })
}

fn speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err(format!("{text:?} is not a speed above 0, like 1 or 2.5")),
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
            "published {} events to {} topic{} in {:.2} s (recorded over {:.2} s, speed {})",
            self.published,
            self.topics,
            if self.topics == 1 { "" } else { "s" },
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

/// Reads a recording: every non-blank line, with its line number.
///
/// # Errors
/// [`ReplayError::Read`] or [`ReplayError::Line`] for the first line that is
/// not a [`RecordedEvent`].
pub fn read(path: &std::path::Path) -> Result<Vec<(usize, RecordedEvent)>, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|reason| ReplayError::Read {
        path: path.to_owned(),
        reason,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line)
                .map(|event| (index + 1, event))
                .map_err(|reason| ReplayError::Line {
                    path: path.to_owned(),
                    line: index + 1,
                    reason,
                })
        })
        .collect()
}

/// Publishes the recording `args.file` to `args.to`, pacing each event at
/// its `offset_ms / speed` from the start (at once when publishing has
/// fallen behind).
///
/// # Errors
/// See [`ReplayError`]: the file is checked whole before anything is
/// published; then the first failed or refused publish stops the replay.
pub async fn replay(args: &ReplayArgs) -> Result<Summary, ReplayError> {
    let lines = read(&args.file)?;
    let path = format!("{}/publish", args.to.base);
    let mut link = Link::new(args.to.authority.clone());
    let mut topics = HashSet::new();
    let mut published = 0;
    let mut resets = 0;
    let start = Instant::now();
    let mut recorded = 0;
    for (line, recorded_event) in lines {
        recorded = recorded.max(recorded_event.offset_ms);
        let event = match recorded_event.item {
            Recorded::Event(event) => event,
            Recorded::Reset(_) => {
                resets += 1;
                continue;
            }
        };
        let due = Duration::from_secs_f64(recorded_event.offset_ms as f64 / 1000.0 / args.speed);
        tokio::time::sleep_until(start + due).await;
        let body = PublishRequest {
            message: event.message,
            topic: Some(event.topic.clone()),
        };
        let body = serde_json::to_vec(&body).expect("a PublishRequest serializes");
        link.publish(line, &path, args.token.as_deref(), body)
            .await?;
        topics.insert(event.topic);
        published += 1;
    }
    Ok(Summary {
        published,
        topics: topics.len(),
        resets,
        recorded: Duration::from_millis(recorded),
        elapsed: start.elapsed(),
        speed: args.speed,
    })
}

/// One keep-alive HTTP/1.1 connection to the target, opened again when the
/// server has closed it (e.g. after its idle timeout in a long pause).
struct Link {
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Link {
    fn new(authority: String) -> Self {
        Self {
            authority,
            sender: None,
        }
    }

    async fn publish(
        &mut self,
        line: usize,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(), ReplayError> {
        let authority = self.authority.clone();
        let failed = move |reason: String| ReplayError::Connection {
            line,
            authority: authority.clone(),
            reason,
        };
        let mut request = Request::post(path)
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| failed(format!("cannot build the request: {err}")))?;
        let answer = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            let sender = self.ready().await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|err| err.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|err| err.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await
        .map_err(|_| format!("no answer within {PUBLISH_TIMEOUT:?}"))
        .and_then(|answer| answer);
        let (status, body) = match answer {
            Ok(answer) => answer,
            Err(reason) => {
                self.sender = None;
                return Err(failed(reason));
            }
        };
        if status.is_success() {
            return Ok(());
        }
        let (error, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(body) => (body.error, body.message),
            Err(_) => ("-".to_owned(), String::from_utf8_lossy(&body).into_owned()),
        };
        Err(ReplayError::Refused {
            line,
            status: status.as_u16(),
            error,
            message,
        })
    }

    /// The open connection, ready for a request, or a new one.
    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if let Some(sender) = &mut self.sender {
            if sender.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(&self.authority)
                .await
                .map_err(|err| err.to_string())?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|err| err.to_string())?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_plain_http_urls() {
        assert_eq!(
            target("http://127.0.0.1:3000"),
            Ok(Target {
                authority: "127.0.0.1:3000".to_owned(),
                base: String::new(),
            })
        );
        assert_eq!(
            target("http://localhost/sse/"),
            Ok(Target {
                authority: "localhost:80".to_owned(),
                base: "/sse".to_owned(),
            })
        );
        assert!(target("https://127.0.0.1:3000")
            .unwrap_err()
            .contains("not supported"));
        assert!(target("127.0.0.1:3000").is_err());
        assert!(target("http://127.0.0.1:3000/?a=b").is_err());
    }

    #[test]
    fn speeds_are_positive() {
        assert_eq!(speed("2"), Ok(2.0));
        assert_eq!(speed("0.5"), Ok(0.5));
        for bad in ["0", "-1", "inf", "NaN", "fast"] {
            assert!(speed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_summary_says_what_was_done() {
        let summary = Summary {
            published: 3,
            topics: 1,
            resets: 1,
            recorded: Duration::from_millis(1500),
            elapsed: Duration::from_millis(750),
            speed: 2.0,
        };
        assert_eq!(
            summary.to_string(),
            "published 3 events to 1 topic in 0.75 s (recorded over 1.50 s, speed 2); \
             skipped 1 reset notice (the recorded stream missed events there)"
        );
    }
}
