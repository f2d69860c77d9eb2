//! Per-subscriber sequence bookkeeping: which measured events arrived, how
//! often, and in which order.
//!
//! Each subscriber keeps a bitmap of the sequence numbers it received. An
//! event whose bit is already set is a duplicate; a bit still clear at the
//! end of a step is a lost event. Order is only defined per publishing
//! connection (a *lane*: seq `s` goes out on lane `s % lanes`, one request
//! after the other, while lanes run concurrently and the server may
//! interleave them), so an event arrived out of order when a later event of
//! its own lane came first. When a subscriber reconnects with the
//! `Last-Event-ID` of event `r`, the events after `r` it already holds are
//! expected once more, from the server's replay: each may arrive a second
//! time without counting as a duplicate, and until all have, the replay is
//! incomplete (a server that cannot resume never completes it, but the
//! subscriber lost nothing it had).

use hdrhistogram::Histogram;

use crate::topics::Interest;

/// What recording one event found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival, in order.
    InOrder,
    /// First arrival, after a later event.
    Reordered,
    /// Already received, and expected again from a resume's replay.
    Replayed,
    /// Already received.
    Duplicate,
}

/// The re-deliveries a resume asked for: seqs `from..from + seen.len()`.
#[derive(Debug, Clone, Default)]
struct Replay {
    from: u64,
    seen: Vec<bool>,
    left: usize,
}

/// The received-set of one subscriber.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    bits: Vec<u64>,
    /// One past the highest seq received, 0 when none.
    end: u64,
    /// Per lane, one past the highest seq received.
    lane_ends: Vec<u64>,
    /// The lowest seq from `floor` up that has not been received.
    contiguous: u64,
    /// Seqs below this are not expected (the subscriber joined later).
    floor: u64,
    /// The replay asked for by the last resume, until it is complete.
    replay: Option<Replay>,
    /// The seqs this subscriber must receive (its topics'); every seq when
    /// `None`.
    interest: Option<Interest>,
}

impl SeqTracker {
    /// A tracker expecting seqs from `floor` on, published over `lanes`
    /// connections (at least one).
    pub fn new(floor: u64, lanes: u32) -> Self {
        Self::with_interest(floor, lanes, None)
    }

    /// A tracker expecting, from `floor` on, only the seqs of `interest`
    /// (every seq when `None`).
    pub fn with_interest(floor: u64, lanes: u32, interest: Option<Interest>) -> Self {
        let mut tracker = Self {
            bits: Vec::new(),
            end: 0,
            lane_ends: vec![0; usize::try_from(lanes.max(1)).unwrap_or(1)],
            replay: None,
            contiguous: floor,
            floor,
            interest,
        };
        tracker.contiguous = tracker.next_expected(floor);
        tracker
    }

    /// The same expectations from a new floor, with nothing received.
    pub fn restarted(&self, floor: u64) -> Self {
        Self::with_interest(
            floor,
            u32::try_from(self.lane_ends.len()).unwrap_or(1),
            self.interest.clone(),
        )
    }

    /// The first expected seq at or after `seq` (`u64::MAX`: none).
    fn next_expected(&self, seq: u64) -> u64 {
        match &self.interest {
            Some(interest) => interest.next_expected(seq),
            None => seq,
        }
    }

    fn word(seq: u64) -> (usize, u64) {
        (
            usize::try_from(seq / 64).unwrap_or(usize::MAX),
            1 << (seq % 64),
        )
    }

    /// Whether `seq` has been received.
    pub fn has(&self, seq: u64) -> bool {
        let (i, bit) = Self::word(seq);
        self.bits.get(i).is_some_and(|w| w & bit != 0)
    }

    /// Records the arrival of `seq`.
    pub fn record(&mut self, seq: u64) -> Arrival {
        let (i, bit) = Self::word(seq);
        if i >= self.bits.len() {
            self.bits.resize(i + 1, 0);
        }
        if self.bits[i] & bit != 0 {
            if let Some(replay) = &mut self.replay {
                let slot = seq
                    .checked_sub(replay.from)
                    .and_then(|k| usize::try_from(k).ok())
                    .filter(|&k| k < replay.seen.len());
                if let Some(k) = slot.filter(|&k| !replay.seen[k]) {
                    replay.seen[k] = true;
                    replay.left -= 1;
                    if replay.left == 0 {
                        self.replay = None;
                    }
                    return Arrival::Replayed;
                }
            }
            return Arrival::Duplicate;
        }
        self.bits[i] |= bit;
        if self.lane_ends.is_empty() {
            self.lane_ends.push(0);
        }
        let lane = usize::try_from(seq % self.lane_ends.len() as u64).unwrap_or(0);
        let arrival = if seq + 1 < self.lane_ends[lane] {
            Arrival::Reordered
        } else {
            Arrival::InOrder
        };
        self.lane_ends[lane] = self.lane_ends[lane].max(seq + 1);
        self.end = self.end.max(seq + 1);
        while self.has(self.contiguous) {
            self.contiguous = self.next_expected(self.contiguous + 1);
        }
        arrival
    }

    /// The lowest expected seq not yet received: everything from the floor
    /// below it has arrived.
    pub fn contiguous(&self) -> u64 {
        self.contiguous
    }

    /// One past the highest seq received (0 when none).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Expects the seqs after `after` that were already received to arrive
    /// once more: called on a reconnect that asks the server to resume after
    /// `after`.
    pub fn expect_replay(&mut self, after: u64) {
        let from = after + 1;
        let seen: Vec<bool> = (from..self.end).map(|s| !self.has(s)).collect();
        let left = seen.iter().filter(|s| !**s).count();
        self.replay = (left > 0).then_some(Replay { from, seen, left });
    }

    /// Whether the replay asked for by the last resume has fully arrived.
    pub fn replay_done(&self) -> bool {
        self.replay.is_none()
    }

    /// How many seqs in `from..=to` (and not below the floor) have not been
    /// received.
    pub fn missing(&self, from: u64, to: u64) -> u64 {
        self.expected_in(from, to).filter(|&s| !self.has(s)).count() as u64
    }

    /// How many seqs in `from..=to` (not below the floor) are expected.
    pub fn expected(&self, from: u64, to: u64) -> u64 {
        self.expected_in(from, to).count() as u64
    }

    fn expected_in(&self, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        let first = self.next_expected(from.max(self.floor));
        std::iter::successors(Some(first), move |&s| {
            s.checked_add(1).map(|n| self.next_expected(n))
        })
        .take_while(move |&s| s <= to)
    }
}

/// A latency histogram in microseconds, from 1 µs to 10 minutes with three
/// significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records `micros` into `hist`, clamped to its range.
pub fn record_clamped(hist: &mut Histogram<u64>, micros: u64) {
    hist.saturating_record(micros.max(1));
}

/// A histogram as `(value, count)` pairs, for the wire.
pub fn histogram_to_pairs(hist: &Histogram<u64>) -> Vec<(u64, u64)> {
    hist.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Adds `(value, count)` pairs into `hist`.
pub fn add_pairs(hist: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(value, count) in pairs {
        // Values came from a histogram with the same bounds.
        let _ = hist.record_n(value.max(1), count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicate_reordered_missing() {
        let mut t = SeqTracker::new(0, 1);
        assert_eq!(t.record(0), Arrival::InOrder);
        assert_eq!(t.record(1), Arrival::InOrder);
        assert_eq!(t.record(3), Arrival::InOrder);
        assert_eq!(t.contiguous(), 2);
        assert_eq!(t.missing(0, 3), 1);
        assert_eq!(t.record(2), Arrival::Reordered);
        assert_eq!(t.contiguous(), 4);
        assert_eq!(t.record(2), Arrival::Duplicate);
        assert_eq!(t.missing(0, 3), 0);
        assert_eq!(t.missing(0, 200), 197);
        assert_eq!(t.record(200), Arrival::InOrder);
        assert_eq!(t.missing(0, 200), 196);
    }

    #[test]
    fn a_resume_expects_its_replay_once() {
        let mut t = SeqTracker::new(0, 1);
        for s in 0..10 {
            t.record(s);
        }
        t.expect_replay(6);
        assert!(!t.replay_done());
        assert_eq!(t.record(7), Arrival::Replayed);
        assert_eq!(t.record(7), Arrival::Duplicate);
        assert_eq!(t.record(8), Arrival::Replayed);
        assert!(!t.replay_done());
        assert_eq!(t.record(9), Arrival::Replayed);
        assert!(t.replay_done());
        assert_eq!(t.record(10), Arrival::InOrder);
        assert_eq!(t.record(9), Arrival::Duplicate);
        // Nothing held after the resume point: nothing to replay.
        t.expect_replay(10);
        assert!(t.replay_done());
        // A hole in the window is filled as an ordinary (late) arrival.
        let mut t = SeqTracker::new(0, 1);
        for s in [0, 1, 3] {
            t.record(s);
        }
        t.expect_replay(0);
        assert_eq!(t.record(1), Arrival::Replayed);
        assert_eq!(t.record(2), Arrival::Reordered);
        assert_eq!(t.record(3), Arrival::Replayed);
        assert!(t.replay_done());
        assert_eq!(t.missing(0, 3), 0);
    }

    #[test]
    fn floor_excludes_earlier_events() {
        let mut t = SeqTracker::new(5, 1);
        assert_eq!(t.contiguous(), 5);
        assert_eq!(t.missing(0, 6), 2);
        t.record(5);
        assert_eq!(t.contiguous(), 6);
    }

    #[test]
    fn order_is_judged_within_a_lane() {
        let mut t = SeqTracker::new(0, 2);
        // Lanes interleave freely...
        assert_eq!(t.record(1), Arrival::InOrder);
        assert_eq!(t.record(3), Arrival::InOrder);
        assert_eq!(t.record(0), Arrival::InOrder);
        assert_eq!(t.record(2), Arrival::InOrder);
        // ...but within lane 0, 4 after 6 is out of order.
        assert_eq!(t.record(6), Arrival::InOrder);
        assert_eq!(t.record(4), Arrival::Reordered);
        assert_eq!(t.contiguous(), 5);
    }

    #[test]
    fn only_the_topics_events_are_expected() {
        use crate::topics::{Follow, Group, Stream, TopicPlan};
        let plan = TopicPlan {
            groups: vec![Group {
                name: "users".into(),
                count: 3,
                follow: Follow::Spread {
                    prefix: "user.".into(),
                    topics: 3,
                },
            }],
            streams: vec![Stream {
                prefix: "user.".into(),
                topics: 3,
                weight: 1,
            }],
        };
        // Subscriber 1 gets seqs 1, 4, 7, ...
        let mut t = SeqTracker::with_interest(0, 2, Some(plan.interest(1)));
        assert_eq!(t.contiguous(), 1);
        assert_eq!(t.expected(0, 9), 3);
        assert_eq!(t.missing(0, 9), 3);
        assert_eq!(t.record(1), Arrival::InOrder);
        assert_eq!(t.contiguous(), 4);
        assert_eq!(t.record(7), Arrival::InOrder);
        assert_eq!(t.contiguous(), 4);
        assert_eq!(t.missing(0, 9), 1);
        assert_eq!(t.record(4), Arrival::InOrder);
        assert_eq!(t.contiguous(), 10);
        assert_eq!(t.missing(0, 9), 0);
        assert_eq!(t.restarted(5).contiguous(), 7);
    }

    #[test]
    fn histogram_pairs_round_trip() {
        let mut h = latency_histogram();
        for v in [1, 10, 10, 1000, 5_000_000] {
            record_clamped(&mut h, v);
        }
        record_clamped(&mut h, u64::MAX);
        let mut back = latency_histogram();
        add_pairs(&mut back, &histogram_to_pairs(&h));
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert_eq!(back.max(), h.max());
    }
}
