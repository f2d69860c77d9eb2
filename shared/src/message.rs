//! The JSON bodies of the live stream.
//!
//! An ordinary event on `/stream` is unnamed (so `EventSource.onmessage` sees
//! it) and its `data:` is one [`ServerEvent`]. A gap the server cannot fill is
//! announced by an event named [`RESET_EVENT`] whose `data:` is a
//! [`ResetNotice`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The topic of a published message that names none.
pub const DEFAULT_TOPIC: &str = "default";

/// The topic of the demo ticker's messages.
pub const TICKER_TOPIC: &str = "ticker";

/// The SSE event name of a [`ResetNotice`].
pub const RESET_EVENT: &str = "reset";

/// The SSE event name of a [`StreamPosition`].
pub const POSITION_EVENT: &str = "position";

/// The SSE event name of an [`AuthExpired`].
pub const AUTH_EXPIRED_EVENT: &str = "auth_expired";

/// The `data:` of an `auth_expired` event: the stream's token expired, and
/// the stream ends. A reconnect with a fresh token resumes exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthExpired {
    /// When the token stopped being accepted, RFC 3339 in UTC.
    pub expired_at: String,
}

/// The longest `Last-Event-ID` a server reads, in bytes; a longer one counts
/// as none.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// The longest topic name accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 64;

/// One event of the stream: the `data:` JSON of every ordinary event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEvent {
    /// A random id for this message, as the original demo sent.
    pub id: Uuid,
    /// Position in this server run's log: strictly increasing over all topics.
    pub seq: u64,
    /// The topic the message was published to.
    pub topic: String,
    /// The message text.
    pub message: String,
    /// When the server stored it, RFC 3339 in UTC with milliseconds.
    pub time: String,
}

/// Why the server could not resume a stream exactly where the client left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The requested id is older than the history the server keeps.
    HistoryExceeded,
    /// The requested id belongs to an earlier run of the server (it restarted).
    ServerRestarted,
    /// The subscriber fell so far behind that events it had not yet been sent
    /// left the history.
    FellBehind,
}

/// The `data:` of a `reset` event: what was lost and where the stream goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetNotice {
    /// Why events were lost.
    pub reason: ResetReason,
    /// The Last-Event-ID the client asked to resume after, if any.
    pub requested: Option<String>,
    /// First lost sequence number, when it is known.
    pub missed_from: Option<u64>,
    /// Last lost sequence number, when it is known.
    pub missed_to: Option<u64>,
    /// How many events of the subscriber's topics were lost, when it is
    /// known: between `missed_from` and `missed_to` there may be events of
    /// other topics, and (with retention per topic) kept events of the
    /// subscriber's own, which follow the notice.
    #[serde(default)]
    pub missed_count: Option<u64>,
    /// The sequence number the stream goes on from: the notice's id is the
    /// seq before it, and every kept event of the subscribed topics from it
    /// on follows.
    pub resume_seq: u64,
    /// A sentence for people.
    pub message: String,
}

/// The `data:` of a `position` event: the stream's place in the log when
/// no ordinary event carried it.
///
/// Sent once a stream's start is settled, and on a filtered or quiet
/// stream whenever its place has moved past events it does not receive (at
/// the latest with the next keep-alive). Its SSE `id:` is the same `id`, so a
/// browser's `EventSource` sends it back as `Last-Event-ID` when it
/// reconnects, and nothing published after it is lost. Being a named event,
/// `EventSource.onmessage` never sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The id (`<epoch>-<seq>`) up to which the subscriber has everything
    /// of its topics.
    pub id: String,
    /// The reconnection delay the server advises, in milliseconds (the
    /// stream's `retry:` field, which `EventSource` does not expose).
    pub retry_ms: u64,
}

/// The body of `POST /publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The text to broadcast. Must not be empty.
    pub message: String,
    /// The topic; [`DEFAULT_TOPIC`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// The answer to a successful `POST /publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {
    /// The SSE id of the stored event (`<epoch>-<seq>`).
    pub event_id: String,
    /// The uuid in the event's JSON.
    pub id: Uuid,
    /// The stored event's sequence number.
    pub seq: u64,
    /// The topic it was stored under.
    pub topic: String,
}

/// The answer to a successful batch `POST /publish`
/// (`application/x-ndjson`): one answer per event, in the body's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishBatchResponse {
    /// The stored events, with consecutive seqs.
    pub events: Vec<PublishResponse>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `invalid_json`.
    pub error: String,
    /// What was wrong, for people.
    pub message: String,
}

/// The body of `GET /time`: the server's clock, from which a client
/// estimates how far its own clock is off (to tell how late an event is
/// from its `time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTime {
    /// Milliseconds since the Unix epoch, when the server answered.
    pub unix_ms: u64,
}

/// One topic of `GET /topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSummary {
    /// Its name.
    pub name: String,
    /// Streams that name it exactly.
    pub subscribers: u64,
    /// Events it holds for resuming clients.
    pub retained: u64,
    /// The seq of its newest event (0: none since the server started).
    pub last_seq: u64,
    /// Events published to it since the server started: a client's rate is
    /// the difference between two answers over the time between them.
    pub published_total: u64,
}

/// The body of `GET /topics`: one page of the live topics, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicsPage {
    /// The topics, sorted by name.
    pub topics: Vec<TopicSummary>,
    /// The `after` of the next page, or `None` on the last one.
    pub next: Option<String>,
    /// The events each topic keeps while the history has room
    /// (`--history-per-topic`): the largest `last` a stream may ask for.
    pub history_per_topic: u64,
}

/// One line of a recording of a stream (NDJSON, one JSON object a line),
/// as the page downloads it and `server replay` reads it:
/// `{"offset_ms": 120, "event": ServerEvent}` or
/// `{"offset_ms": 120, "reset": ResetNotice}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Milliseconds from the start of the recording to the item's arrival.
    pub offset_ms: u64,
    /// What arrived.
    #[serde(flatten)]
    pub item: Recorded,
}

/// What a [`RecordedEvent`] holds: its key names the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    /// An ordinary event.
    Event(ServerEvent),
    /// A reset notice: events were missed there.
    Reset(ResetNotice),
}

/// Checks a topic name: 1 to [`MAX_TOPIC_LEN`] bytes of ASCII letters,
/// digits, `-`, `_` and `.`.
///
/// # Errors
/// A sentence saying what is wrong with the name.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("topic must not be empty".to_owned());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic is {} bytes long; the limit is {MAX_TOPIC_LEN}",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "topic {topic:?} contains {c:?}; use ASCII letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_event_keeps_the_demo_fields() {
        let event = ServerEvent {
            id: Uuid::nil(),
            seq: 7,
            topic: TICKER_TOPIC.to_owned(),
            message: "Data pushed from server: (7)".to_owned(),
            time: "2026-11-23T10:00:00.000Z".to_owned(),
        };
        let json: serde_json::Value = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["id"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(json["message"], "Data pushed from server: (7)");
        assert_eq!(json["seq"], 7);
        let back: ServerEvent = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, event);
    }

    #[test]
    fn publish_request_rejects_unknown_fields_and_defaults_topic() {
        let req: PublishRequest = serde_json::from_str(r#"{"message":"hi"}"#).expect("valid");
        assert_eq!(req.topic, None);
        let err = serde_json::from_str::<PublishRequest>(r#"{"message":"hi","x":1}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
    }

    fn sample_event() -> ServerEvent {
        ServerEvent {
            id: Uuid::nil(),
            seq: 42,
            topic: "news.eu".to_owned(),
            message: "hello \"quoted\"\nnext line".to_owned(),
            time: "2026-12-01T09:23:06.527Z".to_owned(),
        }
    }

    #[test]
    fn a_recorded_event_is_one_flat_object_keyed_by_its_kind() {
        let line = RecordedEvent {
            offset_ms: 1250,
            item: Recorded::Event(sample_event()),
        };
        let text = serde_json::to_string(&line).expect("serializes");
        assert!(!text.contains('\n'), "one line: {text}");
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(json["offset_ms"], 1250);
        assert_eq!(json["event"]["seq"], 42);
        assert_eq!(json["event"]["topic"], "news.eu");
        assert_eq!(json.as_object().map(|o| o.len()), Some(2), "{text}");
        assert_eq!(
            serde_json::from_str::<RecordedEvent>(&text).expect("reads back"),
            line
        );
    }

    #[test]
    fn a_recorded_reset_reads_back() {
        let text = r#"{"offset_ms":7,"reset":{"reason":"server_restarted","requested":"1-9","missed_from":null,"missed_to":null,"missed_count":null,"resume_seq":1,"message":"The server restarted"}}"#;
        let line: RecordedEvent = serde_json::from_str(text).expect("a reset line");
        assert_eq!(line.offset_ms, 7);
        let Recorded::Reset(notice) = &line.item else {
            panic!("not a reset: {line:?}");
        };
        assert_eq!(notice.reason, ResetReason::ServerRestarted);
        assert_eq!(notice.resume_seq, 1);
        let again: RecordedEvent =
            serde_json::from_str(&serde_json::to_string(&line).expect("serializes"))
                .expect("reads back");
        assert_eq!(again, line);
    }

    #[test]
    fn a_recorded_line_needs_an_offset_and_a_known_kind() {
        for bad in [
            r#"{"event":{"id":"00000000-0000-0000-0000-000000000000","seq":1,"topic":"a","message":"m","time":"t"}}"#,
            r#"{"offset_ms":1}"#,
            r#"{"offset_ms":1,"position":{"id":"1-1","retry_ms":2000}}"#,
            r#"{"offset_ms":-1,"event":{"id":"00000000-0000-0000-0000-000000000000","seq":1,"topic":"a","message":"m","time":"t"}}"#,
            r#"{"offset_ms":1,"event":{"seq":1}}"#,
        ] {
            assert!(
                serde_json::from_str::<RecordedEvent>(bad).is_err(),
                "accepted {bad}"
            );
        }
    }

    #[test]
    fn server_time_and_topics_bodies() {
        let time: ServerTime = serde_json::from_str(r#"{"unix_ms":1796117004428}"#).expect("time");
        assert_eq!(time.unix_ms, 1_796_117_004_428);
        let page: TopicsPage = serde_json::from_str(
            r#"{"topics":[{"name":"ticker","subscribers":2,"retained":100,"last_seq":77,"published_total":77}],"next":null,"history_per_topic":100}"#,
        )
        .expect("a page of topics");
        assert_eq!(page.topics[0].name, "ticker");
        assert_eq!(page.topics[0].published_total, 77);
        assert_eq!(page.next, None);
        assert_eq!(page.history_per_topic, 100);
    }

    #[test]
    fn topic_rules() {
        assert!(validate_topic("news.eu-1_b").is_ok());
        assert_eq!(validate_topic("").unwrap_err(), "topic must not be empty");
        assert!(validate_topic("a b").unwrap_err().contains("' '"));
        assert!(validate_topic(&"x".repeat(65))
            .unwrap_err()
            .contains("limit is 64"));
    }
}
