//! The in-memory log: the hub's ring, numbered by this process alone.

use std::sync::Arc;

use super::{AppendError, AppendFuture, Appended, EventLog, LogHealth};
use crate::hub::Hub;

/// The hub's own ring as the log (no outside store, nothing to fail).
#[derive(Debug, Clone)]
pub struct MemoryLog {
    hub: Arc<Hub>,
}

impl MemoryLog {
    /// The log of `hub`, which must have been made with [`Hub::new`].
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

impl EventLog for MemoryLog {
    fn append(&self, topic: String, message: String) -> AppendFuture<'_> {
        let appended = self
            .hub
            .publish(&topic, message)
            .map(|(id, event)| Appended { id, event })
            .map_err(AppendError::from);
        Box::pin(std::future::ready(appended))
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
