//! `POST /publish`: checks the request in order (token, content type, size,
//! JSON, fields) and stores the event only when everything is right.

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use shared::{validate_topic, PublishRequest, PublishResponse, DEFAULT_TOPIC};
use warp::Reply;

use crate::error::ApiError;
use crate::event_log::{AppendError, EventLog};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// The request's headers that publishing looks at.
#[derive(Debug, Default)]
pub struct PublishHeaders {
    /// `Authorization`.
    pub authorization: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Length`, when the client sent one.
    pub content_length: Option<u64>,
}

/// Publishing limits.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// Required bearer token, if any.
    pub token: Option<String>,
    /// Largest accepted body in bytes.
    pub max_body: u64,
}

/// Compares without stopping at the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_headers(headers: &PublishHeaders, settings: &PublishSettings) -> Result<(), ApiError> {
    if let Some(token) = &settings.token {
        let given = headers
            .authorization
            .as_deref()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return Err(ApiError::Unauthorized);
        }
    }
    let content_type = headers.content_type.as_deref().unwrap_or("none");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType {
            found: content_type.to_owned(),
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
async fn read_limited<S, B>(body: S, limit: u64) -> Result<BytesMut, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
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

/// Parses and checks a publish body.
///
/// # Errors
/// `InvalidJson` for a syntax error, `InvalidBody` for missing, unknown or
/// mistyped fields, `EmptyMessage`, `InvalidTopic`.
pub fn parse_request(body: &[u8]) -> Result<PublishRequest, ApiError> {
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

async fn try_publish<S, B>(
    log: &dyn EventLog,
    settings: &PublishSettings,
    headers: &PublishHeaders,
    body: S,
) -> Result<PublishResponse, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    check_headers(headers, settings)?;
    let body = read_limited(body, settings.max_body).await?;
    let request = parse_request(&body)?;
    let topic = request.topic.unwrap_or_else(|| DEFAULT_TOPIC.to_owned());
    let appended = log
        .append(topic, request.message)
        .await
        .map_err(|e| match e {
            AppendError::Unavailable(e) => ApiError::LogUnavailable(e.0),
            AppendError::TopicLimit(limit) => ApiError::TopicLimit(limit.0),
        })?;
    Ok(PublishResponse {
        event_id: appended.id.to_string(),
        id: appended.event.id,
        seq: appended.event.seq,
        topic: appended.event.topic,
    })
}

/// Answers `POST /publish`: stores the event in `log`, counting refusals
/// in `hub`'s metrics.
pub async fn handle<S, B>(
    hub: &Hub,
    log: &dyn EventLog,
    settings: &PublishSettings,
    headers: PublishHeaders,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    match try_publish(log, settings, &headers, body).await {
        Ok(answer) => warp::reply::json(&answer).into_response(),
        Err(error) => {
            Metrics::add(&hub.metrics.publish_errors, 1);
            tracing::info!(code = error.code(), %error, "publish refused");
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
            token: Some("s3cret".into()),
            max_body: 10,
        };
        let mut headers = PublishHeaders::default();
        assert!(matches!(
            check_headers(&headers, &settings),
            Err(ApiError::Unauthorized)
        ));
        headers.authorization = Some("Bearer wrong!".into());
        assert!(matches!(
            check_headers(&headers, &settings),
            Err(ApiError::Unauthorized)
        ));
        headers.authorization = Some("Bearer s3cret".into());
        assert!(matches!(
            check_headers(&headers, &settings),
            Err(ApiError::UnsupportedMediaType { .. })
        ));
        headers.content_type = Some("Application/JSON; charset=utf-8".into());
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
    }
}
