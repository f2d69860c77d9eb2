//! `shared::encode` / `encode_into` / `encode_comment` against `shared::Parser`.
//!
//! Property, for an optional comment and up to 8 frames of arbitrary
//! `event`, `id`, `retry` and `data`:
//! - a frame whose `event` or `id` holds CR, LF or NUL is refused with
//!   `ForbiddenCharacter` naming that field (`event` first), and
//!   `encode_into` leaves its output as it was; every other frame is encoded;
//! - an encoded frame alone parses to exactly its `retry` (when set) and one
//!   event whose type is `event` (`message` when absent or empty), whose data
//!   is `data` with every CRLF, CR and LF made LF, and whose last event id is
//!   `id` (empty when absent);
//! - the comment alone parses to one comment per line of its text (split on
//!   CRLF, CR, LF), each the line after `": "`, and no event;
//! - the comment followed by every encoded frame parses to exactly the
//!   concatenation of those, the last event id carried over from the
//!   previous frame when a frame has none.

use crate::lines;
use arbitrary::Arbitrary;
use shared::{encode, encode_comment, encode_into, EncodeError, Frame, Item, ParsedEvent, Parser};

#[derive(Debug, Arbitrary)]
struct FrameInput {
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    data: String,
}

/// One input: an optional comment, then frames (the first 8 are used).
#[derive(Debug, Arbitrary)]
pub struct Input {
    comment: Option<String>,
    frames: Vec<FrameInput>,
}

fn breaks_a_line(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.contains(['\r', '\n', '\0']))
}

/// What the parser must report for `frame` when `last_event_id` was in
/// force before it.
fn expected_items(frame: &Frame<'_>, last_event_id: &str) -> Vec<Item> {
    let mut items = Vec::new();
    if let Some(retry) = frame.retry {
        items.push(Item::Retry(retry));
    }
    items.push(Item::Event(ParsedEvent {
        event: match frame.event {
            None | Some("") => "message".to_owned(),
            Some(name) => name.to_owned(),
        },
        data: lines::normalized(frame.data),
        last_event_id: frame.id.unwrap_or(last_event_id).to_owned(),
    }));
    items
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
    let mut stream = String::new();
    let mut expected = Vec::new();
    if let Some(comment) = &input.comment {
        let block = encode_comment(comment);
        let lines: Vec<Item> = lines::split(comment)
            .into_iter()
            .map(|line| Item::Comment(format!(" {line}")))
            .collect();
        assert_eq!(
            Parser::parse_all(block.as_bytes()),
            lines,
            "comment {comment:?} encoded as {block:?}"
        );
        stream.push_str(&block);
        expected.extend(lines);
    }

    let mut last_event_id = String::new();
    for input in input.frames.iter().take(8) {
        let frame = Frame {
            event: input.event.as_deref(),
            id: input.id.as_deref(),
            retry: input.retry,
            data: &input.data,
        };
        let refusal = if breaks_a_line(frame.event) {
            Some(EncodeError::ForbiddenCharacter { field: "event" })
        } else if breaks_a_line(frame.id) {
            Some(EncodeError::ForbiddenCharacter { field: "id" })
        } else {
            None
        };
        let before = stream.len();
        let appended = encode_into(&mut stream, &frame);
        match refusal {
            Some(error) => {
                assert_eq!(appended, Err(error), "{frame:?}");
                assert_eq!(stream.len(), before, "a refused {frame:?} wrote something");
                assert_eq!(encode(&frame), Err(error), "{frame:?}");
            }
            None => {
                assert_eq!(appended, Ok(()), "{frame:?}");
                let bytes = encode(&frame).unwrap_or_else(|e| panic!("{frame:?}: {e}"));
                assert_eq!(&stream[before..], bytes, "encode and encode_into differ");
                assert_eq!(
                    Parser::parse_all(bytes.as_bytes()),
                    expected_items(&frame, ""),
                    "{frame:?} encoded as {bytes:?}"
                );
                expected.extend(expected_items(&frame, &last_event_id));
                if let Some(id) = frame.id {
                    id.clone_into(&mut last_event_id);
                }
            }
        }
    }
    assert_eq!(
        Parser::parse_all(stream.as_bytes()),
        expected,
        "the frames together, {stream:?}"
    );
}
