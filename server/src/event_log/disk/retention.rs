//! What the disk log keeps, and what it can say of what it dropped.
//!
//! The policy, simpler than the hub's but never stricter: the log keeps at
//! most `--disk-history` events and `--disk-history-bytes` bytes (each
//! event's stored size plus [`EVENT_OVERHEAD`]); within those bounds each
//! topic keeps its newest `--history-per-topic` events (its floor). When
//! space is needed the oldest event beyond its topic's floor goes first,
//! else the oldest event of all. An event the hub still holds is never
//! dropped (the log then stays over its bound until the hub lets it go), so
//! with bounds at least the hub's, the disk keeps everything the memory
//! does. The bounds are checked at each commit, so the log may pass them by
//! one commit's events.
//!
//! Topics drop from their front only, so all of a topic's dropped events
//! are older than its kept ones, and one number per topic (the newest seq
//! it dropped) tells a resuming subscriber exactly whether its topics lost
//! anything after its id. A topic that holds nothing more keeps that
//! number, for at most `max(--max-live-topics, 1024)` such topics; past
//! that one number stands for all that were forgotten.
//!
//! With `--history-ttl`, events older than the TTL go too, oldest seq
//! first ([`Retention::expire`]): they are each their topic's oldest, so
//! the same number per topic tells what it lost.
//!
//! This index lives in memory (about 16 bytes per kept event, plus a few
//! per topic), is rebuilt at start from the `by_topic` and `topics` tables,
//! and is changed only by the writer, in step with the tables.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::hub::Filter;

/// Bytes counted for each kept event beside its stored value: its keys in
/// the `events` and `by_topic` tables.
pub(super) const EVENT_OVERHEAD: u64 = 64;

/// Candidates looked at for one eviction before the log gives up (all of
/// them held by the hub) and stays over its bound until the next commit.
const CANDIDATES: usize = 64;

/// One topic's kept events, oldest first, and the newest seq it dropped.
#[derive(Debug, Default)]
struct TopicEvents {
    /// Seq and counted size of each kept event.
    events: VecDeque<(u64, u64)>,
    /// The newest seq this topic dropped (0: none).
    dropped_through: u64,
}

/// What one eviction pass dropped, for the writer to apply to the tables.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    /// Events removed: topic and seq.
    pub(super) events: Vec<(Arc<str>, u64)>,
    /// Topics whose newest dropped seq changed, with the new value.
    pub(super) topics: BTreeMap<Arc<str>, u64>,
    /// Topics forgotten altogether (their numbers folded into
    /// `forgotten_through`).
    pub(super) forgotten: Vec<Arc<str>>,
}

/// The disk log's retention bookkeeping.
#[derive(Debug)]
pub(super) struct Retention {
    /// Every topic that holds events, or remembers what it dropped.
    topics: BTreeMap<Arc<str>, TopicEvents>,
    /// Topics with events, by their oldest seq: the oldest of all goes last.
    fronts: BTreeSet<(u64, Arc<str>)>,
    /// Topics with more events than their floor, by their oldest seq: their
    /// fronts go first.
    over_floor: BTreeSet<(u64, Arc<str>)>,
    /// Topics without events, by their newest dropped seq: the oldest are
    /// forgotten past the bound.
    empty: BTreeSet<(u64, Arc<str>)>,
    /// Events kept.
    pub(super) events: u64,
    /// Bytes kept (counted as above).
    pub(super) bytes: u64,
    /// The newest seq dropped of any topic.
    dropped_through: u64,
    /// The newest seq dropped of topics no longer remembered.
    pub(super) forgotten_through: u64,
    floor: usize,
    max_events: u64,
    max_bytes: u64,
    max_empty: usize,
}

impl Retention {
    /// Empty, with these bounds.
    pub(super) fn new(max_events: u64, max_bytes: u64, floor: u64, max_empty: usize) -> Self {
        Self {
            topics: BTreeMap::new(),
            fronts: BTreeSet::new(),
            over_floor: BTreeSet::new(),
            empty: BTreeSet::new(),
            events: 0,
            bytes: 0,
            dropped_through: 0,
            forgotten_through: 0,
            floor: usize::try_from(floor).unwrap_or(usize::MAX),
            max_events: max_events.max(1),
            max_bytes,
            max_empty: max_empty.max(1024),
        }
    }

    fn name(&self, topic: &str) -> Arc<str> {
        self.topics
            .get_key_value(topic)
            .map_or_else(|| Arc::from(topic), |(name, _)| name.clone())
    }

    /// Takes `name` out of the ordered sets (before a change to it).
    fn untrack(&mut self, name: &Arc<str>) {
        let Some(topic) = self.topics.get(name) else {
            return;
        };
        match topic.events.front() {
            Some(&(front, _)) => {
                self.fronts.remove(&(front, name.clone()));
                self.over_floor.remove(&(front, name.clone()));
            }
            None => {
                self.empty.remove(&(topic.dropped_through, name.clone()));
            }
        }
    }

    /// Puts `name` back into the ordered sets (after a change to it).
    fn track(&mut self, name: &Arc<str>) {
        let Some(topic) = self.topics.get(name) else {
            return;
        };
        match topic.events.front() {
            Some(&(front, _)) => {
                self.fronts.insert((front, name.clone()));
                if topic.events.len() > self.floor {
                    self.over_floor.insert((front, name.clone()));
                }
            }
            None => {
                self.empty.insert((topic.dropped_through, name.clone()));
            }
        }
    }

    /// Records a kept event (at start, or stored by a commit).
    pub(super) fn push(&mut self, topic: &str, seq: u64, size: u64) {
        let name = self.name(topic);
        self.untrack(&name);
        self.topics
            .entry(name.clone())
            .or_default()
            .events
            .push_back((seq, size));
        self.track(&name);
        self.events += 1;
        self.bytes += size;
    }

    /// Records, at start, what a topic dropped.
    pub(super) fn remember(&mut self, topic: &str, dropped_through: u64) {
        let name = self.name(topic);
        self.untrack(&name);
        self.topics.entry(name.clone()).or_default().dropped_through = dropped_through;
        self.track(&name);
        self.dropped_through = self.dropped_through.max(dropped_through);
    }

    /// Records, at start, the number standing for forgotten topics.
    pub(super) fn set_forgotten(&mut self, through: u64) {
        self.forgotten_through = through;
        self.dropped_through = self.dropped_through.max(through);
    }

    /// Drops events until the bounds hold, never one for which `held` is
    /// true (the hub still has it).
    pub(super) fn evict(&mut self, held: impl Fn(u64) -> bool) -> Dropped {
        let mut dropped = Dropped::default();
        while self.events > self.max_events || (self.bytes > self.max_bytes && self.events > 1) {
            let candidate = self
                .over_floor
                .iter()
                .chain(self.fronts.iter())
                .take(CANDIDATES)
                .find(|(seq, _)| !held(*seq))
                .map(|(_, name)| name.clone());
            let Some(name) = candidate else {
                break;
            };
            self.drop_front(&name, &mut dropped);
        }
        self.forget_empty(&mut dropped);
        dropped
    }

    /// Drops the events of `expired` (topic and seq, in seq order: each its
    /// topic's oldest, as the oldest events of all are), for their age.
    /// One that is not its topic's oldest kept event is left to the
    /// tables alone (the index does not hold it).
    pub(super) fn expire(&mut self, expired: &[(Arc<str>, u64)]) -> Dropped {
        let mut dropped = Dropped::default();
        for (topic, seq) in expired {
            let name = self.name(topic);
            let front = self
                .topics
                .get(&name)
                .and_then(|t| t.events.front())
                .map(|(front, _)| *front);
            if front == Some(*seq) {
                self.drop_front(&name, &mut dropped);
            } else {
                dropped.events.push((name, *seq));
            }
        }
        self.forget_empty(&mut dropped);
        dropped
    }

    /// Drops the oldest event of `name`, a topic with events.
    fn drop_front(&mut self, name: &Arc<str>, dropped: &mut Dropped) {
        self.untrack(name);
        let Some(topic) = self.topics.get_mut(name) else {
            return;
        };
        let Some((seq, size)) = topic.events.pop_front() else {
            self.track(name);
            return;
        };
        topic.dropped_through = seq;
        self.track(name);
        self.events = self.events.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(size);
        self.dropped_through = self.dropped_through.max(seq);
        dropped.events.push((name.clone(), seq));
        dropped.topics.insert(name.clone(), seq);
    }

    /// Forgets the topics without events past the bound, oldest first.
    fn forget_empty(&mut self, dropped: &mut Dropped) {
        while self.empty.len() > self.max_empty {
            let Some((through, name)) = self.empty.pop_first() else {
                break;
            };
            self.topics.remove(&name);
            self.forgotten_through = self.forgotten_through.max(through);
            dropped.topics.remove(&name);
            dropped.forgotten.push(name);
        }
    }

    /// The newest seq at or below which events of `filter` may have been
    /// dropped (0: none ever was).
    fn dropped_for(&self, filter: &Filter) -> u64 {
        match filter {
            Filter::All => self.dropped_through,
            Filter::Some { topics, prefixes } => {
                let named = topics.iter().map(|name| {
                    self.topics
                        .get(&**name)
                        .map_or(self.forgotten_through, |t| t.dropped_through)
                });
                let under = prefixes.iter().flat_map(|prefix| {
                    self.topics
                        .range::<str, _>((
                            std::ops::Bound::Excluded(&**prefix),
                            std::ops::Bound::Unbounded,
                        ))
                        .take_while(move |(name, _)| name.starts_with(&**prefix))
                        .map(|(_, t)| t.dropped_through)
                        .chain(std::iter::once(self.forgotten_through))
                });
                named.chain(under).max().unwrap_or(0)
            }
        }
    }

    /// What of `filter`'s events among seqs `from..=to` may be gone:
    /// `(from, last)`, or `None` when none is.
    pub(super) fn gone(&self, filter: &Filter, from: u64, to: u64) -> Option<(u64, u64)> {
        let through = self.dropped_for(filter).min(to);
        (through >= from).then_some((from, through))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::TopicPattern;

    fn filter(patterns: &[&str]) -> Filter {
        Filter::new(patterns.iter().map(|p| TopicPattern::parse(p).unwrap()))
    }

    fn seqs(dropped: &Dropped) -> Vec<u64> {
        dropped.events.iter().map(|(_, seq)| *seq).collect()
    }

    #[test]
    fn a_quiet_topic_keeps_its_floor_and_losses_are_told_per_topic() {
        let mut r = Retention::new(5, u64::MAX, 2, 0);
        r.push("quiet", 1, 10);
        r.push("quiet", 2, 10);
        for seq in 3..=8 {
            r.push("busy", seq, 10);
        }
        // Beyond the floor first: the busy topic's oldest.
        let dropped = r.evict(|_| false);
        assert_eq!(seqs(&dropped), [3, 4, 5]);
        assert_eq!(r.events, 5);
        assert_eq!(r.gone(&filter(&["quiet"]), 1, 100), None);
        assert_eq!(r.gone(&filter(&["busy"]), 1, 100), Some((1, 5)));
        assert_eq!(r.gone(&filter(&["busy"]), 6, 100), None);
        assert_eq!(r.gone(&filter(&["b.*"]), 1, 100), None);
        assert_eq!(r.gone(&Filter::All, 2, 4), Some((2, 4)));
        // Within every floor: the oldest of all; and never what the hub holds.
        let mut r = Retention::new(2, u64::MAX, 5, 0);
        for (topic, seq) in [("a", 1), ("b", 2), ("c", 3)] {
            r.push(topic, seq, 10);
        }
        assert_eq!(seqs(&r.evict(|seq| seq == 1)), [2]);
        assert_eq!(r.gone(&filter(&["a"]), 1, 9), None);
        assert_eq!(r.gone(&filter(&["b"]), 1, 9), Some((1, 2)));
    }

    #[test]
    fn expired_events_are_told_per_topic() {
        let mut r = Retention::new(100, u64::MAX, 5, 0);
        for (topic, seq) in [("a", 1), ("b", 2), ("a", 3), ("b", 4)] {
            r.push(topic, seq, 10);
        }
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let dropped = r.expire(&[(a.clone(), 1), (b.clone(), 2)]);
        assert_eq!(seqs(&dropped), [1, 2]);
        assert_eq!((r.events, r.bytes), (2, 20));
        assert_eq!(dropped.topics.get("a"), Some(&1));
        // A resume of a from after its expired event hears nothing; one
        // from before it hears of a alone.
        assert_eq!(r.gone(&filter(&["a"]), 2, 9), None);
        assert_eq!(r.gone(&filter(&["a"]), 1, 9), Some((1, 1)));
        assert_eq!(r.gone(&filter(&["b"]), 1, 9), Some((1, 2)));
        // An event the index does not hold as a topic's oldest changes
        // nothing but the tables.
        let dropped = r.expire(&[(a, 9)]);
        assert_eq!(seqs(&dropped), [9]);
        assert!(dropped.topics.is_empty());
        assert_eq!(r.events, 2);
    }

    #[test]
    fn bytes_bound_and_forgotten_topics() {
        let mut r = Retention::new(100, 25, 0, 0);
        r.max_empty = 1;
        for (topic, seq) in [("x.1", 1), ("x.2", 2), ("y", 3)] {
            r.push(topic, seq, 10);
        }
        let dropped = r.evict(|_| false);
        assert_eq!(seqs(&dropped), [1]);
        r.push("y", 4, 10);
        let dropped = r.evict(|_| false);
        assert_eq!(seqs(&dropped), [2]);
        // Two empty topics, one remembered: the older is forgotten.
        assert_eq!(dropped.forgotten.len(), 1);
        assert_eq!(r.forgotten_through, 1);
        assert_eq!(r.gone(&filter(&["x.1"]), 1, 9), Some((1, 1)));
        assert_eq!(r.gone(&filter(&["x.*"]), 1, 9), Some((1, 2)));
        assert_eq!(r.gone(&filter(&["never"]), 2, 9), None);
    }
}
