//! The live connection as signals.
//!
//! [`use_stream`] keeps one browser `EventSource` open on `/stream` for the
//! chosen topic (the browser parses the event stream and reconnects with
//! `Last-Event-ID` on its own), decodes each event's JSON as
//! [`shared::ServerEvent`] or [`shared::ResetNotice`], and feeds the bounded
//! [`Feed`]. Arrivals only touch plain Rust state; the signals the page
//! renders from are refreshed at most once per animation frame (and by a
//! quarter-second timer for the clocks), and the list at most ten times a
//! second, so a fast stream costs a few redraws, not one per event.
//!
//! A stream with no id to resume after (the first, the one after a topic
//! change) starts with the newest events of its choice (`?last=N`): as
//! many as the list keeps, within the server's `history_per_topic`, the
//! largest `last` it accepts, which `GET /topics` tells. The page asks for
//! it before the first such open (and again before a reopen with no id: the
//! server may have restarted with a smaller one), so it never sends a `last`
//! the server refuses; when it cannot learn it, the stream starts live.
//!
//! When the browser gives up on a connection (`readyState` CLOSED, e.g. after
//! a 503), the hook opens a new one after a growing delay, passing the last id
//! seen as `?lastEventId=` so the server replays what was missed. That id is
//! the last of any event the stream carried: an ordinary event, a reset
//! notice, or a `position` event, which is how a quiet or filtered stream
//! keeps its place (the browser's own reconnect sends the same id as
//! `Last-Event-ID`, which makes the URL's `last` count for nothing).
//!
//! The hook also feeds the [`Inspector`]: each event's latency (against the
//! clock offset from `GET /time`, probed when the stream connects and every
//! minute), bulk arrivals, the connection's timeline, the recording, and
//! what the other tabs of this page say over a `BroadcastChannel` about
//! their streams (for the connection limit). Its figures are copied into
//! signals at the quarter-second tick.

mod clock_probe;
mod link;
mod redraw;
mod stats;
mod tabs;

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use leptos::prelude::*;
use send_wrapper::SendWrapper;
use shared::{EventId, POSITION_EVENT, RESET_EVENT};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Event, EventSource, MessageEvent};

use self::clock_probe::{probe_clock, ClockProbe};
pub use self::link::ConnState;
use self::link::{Connection, Link};
use self::redraw::{Redraw, Rows};
use self::stats::Counts;
pub use self::stats::Stats;
use self::tabs::{announce, listen_to_tabs, say_bye, Tabs};
use crate::feed::{Feed, Row, MAX_ROWS};
use crate::inspector::{Insight, Inspector};
use crate::latency::Chart;
use crate::record::Kind;
use crate::timeline::{open_text, opening_text, Entry, Happening};
use crate::topic::{stream_url, Start, TopicChoice};

/// How often the clocks (rate, time since last event) are refreshed.
const TICK: Duration = Duration::from_millis(250);

/// The live stream, for components: copyable handles to its signals.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    /// The connection's state.
    pub state: ReadSignal<ConnState>,
    /// The rows to show, newest first (frozen while paused).
    pub rows: ReadSignal<Vec<Arc<Row>>>,
    /// The counters.
    pub stats: ReadSignal<Stats>,
    /// Why the server refused the stream (a 401 or 403, with its message):
    /// the page then stops retrying until the topic or the token changes.
    pub refused: ReadSignal<Option<String>>,
    /// The inspector's figures: latency, clock, transport diagnosis.
    pub insight: ReadSignal<Insight>,
    /// The latency chart of the last minutes.
    pub chart: ReadSignal<Chart>,
    /// The connection's timeline, newest first.
    pub timeline: ReadSignal<Vec<Entry>>,
    shared: StoredValue<Rc<Shared>, LocalStorage>,
}

impl Stream {
    /// Opens the stream again from where it was, after the token changed.
    pub fn reopen(&self) {
        self.shared.with_value(|shared| {
            {
                shared.inner.borrow_mut().link.cancel_and_rewind();
            }
            shared.set_refused.set(None);
            reopen(shared);
        });
    }

    /// Starts recording what the list takes in (dropping an earlier
    /// recording).
    pub fn start_recording(&self) {
        self.shared.with_value(|shared| {
            shared.inner.borrow_mut().inspect.start_recording(now());
            refresh_insight(shared);
        });
    }

    /// Stops the recording and returns it as NDJSON.
    pub fn stop_recording(&self) -> Option<String> {
        self.shared.with_value(|shared| {
            let text = shared
                .inner
                .borrow_mut()
                .inspect
                .stop_recording()
                .map(str::to_owned);
            refresh_insight(shared);
            text
        })
    }

    /// Empties the list; events already seen still will not come back.
    pub fn clear(&self) {
        self.shared.with_value(|shared| {
            {
                let mut inner = shared.inner.borrow_mut();
                inner.feed.clear_rows();
                inner.redraw.rows_replaced();
            }
            publish(shared);
        });
    }
}

/// Opens the stream for `topic` (reopening it whenever the choice changes)
/// and returns its signals. Rendering of new rows stops while `paused` is
/// true; receiving and counting go on. The connection is closed when the
/// calling component is cleaned up.
pub fn use_stream(topic: Signal<TopicChoice>, paused: Signal<bool>) -> Stream {
    let (state, set_state) = signal(ConnState::Connecting);
    let (rows, set_rows) = signal(Vec::new());
    let (stats, set_stats) = signal(Stats::default());
    let (refused, set_refused) = signal(None::<String>);
    let (insight, set_insight) = signal(Insight::default());
    let (chart, set_chart) = signal(Chart::default());
    let (timeline, set_timeline) = signal(Vec::new());
    let shared = Rc::new(Shared {
        inner: RefCell::new(Inner::new()),
        set_state,
        set_rows,
        set_stats,
        set_refused,
        set_insight,
        set_chart,
        set_timeline,
        paused,
        tabs: Tabs::new(),
    });
    listen_to_tabs(&shared);
    probe_clock(&shared);

    Effect::new({
        let shared = Rc::clone(&shared);
        move |_| {
            let choice = topic.get();
            subscribe(&shared, choice);
        }
    });
    Effect::new({
        let shared = Rc::clone(&shared);
        move |_| {
            if !paused.get() {
                publish(&shared);
            }
        }
    });
    let ticker = set_interval_with_handle(
        {
            let weak = Rc::downgrade(&shared);
            move || with_shared(&weak, tick)
        },
        TICK,
    )
    .ok();

    // A tab going away says so, so that the others stop counting its stream.
    let leaving = {
        let weak = Rc::downgrade(&shared);
        Closure::<dyn FnMut(Event)>::new(move |_: Event| with_shared(&weak, say_bye))
    };
    if let Some(window) = web_sys::window() {
        let _ =
            window.add_event_listener_with_callback("pagehide", leaving.as_ref().unchecked_ref());
    }
    let leaving = SendWrapper::new(leaving);
    let owned = SendWrapper::new(Rc::clone(&shared));
    on_cleanup(move || {
        if let Some(ticker) = ticker {
            ticker.clear();
        }
        if let Some(window) = web_sys::window() {
            let _ = window
                .remove_event_listener_with_callback("pagehide", leaving.as_ref().unchecked_ref());
        }
        let shared = owned.take();
        say_bye(&shared);
        shared.inner.borrow_mut().link.cancel();
    });

    Stream {
        state,
        rows,
        stats,
        refused,
        insight,
        chart,
        timeline,
        shared: StoredValue::new_local(shared),
    }
}

/// Signal writers plus the plain state the browser callbacks update.
struct Shared {
    inner: RefCell<Inner>,
    set_state: WriteSignal<ConnState>,
    set_rows: WriteSignal<Vec<Arc<Row>>>,
    set_stats: WriteSignal<Stats>,
    set_refused: WriteSignal<Option<String>>,
    set_insight: WriteSignal<Insight>,
    set_chart: WriteSignal<Chart>,
    set_timeline: WriteSignal<Vec<Entry>>,
    paused: Signal<bool>,
    /// This tab on the channel the tabs of this page share.
    tabs: Tabs,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The plain state the browser callbacks update, in its parts.
struct Inner {
    /// The rows, and which ids were seen.
    feed: Feed,
    /// What the subscription follows.
    topic: TopicChoice,
    /// The connection, where it resumes, and the back-off.
    link: Link,
    /// The counters.
    counts: Counts,
    /// When the signals are refreshed.
    redraw: Redraw,
    /// The inspector's state.
    inspect: Inspector,
    /// The clock estimate's schedule.
    clock: ClockProbe,
    /// The largest `last` the server accepts (its `history_per_topic`),
    /// once `GET /topics` told it.
    max_last: Option<u64>,
}

impl Inner {
    fn new() -> Self {
        Self {
            feed: Feed::new(MAX_ROWS),
            topic: TopicChoice::All,
            link: Link::new(),
            counts: Counts::new(),
            redraw: Redraw::default(),
            inspect: Inspector::new(),
            clock: ClockProbe::default(),
            max_last: None,
        }
    }
}

fn now() -> f64 {
    js_sys::Date::now()
}

fn with_shared(weak: &Weak<Shared>, f: impl FnOnce(&Rc<Shared>)) {
    if let Some(shared) = weak.upgrade() {
        f(&shared);
    }
}

/// Starts a fresh subscription: forgets the old rows and position.
fn subscribe(shared: &Rc<Shared>, choice: TopicChoice) {
    {
        let mut inner = shared.inner.borrow_mut();
        inner.link.restart();
        inner.topic = choice;
        inner.feed.restart();
        inner.redraw.rows_replaced();
        inner.inspect.restart();
    }
    shared.set_refused.set(None);
    open_fresh(shared);
    publish(shared);
}

/// Opens a stream with no id to resume after: with the newest events, as
/// many as the server accepts, asked with `GET /topics` first when not
/// known (an answer for an attempt that was replaced meanwhile is dropped).
fn open_fresh(shared: &Rc<Shared>) {
    let (known, attempt) = {
        let mut inner = shared.inner.borrow_mut();
        // Connecting from now: the wait for the answer counts too.
        inner.inspect.connecting(now());
        (inner.max_last, inner.link.begin_attempt())
    };
    if known.is_some() {
        open(shared, Start::new(None, known));
        return;
    }
    let weak = Rc::downgrade(shared);
    leptos::task::spawn_local(async move {
        let max_last = crate::api::topics(1)
            .await
            .map(|page| page.history_per_topic);
        with_shared(&weak, |shared| {
            {
                let mut inner = shared.inner.borrow_mut();
                if !inner.link.is_current(attempt) {
                    return;
                }
                inner.max_last = max_last.as_ref().ok().copied();
            }
            if let Err(err) = &max_last {
                let text = format!("GET /topics failed ({err}): no last events, live from now");
                shared
                    .inner
                    .borrow_mut()
                    .inspect
                    .timeline
                    .add(now(), Happening::Opening, text);
            }
            open(shared, Start::new(None, max_last.ok()));
            schedule_frame(shared);
        });
    });
}

/// Opens an `EventSource` for the current topic, starting at `start`.
fn open(shared: &Rc<Shared>, start: Start) {
    let url = stream_url(&shared.inner.borrow().topic, start);
    {
        let mut inner = shared.inner.borrow_mut();
        inner.link.begin_attempt();
        let at = now();
        inner.inspect.connecting(at);
        let text = opening_text(&url, start);
        inner.inspect.timeline.add(at, Happening::Opening, text);
    }
    let source = match EventSource::new(&url) {
        Ok(source) => source,
        Err(err) => {
            leptos::logging::warn!("could not open {url}: {err:?}");
            shared.inner.borrow_mut().link.state = ConnState::Closed;
            schedule_retry(shared);
            return;
        }
    };
    let connection = connect(shared, source);
    shared.inner.borrow_mut().link.connection = Some(connection);
}

/// Sets `source`'s callbacks, each calling into the shared state.
fn connect(shared: &Rc<Shared>, source: EventSource) -> Connection {
    let weak = Rc::downgrade(shared);
    let on_open = Closure::<dyn FnMut(Event)>::new({
        let weak = weak.clone();
        move |_: Event| with_shared(&weak, opened)
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let weak = weak.clone();
        move |event: MessageEvent| with_shared(&weak, |shared| message(shared, &event))
    });
    let on_reset = Closure::<dyn FnMut(MessageEvent)>::new({
        let weak = weak.clone();
        move |event: MessageEvent| with_shared(&weak, |shared| reset(shared, &event))
    });
    let on_position = Closure::<dyn FnMut(MessageEvent)>::new({
        let weak = weak.clone();
        move |event: MessageEvent| with_shared(&weak, |shared| position(shared, &event))
    });
    let on_error = Closure::<dyn FnMut(Event)>::new(move |_: Event| with_shared(&weak, failed));
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    for (name, callback) in [(RESET_EVENT, &on_reset), (POSITION_EVENT, &on_position)] {
        if let Err(err) =
            source.add_event_listener_with_callback(name, callback.as_ref().unchecked_ref())
        {
            leptos::logging::warn!("could not listen for {name} events: {err:?}");
        }
    }
    Connection {
        source,
        _on_open: on_open,
        _on_message: on_message,
        _on_error: on_error,
        on_reset,
        on_position,
    }
}

fn opened(shared: &Rc<Shared>) {
    {
        let mut inner = shared.inner.borrow_mut();
        let at = now();
        let opened = inner.link.opened(at);
        if opened.reconnect {
            inner.counts.reconnects += 1;
        }
        inner.inspect.opened(at);
        // The browser's own reconnect sent Last-Event-ID: the last id it saw.
        let resume = inner.link.resume.map(|id| id.to_string());
        let text = open_text(opened.after_error, resume.as_deref());
        inner.inspect.timeline.add(at, Happening::Open, text);
    }
    announce(shared);
    probe_clock(shared);
    schedule_frame(shared);
}

fn message(shared: &Rc<Shared>, event: &MessageEvent) {
    let Some(data) = event.data().as_string() else {
        return;
    };
    let parsed = match crate::decode::server_event(&data) {
        Ok(parsed) => parsed,
        Err(err) => {
            leptos::logging::warn!("ignoring an event that is not a ServerEvent ({err}): {data}");
            return;
        }
    };
    let id = event.last_event_id().parse::<EventId>().ok();
    {
        let mut inner = shared.inner.borrow_mut();
        let at = now();
        inner.link.heard(at, id);
        let arrival = inner.inspect.event(at, &parsed.time);
        if inner.feed.push_event(id, parsed, data, arrival) {
            inner.counts.received += 1;
            inner.redraw.rows_changed();
            // Recorded as taken in: a replayed duplicate is not.
            let Inner { feed, inspect, .. } = &mut *inner;
            if let Some(row) = feed.newest() {
                inspect.record(at, Kind::Event, &row.data);
            }
        }
    }
    schedule_frame(shared);
}

fn reset(shared: &Rc<Shared>, event: &MessageEvent) {
    let Some(data) = event.data().as_string() else {
        return;
    };
    let notice = match crate::decode::reset_notice(&data) {
        Ok(notice) => notice,
        Err(err) => {
            leptos::logging::warn!("ignoring a reset that is not a ResetNotice ({err}): {data}");
            return;
        }
    };
    let id = event.last_event_id().parse::<EventId>().ok();
    {
        let mut inner = shared.inner.borrow_mut();
        let at = now();
        inner.link.heard(at, id);
        let reason = crate::feed::reason_name(notice.reason);
        inner.inspect.reset(at, &data, reason);
        inner.feed.push_reset(id, notice, data);
        inner.redraw.rows_changed();
    }
    schedule_frame(shared);
}

/// A `position` event: the stream's place when no event of ours carried it.
fn position(shared: &Rc<Shared>, event: &MessageEvent) {
    let Some(data) = event.data().as_string() else {
        return;
    };
    let position = match crate::decode::stream_position(&data) {
        Ok(position) => position,
        Err(err) => {
            leptos::logging::warn!(
                "ignoring a position that is not a StreamPosition ({err}): {data}"
            );
            return;
        }
    };
    let mut inner = shared.inner.borrow_mut();
    let link = &mut inner.link;
    link.resume = position.id.parse::<EventId>().ok().or(link.resume);
    link.advised_retry_ms = Some(position.retry_ms);
}

fn failed(shared: &Rc<Shared>) {
    let failure = {
        let mut inner = shared.inner.borrow_mut();
        let closed = inner
            .link
            .connection
            .as_ref()
            .is_some_and(|c| c.source.ready_state() == EventSource::CLOSED);
        let failure = inner.link.failed(closed);
        let at = now();
        inner.inspect.lost(at);
        let resume = inner
            .link
            .resume
            .map_or_else(|| "none".to_owned(), |id| id.to_string());
        let (what, text) = if closed {
            (
                Happening::Closed,
                "the browser closed the stream for good; the page opens a new one".to_owned(),
            )
        } else {
            (
                Happening::Error,
                format!("connection lost; the browser reconnects with Last-Event-ID: {resume}"),
            )
        };
        // An error before the first open repeats while the browser retries.
        if failure.was_open || closed {
            inner.inspect.timeline.add(at, what, text);
        }
        failure
    };
    if failure.was_open {
        announce(shared);
    }
    if failure.closed && !failure.was_open {
        // Refused at open: `EventSource` hides the status, so ask once.
        probe_refusal(shared);
    } else if failure.closed {
        schedule_retry(shared);
    }
    schedule_frame(shared);
}

/// Asks for the stream with `fetch` to see why it was refused: a 401 or 403
/// is shown and not retried; anything else is retried as usual.
fn probe_refusal(shared: &Rc<Shared>) {
    let url = {
        let inner = shared.inner.borrow();
        let resume = inner.link.resume.or_else(|| inner.feed.last_id());
        stream_url(&inner.topic, Start::new(resume, inner.max_last))
    };
    let weak = Rc::downgrade(shared);
    leptos::task::spawn_local(async move {
        let refusal = crate::api::stream_refusal(&url).await;
        with_shared(&weak, |shared| match refusal {
            Some((status, message)) => refused(shared, status, &message),
            None => {
                schedule_retry(shared);
                schedule_frame(shared);
            }
        });
    });
}

/// The server refused the stream with `status` (401 or 403): shown, and
/// not retried until the topic or the token changes.
fn refused(shared: &Rc<Shared>, status: u16, message: &str) {
    {
        let mut inner = shared.inner.borrow_mut();
        inner.link.connection = None;
        inner.link.state = ConnState::Closed;
        inner.inspect.stopped();
        let text = format!("refused with {status}: {message}");
        inner.inspect.timeline.add(now(), Happening::Refused, text);
    }
    let what = if status == 401 {
        "Not allowed without a valid token"
    } else {
        "Not allowed with this token"
    };
    shared
        .set_refused
        .set(Some(format!("{what} ({status}): {message}")));
    schedule_frame(shared);
}

/// Opens a new connection after the current back-off delay.
fn schedule_retry(shared: &Rc<Shared>) {
    let mut inner = shared.inner.borrow_mut();
    let Some(delay) = inner.link.next_retry(now()) else {
        return;
    };
    let weak = Rc::downgrade(shared);
    let timer = set_timeout_with_handle(
        move || with_shared(&weak, reopen),
        Duration::from_millis(delay),
    )
    .ok();
    inner.link.retry_with(timer);
}

fn reopen(shared: &Rc<Shared>) {
    let resume = {
        let mut inner = shared.inner.borrow_mut();
        inner.link.reopening();
        inner.link.resume.or_else(|| inner.feed.last_id())
    };
    match resume {
        Some(id) => open(shared, Start::After(id)),
        None => {
            // Nothing came yet: the server may have been restarted with
            // a smaller `--history-per-topic` since it was asked.
            shared.inner.borrow_mut().max_last = None;
            open_fresh(shared);
        }
    }
    schedule_frame(shared);
}

fn schedule_frame(shared: &Rc<Shared>) {
    if !shared.inner.borrow_mut().redraw.ask_frame() {
        return;
    }
    let weak = Rc::downgrade(shared);
    request_animation_frame(move || {
        with_shared(&weak, |shared| {
            shared.inner.borrow_mut().redraw.frame_came();
            publish(shared);
        });
    });
}

fn tick(shared: &Rc<Shared>) {
    let (announce_now, probe_now) = {
        let mut inner = shared.inner.borrow_mut();
        let at = now();
        inner.counts.sample_rate(at);
        (shared.tabs.due(at), inner.clock.due(at))
    };
    if announce_now {
        announce(shared);
    }
    if probe_now {
        probe_clock(shared);
    }
    refresh_insight(shared);
    publish(shared);
}

/// Copies the inspector's figures into their signals; the chart when it
/// changed (once a second), the timeline when it did.
fn refresh_insight(shared: &Rc<Shared>) {
    let (insight, chart, timeline) = {
        let mut inner = shared.inner.borrow_mut();
        let at = now();
        let open = inner.link.is_open();
        let insight = inner.inspect.insight(at, open);
        (
            insight,
            inner.inspect.chart(at),
            inner.inspect.timeline.take_changes(),
        )
    };
    shared.set_insight.set(insight);
    if let Some(chart) = chart {
        shared.set_chart.set(chart);
    }
    if let Some(timeline) = timeline {
        shared.set_timeline.set(timeline);
    }
}

/// The counters as shown at `at`.
fn stats(inner: &Inner, at: f64) -> Stats {
    let link = &inner.link;
    Stats {
        received: inner.counts.received,
        duplicates: inner.feed.duplicates(),
        reconnects: inner.counts.reconnects,
        per_second: inner.counts.per_second,
        last_id: inner.feed.last_id(),
        since_last_ms: link.last_activity.map(|t| at - t),
        retry_in_ms: link.retry_at().map(|t| (t - at).max(0.0)),
        subscription: link.is_open().then(|| inner.topic.label().to_owned()),
        advised_retry_ms: link.advised_retry_ms,
    }
}

/// Copies the plain state into the signals the page renders from.
fn publish(shared: &Rc<Shared>) {
    let paused = shared.paused.get_untracked();
    let (state, stats, rows) = {
        let mut inner = shared.inner.borrow_mut();
        let at = now();
        let stats = stats(&inner, at);
        let rows = match inner.redraw.rows(at, paused) {
            Rows::Draw => Some(inner.feed.newest_first()),
            Rows::Later(wait_ms) => {
                redraw_rows_after(shared, wait_ms);
                None
            }
            Rows::Keep => None,
        };
        let state = inner.link.state;
        (inner.redraw.state_change(state), stats, rows)
    };
    if let Some(state) = state {
        shared.set_state.set(state);
    }
    shared.set_stats.set(stats);
    if let Some(rows) = rows {
        shared.set_rows.set(rows);
    }
}

/// Asks for a frame after `wait_ms`, when the rows may be drawn again.
fn redraw_rows_after(shared: &Rc<Shared>, wait_ms: f64) {
    let weak = Rc::downgrade(shared);
    set_timeout(
        move || {
            with_shared(&weak, |shared| {
                shared.inner.borrow_mut().redraw.later_came();
                schedule_frame(shared);
            });
        },
        Duration::from_millis(wait_ms.ceil() as u64),
    );
}
