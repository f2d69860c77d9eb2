//! `--history-ttl`: events older than the TTL leave the history.
//!
//! [`super::store::Store::expire`] drops them oldest seq first, as an
//! eviction does (so a resume from before them hears exactly what of its
//! own topics it missed). Two things call it:
//! - every read (a subscriber's, `GET /topics`), through
//!   [`Hub::expire_due`], so that no expired event is ever handed out, even
//!   between sweeps. Checking the time of each event at read would cost
//!   every read of every subscriber and would not make the loss count
//!   per topic; expiring first costs one clock read and one atomic load
//!   when nothing is due (the hub keeps when its oldest event expires).
//! - a background sweep ([`Hub::run_expiry`]), so that a topic no one
//!   reads or publishes to lets its events go too.
//!
//! Each pass drops at most [`super::EXPIRE_PASS`] events under the
//! sequencer lock, then lets publishes in.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use shared::ServerEvent;

use super::store::Store;
use super::{stats::HubStats, sweep_every, Hub, EXPIRE_PASS};

impl Hub {
    /// `--history-ttl`, when set.
    pub fn history_ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The time of a copied `event`, in ms since the Unix epoch, for its
    /// expiry (0 without a TTL); one whose time does not read counts from
    /// now.
    pub(super) fn time_of(&self, event: &ServerEvent) -> u64 {
        if self.ttl.is_none() {
            return 0;
        }
        crate::time::event_ms(&event.time).unwrap_or_else(crate::time::unix_ms)
    }

    /// Records when the oldest retained event of `store` expires.
    pub(super) fn note_due(&self, store: &Store) {
        if self.ttl.is_some() {
            self.due_ms.store(store.due_ms(), Ordering::Release);
        }
    }

    /// Drops every event expired by now; returns how many. Costs a clock
    /// read and an atomic load when none is due.
    pub fn expire_due(&self) -> u64 {
        if self.ttl.is_none() {
            return 0;
        }
        let now = crate::time::unix_ms();
        let mut expired = 0;
        while self.due_ms.load(Ordering::Acquire) <= now {
            let pass = self.expire_pass(now);
            expired += pass.expired;
            if !pass.more {
                break;
            }
        }
        expired
    }

    /// One bounded pass of expiry at `now_ms`.
    fn expire_pass(&self, now_ms: u64) -> super::store::Expiry {
        let mut sequencer = self.sequencer.lock();
        let pass = sequencer.store.expire(now_ms, EXPIRE_PASS, &self.global);
        self.note_due(&sequencer.store);
        drop(sequencer);
        HubStats::add(&self.stats.expired, pass.expired);
        if pass.expired > 0 {
            tracing::debug!(expired = pass.expired, "events expired from the history");
        }
        pass
    }

    /// Sweeps the history for expired events until shutdown, every
    /// [`sweep_every`] of the TTL (at once again while a pass stops at its
    /// limit). Returns at once without a TTL.
    pub async fn run_expiry(self: Arc<Self>) {
        let Some(ttl) = self.ttl else {
            return;
        };
        let mut interval = tokio::time::interval(sweep_every(ttl));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.closed.cancelled() => return,
                _ = interval.tick() => {}
            }
            let now = crate::time::unix_ms();
            while self.due_ms.load(Ordering::Acquire) <= now {
                if !self.expire_pass(now).more {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
    }
}
