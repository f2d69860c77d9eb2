//! Where a stream that asked for the last events of its selection
//! (`?last=N`) starts: the seq of the N-th newest event the hub holds that
//! the subscriber follows (hidden topics left out).
//!
//! A named topic reads its own queue; a prefix pattern reads the queues of
//! the topics under it; every topic reads the global order. The hub may
//! hold fewer than N of them: a log that reaches further is asked for the
//! rest ([`crate::event_log::EventLog::oldest_of_last`]).

use std::ops::Bound;
use std::sync::atomic::Ordering;

use super::{Filter, Subscription};

/// The most events one look for the last N reads past, in the hub and in
/// a log, so that a stream of a rare topic under a busy pattern costs a
/// bounded look.
pub(crate) const LAST_SCAN: usize = 100_000;

/// The last events of a subscriber's selection, as far as the hub holds
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastStart {
    /// The seq of the oldest of them; `None` when the hub holds none.
    pub(crate) oldest: Option<u64>,
    /// How many it holds (at most the number asked for).
    pub(crate) found: usize,
    /// The newest seq readers may see: the events were counted up to it.
    pub(crate) visible: u64,
}

impl Subscription {
    /// The hub's newest `n` events that this subscriber follows.
    pub(crate) fn last_start(&self, n: usize) -> LastStart {
        // Expired events are not among them, even between sweeps.
        self.hub().expire_due();
        let visible = self.hub().visible.load(Ordering::Acquire);
        let mut seqs = match &self.filter {
            Filter::All => self.last_of_all(n, visible),
            Filter::Some { .. } => self.last_of_sources(n, visible),
        };
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs.dedup();
        seqs.truncate(n);
        LastStart {
            oldest: seqs.last().copied(),
            found: seqs.len(),
            visible,
        }
    }

    /// The newest `n` seqs of the global order up to `visible` that are
    /// not hidden from this subscriber.
    fn last_of_all(&self, n: usize, visible: u64) -> Vec<u64> {
        let global = self.hub().global.read();
        global
            .events
            .range(..=visible)
            .rev()
            .take(LAST_SCAN)
            .filter(|(_, (topic, _))| self.follows(topic))
            .take(n)
            .map(|(seq, _)| *seq)
            .collect()
    }

    /// The newest `n` seqs of each named topic and of each topic under a
    /// followed prefix, up to `visible` (more than `n` in all: the caller
    /// keeps the newest).
    fn last_of_sources(&self, n: usize, visible: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        for (topic, _) in &self.topics {
            seqs.extend(newest_of_queue(&topic.queue.lock(), n, visible));
        }
        if self.patterns.is_empty() {
            return seqs;
        }
        let sequencer = self.hub().sequencer.lock();
        for (pattern, _) in &self.patterns {
            let prefix: &str = &pattern.prefix;
            for (name, topic) in sequencer
                .store
                .topics
                .range::<str, _>((Bound::Excluded(prefix), Bound::Unbounded))
                .take_while(|(name, _)| name.starts_with(prefix))
                .take(LAST_SCAN)
            {
                if self.follows(name) {
                    seqs.extend(newest_of_queue(&topic.queue.lock(), n, visible));
                }
            }
        }
        seqs
    }
}

/// The newest `n` seqs of a topic's queue up to `visible`.
fn newest_of_queue(queue: &super::store::Queue, n: usize, visible: u64) -> Vec<u64> {
    queue
        .events
        .iter()
        .rev()
        .map(|(seq, _)| *seq)
        .skip_while(|seq| *seq > visible)
        .take(n)
        .collect()
}
