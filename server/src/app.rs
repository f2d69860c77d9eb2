//! The state every request handler shares.

use std::path::PathBuf;
use std::sync::Arc;

use crate::event_log::SharedLog;
use crate::hub::Hub;
use crate::publish::PublishSettings;
use crate::stream::StreamSettings;

/// Shared state, cheap to clone into each filter.
#[derive(Debug, Clone)]
pub struct App {
    /// History and fan-out.
    pub hub: Arc<Hub>,
    /// Where published events are stored.
    pub log: SharedLog,
    /// Keep-alive and retry of every stream.
    pub stream: StreamSettings,
    /// Token and size limit of `POST /publish`.
    pub publish: Arc<PublishSettings>,
    /// Folder of the built page.
    pub dist: Arc<PathBuf>,
}
