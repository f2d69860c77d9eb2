//! The event log behind the hub: where a published event is stored and
//! numbered before subscribers see it.
//!
//! Two implementations of [`EventLog`]:
//! - [`MemoryLog`] (the default): the hub's own ring is the log; a publish is
//!   numbered and stored in this process, and a restart starts a new epoch.
//! - [`RedisLog`] (`--redis`): a Redis stream is the log, shared by every
//!   server pointed at it. A publish is acknowledged once it is in the
//!   stream; each server reads the stream once ([`RedisLog::follow`]) and
//!   fans out locally from its hub, so event ids are the same everywhere.

mod memory;
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use shared::{EventId, ServerEvent};

pub use self::memory::MemoryLog;
pub use self::redis::{RedisLog, RedisOptions};

/// An event as stored: its id and its content.
#[derive(Debug, Clone)]
pub struct Appended {
    /// Its id, `<epoch>-<seq>`.
    pub id: EventId,
    /// The event as subscribers receive it.
    pub event: ServerEvent,
}

/// The log could not store the event: nothing was published.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// The future [`EventLog::append`] returns.
pub type AppendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Appended, Unavailable>> + Send + 'a>>;

/// The future [`EventLog::range`] returns.
pub type RangeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<(EventId, ServerEvent)>, Unavailable>> + Send + 'a>>;

/// How the log is doing, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHealth {
    /// `memory` or `redis`.
    pub kind: &'static str,
    /// Whether the log can take events now.
    pub up: bool,
    /// Times the log became unreachable since the start.
    pub outages: u64,
    /// Commands to the log that failed since the start.
    pub errors: u64,
}

/// Where events are stored, in order, before they are fanned out.
pub trait EventLog: Send + Sync + fmt::Debug {
    /// Stores a new event under `topic`; resolves once the log holds it,
    /// with its id.
    ///
    /// # Errors
    /// [`Unavailable`] when the log cannot be reached: the event was not
    /// published.
    fn append(&self, topic: String, message: String) -> AppendFuture<'_>;

    /// How the log is doing.
    fn health(&self) -> LogHealth;

    /// Whether the log keeps events older than the hub's history, which
    /// [`EventLog::range`] reads for a client resuming from further back.
    fn reaches_further(&self) -> bool {
        false
    }

    /// The events with seqs `from..=to` of `epoch` that the log still holds,
    /// oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`Unavailable`] when the log cannot be reached.
    fn range(&self, epoch: u64, from: u64, to: u64, limit: usize) -> RangeFuture<'_> {
        let _ = (epoch, from, to, limit);
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// A shared handle to the configured log.
pub type SharedLog = Arc<dyn EventLog>;
