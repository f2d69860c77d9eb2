//! A worker process: a share of the subscribers, on one thread, driven by
//! the coordinator's commands (see [`crate::protocol`]).
//!
//! Every subscriber is a task that connects from the worker's source
//! address, reads its stream through the HTTP body decoder and the shared
//! WHATWG [`Parser`], and records each measured event in the worker's state:
//! its latency, its arrival in the subscriber's [`SeqTracker`], and the
//! per-event worst latency and receiver count from which the coordinator
//! computes when the last subscriber had each event.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shared::{Item, Parser, RESET_EVENT};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::http::{parse_head, subscribe_request, BodyDecoder};
use crate::payload::{self, DataFormat, Payload};
use crate::protocol::{Command, GroupReport, Reply, Status, TopicSetup, WorkerReport};
use crate::target::Endpoint;
use crate::tracker::{histogram_to_pairs, latency_histogram, record_clamped, Arrival, SeqTracker};

/// How long one connection attempt (connect, request, response head) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause before a subscriber reconnects after its stream broke.
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// How many times in a row a subscriber tries to reconnect before it gives up.
const MAX_RETRIES: u32 = 5;
/// Bytes read from a stream at a time.
const READ_BUF: usize = 8 * 1024;
/// How many recent `(seq, id)` pairs a subscriber keeps for resuming.
const RING: usize = 64;

/// What every subscriber task watches: the coordinator's latest wishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Control {
    /// Bumped by each [`Command::Reconnect`].
    generation: u32,
    /// Events behind the newest to resume from on reconnect.
    behind: u32,
    /// Subscribers with an index below this stop reading.
    stall_below: u32,
    /// Bumped by each [`Command::Rejoin`].
    rejoin: u32,
    /// The group that rejoins.
    rejoin_group: usize,
    /// How long it stays away, ms.
    rejoin_after_ms: u64,
    /// Everything ends.
    quit: bool,
}

#[derive(Debug, Default)]
struct Sub {
    tracker: SeqTracker,
    /// Recent measured events `(seq, SSE id)`, oldest first.
    ring: VecDeque<(u64, String)>,
    open: bool,
    warm: bool,
    stalled: bool,
    caught_up: bool,
    /// The local port of the current connection.
    port: u16,
    /// Its group in the topic plan (0 without one).
    group: usize,
    /// The stream's last event id, as `EventSource` keeps it (from any
    /// event that had one, `position` notices included).
    last_id: Option<String>,
}

/// One subscriber group's counters in the current step.
#[derive(Debug)]
struct GroupState {
    latency: Histogram<u64>,
    delivered: u64,
    duplicated: u64,
    reordered: u64,
    resets: u64,
    disconnects: u64,
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
struct State {
    subs: Vec<Sub>,
    data_format: DataFormat,
    /// The address this worker connects from.
    source: Ipv4Addr,
    measure_from: u64,
    latency: Histogram<u64>,
    worst_us: Vec<u64>,
    received_by: Vec<u32>,
    delivered: u64,
    received: u64,
    replayed: u64,
    duplicated: u64,
    reordered: u64,
    resets: u64,
    connect_errors: u64,
    disconnects: u64,
    catch_up: Histogram<u64>,
    reconnect_at: Option<Instant>,
    caught_up_seq: Option<u64>,
    first_error: Option<String>,
    initial_ok: u32,
    initial_failed: u32,
    /// Per group of the topic plan; empty without one.
    groups: Vec<GroupState>,
}

impl State {
    fn new(
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

    fn group(&mut self, idx: usize) -> Option<&mut GroupState> {
        let g = self.subs[idx].group;
        self.groups.get_mut(g)
    }

    fn note_error(&mut self, error: String) {
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }

    fn on_items(&mut self, idx: usize, items: &mut Vec<Item>, now: u64) {
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

    fn on_measured(&mut self, idx: usize, seq: u64, latency_ns: u64, id: String) {
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
    fn check_caught_up(&mut self, idx: usize) {
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
    fn prepare_reconnect(&mut self, idx: usize, behind: u32) -> Option<String> {
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

    fn status(&self) -> Status {
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

    fn report(&self, from: u64, to: u64) -> WorkerReport {
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
    fn stalled_closed(&self) -> u32 {
        let ports: std::collections::HashSet<u16> = self
            .subs
            .iter()
            .filter(|s| s.stalled && s.port != 0)
            .map(|s| s.port)
            .collect();
        if ports.is_empty() {
            return 0;
        }
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let closed = crate::procstat::closed_by_peer(&table, self.source);
        u32::try_from(ports.iter().filter(|p| closed.contains(p)).count()).unwrap_or(u32::MAX)
    }

    fn start_measure(&mut self, from: u64) {
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

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How a stream ended.
enum End {
    Quit,
    Reconnect(Option<String>),
    /// Stay away this long, then resume from the last event id.
    Away(Duration),
    Broken(String),
}

/// Connects, sends the request and reads the response head.
async fn open(
    endpoint: &Endpoint,
    source: Ipv4Addr,
    last_event_id: Option<&str>,
) -> Result<(TcpStream, BodyDecoder, Vec<u8>), String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let mut stream = socket
        .connect(endpoint.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", endpoint.addr))?;
    stream
        .write_all(&subscribe_request(endpoint, last_event_id))
        .await
        .map_err(|e| format!("send request: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read response head: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response head".to_owned());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some((parsed, len)) = parse_head(&head).map_err(|e| e.to_string())? {
            if parsed.status != 200 {
                return Err(format!("status {}", parsed.status));
            }
            return Ok((stream, BodyDecoder::new(parsed.body), head.split_off(len)));
        }
    }
}

struct Ctx {
    idx: usize,
    /// The subscriber's group in the topic plan.
    group: usize,
    endpoint: Rc<Endpoint>,
    source: Ipv4Addr,
    state: Rc<RefCell<State>>,
    gate: Rc<Semaphore>,
}

/// One subscriber, from its first connection until [`Control::quit`].
async fn subscriber(ctx: Ctx, mut control: watch::Receiver<Control>) {
    let mut resume: Option<String> = None;
    let mut generation = control.borrow().generation;
    let mut rejoin = control.borrow().rejoin;
    let mut first = true;
    let mut failures = 0u32;
    loop {
        if control.borrow().quit {
            return;
        }
        let attempt = {
            let _permit = ctx.gate.acquire().await;
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                open(&ctx.endpoint, ctx.source, resume.as_deref()),
            )
            .await
            .unwrap_or_else(|_| Err("timed out connecting".to_owned()))
        };
        let was_first = std::mem::replace(&mut first, false);
        let (stream, decoder, leftover) = match attempt {
            Ok(open) => open,
            Err(e) => {
                {
                    let mut state = ctx.state.borrow_mut();
                    state.connect_errors += 1;
                    if was_first {
                        state.initial_failed += 1;
                    }
                    state.note_error(e);
                }
                failures += 1;
                if was_first || failures > MAX_RETRIES {
                    return;
                }
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        {
            let mut state = ctx.state.borrow_mut();
            state.subs[ctx.idx].port = stream.local_addr().map_or(0, |a| a.port());
            state.subs[ctx.idx].open = true;
            if was_first {
                state.initial_ok += 1;
            }
        }
        match read_stream(
            &ctx,
            stream,
            decoder,
            &leftover,
            &mut control,
            (&mut generation, &mut rejoin),
        )
        .await
        {
            End::Quit => return,
            End::Reconnect(id) => {
                failures = 0;
                resume = id;
            }
            End::Away(pause) => {
                failures = 0;
                resume = {
                    let mut state = ctx.state.borrow_mut();
                    let sub = &mut state.subs[ctx.idx];
                    sub.open = false;
                    sub.warm = false;
                    sub.last_id.clone()
                };
                let quit = async {
                    loop {
                        if control.changed().await.is_err() || control.borrow().quit {
                            return;
                        }
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = quit => return,
                }
            }
            End::Broken(e) => {
                resume = {
                    let mut state = ctx.state.borrow_mut();
                    state.disconnects += 1;
                    if let Some(g) = state.group(ctx.idx) {
                        g.disconnects += 1;
                    }
                    state.note_error(e);
                    let sub = &mut state.subs[ctx.idx];
                    sub.open = false;
                    sub.warm = false;
                    sub.ring.back().map(|(_, id)| id.clone())
                };
                failures += 1;
                if failures > MAX_RETRIES {
                    return;
                }
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}

async fn read_stream(
    ctx: &Ctx,
    mut stream: TcpStream,
    mut decoder: BodyDecoder,
    leftover: &[u8],
    control: &mut watch::Receiver<Control>,
    (generation, rejoin): (&mut u32, &mut u32),
) -> End {
    let mut parser = Parser::new();
    let mut items = Vec::new();
    let mut feed = |bytes: &[u8], decoder: &mut BodyDecoder, items: &mut Vec<Item>| {
        decoder
            .decode(bytes, |body| parser.feed(body, items))
            .map_err(|e| e.to_string())
    };
    if let Err(e) = feed(leftover, &mut decoder, &mut items) {
        return End::Broken(e);
    }
    ctx.state
        .borrow_mut()
        .on_items(ctx.idx, &mut items, crate::now_ns());
    let mut buf = vec![0u8; READ_BUF];
    loop {
        tokio::select! {
            biased;
            changed = control.changed() => {
                if changed.is_err() {
                    return End::Quit;
                }
                let wish = *control.borrow_and_update();
                if wish.quit {
                    return End::Quit;
                }
                if wish.generation != *generation {
                    *generation = wish.generation;
                    let id = ctx.state.borrow_mut().prepare_reconnect(ctx.idx, wish.behind);
                    return End::Reconnect(id);
                }
                if wish.rejoin != *rejoin {
                    *rejoin = wish.rejoin;
                    if wish.rejoin_group == ctx.group {
                        return End::Away(Duration::from_millis(wish.rejoin_after_ms));
                    }
                }
                if (ctx.idx as u64) < u64::from(wish.stall_below) {
                    ctx.state.borrow_mut().subs[ctx.idx].stalled = true;
                    // Keep the connection open without reading until the end.
                    loop {
                        if control.changed().await.is_err() || control.borrow().quit {
                            return End::Quit;
                        }
                    }
                }
            }
            read = stream.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return End::Broken("the server ended the stream".to_owned()),
                    Ok(n) => n,
                    Err(e) => return End::Broken(format!("read: {e}")),
                };
                let now = crate::now_ns();
                if let Err(e) = feed(&buf[..n], &mut decoder, &mut items) {
                    return End::Broken(e);
                }
                ctx.state.borrow_mut().on_items(ctx.idx, &mut items, now);
                if decoder.is_done() {
                    return End::Broken("the response body ended".to_owned());
                }
            }
        }
    }
}

/// A worker's command loop, on the current thread.
struct Worker {
    state: Option<Rc<RefCell<State>>>,
    control: watch::Sender<Control>,
}

impl Worker {
    async fn handle(&mut self, command: Command) -> (Reply, bool) {
        match command {
            Command::Connect {
                endpoints,
                data_format,
                lanes,
                count,
                source,
                concurrency,
                timeout_ms,
                topics,
            } => {
                if self.state.is_some() {
                    return (Reply::Error("already connected".to_owned()), false);
                }
                if endpoints.is_empty() {
                    return (Reply::Error("no endpoint to connect to".to_owned()), false);
                }
                let n = usize::try_from(count).unwrap_or(0);
                let state = Rc::new(RefCell::new(State::new(
                    n,
                    data_format,
                    lanes,
                    source,
                    topics.as_ref(),
                )));
                self.state = Some(state.clone());
                let endpoints: Vec<Rc<Endpoint>> = endpoints.into_iter().map(Rc::new).collect();
                let gate = Rc::new(Semaphore::new(
                    usize::try_from(concurrency.max(1)).unwrap_or(1),
                ));
                for idx in 0..n {
                    let endpoint = endpoints[idx % endpoints.len()].clone();
                    // In a topic workload each subscriber has its own path.
                    let (endpoint, group) = match &topics {
                        Some(t) => {
                            let index = t.first_index + u32::try_from(idx).unwrap_or(u32::MAX);
                            let path = t.routes.subscribe_path(&t.plan.follows(index));
                            (
                                Rc::new(Endpoint {
                                    addr: endpoint.addr,
                                    path,
                                }),
                                t.plan.group_of(index).0,
                            )
                        }
                        None => (endpoint, 0),
                    };
                    let ctx = Ctx {
                        idx,
                        group,
                        endpoint,
                        source,
                        state: state.clone(),
                        gate: gate.clone(),
                    };
                    tokio::task::spawn_local(subscriber(ctx, self.control.subscribe()));
                }
                let deadline = Instant::now() + Duration::from_millis(timeout_ms);
                loop {
                    let done = {
                        let s = state.borrow();
                        s.initial_ok + s.initial_failed >= count
                    };
                    if done || Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let s = state.borrow();
                (
                    Reply::Connected {
                        ok: s.initial_ok,
                        failed: count - s.initial_ok,
                        first_error: s.first_error.clone(),
                    },
                    false,
                )
            }
            Command::Status => (self.with_state(|s| Reply::Status(s.status())), false),
            Command::Measure { from_seq } => (
                self.with_state(|s| {
                    s.start_measure(from_seq);
                    Reply::Done
                }),
                false,
            ),
            Command::Report { from_seq, to_seq } => (
                self.with_state(|s| Reply::Report(s.report(from_seq, to_seq))),
                false,
            ),
            Command::Reconnect {
                behind,
                caught_up_seq,
            } => {
                let reply = self.with_state(|s| {
                    s.reconnect_at = Some(Instant::now());
                    s.caught_up_seq = Some(caught_up_seq);
                    s.catch_up.reset();
                    Reply::Done
                });
                self.control.send_modify(|c| {
                    c.generation += 1;
                    c.behind = behind;
                });
                (reply, false)
            }
            Command::Rejoin { group, after_ms } => {
                self.control.send_modify(|c| {
                    c.rejoin += 1;
                    c.rejoin_group = group;
                    c.rejoin_after_ms = after_ms;
                });
                (Reply::Done, false)
            }
            Command::Stall { count } => {
                self.control.send_modify(|c| c.stall_below = count);
                (Reply::Done, false)
            }
            Command::Quit => {
                self.control.send_modify(|c| c.quit = true);
                (Reply::Done, true)
            }
        }
    }

    fn with_state(&self, f: impl FnOnce(&mut State) -> Reply) -> Reply {
        match &self.state {
            Some(state) => f(&mut state.borrow_mut()),
            None => Reply::Error("no subscribers yet: send Connect first".to_owned()),
        }
    }
}

/// Runs a worker process: reads commands from stdin, answers on stdout,
/// until [`Command::Quit`] or the end of stdin.
///
/// # Errors
/// When the runtime cannot start or stdout cannot be written.
pub fn run() -> anyhow::Result<()> {
    if let Err(e) = crate::raise_nofile_limit() {
        tracing::warn!("cannot raise the open files limit: {e}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let (control, _) = watch::channel(Control::default());
        let mut worker = Worker {
            state: None,
            control,
        };
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut stdout = tokio::io::stdout();
        while let Some(line) = lines.next_line().await? {
            let (reply, quit) = match serde_json::from_str::<Command>(&line) {
                Ok(command) => worker.handle(command).await,
                Err(e) => (Reply::Error(format!("bad command: {e}")), false),
            };
            let mut out = serde_json::to_vec(&reply)?;
            out.push(b'\n');
            stdout.write_all(&out).await?;
            stdout.flush().await?;
            if quit {
                break;
            }
        }
        Ok(())
    })
}
