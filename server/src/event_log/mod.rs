//! The event log behind the hub: where a published event is stored and
//! numbered before subscribers see it.
//!
//! Three implementations of [`EventLog`]:
//! - [`MemoryLog`] (the default): the hub's own ring is the log; a publish is
//!   numbered and stored in this process, and a restart starts a new epoch.
//! - [`RedisLog`] (`--redis`): a Redis stream is the log, shared by every
//!   server pointed at it. A publish is acknowledged once it is in the
//!   stream; each server reads the stream once ([`RedisLog::follow`]) and
//!   fans out locally from its hub, so event ids are the same everywhere.
//! - [`DiskLog`] (`--data-dir`): a file on this server's disk is the log; a
//!   publish is acknowledged once it is stored (with `--fsync always`, on
//!   disk), and a restart keeps the epoch, the seqs and the history.

mod disk;
mod memory;
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use shared::{EventId, ServerEvent};
use tokio_util::task::TaskTracker;

pub use crate::hub::NewEvent;
use crate::hub::{Filter, Hidden, Hub, HubOptions};
use crate::idempotency::{Answer, KeyOptions, Keys, Record};
use crate::time::unix_ms;

pub use self::disk::{DiskLog, DiskOptions, Fsync, Store};
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

impl Appended {
    /// The answer to its publish.
    pub fn answer(&self) -> shared::PublishResponse {
        shared::PublishResponse {
            event_id: self.id.to_string(),
            id: self.event.id,
            seq: self.event.seq,
            topic: self.event.topic.clone(),
        }
    }
}

/// A publish whose `Idempotency-Key` was claimed (see
/// [`crate::idempotency::Keys::claim`]): the log stores its record with the
/// event, in the same commit (disk) or script (Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    /// The key in its scope.
    pub name: String,
    /// The body's fingerprint.
    pub fingerprint: String,
    /// The claim's mark in this process's table.
    pub mark: u64,
}

impl Keyed {
    /// The record of this key answered with `appended`, stored now.
    pub fn record(&self, appended: &Appended) -> Record {
        Record {
            fingerprint: self.fingerprint.clone(),
            at_ms: unix_ms(),
            answer: Answer::One(appended.answer()),
        }
    }

    /// The record of this key answered with the batch `appended`, stored
    /// now.
    pub fn record_batch(&self, appended: &[Appended]) -> Record {
        Record {
            fingerprint: self.fingerprint.clone(),
            at_ms: unix_ms(),
            answer: Answer::Batch(batch_answer(appended)),
        }
    }
}

/// Whether a publish was one event or a batch: the shape of its answer,
/// and of its key's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `POST /publish` of one JSON event.
    One,
    /// A batch (`application/x-ndjson`).
    Batch,
}

/// The answer to a batch publish.
pub fn batch_answer(appended: &[Appended]) -> shared::PublishBatchResponse {
    shared::PublishBatchResponse {
        events: appended.iter().map(Appended::answer).collect(),
    }
}

/// What a batch append did.
#[derive(Debug, Clone)]
pub enum BatchAppend {
    /// The events were stored, in order with consecutive seqs (with the
    /// key's record, when keyed).
    Stored(Vec<Appended>),
    /// The log already held the key (another server stored it): nothing
    /// was stored; the caller compares the fingerprints.
    Found(Record),
}

/// The future [`EventLog::append_batch`] returns.
pub type BatchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<BatchAppend, AppendError>> + Send + 'a>>;

/// What a keyed append did.
#[derive(Debug, Clone)]
pub enum KeyedAppend {
    /// The event was stored, with its key's record.
    Stored(Appended),
    /// The log already held the key (another server stored it): nothing
    /// was stored; the caller compares the fingerprints.
    Found(Record),
}

/// The future [`EventLog::append_keyed`] returns.
pub type KeyedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<KeyedAppend, AppendError>> + Send + 'a>>;

/// The log could not be reached or read: nothing was published (or read).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Why an event was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The log cannot be reached.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The topic is new and the live-topic limit is reached with every
    /// topic followed.
    #[error(transparent)]
    TopicLimit(#[from] crate::hub::TopicLimit),
}

/// The future [`EventLog::append`] returns.
pub type AppendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Appended, AppendError>> + Send + 'a>>;

/// A stretch of the log read for one subscriber (see [`EventLog::span`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Span {
    /// The events of the subscriber's filter, oldest first.
    pub events: Vec<(EventId, ServerEvent)>,
    /// The first seq the read did not cover: the next read starts there.
    pub next: u64,
    /// `(first, last)`: events of the subscriber's filter with seqs in this
    /// range (within the read's) may be gone from the log; `None` when the
    /// log knows none is.
    pub gone: Option<(u64, u64)>,
}

impl Span {
    /// The span of a log that keeps its events as one stream trimmed at
    /// the front: `events` (seqs `from..=to`, oldest first, of every topic)
    /// filtered by `filter`; it can say only that whatever lay before the
    /// first event it still holds is gone.
    pub fn of_stream(
        events: Vec<(EventId, ServerEvent)>,
        filter: &Filter,
        from: u64,
        to: u64,
    ) -> Self {
        let found = events
            .first()
            .map_or(to.saturating_add(1), |(id, _)| id.seq);
        let next = events
            .last()
            .map_or(to.saturating_add(1), |(id, _)| id.seq + 1);
        Self {
            gone: (found > from).then(|| (from, found - 1)),
            next,
            events: events
                .into_iter()
                .filter(|(_, event)| filter.matches(&event.topic))
                .collect(),
        }
    }
}

impl Span {
    /// Leaves out the events older than `ttl` at `now_ms` (a log sweeps
    /// them away on a timer, so between sweeps it may still hold some),
    /// counting them as gone from `from` on: a replay never hands out an
    /// expired event, and never skips one silently.
    pub fn drop_expired(&mut self, from: u64, ttl: Option<Duration>, now_ms: u64) {
        let Some(ttl) = ttl else {
            return;
        };
        let mut last = None;
        self.events.retain(|(id, event)| {
            let expired = crate::time::event_expired(&event.time, ttl, now_ms);
            if expired {
                last = Some(id.seq);
            }
            !expired
        });
        if let Some(last) = last {
            let through = self.gone.map_or(last, |(_, through)| through.max(last));
            self.gone = Some((from, through));
        }
    }
}

/// The future [`EventLog::span`] returns.
pub type SpanFuture<'a> = Pin<Box<dyn Future<Output = Result<Span, Unavailable>> + Send + 'a>>;

/// The future [`EventLog::oldest_of_last`] returns.
pub type LastFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<u64>, Unavailable>> + Send + 'a>>;

/// How the log is doing, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHealth {
    /// `memory`, `redis` or `disk`.
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
    /// [`AppendError`]: the event was not published.
    fn append(&self, topic: String, message: String) -> AppendFuture<'_>;

    /// Stores a new event under `topic` with the record of its key, as one
    /// write, unless the log already holds the key.
    ///
    /// # Errors
    /// [`AppendError`]: neither the event nor the key was stored.
    fn append_keyed(&self, keyed: Keyed, topic: String, message: String) -> KeyedFuture<'_>;

    /// Stores `events` (at least one) in order with consecutive seqs, as
    /// one write (with the record of `keyed`, unless the log already holds
    /// the key): all of them or none, even if the server is killed
    /// meanwhile.
    ///
    /// # Errors
    /// [`AppendError`]: none of the events (and not the key) was stored.
    fn append_batch(&self, events: Vec<NewEvent>, keyed: Option<Keyed>) -> BatchFuture<'_>;

    /// The idempotency keys in this process.
    fn keys(&self) -> &Keys;

    /// How the log is doing.
    fn health(&self) -> LogHealth;

    /// Whether the log keeps events older than the hub's history, which
    /// [`EventLog::span`] reads for a client resuming from further back.
    fn reaches_further(&self) -> bool {
        false
    }

    /// What a subscriber of `filter` resuming from further back than the
    /// hub's history gets from the log: the events of `filter` among seqs
    /// `from..=to` of `epoch`, starting at `from`, at most `limit` read,
    /// with what of them is gone. A log that does not reach further than
    /// the hub (the default) holds none of them.
    ///
    /// # Errors
    /// [`Unavailable`] when the log cannot be read.
    fn span<'a>(
        &'a self,
        filter: &'a Filter,
        epoch: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> SpanFuture<'a> {
        let _ = (filter, epoch, limit);
        Box::pin(std::future::ready(Ok(Span {
            events: Vec::new(),
            next: to.saturating_add(1),
            gone: Some((from, to)),
        })))
    }

    /// For a stream that asked for the last `count` events of `filter` and
    /// found fewer in the hub (`?last=N`): the seq of the oldest of the
    /// newest `count` events of `filter` the log holds below seq `before`
    /// of `epoch`, topics `hidden` hides left out; at most
    /// [`crate::hub::LAST_SCAN`] events are looked at. `None` when the log
    /// holds none of them (the default: a log that does not reach further
    /// than the hub).
    ///
    /// # Errors
    /// [`Unavailable`] when the log cannot be read.
    fn oldest_of_last<'a>(
        &'a self,
        filter: &'a Filter,
        hidden: Option<Arc<Hidden>>,
        epoch: u64,
        before: u64,
        count: usize,
    ) -> LastFuture<'a> {
        let _ = (filter, hidden, epoch, before, count);
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// A shared handle to the configured log.
pub type SharedLog = Arc<dyn EventLog>;

/// How long start-up waits for a Redis stream to load before serving.
const LOAD_WAIT: Duration = Duration::from_secs(3);

/// A data dir that cannot hold the log: the folder or the file, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct DataDirError {
    /// The folder or the file at fault.
    pub path: std::path::PathBuf,
    /// What is wrong with it, and what to do.
    pub reason: String,
}

/// Why the chosen log could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenError {
    /// The data dir cannot be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The Redis URL cannot be used.
    #[error("{url:?} is not a Redis URL: {reason}")]
    RedisUrl {
        /// The URL given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// Which log the server runs on.
#[derive(Debug)]
pub enum LogChoice {
    /// The hub's own ring (the default).
    Memory {
        /// How long and how many idempotency keys are remembered.
        keys: KeyOptions,
    },
    /// A data dir (`--data-dir`), its store already opened and checked.
    Disk {
        /// The opened store.
        store: Store,
        /// What the disk log keeps, and when it syncs.
        options: DiskOptions,
    },
    /// A Redis stream (`--redis`).
    Redis(RedisOptions),
}

/// The hub, and the event log `choice` names. With Redis, the stream's
/// reader (and the connection keeper of publishes) are started on `tasks`,
/// and the reader is given [`LOAD_WAIT`] to load the recent history before
/// connections are accepted, so that resuming clients find it.
///
/// With a data dir, the disk log is loaded before this returns, and a task
/// on `tasks` waits at shutdown until it has closed the store.
///
/// # Errors
/// [`OpenError::RedisUrl`] when the Redis URL cannot be used;
/// [`OpenError::DataDir`] when the data dir cannot be read.
pub async fn open(
    choice: LogChoice,
    options: HubOptions,
    tasks: &TaskTracker,
) -> Result<(Arc<Hub>, SharedLog), OpenError> {
    match choice {
        LogChoice::Memory { keys } => Ok(open_memory(options, keys)),
        LogChoice::Disk {
            store,
            options: disk,
        } => {
            let (hub, log, closed) = DiskLog::open(store, disk, options)?;
            tasks.spawn(closed.wait());
            Ok((hub, log))
        }
        LogChoice::Redis(redis) => open_redis(redis, options, tasks).await,
    }
}

fn open_memory(options: HubOptions, keys: KeyOptions) -> (Arc<Hub>, SharedLog) {
    let hub = Hub::new(options);
    tracing::info!(
        history = options.history,
        history_bytes = options.history_bytes,
        epoch = hub.epoch(),
        "events are kept in memory"
    );
    (hub.clone(), Arc::new(MemoryLog::new(hub, keys)))
}

async fn open_redis(
    redis: RedisOptions,
    options: HubOptions,
    tasks: &TaskTracker,
) -> Result<(Arc<Hub>, SharedLog), OpenError> {
    let hub = Hub::replica(options);
    let (url, key, max_len) = (redis.url.clone(), redis.key.clone(), redis.max_len);
    let log = RedisLog::new(redis)
        .map(Arc::new)
        .map_err(|error| OpenError::RedisUrl {
            url,
            reason: error.to_string(),
        })?;
    tracing::info!(%key, max_len, "events are kept in the Redis stream");
    tasks.spawn(log.clone().keep_connected(hub.closed().clone()));
    tasks.spawn(log.clone().follow(hub.clone()));
    tasks.spawn(log.clone().trim_expired(hub.closed().clone()));
    let ready = async {
        hub.until_loaded().await;
        log.until_connected().await;
    };
    if tokio::time::timeout(LOAD_WAIT, ready).await.is_err() {
        tracing::warn!(
            "the Redis stream is not loaded yet; serving anyway: subscribers wait for it \
             and publishing answers 503 until Redis answers"
        );
    }
    Ok((hub, log))
}
