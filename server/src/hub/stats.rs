//! The hub's own counters: events in, events out, and the subscribers it
//! holds. The connections' and requests' counters are the server's
//! ([`crate::metrics::Metrics`], in the [`crate::App`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of one hub.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Events stored and broadcast.
    pub(crate) published: AtomicU64,
    /// Events handed to subscriber connections (one per event per subscriber).
    pub(crate) delivered: AtomicU64,
    /// Subscribers disconnected for falling behind.
    pub(crate) dropped: AtomicU64,
    /// Subscriber connections accepted.
    pub(crate) subscriptions: AtomicU64,
    /// Subscribers refused because the limit was reached.
    pub(crate) refused: AtomicU64,
    /// Reset notices sent (a resume that could not be exact).
    pub(crate) resets: AtomicU64,
    /// Subscribers woken by publishes (each publish wakes only those whose
    /// filter matches).
    pub(crate) wakeups: AtomicU64,
    /// Events dropped from the history for their age (`--history-ttl`).
    pub(crate) expired: AtomicU64,
}

impl HubStats {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
