//! A worker's state: each subscriber's sequence bookkeeping and recent
//! event ids, and the counters and histograms of the current step, from
//! which it reports to the coordinator.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shared::{Item, RESET_EVENT};

use crate::payload::{self, DataFormat, Payload};
use crate::protocol::{GroupReport, Status, TopicSetup, WorkerReport};
use crate::tracker::{histogram_to_pairs, latency_histogram, record_clamped, Arrival, SeqTracker};

/// How many recent `(seq, id)` pairs a subscriber keeps for resuming.
const RING: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Sub {
    pub(super) tracker: SeqTracker,
    /// Recent measured events `(seq, SSE id)`, oldest first.
    pub(super) ring: VecDeque<(u64, String)>,
    pub(super) open: bool,
    pub(super) warm: bool,
    pub(super) stalled: bool,
    pub(super) caught_up: bool,
    /// The local port of the current connection.
    pub(super) port: u16,
    /// Its group in the topic plan (0 without one).
    pub(super) group: usize,
    /// The stream's last event id, as `EventSource` keeps it (from any
    /// event that had one, `position` notices included).
    pub(super) last_id: Option<String>,
}

/// One subscriber group's counters in the current step.
#[derive(Debug)]
pub(super) struct GroupState {
    pub(super) latency: Histogram<u64>,
    pub(super) delivered: u64,
    pub(super) duplicated: u64,
    pub(super) reordered: u64,
    pub(super) resets: u64,
    pub(super) disconnects: u64,
}

impl Default for GroupState {
    fn default() -> Self {
        Self {
            latency: latency_histogram(),
            delivered: 0,
            duplicated: 0,
            reordered: 0,
            resets: 0,
            disconnects: 0,
        }
    }
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) subs: Vec<Sub>,
    pub(super) data_format: DataFormat,
    /// The address this worker connects from.
    pub(super) source: Ipv4Addr,
    pub(super) measure_from: u64,
    pub(super) latency: Histogram<u64>,
    pub(super) worst_us: Vec<u64>,
    pub(super) received_by: Vec<u32>,
    pub(super) delivered: u64,
    pub(super) received: u64,
    pub(super) replayed: u64,
    pub(super) duplicated: u64,
    pub(super) reordered: u64,
    pub(super) resets: u64,
    pub(super) connect_errors: u64,
    pub(super) disconnects: u64,
    pub(super) catch_up: Histogram<u64>,
    pub(super) reconnect_at: Option<Instant>,
    pub(super) caught_up_seq: Option<u64>,
    pub(super) first_error: Option<String>,
    pub(super) initial_ok: u32,
    pub(super) initial_failed: u32,
    /// Per group of the topic plan; empty without one.
    pub(super) groups: Vec<GroupState>,
}

impl State {
    pub(super) fn new(
        count: usize,
        data_format: DataFormat,
        lanes: u32,
        source: Ipv4Addr,
        topics: Option<&TopicSetup>,
    ) -> Self {
        Self {
            subs: (0..count)
                .map(|i| match topics {
                    Some(t) => {
                        let index = t.first_index + u32::try_from(i).unwrap_or(u32::MAX);
                        Sub {
                            tracker: SeqTracker::with_interest(
                                0,
                                lanes,
                                Some(t.plan.interest(index)),
                            ),
                            group: t.plan.group_of(index).0,
                            ..Sub::default()
                        }
                    }
                    None => Sub {
                        tracker: SeqTracker::new(0, lanes),
                        ..Sub::default()
                    },
                })
                .collect(),
            data_format,
            source,
            measure_from: 0,
            latency: latency_histogram(),
            worst_us: Vec::new(),
            received_by: Vec::new(),
            delivered: 0,
            received: 0,
            replayed: 0,
            duplicated: 0,
            reordered: 0,
            resets: 0,
            connect_errors: 0,
            disconnects: 0,
            catch_up: latency_histogram(),
            reconnect_at: None,
            caught_up_seq: None,
            first_error: None,
            initial_ok: 0,
            initial_failed: 0,
            groups: topics.map_or_else(Vec::new, |t| {
                t.plan
                    .groups
                    .iter()
                    .map(|_| GroupState::default())
                    .collect()
            }),
        }
    }

    pub(super) fn group(&mut self, idx: usize) -> Option<&mut GroupState> {
        let g = self.subs[idx].group;
        self.groups.get_mut(g)
    }

    pub(super) fn note_error(&mut self, error: String) {
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }

    pub(super) fn on_items(&mut self, idx: usize, items: &mut Vec<Item>, now: u64) {
        for item in items.drain(..) {
            let Item::Event(event) = item else { continue };
            if !event.last_event_id.is_empty() {
                self.subs[idx].last_id = Some(event.last_event_id.clone());
            }
            if event.event == RESET_EVENT {
                self.resets += 1;
                if let Some(g) = self.group(idx) {
                    g.resets += 1;
                }
                continue;
            }
            let Some(text) = payload::extract(self.data_format, &event.data) else {
                continue;
            };
            match payload::parse(&text) {
                Some(Payload::Measured { seq, sent_ns }) => {
                    self.on_measured(idx, seq, now.saturating_sub(sent_ns), event.last_event_id);
                }
                Some(Payload::Warmup) => self.subs[idx].warm = true,
                None => {}
            }
        }
    }

    pub(super) fn on_measured(&mut self, idx: usize, seq: u64, latency_ns: u64, id: String) {
        let sub = &mut self.subs[idx];
        if sub.stalled {
            return;
        }
        self.received += 1;
        let arrival = sub.tracker.record(seq);
        let group = self.groups.get_mut(sub.group);
        match arrival {
            Arrival::Duplicate => {
                self.duplicated += 1;
                if let Some(g) = group {
                    g.duplicated += 1;
                }
                return;
            }
            Arrival::Replayed => {
                self.replayed += 1;
                self.check_caught_up(idx);
                return;
            }
            Arrival::Reordered => {
                self.reordered += 1;
                if let Some(g) = group {
                    g.reordered += 1;
                }
            }
            Arrival::InOrder => {}
        }
        let sub = &mut self.subs[idx];
        if !id.is_empty() {
            if sub.ring.len() == RING {
                sub.ring.pop_front();
            }
            sub.ring.push_back((seq, id));
        }
        self.check_caught_up(idx);
        if seq >= self.measure_from {
            let latency_us = latency_ns / 1000;
            record_clamped(&mut self.latency, latency_us);
            self.delivered += 1;
            if let Some(g) = self.group(idx) {
                record_clamped(&mut g.latency, latency_us);
                g.delivered += 1;
            }
            let i = usize::try_from(seq - self.measure_from).unwrap_or(usize::MAX);
            if i >= self.worst_us.len() {
                self.worst_us.resize(i + 1, 0);
                self.received_by.resize(i + 1, 0);
            }
            self.worst_us[i] = self.worst_us[i].max(latency_us);
            self.received_by[i] += 1;
        }
    }

    /// Marks subscriber `idx` caught up once, after the last reconnect, it
    /// holds every event up to the target with no hole and has received the
    /// replay it asked for.
    pub(super) fn check_caught_up(&mut self, idx: usize) {
        let (Some(target), Some(at)) = (self.caught_up_seq, self.reconnect_at) else {
            return;
        };
        let sub = &mut self.subs[idx];
        let t = &sub.tracker;
        if !sub.caught_up && t.contiguous() > target && t.contiguous() == t.end() && t.replay_done()
        {
            sub.caught_up = true;
            record_clamped(&mut self.catch_up, duration_us(at.elapsed()));
        }
    }

    /// Prepares subscriber `idx` for a reconnect `behind` events back: the
    /// id to send, with the tracker rewound to expect the replay.
    pub(super) fn prepare_reconnect(&mut self, idx: usize, behind: u32) -> Option<String> {
        let sub = &mut self.subs[idx];
        sub.open = false;
        sub.warm = false;
        sub.caught_up = false;
        let behind = usize::try_from(behind).unwrap_or(usize::MAX);
        let pick = sub.ring.len().saturating_sub(1 + behind);
        let (seq, id) = sub.ring.get(pick).cloned()?;
        sub.tracker.expect_replay(seq);
        Some(id)
    }

    pub(super) fn status(&self) -> Status {
        let mut status = Status {
            contiguous_min: u64::MAX,
            received: self.received,
            errors: self.connect_errors + self.disconnects,
            ..Status::default()
        };
        for sub in &self.subs {
            status.open += u32::from(sub.open);
            if sub.stalled {
                continue;
            }
            status.active += 1;
            status.warm += u32::from(sub.open && sub.warm);
            status.caught_up += u32::from(sub.caught_up);
            if sub.open {
                status.contiguous_min = status.contiguous_min.min(sub.tracker.contiguous());
            }
        }
        status
    }

    pub(super) fn report(&self, from: u64, to: u64) -> WorkerReport {
        let len = usize::try_from(to.saturating_sub(from) + 1).unwrap_or(0);
        let offset = usize::try_from(from.saturating_sub(self.measure_from)).unwrap_or(0);
        let slice = |v: &Vec<u64>| -> Vec<u64> {
            (0..len)
                .map(|i| v.get(offset + i).copied().unwrap_or(0))
                .collect()
        };
        let received_by = (0..len)
            .map(|i| self.received_by.get(offset + i).copied().unwrap_or(0))
            .collect();
        let active: Vec<&Sub> = self.subs.iter().filter(|s| !s.stalled).collect();
        WorkerReport {
            latency_us: histogram_to_pairs(&self.latency),
            worst_us: slice(&self.worst_us),
            received_by,
            active: u32::try_from(active.len()).unwrap_or(u32::MAX),
            delivered: self.delivered,
            lost: active.iter().map(|s| s.tracker.missing(from, to)).sum(),
            duplicated: self.duplicated,
            replayed: self.replayed,
            reordered: self.reordered,
            resets: self.resets,
            connect_errors: self.connect_errors,
            disconnects: self.disconnects,
            catch_up_us: histogram_to_pairs(&self.catch_up),
            caught_up: u32::try_from(active.iter().filter(|s| s.caught_up).count()).unwrap_or(0),
            stalled_closed: self.stalled_closed(),
            first_error: self.first_error.clone(),
            groups: self
                .groups
                .iter()
                .enumerate()
                .map(|(g, state)| {
                    let members = active.iter().filter(|s| s.group == g);
                    let (mut n, mut expected, mut lost) = (0, 0, 0);
                    for s in members {
                        n += 1;
                        expected += s.tracker.expected(from, to);
                        lost += s.tracker.missing(from, to);
                    }
                    GroupReport {
                        active: n,
                        expected,
                        delivered: state.delivered,
                        lost,
                        duplicated: state.duplicated,
                        reordered: state.reordered,
                        resets: state.resets,
                        disconnects: state.disconnects,
                        latency_us: histogram_to_pairs(&state.latency),
                    }
                })
                .collect(),
        }
    }

    /// How many stalled subscribers' connections the server has closed.
    pub(super) fn stalled_closed(&self) -> u32 {
        let ports: std::collections::HashSet<u16> = self
            .subs
            .iter()
            .filter(|s| s.stalled && s.port != 0)
            .map(|s| s.port)
            .collect();
        if ports.is_empty() {
            return 0;
        }
        let table = crate::procstat::tcp_connections();
        let closed = crate::procstat::closed_by_peer(&table, self.source);
        u32::try_from(ports.iter().filter(|p| closed.contains(p)).count()).unwrap_or(u32::MAX)
    }

    pub(super) fn start_measure(&mut self, from: u64) {
        self.measure_from = from;
        self.latency.reset();
        self.worst_us.clear();
        self.received_by.clear();
        self.delivered = 0;
        self.received = 0;
        self.replayed = 0;
        self.duplicated = 0;
        self.reordered = 0;
        self.resets = 0;
        for g in &mut self.groups {
            *g = GroupState::default();
        }
        for sub in &mut self.subs {
            // Events before the step are not expected of subscribers that
            // had none yet.
            if sub.tracker.end() == 0 {
                sub.tracker = sub.tracker.restarted(from);
            }
        }
    }
}

pub(super) fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
