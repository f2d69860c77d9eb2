//! Recording the stream: every event and reset notice the list takes in,
//! with its time since the recording began, as NDJSON lines of
//! [`shared::RecordedEvent`] (`{"offset_ms": …, "event": …}` or
//! `{"offset_ms": …, "reset": …}`), which `server replay` publishes again.
//!
//! The line is built around the event's `data:` as it arrived (the JSON
//! the server sent, already checked to be a `ServerEvent` or a
//! `ResetNotice`), so recording costs no serializing.

/// A recording stops by itself after this many lines (about 25 MB).
pub const MAX_LINES: usize = 100_000;

/// What a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `shared::ServerEvent`.
    Event,
    /// A `shared::ResetNotice`.
    Reset,
}

/// One NDJSON line (with its `\n`) for `data`, received `offset_ms` after the
/// recording began.
pub fn line(offset_ms: u64, kind: Kind, data: &str) -> String {
    let key = match kind {
        Kind::Event => "event",
        Kind::Reset => "reset",
    };
    // JSON allows line breaks only between tokens, where a space is the same.
    let data = data.replace(['\n', '\r'], " ");
    format!("{{\"offset_ms\":{offset_ms},\"{key}\":{data}}}\n")
}

/// A recording under way, or finished.
#[derive(Debug, Clone)]
pub struct Recording {
    started_ms: f64,
    text: String,
    lines: usize,
    recording: bool,
}

impl Recording {
    /// Begins a recording at `now_ms` (page clock).
    pub fn start(now_ms: f64) -> Self {
        Self {
            started_ms: now_ms,
            text: String::new(),
            lines: 0,
            recording: true,
        }
    }

    /// Adds what arrived at `now_ms`; returns `false` once the recording has
    /// stopped (by [`Recording::stop`] or at [`MAX_LINES`]).
    pub fn push(&mut self, now_ms: f64, kind: Kind, data: &str) -> bool {
        if !self.recording {
            return false;
        }
        let offset = (now_ms - self.started_ms).max(0.0) as u64;
        self.text.push_str(&line(offset, kind, data));
        self.lines += 1;
        if self.lines >= MAX_LINES {
            self.recording = false;
        }
        true
    }

    /// Stops taking lines in.
    pub fn stop(&mut self) {
        self.recording = false;
    }

    /// Whether lines are still taken in.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// How many lines it holds.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// The NDJSON text.
    pub fn ndjson(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Recorded, RecordedEvent, ResetReason};

    const EVENT: &str = r#"{"id":"01d28d24-7033-4f12-947f-2f7db7f4a656","seq":4,"topic":"ticker","message":"Data pushed from server: (4)","time":"2026-12-01T09:23:06.527Z"}"#;
    const RESET: &str = r#"{"reason":"history_exceeded","requested":"1-2","missed_from":3,"missed_to":9,"missed_count":7,"resume_seq":10,"message":"gone"}"#;

    #[test]
    fn each_line_is_a_recorded_event() {
        let mut recording = Recording::start(1000.0);
        assert!(recording.push(1000.4, Kind::Event, EVENT));
        assert!(recording.push(1250.9, Kind::Reset, RESET));
        // Data spread over lines (several `data:` fields) still makes one line.
        assert!(recording.push(
            1300.0,
            Kind::Event,
            &EVENT.replace(",\"seq\"", ",\n\"seq\"")
        ));
        recording.stop();
        assert!(!recording.push(1400.0, Kind::Event, EVENT));
        assert_eq!(recording.lines(), 3);

        let lines: Vec<RecordedEvent> = recording
            .ndjson()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a RecordedEvent"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines.iter().map(|l| l.offset_ms).collect::<Vec<_>>(),
            [0, 250, 300]
        );
        let Recorded::Event(event) = &lines[0].item else {
            panic!("{:?}", lines[0]);
        };
        assert_eq!((event.seq, event.topic.as_str()), (4, "ticker"));
        let Recorded::Reset(notice) = &lines[1].item else {
            panic!("{:?}", lines[1]);
        };
        assert_eq!(notice.reason, ResetReason::HistoryExceeded);
        assert_eq!(lines[2].item, lines[0].item);
        assert!(recording.ndjson().ends_with('\n'));
    }

    #[test]
    fn a_recording_stops_itself_when_full() {
        let mut recording = Recording::start(0.0);
        for i in 0..MAX_LINES {
            assert!(recording.push(i as f64, Kind::Event, "{}"));
        }
        assert!(!recording.is_recording());
        assert!(!recording.push(0.0, Kind::Event, "{}"));
        assert_eq!(recording.lines(), MAX_LINES);
    }
}
