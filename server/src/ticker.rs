//! The demo ticker: "Data pushed from server: (N)" on the `ticker` topic, as
//! the original Flask demo pushed.

use std::sync::Arc;
use std::time::Duration;

use shared::TICKER_TOPIC;
use tokio::time::MissedTickBehavior;

use crate::hub::Hub;

/// Publishes a numbered message every `every` until shutdown.
pub async fn run(hub: Arc<Hub>, every: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let shutdown = hub.shutdown_token().clone();
    for n in 1u64.. {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {
                hub.publish(TICKER_TOPIC, format!("Data pushed from server: ({n})"));
            }
        }
    }
}
