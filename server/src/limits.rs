//! What a client may hold, in count, bytes and time.
//!
//! - **Count.** At most `--max-connections` connections are served at once
//!   ([`ConnectionCap`]). One more is answered `503 too_many_connections`
//!   and closed ([`crate::connection::refuse`]). The default leaves room
//!   under the open-files limit for the process's own files, Redis, and
//!   those answers ([`RESERVED_FDS`]), so the file descriptors never run
//!   out.
//! - **Bytes.** hyper answers a request head over `--max-header-bytes` with
//!   431; `publish` caps a body at `--max-body`.
//! - **Time.** hyper's header read timeout closes a connection whose
//!   request head does not arrive; [`crate::connection`]'s deadline tells
//!   it when: within `--header-timeout` of accept for a first request,
//!   within `--idle-timeout` for the first byte of a next one on a
//!   keep-alive connection, then `--header-timeout` from that byte.
//!   `publish` gives a body `--body-timeout`. None of them runs while a
//!   response is under way, so a stream is never timed out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// File descriptors kept for the process's own files: the listener, the
/// runtime, Redis connections, the page's files being served.
const OWN_FILES: u64 = 64;

/// Connections over the cap answered at once; more are closed unanswered,
/// so that answering refusals cannot use up the reserve either.
const REFUSING_AT_ONCE: usize = 64;

/// File descriptors the default `--max-connections` leaves free under the
/// open-files limit.
pub const RESERVED_FDS: u64 = OWN_FILES + REFUSING_AT_ONCE as u64;

/// The hard open-files limit: the most the soft limit can be raised to.
pub fn hard_open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(_, hard)| hard)
}

/// The most connections `open_files` descriptors can hold with
/// [`RESERVED_FDS`] kept free (at least 1).
pub fn connections_allowed(open_files: u64) -> u64 {
    open_files.saturating_sub(RESERVED_FDS).max(1)
}

/// Raises the soft open-files limit to the hard limit and returns it.
pub(crate) fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The limits of every connection, from the options.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--header-timeout`: time to send a request head.
    pub header_timeout: Duration,
    /// `--idle-timeout`: time a keep-alive connection may wait for its next
    /// request.
    pub idle_timeout: Duration,
    /// `--max-header-bytes`: size of a request head.
    pub max_header_bytes: usize,
    /// `--max-connections`, or what the open-files limit allows.
    pub max_connections: usize,
    /// `--h2-max-streams`: concurrent streams on one HTTP/2 connection.
    pub h2_max_streams: u32,
}

/// The connection cap: `asked` (`--max-connections`), or by default what
/// `open_files` descriptors allow. An `asked` over that (the soft limit
/// could not be raised as far as the hard one the options were checked
/// against) is lowered, with a warning.
pub fn max_connections(asked: Option<u64>, open_files: u64) -> usize {
    let allowed = connections_allowed(open_files);
    let max = match asked {
        Some(asked) if asked > allowed => {
            tracing::warn!(
                asked,
                allowed,
                "--max-connections is more than the open-files limit allows; lowered"
            );
            allowed
        }
        Some(asked) => asked,
        None => allowed,
    };
    usize::try_from(max).unwrap_or(usize::MAX)
}

/// The connection cap: a slot per open connection, and a few more for
/// answering the connections over it.
#[derive(Debug)]
pub struct ConnectionCap {
    /// One permit per connection that may be open.
    slots: Arc<Semaphore>,
    /// The cap.
    max: usize,
    /// One permit per refused connection that may be answered at once.
    answering: Arc<Semaphore>,
}

/// What [`ConnectionCap::admit`] decided for a new connection.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Serve it; the slot is freed when it is dropped.
    Serve(OwnedSemaphorePermit),
    /// Answer it with 503, holding this permit while doing so.
    Refuse(OwnedSemaphorePermit),
    /// Close it unanswered: even the answers to refusals are at their limit.
    Drop,
}

impl ConnectionCap {
    /// A cap of `max` connections (at most what a semaphore can count,
    /// about 2^61).
    pub fn new(max: usize) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            answering: Arc::new(Semaphore::new(REFUSING_AT_ONCE)),
        }
    }

    /// Takes a slot for a new connection if one is free.
    pub(crate) fn admit(&self) -> Admission {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            Admission::Serve(slot)
        } else if let Ok(answering) = self.answering.clone().try_acquire_owned() {
            Admission::Refuse(answering)
        } else {
            Admission::Drop
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }
}
