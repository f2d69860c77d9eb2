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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, UNIX_EPOCH};

    use shared::{EventId, ServerEvent};
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    use super::super::store::{Expiry, Loss};
    use super::super::tests::{filter, options, read_all};
    use super::super::{Filter, Hub};

    /// An event of `topic` published at `ms` since the Unix epoch.
    fn at(seq: u64, topic: &str, ms: u64) -> (EventId, ServerEvent) {
        let time = UNIX_EPOCH + Duration::from_millis(ms);
        let event = ServerEvent {
            id: Uuid::new_v4(),
            seq,
            topic: topic.into(),
            message: format!("m{seq}"),
            time: humantime::format_rfc3339_millis(time).to_string(),
        };
        (EventId::new(7, seq), event)
    }

    fn hub_with_ttl(ttl: Duration) -> std::sync::Arc<Hub> {
        let mut opts = options(100, 100, 10);
        opts.history_ttl = Some(ttl);
        Hub::follower(7, opts)
    }

    #[test]
    fn expiry_goes_oldest_first_within_its_limit_and_stops_at_the_first_kept() {
        let hub = hub_with_ttl(Duration::from_secs(10));
        // An hour ahead: the reads below (which expire by the real clock)
        // find nothing due; the passes are given their own times.
        let t0 = crate::time::unix_ms() + 3_600_000;
        hub.replicate([
            at(1, "a", t0),
            at(2, "b", t0 + 1_000),
            at(3, "a", t0 + 2_000),
            // Earlier than the one before it (another server's clock): it
            // goes with that one, not before.
            at(4, "b", t0 + 1_500),
            at(5, "a", t0 + 60_000),
        ]);
        assert_eq!(hub.sequencer.lock().store.due_ms(), t0 + 10_000);
        let expire =
            |now: u64, limit: usize| hub.sequencer.lock().store.expire(now, limit, &hub.global);
        // Nothing is due before the oldest event's time plus the TTL.
        assert_eq!(expire(t0 + 9_999, 10), Expiry::default());
        assert_eq!(
            expire(t0 + 11_600, 1),
            Expiry {
                expired: 1,
                more: true
            }
        );
        assert_eq!(
            expire(t0 + 11_600, 10),
            Expiry {
                expired: 1,
                more: false
            }
        );
        // Seq 3 is due at t0 + 12 s; seq 4 waits for it.
        assert_eq!(hub.sequencer.lock().store.due_ms(), t0 + 12_000);
        assert_eq!(expire(t0 + 12_000, 10).expired, 2);
        assert_eq!(hub.history_len(), 1);
        // Each topic's losses are its own, exactly counted.
        let a = hub
            .subscribe(&filter(&["a"]), None, CancellationToken::new())
            .unwrap();
        let (seqs, losses, _) = read_all(&a, 1);
        assert_eq!(seqs, [5]);
        assert_eq!(
            losses,
            [Loss {
                first: 1,
                last: 3,
                count: Some(2)
            }]
        );
        let b = hub
            .subscribe(&filter(&["b"]), None, CancellationToken::new())
            .unwrap();
        let (seqs, losses, _) = read_all(&b, 3);
        assert!(seqs.is_empty());
        assert_eq!(losses, [Loss::counted(4, 4)]);
        // From after its last expired event, a topic hears of no loss.
        assert_eq!(read_all(&a, 4), (vec![5], vec![], 6));
    }

    #[test]
    fn a_read_never_hands_out_an_expired_event_even_without_a_sweep() {
        let hub = hub_with_ttl(Duration::from_secs(1));
        let now = crate::time::unix_ms();
        let hour_ago = now.saturating_sub(3_600_000);
        hub.replicate([
            at(1, "a", hour_ago),
            at(2, "b", hour_ago),
            at(3, "a", now + 3_600_000),
        ]);
        hub.mark_loaded();
        // No sweep runs in this test: the read expires what is due.
        let all = hub
            .subscribe(&Filter::All, None, CancellationToken::new())
            .unwrap();
        let (seqs, losses, _) = read_all(&all, 1);
        assert_eq!(seqs, [3]);
        assert_eq!(
            losses,
            [Loss {
                first: 1,
                last: 2,
                count: Some(2)
            }]
        );
        assert_eq!(hub.stats.expired.load(Ordering::Relaxed), 2);
        let retained: Vec<(String, usize)> = hub
            .topics(None, 10, |_| true)
            .into_iter()
            .map(|t| (t.name, t.retained))
            .collect();
        assert_eq!(retained, [("a".to_owned(), 1)]);
    }

    #[test]
    fn without_a_ttl_nothing_expires_and_nothing_is_due() {
        let hub = Hub::follower(7, options(100, 100, 10));
        hub.replicate([at(1, "a", 0)]);
        assert_eq!(hub.sequencer.lock().store.due_ms(), u64::MAX);
        assert_eq!(hub.expire_due(), 0);
        assert_eq!(hub.history_len(), 1);
    }

    #[test]
    fn a_log_that_holds_nothing_but_issued_seqs_goes_on_from_them() {
        let hub = hub_with_ttl(Duration::from_secs(1));
        hub.begin_at(7, 58);
        hub.mark_loaded();
        let position = hub.position();
        assert_eq!(
            (position.epoch, position.horizon, position.next),
            (7, 58, 58)
        );
        assert_eq!(hub.replicate([at(58, "a", crate::time::unix_ms())]), 1);
        assert_eq!(hub.last_seq(), 58);
        // Already there: nothing changes.
        let generation = hub.generation();
        hub.begin_at(7, 10);
        assert_eq!(hub.generation(), generation);
    }
}
