//! The subscription's connection: its state, where it resumes, and the
//! back-off before the page opens a new one when the browser gave up.

use leptos::prelude::TimeoutHandle;
use shared::{EventId, POSITION_EVENT, RESET_EVENT};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Event, EventSource, MessageEvent};

/// First delay before reopening a connection the browser closed for good.
const MIN_BACKOFF_MS: u64 = 1000;
/// Longest delay between such attempts.
const MAX_BACKOFF_MS: u64 = 30_000;

/// The connection's state, as shown in the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnState {
    /// Opening the first connection of this subscription.
    #[default]
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

/// One `EventSource` and the callbacks it holds; dropping it closes it.
pub(super) struct Connection {
    pub(super) source: EventSource,
    pub(super) _on_open: Closure<dyn FnMut(Event)>,
    pub(super) _on_message: Closure<dyn FnMut(MessageEvent)>,
    pub(super) _on_error: Closure<dyn FnMut(Event)>,
    pub(super) on_reset: Closure<dyn FnMut(MessageEvent)>,
    pub(super) on_position: Closure<dyn FnMut(MessageEvent)>,
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

/// What an open says of the connection before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Opened {
    /// The subscription had been live before: this is a reconnect.
    pub(super) reconnect: bool,
    /// The connection failed since it last opened, so the browser resumed
    /// with `Last-Event-ID`.
    pub(super) after_error: bool,
}

/// What an error says of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Failure {
    /// The connection had been open.
    pub(super) was_open: bool,
    /// The browser closed it for good (it will not reconnect by itself).
    pub(super) closed: bool,
}

/// The subscription's connection and what it needs to resume.
#[derive(Default)]
pub(super) struct Link {
    /// The open `EventSource`, if any.
    pub(super) connection: Option<Connection>,
    /// The connection's state.
    pub(super) state: ConnState,
    /// The id of the last event of any kind this subscription received:
    /// where a reopened stream resumes.
    pub(super) resume: Option<EventId>,
    /// The reconnection delay the server advises (from `position`).
    pub(super) advised_retry_ms: Option<u64>,
    /// When the last event came, or the connection opened.
    pub(super) last_activity: Option<f64>,
    /// The timer that opens a new connection.
    retry: Option<TimeoutHandle>,
    /// When that timer fires.
    retry_at: Option<f64>,
    /// The delay before the next such attempt.
    backoff_ms: u64,
    /// This subscription has been live at least once.
    been_live: bool,
    /// The current connection is open.
    open: bool,
    /// The connection failed since it last opened.
    after_error: bool,
    /// The page's latest attempt to open a connection: an answer it waited
    /// for (`GET /topics`) that comes for an older one is dropped.
    attempt: u64,
}

impl Link {
    /// A link before any connection.
    pub(super) fn new() -> Self {
        Self {
            backoff_ms: MIN_BACKOFF_MS,
            ..Self::default()
        }
    }

    /// Whether the current connection is open.
    pub(super) fn is_open(&self) -> bool {
        self.open
    }

    /// When the page opens a new connection, if it waits to.
    pub(super) fn retry_at(&self) -> Option<f64> {
        self.retry_at
    }

    /// A new attempt to open a connection begins: returns its number.
    pub(super) fn begin_attempt(&mut self) -> u64 {
        self.attempt += 1;
        self.attempt
    }

    /// Whether `attempt` is the latest, not cancelled nor replaced.
    pub(super) fn is_current(&self, attempt: u64) -> bool {
        self.attempt == attempt
    }

    /// Drops the connection, any waiting retry and any attempt under way.
    pub(super) fn cancel(&mut self) {
        self.attempt += 1;
        if let Some(retry) = self.retry.take() {
            retry.clear();
        }
        self.retry_at = None;
        self.connection = None;
    }

    /// Drops the connection and starts the back-off from its shortest
    /// delay (the token changed: a new connection may now be accepted).
    pub(super) fn cancel_and_rewind(&mut self) {
        self.cancel();
        self.backoff_ms = MIN_BACKOFF_MS;
    }

    /// Starts a fresh subscription: no connection, no position (what the
    /// server advised and when it last spoke are kept).
    pub(super) fn restart(&mut self) {
        self.cancel_and_rewind();
        self.resume = None;
        self.been_live = false;
        self.open = false;
        self.after_error = false;
        self.state = ConnState::Connecting;
    }

    /// The retry timer fired: the page opens a new connection, resuming
    /// where this subscription was.
    pub(super) fn reopening(&mut self) {
        self.retry = None;
        self.retry_at = None;
        self.connection = None;
        self.state = if self.been_live {
            ConnState::Reconnecting
        } else {
            ConnState::Connecting
        };
    }

    /// The connection opened at `at`.
    pub(super) fn opened(&mut self, at: f64) -> Opened {
        let reconnect = self.been_live;
        self.been_live = true;
        self.open = true;
        self.backoff_ms = MIN_BACKOFF_MS;
        self.state = ConnState::Live;
        self.last_activity = Some(at);
        Opened {
            reconnect,
            after_error: std::mem::take(&mut self.after_error),
        }
    }

    /// Something carrying `id` came at `at`.
    pub(super) fn heard(&mut self, at: f64, id: Option<EventId>) {
        self.last_activity = Some(at);
        self.resume = id.or(self.resume);
    }

    /// The connection reported an error; `closed` when the browser gave
    /// up on it.
    pub(super) fn failed(&mut self, closed: bool) -> Failure {
        let was_open = std::mem::take(&mut self.open);
        self.state = if closed {
            ConnState::Closed
        } else if self.been_live {
            ConnState::Reconnecting
        } else {
            ConnState::Connecting
        };
        if !closed {
            self.after_error = true;
        }
        Failure { was_open, closed }
    }

    /// The delay before the next attempt, doubling the one after it; `None`
    /// when a retry already waits.
    pub(super) fn next_retry(&mut self, at: f64) -> Option<u64> {
        if self.retry.is_some() {
            return None;
        }
        let delay = self.backoff_ms;
        self.backoff_ms = (delay * 2).min(MAX_BACKOFF_MS);
        self.retry_at = Some(at + delay as f64);
        Some(delay)
    }

    /// Holds the retry timer.
    pub(super) fn retry_with(&mut self, timer: Option<TimeoutHandle>) {
        self.retry = timer;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_up_to_30_s_and_an_open_rewinds_it() {
        let mut link = Link::new();
        let delays: Vec<u64> = (0..7)
            .map(|i| {
                let delay = link.next_retry(f64::from(i)).expect("no retry waits");
                link.reopening();
                delay
            })
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        link.opened(10.0);
        assert_eq!(link.next_retry(11.0), Some(1000));
        assert_eq!(link.retry_at(), Some(1011.0));
    }

    #[test]
    fn an_error_after_an_open_is_a_reconnect_that_resumes() {
        let mut link = Link::new();
        assert_eq!(
            link.opened(1.0),
            Opened {
                reconnect: false,
                after_error: false
            }
        );
        let id = "1-7".parse::<EventId>().ok();
        assert!(id.is_some());
        link.heard(2.0, id);
        assert_eq!(
            link.failed(false),
            Failure {
                was_open: true,
                closed: false
            }
        );
        assert_eq!(link.state, ConnState::Reconnecting);
        assert_eq!(
            link.opened(3.0),
            Opened {
                reconnect: true,
                after_error: true
            }
        );
        assert_eq!(link.resume, id);
        link.heard(4.0, None);
        assert_eq!(link.resume, id, "an event without an id keeps the place");
    }

    #[test]
    fn an_attempt_is_current_until_replaced_or_cancelled() {
        let mut link = Link::new();
        let first = link.begin_attempt();
        assert!(link.is_current(first));
        let second = link.begin_attempt();
        assert!(!link.is_current(first), "a newer attempt replaces it");
        assert!(link.is_current(second));
        link.restart();
        assert!(!link.is_current(second), "a new subscription cancels it");
        let third = link.begin_attempt();
        link.cancel_and_rewind();
        assert!(!link.is_current(third), "a reopen cancels it");
    }

    #[test]
    fn a_refusal_before_any_open_is_closed_not_reconnecting() {
        let mut link = Link::new();
        assert_eq!(
            link.failed(true),
            Failure {
                was_open: false,
                closed: true
            }
        );
        assert_eq!(link.state, ConnState::Closed);
        link.reopening();
        assert_eq!(link.state, ConnState::Connecting);
    }
}
