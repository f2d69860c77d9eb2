//! Every error answer: a status and a JSON [`ErrorBody`] saying what was wrong.

use std::convert::Infallible;
use std::time::Duration;

use shared::ErrorBody;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reject::Rejection;
use warp::Reply;

use crate::throttle::Throttle;

/// What the server refuses, with the status and code it answers with.
///
/// A filter can also reject with one ([`warp::reject::custom`]); [`recover`]
/// answers it as it is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (400 `invalid_json`).
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The JSON does not have the expected fields (400 `invalid_body`).
    #[error("the JSON body is not a publish request: {0}")]
    InvalidBody(String),
    /// An empty message (400 `empty_message`).
    #[error("message must not be empty")]
    EmptyMessage,
    /// A topic name that breaks the rules (400 `invalid_topic`).
    #[error("{0}")]
    InvalidTopic(String),
    /// A body over the limit (413 `payload_too_large`).
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A content type other than JSON (415 `unsupported_media_type`).
    #[error(
        "content type {found} is not accepted; send Content-Type: application/json (or \
         application/x-ndjson for a batch)"
    )]
    UnsupportedMediaType {
        /// The content type received, or `none`.
        found: String,
    },
    /// A missing, malformed or invalid token where one is needed (401
    /// `unauthorized`, with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token that does not cover what was asked (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// Over `--publish-rate` (429 `rate_limited`, with Retry-After).
    #[error("too many publishes; retry in {retry_after_s} s")]
    RateLimited {
        /// Seconds until the next publish would be allowed.
        retry_after_s: u64,
    },
    /// Subscriber limit reached (503 `too_many_subscribers`, with Retry-After).
    #[error("the server holds its maximum of {0} subscribers; retry later")]
    TooManySubscribers(usize),
    /// Connection limit reached (503 `too_many_connections`, with
    /// Retry-After; the connection is closed).
    #[error("the server holds its maximum of {0} connections; retry later")]
    TooManyConnections(usize),
    /// The body did not arrive in time (408 `request_timeout`; the
    /// connection is closed).
    #[error("the body did not arrive within {}", humantime::format_duration(*.after))]
    RequestTimeout {
        /// The time it had (`--body-timeout`).
        after: Duration,
    },
    /// A transfer coding other than chunked (501 `not_implemented`).
    #[error(
        "Transfer-Encoding {0:?} is not supported; send the body as it is, with Content-Length or Transfer-Encoding: chunked"
    )]
    UnsupportedTransferCoding(String),
    /// The event log cannot store events now (503 `log_unavailable`, with
    /// Retry-After).
    #[error("{0}")]
    LogUnavailable(String),
    /// The body could not be read (400 `unreadable_body`).
    #[error("the body could not be read: {0}")]
    UnreadableBody(String),
    /// No such route (404 `not_found`).
    #[error("no such endpoint; see GET / for the list")]
    NotFound,
    /// Wrong method for the route (405 `method_not_allowed`, with `Allow`).
    #[error("method not allowed for this endpoint")]
    MethodNotAllowed {
        /// The methods the route answers, as the `Allow` header lists them.
        allow: &'static str,
    },
    /// A new topic while every live topic is followed and the live-topic
    /// limit is reached (503 `topic_limit`, with Retry-After).
    #[error("the server holds its maximum of {0} live topics, all of them followed; retry later")]
    TopicLimit(usize),
    /// A query parameter with a bad value (400 `invalid_query`).
    #[error("{0}")]
    InvalidQuery(String),
    /// An `Idempotency-Key` that is not 1 to 255 visible ASCII characters,
    /// or more than one (400 `bad_idempotency_key`).
    #[error("{0}")]
    BadIdempotencyKey(String),
    /// An `Idempotency-Key` already used with another body (422
    /// `idempotency_key_reused`).
    #[error(
        "this Idempotency-Key was already used with another body; use a new key for a new event"
    )]
    IdempotencyKeyReused,
    /// A batch with more events than allowed (413 `too_many_events`).
    #[error("the batch holds {given} events, over the limit of {limit} ({bound})")]
    TooManyEvents {
        /// Events in the batch.
        given: usize,
        /// The limit.
        limit: usize,
        /// Which setting sets it (`--max-batch`, `--publish-burst`).
        bound: &'static str,
    },
    /// A batch line that is wrong (400 `bad_request`, 413
    /// `payload_too_large` for a line over `--max-body`, or 403 `forbidden`
    /// for a topic the token may not publish to), with the line's number
    /// in the body's `line` and the line's own error code in `reason`.
    #[error("line {line}: {error}")]
    OnLine {
        /// The line's number, from 1, counting empty lines.
        line: usize,
        /// What is wrong with it.
        error: Box<ApiError>,
    },
    /// A stream naming more topics than allowed (400 `too_many_topics`).
    #[error("the stream names {given} topics; the limit is {limit} per stream")]
    TooManyTopics {
        /// Distinct topics named.
        given: usize,
        /// The limit (`--max-topics-per-stream`).
        limit: usize,
    },
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidBody(_)
            | ApiError::EmptyMessage
            | ApiError::InvalidTopic(_)
            | ApiError::UnreadableBody(_)
            | ApiError::InvalidQuery(_)
            | ApiError::BadIdempotencyKey(_)
            | ApiError::TooManyTopics { .. } => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } | ApiError::TooManyEvents { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::OnLine { error, .. } => match **error {
                ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
                ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            },
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooManySubscribers(_)
            | ApiError::TooManyConnections(_)
            | ApiError::LogUnavailable(_)
            | ApiError::TopicLimit(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedTransferCoding(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable code in the body's `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::EmptyMessage => "empty_message",
            ApiError::InvalidTopic(_) => "invalid_topic",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManySubscribers(_) => "too_many_subscribers",
            ApiError::TooManyConnections(_) => "too_many_connections",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::UnsupportedTransferCoding(_) => "not_implemented",
            ApiError::LogUnavailable(_) => "log_unavailable",
            ApiError::UnreadableBody(_) => "unreadable_body",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::TooManyTopics { .. } => "too_many_topics",
            ApiError::TopicLimit(_) => "topic_limit",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::BadIdempotencyKey(_) => "bad_idempotency_key",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::TooManyEvents { .. } => "too_many_events",
            ApiError::OnLine { error, .. } => match **error {
                ApiError::Forbidden(_) => "forbidden",
                ApiError::PayloadTooLarge { .. } => "payload_too_large",
                _ => "bad_request",
            },
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> warp::reply::Response {
        let body = ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        let mut response = match &self {
            ApiError::OnLine { line, error } => {
                let body = serde_json::json!({
                    "error": body.error,
                    "line": line,
                    "reason": error.code(),
                    "message": body.message,
                });
                warp::reply::with_status(warp::reply::json(&body), self.status()).into_response()
            }
            _ => warp::reply::with_status(warp::reply::json(&body), self.status()).into_response(),
        };
        let headers = response.headers_mut();
        match self {
            ApiError::RateLimited { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManySubscribers(_) | ApiError::TopicLimit(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::TooManyConnections(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // The rest of the body may still come, or never: the connection
            // cannot carry another request.
            ApiError::RequestTimeout { .. } | ApiError::UnsupportedTransferCoding(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::LogUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// Turns rejections into JSON errors: an [`ApiError`] a filter rejected
/// with as it is, anything else as 404. The routes check the method only
/// once the path matched, so warp's own `MethodNotAllowed` (from serving
/// the page's files, which checks for GET first) means no route matched.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    static UNHANDLED: Throttle = Throttle::new();
    let error = if let Some(error) = rejection.find::<ApiError>() {
        error.clone()
    } else {
        if !rejection.is_not_found() && rejection.find::<warp::reject::MethodNotAllowed>().is_none()
        {
            if let Some(left_out) = UNHANDLED.admit() {
                tracing::warn!(
                    ?rejection,
                    not_logged_since_last = left_out,
                    "unhandled rejection"
                );
            }
        }
        ApiError::NotFound
    };
    Ok(error.into_response())
}
