//! Bulk arrival: the sign of a proxy (or CDN, or load balancer) that buffers
//! the event stream. Events the server sent over seconds arrive together,
//! after a silence, because something in between held them and let them go
//! at once (when its buffer filled, or the connection ended).
//!
//! Events that arrive together are a *group*: each within [`GAP_MS`] of the
//! one before, all within [`MAX_SPREAD_MS`]. A group is a bulk arrival when
//! it has at least [`MIN_EVENTS`] events that the server sent at least
//! [`MIN_HELD_MS`] apart (first to last) and came after at least
//! [`MIN_SILENCE_MS`] without events. A burst that the server published at
//! once is not one (its events were sent together), nor is a steady fast
//! stream (events arrive as spread as they were sent). The caller leaves
//! out the events replayed at a reconnect, which were sent before the
//! connection opened and arrive together by design.

/// Arrivals closer than this belong to the same group (a release comes in
/// one read and one task; a busy machine may still spread its events a
/// little).
pub const GAP_MS: f64 = 25.0;
/// A group spans at most this; a longer run of arrivals is a steady stream.
pub const MAX_SPREAD_MS: f64 = 100.0;
/// A bulk arrival has at least this many events…
pub const MIN_EVENTS: u32 = 10;
/// … sent at least this far apart by the server…
pub const MIN_HELD_MS: f64 = 500.0;
/// … after at least this long without an event.
pub const MIN_SILENCE_MS: f64 = 250.0;

/// One bulk arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bulk {
    /// When its first event arrived (page clock, ms).
    pub at_ms: f64,
    /// How many events arrived together.
    pub events: u32,
    /// How far apart the server sent the first and the last of them.
    pub sent_over_ms: f64,
    /// How long nothing had arrived before.
    pub silence_ms: f64,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_at: f64,
    last_at: f64,
    events: u32,
    first_sent: f64,
    last_sent: f64,
    silence_ms: f64,
}

/// Watches arrivals for bulk arrivals.
#[derive(Debug, Clone, Default)]
pub struct BulkDetector {
    group: Option<Group>,
    last_at: Option<f64>,
}

impl BulkDetector {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// An event sent at `sent_ms` arrived at `at_ms` (both in the page's
    /// clock; the offset cancels out, only differences count). Returns the
    /// group that this arrival ended, when it was a bulk arrival.
    pub fn arrived(&mut self, at_ms: f64, sent_ms: f64) -> Option<Bulk> {
        let silence_ms = self.last_at.map_or(f64::INFINITY, |last| at_ms - last);
        self.last_at = Some(at_ms);
        if let Some(group) = &mut self.group {
            if at_ms - group.last_at <= GAP_MS && at_ms - group.first_at <= MAX_SPREAD_MS {
                group.last_at = at_ms;
                group.events += 1;
                group.first_sent = group.first_sent.min(sent_ms);
                group.last_sent = group.last_sent.max(sent_ms);
                return None;
            }
        }
        let ended = self.group.take();
        self.group = Some(Group {
            first_at: at_ms,
            last_at: at_ms,
            events: 1,
            first_sent: sent_ms,
            last_sent: sent_ms,
            silence_ms,
        });
        ended.and_then(judge)
    }

    /// Ends a group that nothing has joined for [`GAP_MS`] by `now_ms` (the
    /// stream went quiet after it); returns it when it was a bulk arrival.
    pub fn quiet(&mut self, now_ms: f64) -> Option<Bulk> {
        if self.group.is_some_and(|g| now_ms - g.last_at > GAP_MS) {
            return self.group.take().and_then(judge);
        }
        None
    }

    /// Forgets the current group and the last arrival (a new connection).
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

fn judge(group: Group) -> Option<Bulk> {
    let sent_over_ms = group.last_sent - group.first_sent;
    (group.events >= MIN_EVENTS
        && sent_over_ms >= MIN_HELD_MS
        && group.silence_ms >= MIN_SILENCE_MS)
        .then_some(Bulk {
            at_ms: group.first_at,
            events: group.events,
            sent_over_ms,
            silence_ms: group.silence_ms,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `(arrived, sent)` pairs, then a quiet moment; returns what was
    /// found.
    fn run(arrivals: impl IntoIterator<Item = (f64, f64)>) -> Vec<Bulk> {
        let mut detector = BulkDetector::new();
        let mut found = Vec::new();
        let mut last = 0.0;
        for (at, sent) in arrivals {
            found.extend(detector.arrived(at, sent));
            last = at;
        }
        found.extend(detector.quiet(last + 1000.0));
        found
    }

    #[test]
    fn events_held_back_and_let_go_at_once_are_a_bulk_arrival() {
        // The ticker sends every 50 ms; a proxy holds 2 s of it, then
        // releases it in one read: 40 events within a few ms.
        let steady = (0..20).map(|i| (f64::from(i) * 50.0 + 3.0, f64::from(i) * 50.0));
        let held = (20..60).map(|i| (3000.0 + f64::from(i - 20) * 0.1, f64::from(i) * 50.0));
        let found = run(steady.chain(held));
        assert_eq!(found.len(), 1, "{found:?}");
        let bulk = found[0];
        assert_eq!(bulk.events, 40);
        assert_eq!(bulk.sent_over_ms, 39.0 * 50.0);
        assert_eq!(bulk.at_ms, 3000.0);
        assert_eq!(bulk.silence_ms, 3000.0 - (19.0 * 50.0 + 3.0));
    }

    #[test]
    fn a_bulk_arrival_is_found_when_the_next_event_comes_too() {
        let mut detector = BulkDetector::new();
        for i in 0..12 {
            assert_eq!(
                detector.arrived(5000.0 + f64::from(i) * 0.5, f64::from(i) * 100.0),
                None
            );
        }
        let found = detector.arrived(5400.0, 1300.0).expect("the group ended");
        assert_eq!(found.events, 12);
    }

    #[test]
    fn a_burst_the_server_sent_at_once_is_not_one() {
        // 100 events published together arrive together: no buffering.
        assert!(run((0..100).map(|i| (2000.0 + f64::from(i) * 0.05, 1990.0))).is_empty());
    }

    #[test]
    fn a_steady_fast_stream_is_not_one() {
        // 1,000 events/s for 5 s, each a few ms late.
        assert!(run((0..5000).map(|i| (f64::from(i) + 4.0, f64::from(i)))).is_empty());
        // The same at 100 events/s with jitter.
        assert!(run((0..500).map(|i| {
            let jitter = f64::from(i % 7);
            (f64::from(i) * 10.0 + jitter, f64::from(i) * 10.0)
        }))
        .is_empty());
    }

    #[test]
    fn a_few_late_events_or_no_silence_are_not_one() {
        // Nine held events: too few to tell.
        let few = (0..9).map(|i| (3000.0 + f64::from(i) * 0.1, f64::from(i) * 100.0));
        assert!(run(few).is_empty());
        // Events arriving right after others: a busy stream catching up,
        // not a release after a silence.
        let mut detector = BulkDetector::new();
        let mut found = Vec::new();
        for i in 0..40 {
            found.extend(
                detector.arrived(1000.0 + f64::from(i) * 20.0, 1000.0 + f64::from(i) * 20.0),
            );
        }
        for i in 0..40 {
            found.extend(detector.arrived(1800.0 + f64::from(i) * 0.1, f64::from(i) * 50.0));
        }
        found.extend(detector.quiet(5000.0));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_reset_forgets_the_silence() {
        let mut detector = BulkDetector::new();
        detector.arrived(0.0, 0.0);
        detector.reset();
        // The first group after a reset follows "no event yet": any silence.
        for i in 0..20 {
            detector.arrived(100.0 + f64::from(i) * 0.1, f64::from(i) * 100.0);
        }
        assert_eq!(detector.quiet(200.0).map(|b| b.events), Some(20));
        assert_eq!(detector.quiet(300.0), None);
    }
}
