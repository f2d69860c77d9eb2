//! A reference for "interpreting an event stream"
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>),
//! written step by step from the specification over a whole stream at once,
//! so that it shares nothing with the incremental `shared::Parser` but the
//! result types.
//!
//! It reports what `shared::Parser` reports: each dispatched event, each
//! comment line's text after the colon, and each `retry` the parser accepts.

use shared::{Item, ParsedEvent};

/// What a whole stream amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpretation {
    /// Events, comments and retries, in stream order.
    pub items: Vec<Item>,
    /// The event source's "last event ID string" at the end of the stream:
    /// what a client that reconnects now sends as `Last-Event-ID`. The spec
    /// sets it from the last event ID buffer only when an event is
    /// dispatched (at a blank line, even one that dispatches nothing).
    pub last_event_id: String,
}

/// A `retry` value the project honours: ASCII digits only, at least one.
///
/// The spec takes any such value as a base-ten integer; the project keeps
/// the reconnection time in a `u64` of milliseconds and ignores a value too
/// large for it (documented in `shared/src/parse.rs`), so the reference does
/// the same.
fn retry_value(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.bytes().try_fold(0u64, |acc, digit| {
        acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// Interprets `stream`, a whole event stream that has ended.
pub fn interpret(stream: &[u8]) -> Interpretation {
    // "Streams must be decoded using the UTF-8 decode algorithm": one leading
    // byte order mark is dropped, invalid sequences become U+FFFD.
    let stream = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    let text = String::from_utf8_lossy(stream);

    // Lines end with CRLF, LF or CR. What follows the last line end is an
    // incomplete line: "once the end of the file is reached, any pending
    // data must be discarded".
    let mut lines = crate::lines::split(&text);
    lines.pop();

    let mut items = Vec::new();
    let mut data = String::new();
    let mut event_type = String::new();
    let mut last_event_id_buffer = String::new();
    let mut last_event_id = String::new();

    for line in lines {
        // "If the line is empty (a blank line): dispatch the event."
        if line.is_empty() {
            // Step 1: the last event ID string takes the buffer's value
            // (the buffer is not reset).
            last_event_id.clone_from(&last_event_id_buffer);
            // Step 2: nothing to dispatch without data; both buffers reset.
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            // Step 3: drop one trailing LF.
            if data.ends_with('\n') {
                data.pop();
            }
            // Steps 4-5: the type is "message" unless the buffer says otherwise.
            let event = if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type.clone()
            };
            items.push(Item::Event(ParsedEvent {
                event,
                data: std::mem::take(&mut data),
                last_event_id: last_event_id.clone(),
            }));
            event_type.clear();
            continue;
        }
        // "If the line starts with a U+003A COLON character (:)": a comment.
        if let Some(comment) = line.strip_prefix(':') {
            items.push(Item::Comment(comment.to_owned()));
            continue;
        }
        // "If the line contains a U+003A COLON character": the field name is
        // before the first colon, the value after it without one leading
        // U+0020 SPACE. Otherwise the whole line is the name, the value empty.
        let (name, value) = match line.find(':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        match name {
            "event" => value.clone_into(&mut event_type),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            // "If the field value does not contain U+0000 NULL".
            "id" if !value.contains('\u{0}') => value.clone_into(&mut last_event_id_buffer),
            "retry" => items.extend(retry_value(value).map(Item::Retry)),
            // "Otherwise: the field is ignored."
            _ => {}
        }
    }
    Interpretation {
        items,
        last_event_id,
    }
}

/// The specification's own examples, so that a mistake in the reference
/// shows at start-up rather than as a bogus difference.
pub fn self_check() {
    fn event(data: &str, id: &str) -> Item {
        Item::Event(ParsedEvent {
            event: "message".to_owned(),
            data: data.to_owned(),
            last_event_id: id.to_owned(),
        })
    }
    let cases: [(&[u8], Vec<Item>); 6] = [
        (
            b"data: YHOO\ndata: +2\ndata: 10\n\n",
            vec![event("YHOO\n+2\n10", "")],
        ),
        (
            b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
            vec![
                Item::Comment(" test stream".to_owned()),
                event("first event", "1"),
                event("second event", ""),
                event(" third event", ""),
            ],
        ),
        (
            b"data\n\ndata\ndata\n\ndata:",
            vec![event("", ""), event("\n", "")],
        ),
        (
            b"data:test\n\ndata: test\n\n",
            vec![event("test", ""), event("test", "")],
        ),
        (
            b"\xEF\xBB\xBFevent: add\r\ndata: 73857293\r\rretry: 10\rretry: 1x\n\n",
            vec![
                Item::Event(ParsedEvent {
                    event: "add".to_owned(),
                    data: "73857293".to_owned(),
                    last_event_id: String::new(),
                }),
                Item::Retry(10),
            ],
        ),
        (
            b"id: 7\ndata: a\n\nid: 8\0\ndata: b\n\n\xEF\xBB\xBFdata: c\n\n",
            vec![event("a", "7"), event("b", "7")],
        ),
    ];
    for (stream, expected) in cases {
        assert_eq!(interpret(stream).items, expected, "reference on {stream:?}");
    }
    // The last event ID string moves only at a blank line.
    assert_eq!(interpret(b"id: 1\n\nid: 2\n").last_event_id, "1");
    assert_eq!(interpret(b"id: 1\ndata: x\n").last_event_id, "");
    assert_eq!(interpret(b"id: 3\n\r").last_event_id, "3");
}
