//! The estimate of the server's clock against the page's, from a few
//! `GET /time` round trips when the stream connects and every minute;
//! the HTTP version is learnt on the way.

use std::rc::Rc;

use super::{now, refresh_insight, with_shared, Shared};
use crate::clock::{ClockOffset, Probe};

/// `GET /time` round trips per estimate of the clock offset.
const CLOCK_PROBES: u32 = 5;
/// The clock offset is estimated again this often.
const CLOCK_EVERY_MS: f64 = 60_000.0;

/// Whether an estimate is under way, and when the last one ended.
#[derive(Debug, Default)]
pub(super) struct ClockProbe {
    /// An estimate is under way.
    probing: bool,
    /// When the clock was last estimated.
    probed_at: Option<f64>,
}

impl ClockProbe {
    /// Whether the estimate is due again at `at` (never before a first one).
    pub(super) fn due(&self, at: f64) -> bool {
        self.probed_at.is_some_and(|t| at - t >= CLOCK_EVERY_MS)
    }
}

/// Estimates the clock offset from a few `GET /time` round trips, one
/// after the other, unless an estimate is already under way.
pub(super) fn probe_clock(shared: &Rc<Shared>) {
    {
        let mut inner = shared.inner.borrow_mut();
        if inner.clock.probing {
            return;
        }
        inner.clock.probing = true;
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
                inner.clock = ClockProbe {
                    probing: false,
                    probed_at: Some(now()),
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_probed_again_a_minute_after_the_last_estimate() {
        let idle = ClockProbe::default();
        assert!(!idle.due(1e12), "the first estimate is asked for at open");
        let probed = ClockProbe {
            probing: false,
            probed_at: Some(1_000.0),
        };
        assert!(!probed.due(60_999.0));
        assert!(probed.due(61_000.0));
    }
}
