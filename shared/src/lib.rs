//! The live stream's shared vocabulary: what travels between the server, the
//! page, the tests and the benchmark.
//!
//! - [`message`]: the JSON bodies (the event pushed on `/stream`, the reset
//!   notice, the position event, the publish request and answer, the error
//!   body, the server's clock, the list of topics, and a recording's lines).
//! - [`event_id`]: the SSE `id:` of every event, `<epoch>-<seq>`, which tells
//!   runs of the server apart and locates an event in the history.
//! - [`encode`]: writes Server-Sent Events frames that no field value can break.
//! - [`parse`]: an incremental event-stream parser that follows the WHATWG
//!   HTML rules, as a browser's `EventSource` does.
//! - [`pattern`]: topic patterns (`name`, `prefix.*`, `*`), for
//!   subscriptions and token claims.
//!
//! The crate does no I/O and depends only on serde, uuid and thiserror, so it
//! builds for the server and for `wasm32-unknown-unknown` alike.

pub mod encode;
pub mod event_id;
pub mod message;
pub mod parse;
pub mod pattern;

pub use encode::{encode, encode_comment, encode_into, EncodeError, Frame};
pub use event_id::{EventId, EventIdError};
pub use message::{
    validate_topic, AuthExpired, ErrorBody, PublishBatchResponse, PublishRequest, PublishResponse,
    Recorded, RecordedEvent, ResetNotice, ResetReason, ServerEvent, ServerTime, StreamPosition,
    TopicSummary, TopicsPage, AUTH_EXPIRED_EVENT, DEFAULT_TOPIC, MAX_EVENT_ID_LEN, MAX_TOPIC_LEN,
    POSITION_EVENT, RESET_EVENT, TICKER_TOPIC,
};
pub use parse::{Item, ParsedEvent, Parser};
pub use pattern::TopicPattern;
