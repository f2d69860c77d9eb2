//! What the inspector panels know about the stream, fed by the stream hook
//! as things happen: the clock offset, each event's latency, the live
//! percentiles and the chart, bulk arrivals, the connection's timeline, the
//! other tabs' streams, and the recording. Plain Rust, tested on any
//! machine; the hook copies [`Inspector::insight`] into a signal.

use crate::bulk::{Bulk, BulkDetector};
use crate::clock::{parse_rfc3339_ms, ClockOffset};
use crate::conn_limit::{diagnose, LimitHint, Peers};
use crate::decimal::fixed;
use crate::feed::Arrival;
use crate::latency::{chart, Chart, Latencies, Percentiles};
use crate::record::{Kind, Recording};
use crate::timeline::{Happening, Timeline};

/// An event published this long before its connection opened, beyond the
/// round trip, was replayed at the resume, not sent live.
const REPLAY_SLACK_MS: f64 = 5.0;

/// The figures the panels show, copied into a signal a few times a second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Insight {
    /// The live p50 and p99 of the last seconds.
    pub live: Option<Percentiles>,
    /// The clock offset estimate.
    pub offset: Option<ClockOffset>,
    /// The HTTP version of the probes (`nextHopProtocol`: `http/1.1`, `h2`,
    /// `h3`), when the browser tells it.
    pub protocol: Option<String>,
    /// The latest bulk arrival, and how many there were.
    pub bulk: Option<Bulk>,
    /// Bulk arrivals seen.
    pub bulks: u32,
    /// What the connection limit does to this stream, if anything.
    pub limit: Option<LimitHint>,
    /// Lines recorded, while a recording runs or is ready to download.
    pub recorded: Option<usize>,
    /// Whether a recording runs.
    pub recording: bool,
}

/// The inspector's state.
#[derive(Debug, Default)]
pub struct Inspector {
    /// The clock offset estimate, from `GET /time`.
    pub offset: Option<ClockOffset>,
    /// The HTTP version of the probes.
    pub protocol: Option<String>,
    /// When the current connection opened (page clock).
    opened_at: Option<f64>,
    /// When the current connection began connecting, while it is.
    connecting_since: Option<f64>,
    latencies: Latencies,
    bulk: BulkDetector,
    last_bulk: Option<Bulk>,
    bulks: u32,
    /// The connection's history.
    pub timeline: Timeline,
    /// The other tabs' streams.
    pub peers: Peers,
    recording: Option<Recording>,
    /// The points the chart was last drawn from: how many, the newest.
    charted: (usize, Option<f64>),
}

impl Inspector {
    /// Nothing known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection is being opened at `now_ms`.
    pub fn connecting(&mut self, now_ms: f64) {
        self.opened_at = None;
        self.connecting_since.get_or_insert(now_ms);
        self.bulk.reset();
    }

    /// The connection opened at `now_ms`.
    pub fn opened(&mut self, now_ms: f64) {
        self.opened_at = Some(now_ms);
        self.connecting_since = None;
        self.bulk.reset();
    }

    /// The connection failed or closed at `now_ms`: it is connecting again.
    pub fn lost(&mut self, now_ms: f64) {
        self.opened_at = None;
        self.connecting_since = Some(now_ms);
    }

    /// The stream was refused or given up: not connecting any more.
    pub fn stopped(&mut self) {
        self.opened_at = None;
        self.connecting_since = None;
    }

    /// A new subscription: the figures of the old one no longer apply.
    pub fn restart(&mut self) {
        self.latencies.clear();
        self.bulk.reset();
    }

    /// An ordinary event with `time` (RFC 3339, the server's clock) arrived
    /// at `now_ms`: measures it and watches for bulk arrival. Returns how
    /// late it was.
    pub fn event(&mut self, now_ms: f64, time: &str) -> Arrival {
        let Some(sent) = parse_rfc3339_ms(time) else {
            return Arrival::default();
        };
        // Until the offset is known the clocks are taken to agree, only to
        // tell replayed events apart.
        let local_sent = self.offset.map_or(sent, |o| o.to_local(sent));
        let rtt = self.offset.map_or(0.0, |o| o.rtt_ms);
        let replayed = self
            .opened_at
            .is_some_and(|open| local_sent < open - rtt - REPLAY_SLACK_MS);
        let Some(offset) = self.offset else {
            return Arrival {
                latency_ms: None,
                replayed,
            };
        };
        let latency_ms = offset.latency_ms(sent, now_ms);
        if !replayed {
            self.latencies.push(now_ms, latency_ms);
            if let Some(bulk) = self.bulk.arrived(now_ms, local_sent) {
                self.found_bulk(bulk);
            }
        }
        Arrival {
            latency_ms: Some(latency_ms),
            replayed,
        }
    }

    /// An event (its `data:` JSON) taken into the list at `now_ms`: adds it
    /// to the recording, if one runs.
    pub fn record(&mut self, now_ms: f64, kind: Kind, data: &str) {
        if let Some(recording) = &mut self.recording {
            recording.push(now_ms, kind, data);
        }
    }

    /// A reset notice for `reason` (its `data:` JSON) arrived at `now_ms`.
    pub fn reset(&mut self, now_ms: f64, data: &str, reason: &str) {
        self.record(now_ms, Kind::Reset, data);
        self.timeline
            .add(now_ms, Happening::Reset, format!("reset notice: {reason}"));
    }

    fn found_bulk(&mut self, bulk: Bulk) {
        self.bulks += 1;
        self.last_bulk = Some(bulk);
        self.timeline.add(
            bulk.at_ms,
            Happening::Bulk,
            format!(
                "{} events arrived at once after {} s of silence; the server sent them over {} s",
                bulk.events,
                fixed(bulk.silence_ms / 1000.0, 1),
                fixed(bulk.sent_over_ms / 1000.0, 1)
            ),
        );
    }

    /// Starts a recording at `now_ms` (dropping the previous one).
    pub fn start_recording(&mut self, now_ms: f64) {
        self.recording = Some(Recording::start(now_ms));
    }

    /// Stops the recording; returns its NDJSON text.
    pub fn stop_recording(&mut self) -> Option<&str> {
        let recording = self.recording.as_mut()?;
        recording.stop();
        Some(recording.ndjson())
    }

    /// The figures at `now_ms`: percentiles, bulk arrivals, the limit.
    /// `own_open` is whether this tab's stream is open.
    pub fn insight(&mut self, now_ms: f64, own_open: bool) -> Insight {
        if let Some(bulk) = self.bulk.quiet(now_ms) {
            self.found_bulk(bulk);
        }
        let others = self.peers.open(now_ms);
        let connecting_ms = self.connecting_since.map(|t| now_ms - t);
        Insight {
            live: self.latencies.live(now_ms),
            offset: self.offset,
            protocol: self.protocol.clone(),
            bulk: self.last_bulk,
            bulks: self.bulks,
            limit: diagnose(self.protocol.as_deref(), own_open, connecting_ms, others),
            recorded: self.recording.as_ref().map(Recording::lines),
            recording: self.recording.as_ref().is_some_and(Recording::is_recording),
        }
    }

    /// The chart of the last minutes at `now_ms`, when it has changed since
    /// the last call (a second has passed with events in the window).
    pub fn chart(&mut self, now_ms: f64) -> Option<Chart> {
        let points = self.latencies.points(now_ms);
        let shape = (points.len(), points.back().map(|(t, _)| *t));
        if shape == self.charted {
            return None;
        }
        self.charted = shape;
        Some(chart(points.iter(), now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::utc_clock;
    use crate::conn_limit::Announcement;

    /// An RFC 3339 time `ms` after 2026-12-01T00:00:00Z.
    fn time(ms: f64) -> String {
        let ms = ms as u64;
        format!("2026-12-01T{}.{:03}Z", utc_clock(ms as f64), ms % 1000)
    }

    const DAY: f64 = 1_796_083_200_000.0; // 2026-12-01T00:00:00Z

    #[test]
    fn latency_waits_for_the_offset_and_replayed_events_are_marked() {
        let mut inspector = Inspector::new();
        // The page's clock is an hour ahead of the server's.
        let skew = 3_600_000.0;
        inspector.connecting(DAY + skew);
        inspector.opened(DAY + skew + 10_000.0);
        // Before any estimate: no latency.
        let early = inspector.event(DAY + skew + 10_001.0, &time(10_000.0));
        assert_eq!(early.latency_ms, None);
        inspector.offset = Some(ClockOffset {
            offset_ms: -skew,
            rtt_ms: 2.0,
        });
        // Sent 8 s before the connection opened: replayed at the resume.
        let replayed = inspector.event(DAY + skew + 10_003.0, &time(2000.0));
        assert_eq!(
            replayed,
            Arrival {
                latency_ms: Some(8003.0),
                replayed: true
            }
        );
        // Live ones, 3 ms late.
        for i in 0..10 {
            let sent = 11_000.0 + f64::from(i) * 100.0;
            let live = inspector.event(DAY + skew + sent + 3.0, &time(sent));
            assert_eq!(live.latency_ms, Some(3.0));
            assert!(!live.replayed);
        }
        let insight = inspector.insight(DAY + skew + 12_000.0, true);
        let live = insight.live.expect("percentiles");
        // The replayed event is not among them.
        assert_eq!((live.p50, live.p99, live.count), (3.0, 3.0, 10));
        assert_eq!(insight.bulks, 0);
    }

    #[test]
    fn a_release_of_held_events_is_reported_once_in_the_timeline() {
        let mut inspector = Inspector::new();
        inspector.offset = Some(ClockOffset {
            offset_ms: 0.0,
            rtt_ms: 1.0,
        });
        inspector.opened(DAY);
        for i in 0..5 {
            let sent = f64::from(i) * 50.0 + 10.0;
            inspector.event(DAY + sent + 1.0, &time(sent));
        }
        // Two seconds held, then forty events at once.
        for i in 0..40 {
            let sent = 300.0 + f64::from(i) * 50.0;
            inspector.event(DAY + 2400.0 + f64::from(i) * 0.1, &time(sent));
        }
        let insight = inspector.insight(DAY + 2500.0, true);
        let bulk = insight.bulk.expect("a bulk arrival");
        assert_eq!((bulk.events, insight.bulks), (40, 1));
        let entries = inspector.timeline.take_changes().expect("an entry");
        assert_eq!(entries[0].what, Happening::Bulk);
        assert!(
            entries[0].text.starts_with("40 events arrived at once"),
            "{}",
            entries[0].text
        );
        // Latency shows the holding: p99 near two seconds.
        assert!(insight.live.expect("percentiles").p99 > 2000.0);
    }

    #[test]
    fn recording_takes_events_and_notices_in_order() {
        let mut inspector = Inspector::new();
        inspector.record(DAY, Kind::Event, r#"{"a":0}"#);
        inspector.start_recording(DAY + 100.0);
        inspector.record(DAY + 150.0, Kind::Event, r#"{"a":1}"#);
        inspector.reset(DAY + 170.0, r#"{"b":2}"#, "server_restarted");
        let insight = inspector.insight(DAY + 200.0, true);
        assert_eq!((insight.recorded, insight.recording), (Some(2), true));
        let text = inspector.stop_recording().expect("a recording").to_owned();
        assert_eq!(
            text,
            "{\"offset_ms\":50,\"event\":{\"a\":1}}\n{\"offset_ms\":70,\"reset\":{\"b\":2}}\n"
        );
        inspector.record(DAY + 300.0, Kind::Event, r#"{"a":3}"#);
        let insight = inspector.insight(DAY + 400.0, true);
        assert_eq!((insight.recorded, insight.recording), (Some(2), false));
    }

    #[test]
    fn the_limit_hint_comes_from_the_other_tabs() {
        let mut inspector = Inspector::new();
        inspector.protocol = Some("http/1.1".to_owned());
        for tab in 0..5 {
            inspector.peers.heard(
                Announcement::Streams {
                    id: format!("t{tab}"),
                    open: 1,
                },
                DAY,
            );
        }
        assert_eq!(
            inspector.insight(DAY, true).limit,
            Some(LimitHint::Reached {
                streams: 6,
                tabs: 6
            })
        );
        inspector.protocol = Some("h2".to_owned());
        assert_eq!(inspector.insight(DAY, true).limit, None);
        // Stuck connecting while the others hold theirs.
        inspector.protocol = Some("http/1.1".to_owned());
        inspector.peers.heard(
            Announcement::Bye {
                id: "t0".to_owned(),
            },
            DAY,
        );
        inspector.connecting(DAY);
        assert_eq!(inspector.insight(DAY + 1000.0, false).limit, None);
        assert!(matches!(
            inspector.insight(DAY + 5000.0, false).limit,
            Some(LimitHint::Waiting { streams: 4, .. })
        ));
    }
}
