//! The benchmark payload and how it is found in an event.
//!
//! A measured event's text is `bench:<seq>:<sent_ns>:` followed by `x`
//! padding up to the configured size; `seq` counts from 0 within one run and
//! `sent_ns` is the time the publisher meant to send it (nanoseconds since
//! the Unix epoch), so a late publisher shows up as latency (no coordinated
//! omission). Warm-up events, published until every subscriber is known to
//! receive, are `warm:<n>`.
//!
//! Our server wraps the text in a [`shared::ServerEvent`] JSON `data:`;
//! servers that relay the published body as is carry the text itself.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use shared::ServerEvent;

const MEASURED: &str = "bench:";
const WARMUP: &str = "warm:";

/// What a payload turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// A measured event.
    Measured {
        /// Its sequence number in the run.
        seq: u64,
        /// When it was meant to be sent, ns since the Unix epoch.
        sent_ns: u64,
    },
    /// A warm-up event.
    Warmup,
}

/// The text of measured event `seq`, padded with `x` to `size` bytes (never
/// shorter than its header).
pub fn measured(seq: u64, sent_ns: u64, size: usize) -> String {
    let mut text = format!("{MEASURED}{seq}:{sent_ns}:");
    if text.len() < size {
        text.extend(std::iter::repeat_n('x', size - text.len()));
    }
    text
}

/// The text of warm-up event `n`.
pub fn warmup(n: u64) -> String {
    format!("{WARMUP}{n}")
}

/// Reads a payload; `None` for text that is neither kind (another
/// publisher's events, a ticker).
pub fn parse(text: &str) -> Option<Payload> {
    if let Some(rest) = text.strip_prefix(MEASURED) {
        let mut parts = rest.splitn(3, ':');
        let seq = parts.next()?.parse().ok()?;
        let sent_ns = parts.next()?.parse().ok()?;
        parts.next()?;
        return Some(Payload::Measured { seq, sent_ns });
    }
    text.starts_with(WARMUP).then_some(Payload::Warmup)
}

/// Where the payload sits in an event's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// `data` is a [`ServerEvent`] JSON whose `message` is the payload (our
    /// server).
    ServerEvent,
    /// `data` is the payload.
    Raw,
    /// `data` is the payload as a JSON string literal (better-sse's default
    /// serializer).
    JsonString,
}

/// The payload text in `data`; `None` when `data` is not in `format`.
pub fn extract(format: DataFormat, data: &str) -> Option<Cow<'_, str>> {
    match format {
        DataFormat::Raw => Some(Cow::Borrowed(data)),
        DataFormat::JsonString => serde_json::from_str::<String>(data).ok().map(Cow::Owned),
        DataFormat::ServerEvent => serde_json::from_str::<ServerEvent>(data)
            .ok()
            .map(|event| Cow::Owned(event.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_round_trips_and_pads() {
        let text = measured(42, 1_700_000_000_123_456_789, 64);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("bench:42:1700000000123456789:xx"));
        assert_eq!(
            parse(&text),
            Some(Payload::Measured {
                seq: 42,
                sent_ns: 1_700_000_000_123_456_789
            })
        );
        // A size below the header's length leaves the header whole.
        assert_eq!(
            parse(&measured(1, 2, 0)),
            Some(Payload::Measured { seq: 1, sent_ns: 2 })
        );
    }

    #[test]
    fn other_text_is_not_a_payload() {
        assert_eq!(parse(&warmup(3)), Some(Payload::Warmup));
        assert_eq!(parse("Data pushed from server: (1)"), None);
        assert_eq!(parse("bench:x:1:"), None);
        assert_eq!(parse("bench:1:2"), None);
    }

    #[test]
    fn extracts_from_server_event_json() {
        let event = ServerEvent {
            id: uuid::Uuid::nil(),
            seq: 9,
            topic: "default".to_owned(),
            message: measured(3, 4, 0),
            time: "2026-01-01T00:00:00.000Z".to_owned(),
        };
        let data = serde_json::to_string(&event).unwrap();
        assert_eq!(
            extract(DataFormat::ServerEvent, &data).as_deref(),
            Some("bench:3:4:")
        );
        assert_eq!(extract(DataFormat::ServerEvent, "bench:3:4:"), None);
        assert_eq!(
            extract(DataFormat::Raw, "bench:3:4:").as_deref(),
            Some("bench:3:4:")
        );
        assert_eq!(
            extract(DataFormat::JsonString, "\"bench:3:4:\"").as_deref(),
            Some("bench:3:4:")
        );
        assert_eq!(extract(DataFormat::JsonString, "bench:3:4:"), None);
    }
}
