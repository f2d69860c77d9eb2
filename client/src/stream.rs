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
//! When the browser gives up on a connection (`readyState` CLOSED, e.g. after
//! a 503), the hook opens a new one after a growing delay, passing the last id
//! seen as `?lastEventId=` so the server replays what was missed. That id is
//! the last of any event the stream carried: an ordinary event, a reset
//! notice, or a `position` event, which is how a quiet or filtered stream
//! keeps its place (the browser's own reconnect sends the same id).
//!
//! The hook also feeds the [`Inspector`]: each event's latency (against the
//! clock offset from `GET /time`, probed when the stream connects and every
//! minute), bulk arrivals, the connection's timeline, the recording, and
//! what the other tabs of this page say over a `BroadcastChannel` about
//! their streams (for the connection limit). Its figures are copied into
//! signals at the quarter-second tick.

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

use crate::clock::{ClockOffset, Probe};
use crate::conn_limit::{Announcement, ANNOUNCE_EVERY_MS, CHANNEL};
use crate::feed::{Feed, RateMeter, Row, MAX_ROWS};
use crate::inspector::{Insight, Inspector};
use crate::latency::Chart;
use crate::record::Kind;
use crate::timeline::{open_text, opening_text, Entry, Happening};
use crate::topic::{stream_url, TopicChoice};

/// How often the clocks (rate, time since last event) are refreshed.
const TICK: Duration = Duration::from_millis(250);
/// The window the events-per-second figure averages over.
const RATE_WINDOW_MS: f64 = 3000.0;
/// First delay before reopening a connection the browser closed for good.
const MIN_BACKOFF_MS: u64 = 1000;
/// Longest delay between such attempts.
const MAX_BACKOFF_MS: u64 = 30_000;
/// The list is redrawn at most this often. Laying out and painting a list
/// of hundreds of rows costs the browser far more than taking the events
/// in: at 1,000 events a second, redrawing it every frame leaves the page
/// no time for anything else, ten times a second keeps it responsive.
const ROWS_EVERY_MS: f64 = 100.0;
/// `GET /time` round trips per estimate of the clock offset.
const CLOCK_PROBES: u32 = 5;
/// The clock offset is estimated again this often.
const CLOCK_EVERY_MS: f64 = 60_000.0;

/// The connection's state, as shown in the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Opening the first connection of this subscription.
    Connecting,
    /// Connected: events flow.
    Live,
    /// The connection dropped; the browser is trying again.
    Reconnecting,
    /// The browser gave up on the connection; the page will open a new one.
    Closed,
}

impl ConnState {
    /// A stable name, used as the status element's `data-state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting => "reconnecting",
            Self::Closed => "closed",
        }
    }

    /// What a person reads.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connecting => "Connecting…",
            Self::Live => "Live",
            Self::Reconnecting => "Reconnecting…",
            Self::Closed => "Closed",
        }
    }
}

/// The counters shown beside the state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Events taken into the list since the page opened (duplicates excluded).
    pub received: u64,
    /// Replayed events dropped because they were already shown.
    pub duplicates: u64,
    /// Times a connection came back after having been live.
    pub reconnects: u64,
    /// Events per second over the last few seconds.
    pub per_second: f64,
    /// The id of the last event or notice taken in.
    pub last_id: Option<EventId>,
    /// Milliseconds since the last event or the connection's opening.
    pub since_last_ms: Option<f64>,
    /// Milliseconds until the page opens a new connection, when it waits to.
    pub retry_in_ms: Option<f64>,
    /// What the open connection is subscribed to (`None` until it opens).
    pub subscription: Option<String>,
    /// The reconnection delay the server advises, in ms (its `position`
    /// events repeat the `retry:` field, which `EventSource` hides).
    pub advised_retry_ms: Option<u64>,
}

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
                let mut inner = shared.inner.borrow_mut();
                if let Some(retry) = inner.retry.take() {
                    retry.clear();
                }
                inner.retry_at = None;
                inner.connection = None;
                inner.backoff_ms = MIN_BACKOFF_MS;
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
                inner.rows_dirty = true;
                inner.force_rows = true;
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
        channel: RefCell::new(None),
        tab_id: format!("{:x}", (js_sys::Math::random() * 1e15) as u64),
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
        let mut inner = shared.inner.borrow_mut();
        if let Some(retry) = inner.retry.take() {
            retry.clear();
        }
        inner.connection = None;
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

/// The channel the tabs of this page share, and the callback it calls.
type TabChannel = (web_sys::BroadcastChannel, Closure<dyn FnMut(MessageEvent)>);

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
    /// The channel the tabs of this page announce their streams on, and
    /// its message callback.
    channel: RefCell<Option<TabChannel>>,
    /// This tab's random id on the channel.
    tab_id: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

struct Inner {
    feed: Feed,
    topic: TopicChoice,
    connection: Option<Connection>,
    retry: Option<TimeoutHandle>,
    retry_at: Option<f64>,
    backoff_ms: u64,
    state: ConnState,
    published_state: Option<ConnState>,
    /// This subscription has been live at least once.
    opened: bool,
    /// The current connection is open.
    open: bool,
    received: u64,
    reconnects: u64,
    /// The id of the last event of any kind this subscription received:
    /// where a reopened stream resumes.
    resume: Option<EventId>,
    /// The reconnection delay the server advises (from `position`).
    retry_ms: Option<u64>,
    last_activity: Option<f64>,
    rate: RateMeter,
    per_second: f64,
    rows_dirty: bool,
    /// Redraw the rows even while paused (after Clear).
    force_rows: bool,
    frame_pending: bool,
    /// When the rows were last redrawn.
    rows_drawn_at: f64,
    /// A redraw of the rows waits for [`ROWS_EVERY_MS`] to pass.
    redraw_pending: bool,
    /// The inspector's state.
    inspect: Inspector,
    /// A clock estimate is under way.
    probing: bool,
    /// When the clock was last estimated.
    probed_at: Option<f64>,
    /// The connection failed since it last opened (its next open is a
    /// resume with `Last-Event-ID`).
    after_error: bool,
    /// When this tab last announced its streams.
    announced_at: f64,
}

impl Inner {
    fn new() -> Self {
        Self {
            feed: Feed::new(MAX_ROWS),
            topic: TopicChoice::All,
            connection: None,
            retry: None,
            retry_at: None,
            backoff_ms: MIN_BACKOFF_MS,
            state: ConnState::Connecting,
            published_state: None,
            opened: false,
            open: false,
            received: 0,
            reconnects: 0,
            resume: None,
            retry_ms: None,
            last_activity: None,
            rate: RateMeter::new(RATE_WINDOW_MS),
            per_second: 0.0,
            rows_dirty: false,
            force_rows: false,
            frame_pending: false,
            rows_drawn_at: 0.0,
            redraw_pending: false,
            inspect: Inspector::new(),
            probing: false,
            probed_at: None,
            after_error: false,
            announced_at: 0.0,
        }
    }
}

/// One `EventSource` and the callbacks it holds; dropping it closes it.
struct Connection {
    source: EventSource,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
    on_reset: Closure<dyn FnMut(MessageEvent)>,
    on_position: Closure<dyn FnMut(MessageEvent)>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.source.set_onopen(None);
        self.source.set_onmessage(None);
        self.source.set_onerror(None);
        let _ = self.source.remove_event_listener_with_callback(
            RESET_EVENT,
            self.on_reset.as_ref().unchecked_ref(),
        );
        let _ = self.source.remove_event_listener_with_callback(
            POSITION_EVENT,
            self.on_position.as_ref().unchecked_ref(),
        );
        self.source.close();
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
        if let Some(retry) = inner.retry.take() {
            retry.clear();
        }
        inner.retry_at = None;
        inner.connection = None;
        inner.topic = choice;
        inner.feed.restart();
        inner.resume = None;
        inner.opened = false;
        inner.open = false;
        inner.backoff_ms = MIN_BACKOFF_MS;
        inner.state = ConnState::Connecting;
        inner.rows_dirty = true;
        inner.force_rows = true;
        inner.after_error = false;
        inner.inspect.restart();
    }
    shared.set_refused.set(None);
    open(shared, None);
    publish(shared);
}

/// Opens an `EventSource` for the current topic, resuming after `resume`.
fn open(shared: &Rc<Shared>, resume: Option<EventId>) {
    let url = stream_url(&shared.inner.borrow().topic, resume);
    {
        let mut inner = shared.inner.borrow_mut();
        let at = now();
        inner.inspect.connecting(at);
        let text = opening_text(&url, resume.map(|id| id.to_string()).as_deref());
        inner.inspect.timeline.add(at, Happening::Opening, text);
    }
    let source = match EventSource::new(&url) {
        Ok(source) => source,
        Err(err) => {
            leptos::logging::warn!("could not open {url}: {err:?}");
            shared.inner.borrow_mut().state = ConnState::Closed;
            schedule_retry(shared);
            return;
        }
    };
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
    shared.inner.borrow_mut().connection = Some(Connection {
        source,
        _on_open: on_open,
        _on_message: on_message,
        _on_error: on_error,
        on_reset,
        on_position,
    });
}

fn opened(shared: &Rc<Shared>) {
    {
        let mut inner = shared.inner.borrow_mut();
        if inner.opened {
            inner.reconnects += 1;
        }
        inner.opened = true;
        inner.open = true;
        inner.backoff_ms = MIN_BACKOFF_MS;
        inner.state = ConnState::Live;
        let at = now();
        inner.last_activity = Some(at);
        inner.inspect.opened(at);
        // The browser's own reconnect sent Last-Event-ID: the last id it saw.
        let after_error = std::mem::take(&mut inner.after_error);
        let resume = inner.resume.map(|id| id.to_string());
        let text = open_text(after_error, resume.as_deref());
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
        inner.last_activity = Some(at);
        inner.resume = id.or(inner.resume);
        let arrival = inner.inspect.event(at, &parsed.time);
        if inner.feed.push_event(id, parsed, data, arrival) {
            inner.received += 1;
            inner.rows_dirty = true;
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
        inner.last_activity = Some(at);
        inner.resume = id.or(inner.resume);
        let reason = crate::feed::reason_name(notice.reason);
        inner.inspect.reset(at, &data, reason);
        inner.feed.push_reset(id, notice, data);
        inner.rows_dirty = true;
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
    inner.resume = position.id.parse::<EventId>().ok().or(inner.resume);
    inner.retry_ms = Some(position.retry_ms);
}

fn failed(shared: &Rc<Shared>) {
    let (closed, was_open) = {
        let mut inner = shared.inner.borrow_mut();
        let was_open = inner.open;
        inner.open = false;
        let closed = inner
            .connection
            .as_ref()
            .is_some_and(|c| c.source.ready_state() == EventSource::CLOSED);
        inner.state = if closed {
            ConnState::Closed
        } else if inner.opened {
            ConnState::Reconnecting
        } else {
            ConnState::Connecting
        };
        let at = now();
        inner.inspect.lost(at);
        let resume = inner
            .resume
            .map_or_else(|| "none".to_owned(), |id| id.to_string());
        let (what, text) = if closed {
            (
                Happening::Closed,
                "the browser closed the stream for good; the page opens a new one".to_owned(),
            )
        } else {
            inner.after_error = true;
            (
                Happening::Error,
                format!("connection lost; the browser reconnects with Last-Event-ID: {resume}"),
            )
        };
        // An error before the first open repeats while the browser retries.
        if was_open || closed {
            inner.inspect.timeline.add(at, what, text);
        }
        (closed, was_open)
    };
    if was_open {
        announce(shared);
    }
    if closed && !was_open {
        // Refused at open: `EventSource` hides the status, so ask once.
        probe_refusal(shared);
    } else if closed {
        schedule_retry(shared);
    }
    schedule_frame(shared);
}

/// Asks for the stream with `fetch` to see why it was refused: a 401 or 403
/// is shown and not retried; anything else is retried as usual.
fn probe_refusal(shared: &Rc<Shared>) {
    let url = {
        let inner = shared.inner.borrow();
        stream_url(&inner.topic, inner.resume.or_else(|| inner.feed.last_id()))
    };
    let weak = Rc::downgrade(shared);
    leptos::task::spawn_local(async move {
        let refusal = crate::api::stream_refusal(&url).await;
        with_shared(&weak, |shared| match refusal {
            Some((status, message)) => {
                {
                    let mut inner = shared.inner.borrow_mut();
                    inner.connection = None;
                    inner.state = ConnState::Closed;
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
            None => {
                schedule_retry(shared);
                schedule_frame(shared);
            }
        });
    });
}

/// Opens a new connection after the current back-off delay.
fn schedule_retry(shared: &Rc<Shared>) {
    let mut inner = shared.inner.borrow_mut();
    if inner.retry.is_some() {
        return;
    }
    let delay = inner.backoff_ms;
    inner.backoff_ms = (delay * 2).min(MAX_BACKOFF_MS);
    inner.retry_at = Some(now() + delay as f64);
    let weak = Rc::downgrade(shared);
    inner.retry = set_timeout_with_handle(
        move || with_shared(&weak, reopen),
        Duration::from_millis(delay),
    )
    .ok();
}

fn reopen(shared: &Rc<Shared>) {
    let resume = {
        let mut inner = shared.inner.borrow_mut();
        inner.retry = None;
        inner.retry_at = None;
        inner.connection = None;
        inner.state = if inner.opened {
            ConnState::Reconnecting
        } else {
            ConnState::Connecting
        };
        inner.resume.or_else(|| inner.feed.last_id())
    };
    open(shared, resume);
    schedule_frame(shared);
}

fn schedule_frame(shared: &Rc<Shared>) {
    {
        let mut inner = shared.inner.borrow_mut();
        if inner.frame_pending {
            return;
        }
        inner.frame_pending = true;
    }
    let weak = Rc::downgrade(shared);
    request_animation_frame(move || {
        with_shared(&weak, |shared| {
            shared.inner.borrow_mut().frame_pending = false;
            publish(shared);
        });
    });
}

fn tick(shared: &Rc<Shared>) {
    let (announce_now, probe_now) = {
        let mut inner = shared.inner.borrow_mut();
        let at = now();
        let total = inner.received;
        inner.per_second = inner.rate.sample(at, total);
        let announce_now = at - inner.announced_at >= ANNOUNCE_EVERY_MS;
        let probe_now = inner.probed_at.is_some_and(|t| at - t >= CLOCK_EVERY_MS);
        (announce_now, probe_now)
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
        let open = inner.open;
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

/// Estimates the clock offset from a few `GET /time` round trips, one
/// after the other, and learns the HTTP version on the way.
fn probe_clock(shared: &Rc<Shared>) {
    {
        let mut inner = shared.inner.borrow_mut();
        if inner.probing {
            return;
        }
        inner.probing = true;
    }
    let weak = Rc::downgrade(shared);
    leptos::task::spawn_local(async move {
        let mut probes: Vec<Probe> = Vec::new();
        let mut protocol = None;
        for _ in 0..CLOCK_PROBES {
            match crate::api::probe_time().await {
                Some((probe, hop)) => {
                    probes.push(probe);
                    protocol = hop.or(protocol);
                }
                None => break,
            }
        }
        with_shared(&weak, |shared| {
            {
                let mut inner = shared.inner.borrow_mut();
                inner.probing = false;
                inner.probed_at = Some(now());
                if let Some(offset) = ClockOffset::estimate(&probes) {
                    inner.inspect.offset = Some(offset);
                }
                if protocol.is_some() {
                    inner.inspect.protocol = protocol;
                }
            }
            refresh_insight(shared);
        });
    });
}

/// Joins the channel the tabs of this page announce their streams on,
/// and says hello so that the others announce themselves.
fn listen_to_tabs(shared: &Rc<Shared>) {
    let Ok(channel) = web_sys::BroadcastChannel::new(CHANNEL) else {
        return;
    };
    let weak = Rc::downgrade(shared);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(text) = event.data().as_string() else {
            return;
        };
        let Some(announcement) = Announcement::decode(&text) else {
            return;
        };
        with_shared(&weak, |shared| {
            let answer = shared
                .inner
                .borrow_mut()
                .inspect
                .peers
                .heard(announcement, now());
            if answer {
                announce(shared);
            }
        });
    });
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let _ = channel.post_message(&Announcement::Hello.encode().into());
    *shared.channel.borrow_mut() = Some((channel, on_message));
}

/// Tells the other tabs how many streams this tab holds open.
fn announce(shared: &Rc<Shared>) {
    let open = {
        let mut inner = shared.inner.borrow_mut();
        inner.announced_at = now();
        u32::from(inner.open)
    };
    post(
        shared,
        &Announcement::Streams {
            id: shared.tab_id.clone(),
            open,
        },
    );
}

/// Tells the other tabs this one is going away.
fn say_bye(shared: &Rc<Shared>) {
    post(
        shared,
        &Announcement::Bye {
            id: shared.tab_id.clone(),
        },
    );
}

fn post(shared: &Rc<Shared>, announcement: &Announcement) {
    if let Some((channel, _)) = shared.channel.borrow().as_ref() {
        let _ = channel.post_message(&announcement.encode().into());
    }
}

/// Copies the plain state into the signals the page renders from.
fn publish(shared: &Rc<Shared>) {
    let paused = shared.paused.get_untracked();
    let (state, stats, rows, later) = {
        let mut inner = shared.inner.borrow_mut();
        let at = now();
        let stats = Stats {
            received: inner.received,
            duplicates: inner.feed.duplicates(),
            reconnects: inner.reconnects,
            per_second: inner.per_second,
            last_id: inner.feed.last_id(),
            since_last_ms: inner.last_activity.map(|t| at - t),
            retry_in_ms: inner.retry_at.map(|t| (t - at).max(0.0)),
            subscription: inner.open.then(|| inner.topic.label().to_owned()),
            advised_retry_ms: inner.retry_ms,
        };
        let due = inner.rows_dirty && (!paused || inner.force_rows);
        let waited = at - inner.rows_drawn_at;
        // A clock that went back counts as time enough.
        let soon = (0.0..ROWS_EVERY_MS).contains(&waited) && !inner.force_rows;
        let rows = (due && !soon).then(|| {
            inner.rows_dirty = false;
            inner.force_rows = false;
            inner.rows_drawn_at = at;
            inner.feed.newest_first()
        });
        let later = (due && soon && !inner.redraw_pending).then(|| {
            inner.redraw_pending = true;
            ROWS_EVERY_MS - waited
        });
        let state = (inner.published_state != Some(inner.state)).then_some(inner.state);
        inner.published_state = Some(inner.state);
        (state, stats, rows, later)
    };
    if let Some(wait_ms) = later {
        let weak = Rc::downgrade(shared);
        set_timeout(
            move || {
                with_shared(&weak, |shared| {
                    shared.inner.borrow_mut().redraw_pending = false;
                    schedule_frame(shared);
                });
            },
            Duration::from_millis(wait_ms.ceil() as u64),
        );
    }
    if let Some(state) = state {
        shared.set_state.set(state);
    }
    shared.set_stats.set(stats);
    if let Some(rows) = rows {
        shared.set_rows.set(rows);
    }
}
