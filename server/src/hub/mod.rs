//! The hub: sequence numbers, the retained events, fan-out and the lag
//! policy.
//!
//! Every published event gets the next sequence number and is framed once,
//! as SSE bytes, into its topic's queue and the global order
//! ([`store`]); the same `Bytes` go to every subscriber. A publish wakes only
//! the subscribers whose filter matches ([`index`]): the exact subscribers
//! of its topic, those of prefix patterns covering it, and those who follow
//! every topic. A woken subscriber reads ([`read`]) only what matches it,
//! from its cursor, in one write; nothing is queued per subscriber, so a
//! subscriber that stops reading costs its cursor and nothing more. The
//! reaper disconnects one that is more than `max_lag` of its events behind
//! and makes no progress; it resumes when its `EventSource` reconnects.
//!
//! Publishes (and replicated batches, and subscription changes) take the
//! sequencer lock one at a time, so seqs become visible in order: an event
//! is in its topic's queue before `visible` passes its seq, and no id or
//! `position` is ever ahead of what a reader can see. Readers never take the
//! sequencer: a subscriber of a topic locks only that topic's queue; one of
//! every topic reads the global order.
//!
//! Where events come from is the [`crate::event_log`]'s business: with the
//! in-memory log, [`Hub::publish`] numbers and stores each event here; with
//! Redis Streams, the one reader of this server hands what the stream holds
//! to [`Hub::replicate`], and the hub is this server's copy of the stream's
//! recent past; with the disk log, its writer hands each stored batch to
//! [`Hub::replicate`] of a [`Hub::follower`].

mod expiry;
pub mod index;
mod last;
mod read;
mod stats;
pub mod store;

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use shared::{EventId, ServerEvent};
use slab::Slab;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use self::index::{Filter, Hidden};
use self::index::{Pattern, Patterns};
pub(crate) use self::last::LAST_SCAN;
pub(crate) use self::read::{Batch, Read};
pub use self::stats::HubStats;

/// An event to publish, before it is numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Its topic.
    pub topic: String,
    /// Its message.
    pub message: String,
}
pub use self::store::TopicLimit;
use self::store::{Bounds, Global, Store, Topic};

/// The current time as RFC 3339 with milliseconds, as events carry it.
pub(crate) fn now_rfc3339() -> String {
    stamp().0
}

/// The current time as events carry it, and in ms since the Unix epoch.
fn stamp() -> (String, u64) {
    let now = SystemTime::now();
    (
        humantime::format_rfc3339_millis(now).to_string(),
        crate::time::ms_of(now),
    )
}

/// Events one expiry pass drops at most under the sequencer lock; a pass
/// that stops there lets publishes in before the next.
const EXPIRE_PASS: usize = 1024;

/// How often the history is swept for expired events with `ttl`: a tenth
/// of it, within 10 ms and 1 s. Reads never wait for a sweep (they expire
/// what is due first); the sweep frees memory of quiet topics.
pub(crate) fn sweep_every(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// A new log's epoch (in memory, or on disk): this second since the Unix epoch times
/// 10^6, plus a random part below 10^6, so that two runs started in the same
/// second (on one machine or on two) never share an epoch.
pub(crate) fn new_epoch() -> u64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let random = (Uuid::new_v4().as_u128() % 1_000_000) as u64;
    seconds * 1_000_000 + random
}

/// How big the hub may grow, and how it treats slow subscribers.
#[derive(Debug, Clone, Copy)]
pub struct HubOptions {
    /// Most events kept for resuming clients.
    pub history: u64,
    /// Most bytes kept for resuming clients.
    pub history_bytes: u64,
    /// Events each topic keeps while room allows.
    pub history_per_topic: u64,
    /// Most topics that hold events or are followed.
    pub max_live_topics: u64,
    /// How far behind (in its own events) a subscriber may fall before it
    /// is cut.
    pub max_lag: u64,
    /// The most subscribers at once.
    pub max_subscribers: usize,
    /// `--history-ttl`: events older than this are dropped.
    pub history_ttl: Option<Duration>,
}

/// Where the log stands, read without the sequencer lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// Whether the seqs are known yet (see [`Hub::replica`]).
    pub(crate) loaded: bool,
    /// The epoch the seqs count in.
    pub(crate) epoch: u64,
    /// The lowest seq of the epoch the hub knows about.
    pub(crate) horizon: u64,
    /// The seq the next event gets.
    pub(crate) next: u64,
}

/// A subscriber as the hub sees it: how to wake it, how far behind it is,
/// how to cut it.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Set when there may be something new for it (or the hub changed).
    dirty: AtomicBool,
    /// Its stream's task, woken with `dirty`.
    waker: AtomicWaker,
    /// Matching events published since it subscribed.
    wakes: AtomicU64,
    /// Matching events it has been through (`wakes` as of its last
    /// complete read).
    consumed: AtomicU64,
    /// `consumed` at the reaper's previous scan.
    seen: AtomicU64,
    /// Consecutive reaper scans that found it over the lag limit and stuck.
    strikes: AtomicU8,
    /// Set while the subscriber waits for the event log (a replay that
    /// retries a failing Redis), not for its client: the reaper leaves it be.
    waiting: AtomicBool,
    /// Cancelled to close the subscriber's connection.
    kill: CancellationToken,
}

impl Slot {
    /// `n` matching events were published.
    fn signal_events(&self, n: u64) {
        self.wakes.fetch_add(n, Ordering::Relaxed);
        self.notify();
    }

    /// Wakes the stream without counting an event (shutdown, a load, a new
    /// epoch).
    fn notify(&self) {
        self.dirty.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// The sequencer's state: what only one publish at a time may change.
#[derive(Debug)]
struct Sequencer {
    /// Topics and retention.
    store: Store,
    /// Followed prefix patterns.
    patterns: Patterns,
    /// The epoch seqs count in; 0 while a replica has seen no event.
    epoch: u64,
    /// The seq the next event gets.
    next_seq: u64,
}

/// Shared state of one server run.
#[derive(Debug)]
pub struct Hub {
    /// Publishes, replicated batches and subscription changes, one at a
    /// time.
    sequencer: Mutex<Sequencer>,
    /// Every retained event in seq order.
    global: RwLock<Global>,
    /// The epoch, for readers.
    epoch: AtomicU64,
    /// The newest visible seq (0: none): every event up to it is in its
    /// topic's queue.
    visible: AtomicU64,
    /// The lowest seq the hub knows about in this epoch.
    horizon: AtomicU64,
    /// Bumped each time the hub forgets what it held (a new epoch, or a
    /// stretch a replica could not read): a read that saw it change starts
    /// over.
    generation: AtomicU64,
    /// Whether the seqs are known (a replica loads first).
    loaded: AtomicBool,
    /// Notified when `loaded` is set.
    loaded_signal: tokio::sync::Notify,
    /// Where the hub's events come from.
    mode: Mode,
    /// Bumped each time a replica's reader has read everything the shared
    /// log held at that moment.
    synced: AtomicU64,
    /// Subscribers of every topic.
    everyone: Mutex<Slab<Arc<Slot>>>,
    /// Every subscriber, for the reaper, shutdown and the limit.
    slots: Mutex<Slab<Arc<Slot>>>,
    /// Number of live subscribers (mirrors `slots.len()` without the lock).
    subscribers: AtomicUsize,
    /// How far behind a subscriber may fall before it is cut.
    max_lag: u64,
    /// The most subscribers at once.
    max_subscribers: usize,
    /// How many seqs a prefix pattern remembers (the history's size).
    pattern_cap: usize,
    /// The hub's counters, for /metrics.
    pub(crate) stats: HubStats,
    /// Cancelled when the server shuts down: every stream ends.
    closed: CancellationToken,
    /// `--history-ttl`.
    ttl: Option<Duration>,
    /// When the oldest retained event expires (ms since the Unix epoch;
    /// `u64::MAX`: never), for readers to tell without the sequencer lock
    /// whether something is due.
    due_ms: AtomicU64,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// The subscriber limit was reached.
    #[error("the server holds its maximum of {0} subscribers")]
    Full(usize),
    /// A topic it names would pass `--max-live-topics`.
    #[error(transparent)]
    TopicLimit(#[from] TopicLimit),
}

/// A registered subscriber; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// The hub it belongs to.
    hub: Arc<Hub>,
    /// Its key in the hub's slab of every subscriber.
    key: usize,
    /// Its slot, shared with the index and the reaper.
    slot: Arc<Slot>,
    /// What it follows.
    pub(crate) filter: Filter,
    /// Topics its token may not read, hidden from a subscription to every
    /// topic.
    pub(crate) hidden: Option<Arc<Hidden>>,
    /// The topics it names, with its key in each one's subscribers.
    topics: Vec<(Arc<Topic>, usize)>,
    /// The prefix patterns it names, with its key in each one's subscribers.
    patterns: Vec<(Arc<Pattern>, usize)>,
    /// Its key among the subscribers of every topic.
    everyone: Option<usize>,
}

/// Wakes, once, each subscriber of the topics and patterns a publish (or a
/// batch) touched, and those of every topic; returns how many were woken.
fn wake(
    touched: &[(Arc<Topic>, u64)],
    patterns: &[(Arc<Pattern>, u64)],
    everyone: &Mutex<Slab<Arc<Slot>>>,
    total: u64,
) -> u64 {
    let mut woken = 0;
    for (topic, n) in touched {
        for (_, slot) in topic.subs.lock().iter() {
            slot.signal_events(*n);
            woken += 1;
        }
    }
    for (pattern, n) in patterns {
        for (_, slot) in pattern.subs.lock().iter() {
            slot.signal_events(*n);
            woken += 1;
        }
    }
    if total > 0 {
        for (_, slot) in everyone.lock().iter() {
            slot.signal_events(total);
            woken += 1;
        }
    }
    woken
}

/// Where a hub's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The hub is the log: it numbers events itself (in memory).
    Log,
    /// It copies a shared log (Redis), so that a client may know of events
    /// this hub has not read yet.
    Replica,
    /// It copies a log this server alone writes (on disk).
    Follower,
}

impl Hub {
    /// A hub that is the log: numbering events in a new epoch of its own
    /// (see [`new_epoch`]) within the bounds of `options`.
    pub fn new(options: HubOptions) -> Arc<Self> {
        Self::build(new_epoch(), Mode::Log, options)
    }

    /// A hub that copies a shared log: empty and not loaded until the log's
    /// reader hands it events with [`Hub::replicate`] and reports it caught
    /// up with [`Hub::mark_loaded`].
    pub fn replica(options: HubOptions) -> Arc<Self> {
        Self::build(0, Mode::Replica, options)
    }

    /// A hub that copies a log this server alone writes (on disk), whose
    /// seqs count in `epoch`: not loaded until the log hands it its recent
    /// events with [`Hub::replicate`] and calls [`Hub::mark_loaded`]. Unlike
    /// a replica's, an id ahead of it was never issued, so resumes treat it
    /// as the in-memory hub's.
    pub fn follower(epoch: u64, options: HubOptions) -> Arc<Self> {
        Self::build(epoch, Mode::Follower, options)
    }

    fn build(epoch: u64, mode: Mode, options: HubOptions) -> Arc<Self> {
        let bounds = Bounds {
            max_events: options.history,
            max_bytes: options.history_bytes,
            floor: options.history_per_topic,
            max_topics: options.max_live_topics,
            ttl: options.history_ttl,
        };
        Arc::new(Self {
            sequencer: Mutex::new(Sequencer {
                store: Store::new(bounds),
                patterns: Patterns::default(),
                epoch,
                next_seq: 1,
            }),
            global: RwLock::new(Global::default()),
            epoch: AtomicU64::new(epoch),
            visible: AtomicU64::new(0),
            horizon: AtomicU64::new(1),
            generation: AtomicU64::new(0),
            // Only the hub that is the log knows its seqs from the start.
            loaded: AtomicBool::new(mode == Mode::Log),
            loaded_signal: tokio::sync::Notify::new(),
            mode,
            synced: AtomicU64::new(0),
            everyone: Mutex::new(Slab::new()),
            slots: Mutex::new(Slab::new()),
            subscribers: AtomicUsize::new(0),
            max_lag: options.max_lag,
            max_subscribers: options.max_subscribers,
            pattern_cap: usize::try_from(options.history).unwrap_or(usize::MAX),
            stats: HubStats::default(),
            closed: CancellationToken::new(),
            ttl: options.history_ttl,
            due_ms: AtomicU64::new(u64::MAX),
        })
    }

    /// The epoch of the log, the first part of every event id (0 before a
    /// replica saw its first event).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the seqs are known (a replica that has caught up).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Whether the seqs come from a shared log this hub copies.
    pub fn is_replica(&self) -> bool {
        self.mode == Mode::Replica
    }

    /// The id of the newest event, if any.
    pub fn last_id(&self) -> Option<EventId> {
        let seq = self.visible.load(Ordering::Acquire);
        (seq > 0).then(|| EventId::new(self.epoch(), seq))
    }

    /// The seq of the newest event, 0 before the first.
    pub fn last_seq(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Epoch, horizon and next seq, read together (a new epoch between them
    /// is seen by the reads that follow).
    pub(crate) fn position(&self) -> Position {
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            let position = Position {
                loaded: self.is_loaded(),
                epoch: self.epoch(),
                horizon: self.horizon.load(Ordering::Acquire),
                next: self.visible.load(Ordering::Acquire) + 1,
            };
            if generation.is_multiple_of(2) && self.generation.load(Ordering::Acquire) == generation
            {
                return position;
            }
        }
    }

    /// Number of events retained (those expired go at the next read or
    /// sweep).
    pub fn history_len(&self) -> usize {
        self.sequencer.lock().store.events
    }

    /// Bytes retained (frames and bookkeeping).
    pub fn history_bytes(&self) -> usize {
        self.sequencer.lock().store.bytes
    }

    /// Topics that hold events or are followed.
    pub fn live_topics(&self) -> usize {
        self.sequencer.lock().store.live_topics
    }

    /// Topics evicted whole to make room for new ones.
    pub fn topic_evictions(&self) -> u64 {
        self.sequencer.lock().store.topic_evictions
    }

    /// Number of connected subscribers.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Cancelled once the hub is closed ([`Hub::close`]): its streams end,
    /// and what feeds it (the log's reader, the reaper) stops.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Wakes every subscriber without counting an event.
    fn notify_all(&self) {
        for (_, slot) in self.slots.lock().iter() {
            slot.notify();
        }
    }

    /// Closes the hub, ending every stream: called once at shutdown.
    pub fn close(&self) {
        self.closed.cancel();
        self.notify_all();
    }

    /// Numbers `message` under `topic` with the next seq, stores it framed
    /// once, and wakes the subscribers it matches: the in-memory log's
    /// append.
    ///
    /// # Errors
    /// [`TopicLimit`] when `topic` is new and `--max-live-topics` is reached
    /// with every topic followed.
    pub fn publish(
        &self,
        topic: &str,
        message: String,
    ) -> Result<(EventId, ServerEvent), TopicLimit> {
        let (time, time_ms) = stamp();
        let (id, event, touched, patterns) = {
            let mut sequencer = self.sequencer.lock();
            let s = &mut *sequencer;
            let stored = s.store.topic(topic, &self.global)?;
            let id = EventId::new(s.epoch, s.next_seq);
            let event = ServerEvent {
                id: Uuid::new_v4(),
                seq: id.seq,
                topic: topic.to_owned(),
                message,
                time,
            };
            let frame = frame_json(None, &id, &event);
            s.store
                .append(&stored, (id.seq, time_ms), frame, &self.global);
            let patterns: Vec<(Arc<Pattern>, u64)> = s
                .patterns
                .matching(topic)
                .into_iter()
                .map(|pattern| {
                    pattern.seqs.lock().push(id.seq);
                    (pattern, 1)
                })
                .collect();
            s.next_seq = id.seq + 1;
            self.visible.store(id.seq, Ordering::Release);
            self.note_due(&s.store);
            (id, event, [(stored, 1)], patterns)
        };
        let woken = wake(&touched, &patterns, &self.everyone, 1);
        HubStats::add(&self.stats.published, 1);
        HubStats::add(&self.stats.wakeups, woken);
        tracing::debug!(id = %id, topic = %event.topic, message = %event.message, "pushed event");
        Ok((id, event))
    }

    /// Numbers and stores `events` in order, with consecutive seqs, under
    /// one hold of the sequencer (no other publish comes between them),
    /// and wakes their subscribers once: the in-memory log's batch. Every
    /// new topic of the batch is admitted first, so that a refused one
    /// stores nothing.
    ///
    /// # Errors
    /// [`TopicLimit`] as for [`Hub::publish`], for any of the topics.
    pub fn publish_batch(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<(EventId, ServerEvent)>, TopicLimit> {
        let (time, time_ms) = stamp();
        let mut stored_events = Vec::with_capacity(events.len());
        let mut touched: HashMap<usize, (Arc<Topic>, u64)> = HashMap::new();
        let mut patterns: HashMap<usize, (Arc<Pattern>, u64)> = HashMap::new();
        {
            let mut sequencer = self.sequencer.lock();
            let s = &mut *sequencer;
            for event in &events {
                s.store.topic(&event.topic, &self.global)?;
            }
            for NewEvent { topic, message } in events {
                let stored = s.store.topic_forced(&topic);
                let id = EventId::new(s.epoch, s.next_seq);
                let event = ServerEvent {
                    id: Uuid::new_v4(),
                    seq: id.seq,
                    topic,
                    message,
                    time: time.clone(),
                };
                let frame = frame_json(None, &id, &event);
                s.store
                    .append(&stored, (id.seq, time_ms), frame, &self.global);
                for pattern in s.patterns.matching(&event.topic) {
                    pattern.seqs.lock().push(id.seq);
                    patterns
                        .entry(Arc::as_ptr(&pattern) as usize)
                        .or_insert((pattern, 0))
                        .1 += 1;
                }
                touched
                    .entry(Arc::as_ptr(&stored) as usize)
                    .or_insert((stored, 0))
                    .1 += 1;
                s.next_seq = id.seq + 1;
                stored_events.push((id, event));
            }
            self.visible.store(s.next_seq - 1, Ordering::Release);
            self.note_due(&s.store);
        }
        let added = stored_events.len() as u64;
        let touched: Vec<_> = touched.into_values().collect();
        let patterns: Vec<_> = patterns.into_values().collect();
        let woken = wake(&touched, &patterns, &self.everyone, added);
        HubStats::add(&self.stats.published, added);
        HubStats::add(&self.stats.wakeups, woken);
        Ok(stored_events)
    }

    /// Adds events read from a shared log, oldest first, and wakes their
    /// subscribers once. Events this hub already holds are skipped; an event
    /// further on than the next seq (the ones between were trimmed from the
    /// shared log before this server read them) makes the hub forget what it
    /// held and start again there; an event of a newer epoch (the shared log
    /// was replaced, or lost events) starts the hub over in that epoch.
    /// Every topic the shared log sends is kept (within the history's
    /// bounds): `--max-live-topics` limits what is published here. Returns
    /// how many were added.
    pub fn replicate(&self, events: impl IntoIterator<Item = (EventId, ServerEvent)>) -> usize {
        let mut added = 0u64;
        let mut restarted = false;
        let mut touched: HashMap<usize, (Arc<Topic>, u64)> = HashMap::new();
        let mut patterns: HashMap<usize, (Arc<Pattern>, u64)> = HashMap::new();
        {
            let mut sequencer = self.sequencer.lock();
            let s = &mut *sequencer;
            for (id, event) in events {
                if id.epoch < s.epoch || (id.epoch == s.epoch && id.seq < s.next_seq) {
                    continue;
                }
                if id.epoch != s.epoch || id.seq > s.next_seq {
                    if id.epoch != s.epoch && s.epoch != 0 {
                        tracing::warn!(
                            old = s.epoch,
                            new = id.epoch,
                            "the shared log began a new epoch (it was replaced, or lost events); \
                             subscribers get a reset notice"
                        );
                    }
                    self.begin_anew(s, id.epoch, id.seq);
                    restarted = true;
                    touched.clear();
                    patterns.clear();
                }
                let stored = s.store.topic_forced(&event.topic);
                let at = (id.seq, self.time_of(&event));
                s.store
                    .append(&stored, at, frame_json(None, &id, &event), &self.global);
                for pattern in s.patterns.matching(&event.topic) {
                    pattern.seqs.lock().push(id.seq);
                    patterns
                        .entry(Arc::as_ptr(&pattern) as usize)
                        .or_insert((pattern, 0))
                        .1 += 1;
                }
                touched
                    .entry(Arc::as_ptr(&stored) as usize)
                    .or_insert((stored, 0))
                    .1 += 1;
                s.next_seq = id.seq + 1;
                self.visible.store(id.seq, Ordering::Release);
                added += 1;
                tracing::debug!(id = %id, topic = %event.topic, message = %event.message, "pushed event");
            }
            self.note_due(&s.store);
        }
        if restarted {
            self.notify_all();
        }
        if added > 0 {
            let touched: Vec<_> = touched.into_values().collect();
            let patterns: Vec<_> = patterns.into_values().collect();
            let woken = wake(&touched, &patterns, &self.everyone, added);
            HubStats::add(&self.stats.published, added);
            HubStats::add(&self.stats.wakeups, woken);
        }
        usize::try_from(added).unwrap_or(usize::MAX)
    }

    /// Forgets what the hub held: it knows the log from seq `next` of
    /// `epoch` on (a new epoch, a stretch a replica could not read, or a
    /// log that holds no event now but issued seqs up to `next - 1`).
    fn begin_anew(&self, s: &mut Sequencer, epoch: u64, next: u64) {
        s.store.restart(next, &self.global);
        for pattern in s.patterns.all() {
            let mut seqs = pattern.seqs.lock();
            seqs.seqs.clear();
            seqs.since = next;
        }
        s.epoch = epoch;
        s.next_seq = next;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.epoch.store(epoch, Ordering::Release);
        self.horizon.store(next, Ordering::Release);
        self.visible
            .store(next.saturating_sub(1), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.note_due(&s.store);
    }

    /// Tells a hub that copies a log (on disk, or a shared stream) that the
    /// log holds no event now but issued the seqs of `epoch` up to
    /// `next - 1` (every one of them expired): the hub goes on from there,
    /// so that a client holding the last id resumes without a notice and
    /// the next event is no gap. Does nothing when the hub is there already.
    pub fn begin_at(&self, epoch: u64, next: u64) {
        {
            let mut sequencer = self.sequencer.lock();
            let s = &mut *sequencer;
            if next <= 1 || (s.epoch == epoch && s.next_seq >= next) {
                return;
            }
            self.begin_anew(s, epoch, next);
        }
        self.notify_all();
    }

    /// Checks that an event of `topic` may be stored, before a log that
    /// numbers events itself (on disk) stores it: registers the topic,
    /// evicting the least recently published topic no one follows when the
    /// live-topic limit is reached. Publishes in flight at the same moment
    /// may pass the limit by their number until the next new topic.
    ///
    /// # Errors
    /// [`TopicLimit`] as for [`Hub::publish`].
    pub fn admit(&self, topic: &str) -> Result<(), TopicLimit> {
        let mut sequencer = self.sequencer.lock();
        sequencer.store.topic(topic, &self.global).map(drop)
    }

    /// Whether the event `seq` of the current epoch is retained here: a
    /// log with a longer history of its own never drops one that is.
    pub fn holds(&self, seq: u64) -> bool {
        self.global.read().events.contains_key(&seq)
    }

    /// How many times a replica's reader has caught up with the shared log.
    pub(crate) fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Records that a replica's reader has read everything the shared log
    /// held a moment ago; subscribers waiting on an id ahead of the hub learn
    /// whether it has arrived.
    pub fn mark_synced(&self) {
        self.synced.fetch_add(1, Ordering::Release);
        self.notify_all();
    }

    /// Resolves once the hub is loaded (at once for the in-memory log), or
    /// at shutdown.
    pub async fn until_loaded(&self) {
        loop {
            let notified = self.loaded_signal.notified();
            if self.is_loaded() || self.closed.is_cancelled() {
                return;
            }
            tokio::select! {
                () = self.closed.cancelled() => return,
                () = notified => {}
            }
        }
    }

    /// Records that a replica has caught up with the shared log: subscribers
    /// waiting to learn where to start are woken.
    pub fn mark_loaded(&self) {
        if !self.loaded.swap(true, Ordering::AcqRel) {
            self.loaded_signal.notify_waiters();
            self.notify_all();
        }
    }

    /// Registers a subscriber of `filter`, with `kill` closing its
    /// connection.
    ///
    /// # Errors
    /// [`Refused::Full`] at the subscriber limit; [`Refused::TopicLimit`]
    /// when a topic it names is new and `--max-live-topics` is reached with
    /// every topic followed.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        filter: &Filter,
        hidden: Option<Arc<Hidden>>,
        kill: CancellationToken,
    ) -> Result<Subscription, Refused> {
        let slot = Arc::new(Slot {
            dirty: AtomicBool::new(true),
            waker: AtomicWaker::new(),
            wakes: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            strikes: AtomicU8::new(0),
            waiting: AtomicBool::new(false),
            kill,
        });
        let key = {
            let mut slots = self.slots.lock();
            if slots.len() >= self.max_subscribers {
                return Err(Refused::Full(self.max_subscribers));
            }
            let key = slots.insert(slot.clone());
            self.subscribers.store(slots.len(), Ordering::Relaxed);
            key
        };
        let mut subscription = Subscription {
            hub: self.clone(),
            key,
            slot: slot.clone(),
            filter: filter.clone(),
            hidden,
            topics: Vec::new(),
            patterns: Vec::new(),
            everyone: None,
        };
        let mut sequencer = self.sequencer.lock();
        let s = &mut *sequencer;
        match filter {
            Filter::All => {
                subscription.everyone = Some(self.everyone.lock().insert(slot));
            }
            Filter::Some { topics, prefixes } => {
                for name in topics {
                    // On failure, dropping the subscription undoes what
                    // was registered so far.
                    let topic = s.store.topic(name, &self.global)?;
                    let sub_key = topic.subs.lock().insert(slot.clone());
                    s.store.follow(&topic, 1);
                    subscription.topics.push((topic, sub_key));
                }
                for prefix in prefixes {
                    let since = s.next_seq;
                    let pattern = s.patterns.get_or_create(prefix, since, self.pattern_cap);
                    let sub_key = pattern.subs.lock().insert(slot.clone());
                    s.store.follow_prefix(prefix, 1);
                    subscription.patterns.push((pattern, sub_key));
                }
            }
        }
        drop(sequencer);
        Ok(subscription)
    }

    /// Topics after `after` by name, at most `limit`: name, exact
    /// subscribers, events retained, newest seq, events published since
    /// the start.
    pub fn topics(
        &self,
        after: Option<&str>,
        limit: usize,
        readable: impl Fn(&str) -> bool,
    ) -> Vec<TopicInfo> {
        self.expire_due();
        let listed = self.sequencer.lock().store.list(after, limit, readable);
        listed
            .into_iter()
            .map(|topic| TopicInfo {
                name: topic.name.to_string(),
                subscribers: topic.subscribers.load(Ordering::Relaxed),
                retained: topic.queue.lock().events.len(),
                last_seq: topic.last_seq.load(Ordering::Acquire),
                published_total: topic.published_total.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// One lag check over all subscribers: a subscriber found more than
    /// `max_lag` of its events behind, with no progress since the previous
    /// check, at two checks in a row is disconnected. One that is catching
    /// up (a long replay) is left alone, and so is one waiting for the event
    /// log. Returns how many were cut.
    pub fn reap(&self) -> usize {
        let slots = self.slots.lock();
        let mut cut = 0;
        for (_, slot) in slots.iter() {
            let consumed = slot.consumed.load(Ordering::Relaxed);
            let stuck = slot.seen.swap(consumed, Ordering::Relaxed) == consumed;
            let lag = slot.wakes.load(Ordering::Relaxed).saturating_sub(consumed);
            if lag > self.max_lag && stuck && !slot.waiting.load(Ordering::Relaxed) {
                if slot.strikes.fetch_add(1, Ordering::Relaxed) >= 1 && !slot.kill.is_cancelled() {
                    slot.kill.cancel();
                    cut += 1;
                    tracing::info!(lag, "disconnecting a subscriber that fell behind");
                }
            } else {
                slot.strikes.store(0, Ordering::Relaxed);
            }
        }
        drop(slots);
        HubStats::add(&self.stats.dropped, cut as u64);
        cut
    }

    /// Runs [`Hub::reap`] every `every` until shutdown.
    pub async fn run_reaper(self: Arc<Self>, every: Duration) {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.closed.cancelled() => return,
                _ = interval.tick() => { self.reap(); }
            }
        }
    }
}

/// One topic as `GET /topics` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    /// Its name.
    pub name: String,
    /// Subscribers that name it exactly.
    pub subscribers: usize,
    /// Events it holds for resuming clients.
    pub retained: usize,
    /// The seq of its newest event (0: none since the start).
    pub last_seq: u64,
    /// Events published to it since the server started.
    pub published_total: u64,
}

impl Subscription {
    /// The hub this subscriber reads from.
    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Whether this subscriber receives events of `topic`.
    pub(crate) fn follows(&self, topic: &str) -> bool {
        self.filter.matches(topic) && !self.hidden.as_ref().is_some_and(|h| h.hides(topic))
    }

    /// Resolves when something may be new for this subscriber (or the hub
    /// changed: shutdown, loaded, a new epoch).
    pub(crate) async fn changed(&self) {
        let slot = &self.slot;
        poll_fn(|cx| {
            if slot.dirty.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            slot.waker.register(cx.waker());
            if slot.dirty.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Clears the wake flag before a read, so that a publish racing with
    /// the read still wakes the subscriber afterwards.
    pub(crate) fn clear_wake(&self) {
        self.slot.dirty.store(false, Ordering::Release);
    }

    /// Matching events published since it subscribed (for lag accounting).
    pub(crate) fn wakes(&self) -> u64 {
        self.slot.wakes.load(Ordering::Acquire)
    }

    /// Records that the subscriber has been through the first `wakes`
    /// matching events.
    pub(crate) fn consumed(&self, wakes: u64) {
        self.slot.consumed.fetch_max(wakes, Ordering::Relaxed);
    }

    /// Records whether this subscriber waits for the event log rather than
    /// for its client, so that the reaper does not take it for stalled.
    pub(crate) fn set_waiting(&self, waiting: bool) {
        self.slot.waiting.store(waiting, Ordering::Relaxed);
    }

    /// The switch the hub pulls to cut this subscriber.
    #[cfg(test)]
    pub(crate) fn kill(&self) -> &CancellationToken {
        &self.slot.kill
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        {
            let mut sequencer = self.hub.sequencer.lock();
            let s = &mut *sequencer;
            for (topic, key) in self.topics.drain(..) {
                topic.subs.lock().remove(key);
                s.store.follow(&topic, -1);
            }
            for (pattern, key) in self.patterns.drain(..) {
                let left = {
                    let mut subs = pattern.subs.lock();
                    subs.remove(key);
                    subs.len()
                };
                s.store.follow_prefix(&pattern.prefix, -1);
                if left == 0 {
                    s.patterns.remove(&pattern.prefix);
                }
            }
        }
        if let Some(key) = self.everyone.take() {
            self.hub.everyone.lock().remove(key);
        }
        let mut slots = self.hub.slots.lock();
        slots.remove(self.key);
        self.hub.subscribers.store(slots.len(), Ordering::Relaxed);
    }
}

/// One SSE frame whose `data:` is `payload` as JSON: `event` names it
/// (`None` for an ordinary event, which `onmessage` receives).
///
/// Written straight into the frame's one buffer, as `shared::encode_into`
/// would write it: compact JSON never holds a raw line break (serde_json
/// escapes them in strings), so the whole of it is one `data:` line; the id
/// is digits and `-`, and event names are the project's constants.
pub(crate) fn frame_json(event: Option<&str>, id: &EventId, payload: &impl Serialize) -> Bytes {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(256);
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    // Writing to a Vec cannot fail, nor can serializing the project's
    // message types (strings, numbers, enums).
    let _ = write!(out, "id: {id}\ndata: ");
    let start = out.len();
    let _ = serde_json::to_writer(&mut out, payload);
    debug_assert!(!out[start..].iter().any(|b| matches!(b, b'\r' | b'\n')));
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hub::read::Read;
    use shared::TopicPattern;

    #[test]
    fn a_json_frame_is_what_the_encoder_writes() {
        let id = EventId::new(7, 42);
        let event = ServerEvent {
            id: Uuid::new_v4(),
            seq: 42,
            topic: "news".into(),
            message: "two\nlines\r\nand a CR\r, \"quoted\" \u{2028} é".into(),
            time: "2026-12-01T00:00:00.000Z".into(),
        };
        for name in [None, Some("reset")] {
            let json = serde_json::to_string(&event).unwrap();
            let expected = shared::encode(&shared::Frame {
                event: name,
                id: Some(&id.to_string()),
                data: &json,
                ..shared::Frame::default()
            })
            .unwrap();
            assert_eq!(frame_json(name, &id, &event), expected.as_bytes());
        }
    }

    pub(crate) fn options(history: u64, max_lag: u64, max_subscribers: usize) -> HubOptions {
        HubOptions {
            history,
            history_bytes: u64::MAX,
            history_per_topic: 100,
            max_live_topics: 100_000,
            max_lag,
            max_subscribers,
            history_ttl: None,
        }
    }

    pub(crate) fn filter(patterns: &[&str]) -> Filter {
        Filter::new(patterns.iter().map(|p| TopicPattern::parse(p).unwrap()))
    }

    /// Reads everything `sub` has after `cursor`: the seqs delivered, the
    /// losses reported, and the next cursor.
    pub(crate) fn read_all(sub: &Subscription, cursor: u64) -> (Vec<u64>, Vec<store::Loss>, u64) {
        let (mut seqs, mut losses, mut cursor, mut announced) = (Vec::new(), Vec::new(), cursor, 0);
        loop {
            let Read::Batch(batch) = sub.read(sub.hub().generation(), cursor, announced) else {
                panic!("no restart expected");
            };
            if let Some(loss) = batch.loss {
                announced = loss.last;
                losses.push(loss);
            }
            if let Some(bytes) = &batch.bytes {
                let text = std::str::from_utf8(bytes).unwrap();
                seqs.extend(text.split("\n\n").filter(|f| !f.is_empty()).map(|f| {
                    let id = f.lines().next().unwrap().strip_prefix("id: ").unwrap();
                    id.parse::<EventId>().unwrap().seq
                }));
            }
            cursor = batch.next;
            if !batch.more {
                return (seqs, losses, cursor);
            }
        }
    }

    #[test]
    fn a_publish_wakes_only_the_subscribers_it_matches() {
        let hub = Hub::new(options(100, 100, 100));
        let a = hub
            .subscribe(&filter(&["a"]), None, CancellationToken::new())
            .unwrap();
        let b = hub
            .subscribe(&filter(&["b"]), None, CancellationToken::new())
            .unwrap();
        let rooms = hub
            .subscribe(&filter(&["room.*"]), None, CancellationToken::new())
            .unwrap();
        let all = hub
            .subscribe(&Filter::All, None, CancellationToken::new())
            .unwrap();
        hub.publish("a", "1".into()).unwrap();
        hub.publish("room.7", "2".into()).unwrap();
        hub.publish("room", "not a room".into()).unwrap();
        assert_eq!(
            (a.wakes(), b.wakes(), rooms.wakes(), all.wakes()),
            (1, 0, 1, 3)
        );
        assert_eq!(hub.stats.wakeups.load(Ordering::Relaxed), 2 + 1 + 1 + 1);
        assert_eq!(read_all(&rooms, 1).0, [2]);
        assert_eq!(read_all(&b, 1).0, Vec::<u64>::new());
        assert_eq!(read_all(&all, 1).0, [1, 2, 3]);
    }

    #[test]
    fn a_quiet_topic_keeps_its_floor_while_a_busy_one_turns_the_history_over() {
        let mut opts = options(20, 20, 10);
        opts.history_per_topic = 3;
        let hub = Hub::new(opts);
        for i in 0..2 {
            hub.publish("quiet", format!("q{i}")).unwrap();
        }
        for i in 0..1000 {
            hub.publish("busy", format!("b{i}")).unwrap();
        }
        assert_eq!(hub.history_len(), 20);
        let quiet = hub
            .subscribe(&filter(&["quiet"]), None, CancellationToken::new())
            .unwrap();
        let (seqs, losses, _) = read_all(&quiet, 1);
        assert_eq!((seqs, losses), (vec![1, 2], vec![]));
        // The busy topic lost all but 18: exactly counted.
        let busy = hub
            .subscribe(&filter(&["busy"]), None, CancellationToken::new())
            .unwrap();
        let (seqs, losses, next) = read_all(&busy, 1);
        assert_eq!(seqs.len(), 18);
        assert_eq!(seqs[0], 985);
        assert_eq!(
            losses,
            [store::Loss {
                first: 3,
                last: 984,
                count: Some(982)
            }]
        );
        assert_eq!(next, 1003);
        // Every topic: gaps are the busy topic's losses.
        let all = hub
            .subscribe(&Filter::All, None, CancellationToken::new())
            .unwrap();
        let (seqs, losses, _) = read_all(&all, 1);
        assert_eq!(seqs.len(), 20);
        assert_eq!(losses[0].count, Some(982));
    }

    #[test]
    fn topics_no_one_follows_go_before_followed_ones() {
        let mut opts = options(4, 4, 10);
        opts.history_per_topic = 10;
        let hub = Hub::new(opts);
        let _followed = hub
            .subscribe(&filter(&["kept"]), None, CancellationToken::new())
            .unwrap();
        hub.publish("kept", "k1".into()).unwrap();
        hub.publish("kept", "k2".into()).unwrap();
        hub.publish("idle", "i1".into()).unwrap();
        hub.publish("idle", "i2".into()).unwrap();
        // Over the bound, within every floor: the idle topic's oldest goes.
        hub.publish("kept", "k3".into()).unwrap();
        let all = hub
            .subscribe(&Filter::All, None, CancellationToken::new())
            .unwrap();
        let (seqs, losses, _) = read_all(&all, 1);
        assert_eq!(seqs, [1, 2, 4, 5]);
        assert_eq!(
            losses,
            [store::Loss {
                first: 3,
                last: 3,
                count: Some(1)
            }]
        );
        assert_eq!(hub.live_topics(), 2);
    }

    #[test]
    fn the_live_topic_limit_evicts_idle_topics_or_refuses() {
        let mut opts = options(100, 100, 10);
        opts.max_live_topics = 2;
        let hub = Hub::new(opts);
        let _a = hub
            .subscribe(&filter(&["a"]), None, CancellationToken::new())
            .unwrap();
        hub.publish("b", "b1".into()).unwrap();
        // A third topic: b, which no one follows, goes whole.
        hub.publish("c", "c1".into()).unwrap();
        assert_eq!(hub.topic_evictions(), 1);
        let names: Vec<String> = hub
            .topics(None, 10, |_| true)
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["a", "c"]);
        let _c = hub
            .subscribe(&filter(&["c"]), None, CancellationToken::new())
            .unwrap();
        assert!(hub.publish("d", "d1".into()).is_err());
        assert!(matches!(
            hub.subscribe(&filter(&["d"]), None, CancellationToken::new()),
            Err(Refused::TopicLimit(_))
        ));
        // b holds only tombstones: following it again would make it live.
        assert!(matches!(
            hub.subscribe(&filter(&["b"]), None, CancellationToken::new()),
            Err(Refused::TopicLimit(_))
        ));
        drop(_c);
        // With c no longer followed, it makes room; a resume of b learns
        // exactly what it lost.
        let b = hub
            .subscribe(&filter(&["b"]), None, CancellationToken::new())
            .unwrap();
        assert_eq!(hub.topic_evictions(), 2);
        let (seqs, losses, _) = read_all(&b, 1);
        assert!(seqs.is_empty());
        assert_eq!(
            losses,
            [store::Loss {
                first: 1,
                last: 1,
                count: Some(1)
            }]
        );
    }

    #[test]
    fn reaper_cuts_after_two_strikes_and_limit_holds() {
        let hub = Hub::new(options(100, 2, 3));
        let slow = hub
            .subscribe(&Filter::All, None, CancellationToken::new())
            .unwrap();
        let fast = hub
            .subscribe(&Filter::All, None, CancellationToken::new())
            .unwrap();
        let third = hub
            .subscribe(&Filter::All, None, CancellationToken::new())
            .unwrap();
        assert!(matches!(
            hub.subscribe(&Filter::All, None, CancellationToken::new()),
            Err(Refused::Full(3))
        ));
        drop(third);
        for i in 0..5 {
            hub.publish("t", i.to_string()).unwrap();
        }
        read_all(&fast, 1);
        assert_eq!(hub.reap(), 0);
        assert_eq!(hub.reap(), 1);
        assert!(slow.kill().is_cancelled());
        assert!(!fast.kill().is_cancelled());
        // One far behind but waiting for the event log is left alone.
        let waiting = hub
            .subscribe(&Filter::All, None, CancellationToken::new())
            .unwrap();
        waiting.set_waiting(true);
        for i in 0..5 {
            hub.publish("t", i.to_string()).unwrap();
        }
        read_all(&fast, 6);
        hub.reap();
        hub.reap();
        assert!(!waiting.kill().is_cancelled());
        drop(slow);
        assert_eq!(hub.subscribers(), 2);
        assert_eq!(hub.stats.dropped.load(Ordering::Relaxed), 1);
    }

    fn event(seq: u64, topic: &str) -> ServerEvent {
        ServerEvent {
            id: Uuid::new_v4(),
            seq,
            topic: topic.into(),
            message: format!("m{seq}"),
            time: now_rfc3339(),
        }
    }

    #[test]
    fn a_replica_skips_what_it_has_restarts_after_gaps_and_follows_new_epochs() {
        let hub = Hub::replica(options(10, 10, 10));
        assert!(!hub.is_loaded());
        assert_eq!(hub.epoch(), 0);
        let batch = |epoch: u64, seqs: std::ops::RangeInclusive<u64>| {
            seqs.map(move |seq| (EventId::new(epoch, seq), event(seq, "t")))
        };
        assert_eq!(hub.replicate(batch(7, 4..=6)), 3);
        hub.mark_loaded();
        let position = hub.position();
        assert_eq!((position.epoch, position.horizon, position.next), (7, 4, 7));
        assert_eq!(hub.replicate(batch(7, 5..=7)), 1);
        assert_eq!(hub.last_id(), Some(EventId::new(7, 7)));
        // A gap (trimmed before it was read): the hub starts again there.
        let sub = hub
            .subscribe(&Filter::All, None, CancellationToken::new())
            .unwrap();
        let generation = hub.generation();
        assert_eq!(hub.replicate(batch(7, 10..=10)), 1);
        assert!(matches!(
            sub.read(generation, 8, 0),
            Read::Restarted {
                epoch: 7,
                horizon: 10,
                ..
            }
        ));
        // An older epoch is ignored; a newer one replaces everything.
        assert_eq!(hub.replicate(batch(6, 11..=11)), 0);
        assert_eq!(hub.replicate(batch(9, 1..=2)), 2);
        let Read::Restarted {
            epoch: 9,
            horizon: 1,
            generation,
        } = sub.read(hub.generation() - 2, 11, 0)
        else {
            panic!("a new epoch is a restart");
        };
        let (seqs, losses, next) = read_all(&sub, 1);
        assert_eq!((seqs, losses, next), (vec![1, 2], vec![], 3));
        assert_eq!(generation, hub.generation());
        assert_eq!(hub.stats.published.load(Ordering::Relaxed), 7);
    }

    mod model {
        //! Any interleaving of publishes over topics, subscriptions (exact,
        //! prefix, every topic) and resumes: each subscriber receives
        //! exactly the events of its filter after its resume point, in
        //! order, or notices whose counts are exactly what was dropped.

        use super::*;
        use proptest::prelude::*;

        const TOPICS: [&str; 5] = ["a", "b", "r.1", "r.2", "r.x.3"];
        const FILTERS: [&[&str]; 6] = [&["a"], &["b"], &["a", "b"], &["r.*"], &["r.x.*", "a"], &[]];

        #[derive(Debug, Clone)]
        enum Op {
            Publish(usize),
            /// A subscriber of filter `f` resuming after the `back`-th last
            /// event, reading everything.
            Resume {
                filter: usize,
                back: u64,
            },
            /// A subscriber that stays while `n` events are published,
            /// then reads.
            Live {
                filter: usize,
                n: u64,
                topics: Vec<usize>,
            },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0..TOPICS.len()).prop_map(Op::Publish),
                1 => (0..FILTERS.len(), 0u64..40).prop_map(|(filter, back)| Op::Resume { filter, back }),
                1 => (0..FILTERS.len(), 0u64..40, proptest::collection::vec(0..TOPICS.len(), 40))
                    .prop_map(|(filter, n, topics)| Op::Live { filter, n, topics }),
            ]
        }

        fn matches(filter: usize, topic: &str) -> bool {
            let f = FILTERS[filter];
            f.is_empty()
                || f.iter()
                    .any(|p| TopicPattern::parse(p).unwrap().matches(topic))
        }

        /// Checks what `sub` reads from `cursor` against the model's
        /// `published` (seq → topic).
        fn check(
            sub: &Subscription,
            filter: usize,
            cursor: u64,
            published: &[(u64, &str)],
        ) -> Result<(), TestCaseError> {
            let (seqs, losses, _) = read_all(sub, cursor);
            let expected: Vec<u64> = published
                .iter()
                .filter(|(seq, topic)| *seq >= cursor && matches(filter, topic))
                .map(|(seq, _)| *seq)
                .collect();
            let lost: u64 = losses
                .iter()
                .map(|l| l.count.expect("the hub knows its losses"))
                .sum();
            // Delivered in order, no duplicates, nothing outside the filter.
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
            for seq in &seqs {
                prop_assert!(expected.contains(seq), "{seq} is not for filter {filter}");
            }
            // What was not delivered was announced, exactly.
            prop_assert_eq!(
                expected.len() as u64,
                seqs.len() as u64 + lost,
                "filter {}: expected {:?}, got {:?}, losses {:?}",
                filter,
                expected,
                seqs,
                losses
            );
            for missing in expected.iter().filter(|s| !seqs.contains(s)) {
                prop_assert!(
                    losses.iter().any(|l| (l.first..=l.last).contains(missing)),
                    "{missing} lost silently: {losses:?}"
                );
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn every_subscriber_gets_its_events_or_exact_notices(ops in proptest::collection::vec(op(), 1..120), history in 3u64..30, floor in 0u64..6) {
                let mut opts = options(history, 1000, 1000);
                opts.history_per_topic = floor;
                let hub = Hub::new(opts);
                let mut published: Vec<(u64, &str)> = Vec::new();
                for op in ops {
                    match op {
                        Op::Publish(t) => {
                            let (id, _) = hub.publish(TOPICS[t], String::new()).unwrap();
                            published.push((id.seq, TOPICS[t]));
                        }
                        Op::Resume { filter: f, back } => {
                            let sub = hub.subscribe(&filter(FILTERS[f]), None, CancellationToken::new()).unwrap();
                            let cursor = (published.len() as u64).saturating_sub(back) + 1;
                            check(&sub, f, cursor, &published)?;
                        }
                        Op::Live { filter: f, n, topics } => {
                            let sub = hub.subscribe(&filter(FILTERS[f]), None, CancellationToken::new()).unwrap();
                            let cursor = published.len() as u64 + 1;
                            for t in topics.into_iter().take(n as usize) {
                                let (id, _) = hub.publish(TOPICS[t], String::new()).unwrap();
                                published.push((id.seq, TOPICS[t]));
                            }
                            check(&sub, f, cursor, &published)?;
                        }
                    }
                }
            }
        }
    }
}
