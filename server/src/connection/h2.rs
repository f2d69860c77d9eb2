//! One HTTP/2 connection: many streams, each of which can be cut alone.
//!
//! hyper serves each HTTP/2 stream as a future it hands to an executor.
//! While that stream waits for flow-control window, hyper polls neither the
//! response body nor anything in it (`PipeToSendStream` in hyper 1.12
//! waits on `poll_capacity` with a chunk in hand), so a body cannot notice
//! that the hub's reaper wants it gone. The executor here is the way in:
//! every stream's future runs under a kill switch of its own (a child of
//! the connection's), which requests on that stream find in their
//! [`Connection`](super::Connection). When the reaper pulls it, the
//! stream's future is dropped; h2 then resets the stream (`RST_STREAM`
//! with `CANCEL`) and drops what it had queued for it, while the other
//! streams and the connection go on. HTTP/2 flow control bounds what a
//! stalled stream holds until then: its window on the wire and
//! [`SEND_BUFFER`] queued.
//!
//! HTTP/2 has no head deadline of its own in hyper, so the connection is
//! closed (with `GOAWAY`) when it carries no stream: within
//! `--header-timeout` of accept for the first, within `--idle-timeout` of
//! the last one's end afterwards.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::rt::{Read, Write};
use hyper::service::HttpService;
use hyper_util::rt::TokioTimer;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Ended, Limits};
use crate::metrics::Refusal;

tokio::task_local! {
    /// The kill switch of the HTTP/2 stream whose future is being polled.
    static STREAM_KILL: CancellationToken;
}

/// The kill switch of the HTTP/2 stream the caller runs in, if it runs in
/// one.
pub(super) fn stream_kill() -> Option<CancellationToken> {
    STREAM_KILL.try_with(CancellationToken::clone).ok()
}

/// Bytes h2 queues for one stream beyond its flow-control window: what a
/// stalled stream can hold on the server besides its cursor (hyper's
/// default is 400 KiB).
pub(super) const SEND_BUFFER: usize = 64 * 1024;

/// The streams of one connection, for the idle deadline.
#[derive(Debug, Default)]
pub(super) struct Streams {
    /// Streams open now.
    open: AtomicUsize,
    /// Streams started since the connection opened.
    started: AtomicU64,
    /// Told when a stream starts or ends.
    changed: Notify,
}

/// Holds a stream's place in [`Streams::open`].
struct Open(Arc<Streams>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Streams {
    fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        Open(self.clone())
    }

    /// Resolves when the connection has carried no stream for its
    /// deadline: `first` from `accepted` while no stream ever started,
    /// else `idle` from the last stream's end.
    async fn idle(&self, accepted: Instant, first: Duration, idle: Duration) {
        let mut since = accepted;
        loop {
            let changed = self.changed.notified();
            let started = self.started.load(Ordering::Acquire);
            if self.open.load(Ordering::Acquire) > 0 {
                changed.await;
                since = Instant::now();
                continue;
            }
            let wait = if started == 0 { first } else { idle };
            tokio::select! {
                () = changed => since = Instant::now(),
                () = tokio::time::sleep_until(since + wait) => {
                    if self.open.load(Ordering::Acquire) == 0
                        && self.started.load(Ordering::Acquire) == started
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// hyper's executor for one connection's streams: each runs as a task of
/// the server's tracker, under a kill switch of its own.
#[derive(Debug, Clone)]
pub(crate) struct StreamExecutor {
    /// The connection's kill switch: pulling it ends every stream.
    kill: CancellationToken,
    /// The connection's streams.
    streams: Arc<Streams>,
    /// Where stream tasks run, so that shutdown waits for them.
    tasks: TaskTracker,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let kill = self.kill.child_token();
        let open = self.streams.open();
        self.tasks
            .spawn(STREAM_KILL.scope(kill.clone(), async move {
                let _open = open;
                // Dropping the stream's future resets the stream.
                tokio::select! {
                    biased;
                    () = kill.cancelled() => {}
                    () = stream => {}
                }
            }));
    }
}

/// Serves HTTP/2 on `io` until the client or hyper ends it, `kill` is
/// pulled, or it is idle. `draining` (shutdown) sends `GOAWAY`, and lets
/// the open streams end.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve<I, S, B>(
    io: I,
    kill: CancellationToken,
    limits: Limits,
    accepted: Instant,
    handler: S,
    draining: CancellationToken,
    tasks: TaskTracker,
) -> Ended
where
    I: Read + Write + Unpin,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    StreamExecutor: Http2ServerConnExec<S::Future, B>,
{
    let streams = Arc::new(Streams::default());
    let executor = StreamExecutor {
        kill: kill.clone(),
        streams: streams.clone(),
        tasks,
    };
    let served = {
        let mut http = hyper::server::conn::http2::Builder::new(executor);
        http.timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_send_buf_size(SEND_BUFFER);
        http.serve_connection(io, handler)
    };
    let mut served = std::pin::pin!(served);
    let idle = streams.idle(accepted, limits.header_timeout, limits.idle_timeout);
    let mut idle = std::pin::pin!(idle);
    let mut closing: Option<Ended> = None;
    // An idle client that does not answer the GOAWAY's ping keeps h2
    // waiting: it gets `--header-timeout`, then the connection is dropped.
    let give_up = tokio::time::sleep(Duration::MAX);
    let mut give_up = std::pin::pin!(give_up);
    loop {
        tokio::select! {
            result = served.as_mut() => {
                return match (result, closing) {
                    (_, Some(why)) => why,
                    (Ok(()), None) => Ended::Done,
                    (Err(error), None) => Ended::Failed(error),
                };
            }
            () = kill.cancelled() => return Ended::Killed,
            () = draining.cancelled(), if closing.is_none() => {
                served.as_mut().graceful_shutdown();
                closing = Some(Ended::Done);
            }
            () = &mut give_up, if closing.is_some() => {
                return closing.unwrap_or(Ended::Done);
            }
            () = idle.as_mut(), if closing.is_none() => {
                served.as_mut().graceful_shutdown();
                give_up.as_mut().reset(Instant::now() + limits.header_timeout);
                closing = Some(if streams.started.load(Ordering::Acquire) == 0 {
                    Ended::Refused(Refusal::HeaderTimeout)
                } else {
                    Ended::Idle
                });
            }
        }
    }
}
