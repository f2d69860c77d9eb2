//! `server::publish::parse_request`, the check of a `POST /publish` body,
//! and `server::publish::parse_batch`, the check of a batch (NDJSON) body.
//!
//! Property: it never panics, and
//! - a body that is not JSON is refused with `invalid_json` or
//!   `invalid_body` (the latter when the field check fails before the
//!   syntax error is reached, as in `{"x":`);
//! - JSON that is not an object is refused with `invalid_body`;
//! - a JSON object is refused with `invalid_body` when it has a key other
//!   than `message` and `topic`, a key twice, no `message`, a `message` that
//!   is not a string, or a `topic` that is neither a string nor null; else
//!   with `empty_message` when `message` is blank (only white space); else
//!   with `invalid_topic` (and `validate_topic`'s message) when `topic` fails
//!   `validate_topic`; else it is accepted with exactly that message and
//!   topic (`None` for an absent or null topic).
//!
//! So every accepted body is a JSON object with a non-blank `message` and a
//! valid or absent `topic`, and every refusal is one of `invalid_json`,
//! `invalid_body`, `empty_message`, `invalid_topic`.
//!
//! The same input as a batch: it never panics, and its answer is what
//! `parse_request` says of each of its non-blank lines (split at `\n`):
//! with none, `invalid_body`; with more than the limit, `too_many_events`;
//! else the first line refused (or over the line limit) is named, with its
//! number and its own error; else every line is accepted, in order, with
//! its number and the default topic where it has none.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use server::error::ApiError;
use server::publish::{parse_batch, parse_request};
use shared::{validate_topic, PublishRequest, DEFAULT_TOPIC};

/// A JSON object's entries in order, a repeated key kept twice (which
/// `serde_json::Value` would collapse).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// The answer the rules above give for a JSON object: the request, or the
/// refusal's code and, for `invalid_topic`, its message.
fn expected_for_object(
    entries: &[(String, Value)],
) -> Result<PublishRequest, (&'static str, String)> {
    let invalid_body = Err(("invalid_body", String::new()));
    let mut message = None;
    let mut topic = None;
    for (index, (key, value)) in entries.iter().enumerate() {
        if entries[..index].iter().any(|(earlier, _)| earlier == key) {
            return invalid_body;
        }
        match (key.as_str(), value) {
            ("message", Value::String(text)) => message = Some(text.clone()),
            ("topic", Value::String(name)) => topic = Some(name.clone()),
            ("topic", Value::Null) => {}
            _ => return invalid_body,
        }
    }
    let Some(message) = message else {
        return invalid_body;
    };
    if message.chars().all(char::is_whitespace) {
        return Err(("empty_message", String::new()));
    }
    if let Some(topic) = &topic {
        if let Err(why) = validate_topic(topic) {
            return Err(("invalid_topic", why));
        }
    }
    Ok(PublishRequest { message, topic })
}

/// Events in a batch at most, and bytes in one of its lines, for the
/// batch check (small, so that inputs reach both limits).
const MAX_EVENTS: usize = 8;
const MAX_LINE: u64 = 256;

/// Checks the batch property on one input.
fn run_batch(body: &[u8]) {
    let shown = String::from_utf8_lossy(body);
    let lines: Vec<(usize, &[u8])> = body
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| (i + 1, line))
        .collect();
    let answer = parse_batch(body, MAX_EVENTS, MAX_LINE);
    if lines.is_empty() {
        let error = answer.expect_err("a batch without events is refused");
        assert_eq!(error.code(), "invalid_body", "{shown:?}: {error}");
        return;
    }
    if lines.len() > MAX_EVENTS {
        let error = answer.expect_err("a batch over the limit is refused");
        assert_eq!(error.code(), "too_many_events", "{shown:?}: {error}");
        return;
    }
    let mut expected = Vec::new();
    for (number, line) in &lines {
        let refusal = if line.len() as u64 > MAX_LINE {
            Some("payload_too_large")
        } else {
            match parse_request(line) {
                Ok(request) => {
                    let topic = request.topic.unwrap_or_else(|| DEFAULT_TOPIC.to_owned());
                    expected.push((*number, topic, request.message));
                    None
                }
                Err(error) => Some(error.code()),
            }
        };
        if let Some(code) = refusal {
            match answer {
                Err(ApiError::OnLine { line, error }) => {
                    assert_eq!(line, *number, "{shown:?}: the first bad line is named");
                    assert_eq!(error.code(), code, "{shown:?}: line {line}: {error}");
                }
                other => panic!("{shown:?}: line {number} is refused with {code}, got {other:?}"),
            }
            return;
        }
    }
    let got: Vec<(usize, String, String)> = answer
        .unwrap_or_else(|error| panic!("{shown:?}: every line is good, refused: {error}"))
        .into_iter()
        .map(|line| (line.line, line.event.topic, line.event.message))
        .collect();
    assert_eq!(got, expected, "{shown:?}");
}

/// Checks the property on one input, a request body, and the batch
/// property on it as a batch body.
pub fn run(body: &[u8]) {
    run_batch(body);
    let answer = parse_request(body);
    let shown = String::from_utf8_lossy(body);
    match serde_json::from_slice::<Value>(body) {
        Err(_) => match answer {
            Ok(request) => panic!("accepted a body that is not JSON: {shown:?} as {request:?}"),
            Err(error) => assert!(
                matches!(error.code(), "invalid_json" | "invalid_body"),
                "{shown:?} (not JSON) refused as {}: {error}",
                error.code()
            ),
        },
        Ok(Value::Object(_)) => {
            let entries = serde_json::from_slice::<Entries>(body)
                .unwrap_or_else(|e| panic!("{shown:?} is an object but not its entries: {e}"));
            match (answer, expected_for_object(&entries.0)) {
                (Ok(request), Ok(expected)) => assert_eq!(request, expected, "{shown:?}"),
                (Err(error), Err((code, why))) => {
                    assert_eq!(error.code(), code, "{shown:?}: {error}");
                    if code == "invalid_topic" {
                        assert_eq!(error.to_string(), why, "{shown:?}");
                    }
                }
                (Ok(request), Err((code, _))) => {
                    panic!("accepted {shown:?} as {request:?}; it should be refused with {code}")
                }
                (Err(error), Ok(expected)) => panic!(
                    "refused {shown:?} ({}: {error}); it should be accepted as {expected:?}",
                    error.code()
                ),
            }
        }
        Ok(other) => match answer {
            Ok(request) => panic!(
                "accepted a JSON body that is not an object: {shown:?} ({}) as {request:?}",
                kind(&other)
            ),
            Err(error) => assert_eq!(
                error.code(),
                "invalid_body",
                "{shown:?} ({}) refused: {error}",
                kind(&other)
            ),
        },
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
