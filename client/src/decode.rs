//! The JSON bodies the page reads and writes, as the shared types, through
//! the browser's own `JSON.parse` and `JSON.stringify`.
//!
//! A JSON library's decoder (with its error messages and the float
//! formatting they pull in) is a large part of a small page's wasm; the
//! browser has one already. Each decoder takes exactly the fields of its
//! shared type and refuses a body that lacks one or has one of the wrong
//! type, as serde would; the browser tests check them against the real
//! server on every event.

use js_sys::{Array, Reflect, JSON};
use shared::{
    ErrorBody, PublishRequest, PublishResponse, ResetNotice, ServerEvent, StreamPosition,
    TopicSummary, TopicsPage,
};
use wasm_bindgen::{JsCast, JsValue};

use crate::feed::reason_from_name;

/// Why a body is not the type asked for.
type Result<T> = std::result::Result<T, String>;

fn parse(text: &str) -> Result<JsValue> {
    let value = JSON::parse(text).map_err(|_| "not JSON".to_owned())?;
    if value.is_object() && !Array::is_array(&value) {
        Ok(value)
    } else {
        Err("not a JSON object".to_owned())
    }
}

fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

fn string(object: &JsValue, name: &str) -> Result<String> {
    field(object, name)
        .as_string()
        .ok_or_else(|| format!("{name} is missing or not a string"))
}

fn number(object: &JsValue, name: &str) -> Result<u64> {
    optional_number(object, name)?.ok_or_else(|| format!("{name} is missing"))
}

/// A whole number that JSON carries exactly (up to 2^53), or `None` for
/// `null` or a missing field.
fn optional_number(object: &JsValue, name: &str) -> Result<Option<u64>> {
    let value = field(object, name);
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    match value.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_992.0 => {
            Ok(Some(n as u64))
        }
        _ => Err(format!("{name} is not a whole number")),
    }
}

fn optional_string(object: &JsValue, name: &str) -> Result<Option<String>> {
    let value = field(object, name);
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    value
        .as_string()
        .map(Some)
        .ok_or_else(|| format!("{name} is not a string"))
}

/// A uuid as the server writes it, hyphenated
/// (`01d28d24-7033-4f12-947f-2f7db7f4a656`, either case). A few lines
/// instead of the uuid crate's parser of every form.
fn uuid(text: &str) -> Result<uuid::Uuid> {
    let bad = || format!("{text:?} is not a hyphenated uuid");
    let b = text.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return Err(bad());
    }
    let mut bytes = [0u8; 16];
    let mut digits = b.iter().filter(|&&c| c != b'-');
    for byte in &mut bytes {
        let mut value = 0;
        for _ in 0..2 {
            let digit = match digits.next().copied().ok_or_else(bad)? {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                c @ b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(bad()),
            };
            value = value * 16 + digit;
        }
        *byte = value;
    }
    Ok(uuid::Uuid::from_bytes(bytes))
}

/// An ordinary event's `data:`.
///
/// # Errors
/// What is wrong with it.
pub fn server_event(text: &str) -> Result<ServerEvent> {
    let value = parse(text)?;
    Ok(ServerEvent {
        id: uuid(&string(&value, "id")?)?,
        seq: number(&value, "seq")?,
        topic: string(&value, "topic")?,
        message: string(&value, "message")?,
        time: string(&value, "time")?,
    })
}

/// A `reset` event's `data:`.
///
/// # Errors
/// What is wrong with it.
pub fn reset_notice(text: &str) -> Result<ResetNotice> {
    let value = parse(text)?;
    let reason = string(&value, "reason")?;
    Ok(ResetNotice {
        reason: reason_from_name(&reason).ok_or_else(|| format!("unknown reason {reason}"))?,
        requested: optional_string(&value, "requested")?,
        missed_from: optional_number(&value, "missed_from")?,
        missed_to: optional_number(&value, "missed_to")?,
        missed_count: optional_number(&value, "missed_count")?,
        resume_seq: number(&value, "resume_seq")?,
        message: string(&value, "message")?,
    })
}

/// A `position` event's `data:`.
///
/// # Errors
/// What is wrong with it.
pub fn stream_position(text: &str) -> Result<StreamPosition> {
    let value = parse(text)?;
    Ok(StreamPosition {
        id: string(&value, "id")?,
        retry_ms: number(&value, "retry_ms")?,
    })
}

/// The answer to a publish.
///
/// # Errors
/// What is wrong with it.
pub fn publish_response(text: &str) -> Result<PublishResponse> {
    let value = parse(text)?;
    Ok(PublishResponse {
        event_id: string(&value, "event_id")?,
        id: uuid(&string(&value, "id")?)?,
        seq: number(&value, "seq")?,
        topic: string(&value, "topic")?,
    })
}

/// An error answer's body.
///
/// # Errors
/// What is wrong with it.
pub fn error_body(text: &str) -> Result<ErrorBody> {
    let value = parse(text)?;
    Ok(ErrorBody {
        error: string(&value, "error")?,
        message: string(&value, "message")?,
    })
}

/// A `GET /topics` body.
///
/// # Errors
/// What is wrong with it.
pub fn topics_page(text: &str) -> Result<TopicsPage> {
    let value = parse(text)?;
    let list: Array = field(&value, "topics")
        .dyn_into()
        .map_err(|_| "topics is not a list".to_owned())?;
    let topics = list
        .iter()
        .map(|topic| {
            Ok(TopicSummary {
                name: string(&topic, "name")?,
                subscribers: number(&topic, "subscribers")?,
                retained: number(&topic, "retained")?,
                last_seq: number(&topic, "last_seq")?,
                published_total: number(&topic, "published_total")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TopicsPage {
        topics,
        next: optional_string(&value, "next")?,
        history_per_topic: number(&value, "history_per_topic")?,
    })
}

/// The body of `POST /publish` (no `topic` when it has none).
pub fn publish_request(request: &PublishRequest) -> String {
    let object = js_sys::Object::new();
    let _ = Reflect::set(&object, &"message".into(), &request.message.as_str().into());
    if let Some(topic) = &request.topic {
        let _ = Reflect::set(&object, &"topic".into(), &topic.as_str().into());
    }
    JSON::stringify(&object)
        .ok()
        .and_then(|text| text.as_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_as_the_server_writes_them() {
        let id = uuid::Uuid::from_bytes(
            *b"\x01\xd2\x8d\x24\x70\x33\x4f\x12\x94\x7f\x2f\x7d\xb7\xf4\xa6\x56",
        );
        assert_eq!(uuid(&id.to_string()), Ok(id));
        assert_eq!(uuid(&id.to_string().to_uppercase()), Ok(id));
        assert_eq!(
            uuid("00000000-0000-0000-0000-000000000000"),
            Ok(uuid::Uuid::nil())
        );
        for bad in [
            "",
            "01d28d2470334f12947f2f7db7f4a656",
            "01d28d24-7033-4f12-947f-2f7db7f4a65",
            "01d28d24-7033-4f12-947f-2f7db7f4a65g",
            "01d28d24_7033-4f12-947f-2f7db7f4a656",
            "{01d28d24-7033-4f12-947f-2f7db7f4a65}",
        ] {
            assert!(uuid(bad).is_err(), "{bad}");
        }
    }
}
