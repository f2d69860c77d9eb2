//! The demo ticker: "Data pushed from server: (N)" on the `ticker` topic, as
//! the original Flask demo pushed.

use std::time::Duration;

use shared::TICKER_TOPIC;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::event_log::SharedLog;

/// Publishes a numbered message every `every` to `log` until `shutdown`. While the log is unavailable the ticks are skipped (the log's
/// outage is logged by the log).
pub async fn run(log: SharedLog, every: Duration, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for n in 1u64.. {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {
                let message = format!("Data pushed from server: ({n})");
                if let Err(error) = log.append(TICKER_TOPIC.to_owned(), message).await {
                    tracing::debug!(%error, "ticker skipped a tick");
                }
            }
        }
    }
}
