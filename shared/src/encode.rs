//! Writing Server-Sent Events frames.
//!
//! A frame is a few `field: value` lines and a blank line. The encoder cannot
//! be tricked by its input: `data` is split on every CR, LF and CRLF into one
//! `data:` line each, so a line break inside it continues the same event; the
//! single-line fields (`event`, `id`) are refused when they hold CR, LF or NUL,
//! and comments are split line by line into comment lines. Whatever the
//! values, a frame is exactly one event to a conforming parser.

use std::fmt::Write as _;

/// One event to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The event name (`event:`); `None` for an unnamed event, which
    /// `EventSource` delivers to `onmessage`.
    pub event: Option<&'a str>,
    /// The event id (`id:`), which the client echoes as `Last-Event-ID`.
    pub id: Option<&'a str>,
    /// The reconnection delay to advise, in milliseconds (`retry:`).
    pub retry: Option<u64>,
    /// The payload; any text, line breaks included.
    pub data: &'a str,
}

/// Why a frame cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A single-line field holds a character that would end it early.
    #[error("the {field} field must not contain CR, LF or NUL")]
    ForbiddenCharacter {
        /// `event` or `id`.
        field: &'static str,
    },
}

fn single_line(field: &'static str, value: &str) -> Result<(), EncodeError> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        Err(EncodeError::ForbiddenCharacter { field })
    } else {
        Ok(())
    }
}

/// Splits on CRLF, CR and LF, as the event-stream grammar reads line ends.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        // By bytes: CR and LF never occur inside a multi-byte UTF-8
        // sequence, so the position found is a character boundary (a
        // `char` pattern would decode every character on the way).
        match s.bytes().position(|b| b == b'\r' || b == b'\n') {
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

/// Appends `frame` to `out`.
///
/// # Errors
/// [`EncodeError::ForbiddenCharacter`] when `event` or `id` holds CR, LF or
/// NUL; `out` is then left as it was.
pub fn encode_into(out: &mut String, frame: &Frame<'_>) -> Result<(), EncodeError> {
    if let Some(event) = frame.event {
        single_line("event", event)?;
    }
    if let Some(id) = frame.id {
        single_line("id", id)?;
    }
    if let Some(event) = frame.event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    if let Some(id) = frame.id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    if let Some(retry) = frame.retry {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "retry: {retry}");
    }
    for line in lines(frame.data) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Ok(())
}

/// Encodes `frame` into a new string.
///
/// # Errors
/// As [`encode_into`].
pub fn encode(frame: &Frame<'_>) -> Result<String, EncodeError> {
    let mut out = String::with_capacity(frame.data.len() + 64);
    encode_into(&mut out, frame)?;
    Ok(out)
}

/// A comment block (`: text` lines and a blank line), which parsers skip:
/// used to open a stream at once and as keep-alive.
pub fn encode_comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for line in lines(text) {
        out.push_str(": ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Item, ParsedEvent, Parser};
    use proptest::prelude::*;

    fn events(bytes: &[u8]) -> Vec<ParsedEvent> {
        Parser::parse_all(bytes)
            .into_iter()
            .filter_map(|item| match item {
                Item::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// What a parser hands back for `data`: every line end becomes LF.
    fn normalized(data: &str) -> String {
        lines(data).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn writes_the_expected_bytes() {
        let frame = Frame {
            event: Some("reset"),
            id: Some("1-2"),
            retry: Some(2000),
            data: "a\r\nb\rc\nd",
        };
        assert_eq!(
            encode(&frame).unwrap(),
            "event: reset\nid: 1-2\nretry: 2000\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(
            encode(&Frame {
                data: "",
                ..Frame::default()
            })
            .unwrap(),
            "data: \n\n"
        );
    }

    #[test]
    fn refuses_line_breaks_and_nul_in_single_line_fields() {
        for bad in ["a\nb", "a\rb", "a\0b", "\n"] {
            let mut out = String::from("kept");
            let err = encode_into(
                &mut out,
                &Frame {
                    id: Some(bad),
                    ..Frame::default()
                },
            )
            .unwrap_err();
            assert_eq!(err, EncodeError::ForbiddenCharacter { field: "id" });
            assert_eq!(out, "kept");
            assert_eq!(
                encode(&Frame {
                    event: Some(bad),
                    ..Frame::default()
                })
                .unwrap_err()
                .to_string(),
                "the event field must not contain CR, LF or NUL"
            );
        }
    }

    #[test]
    fn comments_stay_comments() {
        let text = encode_comment("one\r\ntwo\rdata: three\n");
        assert_eq!(text, ": one\n: two\n: data: three\n: \n\n");
        assert!(events(text.as_bytes()).is_empty());
    }

    proptest! {
        #[test]
        fn any_data_is_exactly_one_event(data in any::<String>(), event in "[^\r\n\0]{0,12}", id in proptest::option::of("[^\r\n\0]{0,12}")) {
            let frame = Frame { event: Some(&event), id: id.as_deref(), retry: None, data: &data };
            let encoded = encode(&frame).unwrap();
            let got = events(encoded.as_bytes());
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(&got[0].data, &normalized(&data));
            let expected_type = if event.is_empty() { "message" } else { event.as_str() };
            prop_assert_eq!(&got[0].event, expected_type);
            prop_assert_eq!(&got[0].last_event_id, id.as_deref().unwrap_or(""));
        }

        #[test]
        fn hostile_single_line_fields_are_refused(prefix in any::<String>(), bad in prop::sample::select(vec!['\r', '\n', '\0']), suffix in any::<String>()) {
            let value = format!("{prefix}{bad}{suffix}");
            let as_id = Frame { id: Some(&value), ..Frame::default() };
            let as_event = Frame { event: Some(&value), ..Frame::default() };
            prop_assert!(encode(&as_id).is_err());
            prop_assert!(encode(&as_event).is_err());
        }

        #[test]
        fn a_sequence_of_frames_is_that_many_events(datas in proptest::collection::vec(any::<String>(), 0..8), comment in any::<String>()) {
            let mut stream = encode_comment(&comment);
            for (i, data) in datas.iter().enumerate() {
                let id = i.to_string();
                encode_into(&mut stream, &Frame { id: Some(&id), data, ..Frame::default() }).unwrap();
            }
            let got = events(stream.as_bytes());
            prop_assert_eq!(got.len(), datas.len());
            for (i, (event, data)) in got.iter().zip(&datas).enumerate() {
                prop_assert_eq!(&event.data, &normalized(data));
                prop_assert_eq!(&event.last_event_id, &i.to_string());
                prop_assert_eq!(&event.event, "message");
            }
        }
    }
}
