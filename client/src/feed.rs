//! What the page knows about the stream, kept apart from the browser so it can
//! be tested on any machine: the bounded list of rows, the duplicate check
//! that makes reconnects invisible, the search within the rows, and the
//! events-per-second meter.

use std::collections::VecDeque;
use std::sync::Arc;

use shared::{EventId, ResetNotice, ResetReason, ServerEvent};

/// How many rows the page keeps (and shows); older rows are dropped.
pub const MAX_ROWS: usize = 500;

/// One row of the message list.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Unique within the page's lifetime, in arrival order: the list's key.
    pub key: u64,
    /// What the row shows.
    pub kind: RowKind,
    /// Its `data:` as the browser handed it over (the JSON the server sent).
    pub data: String,
    /// How late it arrived (events only).
    pub arrival: Arrival,
    /// What search looks in, in lower case: seq, topic and message.
    search: String,
}

impl Row {
    /// Whether the row holds `query` (already in lower case; empty matches
    /// every row) in its seq (`#12`), topic or message.
    pub fn matches(&self, query: &str) -> bool {
        // A plain scan: rows are short, and it is much less code in the
        // page than `str::contains`'s two-way search.
        let (text, query) = (self.search.as_bytes(), query.as_bytes());
        query.is_empty() || text.windows(query.len()).any(|w| w == query)
    }

    /// The SSE id, when the row has one.
    pub fn id(&self) -> Option<EventId> {
        match &self.kind {
            RowKind::Event { id, .. } => Some(*id),
            RowKind::Reset { id, .. } => *id,
        }
    }

    /// The SSE event type the browser reported: `message` for an ordinary
    /// event, `reset` for a notice.
    pub fn event_type(&self) -> &'static str {
        match self.kind {
            RowKind::Event { .. } => "message",
            RowKind::Reset { .. } => shared::RESET_EVENT,
        }
    }
}

/// How late an event arrived.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Arrival {
    /// From its `time` to its arrival, corrected by the clock offset (`None`
    /// until there is an estimate, or when its `time` is not readable).
    pub latency_ms: Option<f64>,
    /// It was published before the connection opened: the server replayed
    /// it at the resume. Such events are left out of the percentiles.
    pub replayed: bool,
}

/// The rows of `rows` that hold `query` (compared in lower case, spaces
/// around it ignored), in order; every row when it is empty.
pub fn search(rows: &[Arc<Row>], query: &str) -> Vec<Arc<Row>> {
    let query = lower(query.trim());
    rows.iter()
        .filter(|row| row.matches(&query))
        .cloned()
        .collect()
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
    pub fn push_event(
        &mut self,
        id: Option<EventId>,
        event: ServerEvent,
        data: String,
        arrival: Arrival,
    ) -> bool {
        let id = id.unwrap_or_else(|| EventId::new(self.last.map_or(0, |l| l.epoch), event.seq));
        if self
            .last
            .is_some_and(|last| last.epoch == id.epoch && id.seq <= last.seq)
        {
            self.duplicates += 1;
            return false;
        }
        self.advance(id);
        let search = lower(&format!("#{} {} {}", event.seq, event.topic, event.message));
        self.push(RowKind::Event { id, event }, data, arrival, search);
        true
    }

    /// Adds a reset notice (`data` its JSON); its id (if any) becomes the
    /// position reached.
    pub fn push_reset(&mut self, id: Option<EventId>, notice: ResetNotice, data: String) {
        if let Some(id) = id {
            self.advance(id);
        }
        let search = lower(&format!("events missed {}", notice.message));
        self.push(
            RowKind::Reset { id, notice },
            data,
            Arrival::default(),
            search,
        );
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

    /// The newest row.
    pub fn newest(&self) -> Option<&Arc<Row>> {
        self.rows.back()
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

    fn push(&mut self, kind: RowKind, data: String, arrival: Arrival, search: String) {
        if self.rows.len() == self.capacity {
            self.rows.pop_front();
        }
        self.rows.push_back(Arc::new(Row {
            key: self.next_key,
            kind,
            data,
            arrival,
            search,
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

/// `text` in lower case, by the browser's `toLowerCase` in the page (the
/// page then carries no Unicode case tables) and by Rust's on the host.
fn lower(text: &str) -> String {
    #[cfg(target_arch = "wasm32")]
    {
        String::from(js_sys::JsString::from(text).to_lower_case())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        text.to_lowercase()
    }
}

/// The wire name of a reset notice's reason.
pub fn reason_name(reason: ResetReason) -> &'static str {
    match reason {
        ResetReason::HistoryExceeded => "history_exceeded",
        ResetReason::ServerRestarted => "server_restarted",
        ResetReason::FellBehind => "fell_behind",
    }
}

/// The reason a wire name stands for (the inverse of [`reason_name`]).
pub fn reason_from_name(name: &str) -> Option<ResetReason> {
    [
        ResetReason::HistoryExceeded,
        ResetReason::ServerRestarted,
        ResetReason::FellBehind,
    ]
    .into_iter()
    .find(|reason| reason_name(*reason) == name)
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
        format!("{} s ago", crate::decimal::fixed(seconds, 1))
    } else if seconds < 120.0 {
        format!("{} s ago", seconds as u64)
    } else {
        format!("{} min ago", (seconds / 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn push(feed: &mut Feed, id: Option<EventId>, seq: u64) -> bool {
        feed.push_event(id, event(seq), String::new(), Arrival::default())
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
            assert!(push(&mut feed, Some(EventId::new(7, seq)), seq));
        }
        // A reconnect replays from an older position.
        assert!(!push(&mut feed, Some(EventId::new(7, 2)), 2));
        assert!(!push(&mut feed, Some(EventId::new(7, 3)), 3));
        assert!(push(&mut feed, Some(EventId::new(7, 4)), 4));
        assert_eq!(seqs(&feed), [4, 3, 2, 1]);
        assert_eq!(feed.duplicates(), 2);
        assert_eq!(feed.last_id(), Some(EventId::new(7, 4)));
    }

    #[test]
    fn a_new_server_run_starts_over_after_its_reset_notice() {
        let mut feed = Feed::new(10);
        push(&mut feed, Some(EventId::new(7, 9)), 9);
        feed.push_reset(Some(EventId::new(8, 0)), notice(1), String::new());
        // Low seqs of the new run are new events, not duplicates.
        assert!(push(&mut feed, Some(EventId::new(8, 1)), 1));
        assert_eq!(seqs(&feed), [1, u64::MAX, 9]);
        assert_eq!(feed.last_id(), Some(EventId::new(8, 1)));
    }

    #[test]
    fn keeps_only_the_newest_rows_with_unique_keys() {
        let mut feed = Feed::new(3);
        for seq in 1..=5 {
            push(&mut feed, Some(EventId::new(1, seq)), seq);
        }
        assert_eq!(seqs(&feed), [5, 4, 3]);
        let keys: Vec<u64> = feed.newest_first().iter().map(|row| row.key).collect();
        assert_eq!(keys, [4, 3, 2]);
    }

    #[test]
    fn clearing_keeps_the_position_and_restarting_forgets_it() {
        let mut feed = Feed::new(10);
        push(&mut feed, Some(EventId::new(1, 5)), 5);
        feed.clear_rows();
        assert!(feed.is_empty());
        assert!(!push(&mut feed, Some(EventId::new(1, 5)), 5));
        feed.restart();
        assert_eq!(feed.last_id(), None);
        assert!(push(&mut feed, Some(EventId::new(1, 5)), 5));
        assert_eq!(feed.len(), 1);
    }

    #[test]
    fn an_event_without_an_id_is_placed_by_its_seq() {
        let mut feed = Feed::new(10);
        push(&mut feed, Some(EventId::new(3, 4)), 4);
        assert!(!push(&mut feed, None, 4));
        assert!(push(&mut feed, None, 5));
        assert_eq!(feed.last_id(), Some(EventId::new(3, 5)));
    }

    #[test]
    fn search_looks_in_seq_topic_and_message_ignoring_case() {
        let mut feed = Feed::new(10);
        for (seq, topic, message) in [
            (1, "ticker", "Data pushed from server: (1)"),
            (2, "news.eu", "Hello Europe"),
            (12, "default", "hello world"),
        ] {
            let mut e = event(seq);
            e.topic = topic.to_owned();
            e.message = message.to_owned();
            feed.push_event(
                Some(EventId::new(1, seq)),
                e,
                String::new(),
                Arrival::default(),
            );
        }
        feed.push_reset(None, notice(13), String::new());
        let rows = feed.newest_first();
        let found = |query: &str| -> Vec<u64> {
            search(&rows, query)
                .iter()
                .map(|row| row.id().map_or(u64::MAX, |id| id.seq))
                .collect()
        };
        assert_eq!(found(""), [u64::MAX, 12, 2, 1]);
        assert_eq!(found("  HELLO "), [12, 2]);
        assert_eq!(found("news"), [2]);
        assert_eq!(found("#1"), [12, 1]);
        assert_eq!(found("#12"), [12]);
        assert_eq!(found("missed"), [u64::MAX]);
        assert_eq!(found("nothing like it"), Vec::<u64>::new());
        assert_eq!(rows[0].event_type(), "reset");
        assert_eq!(rows[1].event_type(), "message");
    }

    #[test]
    fn reason_names_are_the_wire_names() {
        for reason in [
            ResetReason::HistoryExceeded,
            ResetReason::ServerRestarted,
            ResetReason::FellBehind,
        ] {
            let wire = serde_json::to_value(reason).expect("serializes");
            assert_eq!(wire.as_str(), Some(reason_name(reason)));
            assert_eq!(reason_from_name(reason_name(reason)), Some(reason));
        }
        assert_eq!(reason_from_name("gone"), None);
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
