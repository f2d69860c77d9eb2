//! One subscriber's read: the frames of its events after its cursor, in
//! seq order, joined for one write, and what of its own it lost there.
//!
//! A read costs the events that match the subscriber, not the log between
//! its cursor and the end: a topic's subscriber reads that topic's queue; a
//! prefix pattern's subscriber reads the pattern's seqs; only a subscriber
//! of every topic reads the global order. Every read stops at the newest
//! visible seq, so nothing it reports (its new cursor, a `position`) passes
//! an event that a reader cannot see yet.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::index::Pattern;
use super::store::{Loss, Queue};
use super::{Hub, Subscription};
use crate::hub::Filter;

/// The most bytes handed to one subscriber in one write; a subscriber far
/// behind gets its backlog in chunks of about this size.
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;

/// What a subscriber finds after its cursor.
#[derive(Debug)]
pub(crate) enum Read {
    /// The hub forgot what it held since the subscriber's place was
    /// taken: a new epoch, or a stretch a replica could not read.
    Restarted {
        /// The epoch now.
        epoch: u64,
        /// The lowest seq the hub knows about now.
        horizon: u64,
        /// The hub's generation now.
        generation: u64,
    },
    /// Frames to write (possibly none), and what was lost among them.
    Batch(Batch),
}

/// The frames of one read.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Concatenated frames of the matching events.
    pub(crate) bytes: Option<Bytes>,
    /// How many events `bytes` holds.
    pub(crate) count: u64,
    /// The seq of the first event in `bytes`.
    pub(crate) first: Option<u64>,
    /// The seq of the last event in `bytes`.
    pub(crate) last: u64,
    /// The next seq to read.
    pub(crate) next: u64,
    /// Whether the read stopped at the batch size with events left.
    pub(crate) more: bool,
    /// The subscriber's events in `cursor..next` that are gone.
    pub(crate) loss: Option<Loss>,
}

impl Hub {
    /// The hub's generation, for a subscriber settling its start.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Events taken from one source, and where the source stopped.
#[derive(Debug, Default)]
struct Taken {
    /// The events, in seq order.
    events: Vec<(u64, Bytes)>,
    /// The last seq the source looked at when it stopped at its budget.
    stopped_at: Option<u64>,
    /// Seqs the source knows it lost (a prefix pattern's, read from its
    /// own seqs).
    lost: Vec<u64>,
}

impl Taken {
    /// Takes events from a sorted source up to about `budget` bytes.
    fn from_sorted<'a>(from: impl Iterator<Item = (u64, &'a Bytes)>) -> Taken {
        let mut taken = Taken::default();
        let mut size = 0;
        for (seq, frame) in from {
            if size >= MAX_BATCH_BYTES {
                taken.stopped_at = taken.events.last().map(|(seq, _)| *seq);
                break;
            }
            size += frame.len();
            taken.events.push((seq, frame.clone()));
        }
        taken
    }
}

impl Subscription {
    /// Reads the subscriber's events from `cursor` on. `generation` is the
    /// hub's generation the cursor counts in; losses at or below
    /// `announced_through` were announced already and are not counted again.
    pub(crate) fn read(&self, generation: u64, cursor: u64, announced_through: u64) -> Read {
        let hub = self.hub();
        let restarted = || Read::Restarted {
            epoch: hub.epoch(),
            horizon: hub.horizon.load(Ordering::Acquire),
            generation: hub.generation(),
        };
        let now = hub.generation();
        if now != generation || now % 2 == 1 {
            return restarted();
        }
        let wakes = self.wakes();
        let visible = hub.visible.load(Ordering::Acquire);
        if cursor > visible {
            self.consumed(wakes);
            return Read::Batch(Batch {
                next: cursor,
                ..Batch::default()
            });
        }
        let unknown_through = hub.horizon.load(Ordering::Acquire).saturating_sub(1);
        let from_loss = cursor.max(announced_through.saturating_add(1));
        let (mut events, upto, more, loss) = match &self.filter {
            Filter::All => self.read_global(cursor, visible, from_loss, unknown_through),
            Filter::Some { .. } => self.read_sources(cursor, visible, from_loss, unknown_through),
        };
        if hub.generation() != generation {
            return restarted();
        }
        if !more {
            self.consumed(wakes);
        }
        let count = events.len() as u64;
        let first = events.first().map(|(seq, _)| *seq);
        let last = events.last().map_or(0, |(seq, _)| *seq);
        let bytes = match events.len() {
            0 => None,
            1 => events.pop().map(|(_, frame)| frame),
            _ => {
                let size = events.iter().map(|(_, f)| f.len()).sum();
                let mut joined = BytesMut::with_capacity(size);
                for (_, frame) in &events {
                    joined.extend_from_slice(frame);
                }
                Some(joined.freeze())
            }
        };
        Read::Batch(Batch {
            bytes,
            count,
            first,
            last,
            next: upto + 1,
            more,
            loss,
        })
    }

    /// Every topic (but those a token hides): the global order. Seqs are
    /// contiguous, so every seq that is not kept is an event that is gone:
    /// its topic is remembered (while its tombstone is), so only the
    /// subscriber's own losses are counted.
    fn read_global(
        &self,
        cursor: u64,
        visible: u64,
        from_loss: u64,
        unknown_through: u64,
    ) -> (Vec<(u64, Bytes)>, u64, bool, Option<Loss>) {
        let hidden = self.hidden.as_deref();
        let hides = |topic: &str| hidden.is_some_and(|h| h.hides(topic));
        let global = self.hub().global.read();
        let lo = from_loss.max(unknown_through.saturating_add(1));
        let mut events = Vec::new();
        let mut size = 0;
        let mut more = false;
        let mut upto = visible;
        // Kept events at or after `lo`, delivered or hidden: with the
        // dropped ones they account for every seq up to `upto`.
        let mut kept = 0;
        for (seq, (topic, frame)) in global.events.range(cursor..=visible) {
            if size >= MAX_BATCH_BYTES {
                more = true;
                upto = seq - 1;
                break;
            }
            if *seq >= lo {
                kept += 1;
            }
            if hides(topic) {
                continue;
            }
            size += frame.len();
            events.push((*seq, frame.clone()));
        }
        let mut loss = None;
        if from_loss <= upto {
            // The common case, nothing missing, costs no second look.
            let complete = lo > upto || kept == upto - lo + 1;
            if !complete {
                // What was dropped, of this subscriber's topics.
                let mut counted = None;
                let mut dropped = 0;
                for (seq, topic) in global.dropped.range(lo..=upto) {
                    dropped += 1;
                    if !hides(topic) {
                        counted = Loss::join(counted, Some(Loss::counted(*seq, *seq)));
                    }
                }
                loss = counted;
                // Seqs neither kept nor remembered: gone, of unknown topics.
                let missing = (upto - lo + 1) - kept - dropped;
                if missing > 0 {
                    let gone = if hidden.is_some() {
                        Loss::unknown(lo, upto)
                    } else {
                        let mut first = None;
                        let mut last = 0;
                        let mut expected = lo;
                        let seqs = global
                            .events
                            .range(lo..=upto)
                            .map(|(seq, _)| *seq)
                            .chain(global.dropped.range(lo..=upto).map(|(seq, _)| *seq));
                        let mut seen: Vec<u64> = seqs.collect();
                        seen.sort_unstable();
                        for seq in seen.into_iter().chain(std::iter::once(upto + 1)) {
                            if seq > expected {
                                first.get_or_insert(expected);
                                last = seq - 1;
                            }
                            expected = seq + 1;
                        }
                        Loss {
                            first: first.unwrap_or(lo),
                            last,
                            count: Some(missing),
                        }
                    };
                    loss = Loss::join(loss, Some(gone));
                }
            }
            if from_loss <= unknown_through {
                loss = Loss::join(
                    loss,
                    Some(Loss::unknown(from_loss, unknown_through.min(upto))),
                );
            }
        }
        drop(global);
        (events, upto, more, loss)
    }

    /// Named topics and prefix patterns: each source read on its own, then
    /// merged in seq order. No source is read past the point where another
    /// stopped at its budget, so the batch holds every matching event up to
    /// its end.
    fn read_sources(
        &self,
        cursor: u64,
        visible: u64,
        from_loss: u64,
        unknown_through: u64,
    ) -> (Vec<(u64, Bytes)>, u64, bool, Option<Loss>) {
        let mut sources: Vec<Taken> = Vec::new();
        for (topic, _) in &self.topics {
            let queue = topic.queue.lock();
            sources.push(Taken::from_sorted(
                queue.range(cursor, visible).map(|(s, f)| (*s, f)),
            ));
        }
        for (pattern, _) in &self.patterns {
            sources.push(self.take_pattern(pattern, cursor, visible));
        }
        let mut upto = visible;
        let mut more = false;
        for source in &sources {
            if let Some(stopped) = source.stopped_at {
                upto = upto.min(stopped);
                more = true;
            }
        }
        let mut events: Vec<(u64, Bytes)> = Vec::new();
        let mut lost: Vec<u64> = Vec::new();
        for source in sources {
            events.extend(source.events.into_iter().filter(|(seq, _)| *seq <= upto));
            lost.extend(source.lost);
        }
        events.sort_unstable_by_key(|(seq, _)| *seq);
        let mut size = 0;
        if let Some(cut) = events.iter().position(|(_, frame)| {
            let over = size >= MAX_BATCH_BYTES;
            size += frame.len();
            over
        }) {
            upto = events[cut].0 - 1;
            events.truncate(cut);
            more = true;
        }
        let mut loss = None;
        if from_loss <= upto {
            for (topic, _) in &self.topics {
                let lost = topic.queue.lock().lost(from_loss, upto, unknown_through);
                loss = Loss::join(loss, lost);
            }
            for seq in lost
                .into_iter()
                .filter(|seq| (from_loss..=upto).contains(seq))
            {
                loss = Loss::join(loss, Some(Loss::counted(seq, seq)));
            }
            for (pattern, _) in &self.patterns {
                if pattern.seqs.lock().since > cursor {
                    loss = Loss::join(
                        loss,
                        self.prefix_topics_lost(pattern, from_loss, upto, unknown_through),
                    );
                }
            }
        }
        (events, upto, more, loss)
    }

    /// A prefix pattern's events: from its own seqs when they reach back
    /// to the cursor, else from every topic under the prefix (a resume from
    /// before the pattern was followed).
    fn take_pattern(&self, pattern: &Pattern, cursor: u64, visible: u64) -> Taken {
        let seqs: Vec<u64> = {
            let index = pattern.seqs.lock();
            if index.since > cursor {
                drop(index);
                return self.take_prefix_topics(pattern, cursor, visible);
            }
            let start = index.seqs.partition_point(|seq| *seq < cursor);
            index
                .seqs
                .range(start..)
                .take_while(|seq| **seq <= visible)
                .copied()
                .collect()
        };
        let global = self.hub().global.read();
        let mut taken = Taken::default();
        let mut size = 0;
        for seq in seqs {
            if size >= MAX_BATCH_BYTES {
                taken.stopped_at = Some(seq - 1);
                break;
            }
            match global.events.get(&seq) {
                Some((_, frame)) => {
                    size += frame.len();
                    taken.events.push((seq, frame.clone()));
                }
                // A matching event that is gone.
                None => taken.lost.push(seq),
            }
        }
        taken
    }

    /// Every topic under a prefix, from the registry: the slow way.
    fn take_prefix_topics(&self, pattern: &Pattern, cursor: u64, visible: u64) -> Taken {
        let sequencer = self.hub().sequencer.lock();
        let prefix: &str = &pattern.prefix;
        let mut taken = Taken::default();
        for (_, topic) in sequencer
            .store
            .topics
            .range::<str, _>((Bound::Excluded(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
        {
            let queue = topic.queue.lock();
            let one = Taken::from_sorted(queue.range(cursor, visible).map(|(s, f)| (*s, f)));
            if let Some(stopped) = one.stopped_at {
                taken.stopped_at = Some(taken.stopped_at.map_or(stopped, |s| s.min(stopped)));
            }
            taken.events.extend(one.events);
        }
        taken.events.sort_unstable_by_key(|(seq, _)| *seq);
        taken
    }

    /// What the topics under a prefix lost in `from..=upto`, from the
    /// registry (and what topics that are gone may have had).
    fn prefix_topics_lost(
        &self,
        pattern: &Pattern,
        from: u64,
        upto: u64,
        unknown_through: u64,
    ) -> Option<Loss> {
        let sequencer = self.hub().sequencer.lock();
        let prefix: &str = &pattern.prefix;
        let mut loss = None;
        for (_, topic) in sequencer
            .store
            .topics
            .range::<str, _>((Bound::Excluded(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
        {
            let queue: parking_lot::MutexGuard<'_, Queue> = topic.queue.lock();
            loss = Loss::join(loss, queue.lost(from, upto, unknown_through));
        }
        let gone = sequencer.store.gone_through_prefix(prefix).min(upto);
        if from <= gone {
            loss = Loss::join(loss, Some(Loss::unknown(from, gone)));
        }
        loss
    }
}
