//! What the hub keeps: every retained event once, framed, in its topic's
//! queue and in the global order, and the retention policy that decides
//! what goes when space is needed.
//!
//! - Each [`Topic`] has its own locks: a subscriber of that topic reads only
//!   its queue, and a publish elsewhere never touches it.
//! - [`Global`] holds every retained event by seq, for subscribers of every
//!   topic and of prefix patterns.
//! - [`Store`] (the registry of topics and the retention bookkeeping) lives
//!   behind the hub's sequencer lock, which publishes, replicated batches
//!   and subscription changes take, one at a time; readers never take it.
//!   The global bounds (`--history`, `--history-bytes`) always win; within
//!   them each topic keeps its last `--history-per-topic` events (its floor)
//!   while room allows. When space is needed the oldest events beyond their
//!   topic's floor go first, then the oldest events of topics no one
//!   follows, then the oldest of all.
//! - What was dropped is remembered as tombstones (seqs, per topic) so that
//!   a resume can say exactly how many events of its own topics it missed.
//!   Tombstones are bounded in number; a topic that is gone altogether (no
//!   events, no subscribers, no tombstones) leaves a summary (its last
//!   seq), and summaries are bounded too, past which one number stands for
//!   all. A resume older than what the hub can account for gets a notice
//!   with an unknown count, never silence.
//! - With `--history-ttl`, the time of each retained event is kept too,
//!   and [`Store::expire`] drops events older than the TTL the same way
//!   (tombstones and all), oldest seq first: a topic still drops only from
//!   its front, so losses stay exact per topic. An event whose time is
//!   earlier than that of an event before it (the clocks of several
//!   servers on one Redis) goes with that one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use slab::Slab;

use super::Slot;

/// Bytes counted for each retained event beside its frame: its entries in
/// the topic queue, the global order and the retention sets.
pub(crate) const EVENT_OVERHEAD: usize = 160;

/// One topic: its retained events, what it dropped, who follows it.
#[derive(Debug)]
pub(crate) struct Topic {
    /// The topic's name.
    pub(crate) name: Arc<str>,
    /// Its events and tombstones; a reader of this topic takes only this.
    pub(crate) queue: Mutex<Queue>,
    /// Subscribers that name it exactly, woken by its publishes.
    pub(crate) subs: Mutex<Slab<Arc<Slot>>>,
    /// How many subscribers name it exactly (mirrors `subs.len()`).
    pub(crate) subscribers: AtomicUsize,
    /// Events published to it since the server started.
    pub(crate) published_total: AtomicU64,
    /// The seq of its newest event, 0 before the first.
    pub(crate) last_seq: AtomicU64,
}

impl Topic {
    fn new(name: Arc<str>) -> Self {
        Self {
            name,
            queue: Mutex::new(Queue::default()),
            subs: Mutex::new(Slab::new()),
            subscribers: AtomicUsize::new(0),
            published_total: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
        }
    }
}

/// A topic's retained events, oldest first, and the seqs of the events it
/// dropped (oldest first; always older than every retained event, since a
/// topic drops from its front).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// Retained events: seq and frame.
    pub(crate) events: VecDeque<(u64, Bytes)>,
    /// Seqs of dropped events still remembered.
    pub(crate) tombstones: VecDeque<u64>,
    /// The newest seq among dropped events no longer remembered (0: none):
    /// at or below it the count of losses is unknown.
    pub(crate) forgotten_through: u64,
}

/// Events a subscriber missed in a range of seqs, as far as the hub knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loss {
    /// The first lost seq (or the first that may be lost).
    pub(crate) first: u64,
    /// The last lost seq (or the last that may be lost).
    pub(crate) last: u64,
    /// How many, when known.
    pub(crate) count: Option<u64>,
}

impl Loss {
    /// Joins the losses of two disjoint sources.
    pub(crate) fn join(a: Option<Loss>, b: Option<Loss>) -> Option<Loss> {
        match (a, b) {
            (None, x) | (x, None) => x,
            (Some(a), Some(b)) => Some(Loss {
                first: a.first.min(b.first),
                last: a.last.max(b.last),
                count: a.count.zip(b.count).map(|(x, y)| x + y),
            }),
        }
    }

    /// A counted loss of every seq in `first..=last`.
    pub(crate) fn counted(first: u64, last: u64) -> Loss {
        Loss {
            first,
            last,
            count: Some(last - first + 1),
        }
    }

    /// An unknown loss of whatever lies in `from..=through`.
    pub(crate) fn unknown(from: u64, through: u64) -> Loss {
        Loss {
            first: from,
            last: through,
            count: None,
        }
    }
}

impl Queue {
    /// Events with seqs in `from..=upto`.
    pub(crate) fn range(&self, from: u64, upto: u64) -> impl Iterator<Item = &(u64, Bytes)> {
        let start = self.events.partition_point(|(seq, _)| *seq < from);
        self.events
            .range(start..)
            .take_while(move |(seq, _)| *seq <= upto)
    }

    /// What this topic dropped among seqs `from..=upto`. `unknown_through`
    /// is the newest seq below which the hub as a whole may have lost
    /// events it cannot count (a restart of its knowledge).
    pub(crate) fn lost(&self, from: u64, upto: u64, unknown_through: u64) -> Option<Loss> {
        let start = self.tombstones.partition_point(|seq| *seq < from);
        let end = self.tombstones.partition_point(|seq| *seq <= upto);
        let known = (end > start).then(|| Loss {
            first: self.tombstones[start],
            last: self.tombstones[end - 1],
            count: Some((end - start) as u64),
        });
        let unknown = self.forgotten_through.max(unknown_through).min(upto);
        if from <= unknown {
            return Some(Loss::unknown(
                from,
                known.map_or(unknown, |k| k.last.max(unknown)),
            ));
        }
        known
    }
}

/// Every retained event, by seq: the reading order of subscribers that
/// follow every topic or a prefix pattern; and the topic of every dropped
/// event still remembered, so that such a subscriber's losses are counted
/// by topic too.
#[derive(Debug, Default)]
pub(crate) struct Global {
    /// Seq → (topic, frame).
    pub(crate) events: BTreeMap<u64, (Arc<str>, Bytes)>,
    /// Seq → topic, of events dropped (the tombstones, in seq order).
    pub(crate) dropped: BTreeMap<u64, Arc<str>>,
}

/// How big the store may grow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// `--history`.
    pub(crate) max_events: u64,
    /// `--history-bytes`.
    pub(crate) max_bytes: u64,
    /// `--history-per-topic`.
    pub(crate) floor: u64,
    /// `--max-live-topics`.
    pub(crate) max_topics: u64,
    /// `--history-ttl`: events older than this go.
    pub(crate) ttl: Option<Duration>,
}

/// What one expiry pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Expiry {
    /// Events dropped for their age.
    pub(crate) expired: u64,
    /// Whether the pass stopped at its limit with expired events left.
    pub(crate) more: bool,
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A publish to a new topic was refused: every topic is followed and the
/// live-topic limit is reached.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server holds its maximum of {0} live topics, all of them followed")]
pub struct TopicLimit(pub usize);

/// The registry of topics and the retention bookkeeping, behind the hub's
/// sequencer lock.
#[derive(Debug)]
pub(crate) struct Store {
    /// Most events kept.
    max_events: usize,
    /// Most bytes kept (frames plus [`EVENT_OVERHEAD`] each).
    max_bytes: usize,
    /// Events each topic keeps while room allows.
    floor: usize,
    /// Most live topics (holding events or followed).
    max_topics: usize,
    /// Most tombstones remembered.
    max_tombstones: usize,
    /// Most summaries of topics that are gone.
    max_summaries: usize,
    /// Every topic that holds events, subscribers or tombstones, by name.
    pub(crate) topics: BTreeMap<Arc<str>, Arc<Topic>>,
    /// Prefix patterns someone follows (with `.` at the end), with how many
    /// subscribers follow each: their topics count as followed.
    patterns: BTreeMap<Arc<str>, usize>,
    /// Topics that hold events or are followed.
    pub(crate) live_topics: usize,
    /// Events retained now.
    pub(crate) events: usize,
    /// Bytes retained now.
    pub(crate) bytes: usize,
    /// Seqs of events beyond their topic's floor, oldest first: the first
    /// to go.
    excess: BTreeMap<u64, Arc<Topic>>,
    /// Topics no one follows that hold events, by their oldest seq: next
    /// to go.
    idle: BTreeMap<(u64, Arc<str>), Arc<Topic>>,
    /// The same topics by their newest seq: the least recently published
    /// goes when a new topic would pass `--max-live-topics`.
    lru: BTreeMap<(u64, Arc<str>), Arc<Topic>>,
    /// Every tombstone, in the order it was made, to forget the oldest.
    tombstone_order: VecDeque<(u64, Arc<Topic>)>,
    /// Last seq of topics that are gone, by name.
    summaries: BTreeMap<Arc<str>, u64>,
    /// The same, by last seq, to drop the oldest.
    summary_order: BTreeSet<(u64, Arc<str>)>,
    /// The newest last seq among summaries dropped: a topic the hub knows
    /// nothing of may have lost events up to it.
    summaries_forgotten_through: u64,
    /// Below this seq (of the current epoch) the hub knows nothing: its
    /// knowledge began there (1 for a log that began here; a replica that
    /// loaded a stream, or skipped a trimmed stretch, starts later).
    pub(crate) horizon: u64,
    /// Topics evicted whole to make room for a new one.
    pub(crate) topic_evictions: u64,
    /// `--history-ttl`.
    ttl: Option<Duration>,
    /// Seq → time (ms since the Unix epoch) of every retained event, kept
    /// only with a TTL.
    times: BTreeMap<u64, u64>,
}

impl Store {
    pub(crate) fn new(bounds: Bounds) -> Self {
        let max_events = to_usize(bounds.max_events).max(1);
        Self {
            max_events,
            max_bytes: to_usize(bounds.max_bytes),
            floor: to_usize(bounds.floor),
            max_topics: to_usize(bounds.max_topics).max(1),
            max_tombstones: max_events.saturating_mul(16).max(1024),
            max_summaries: to_usize(bounds.max_topics).max(1024),
            topics: BTreeMap::new(),
            patterns: BTreeMap::new(),
            live_topics: 0,
            events: 0,
            bytes: 0,
            excess: BTreeMap::new(),
            idle: BTreeMap::new(),
            lru: BTreeMap::new(),
            tombstone_order: VecDeque::new(),
            summaries: BTreeMap::new(),
            summary_order: BTreeSet::new(),
            summaries_forgotten_through: 0,
            horizon: 1,
            topic_evictions: 0,
            ttl: bounds.ttl,
            times: BTreeMap::new(),
        }
    }

    /// Whether someone follows `topic`: by name, or by a prefix pattern.
    fn followed(&self, topic: &Topic) -> bool {
        topic.subscribers.load(Ordering::Relaxed) > 0 || self.pattern_follows(&topic.name)
    }

    /// Whether a followed prefix pattern covers `name`.
    fn pattern_follows(&self, name: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        super::index::prefixes_of(name).any(|prefix| self.patterns.contains_key(prefix))
    }

    /// Whether `topic` counts toward `--max-live-topics`.
    fn is_live(&self, topic: &Topic, queue: &Queue) -> bool {
        !queue.events.is_empty() || self.followed(topic)
    }

    /// The topic named `name`, created when missing.
    ///
    /// # Errors
    /// [`TopicLimit`] when creating it would pass `--max-live-topics` and no
    /// topic no one follows can be evicted to make room.
    pub(crate) fn topic(
        &mut self,
        name: &str,
        global: &RwLock<Global>,
    ) -> Result<Arc<Topic>, TopicLimit> {
        let existing = self.topics.get(name).cloned();
        let live = existing.as_ref().is_some_and(|topic| {
            let queue = topic.queue.lock();
            self.is_live(topic, &queue)
        });
        if live {
            return Ok(existing.unwrap_or_else(|| self.create(name)));
        }
        // A new topic, or one that holds only tombstones, is about to count
        // toward the limit.
        if self.live_topics >= self.max_topics {
            // The least recently published topic that no one follows goes,
            // with its events.
            let Some((_, victim)) = self.lru.first_key_value() else {
                return Err(TopicLimit(self.max_topics));
            };
            let victim = victim.clone();
            while !victim.queue.lock().events.is_empty() {
                self.evict_front(&victim, global);
            }
            self.topic_evictions += 1;
        }
        Ok(existing.unwrap_or_else(|| self.create(name)))
    }

    /// The topic named `name`, created when missing whatever the limit (a
    /// replica keeps every topic its shared log sends).
    pub(crate) fn topic_forced(&mut self, name: &str) -> Arc<Topic> {
        if let Some(topic) = self.topics.get(name) {
            return topic.clone();
        }
        self.create(name)
    }

    /// A new topic in the registry. Every topic there is tracked in the
    /// retention sets according to what it holds and whether it is
    /// followed.
    fn create(&mut self, name: &str) -> Arc<Topic> {
        let name: Arc<str> = Arc::from(name);
        let topic = Arc::new(Topic::new(name.clone()));
        {
            let mut queue = topic.queue.lock();
            // What an earlier topic of this name lost is unknown now.
            queue.forgotten_through = self.gone_through(&name);
            let followed = self.followed(&topic);
            self.track(&topic, &queue, followed);
        }
        self.topics.insert(name, topic.clone());
        topic
    }

    /// Takes `topic` out of the sets that depend on whether it is followed
    /// and what it holds; [`Store::track`] puts it back after a change.
    fn untrack(&mut self, topic: &Arc<Topic>, queue: &Queue, followed: bool) {
        if self.is_live_with(queue, followed) {
            self.live_topics -= 1;
        }
        if !followed {
            if let (Some((oldest, _)), Some((newest, _))) =
                (queue.events.front(), queue.events.back())
            {
                self.idle.remove(&(*oldest, topic.name.clone()));
                self.lru.remove(&(*newest, topic.name.clone()));
            }
        }
    }

    fn track(&mut self, topic: &Arc<Topic>, queue: &Queue, followed: bool) {
        if self.is_live_with(queue, followed) {
            self.live_topics += 1;
        }
        if !followed {
            if let (Some((oldest, _)), Some((newest, _))) =
                (queue.events.front(), queue.events.back())
            {
                self.idle
                    .insert((*oldest, topic.name.clone()), topic.clone());
                self.lru
                    .insert((*newest, topic.name.clone()), topic.clone());
            }
        }
    }

    fn is_live_with(&self, queue: &Queue, followed: bool) -> bool {
        followed || !queue.events.is_empty()
    }

    /// Records one more exact subscriber of `topic` (`delta` +1) or one
    /// fewer (-1), keeping the retention sets in step.
    pub(crate) fn follow(&mut self, topic: &Arc<Topic>, delta: isize) {
        let queue = topic.queue.lock();
        let before = self.followed(topic);
        self.untrack(topic, &queue, before);
        if delta > 0 {
            topic.subscribers.fetch_add(1, Ordering::Relaxed);
        } else {
            topic.subscribers.fetch_sub(1, Ordering::Relaxed);
        }
        let after = self.followed(topic);
        self.track(topic, &queue, after);
        drop(queue);
        self.remove_if_empty(topic);
    }

    /// Records one more subscriber of the prefix pattern `prefix` (+1) or
    /// one fewer (-1); the first and the last change whether its topics
    /// count as followed.
    pub(crate) fn follow_prefix(&mut self, prefix: &Arc<str>, delta: isize) {
        let now = self.patterns.get(prefix).copied().unwrap_or(0);
        let next = now.saturating_add_signed(delta);
        let flips = (now == 0) != (next == 0);
        let affected: Vec<Arc<Topic>> = if flips {
            self.topics
                .range::<str, _>((
                    std::ops::Bound::Excluded(&**prefix),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(name, _)| name.starts_with(&**prefix))
                .map(|(_, topic)| topic.clone())
                .collect()
        } else {
            Vec::new()
        };
        let before: Vec<bool> = affected.iter().map(|t| self.followed(t)).collect();
        for (topic, followed) in affected.iter().zip(&before) {
            let queue = topic.queue.lock();
            self.untrack(topic, &queue, *followed);
        }
        if next == 0 {
            self.patterns.remove(prefix);
        } else {
            self.patterns.insert(prefix.clone(), next);
        }
        for topic in &affected {
            let followed = self.followed(topic);
            let queue = topic.queue.lock();
            self.track(topic, &queue, followed);
        }
        for topic in &affected {
            self.remove_if_empty(topic);
        }
    }

    /// Adds the event `seq` of `time_ms` (its time, in ms since the Unix
    /// epoch), framed as `frame`, to `topic` and the global order, then
    /// evicts until the bounds hold again.
    pub(crate) fn append(
        &mut self,
        topic: &Arc<Topic>,
        (seq, time_ms): (u64, u64),
        frame: Bytes,
        global: &RwLock<Global>,
    ) {
        if self.ttl.is_some() {
            self.times.insert(seq, time_ms);
        }
        let size = frame.len() + EVENT_OVERHEAD;
        let followed = self.followed(topic);
        {
            let mut queue = topic.queue.lock();
            self.untrack(topic, &queue, followed);
            queue.events.push_back((seq, frame.clone()));
            // The event `floor` places back is now beyond the floor.
            if queue.events.len() > self.floor {
                let (beyond, _) = queue.events[queue.events.len() - 1 - self.floor];
                self.excess.insert(beyond, topic.clone());
            }
            self.track(topic, &queue, followed);
        }
        global
            .write()
            .events
            .insert(seq, (topic.name.clone(), frame));
        topic.last_seq.store(seq, Ordering::Release);
        topic.published_total.fetch_add(1, Ordering::Relaxed);
        self.events += 1;
        self.bytes += size;
        while self.events > self.max_events || (self.bytes > self.max_bytes && self.events > 1) {
            if !self.evict_one(global) {
                break;
            }
        }
    }

    /// Evicts one event: beyond a floor, else of a topic no one follows,
    /// else the oldest of all. Returns whether one was evicted.
    fn evict_one(&mut self, global: &RwLock<Global>) -> bool {
        let topic = if let Some((_, topic)) = self.excess.first_key_value() {
            topic.clone()
        } else if let Some((_, topic)) = self.idle.first_key_value() {
            topic.clone()
        } else {
            let oldest = global
                .read()
                .events
                .first_key_value()
                .map(|(_, (name, _))| name.clone());
            match oldest.and_then(|name| self.topics.get(&name).cloned()) {
                Some(topic) => topic,
                None => return false,
            }
        };
        self.evict_front(&topic, global);
        true
    }

    /// Drops `topic`'s oldest event, leaving a tombstone.
    fn evict_front(&mut self, topic: &Arc<Topic>, global: &RwLock<Global>) {
        let followed = self.followed(topic);
        let mut queue = topic.queue.lock();
        self.untrack(topic, &queue, followed);
        let Some((seq, frame)) = queue.events.pop_front() else {
            self.track(topic, &queue, followed);
            return;
        };
        self.excess.remove(&seq);
        self.times.remove(&seq);
        queue.tombstones.push_back(seq);
        self.tombstone_order.push_back((seq, topic.clone()));
        self.track(topic, &queue, followed);
        drop(queue);
        {
            let mut global = global.write();
            global.events.remove(&seq);
            global.dropped.insert(seq, topic.name.clone());
        }
        self.events -= 1;
        self.bytes -= frame.len() + EVENT_OVERHEAD;
        self.forget_tombstones(global);
        self.remove_if_empty(topic);
    }

    /// Forgets the oldest tombstones past the bound.
    fn forget_tombstones(&mut self, global: &RwLock<Global>) {
        while self.tombstone_order.len() > self.max_tombstones {
            let Some((seq, topic)) = self.tombstone_order.pop_front() else {
                return;
            };
            global.write().dropped.remove(&seq);
            {
                let mut queue = topic.queue.lock();
                if queue.tombstones.front() == Some(&seq) {
                    queue.tombstones.pop_front();
                    queue.forgotten_through = queue.forgotten_through.max(seq);
                }
            }
            self.remove_if_empty(&topic);
        }
    }

    /// Takes `topic` out of the registry when it holds nothing and no one
    /// follows it, leaving its summary.
    fn remove_if_empty(&mut self, topic: &Arc<Topic>) {
        let empty = {
            let queue = topic.queue.lock();
            queue.events.is_empty()
                && queue.tombstones.is_empty()
                && topic.subscribers.load(Ordering::Relaxed) == 0
        };
        if !empty {
            return;
        }
        if self
            .topics
            .get(&topic.name)
            .is_some_and(|t| Arc::ptr_eq(t, topic))
        {
            let followed = self.followed(topic);
            self.untrack(topic, &topic.queue.lock(), followed);
            self.topics.remove(&topic.name);
            let last = topic.last_seq.load(Ordering::Relaxed);
            if last > 0 {
                self.summarize(topic.name.clone(), last);
            }
        }
    }

    fn summarize(&mut self, name: Arc<str>, last: u64) {
        if let Some(old) = self.summaries.insert(name.clone(), last) {
            self.summary_order.remove(&(old, name.clone()));
        }
        self.summary_order.insert((last, name));
        while self.summary_order.len() > self.max_summaries {
            if let Some((last, name)) = self.summary_order.pop_first() {
                self.summaries.remove(&name);
                self.summaries_forgotten_through = self.summaries_forgotten_through.max(last);
            }
        }
    }

    /// What the hub can say of a topic it no longer holds: the newest seq
    /// at or below which it may have had events that are gone.
    pub(crate) fn gone_through(&self, name: &str) -> u64 {
        let summary = self.summaries.get(name).copied().unwrap_or(0);
        summary.max(self.summaries_forgotten_through)
    }

    /// The newest seq at or below which topics matching `prefix` that the
    /// hub no longer holds may have had events.
    pub(crate) fn gone_through_prefix(&self, prefix: &str) -> u64 {
        let summary = self
            .summaries
            .range::<str, _>((
                std::ops::Bound::Excluded(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(_, last)| *last)
            .max()
            .unwrap_or(0);
        summary.max(self.summaries_forgotten_through)
    }

    /// Forgets every event and what is known of them: the log begins anew
    /// at `horizon` (a new epoch, or a stretch a replica could not read).
    pub(crate) fn restart(&mut self, horizon: u64, global: &RwLock<Global>) {
        {
            let mut global = global.write();
            global.events.clear();
            global.dropped.clear();
        }
        for topic in self.topics.values() {
            let mut queue = topic.queue.lock();
            queue.events.clear();
            queue.tombstones.clear();
            queue.forgotten_through = 0;
        }
        self.excess.clear();
        self.times.clear();
        self.idle.clear();
        self.lru.clear();
        self.tombstone_order.clear();
        self.summaries.clear();
        self.summary_order.clear();
        self.summaries_forgotten_through = 0;
        self.events = 0;
        self.bytes = 0;
        self.horizon = horizon;
        let topics: Vec<Arc<Topic>> = self.topics.values().cloned().collect();
        self.live_topics = topics.iter().filter(|t| self.followed(t)).count();
        for topic in &topics {
            self.remove_if_empty(topic);
        }
    }

    /// When the oldest retained event expires (ms since the Unix epoch);
    /// `u64::MAX` without a TTL or without events.
    pub(crate) fn due_ms(&self) -> u64 {
        match (self.ttl, self.times.first_key_value()) {
            (Some(ttl), Some((_, time))) => {
                let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                time.saturating_add(ttl)
            }
            _ => u64::MAX,
        }
    }

    /// Drops, oldest seq first, the events older than the TTL at `now_ms`,
    /// at most `limit` of them, leaving tombstones as any eviction does:
    /// stops at the first event that is not expired.
    pub(crate) fn expire(&mut self, now_ms: u64, limit: usize, global: &RwLock<Global>) -> Expiry {
        let mut expiry = Expiry::default();
        while self.due_ms() <= now_ms {
            if expiry.expired >= limit as u64 {
                expiry.more = true;
                break;
            }
            let Some((&seq, _)) = self.times.first_key_value() else {
                break;
            };
            let name = global.read().events.get(&seq).map(|(name, _)| name.clone());
            match name.and_then(|name| self.topics.get(&name).cloned()) {
                // The oldest retained event is its topic's front.
                Some(topic) => self.evict_front(&topic, global),
                // Not retained (cannot happen: kept in step): forget it.
                None => {
                    self.times.remove(&seq);
                    continue;
                }
            }
            expiry.expired += 1;
        }
        expiry
    }

    /// Topics after `after` (by name), at most `limit`.
    pub(crate) fn list(
        &self,
        after: Option<&str>,
        limit: usize,
        readable: impl Fn(&str) -> bool,
    ) -> Vec<Arc<Topic>> {
        let start = match after {
            Some(after) => std::ops::Bound::Excluded(after),
            None => std::ops::Bound::Unbounded,
        };
        self.topics
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .map(|(_, topic)| topic)
            .filter(|topic| readable(&topic.name))
            .filter(|topic| {
                let queue = topic.queue.lock();
                self.is_live(topic, &queue)
            })
            .take(limit)
            .cloned()
            .collect()
    }
}
