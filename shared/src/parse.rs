//! An incremental event-stream parser following the WHATWG HTML rules
//! ("Interpreting an event stream"), as a browser's `EventSource` reads one.
//!
//! Bytes arrive in chunks of any size. Lines end with CRLF, CR or LF (a CRLF
//! split across two chunks is still one line end); a UTF-8 byte order mark at
//! the very start is skipped; lines starting with `:` are comments; `data`
//! lines accumulate; `id` with a NUL is ignored and otherwise persists across
//! events; `retry` is honoured only when it is all ASCII digits; unknown
//! fields are ignored; an event is dispatched at a blank line only, so a
//! partial event at the end of the stream is dropped.

/// One dispatched event, as `EventSource` would deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The event type: the `event:` field, or `message` when it was absent or empty.
    pub event: String,
    /// The `data:` lines joined by LF.
    pub data: String,
    /// The last event id in force when the event was dispatched (the
    /// `lastEventId` a browser reports and sends back on reconnect).
    pub last_event_id: String,
}

/// What the parser found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event.
    Event(ParsedEvent),
    /// A comment line's text after the colon (keep-alives are comments).
    Comment(String),
    /// A valid `retry:` field: the new reconnection time in milliseconds.
    Retry(u64),
}

/// Incremental parser state for one stream.
#[derive(Debug, Default, Clone)]
pub struct Parser {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// Whether the first line has been handled (a BOM is only skipped there).
    past_first_line: bool,
    /// The previous chunk ended with CR, so a leading LF belongs to that line end.
    after_cr: bool,
    /// The data buffer of the event being built.
    data: String,
    /// The event type buffer of the event being built.
    event_type: String,
    /// The last event id buffer: persists across events.
    id_buffer: String,
    /// The last event id string: the buffer as of the last blank line,
    /// which is what a reconnecting client sends.
    dispatched_id: String,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a whole stream held in memory.
    pub fn parse_all(bytes: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        Self::new().feed(bytes, &mut out);
        out
    }

    /// The last event id as a reconnecting client would send it: the `id`
    /// in force at the last blank line. An `id:` of a frame that was cut off
    /// before its blank line does not count, so the event it named is asked
    /// for again.
    pub fn last_event_id(&self) -> &str {
        &self.dispatched_id
    }

    /// Reads `chunk` and appends to `out` everything it completes.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Item>) {
        let mut rest = chunk;
        // An empty chunk says nothing about whether an LF follows a CR.
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if let Some(b'\n') = rest.first() {
                rest = &rest[1..];
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            let line_end_cr = rest[i] == b'\r';
            if self.line.is_empty() {
                self.process_line(&rest[..i], out);
            } else {
                self.line.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out);
                self.line = line;
                self.line.clear();
            }
            rest = &rest[i + 1..];
            if line_end_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
        self.line.extend_from_slice(rest);
    }

    fn process_line(&mut self, mut line: &[u8], out: &mut Vec<Item>) {
        if !self.past_first_line {
            self.past_first_line = true;
            if let Some(stripped) = line.strip_prefix(b"\xEF\xBB\xBF") {
                line = stripped;
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(line);
        if let Some(comment) = line.strip_prefix(':') {
            out.push(Item::Comment(comment.to_owned()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits only, but possibly too many for 64 bits: then ignored.
                if let Ok(ms) = value.parse() {
                    out.push(Item::Retry(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        self.dispatched_id.clone_from(&self.id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            std::mem::take(&mut self.event_type)
        };
        out.push(Item::Event(ParsedEvent {
            event,
            data: std::mem::take(&mut self.data),
            last_event_id: self.id_buffer.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_empty_chunk_between_cr_and_lf_makes_one_line_end() {
        let mut parser = Parser::new();
        let mut out = Vec::new();
        for chunk in [&b"data: a\r"[..], b"", b"\n"] {
            parser.feed(chunk, &mut out);
        }
        assert!(out.is_empty(), "one line end, no blank line yet: {out:?}");
        parser.feed(b"\n", &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn the_last_event_id_is_set_at_the_blank_line() {
        let mut parser = Parser::new();
        let mut out = Vec::new();
        parser.feed(b"id: 1\ndata: x\n\nid: 2\ndata: cut", &mut out);
        // The second frame never ended: a reconnect asks for it again.
        assert_eq!(parser.last_event_id(), "1");
        parser.feed(b"\n\n", &mut out);
        assert_eq!(parser.last_event_id(), "2");
    }

    use super::*;
    use proptest::prelude::*;

    fn ev(event: &str, data: &str, id: &str) -> Item {
        Item::Event(ParsedEvent {
            event: event.to_owned(),
            data: data.to_owned(),
            last_event_id: id.to_owned(),
        })
    }

    #[test]
    fn whatwg_examples() {
        assert_eq!(
            Parser::parse_all(b"data: YHOO\ndata: +2\ndata: 10\n\n"),
            vec![ev("message", "YHOO\n+2\n10", "")]
        );
        assert_eq!(
            Parser::parse_all(
                b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
            ),
            vec![
                Item::Comment(" test stream".to_owned()),
                ev("message", "first event", "1"),
                ev("message", "second event", ""),
                ev("message", " third event", ""),
            ]
        );
        assert_eq!(
            Parser::parse_all(b"data\n\ndata\ndata\n\ndata:"),
            vec![ev("message", "", ""), ev("message", "\n", "")]
        );
        assert_eq!(
            Parser::parse_all(b"data:test\n\ndata: test\n\n"),
            vec![ev("message", "test", ""), ev("message", "test", "")]
        );
    }

    #[test]
    fn line_ends_bom_retry_and_id_rules() {
        assert_eq!(
            Parser::parse_all(b"\xEF\xBB\xBFdata: a\r\rdata: b\r\n\r\nevent: x\ndata: c\n\n"),
            vec![
                ev("message", "a", ""),
                ev("message", "b", ""),
                ev("x", "c", "")
            ]
        );
        // A BOM anywhere but the start is part of the line.
        assert_eq!(
            Parser::parse_all(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"),
            vec![ev("message", "a", "")]
        );
        assert_eq!(
            Parser::parse_all(b"retry: 1500\nretry: 15x\nretry:\nretry: -1\n\n"),
            vec![Item::Retry(1500)]
        );
        assert_eq!(
            Parser::parse_all(b"id: 7\ndata: a\n\nid: 8\0\ndata: b\n\ndata: c\n\n"),
            vec![
                ev("message", "a", "7"),
                ev("message", "b", "7"),
                ev("message", "c", "7")
            ]
        );
        // An event type without data is not dispatched and does not leak.
        assert_eq!(
            Parser::parse_all(b"event: x\n\ndata: y\n\n"),
            vec![ev("message", "y", "")]
        );
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let mut parser = Parser::new();
        let mut out = Vec::new();
        parser.feed(b"data: a\r", &mut out);
        parser.feed(b"\ndata: b\r", &mut out);
        parser.feed(b"\n\r", &mut out);
        parser.feed(b"\n", &mut out);
        assert_eq!(out, vec![ev("message", "a\nb", "")]);
    }

    #[test]
    fn partial_event_at_end_is_not_dispatched() {
        assert_eq!(Parser::parse_all(b"data: a\n"), vec![]);
        assert_eq!(
            Parser::parse_all(b"data: a\n\ndata: b"),
            vec![ev("message", "a", "")]
        );
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_result(bytes in proptest::collection::vec(
            prop::sample::select(b"data:idevnt r\r\n\n\n:\xEF\xBB\xBF\x00\xFFx1".to_vec()), 0..200),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10)) {
            let whole = Parser::parse_all(&bytes);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut parser = Parser::new();
            let mut out = Vec::new();
            let mut start = 0;
            for p in points {
                parser.feed(&bytes[start..p], &mut out);
                start = p;
            }
            parser.feed(&bytes[start..], &mut out);
            prop_assert_eq!(out, whole);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Parser::parse_all(&bytes);
        }
    }
}
