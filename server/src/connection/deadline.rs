//! When hyper stops waiting for a request head.
//!
//! hyper's `header_read_timeout` (hyper 1.12, `proto/h1/conn.rs`,
//! `poll_read_head`) starts its clock whenever the connection waits for a
//! request head: when hyper first polls a new connection, before any byte
//! has come, and again each time a response is done on a keep-alive
//! connection. It stops when a head is parsed and does not run while a
//! request is answered, a stream included. Left as it is, it would close an
//! idle keep-alive connection after the header timeout: a browser's
//! connection between two requests could not be told from a client sending
//! half a header.
//!
//! [`HeadTimer`] is the timer hyper is given for one connection. hyper still
//! starts, polls and enforces the wait; the timer only decides when it ends:
//! the first wait of a connection ends at hyper's own deadline (the header
//! timeout from accept); a later one gets the idle timeout until the first
//! byte of the next request arrives, and the header timeout from that byte.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::rt::{Sleep, Timer};
use tokio::time::Instant;

use super::Activity;

/// hyper's timer for one connection's header read timeout.
#[derive(Debug)]
pub(super) struct HeadTimer {
    /// What the connection's socket has read.
    activity: Arc<Activity>,
    /// `--header-timeout`.
    header: Duration,
    /// `--idle-timeout`.
    idle: Duration,
    /// Whether the connection's first wait (from accept) has begun.
    started: AtomicBool,
}

impl HeadTimer {
    pub(super) fn new(activity: Arc<Activity>, header: Duration, idle: Duration) -> Self {
        Self {
            activity,
            header,
            idle,
            started: AtomicBool::new(false),
        }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadWait::until(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn Sleep>> {
        if !self.started.swap(true, Ordering::Relaxed) {
            return Box::pin(HeadWait::until(deadline.into()));
        }
        Box::pin(HeadWait {
            sleep: Box::pin(tokio::time::sleep(self.idle)),
            next_request: Some(NextRequest {
                activity: self.activity.clone(),
                read_before: self.activity.bytes_read(),
                header: self.header,
            }),
        })
    }

    fn now(&self) -> std::time::Instant {
        // tokio's clock, so that the deadlines agree with the sleeps.
        Instant::now().into_std()
    }
}

/// One wait for a request head.
struct HeadWait {
    /// Fires at the deadline.
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// While the wait is for the first byte of a next request.
    next_request: Option<NextRequest>,
}

/// A keep-alive connection waiting for its next request.
struct NextRequest {
    /// What the socket has read.
    activity: Arc<Activity>,
    /// Bytes read when the wait began: more means the request began.
    read_before: u64,
    /// The time the request's head gets from its first byte.
    header: Duration,
}

impl HeadWait {
    fn until(deadline: Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            next_request: None,
        }
    }
}

impl Future for HeadWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // hyper polls the wait each time a read leaves the head incomplete,
        // so the first byte of a request is seen here as it arrives.
        if let Some(next) = &this.next_request {
            if next.activity.bytes_read() != next.read_before {
                let header = next.header;
                this.next_request = None;
                this.sleep.as_mut().reset(Instant::now() + header);
            }
        }
        ready!(this.sleep.as_mut().poll(cx));
        if let Some(next) = &this.next_request {
            next.activity.idle_expired.store(true, Ordering::Relaxed);
        }
        Poll::Ready(())
    }
}

impl Sleep for HeadWait {}
