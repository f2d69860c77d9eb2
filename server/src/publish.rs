//! `POST /publish`: checks the request in order (token 401, content type
//! 415, size 413, `Idempotency-Key` 400, rate 429, JSON and fields 400, the
//! token's topics 403) and stores the event only when everything is right.
//! With an `Idempotency-Key`, a repeat gets the first answer again (with
//! `Idempotent-Replayed: true`), and a key reused for another body 422 (see
//! [`crate::idempotency`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use shared::{validate_topic, PublishRequest, PublishResponse, DEFAULT_TOPIC};
use warp::http::HeaderValue;
use warp::Reply;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::event_log::{AppendError, Keyed, KeyedAppend, SharedLog};
use crate::idempotency::{self, Claim, Claimed, KeyHeader};
use crate::metrics::{Metrics, Refusal};
use crate::rate::{Key, PublishLimiter};
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
    /// Largest accepted body in bytes.
    pub max_body: u64,
    /// How long the body may take to arrive, from the end of the head.
    pub body_timeout: Duration,
}

fn check_headers(headers: &PublishHeaders, settings: &PublishSettings) -> Result<(), ApiError> {
    let content_type = headers
        .content_type
        .as_ref()
        .map_or("none".into(), |v| String::from_utf8_lossy(v.as_bytes()));
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType {
            found: content_type.into_owned(),
        });
    }
    if headers
        .content_length
        .is_some_and(|n| n > settings.max_body)
    {
        return Err(ApiError::PayloadTooLarge {
            limit: settings.max_body,
        });
    }
    Ok(())
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

/// What a publish that went through did.
#[derive(Debug)]
enum Published {
    /// The event was stored: its answer.
    Stored(PublishResponse),
    /// Its key was answered before: that answer again.
    Replayed(PublishResponse),
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
    check_headers(headers, settings)?;
    let key = headers.idempotency_key.key()?;
    if let Some(limiter) = publisher.limiter {
        let key = match (&grant.who, publisher.peer) {
            (Some(who), _) => Key::Token(who.clone()),
            (None, Some(peer)) => limiter.network_key(peer, publisher.forwarded),
            (None, None) => Key::Overflow,
        };
        limiter.check(key).map_err(|wait| ApiError::RateLimited {
            retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
        })?;
    }
    let body = tokio::time::timeout(settings.body_timeout, read_limited(body, settings.max_body))
        .await
        .map_err(|_| ApiError::RequestTimeout {
            after: settings.body_timeout,
        })??;
    let request = parse_request(&body)?;
    let topic = request.topic.unwrap_or_else(|| DEFAULT_TOPIC.to_owned());
    publisher.auth.check_publish(&grant, &topic)?;
    let Some(key) = key else {
        let appended = log
            .append(topic, request.message)
            .await
            .map_err(append_error)?;
        return Ok(Published::Stored(appended.answer()));
    };
    let scope = idempotency::scope(grant.who.as_ref());
    let claim = Claim::new(key, &scope, &topic, &request.message);
    publish_once(log.clone(), claim, topic, request.message).await
}

fn append_error(error: AppendError) -> ApiError {
    match error {
        AppendError::Unavailable(e) => ApiError::LogUnavailable(e.0),
        AppendError::TopicLimit(limit) => ApiError::TopicLimit(limit.0),
    }
}

/// Publishes under `claim`'s key: a repeat waits for the first and gets
/// its answer. Runs on a task of its own, to its end even when the client
/// goes away, so that a key is never released while its event may still
/// be stored.
async fn publish_once(
    log: SharedLog,
    claim: Claim,
    topic: String,
    message: String,
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
        match log
            .append_keyed(keyed, topic, message)
            .await
            .map_err(append_error)?
        {
            KeyedAppend::Stored(appended) => Ok(Published::Stored(appended.answer())),
            // Stored before, by another server.
            KeyedAppend::Found(record) => match keys.replay(&Arc::new(record), &pending.claim) {
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
