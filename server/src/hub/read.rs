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

use super::index::Hidden;
use super::index::Pattern;
use super::store::{Global, Loss, Queue};
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

/// Where one read looks.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The first seq to read.
    cursor: u64,
    /// The newest seq a reader may see.
    visible: u64,
    /// The first seq whose loss is not announced yet.
    from_loss: u64,
    /// Seqs up to this one are unknown to the hub (a replica's start).
    unknown_through: u64,
}

/// What one read found: the events, where it stopped, what was lost.
#[derive(Debug)]
struct Found {
    /// The matching events, in seq order.
    events: Vec<(u64, Bytes)>,
    /// The last seq the read accounts for.
    upto: u64,
    /// Whether it stopped at the batch size with events left.
    more: bool,
    /// The subscriber's events in `from_loss..=upto` that are gone.
    loss: Option<Loss>,
}

/// The global order's events of one read, and how many seqs at or after
/// the first unannounced one are still kept (delivered or hidden).
struct GlobalTake {
    found: Found,
    kept: u64,
}

/// The sources of one read merged, and the seqs they found gone.
struct Merged {
    found: Found,
    lost: Vec<u64>,
}

/// The frames of `events` joined for one write.
fn join_frames(mut events: Vec<(u64, Bytes)>) -> Option<Bytes> {
    match events.len() {
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
    }
}

impl Subscription {
    /// Reads the subscriber's events from `cursor` on. `generation` is the
    /// hub's generation the cursor counts in; losses at or below
    /// `announced_through` were announced already and are not counted again.
    pub(crate) fn read(&self, generation: u64, cursor: u64, announced_through: u64) -> Read {
        let hub = self.hub();
        // No expired event is handed out, even between sweeps.
        hub.expire_due();
        let now = hub.generation();
        if now != generation || now % 2 == 1 {
            return self.restarted();
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
        let window = Window {
            cursor,
            visible,
            from_loss: cursor.max(announced_through.saturating_add(1)),
            unknown_through: hub.horizon.load(Ordering::Acquire).saturating_sub(1),
        };
        let found = match &self.filter {
            Filter::All => self.read_global(window),
            Filter::Some { .. } => self.read_sources(window),
        };
        if hub.generation() != generation {
            return self.restarted();
        }
        if !found.more {
            self.consumed(wakes);
        }
        Read::Batch(Batch {
            count: found.events.len() as u64,
            first: found.events.first().map(|(seq, _)| *seq),
            last: found.events.last().map_or(0, |(seq, _)| *seq),
            next: found.upto + 1,
            more: found.more,
            loss: found.loss,
            bytes: join_frames(found.events),
        })
    }

    /// The hub forgot what it held since this subscriber's place was taken.
    fn restarted(&self) -> Read {
        let hub = self.hub();
        Read::Restarted {
            epoch: hub.epoch(),
            horizon: hub.horizon.load(Ordering::Acquire),
            generation: hub.generation(),
        }
    }

    /// Every topic (but those a token hides): the global order. Seqs are
    /// contiguous, so every seq that is not kept is an event that is gone:
    /// its topic is remembered (while its tombstone is), so only the
    /// subscriber's own losses are counted.
    fn read_global(&self, window: Window) -> Found {
        let hidden = self.hidden.as_deref();
        let global = self.hub().global.read();
        let lo = window
            .from_loss
            .max(window.unknown_through.saturating_add(1));
        let GlobalTake { mut found, kept } = take_global(&global, hidden, window, lo);
        if window.from_loss <= found.upto {
            found.loss = global_losses(&global, hidden, window, lo, found.upto, kept);
        }
        found
    }

    /// Named topics and prefix patterns: each source read on its own, then
    /// merged in seq order. No source is read past the point where another
    /// stopped at its budget, so the batch holds every matching event up to
    /// its end.
    fn read_sources(&self, window: Window) -> Found {
        let Window {
            cursor, visible, ..
        } = window;
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
        let Merged { mut found, lost } = merge_sources(sources, visible);
        if window.from_loss <= found.upto {
            found.loss = self.sources_lost(window, found.upto, lost);
        }
        found
    }

    /// What the named topics and the patterns lost in
    /// `window.from_loss..=upto`; `lost` are the seqs the patterns' own
    /// reads found gone.
    fn sources_lost(&self, window: Window, upto: u64, lost: Vec<u64>) -> Option<Loss> {
        let Window {
            cursor,
            from_loss,
            unknown_through,
            ..
        } = window;
        let mut loss = None;
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
        loss
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

/// The global order's events in `window`, up to the batch size, but those
/// `hidden` hides; and how many seqs at or after `lo` are kept.
fn take_global(global: &Global, hidden: Option<&Hidden>, window: Window, lo: u64) -> GlobalTake {
    let hides = |topic: &str| hidden.is_some_and(|h| h.hides(topic));
    let mut found = Found {
        events: Vec::new(),
        upto: window.visible,
        more: false,
        loss: None,
    };
    let mut size = 0;
    // Kept events at or after `lo`, delivered or hidden: with the dropped
    // ones they account for every seq up to `upto`.
    let mut kept = 0;
    for (seq, (topic, frame)) in global.events.range(window.cursor..=window.visible) {
        if size >= MAX_BATCH_BYTES {
            found.more = true;
            found.upto = seq - 1;
            break;
        }
        if *seq >= lo {
            kept += 1;
        }
        if hides(topic) {
            continue;
        }
        size += frame.len();
        found.events.push((*seq, frame.clone()));
    }
    GlobalTake { found, kept }
}

/// What the subscriber of the global order lost in `lo..=upto` (its own
/// topics' dropped events, and seqs gone with unknown topics), and in
/// `window.from_loss..=window.unknown_through`, the seqs the hub never
/// knew. `kept` seqs of `lo..=upto` are still held.
fn global_losses(
    global: &Global,
    hidden: Option<&Hidden>,
    window: Window,
    lo: u64,
    upto: u64,
    kept: u64,
) -> Option<Loss> {
    let mut loss = None;
    // The common case, nothing missing, costs no second look.
    let complete = lo > upto || kept == upto - lo + 1;
    if !complete {
        // What was dropped, of this subscriber's topics.
        let mut dropped = 0;
        for (seq, topic) in global.dropped.range(lo..=upto) {
            dropped += 1;
            if !hidden.is_some_and(|h| h.hides(topic)) {
                loss = Loss::join(loss, Some(Loss::counted(*seq, *seq)));
            }
        }
        // Seqs neither kept nor remembered: gone, of unknown topics.
        let missing = (upto - lo + 1) - kept - dropped;
        if missing > 0 {
            let gone = if hidden.is_some() {
                Loss::unknown(lo, upto)
            } else {
                gone_between(global, lo, upto, missing)
            };
            loss = Loss::join(loss, Some(gone));
        }
    }
    if window.from_loss <= window.unknown_through {
        loss = Loss::join(
            loss,
            Some(Loss::unknown(
                window.from_loss,
                window.unknown_through.min(upto),
            )),
        );
    }
    loss
}

/// The span of the `missing` seqs of `lo..=upto` that are neither kept
/// nor remembered as dropped.
fn gone_between(global: &Global, lo: u64, upto: u64, missing: u64) -> Loss {
    let mut seen: Vec<u64> = global
        .events
        .range(lo..=upto)
        .map(|(seq, _)| *seq)
        .chain(global.dropped.range(lo..=upto).map(|(seq, _)| *seq))
        .collect();
    seen.sort_unstable();
    let mut first = None;
    let mut last = 0;
    let mut expected = lo;
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
}

/// Merges the sources' events in seq order, none past the point where one
/// stopped at its budget, cut at the batch size; and the seqs they found
/// gone.
fn merge_sources(sources: Vec<Taken>, visible: u64) -> Merged {
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
    let found = Found {
        events,
        upto,
        more,
        loss: None,
    };
    Merged { found, lost }
}
