//! `shared::EventId` parsing and `server::stream::StreamRequest::from_query`.
//!
//! Property:
//! - `id.parse::<EventId>()` never panics and gives exactly what the rules
//!   say: `TooLong` over `MAX_EVENT_ID_LEN` bytes, else `MissingSeparator`
//!   without a `-`, else `BadNumber` naming the first part (before the first
//!   `-`: epoch; after it: seq) that is not 1+ ASCII digits fitting in 64
//!   bits, else those two numbers;
//! - a parsed id, and `EventId::new(epoch, seq)` for any numbers, displays
//!   as a string that parses back to the same id and is no longer than the
//!   string it came from; a well-formed id padded with leading zeros past
//!   `MAX_EVENT_ID_LEN` bytes is `TooLong`;
//! - `from_query(query, header)` never panics; it refuses with
//!   `invalid_topic` (and `validate_topic`'s message) exactly when a `topic`
//!   value, read as `application/x-www-form-urlencoded`, fails
//!   `validate_topic`, naming the first one; otherwise every topic passes
//!   `validate_topic`, the topics are exactly the `topic` values (all topics
//!   when there is none), and the last event id is the header, else the
//!   last `lastEventId` value;
//! - a `last` value that is not a decimal number from 0 to the most allowed
//!   is refused with `invalid_query` when it comes before any bad topic;
//!   an accepted request's `last` is the last `last` value, or 0 when an
//!   id is given.

use std::collections::HashSet;

use crate::form;
use arbitrary::Arbitrary;
use server::stream::StreamRequest;
use shared::TopicPattern;
use shared::{validate_topic, EventId, EventIdError, MAX_EVENT_ID_LEN};

/// The most `last` the queries are checked against.
const MAX_LAST: u64 = 100;

/// One input: an id to parse, the two numbers of another, a
/// `Last-Event-ID` header and a `/stream` query string.
#[derive(Debug, Arbitrary)]
pub struct Input {
    id: String,
    epoch: u64,
    seq: u64,
    header: Option<String>,
    query: String,
}

/// A part of an id: one or more ASCII digits whose value fits in 64 bits.
fn number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    part.bytes().try_fold(0u64, |acc, b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn expected_id(s: &str) -> Result<EventId, EventIdError> {
    if s.len() > MAX_EVENT_ID_LEN {
        return Err(EventIdError::TooLong);
    }
    let Some(dash) = s.find('-') else {
        return Err(EventIdError::MissingSeparator);
    };
    let epoch = number(&s[..dash]).ok_or(EventIdError::BadNumber { part: "epoch" })?;
    let seq = number(&s[dash + 1..]).ok_or(EventIdError::BadNumber { part: "seq" })?;
    Ok(EventId::new(epoch, seq))
}

fn check_id(s: &str) {
    let parsed = s.parse::<EventId>();
    assert_eq!(parsed, expected_id(s), "parsing {s:?}");
    if let Ok(id) = parsed {
        round_trips(id, Some(s));
    }
}

/// `id` displays as a string that parses back to it (no longer than `from`,
/// the string it was read from), and that string padded with leading zeros
/// past `MAX_EVENT_ID_LEN` bytes is too long.
fn round_trips(id: EventId, from: Option<&str>) {
    let shown = id.to_string();
    assert_eq!(
        shown.parse::<EventId>(),
        Ok(id),
        "{id:?} shown as {shown:?}"
    );
    if let Some(from) = from {
        assert!(
            shown.len() <= from.len(),
            "{id:?} shown as {shown:?}, read from {from:?}"
        );
    }
    let padded = format!("{}{shown}", "0".repeat(MAX_EVENT_ID_LEN + 1 - shown.len()));
    assert_eq!(
        padded.parse::<EventId>(),
        Err(EventIdError::TooLong),
        "{padded:?}"
    );
}

fn check_query(query: &str, header: Option<&str>) {
    let pairs = form::parse(query);
    let topics: Vec<&str> = pairs
        .iter()
        .filter(|(name, _)| name == "topic")
        .map(|(_, value)| value.as_str())
        .collect();
    let query_id = pairs
        .iter()
        .rev()
        .find(|(name, _)| name == "lastEventId")
        .map(|(_, value)| value.as_str());
    // Each `topic=` is a topic name, a prefix pattern `NAME.*` or `*`;
    // each `last=` a number up to MAX_LAST. The first bad one is named.
    let last_ok = |value: &str| value.parse::<u64>().is_ok_and(|n| n <= MAX_LAST);
    let first_bad = pairs.iter().find_map(|(name, value)| match name.as_str() {
        "topic" => TopicPattern::parse(value)
            .err()
            .map(|why| ("invalid_topic", why)),
        "last" if !last_ok(value) => Some((
            "invalid_query",
            format!(
                "last must be a number from 0 to {MAX_LAST} (--history-per-topic), not {value:?}"
            ),
        )),
        _ => None,
    });
    let last = pairs
        .iter()
        .rev()
        .find(|(name, _)| name == "last")
        .map_or(0, |(_, value)| value.parse::<u64>().unwrap_or(0));

    let answer = StreamRequest::from_query(query, header.map(str::to_owned), MAX_LAST);
    match (answer, first_bad) {
        (Err(error), Some((code, why))) => {
            assert_eq!(error.code(), code, "{query:?}: {error}");
            assert_eq!(error.to_string(), why, "{query:?}");
        }
        (Err(error), None) => panic!("{query:?} refused ({}: {error})", error.code()),
        (Ok(request), Some(why)) => {
            panic!(
                "{query:?} accepted ({request:?}) though {} is invalid: {}",
                why.0, why.1
            )
        }
        (Ok(request), None) => {
            // Exactly the patterns named, each once, each valid.
            let named: HashSet<TopicPattern> = topics
                .iter()
                .map(|t| TopicPattern::parse(t).expect("checked above"))
                .collect();
            let got: HashSet<TopicPattern> = request.patterns.iter().cloned().collect();
            assert_eq!(got, named, "{query:?}");
            for pattern in &request.patterns {
                if let TopicPattern::Exact(name) = pattern {
                    assert!(validate_topic(name).is_ok(), "{query:?} let {name:?} in");
                }
            }
            assert_eq!(
                request.last_event_id.as_deref(),
                header.or(query_id),
                "{query:?} with header {header:?}"
            );
            if let Some(id) = &request.last_event_id {
                check_id(id);
            }
            let expected_last = if request.last_event_id.is_some() {
                0
            } else {
                last
            };
            assert_eq!(
                request.last, expected_last,
                "{query:?} with header {header:?}"
            );
        }
    }
}

/// Decodes `data` into an [`Input`] as the libFuzzer binary does
/// ([`crate::decode`]) and checks the property on it. `false`: `data`
/// does not decode, and is skipped (libFuzzer rejects it).
pub fn run(data: &[u8]) -> bool {
    let Some(input) = crate::decode(data) else {
        return false;
    };
    check(&input);
    true
}

/// Checks the property on one decoded input.
pub fn check(input: &Input) {
    check_id(&input.id);
    if let Some(header) = &input.header {
        check_id(header);
    }
    let id = EventId::new(input.epoch, input.seq);
    round_trips(id, None);
    check_query(&input.query, input.header.as_deref());
}
