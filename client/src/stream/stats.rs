//! The counters shown beside the connection's state.

use shared::EventId;

use crate::feed::RateMeter;

/// The window the events-per-second figure averages over.
const RATE_WINDOW_MS: f64 = 3000.0;

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

/// What the page counts as events come.
#[derive(Debug)]
pub(super) struct Counts {
    /// Events taken in (duplicates excluded).
    pub(super) received: u64,
    /// Reconnects after having been live.
    pub(super) reconnects: u64,
    /// The events-per-second meter.
    rate: RateMeter,
    /// Its last reading.
    pub(super) per_second: f64,
}

impl Counts {
    /// Nothing counted yet.
    pub(super) fn new() -> Self {
        Self {
            received: 0,
            reconnects: 0,
            rate: RateMeter::new(RATE_WINDOW_MS),
            per_second: 0.0,
        }
    }

    /// Reads the rate meter at `at`.
    pub(super) fn sample_rate(&mut self, at: f64) {
        self.per_second = self.rate.sample(at, self.received);
    }
}
