//! `POST /publish`: checks the request in order (token 401, content type
//! 415, size 413, `Idempotency-Key` 400, rate 429, JSON and fields 400, the
//! token's topics 403) and stores the event only when everything is right.
//! With an `Idempotency-Key`, a repeat gets the first answer again (with
//! `Idempotent-Replayed: true`), and a key reused for another body 422 (see
//! [`crate::idempotency`]).
//!
//! A body of `application/x-ndjson` is a batch: one publish body per
//! non-empty line. Every line is checked before anything is stored (a bad
//! one is named in the error's `line`), the rate limit counts its events,
//! and the log stores them in one write, with consecutive seqs, under one
//! key.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use shared::{validate_topic, PublishRequest, DEFAULT_TOPIC};
use warp::http::HeaderValue;
use warp::Reply;

use crate::auth::{Auth, Grant};
use crate::error::ApiError;
use crate::event_log::{
    batch_answer, AppendError, BatchAppend, Keyed, KeyedAppend, NewEvent, Shape, SharedLog,
};
use crate::idempotency::{self, Answer, Claim, Claimed, KeyHeader, Record};
use crate::metrics::{Metrics, Refusal};
use crate::rate::{Key, PublishLimiter, RateRefusal};
use crate::throttle::Throttle;

/// The request's headers that publishing looks at, as sent: a value that is
/// not ASCII is answered by that header's own check.
#[derive(Debug, Default)]
pub struct PublishHeaders {
    /// `Authorization`.
    pub authorization: Option<HeaderValue>,
    /// `Content-Type`.
    pub content_type: Option<HeaderValue>,
    /// `Content-Length`, when the client sent one (hyper has checked it).
    pub content_length: Option<u64>,
    /// `Idempotency-Key`.
    pub idempotency_key: KeyHeader,
}

/// Publishing limits.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// Largest accepted body (and batch line) in bytes.
    pub max_body: u64,
    /// How long the body may take to arrive, from the end of the head.
    pub body_timeout: Duration,
    /// Most events in one batch (`--max-batch`).
    pub max_batch: usize,
    /// Largest accepted batch body in bytes (`--max-batch-bytes`).
    pub max_batch_bytes: u64,
}

impl PublishSettings {
    /// The largest body of `shape`.
    fn limit(&self, shape: Shape) -> u64 {
        match shape {
            Shape::One => self.max_body,
            Shape::Batch => self.max_batch_bytes,
        }
    }
}

/// Checks the content type (JSON for one event, NDJSON for a batch) and
/// the announced length.
fn check_headers(headers: &PublishHeaders, settings: &PublishSettings) -> Result<Shape, ApiError> {
    let content_type = headers
        .content_type
        .as_ref()
        .map_or("none".into(), |v| String::from_utf8_lossy(v.as_bytes()));
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let shape = if essence.eq_ignore_ascii_case("application/json") {
        Shape::One
    } else if essence.eq_ignore_ascii_case("application/x-ndjson") {
        Shape::Batch
    } else {
        return Err(ApiError::UnsupportedMediaType {
            found: content_type.into_owned(),
        });
    };
    let limit = settings.limit(shape);
    if headers.content_length.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(shape)
}

/// Reads the body, refusing it as soon as it passes `limit` (bodies without
/// a Content-Length included).
async fn read_limited<S, B, E>(body: S, limit: u64) -> Result<BytesMut, ApiError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| ApiError::UnreadableBody(e.to_string()))?;
        if (buf.len() + chunk.remaining()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            buf.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(buf)
}

/// What a JSON body that is not an object is, for the error message.
/// serde's derived `Deserialize` would take an array as the fields in
/// order (`["hello","news"]`), so anything but an object is refused first.
fn not_an_object(body: &[u8]) -> Option<ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first == b'{' {
        return None;
    }
    let kind = match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => return Some(ApiError::InvalidJson(e.to_string())),
        Ok(serde_json::Value::Array(_)) => "an array",
        Ok(serde_json::Value::String(_)) => "a string",
        Ok(serde_json::Value::Number(_)) => "a number",
        Ok(serde_json::Value::Bool(_)) => "a boolean",
        Ok(serde_json::Value::Null) => "null",
        Ok(serde_json::Value::Object(_)) => return None,
    };
    Some(ApiError::InvalidBody(format!(
        "it is {kind}; send an object like {{\"message\": \"...\"}}"
    )))
}

/// Parses and checks a publish body.
///
/// # Errors
/// `InvalidJson` for a syntax error, `InvalidBody` for a body that is not
/// an object or has missing, unknown or mistyped fields, `EmptyMessage`,
/// `InvalidTopic`.
pub fn parse_request(body: &[u8]) -> Result<PublishRequest, ApiError> {
    if let Some(error) = not_an_object(body) {
        return Err(error);
    }
    let request: PublishRequest = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::InvalidBody(e.to_string())
        } else {
            ApiError::InvalidJson(e.to_string())
        }
    })?;
    if request.message.trim().is_empty() {
        return Err(ApiError::EmptyMessage);
    }
    if let Some(topic) = &request.topic {
        validate_topic(topic).map_err(ApiError::InvalidTopic)?;
    }
    Ok(request)
}

/// One event of a batch, checked, with the number of its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLine {
    /// Its line, from 1, counting empty lines.
    pub line: usize,
    /// Its event (the topic defaulted).
    pub event: NewEvent,
}

/// Parses and checks a batch body: each non-empty line (lines end with
/// `\n`, a `\r` before it is allowed) is a publish body with the rules of
/// [`parse_request`], at most `max_line` bytes; at most `max_events` of
/// them, and at least one.
///
/// # Errors
/// `TooManyEvents` over `max_events`; `InvalidBody` for a batch without
/// events; `OnLine` naming the first line that is wrong, with its error.
pub fn parse_batch(
    body: &[u8],
    max_events: usize,
    max_line: u64,
) -> Result<Vec<BatchLine>, ApiError> {
    let lines = || {
        body.split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
    };
    let given = lines().count();
    if given > max_events {
        return Err(ApiError::TooManyEvents {
            given,
            limit: max_events,
            bound: "--max-batch",
        });
    }
    if given == 0 {
        return Err(ApiError::InvalidBody(
            "the batch holds no events; send one JSON object like {\"message\": \"...\"} per line"
                .into(),
        ));
    }
    lines()
        .map(|(i, line)| {
            let on_line = |error| ApiError::OnLine {
                line: i + 1,
                error: Box::new(error),
            };
            if line.len() as u64 > max_line {
                return Err(on_line(ApiError::PayloadTooLarge { limit: max_line }));
            }
            let request = parse_request(line).map_err(on_line)?;
            Ok(BatchLine {
                line: i + 1,
                event: NewEvent {
                    topic: request.topic.unwrap_or_else(|| DEFAULT_TOPIC.to_owned()),
                    message: request.message,
                },
            })
        })
        .collect()
}

/// Who publishes, as far as publishing is concerned: the rules, the rate
/// limiter and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct Publisher<'a> {
    /// Tokens and topic rights.
    pub auth: &'a Auth,
    /// The rate limiter, if any.
    pub limiter: Option<&'a PublishLimiter>,
    /// The peer's address, when known.
    pub peer: Option<SocketAddr>,
    /// Its `X-Forwarded-For`, believed only from trusted proxies.
    pub forwarded: Option<&'a HeaderValue>,
}

impl Publisher<'_> {
    /// Takes `events` publishes from the bucket of `grant`'s holder (or of
    /// the client's network).
    fn check_rate(&self, grant: &Grant, events: usize) -> Result<(), ApiError> {
        let Some(limiter) = self.limiter else {
            return Ok(());
        };
        let key = match (&grant.who, self.peer) {
            (Some(who), _) => Key::Token(who.clone()),
            (None, Some(peer)) => limiter.network_key(peer, self.forwarded),
            (None, None) => Key::Overflow,
        };
        let n = u32::try_from(events)
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MAX);
        limiter.check_n(key, n).map_err(|refusal| match refusal {
            RateRefusal::Wait(wait) => ApiError::RateLimited {
                retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
            },
            RateRefusal::OverBurst(burst) => ApiError::TooManyEvents {
                given: events,
                limit: burst as usize,
                bound: "--publish-burst",
            },
        })
    }
}

/// What a publish that went through did.
#[derive(Debug)]
enum Published {
    /// The event (or batch) was stored: its answer.
    Stored(Answer),
    /// Its key was answered before: that answer again.
    Replayed(Answer),
}

/// What a publish stores: its events, and their shape.
#[derive(Debug)]
struct Publish {
    events: Vec<NewEvent>,
    shape: Shape,
}

async fn try_publish<S, B, E>(
    log: &SharedLog,
    settings: &PublishSettings,
    publisher: Publisher<'_>,
    headers: &PublishHeaders,
    body: S,
) -> Result<Published, ApiError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: std::fmt::Display,
{
    let grant = publisher.auth.for_publish(headers.authorization.as_ref())?;
    let shape = check_headers(headers, settings)?;
    let key = headers.idempotency_key.key()?;
    if shape == Shape::One {
        publisher.check_rate(&grant, 1)?;
    }
    let limit = settings.limit(shape);
    let body = tokio::time::timeout(settings.body_timeout, read_limited(body, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout {
            after: settings.body_timeout,
        })??;
    let publish = checked_publish(shape, &body, settings, publisher, &grant)?;
    let Some(key) = key else {
        return match store(log, publish, None).await? {
            Stored::New(answer) => Ok(Published::Stored(answer)),
            // Without a key the log finds none.
            Stored::Found(_) => Err(ApiError::LogUnavailable(
                "the event log answered a publish without a key with a key's record; it was \
                 not published"
                    .into(),
            )),
        };
    };
    let claim = publish.claim(key, &idempotency::scope(grant.who.as_ref()));
    publish_once(log.clone(), claim, publish).await
}

/// Parses and checks `body` (of `shape`) for the holder of `grant`: its
/// fields, its topics against the token, and the rate of its events.
fn checked_publish(
    shape: Shape,
    body: &[u8],
    settings: &PublishSettings,
    publisher: Publisher<'_>,
    grant: &Grant,
) -> Result<Publish, ApiError> {
    let events = match shape {
        Shape::One => {
            let request = parse_request(body)?;
            let topic = request.topic.unwrap_or_else(|| DEFAULT_TOPIC.to_owned());
            publisher.auth.check_publish(grant, &topic)?;
            vec![NewEvent {
                topic,
                message: request.message,
            }]
        }
        Shape::Batch => {
            let lines = parse_batch(body, settings.max_batch, settings.max_body)?;
            for BatchLine { line, event } in &lines {
                publisher
                    .auth
                    .check_publish(grant, &event.topic)
                    .map_err(|error| ApiError::OnLine {
                        line: *line,
                        error: Box::new(error),
                    })?;
            }
            publisher.check_rate(grant, lines.len())?;
            lines.into_iter().map(|line| line.event).collect()
        }
    };
    Ok(Publish { events, shape })
}

impl Publish {
    /// The claim of `key` in `scope` for this body.
    fn claim(&self, key: &str, scope: &str) -> Claim {
        match (self.shape, self.events.as_slice()) {
            (Shape::One, [one]) => Claim::new(key, scope, &one.topic, &one.message),
            _ => Claim::batch(
                key,
                scope,
                self.events
                    .iter()
                    .map(|e| (e.topic.as_str(), e.message.as_str())),
            ),
        }
    }
}

fn append_error(error: AppendError) -> ApiError {
    match error {
        AppendError::Unavailable(e) => ApiError::LogUnavailable(e.0),
        AppendError::TopicLimit(limit) => ApiError::TopicLimit(limit.0),
    }
}

/// What the log did with a publish.
enum Stored {
    /// Stored it: its answer.
    New(Answer),
    /// Found its key stored by another server: nothing was stored.
    Found(Record),
}

/// Has the log store `publish` (one event, or a batch in one write), with
/// `keyed`'s record when given.
async fn store(
    log: &SharedLog,
    publish: Publish,
    keyed: Option<Keyed>,
) -> Result<Stored, ApiError> {
    let Publish { mut events, shape } = publish;
    match shape {
        Shape::One => {
            let NewEvent { topic, message } = events
                .pop()
                .ok_or_else(|| ApiError::InvalidBody("the publish holds no event".into()))?;
            let appended = match keyed {
                None => {
                    KeyedAppend::Stored(log.append(topic, message).await.map_err(append_error)?)
                }
                Some(keyed) => log
                    .append_keyed(keyed, topic, message)
                    .await
                    .map_err(append_error)?,
            };
            Ok(match appended {
                KeyedAppend::Stored(appended) => Stored::New(Answer::One(appended.answer())),
                KeyedAppend::Found(record) => Stored::Found(record),
            })
        }
        Shape::Batch => Ok(
            match log
                .append_batch(events, keyed)
                .await
                .map_err(append_error)?
            {
                BatchAppend::Stored(appended) => {
                    Stored::New(Answer::Batch(batch_answer(&appended)))
                }
                BatchAppend::Found(record) => Stored::Found(record),
            },
        ),
    }
}

/// Publishes under `claim`'s key: a repeat waits for the first and gets
/// its answer. Runs on a task of its own, to its end even when the client
/// goes away, so that a key is never released while its event may still
/// be stored.
async fn publish_once(
    log: SharedLog,
    claim: Claim,
    publish: Publish,
) -> Result<Published, ApiError> {
    let task = tokio::spawn(async move {
        let keys = log.keys();
        let pending = match keys.claim(claim).await {
            Claimed::First(pending) => pending,
            Claimed::Replay(record) => return Ok(Published::Replayed(record.answer.clone())),
            Claimed::Reused => return Err(ApiError::IdempotencyKeyReused),
        };
        let keyed = Keyed {
            name: pending.claim.name.clone(),
            fingerprint: pending.claim.fingerprint.clone(),
            mark: pending.mark,
        };
        match store(&log, publish, Some(keyed)).await? {
            Stored::New(answer) => Ok(Published::Stored(answer)),
            // Stored before, by another server.
            Stored::Found(record) => match keys.replay(&Arc::new(record), &pending.claim) {
                Claimed::Replay(record) => Ok(Published::Replayed(record.answer.clone())),
                _ => Err(ApiError::IdempotencyKeyReused),
            },
        }
    });
    task.await.unwrap_or_else(|error| {
        Err(ApiError::LogUnavailable(format!(
            "the publish stopped before it was answered ({error}); it may or may not have been \
             stored: retry with the same Idempotency-Key"
        )))
    })
}

/// The answer of a publish that went through.
fn published_response(published: &Published) -> warp::reply::Response {
    match published {
        Published::Stored(answer) => warp::reply::json(answer).into_response(),
        Published::Replayed(answer) => {
            let mut response = warp::reply::json(answer).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    }
}

/// Answers `POST /publish`: stores the event in `log`, counting refusals
/// in `metrics` and logging the first of them every
/// [`crate::throttle::EVERY`].
pub async fn handle<S, B, E>(
    metrics: &Metrics,
    log: &SharedLog,
    settings: &PublishSettings,
    publisher: Publisher<'_>,
    headers: PublishHeaders,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: std::fmt::Display,
{
    match try_publish(log, settings, publisher, &headers, body).await {
        Ok(published) => published_response(&published),
        Err(error) => {
            static LOGGED: Throttle = Throttle::new();
            Metrics::add(&metrics.publish_errors, 1);
            if let ApiError::RequestTimeout { .. } = error {
                metrics.refuse(Refusal::BodyTimeout, None);
            } else if let Some(reason) = Refusal::of_auth(&error) {
                metrics.refuse(reason, publisher.peer);
            } else if let Some(left_out) = LOGGED.admit() {
                tracing::info!(
                    code = error.code(),
                    %error,
                    not_logged_since_last = left_out,
                    "publish refused"
                );
            }
            error.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_come_in_order() {
        let settings = PublishSettings {
            max_body: 10,
            body_timeout: Duration::from_secs(1),
            max_batch: 3,
            max_batch_bytes: 100,
        };
        let mut headers = PublishHeaders::default();
        assert!(matches!(
            check_headers(&headers, &settings),
            Err(ApiError::UnsupportedMediaType { .. })
        ));
        headers.content_type = Some(HeaderValue::from_static("Application/JSON; charset=utf-8"));
        assert!(check_headers(&headers, &settings).is_ok());
        headers.content_length = Some(11);
        assert!(matches!(
            check_headers(&headers, &settings),
            Err(ApiError::PayloadTooLarge { limit: 10 })
        ));
    }

    #[test]
    fn a_batch_is_checked_line_by_line() {
        let lines = parse_batch(
            b"{\"message\":\"a\"}\n\n  \r\n{\"message\":\"b\",\"topic\":\"t\"}\r\n",
            3,
            100,
        )
        .unwrap();
        let got: Vec<(usize, &str, &str)> = lines
            .iter()
            .map(|l| (l.line, l.event.topic.as_str(), l.event.message.as_str()))
            .collect();
        assert_eq!(got, [(1, DEFAULT_TOPIC, "a"), (4, "t", "b")]);
        let error =
            parse_batch(b"{\"message\":\"a\"}\n\n{\"message\":\"\"}\n", 3, 100).unwrap_err();
        assert_eq!(error.code(), "bad_request");
        assert_eq!(error.status(), 400);
        assert_eq!(error.to_string(), "line 3: message must not be empty");
        let error = parse_batch(b"{\"message\":\"a\"}\n[1]", 3, 100).unwrap_err();
        assert!(matches!(error, ApiError::OnLine { line: 2, .. }), "{error}");
        let long = format!("{{\"message\":\"{}\"}}", "x".repeat(100));
        let error = parse_batch(long.as_bytes(), 3, 100).unwrap_err();
        assert_eq!(
            (error.status().as_u16(), error.code()),
            (413, "payload_too_large")
        );
        let error = parse_batch(b"{\"message\":\"a\"}\n".repeat(4).as_slice(), 3, 100).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the batch holds 4 events, over the limit of 3 (--max-batch)"
        );
        assert_eq!(
            parse_batch(b"\n \n", 3, 100).unwrap_err().code(),
            "invalid_body"
        );
    }

    #[test]
    fn body_errors_are_told_apart() {
        assert_eq!(parse_request(b"{").unwrap_err().code(), "invalid_json");
        assert_eq!(parse_request(b"{}").unwrap_err().code(), "invalid_body");
        assert_eq!(
            parse_request(br#"{"message":1}"#).unwrap_err().code(),
            "invalid_body"
        );
        assert_eq!(
            parse_request(br#"{"message":"  "}"#).unwrap_err().code(),
            "empty_message"
        );
        assert_eq!(
            parse_request(br#"{"message":"x","topic":"a b"}"#)
                .unwrap_err()
                .code(),
            "invalid_topic"
        );
        assert_eq!(parse_request(br#"{"message":"x"}"#).unwrap().message, "x");
        assert_eq!(
            parse_request(br#" ["hello","news"]"#)
                .unwrap_err()
                .to_string(),
            r#"the JSON body is not a publish request: it is an array; send an object like {"message": "..."}"#
        );
        assert_eq!(parse_request(b"[1,").unwrap_err().code(), "invalid_json");
        assert_eq!(parse_request(b"null").unwrap_err().code(), "invalid_body");
    }
}
