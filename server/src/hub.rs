//! The hub: sequence numbers, the history log, fan-out and the lag policy.
//!
//! Every published event gets the next sequence number and is framed once,
//! as SSE bytes, into the log: a ring of the last `history` events. The log
//! is the fan-out too. A subscriber is only a cursor (the next seq it needs):
//! when woken it takes the frames from its cursor to the end of the log (the
//! same shared `Bytes` every other subscriber gets) and writes them in one
//! go. Nothing is queued per subscriber, so a subscriber that stops reading
//! costs its cursor and nothing more; the reaper disconnects it once it is
//! more than `max_lag` events behind, and it resumes from the log when its
//! `EventSource` reconnects.
//!
//! Where the events come from is the [`crate::event_log`]'s business: with
//! the in-memory log, [`Hub::publish`] numbers and stores each event here;
//! with Redis Streams, the one reader of this server hands what the stream
//! holds to [`Hub::replicate`], and the ring is this server's copy of the
//! stream's recent past.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use shared::{encode_into, EventId, Frame, ServerEvent};
use slab::Slab;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::Metrics;

/// The most bytes handed to one subscriber in one write; a subscriber far
/// behind gets its backlog in chunks of about this size.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// One stored event.
#[derive(Debug)]
struct Stored {
    /// The event's sequence number.
    seq: u64,
    /// Its topic, compared against each subscriber's filter.
    topic: Arc<str>,
    /// The complete SSE frame (`id:`, `data:`, blank line), shared by all.
    frame: Bytes,
}

/// The ring of recent events. Sequence numbers in it are contiguous.
#[derive(Debug)]
struct Log {
    /// The log the seqs count in (first part of every id); 0 while a
    /// replica has seen no event yet.
    epoch: u64,
    /// Whether the seqs are known: always with the in-memory log; for a
    /// replica, once it has caught up with the shared log after starting.
    loaded: bool,
    /// The retained events, oldest first.
    events: VecDeque<Stored>,
    /// The seq the next published event gets; seqs start at 1.
    next_seq: u64,
    /// How many events are retained at most.
    capacity: usize,
    /// How many frame bytes are retained at most (the newest event is
    /// always kept, whatever its size).
    max_bytes: usize,
    /// Frame bytes retained now.
    bytes: usize,
}

impl Log {
    fn first_seq(&self) -> u64 {
        self.next_seq - self.events.len() as u64
    }

    /// Frames `event` once and appends it as `next_seq`, dropping the oldest
    /// while the history is over its count or byte bound.
    fn push(&mut self, id: &EventId, event: &ServerEvent) {
        debug_assert_eq!(id.seq, self.next_seq);
        let frame = frame_json(None, id, event);
        self.bytes += frame.len();
        self.events.push_back(Stored {
            seq: id.seq,
            topic: Arc::from(event.topic.as_str()),
            frame,
        });
        self.next_seq = id.seq + 1;
        while self.events.len() > self.capacity
            || (self.bytes > self.max_bytes && self.events.len() > 1)
        {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.frame.len();
            }
        }
    }

    /// Forgets every event and counts from `next_seq` on in `epoch`.
    fn restart(&mut self, epoch: u64, next_seq: u64) {
        self.epoch = epoch;
        self.events.clear();
        self.bytes = 0;
        self.next_seq = next_seq;
    }
}

/// A new in-memory log's epoch: this second since the Unix epoch times
/// 10^6, plus a random part below 10^6, so that two runs started in the same
/// second (on one machine or on two) never share an epoch.
fn new_epoch() -> u64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let random = (Uuid::new_v4().as_u128() % 1_000_000) as u64;
    seconds * 1_000_000 + random
}

/// The current time as RFC 3339 with milliseconds, as events carry it.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// What a subscriber finds in the log after its cursor.
#[derive(Debug)]
pub(crate) enum Read {
    /// Frames to write (possibly none when nothing matched) and the cursor
    /// to continue from.
    Frames {
        /// Concatenated frames of the matching events.
        bytes: Option<Bytes>,
        /// How many events `bytes` holds.
        count: u64,
        /// The seq of the last event in `bytes`.
        last: u64,
        /// The next seq to read.
        next: u64,
        /// Whether the read stopped at the batch size with frames left.
        more: bool,
    },
    /// Events from `cursor` to `first - 1` have left the log.
    Lost {
        /// The oldest seq still retained.
        first: u64,
    },
    /// The log now counts in another epoch: the shared log was replaced.
    Replaced {
        /// The new epoch.
        epoch: u64,
        /// The oldest seq retained in it.
        first: u64,
    },
}

/// Where the log stands, read under one lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// Whether the seqs are known yet (see [`Hub::replica`]).
    pub(crate) loaded: bool,
    /// The epoch the seqs count in.
    pub(crate) epoch: u64,
    /// The oldest retained seq.
    pub(crate) first: u64,
    /// The seq the next event gets.
    pub(crate) next: u64,
}

/// A subscriber as the hub sees it, for lag checks and metrics.
#[derive(Debug)]
struct Slot {
    /// The next seq this subscriber needs; written by its stream.
    cursor: AtomicU64,
    /// The cursor the reaper saw at its previous scan.
    seen: AtomicU64,
    /// Consecutive reaper scans that found it over the lag limit and stuck.
    strikes: AtomicU8,
    /// Set while the subscriber waits for the event log (a replay that
    /// retries a failing Redis), not for its client: the reaper leaves it be.
    waiting: AtomicBool,
    /// Cancelled to close the subscriber's connection.
    kill: CancellationToken,
}

/// Which topics a subscriber follows.
#[derive(Debug, Clone, Default)]
pub enum Topics {
    /// Every topic.
    #[default]
    All,
    /// Only these.
    Only(HashSet<Box<str>>),
}

impl Topics {
    /// Whether `topic` is one of these.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Topics::All => true,
            Topics::Only(set) => set.contains(topic),
        }
    }

    /// How many topics are named (0 for every topic).
    pub fn len(&self) -> usize {
        match self {
            Topics::All => 0,
            Topics::Only(set) => set.len(),
        }
    }

    /// Whether every topic is followed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How big the hub may grow, and how it treats slow subscribers.
#[derive(Debug, Clone, Copy)]
pub struct HubOptions {
    /// Most events kept for resuming clients.
    pub history: u64,
    /// Most frame bytes kept for resuming clients.
    pub history_bytes: u64,
    /// How far behind a subscriber may fall before it is cut.
    pub max_lag: u64,
    /// The most subscribers at once.
    pub max_subscribers: usize,
}

/// Shared state of one server run.
#[derive(Debug)]
pub struct Hub {
    /// The history, which is also the fan-out buffer.
    log: RwLock<Log>,
    /// Whether the seqs come from a shared log this hub copies (Redis), so
    /// that a client may know of events this hub has not read yet.
    replica: bool,
    /// Bumped each time a replica's reader has read everything the shared
    /// log held at that moment: a client's id that is still ahead of the hub
    /// after that was not issued by this log.
    synced: AtomicU64,
    /// Bumped after every publish; subscribers wait on it.
    notify: watch::Sender<u64>,
    /// Live subscribers, for the reaper and the subscriber limit.
    slots: Mutex<Slab<Arc<Slot>>>,
    /// Number of live subscribers (mirrors `slots.len()` without the lock).
    subscribers: AtomicUsize,
    /// How far behind a subscriber may fall before it is cut.
    max_lag: u64,
    /// The most subscribers at once.
    max_subscribers: usize,
    /// Counters for /metrics.
    pub(crate) metrics: Metrics,
    /// Cancelled when the server shuts down: every stream ends.
    shutdown: CancellationToken,
}

/// A registered subscriber; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// The hub it belongs to.
    hub: Arc<Hub>,
    /// Its key in the hub's slab.
    key: usize,
    /// Its slot, shared with the reaper.
    slot: Arc<Slot>,
}

/// The subscriber limit was reached.
#[derive(Debug, thiserror::Error)]
#[error("the server holds its maximum of {0} subscribers")]
pub struct Full(pub usize);

impl Hub {
    /// A hub that is the log: numbering events in a new epoch of its own
    /// (see [`new_epoch`]) within the bounds of `options`.
    pub fn new(options: HubOptions) -> Arc<Self> {
        Self::build(new_epoch(), false, options)
    }

    /// A hub that copies a shared log: empty and not loaded until the log's
    /// reader hands it events with [`Hub::replicate`] and reports it caught
    /// up with [`Hub::mark_loaded`].
    pub fn replica(options: HubOptions) -> Arc<Self> {
        Self::build(0, true, options)
    }

    fn build(epoch: u64, replica: bool, options: HubOptions) -> Arc<Self> {
        let HubOptions {
            history,
            history_bytes,
            max_lag,
            max_subscribers,
        } = options;
        let capacity = usize::try_from(history).unwrap_or(usize::MAX).max(1);
        Arc::new(Self {
            log: RwLock::new(Log {
                epoch,
                loaded: !replica,
                events: VecDeque::with_capacity(capacity.min(1 << 16)),
                next_seq: 1,
                capacity,
                max_bytes: usize::try_from(history_bytes).unwrap_or(usize::MAX),
                bytes: 0,
            }),
            replica,
            synced: AtomicU64::new(0),
            notify: watch::channel(0).0,
            slots: Mutex::new(Slab::new()),
            subscribers: AtomicUsize::new(0),
            max_lag,
            max_subscribers,
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
        })
    }

    /// The epoch of the log, the first part of every event id (0 before a
    /// replica saw its first event).
    pub fn epoch(&self) -> u64 {
        self.log.read().epoch
    }

    /// Whether the seqs are known (a replica that has caught up).
    pub fn is_loaded(&self) -> bool {
        self.log.read().loaded
    }

    /// The id of the newest event, if any.
    pub fn last_id(&self) -> Option<EventId> {
        let log = self.log.read();
        (!log.events.is_empty()).then(|| EventId::new(log.epoch, log.next_seq - 1))
    }

    /// The seq of the newest event, 0 before the first.
    pub fn last_seq(&self) -> u64 {
        self.log.read().next_seq - 1
    }

    /// Epoch, oldest retained seq and next seq, read together.
    pub(crate) fn position(&self) -> Position {
        let log = self.log.read();
        Position {
            loaded: log.loaded,
            epoch: log.epoch,
            first: log.first_seq(),
            next: log.next_seq,
        }
    }

    /// Number of events in the history.
    pub fn history_len(&self) -> usize {
        self.log.read().events.len()
    }

    /// Number of connected subscribers.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// The token cancelled at shutdown.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Ends every stream: called once at shutdown.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
        // Streams wait only on the publish notification: wake them all so
        // they see the cancellation.
        self.notify.send_modify(|_| {});
    }

    /// Numbers `message` under `topic` with the next seq, stores it framed
    /// once, and wakes subscribers: the in-memory log's append.
    pub fn publish(&self, topic: &str, message: String) -> (EventId, ServerEvent) {
        let time = now_rfc3339();
        let (id, event) = {
            let mut log = self.log.write();
            let id = EventId::new(log.epoch, log.next_seq);
            let event = ServerEvent {
                id: Uuid::new_v4(),
                seq: id.seq,
                topic: topic.to_owned(),
                message,
                time,
            };
            log.push(&id, &event);
            (id, event)
        };
        self.notify.send_replace(id.seq);
        self.metrics.published.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = %id, topic = %event.topic, message = %event.message, "pushed event");
        (id, event)
    }

    /// Adds events read from a shared log, oldest first, and wakes
    /// subscribers once. Events this hub already holds are skipped; an event
    /// further on than the next seq (the ones between were trimmed from the
    /// shared log before this server read them) restarts the ring at it; an
    /// event of a newer epoch (the shared log was replaced) starts the ring
    /// over in that epoch. Returns how many were added.
    pub fn replicate(&self, events: impl IntoIterator<Item = (EventId, ServerEvent)>) -> usize {
        let mut added = 0;
        {
            let mut log = self.log.write();
            for (id, event) in events {
                if id.epoch < log.epoch || (id.epoch == log.epoch && id.seq < log.next_seq) {
                    continue;
                }
                if id.epoch != log.epoch || id.seq > log.next_seq {
                    if id.epoch != log.epoch && log.epoch != 0 {
                        tracing::warn!(
                            old = log.epoch,
                            new = id.epoch,
                            "the shared log began a new epoch (it was replaced, or lost events); \
                             subscribers get a reset notice"
                        );
                    }
                    log.restart(id.epoch, id.seq);
                }
                log.push(&id, &event);
                added += 1;
                tracing::debug!(id = %id, topic = %event.topic, message = %event.message, "pushed event");
            }
        }
        if added > 0 {
            self.notify.send_modify(|v| *v += 1);
            Metrics::add(&self.metrics.published, added as u64);
        }
        added
    }

    /// Whether the seqs come from a shared log this hub copies.
    pub fn is_replica(&self) -> bool {
        self.replica
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
        self.notify.send_modify(|v| *v += 1);
    }

    /// Resolves once the hub is loaded (at once for the in-memory log).
    pub async fn until_loaded(&self) {
        let mut wake = self.watch();
        while !self.is_loaded() {
            if wake.changed().await.is_err() {
                return;
            }
        }
    }

    /// Records that a replica has caught up with the shared log: subscribers
    /// waiting to learn where to start are woken.
    pub fn mark_loaded(&self) {
        let mut log = self.log.write();
        if !log.loaded {
            log.loaded = true;
            drop(log);
            self.notify.send_modify(|v| *v += 1);
        }
    }

    /// Registers a subscriber starting at `cursor`, with `kill` closing its
    /// connection.
    ///
    /// # Errors
    /// [`Full`] when the subscriber limit is reached.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        cursor: u64,
        kill: CancellationToken,
    ) -> Result<Subscription, Full> {
        let slot = Arc::new(Slot {
            cursor: AtomicU64::new(cursor),
            seen: AtomicU64::new(cursor),
            strikes: AtomicU8::new(0),
            waiting: AtomicBool::new(false),
            kill,
        });
        let mut slots = self.slots.lock();
        if slots.len() >= self.max_subscribers {
            return Err(Full(self.max_subscribers));
        }
        let key = slots.insert(slot.clone());
        self.subscribers.store(slots.len(), Ordering::Relaxed);
        Ok(Subscription {
            hub: self.clone(),
            key,
            slot,
        })
    }

    /// A receiver that changes after every publish.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// The frames after `cursor` of `epoch` whose topic `topics` matches,
    /// up to about [`MAX_BATCH_BYTES`].
    pub(crate) fn read(&self, epoch: u64, cursor: u64, topics: &Topics) -> Read {
        let log = self.log.read();
        let first = log.first_seq();
        if epoch != log.epoch {
            return Read::Replaced {
                epoch: log.epoch,
                first,
            };
        }
        if cursor < first {
            return Read::Lost { first };
        }
        if cursor >= log.next_seq {
            // Nothing new, or a replica that has not read up to a client's
            // own position yet: wait where the client is.
            return Read::Frames {
                bytes: None,
                count: 0,
                last: 0,
                next: cursor,
                more: false,
            };
        }
        let start = (cursor - first) as usize;
        // One pending frame is handed over as is (no copy); several are
        // joined into one buffer so they go out in one write.
        let mut single: Option<Bytes> = None;
        let mut joined: Option<BytesMut> = None;
        let mut count = 0;
        let mut size = 0;
        let mut last = 0;
        let mut next = cursor;
        for stored in log.events.range(start..) {
            if size >= MAX_BATCH_BYTES {
                break;
            }
            next = stored.seq + 1;
            if !topics.matches(&stored.topic) {
                continue;
            }
            count += 1;
            last = stored.seq;
            size += stored.frame.len();
            if let Some(buf) = joined.as_mut() {
                buf.extend_from_slice(&stored.frame);
            } else if let Some(previous) = single.take() {
                let mut buf = BytesMut::with_capacity((previous.len() + stored.frame.len()) * 2);
                buf.extend_from_slice(&previous);
                buf.extend_from_slice(&stored.frame);
                joined = Some(buf);
            } else {
                single = Some(stored.frame.clone());
            }
        }
        let more = next < log.next_seq;
        drop(log);
        let bytes = joined.map(BytesMut::freeze).or(single);
        Read::Frames {
            bytes,
            count,
            last,
            next,
            more,
        }
    }

    /// One lag check over all subscribers: a subscriber found more than
    /// `max_lag` events behind, and no further than at the previous check,
    /// at two checks in a row is disconnected. One that is catching up (a
    /// long replay) is left alone. Returns how many were cut.
    pub fn reap(&self) -> usize {
        let head = self.log.read().next_seq;
        let slots = self.slots.lock();
        let mut cut = 0;
        for (_, slot) in slots.iter() {
            let cursor = slot.cursor.load(Ordering::Relaxed);
            let stuck = slot.seen.swap(cursor, Ordering::Relaxed) == cursor;
            let lag = head.saturating_sub(cursor);
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
        self.metrics
            .dropped
            .fetch_add(cut as u64, Ordering::Relaxed);
        cut
    }

    /// Runs [`Hub::reap`] every `every` until shutdown.
    pub async fn run_reaper(self: Arc<Self>, every: Duration) {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = interval.tick() => { self.reap(); }
            }
        }
    }
}

impl Subscription {
    /// The hub this subscriber reads from.
    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Records how far this subscriber has read.
    pub(crate) fn advance(&self, next: u64) {
        self.slot.cursor.store(next, Ordering::Relaxed);
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
        let mut slots = self.hub.slots.lock();
        slots.remove(self.key);
        self.hub.subscribers.store(slots.len(), Ordering::Relaxed);
    }
}

/// One SSE frame whose `data:` is `payload` as JSON: `event` names it
/// (`None` for an ordinary event, which `onmessage` receives).
pub(crate) fn frame_json(event: Option<&str>, id: &EventId, payload: &impl Serialize) -> Bytes {
    // Serializing the project's message types (strings, numbers, enums)
    // cannot fail.
    let json = serde_json::to_string(payload).unwrap_or_default();
    let id = id.to_string();
    let mut out = String::with_capacity(json.len() + id.len() + 32);
    // The id is digits and '-', event names are constants, and JSON has no
    // raw line breaks: encoding succeeds.
    let _ = encode_into(
        &mut out,
        &Frame {
            event,
            id: Some(&id),
            data: &json,
            ..Frame::default()
        },
    );
    Bytes::from(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn options(history: u64, max_lag: u64, max_subscribers: usize) -> HubOptions {
        HubOptions {
            history,
            history_bytes: u64::MAX,
            max_lag,
            max_subscribers,
        }
    }

    fn frames(read: Read) -> (String, u64, u64) {
        match read {
            Read::Frames {
                bytes, count, next, ..
            } => (
                String::from_utf8(bytes.map(|b| b.to_vec()).unwrap_or_default()).unwrap(),
                count,
                next,
            ),
            Read::Lost { first } => panic!("lost up to {first}"),
            Read::Replaced { epoch, .. } => panic!("replaced by {epoch}"),
        }
    }

    #[test]
    fn seqs_are_contiguous_and_history_is_bounded() {
        let hub = Hub::new(options(3, 3, 10));
        for i in 0..5 {
            let (id, event) = hub.publish("t", format!("m{i}"));
            assert_eq!(id.seq, i + 1);
            assert_eq!(event.seq, i + 1);
            assert_eq!(id.epoch, hub.epoch());
        }
        let position = hub.position();
        assert_eq!((position.first, position.next), (3, 6));
        let epoch = hub.epoch();
        assert!(matches!(
            hub.read(epoch, 2, &Topics::All),
            Read::Lost { first: 3 }
        ));
        let (text, count, next) = frames(hub.read(epoch, 4, &Topics::All));
        assert_eq!((count, next), (2, 6));
        assert!(text.contains("\"message\":\"m3\"") && text.contains("\"message\":\"m4\""));
        assert!(text.starts_with(&format!("id: {}-4\ndata: {{", hub.epoch())));
    }

    #[test]
    fn topic_filter_skips_but_advances() {
        let hub = Hub::new(options(10, 10, 10));
        hub.publish("a", "1".into());
        hub.publish("b", "2".into());
        hub.publish("a", "3".into());
        let only_b = Topics::Only([Box::from("b")].into_iter().collect());
        let epoch = hub.epoch();
        let (text, count, next) = frames(hub.read(epoch, 1, &only_b));
        assert_eq!((count, next), (1, 4));
        assert!(text.contains("\"seq\":2"));
        let (_, count, next) = frames(hub.read(epoch, 4, &only_b));
        assert_eq!((count, next), (0, 4));
    }

    #[test]
    fn reaper_cuts_after_two_strikes_and_limit_holds() {
        let hub = Hub::new(options(100, 2, 3));
        let slow = hub.subscribe(1, CancellationToken::new()).unwrap();
        let fast = hub.subscribe(1, CancellationToken::new()).unwrap();
        let third = hub.subscribe(1, CancellationToken::new()).unwrap();
        assert!(hub.subscribe(1, CancellationToken::new()).is_err());
        drop(third);
        for i in 0..5 {
            hub.publish("t", i.to_string());
        }
        fast.advance(6);
        assert_eq!(hub.reap(), 0);
        assert_eq!(hub.reap(), 1);
        // One far behind but moving is left alone.
        let catching_up = hub.subscribe(1, CancellationToken::new()).unwrap();
        for cursor in 2..5 {
            catching_up.advance(cursor);
            assert_eq!(hub.reap(), 0);
        }
        assert!(!catching_up.kill().is_cancelled());
        drop(catching_up);
        assert!(slow.kill().is_cancelled());
        assert!(!fast.kill().is_cancelled());
        drop(slow);
        assert_eq!(hub.subscribers(), 1);
        assert_eq!(hub.metrics.dropped.load(Ordering::Relaxed), 1);
    }

    fn event(seq: u64, message: &str) -> ServerEvent {
        ServerEvent {
            id: Uuid::new_v4(),
            seq,
            topic: "t".into(),
            message: message.into(),
            time: now_rfc3339(),
        }
    }

    #[test]
    fn a_replica_skips_what_it_has_restarts_after_gaps_and_follows_new_epochs() {
        let hub = Hub::replica(options(10, 10, 10));
        assert!(!hub.is_loaded());
        assert_eq!(hub.epoch(), 0);
        let batch = |epoch: u64, seqs: std::ops::RangeInclusive<u64>| {
            seqs.map(move |seq| {
                (
                    EventId::new(epoch, seq),
                    event(seq, &format!("{epoch}/{seq}")),
                )
            })
        };
        assert_eq!(hub.replicate(batch(7, 4..=6)), 3);
        hub.mark_loaded();
        assert!(hub.is_loaded());
        let position = hub.position();
        assert_eq!((position.epoch, position.first, position.next), (7, 4, 7));
        // Already held: skipped.
        assert_eq!(hub.replicate(batch(7, 5..=7)), 1);
        assert_eq!(hub.last_id(), Some(EventId::new(7, 7)));
        // A gap (trimmed before it was read): the ring restarts there and a
        // reader behind it learns what it lost.
        assert_eq!(hub.replicate(batch(7, 10..=10)), 1);
        assert!(matches!(
            hub.read(7, 8, &Topics::All),
            Read::Lost { first: 10 }
        ));
        // An older epoch is ignored; a newer one replaces the ring.
        assert_eq!(hub.replicate(batch(6, 11..=11)), 0);
        assert_eq!(hub.replicate(batch(9, 1..=2)), 2);
        assert!(matches!(
            hub.read(7, 11, &Topics::All),
            Read::Replaced { epoch: 9, first: 1 }
        ));
        let (text, count, next) = frames(hub.read(9, 1, &Topics::All));
        assert_eq!((count, next), (2, 3));
        assert!(text.starts_with("id: 9-1\ndata: {"), "{text}");
        assert_eq!(hub.metrics.published.load(Ordering::Relaxed), 7);
    }
}
