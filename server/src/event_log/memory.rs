//! The in-memory log: the hub's ring, numbered by this process alone.

use std::sync::Arc;

use super::{AppendError, AppendFuture, Appended, EventLog, KeyedAppend, KeyedFuture, LogHealth};
use super::{BatchAppend, BatchFuture};
use crate::event_log::Keyed;
use crate::hub::{Hub, NewEvent};
use crate::idempotency::{KeyOptions, Keys};

/// The hub's own ring as the log (no outside store, nothing to fail); its
/// idempotency keys are remembered in this process.
#[derive(Debug)]
pub struct MemoryLog {
    hub: Arc<Hub>,
    keys: Keys,
}

impl MemoryLog {
    /// The log of `hub`, which must have been made with [`Hub::new`].
    pub fn new(hub: Arc<Hub>, keys: KeyOptions) -> Self {
        Self {
            hub,
            keys: Keys::remembering(keys),
        }
    }

    fn publish(&self, topic: &str, message: String) -> Result<Appended, AppendError> {
        self.hub
            .publish(topic, message)
            .map(|(id, event)| Appended { id, event })
            .map_err(AppendError::from)
    }
}

impl EventLog for MemoryLog {
    fn append(&self, topic: String, message: String) -> AppendFuture<'_> {
        Box::pin(std::future::ready(self.publish(&topic, message)))
    }

    fn append_keyed(&self, keyed: Keyed, topic: String, message: String) -> KeyedFuture<'_> {
        let stored = self.publish(&topic, message).map(|appended| {
            self.keys
                .remember(&keyed.name, keyed.mark, keyed.record(&appended));
            KeyedAppend::Stored(appended)
        });
        Box::pin(std::future::ready(stored))
    }

    fn append_batch(&self, events: Vec<NewEvent>, keyed: Option<Keyed>) -> BatchFuture<'_> {
        let stored = self
            .hub
            .publish_batch(events)
            .map_err(AppendError::from)
            .map(|events| {
                let appended: Vec<Appended> = events
                    .into_iter()
                    .map(|(id, event)| Appended { id, event })
                    .collect();
                if let Some(keyed) = keyed {
                    self.keys
                        .remember(&keyed.name, keyed.mark, keyed.record_batch(&appended));
                }
                BatchAppend::Stored(appended)
            });
        Box::pin(std::future::ready(stored))
    }

    fn keys(&self) -> &Keys {
        &self.keys
    }

    fn health(&self) -> LogHealth {
        LogHealth {
            kind: "memory",
            up: true,
            outages: 0,
            errors: 0,
        }
    }
}
