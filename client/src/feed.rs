//! What the page knows about the stream, kept apart from the browser so it can
//! be tested on any machine: the bounded list of rows, the duplicate check
//! that makes reconnects invisible, and the events-per-second meter.

use std::collections::VecDeque;
use std::sync::Arc;

use shared::{EventId, ResetNotice, ServerEvent};

/// How many rows the page keeps (and shows); older rows are dropped.
pub const MAX_ROWS: usize = 500;

/// One row of the message list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Unique within the page's lifetime, in arrival order: the list's key.
    pub key: u64,
    /// What the row shows.
    pub kind: RowKind,
}

/// The two kinds of row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowKind {
    /// An ordinary event.
    Event {
        /// Its SSE id (`<epoch>-<seq>`).
        id: EventId,
        /// The event itself.
        event: ServerEvent,
    },
    /// The server could not resume exactly: events were missed.
    Reset {
        /// The notice's SSE id, when it had a well-formed one.
        id: Option<EventId>,
        /// What was missed and where the stream goes on.
        notice: ResetNotice,
    },
}

/// The bounded list of rows plus the position reached in the stream.
///
/// Events arrive in increasing `seq` order within one server run (`epoch`);
/// after a reconnect the server replays what followed the last id the browser
/// saw, so an event at or before that position is a duplicate and is dropped.
#[derive(Debug, Clone)]
pub struct Feed {
    rows: VecDeque<Arc<Row>>,
    capacity: usize,
    next_key: u64,
    last: Option<EventId>,
    duplicates: u64,
}

impl Feed {
    /// An empty feed that keeps at most `capacity` rows (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            rows: VecDeque::with_capacity(capacity.clamp(1, MAX_ROWS)),
            capacity: capacity.max(1),
            next_key: 0,
            last: None,
            duplicates: 0,
        }
    }

    /// Adds an event received with SSE id `id`. When the id is missing or
    /// malformed, the event's own `seq` in the current run stands in for it.
    ///
    /// Returns `false` (and keeps nothing) when the event is one already
    /// seen: same run, `seq` not past the position reached.
    pub fn push_event(&mut self, id: Option<EventId>, event: ServerEvent) -> bool {
        let id = id.unwrap_or_else(|| EventId::new(self.last.map_or(0, |l| l.epoch), event.seq));
        if self
            .last
            .is_some_and(|last| last.epoch == id.epoch && id.seq <= last.seq)
        {
            self.duplicates += 1;
            return false;
        }
        self.advance(id);
        self.push(RowKind::Event { id, event });
        true
    }

    /// Adds a reset notice; its id (if any) becomes the position reached.
    pub fn push_reset(&mut self, id: Option<EventId>, notice: ResetNotice) {
        if let Some(id) = id {
            self.advance(id);
        }
        self.push(RowKind::Reset { id, notice });
    }

    /// Drops every row but remembers the position, so nothing reappears.
    pub fn clear_rows(&mut self) {
        self.rows.clear();
    }

    /// Forgets everything: for a new subscription (another topic).
    pub fn restart(&mut self) {
        self.rows.clear();
        self.last = None;
    }

    /// The rows, newest first.
    pub fn newest_first(&self) -> Vec<Arc<Row>> {
        self.rows.iter().rev().cloned().collect()
    }

    /// How many rows are kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is kept.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The id of the last event or notice taken in: where a reconnect resumes.
    pub fn last_id(&self) -> Option<EventId> {
        self.last
    }

    /// How many duplicate events were dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    fn advance(&mut self, id: EventId) {
        match self.last {
            Some(last) if last.epoch == id.epoch && last.seq >= id.seq => {}
            _ => self.last = Some(id),
        }
    }

    fn push(&mut self, kind: RowKind) {
        if self.rows.len() == self.capacity {
            self.rows.pop_front();
        }
        self.rows.push_back(Arc::new(Row {
            key: self.next_key,
            kind,
        }));
        self.next_key += 1;
    }
}

/// Events per second over a sliding window of recent samples.
#[derive(Debug, Clone)]
pub struct RateMeter {
    window_ms: f64,
    samples: VecDeque<(f64, u64)>,
}

impl RateMeter {
    /// A meter averaging over the last `window_ms` milliseconds.
    pub fn new(window_ms: f64) -> Self {
        Self {
            window_ms,
            samples: VecDeque::new(),
        }
    }

    /// Records that `total` events had arrived at time `now_ms` and returns
    /// the rate over the window (0 until two samples are apart in time).
    pub fn sample(&mut self, now_ms: f64, total: u64) -> f64 {
        self.samples.push_back((now_ms, total));
        while self
            .samples
            .get(1)
            .is_some_and(|&(t, _)| now_ms - t >= self.window_ms)
        {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some(&(t0, n0)) if now_ms > t0 => {
                total.saturating_sub(n0) as f64 * 1000.0 / (now_ms - t0)
            }
            _ => 0.0,
        }
    }
}

/// The clock part of an RFC 3339 time (`HH:MM:SS.mmm`), or the whole string
/// when it does not look like one.
pub fn clock_time(rfc3339: &str) -> &str {
    let Some((_, clock)) = rfc3339.split_once('T') else {
        return rfc3339;
    };
    clock.trim_end_matches('Z')
}

/// How long ago, for people: `0.4 s ago`, `12 s ago`, `3 min ago`.
pub fn ago(elapsed_ms: f64) -> String {
    let seconds = (elapsed_ms / 1000.0).max(0.0);
    if seconds < 10.0 {
        format!("{seconds:.1} s ago")
    } else if seconds < 120.0 {
        format!("{} s ago", seconds as u64)
    } else {
        format!("{} min ago", (seconds / 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ResetReason;

    fn event(seq: u64) -> ServerEvent {
        ServerEvent {
            id: Default::default(),
            seq,
            topic: "ticker".to_owned(),
            message: format!("Data pushed from server: ({seq})"),
            time: "2026-11-23T10:00:00.125Z".to_owned(),
        }
    }

    fn notice(resume_seq: u64) -> ResetNotice {
        ResetNotice {
            reason: ResetReason::ServerRestarted,
            requested: Some("1-9".to_owned()),
            missed_from: None,
            missed_to: None,
            missed_count: None,
            resume_seq,
            message: "The server restarted".to_owned(),
        }
    }

    fn seqs(feed: &Feed) -> Vec<u64> {
        feed.newest_first()
            .iter()
            .map(|row| match &row.kind {
                RowKind::Event { id, .. } => id.seq,
                RowKind::Reset { .. } => u64::MAX,
            })
            .collect()
    }

    #[test]
    fn replayed_events_are_dropped_and_counted() {
        let mut feed = Feed::new(10);
        for seq in 1..=3 {
            assert!(feed.push_event(Some(EventId::new(7, seq)), event(seq)));
        }
        // A reconnect replays from an older position.
        assert!(!feed.push_event(Some(EventId::new(7, 2)), event(2)));
        assert!(!feed.push_event(Some(EventId::new(7, 3)), event(3)));
        assert!(feed.push_event(Some(EventId::new(7, 4)), event(4)));
        assert_eq!(seqs(&feed), [4, 3, 2, 1]);
        assert_eq!(feed.duplicates(), 2);
        assert_eq!(feed.last_id(), Some(EventId::new(7, 4)));
    }

    #[test]
    fn a_new_server_run_starts_over_after_its_reset_notice() {
        let mut feed = Feed::new(10);
        feed.push_event(Some(EventId::new(7, 9)), event(9));
        feed.push_reset(Some(EventId::new(8, 0)), notice(1));
        // Low seqs of the new run are new events, not duplicates.
        assert!(feed.push_event(Some(EventId::new(8, 1)), event(1)));
        assert_eq!(seqs(&feed), [1, u64::MAX, 9]);
        assert_eq!(feed.last_id(), Some(EventId::new(8, 1)));
    }

    #[test]
    fn keeps_only_the_newest_rows_with_unique_keys() {
        let mut feed = Feed::new(3);
        for seq in 1..=5 {
            feed.push_event(Some(EventId::new(1, seq)), event(seq));
        }
        assert_eq!(seqs(&feed), [5, 4, 3]);
        let keys: Vec<u64> = feed.newest_first().iter().map(|row| row.key).collect();
        assert_eq!(keys, [4, 3, 2]);
    }

    #[test]
    fn clearing_keeps_the_position_and_restarting_forgets_it() {
        let mut feed = Feed::new(10);
        feed.push_event(Some(EventId::new(1, 5)), event(5));
        feed.clear_rows();
        assert!(feed.is_empty());
        assert!(!feed.push_event(Some(EventId::new(1, 5)), event(5)));
        feed.restart();
        assert_eq!(feed.last_id(), None);
        assert!(feed.push_event(Some(EventId::new(1, 5)), event(5)));
        assert_eq!(feed.len(), 1);
    }

    #[test]
    fn an_event_without_an_id_is_placed_by_its_seq() {
        let mut feed = Feed::new(10);
        feed.push_event(Some(EventId::new(3, 4)), event(4));
        assert!(!feed.push_event(None, event(4)));
        assert!(feed.push_event(None, event(5)));
        assert_eq!(feed.last_id(), Some(EventId::new(3, 5)));
    }

    #[test]
    fn rate_over_the_window() {
        let mut meter = RateMeter::new(2000.0);
        assert_eq!(meter.sample(0.0, 0), 0.0);
        assert_eq!(meter.sample(1000.0, 10), 10.0);
        assert_eq!(meter.sample(2000.0, 30), 15.0);
        // The first sample has left the window: 30 events in the last 2 s.
        assert_eq!(meter.sample(3000.0, 40), 15.0);
        assert_eq!(meter.sample(5000.0, 40), 0.0);
    }

    #[test]
    fn formats_times_for_people() {
        assert_eq!(clock_time("2026-11-23T10:00:00.125Z"), "10:00:00.125");
        assert_eq!(clock_time("soon"), "soon");
        assert_eq!(ago(430.0), "0.4 s ago");
        assert_eq!(ago(12_400.0), "12 s ago");
        assert_eq!(ago(180_000.0), "3 min ago");
    }
}
