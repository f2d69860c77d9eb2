//! The event log on disk (`--data-dir`): one server that keeps its epoch,
//! its seqs and its history across restarts and crashes, with no other
//! process.
//!
//! Events are stored in a [redb](https://www.redb.org) file (`events.redb`,
//! beside a `VERSION` file that marks the folder as ours). The log numbers
//! events itself, `<epoch>-<seq>`, as the Redis append script does, and
//! hands them to the hub ([`Hub::replicate`]) once they are stored, in seq
//! order, so that the hub stays the hot path: subscribers read frames from
//! memory, and only a resume from before the hub's history reads the disk
//! ([`EventLog::span`]), a bounded batch at a time.
//!
//! One writer thread takes every publish waiting, stores them in one
//! transaction and syncs once (group commit), then replicates the batch and
//! answers each publisher. With `--fsync always` a publish is acknowledged
//! once its transaction is on disk; with `--fsync batch=100ms`, once it is
//! committed in memory, and the file is synced every interval.
//!
//! Tables (format 1):
//! - `events`: seq → the event as JSON (`shared::ServerEvent`);
//! - `by_topic`: (topic, seq) → its counted size: the retention index, and
//!   the read path of a resume on named topics;
//! - `topics`: topic → the newest seq it dropped (see [`retention`]);
//! - `idempotency`: `<key> <scope>` → the seq of its event and its record
//!   as JSON ([`crate::idempotency::Record`]), written in the commit of the
//!   event;
//! - `idempotency_order`: seq → (when the key was stored, its name): the
//!   oldest first, trimmed in every commit to `--idempotency-ttl` and to
//!   `--idempotency-keys` of weight (a record weighs its answer's events,
//!   [`Record::weight`]);
//! - `meta`: `epoch`, `last_seq` (the sequence counter), `running` (which
//!   mode a run that has not stopped cleanly was in: 0 after a clean stop),
//!   `forgotten_through`, `key_weight` (the weight of the stored keys:
//!   counted anew at start, kept in every commit).
//!
//! At start, after a run that did not stop cleanly in batch mode, the log
//! cannot know whether the last acknowledged events reached the disk: it
//! begins a new, higher epoch with an empty history, so that no id is ever
//! issued twice, and subscribers get the in-band `server_restarted` notice.
//! After such a stop in `always` mode, every acknowledged event is there and
//! the epoch goes on.
//!
//! A failed write (disk full, an I/O error) answers the publishes of that
//! commit with 503 and marks the log down; the writer reopens the store with
//! backoff, and from the store's own record of what it holds, goes on (or,
//! when acknowledged events were lost, begins a new epoch).

mod dir;
mod retention;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use shared::{EventId, ServerEvent};
use tokio::sync::{mpsc, oneshot};

pub use self::dir::Store;
use self::retention::Retention;
use self::writer::Writer;
use super::{AppendError, AppendFuture, Appended, EventLog, LogHealth, Span};
use super::{BatchAppend, BatchFuture, Keyed, KeyedAppend, KeyedFuture, NewEvent, Shape};
use super::{LastFuture, SpanFuture, Unavailable};
use crate::event_log::DataDirError;
use crate::hub::{new_epoch, Filter, Hidden, Hub, HubOptions, LAST_SCAN};
use crate::idempotency::{KeyOptions, Keys, Record};

const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
const BY_TOPIC: TableDefinition<'_, (&str, u64), u64> = TableDefinition::new("by_topic");
const TOPICS: TableDefinition<'_, &str, u64> = TableDefinition::new("topics");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const KEYS: TableDefinition<'_, &str, (u64, &[u8])> = TableDefinition::new("idempotency");
const KEY_ORDER: TableDefinition<'_, u64, (u64, &str)> = TableDefinition::new("idempotency_order");
/// The `meta` entry of the stored keys' weight.
const KEY_WEIGHT: &str = "key_weight";

/// `meta.running` after a clean stop.
const STOPPED: u64 = 0;
/// `meta.running` of a run in `--fsync always`.
const RUNNING_ALWAYS: u64 = 1;
/// `meta.running` of a run in `--fsync batch`.
const RUNNING_BATCH: u64 = 2;

/// Events stored in one transaction at most (a publish's events always go
/// in one, however many).
const MAX_BATCH: usize = 4096;
/// Publishes waiting for the writer at most; more wait to be queued.
const QUEUE: usize = 16 * 1024;
/// Events handed to the hub at a time while loading.
const LOAD_CHUNK: usize = 4096;
/// Bytes one backfill read brings at most (at least one event).
const BACKFILL_BYTES: usize = 4 * 1024 * 1024;
/// Delays between attempts to reopen a store that failed.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long shutdown waits for the writer to store what is queued and close
/// the store.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// When a publish to the disk log is acknowledged (`--fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Once it is on disk: each commit is synced (concurrent publishes share
    /// one).
    Always,
    /// Once it is committed in memory; the file is synced every interval.
    Batch(Duration),
}

impl FromStr for Fsync {
    type Err = String;

    /// `always`, or `batch=<interval>` (like `batch=100ms`; `batch` alone is
    /// 100 ms).
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "use `always` or `batch=<interval>`, like batch=100ms";
        match s.trim() {
            "always" => Ok(Self::Always),
            "batch" => Ok(Self::Batch(Duration::from_millis(100))),
            other => {
                let every = other
                    .strip_prefix("batch=")
                    .ok_or_else(|| format!("{other:?}: {usage}"))?;
                let every = humantime::parse_duration(every)
                    .map_err(|e| format!("{every:?}: {e} ({usage})"))?;
                if every.is_zero() || every > Duration::from_secs(60) {
                    return Err(format!(
                        "the batch interval must be above 0 and at most 1m ({usage})"
                    ));
                }
                Ok(Self::Batch(every))
            }
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Batch(every) => write!(f, "batch={}", humantime::format_duration(*every)),
        }
    }
}

impl Fsync {
    fn running(self) -> u64 {
        match self {
            Self::Always => RUNNING_ALWAYS,
            Self::Batch(_) => RUNNING_BATCH,
        }
    }
}

/// What the disk log is asked to do.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// The data dir.
    pub dir: PathBuf,
    /// When a publish is acknowledged.
    pub fsync: Fsync,
    /// Most events kept on disk (`--disk-history`).
    pub max_events: u64,
    /// Most bytes kept on disk (`--disk-history-bytes`).
    pub max_bytes: u64,
    /// Events each topic keeps while room allows (`--history-per-topic`).
    pub floor: u64,
    /// Topics without events whose losses are remembered one by one.
    pub max_empty_topics: usize,
    /// How long and how many idempotency keys are remembered.
    pub keys: KeyOptions,
    /// `--history-ttl`: events older than this are dropped from the disk.
    pub ttl: Option<Duration>,
}

/// Why a store operation failed.
type StoreResult<T> = Result<T, redb::Error>;

/// What the writer and the readers share.
struct Shared {
    /// The open store; `None` while it failed and is not reopened yet.
    store: RwLock<Option<Arc<Database>>>,
    /// The epoch of the events in the store.
    epoch: AtomicU64,
    /// Whether the last write succeeded.
    up: AtomicBool,
    /// Times the log went down since the start.
    outages: AtomicU64,
    /// Failed store operations since the start.
    errors: AtomicU64,
    /// What is kept, and what each topic dropped.
    retention: Mutex<Retention>,
    /// The idempotency keys, as the store holds them.
    keys: Keys,
    /// `--history-ttl`.
    ttl: Option<Duration>,
}

impl Shared {
    /// Records a failed operation; the first of an outage is logged as an
    /// error, the others at debug level.
    fn failed(&self, during: &str, error: &redb::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.up.swap(false, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                %error,
                during,
                "the event log on disk failed (disk full, or an I/O error): publishing answers \
                 503 until it can write again; subscribers are still served"
            );
        } else {
            tracing::debug!(%error, during, "the event log on disk still fails");
        }
    }
}

/// One publish waiting for the writer: its events (one, or a batch), all
/// stored in the same commit.
struct Request {
    events: Vec<NewEvent>,
    shape: Shape,
    /// Its key, stored in the same commit.
    keyed: Option<Keyed>,
    answer: oneshot::Sender<Result<Vec<Appended>, AppendError>>,
}

impl Request {
    /// The record of its key, answered with `appended` (its events).
    fn record(&self, appended: &[Appended]) -> Option<(Keyed, Record)> {
        let key = self.keyed.clone()?;
        let record = match (self.shape, appended) {
            (Shape::One, [one]) => key.record(one),
            _ => key.record_batch(appended),
        };
        Some((key, record))
    }
}

/// The disk log. Open it with [`DiskLog::open`]; publish with
/// [`EventLog::append`].
pub struct DiskLog {
    /// The writer's queue.
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    /// The hub, for the live-topic limit.
    hub: Arc<Hub>,
    options: DiskOptions,
}

impl fmt::Debug for DiskLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskLog")
            .field("options", &self.options)
            .field("epoch", &self.shared.epoch.load(Ordering::Relaxed))
            .field("up", &self.shared.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn unavailable(message: &str) -> AppendError {
    AppendError::Unavailable(Unavailable(message.to_owned()))
}

impl DiskLog {
    /// Runs the log on `store` (the data dir's, opened by [`Store::open`]):
    /// recovers what the last run left, builds the hub (see
    /// [`Hub::follower`]) and loads into it the newest events, up to
    /// `hub_options.history`, then starts the writer thread. `closed`
    /// resolves once the writer has stored what was queued at shutdown and
    /// closed the store cleanly.
    ///
    /// # Errors
    /// [`DataDirError`] naming the file when the store cannot be read or
    /// written, or the folder when the writer thread cannot start.
    pub fn open(
        store: Store,
        options: DiskOptions,
        hub_options: HubOptions,
    ) -> Result<(Arc<Hub>, Arc<Self>, Closed), DataDirError> {
        let Store {
            path,
            database: store,
        } = store;
        let failed = |error: &redb::Error| DataDirError {
            path: path.clone(),
            reason: format!("cannot be read or written: {error}"),
        };
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (epoch, last_seq) = start_run(&store, options.fsync)?;
            let retention = load_retention(&store, &options)?;
            let hub = Hub::follower(epoch, hub_options);
            load_hub(&store, &hub, (epoch, last_seq), hub_options.history)?;
            let keys = Keys::remembering(options.keys);
            load_keys(&store, &keys, options.keys)?;
            Ok::<_, redb::Error>((epoch, last_seq, retention, hub, keys))
        }));
        let (epoch, last_seq, retention, hub, keys) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(error)) => return Err(failed(&error)),
            Err(panic) => {
                let why = dir::StoreError::Panicked(dir::panic_text(&*panic));
                return Err(dir::store_refused(&path, &why));
            }
        };
        hub.mark_loaded();
        tracing::info!(
            dir = %options.dir.display(),
            epoch,
            last_seq,
            on_disk = retention.events,
            in_memory = hub.history_len(),
            fsync = %options.fsync,
            "events are kept on disk"
        );
        let store = Arc::new(store);
        let shared = Arc::new(Shared {
            store: RwLock::new(Some(store.clone())),
            epoch: AtomicU64::new(epoch),
            up: AtomicBool::new(true),
            outages: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            retention: Mutex::new(retention),
            keys,
            ttl: options.ttl,
        });
        let (requests, queue) = mpsc::channel(QUEUE);
        let (done, closed) = oneshot::channel();
        let writer = Writer::new(
            store,
            path,
            options.clone(),
            shared.clone(),
            hub.clone(),
            last_seq,
        );
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("disk-log".into())
            .spawn(move || writer.run(&runtime, queue, done))
            .map_err(|e| DataDirError {
                path: options.dir.clone(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        let log = Arc::new(Self {
            requests,
            shared,
            hub: hub.clone(),
            options,
        });
        Ok((hub, log, Closed(closed)))
    }
}

/// Resolves once the writer has closed the store at shutdown.
#[derive(Debug)]
pub struct Closed(oneshot::Receiver<()>);

impl Closed {
    /// Waits (at most [`CLOSE_WAIT`]) for the writer to store what was
    /// queued and close the store.
    pub async fn wait(self) {
        if tokio::time::timeout(CLOSE_WAIT, self.0).await.is_err() {
            tracing::error!(
                "the event log on disk did not close in time: the next start will treat this \
                 run as stopped uncleanly"
            );
        }
    }
}

/// Reads what the last run left and records that this run has begun:
/// returns the epoch and the last seq to go on from.
fn start_run(store: &Database, fsync: Fsync) -> StoreResult<(u64, u64)> {
    let tx = store.begin_write()?;
    let (mut epoch, mut last_seq, running) = {
        let meta = tx.open_table(META)?;
        let get =
            |key: &str| -> StoreResult<u64> { Ok(meta.get(key)?.map_or(0, |value| value.value())) };
        (get("epoch")?, get("last_seq")?, get("running")?)
    };
    if epoch == 0 {
        epoch = new_epoch();
        tracing::info!(epoch, "a new event log on disk");
    } else if running == RUNNING_BATCH {
        let old = epoch;
        epoch = begin_epoch(&tx, old)?;
        last_seq = 0;
        tracing::warn!(
            old,
            new = epoch,
            "the last run (--fsync batch) did not stop cleanly, so its last acknowledged \
             events may not have reached the disk: a new epoch begins with an empty history, \
             and resuming clients get a reset notice"
        );
    } else if running == RUNNING_ALWAYS {
        tracing::warn!(
            epoch,
            last_seq,
            "the last run (--fsync always) did not stop cleanly; every acknowledged event is \
             on disk and the epoch goes on"
        );
    }
    {
        let mut meta = tx.open_table(META)?;
        meta.insert("epoch", epoch)?;
        meta.insert("last_seq", last_seq)?;
        meta.insert("running", fsync.running())?;
        // Every table exists from the start, for readers.
        tx.open_table(EVENTS)?;
        tx.open_table(BY_TOPIC)?;
        tx.open_table(TOPICS)?;
        tx.open_table(KEYS)?;
        tx.open_table(KEY_ORDER)?;
    }
    tx.commit()?;
    Ok((epoch, last_seq))
}

/// Empties the store and records a new epoch above `old` (and above the
/// clock's, see [`new_epoch`]); returns it.
fn begin_epoch(tx: &WriteTransaction, old: u64) -> StoreResult<u64> {
    let epoch = new_epoch().max(old + 1);
    tx.delete_table(EVENTS)?;
    tx.delete_table(BY_TOPIC)?;
    tx.delete_table(TOPICS)?;
    // The keys' events are gone: a retry publishes anew.
    tx.delete_table(KEYS)?;
    tx.delete_table(KEY_ORDER)?;
    tx.open_table(EVENTS)?;
    tx.open_table(BY_TOPIC)?;
    tx.open_table(TOPICS)?;
    tx.open_table(KEYS)?;
    tx.open_table(KEY_ORDER)?;
    let mut meta = tx.open_table(META)?;
    meta.insert("epoch", epoch)?;
    meta.insert("last_seq", 0)?;
    meta.insert("forgotten_through", 0)?;
    meta.insert(KEY_WEIGHT, 0)?;
    Ok(epoch)
}

/// Rebuilds the retention index from the `by_topic` and `topics` tables.
fn load_retention(store: &Database, options: &DiskOptions) -> StoreResult<Retention> {
    let mut retention = Retention::new(
        options.max_events,
        options.max_bytes,
        options.floor,
        options.max_empty_topics,
    );
    let tx = store.begin_read()?;
    for entry in tx.open_table(BY_TOPIC)?.iter()? {
        let (key, size) = entry?;
        let (topic, seq) = key.value();
        retention.push(topic, seq, size.value());
    }
    for entry in tx.open_table(TOPICS)?.iter()? {
        let (topic, through) = entry?;
        retention.remember(topic.value(), through.value());
    }
    let forgotten = tx
        .open_table(META)?
        .get("forgotten_through")?
        .map_or(0, |v| v.value());
    retention.set_forgotten(forgotten);
    Ok(retention)
}

/// Loads the stored idempotency keys into `keys`, oldest first (those past
/// the TTL are left out, and dropped from the store by the next commit).
/// The store is held to the bound the same way first: the oldest keys over
/// `options.max` of weight are dropped (the bound may have been lowered
/// since the last run), and `key_weight` is counted anew.
fn load_keys(store: &Database, keys: &Keys, options: KeyOptions) -> StoreResult<()> {
    let tx = store.begin_write()?;
    let mut stored = Vec::new();
    let mut stale = Vec::new();
    {
        let records = tx.open_table(KEYS)?;
        for entry in tx.open_table(KEY_ORDER)?.iter()? {
            let (seq, value) = entry?;
            let (seq, name) = (seq.value(), value.value().1);
            match records.get(name)? {
                Some(found) if found.value().0 == seq => {
                    stored.push((seq, name.to_owned(), decode_record(found.value().1)?));
                }
                _ => stale.push(seq),
            }
        }
    }
    let mut weight: u64 = stored.iter().map(|(_, _, record)| record.weight()).sum();
    // The oldest go first; the weight is their sum, so they run out last.
    let mut over = 0;
    while weight > options.max as u64 && over < stored.len() {
        weight -= stored[over].2.weight();
        over += 1;
    }
    {
        let mut records = tx.open_table(KEYS)?;
        let mut order = tx.open_table(KEY_ORDER)?;
        for seq in stale {
            order.remove(seq)?;
        }
        for (seq, name, _) in &stored[..over] {
            order.remove(seq)?;
            records.remove(name.as_str())?;
        }
        tx.open_table(META)?.insert(KEY_WEIGHT, weight)?;
    }
    tx.commit()?;
    for (_, name, record) in stored.into_iter().skip(over) {
        keys.load(name, record);
    }
    Ok(())
}

/// Decodes a stored idempotency record. One that does not decode is an
/// error: its key would otherwise publish again.
fn decode_record(json: &[u8]) -> StoreResult<Record> {
    serde_json::from_slice(json).map_err(|error| {
        redb::Error::Corrupted(format!("an idempotency record does not decode: {error}"))
    })
}

/// Decodes a stored event of `epoch`. One that does not decode is an
/// error, never skipped: skipping it would be a silent gap.
fn decode(epoch: u64, seq: u64, value: &[u8]) -> StoreResult<(EventId, ServerEvent)> {
    let event: ServerEvent = serde_json::from_slice(value).map_err(|error| {
        redb::Error::Corrupted(format!("the stored event {seq} does not decode: {error}"))
    })?;
    Ok((EventId::new(epoch, event.seq), event))
}

/// The seq of the oldest of the newest `count` events below `before` that
/// `filter` selects and `hidden` does not hide: named topics through
/// `by_topic`, patterns and every topic from `events`, newest first, at
/// most [`LAST_SCAN`] looked at. With a TTL, the look stops at the first
/// event that is expired at `now_ms` (those older are too, but for clock
/// steps back: a start then holds fewer events, never an expired one).
fn read_oldest_of_last(
    store: &Database,
    (filter, hidden): (&Filter, Option<&Hidden>),
    before: u64,
    count: usize,
    (ttl, now_ms): (Option<Duration>, u64),
) -> StoreResult<Option<u64>> {
    let tx = store.begin_read()?;
    let stored = tx.open_table(EVENTS)?;
    let fresh =
        |head: &Head| !ttl.is_some_and(|ttl| crate::time::event_expired(&head.time, ttl, now_ms));
    let mut seqs = Vec::new();
    match filter {
        Filter::Some { topics, prefixes } if prefixes.is_empty() => {
            let by_topic = tx.open_table(BY_TOPIC)?;
            for topic in topics
                .iter()
                .filter(|t| !hidden.is_some_and(|h| h.hides(t)))
            {
                for entry in by_topic
                    .range((&**topic, 0)..(&**topic, before))?
                    .rev()
                    .take(count)
                {
                    let seq = entry?.0.value().1;
                    if ttl.is_some() {
                        let Some(value) = stored.get(seq)? else {
                            continue;
                        };
                        if !fresh(&head_of(seq, value.value())?) {
                            break;
                        }
                    }
                    seqs.push(seq);
                }
            }
        }
        _ => {
            for entry in stored.range(..before)?.rev().take(LAST_SCAN) {
                let (seq, value) = entry?;
                let head = head_of(seq.value(), value.value())?;
                if !fresh(&head) {
                    break;
                }
                if filter.matches(&head.topic) && !hidden.is_some_and(|h| h.hides(&head.topic)) {
                    seqs.push(seq.value());
                    if seqs.len() == count {
                        break;
                    }
                }
            }
        }
    }
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    seqs.truncate(count);
    Ok(seqs.last().copied())
}

/// A stored event's topic and time, read without the rest of it.
#[derive(serde::Deserialize)]
struct Head {
    topic: String,
    time: String,
}

/// The topic and time of a stored event.
fn head_of(seq: u64, value: &[u8]) -> StoreResult<Head> {
    serde_json::from_slice::<Head>(value).map_err(|error| {
        redb::Error::Corrupted(format!("the stored event {seq} does not decode: {error}"))
    })
}

/// Hands the hub the newest events without a gap between them (the disk
/// keeps older ones of quiet topics: a resume reads those from disk), at
/// most `history`. Those that expired while the server was down go at once
/// through the hub's own expiry, which counts them per topic, so that a
/// resume from before them hears exactly what it missed (the writer drops
/// them from the disk at its first sweep). When none is left, the hub goes
/// on from `last_seq` all the same.
fn load_hub(
    store: &Database,
    hub: &Hub,
    (epoch, last_seq): (u64, u64),
    history: u64,
) -> StoreResult<()> {
    let tx = store.begin_read()?;
    let events = tx.open_table(EVENTS)?;
    let mut first = last_seq + 1;
    for entry in events.range(..=last_seq)?.rev() {
        let (seq, _) = entry?;
        if seq.value() + 1 != first || last_seq - seq.value() >= history {
            break;
        }
        first = seq.value();
    }
    let mut chunk = Vec::with_capacity(LOAD_CHUNK);
    for entry in events.range(first..=last_seq)? {
        let (seq, value) = entry?;
        chunk.push(decode(epoch, seq.value(), value.value())?);
        if chunk.len() == LOAD_CHUNK {
            hub.replicate(std::mem::take(&mut chunk));
        }
    }
    hub.replicate(chunk);
    if hub.last_seq() < last_seq {
        hub.begin_at(epoch, last_seq.saturating_add(1));
    }
    hub.expire_due();
    Ok(())
}

/// Reads, for a subscriber of `filter`, the events among `from..=to` from
/// the store: at most `limit` events looked at and [`BACKFILL_BYTES`]
/// bytes. Named topics are read through `by_topic`, so that a quiet topic
/// costs its own events; patterns and every topic read `events` in order.
fn read_span(
    store: &Database,
    shared: &Shared,
    epoch: u64,
    filter: &Filter,
    from: u64,
    to: u64,
    limit: usize,
) -> StoreResult<Span> {
    let limit = limit.max(1);
    let tx = store.begin_read()?;
    let stored = tx.open_table(EVENTS)?;
    let mut events = Vec::new();
    let mut bytes = 0;
    let mut next = to.saturating_add(1);
    match filter {
        Filter::Some { topics, prefixes } if prefixes.is_empty() => {
            let by_topic = tx.open_table(BY_TOPIC)?;
            let mut seqs = Vec::new();
            for topic in topics {
                let start = seqs.len();
                for entry in by_topic
                    .range((&**topic, from)..=(&**topic, to))?
                    .take(limit)
                {
                    seqs.push(entry?.0.value().1);
                }
                if seqs.len() - start == limit {
                    // This topic may have more: read no further than it.
                    next = next.min(seqs[seqs.len() - 1] + 1);
                }
            }
            seqs.sort_unstable();
            seqs.retain(|seq| *seq < next);
            seqs.truncate(limit);
            if seqs.len() == limit {
                next = next.min(seqs[limit - 1] + 1);
            }
            for seq in seqs {
                if bytes >= BACKFILL_BYTES {
                    next = seq;
                    break;
                }
                if let Some(value) = stored.get(seq)? {
                    bytes += value.value().len();
                    events.push(decode(epoch, seq, value.value())?);
                }
            }
        }
        _ => {
            for (looked, entry) in stored.range(from..=to)?.enumerate() {
                let (seq, value) = entry?;
                if looked == limit || bytes >= BACKFILL_BYTES {
                    next = seq.value();
                    break;
                }
                bytes += value.value().len();
                let (id, event) = decode(epoch, seq.value(), value.value())?;
                if filter.matches(&event.topic) {
                    events.push((id, event));
                }
            }
        }
    }
    // Asked after the read: an event dropped meanwhile is reported gone
    // (perhaps twice), never missed silently.
    let gone = shared.retention.lock().gone(filter, from, to);
    Ok(Span { events, next, gone })
}

impl DiskLog {
    /// Queues a publish's events (and its key) for the writer and waits
    /// for their commit.
    async fn store(
        &self,
        events: Vec<NewEvent>,
        shape: Shape,
        keyed: Option<Keyed>,
    ) -> Result<Vec<Appended>, AppendError> {
        for event in &events {
            self.hub.admit(&event.topic)?;
        }
        let (answer, answered) = oneshot::channel();
        let stopping = || unavailable("the server is shutting down; the event was not published");
        self.requests
            .send(Request {
                events,
                shape,
                keyed,
                answer,
            })
            .await
            .map_err(|_| stopping())?;
        answered.await.map_err(|_| stopping())?
    }

    async fn store_one(
        &self,
        topic: String,
        message: String,
        keyed: Option<Keyed>,
    ) -> Result<Appended, AppendError> {
        let mut stored = self
            .store(vec![NewEvent { topic, message }], Shape::One, keyed)
            .await?;
        stored
            .pop()
            .ok_or_else(|| unavailable("the event log (disk) stored nothing; retry"))
    }
}

impl EventLog for DiskLog {
    fn append(&self, topic: String, message: String) -> AppendFuture<'_> {
        Box::pin(self.store_one(topic, message, None))
    }

    fn append_keyed(&self, keyed: Keyed, topic: String, message: String) -> KeyedFuture<'_> {
        Box::pin(async move {
            self.store_one(topic, message, Some(keyed))
                .await
                .map(KeyedAppend::Stored)
        })
    }

    fn append_batch(&self, events: Vec<NewEvent>, keyed: Option<Keyed>) -> BatchFuture<'_> {
        Box::pin(async move {
            self.store(events, Shape::Batch, keyed)
                .await
                .map(BatchAppend::Stored)
        })
    }

    fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    fn health(&self) -> LogHealth {
        LogHealth {
            kind: "disk",
            up: self.shared.up.load(Ordering::Acquire),
            outages: self.shared.outages.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
        }
    }

    fn reaches_further(&self) -> bool {
        // Quiet topics keep older events on disk than the hub loads, and the
        // disk's bounds are at least the hub's.
        true
    }

    fn span<'a>(
        &'a self,
        filter: &'a Filter,
        epoch: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> SpanFuture<'a> {
        Box::pin(async move {
            if epoch != self.shared.epoch.load(Ordering::Acquire) {
                // Another epoch's events are gone.
                return Ok(Span {
                    events: Vec::new(),
                    next: to.saturating_add(1),
                    gone: Some((from, to)),
                });
            }
            let (shared, filter) = (self.shared.clone(), filter.clone());
            let ttl = self.shared.ttl;
            let mut span = self
                .read_blocking(move |store| {
                    read_span(store, &shared, epoch, &filter, from, to, limit)
                })
                .await?;
            span.drop_expired(from, ttl, crate::time::unix_ms());
            Ok(span)
        })
    }

    fn oldest_of_last<'a>(
        &'a self,
        filter: &'a Filter,
        hidden: Option<Arc<Hidden>>,
        epoch: u64,
        before: u64,
        count: usize,
    ) -> LastFuture<'a> {
        Box::pin(async move {
            if epoch != self.shared.epoch.load(Ordering::Acquire) || count == 0 {
                return Ok(None);
            }
            let (filter, ttl) = (filter.clone(), self.shared.ttl);
            let now = crate::time::unix_ms();
            self.read_blocking(move |store| {
                let selection = (&filter, hidden.as_deref());
                read_oldest_of_last(store, selection, before, count, (ttl, now))
            })
            .await
        })
    }
}

impl DiskLog {
    /// Runs `read` on the store on a blocking thread: a store that cannot
    /// be read is counted and logged, and the caller told it is
    /// unavailable.
    async fn read_blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    ) -> Result<T, Unavailable> {
        let cannot = || Unavailable("the event log (disk) cannot be read now".into());
        let store = self.shared.store.read().clone().ok_or_else(cannot)?;
        match tokio::task::spawn_blocking(move || read(&store)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "reading the event log on disk failed");
                Err(cannot())
            }
            Err(_) => Err(cannot()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_modes_parse() {
        assert_eq!("always".parse(), Ok(Fsync::Always));
        assert_eq!(
            "batch=100ms".parse(),
            Ok(Fsync::Batch(Duration::from_millis(100)))
        );
        assert_eq!(
            "batch".parse(),
            Ok(Fsync::Batch(Duration::from_millis(100)))
        );
        assert_eq!(
            Fsync::Batch(Duration::from_millis(250)).to_string(),
            "batch=250ms"
        );
        for bad in ["sometimes", "batch=0s", "batch=soon", "batch=2m"] {
            let error = bad.parse::<Fsync>().unwrap_err();
            assert!(error.contains("always"), "{bad}: {error}");
        }
    }
}
