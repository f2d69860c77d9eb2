//! The connection's history: connects, errors, resumes (with the id each
//! one carried), reopens and reset notices, newest first, bounded.

use std::collections::VecDeque;

use crate::topic::Start;

/// Entries kept.
pub const KEEP: usize = 40;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happening {
    /// A new `EventSource` was opened.
    Opening,
    /// A connection opened.
    Open,
    /// The connection failed; the browser reconnects by itself.
    Error,
    /// The browser gave up on the connection; the page opens a new one.
    Closed,
    /// The server said events were missed.
    Reset,
    /// The server refused the stream.
    Refused,
    /// Events arrived in bulk.
    Bulk,
}

impl Happening {
    /// A stable name, used as the entry's `data-kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opening => "opening",
            Self::Open => "open",
            Self::Error => "error",
            Self::Closed => "closed",
            Self::Reset => "reset",
            Self::Refused => "refused",
            Self::Bulk => "bulk",
        }
    }
}

/// One entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Unique, in order: the list's key.
    pub key: u64,
    /// When (page clock, ms since the epoch).
    pub at_ms: f64,
    /// What happened.
    pub what: Happening,
    /// The details, for people.
    pub text: String,
}

/// The bounded history.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    entries: VecDeque<Entry>,
    next_key: u64,
    changed: bool,
}

impl Timeline {
    /// Nothing happened yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry, dropping the oldest beyond [`KEEP`].
    pub fn add(&mut self, at_ms: f64, what: Happening, text: String) {
        if self.entries.len() == KEEP {
            self.entries.pop_back();
        }
        self.entries.push_front(Entry {
            key: self.next_key,
            at_ms,
            what,
            text,
        });
        self.next_key += 1;
        self.changed = true;
    }

    /// The entries, newest first, when they changed since the last call.
    pub fn take_changes(&mut self) -> Option<Vec<Entry>> {
        std::mem::take(&mut self.changed).then(|| self.entries.iter().cloned().collect())
    }
}

/// The text of an [`Happening::Opening`]: what the new connection asks
/// for: the id it resumes after (`?lastEventId=`), or the newest events it
/// starts with (`?last=`).
pub fn opening_text(url: &str, start: Start) -> String {
    match start {
        Start::After(id) => format!("opening {url} (resumes after {id})"),
        Start::Last(n) => format!("opening {url} (starts with the last {n} events)"),
        Start::Live => format!("opening {url}"),
    }
}

/// The text of an [`Happening::Open`]: after an error the browser sent
/// `Last-Event-ID` with the last id it saw.
pub fn open_text(after_error: bool, resume: Option<&str>) -> String {
    match (after_error, resume) {
        (true, Some(id)) => format!("reconnected, resumed with Last-Event-ID: {id}"),
        (true, None) => "reconnected, no id to resume from: live from now".to_owned(),
        (false, _) => "connected".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_bounded_and_changes_reported_once() {
        let mut timeline = Timeline::new();
        assert_eq!(timeline.take_changes(), None);
        for i in 0..(KEEP + 5) {
            timeline.add(i as f64, Happening::Error, format!("e{i}"));
        }
        let entries = timeline.take_changes().expect("changed");
        assert_eq!(entries.len(), KEEP);
        assert_eq!(entries[0].text, format!("e{}", KEEP + 4));
        assert_eq!(entries[0].key, (KEEP + 4) as u64);
        assert_eq!(entries[KEEP - 1].text, "e5");
        assert_eq!(timeline.take_changes(), None);
    }

    #[test]
    fn texts_name_the_resume_id_and_the_last_events() {
        assert_eq!(
            opening_text(
                "/stream?topic=a&lastEventId=7-3",
                Start::After(shared::EventId::new(7, 3))
            ),
            "opening /stream?topic=a&lastEventId=7-3 (resumes after 7-3)"
        );
        assert_eq!(
            opening_text("/stream?last=100", Start::Last(100)),
            "opening /stream?last=100 (starts with the last 100 events)"
        );
        assert_eq!(opening_text("/stream", Start::Live), "opening /stream");
        assert_eq!(
            open_text(true, Some("7-9")),
            "reconnected, resumed with Last-Event-ID: 7-9"
        );
        assert_eq!(open_text(false, Some("7-9")), "connected");
        assert!(open_text(true, None).contains("no id"));
    }
}
