//! `shared::Parser` against the reference in `fuzz/src/whatwg.rs`.
//!
//! Input: one byte `n` (its low 4 bits), then `n` chunk lengths of one byte
//! each, then the stream. The stream is fed to the parser in chunks of those
//! lengths (an empty chunk included), then the rest in one chunk.
//!
//! Property: the parser never panics, and whether the stream is fed whole,
//! in the fuzzer's chunks or one byte at a time, it reports exactly the
//! events (type, data, last event id), comments and retries the reference
//! finds in the whole stream, and its `last_event_id()` at the end is the
//! spec's "last event ID string", which a reconnecting client sends.

use crate::whatwg;
use shared::{Item, Parser};

/// Splits `data` into the chunk lengths and the stream.
fn chunks(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = usize::from(first & 0x0F).min(rest.len());
    let (lengths, stream) = rest.split_at(n);
    (lengths.iter().map(|&l| usize::from(l)).collect(), stream)
}

fn feed_in(stream: &[u8], lengths: impl IntoIterator<Item = usize>) -> (Vec<Item>, String) {
    let mut parser = Parser::new();
    let mut out = Vec::new();
    let mut rest = stream;
    for length in lengths {
        let (chunk, tail) = rest.split_at(length.min(rest.len()));
        parser.feed(chunk, &mut out);
        rest = tail;
    }
    parser.feed(rest, &mut out);
    (out, parser.last_event_id().to_owned())
}

/// Checks the reference against the specification's own examples
/// ([`whatwg::self_check`]): once, before the first input.
pub fn init() {
    whatwg::self_check();
}

/// Checks the property on one input.
pub fn run(data: &[u8]) {
    let (lengths, stream) = chunks(data);
    let expected = whatwg::interpret(stream);

    assert_eq!(
        Parser::parse_all(stream),
        expected.items,
        "parse_all differs from the reference on {stream:?}"
    );
    let ways = [
        (
            "in the fuzzer's chunks",
            feed_in(stream, lengths.iter().copied()),
        ),
        (
            "one byte at a time",
            feed_in(stream, std::iter::repeat_n(1, stream.len())),
        ),
    ];
    for (how, (items, last_event_id)) in ways {
        assert_eq!(
            items, expected.items,
            "fed {how} ({lengths:?}), the parser differs from the reference on {stream:?}"
        );
        assert_eq!(
            last_event_id, expected.last_event_id,
            "fed {how}, last_event_id() is not the last event ID string the spec would send \
             on reconnect (set only when a blank line dispatches) on {stream:?}"
        );
    }
}
