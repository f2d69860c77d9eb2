//! One subscriber's response to `GET /stream`: where it starts (live, or
//! after its Last-Event-ID, with a reset notice when the history cannot cover
//! the gap), then the live events, keep-alive comments on a quiet stream, and
//! a clean end at shutdown.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use shared::{EventId, ResetNotice, ResetReason, RESET_EVENT};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use warp::http::{header, HeaderValue, Response};
use warp::Reply;

use crate::error::ApiError;
use crate::event_log::{EventLog, SharedLog};
use crate::hub::{frame_json, Hub, Position, Read, Subscription, Topics};
use crate::metrics::Metrics;

/// What a stream request asks for.
#[derive(Debug, Clone, Default)]
pub struct StreamRequest {
    /// The id the client last received (the `Last-Event-ID` header, else the
    /// `lastEventId` query parameter).
    pub last_event_id: Option<String>,
    /// The topics to receive.
    pub topics: Topics,
}

impl StreamRequest {
    /// Reads `topic` (repeatable) and `lastEventId` from a query string; the
    /// `Last-Event-ID` header, sent by a reconnecting `EventSource`, wins over
    /// the query parameter, which stays the same across reconnects.
    ///
    /// # Errors
    /// [`ApiError::InvalidTopic`] for a topic name that breaks the rules.
    pub fn from_query(query: &str, header_id: Option<String>) -> Result<Self, ApiError> {
        let mut topics: Vec<Arc<str>> = Vec::new();
        let mut query_id = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "topic" => {
                    shared::validate_topic(&value).map_err(ApiError::InvalidTopic)?;
                    if !topics.iter().any(|t| **t == *value) {
                        topics.push(Arc::from(value.as_ref()));
                    }
                }
                "lastEventId" => query_id = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(Self {
            last_event_id: header_id.or(query_id),
            topics: if topics.is_empty() {
                Topics::All
            } else {
                Topics::Only(topics.into_boxed_slice())
            },
        })
    }
}

/// Per-server stream settings.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// Quiet time after which a keep-alive comment is sent.
    pub keep_alive: Duration,
    /// Reconnection delay advised in the `retry:` field.
    pub retry: Duration,
}

/// Where a new subscriber starts: the epoch and seq of the first event to
/// send, and the notice to send first if the history cannot take it exactly
/// where it left off. Only asked once the log is loaded.
pub(crate) fn resume_point(
    position: Position,
    last_event_id: Option<&str>,
) -> (u64, u64, Option<ResetNotice>) {
    let Position {
        epoch, first, next, ..
    } = position;
    // A malformed id counts as none: the stream starts live.
    let Some((raw, id)) = last_event_id.and_then(|raw| Some((raw, raw.parse::<EventId>().ok()?)))
    else {
        return (epoch, next, None);
    };
    if id.epoch != epoch {
        let missed = (first > 1).then(|| (1, first - 1));
        let notice = ResetNotice {
            reason: ResetReason::ServerRestarted,
            requested: Some(raw.to_owned()),
            missed_from: missed.map(|m| m.0),
            missed_to: missed.map(|m| m.1),
            resume_seq: first,
            message: format!(
                "The event log restarted (a new server run, or a new shared stream): \
                 events from before it are gone. Replaying from seq {first}."
            ),
        };
        return (epoch, first, Some(notice));
    }
    if id.seq >= next {
        // An id this log has not issued yet: nothing to replay.
        return (epoch, next, None);
    }
    let wanted = id.seq + 1;
    if wanted < first {
        return (
            epoch,
            first,
            Some(history_exceeded(Some(raw), wanted, first)),
        );
    }
    (epoch, wanted, None)
}

/// The notice for events `wanted..first` that are no longer kept.
fn history_exceeded(requested: Option<&str>, wanted: u64, first: u64) -> ResetNotice {
    ResetNotice {
        reason: ResetReason::HistoryExceeded,
        requested: requested.map(str::to_owned),
        missed_from: Some(wanted),
        missed_to: Some(first - 1),
        resume_seq: first,
        message: format!(
            "Events {wanted} to {} are older than the history the server keeps \
             and were missed. Resuming from seq {first}.",
            first - 1
        ),
    }
}

/// Where a subscriber starts, as [`resume_point`] says, except that when
/// the events it asks for are older than the hub's history but `log` may
/// still hold them, it starts at the first of them in [`Phase::Backfill`].
fn plan_start(
    position: Position,
    last_event_id: Option<&str>,
    log: &dyn EventLog,
) -> (u64, u64, Option<ResetNotice>, Phase) {
    let (epoch, cursor, notice) = resume_point(position, last_event_id);
    match notice {
        Some(notice) if notice.reason == ResetReason::HistoryExceeded && log.reaches_further() => {
            let wanted = notice.missed_from.unwrap_or(cursor);
            (epoch, wanted, None, Phase::Backfill)
        }
        notice => (epoch, cursor, notice, Phase::Live),
    }
}

/// The `event: reset` frame; its id makes a later reconnect resume right
/// after the notice.
fn reset_frame(hub: &Hub, epoch: u64, notice: &ResetNotice) -> Bytes {
    Metrics::add(&hub.metrics.resets, 1);
    let id = EventId::new(epoch, notice.resume_seq - 1);
    frame_json(Some(RESET_EVENT), &id, notice)
}

/// The state of one subscriber's body.
///
/// The hot path (woken by a publish, write the new frames) touches no timer
/// and registers one waiter: the keep-alive timer is re-armed only when it
/// fires, and shutdown arrives through the same publish notification.
struct Subscriber {
    /// Registration with the hub it reads from: lag tracking. A subscriber
    /// cut for lag is closed with its connection, which drops this stream.
    sub: Subscription,
    /// Where the subscriber is: waiting to settle its start, reading from
    /// the event log, or reading the hub's ring.
    phase: Phase,
    /// The epoch `cursor` counts in; 0 when the log had no epoch yet (its
    /// first events are then this subscriber's without a notice).
    epoch: u64,
    /// The next seq to read.
    cursor: u64,
    /// The event log, for a start settled late and for backfill.
    log: SharedLog,
    /// The topics to deliver.
    topics: Topics,
    /// Changes after every publish, and at shutdown.
    wake: watch::Receiver<u64>,
    /// Bytes to send before anything else (the opening and any reset notice).
    first: Option<Bytes>,
    /// Quiet time before a keep-alive.
    keep_alive: Duration,
    /// Fires every `keep_alive`; a keep-alive goes out only if nothing else
    /// did since it last fired.
    tick: Pin<Box<Sleep>>,
    /// Whether anything was written since `tick` last fired.
    active: bool,
    /// Whether the log may hold frames not yet read: set by a publish
    /// notification, or when a read stopped at the batch size. When clear,
    /// the stream goes straight to waiting instead of reading the log again.
    dirty: bool,
}

/// Where a subscriber reads from.
#[derive(Debug)]
enum Phase {
    /// The log is not loaded yet (a server still catching up with a shared
    /// log): the start is settled, from the client's Last-Event-ID kept
    /// here, once it is.
    Unsettled(Option<String>),
    /// The cursor is older than the hub's history: the next events come
    /// from the event log (Redis) until the cursor reaches the history.
    Backfill,
    /// Reading the hub's ring.
    Live,
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Events read from the event log at a time during a backfill.
const BACKFILL_BATCH: usize = 512;

impl Subscriber {
    /// The next bytes to write, or `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            // The opening does not count as activity: a quiet stream gets its
            // first keep-alive one interval after it opened.
            return Some(first);
        }
        loop {
            if self.sub.hub().shutdown_token().is_cancelled() {
                return None;
            }
            match self.phase {
                Phase::Unsettled(_) => {
                    if let Some(notice) = self.settle_start() {
                        return Some(notice);
                    }
                    if !matches!(self.phase, Phase::Unsettled(_)) {
                        continue;
                    }
                }
                Phase::Backfill => {
                    if let Some(chunk) = self.backfill_chunk().await {
                        return Some(chunk);
                    }
                    continue;
                }
                Phase::Live => {
                    if self.dirty {
                        if let Some(chunk) = self.read_log() {
                            return Some(chunk);
                        }
                    }
                }
            }
            tokio::select! {
                biased;
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    self.dirty = true;
                }
                () = self.tick.as_mut() => {
                    self.tick.as_mut().reset(Instant::now() + self.keep_alive);
                    if !std::mem::take(&mut self.active) {
                        return Some(Bytes::from_static(KEEP_ALIVE));
                    }
                }
            }
        }
    }

    /// Settles where this subscriber starts once the log is loaded (a
    /// server reading a shared log may still be catching up when the
    /// subscriber arrives): returns the reset notice to send first, if any.
    fn settle_start(&mut self) -> Option<Bytes> {
        self.wake.borrow_and_update();
        let position = self.sub.hub().position();
        if !position.loaded {
            return None;
        }
        let Phase::Unsettled(requested) = std::mem::replace(&mut self.phase, Phase::Live) else {
            return None;
        };
        let (epoch, cursor, notice, phase) =
            plan_start(position, requested.as_deref(), self.log.as_ref());
        self.epoch = epoch;
        self.cursor = cursor;
        self.phase = phase;
        self.sub.advance(cursor);
        self.dirty = true;
        let notice = notice?;
        self.active = true;
        Some(reset_frame(self.sub.hub(), epoch, &notice))
    }

    /// Reads the next events older than the hub's history from the event
    /// log: the bytes to write, or `None` when none of them is for this
    /// subscriber. Events the log no longer holds (or cannot give, Redis
    /// being unreachable) are announced with a `history_exceeded` notice.
    /// Ends the backfill once the cursor reaches the history.
    async fn backfill_chunk(&mut self) -> Option<Bytes> {
        let position = self.sub.hub().position();
        if position.epoch != self.epoch || self.cursor >= position.first {
            self.phase = Phase::Live;
            self.dirty = true;
            return None;
        }
        let events = self
            .log
            .range(self.epoch, self.cursor, position.first - 1, BACKFILL_BATCH)
            .await
            .unwrap_or_else(|error| {
                tracing::debug!(%error, "cannot replay from the event log");
                Vec::new()
            });
        // The first seq the log gave, or where the history starts.
        let found = events.first().map_or(position.first, |(id, _)| id.seq);
        let mut out = BytesMut::new();
        if found > self.cursor {
            let notice = history_exceeded(None, self.cursor, found);
            out.extend_from_slice(&reset_frame(self.sub.hub(), self.epoch, &notice));
        }
        let mut count = 0;
        let mut next = found;
        for (id, event) in &events {
            next = id.seq + 1;
            if self.topics.matches(&event.topic) {
                out.extend_from_slice(&frame_json(None, id, event));
                count += 1;
            }
        }
        self.cursor = next;
        self.sub.advance(next);
        Metrics::add(&self.sub.hub().metrics.delivered, count);
        if out.is_empty() {
            return None;
        }
        self.active = true;
        Some(out.freeze())
    }

    /// Reads what the log holds after the cursor: the bytes to write, or
    /// `None` when nothing there is for this subscriber.
    fn read_log(&mut self) -> Option<Bytes> {
        // Mark the current version seen before reading, so a publish racing
        // with the read still wakes us.
        self.wake.borrow_and_update();
        self.dirty = false;
        match self.sub.hub().read(self.epoch, self.cursor, &self.topics) {
            Read::Replaced { epoch, .. } if self.epoch == 0 => {
                // The log's first events: this subscriber was waiting for
                // them, from seq 1 on.
                self.epoch = epoch;
                self.read_log()
            }
            Read::Replaced { epoch, first } => {
                let notice = ResetNotice {
                    reason: ResetReason::ServerRestarted,
                    requested: None,
                    missed_from: None,
                    missed_to: None,
                    resume_seq: first,
                    message: format!(
                        "The shared event log was replaced: events from before it are gone. \
                         Continuing from seq {first} of the new log."
                    ),
                };
                self.epoch = epoch;
                self.cursor = first;
                self.sub.advance(first);
                self.active = true;
                self.dirty = true;
                Some(reset_frame(self.sub.hub(), epoch, &notice))
            }
            Read::Lost { first } => {
                // Only reachable when the history is smaller than a burst:
                // say so in-band rather than skip silently.
                let notice = ResetNotice {
                    reason: ResetReason::FellBehind,
                    requested: None,
                    missed_from: Some(self.cursor),
                    missed_to: Some(first - 1),
                    resume_seq: first,
                    message: format!(
                        "This subscriber fell behind: events {} to {} left the history \
                         before they could be sent.",
                        self.cursor,
                        first - 1
                    ),
                };
                self.cursor = first;
                self.sub.advance(first);
                self.active = true;
                self.dirty = true;
                Some(reset_frame(self.sub.hub(), self.epoch, &notice))
            }
            Read::Frames {
                bytes,
                count,
                next,
                more,
            } => {
                self.cursor = next;
                self.sub.advance(next);
                self.dirty = more;
                let bytes = bytes?;
                Metrics::add(&self.sub.hub().metrics.delivered, count);
                self.active = true;
                Some(bytes)
            }
        }
    }
}

/// The body of a stream: pre-framed bytes, several pending events in one chunk.
fn body(subscriber: Subscriber) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + Sync {
    let stream = futures_util::stream::unfold(subscriber, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok(chunk), s))
    });
    sync_wrapper::SyncStream::new(stream)
}

/// Answers `GET /stream`.
///
/// # Errors
/// [`ApiError::TooManySubscribers`] at the subscriber limit.
pub(crate) fn open(
    hub: &Arc<Hub>,
    log: &SharedLog,
    request: StreamRequest,
    kill: CancellationToken,
    settings: StreamSettings,
) -> Result<warp::reply::Response, ApiError> {
    // Settled now when the log is loaded, so that anything published after
    // the opening reaches this subscriber. A server still catching up with a
    // shared log settles it later; until then the cursor is out of the
    // reaper's reach.
    let position = hub.position();
    let (epoch, cursor, notice, phase) = if position.loaded {
        plan_start(position, request.last_event_id.as_deref(), log.as_ref())
    } else {
        (0, u64::MAX, None, Phase::Unsettled(request.last_event_id))
    };
    let sub = hub.subscribe(cursor, kill).map_err(|full| {
        Metrics::add(&hub.metrics.refused, 1);
        ApiError::TooManySubscribers(full.0)
    })?;
    Metrics::add(&hub.metrics.subscriptions, 1);

    // The opening goes out at once so clients and proxies see the stream live.
    let mut first =
        format!(": stream open\nretry: {}\n\n", settings.retry.as_millis()).into_bytes();
    if let Some(notice) = &notice {
        first.extend_from_slice(&reset_frame(hub, epoch, notice));
    }
    let subscriber = Subscriber {
        sub,
        phase,
        epoch,
        cursor,
        log: log.clone(),
        topics: request.topics,
        wake: hub.watch(),
        first: Some(Bytes::from(first)),
        keep_alive: settings.keep_alive,
        tick: Box::pin(tokio::time::sleep(settings.keep_alive)),
        active: false,
        dirty: true,
    };

    let mut response: Response<_> = warp::reply::stream(body(subscriber)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points() {
        let hub = Hub::new(3, 3, 10);
        let epoch = hub.epoch();
        assert_eq!(resume_point(hub.position(), None), (epoch, 1, None));
        for i in 0..5 {
            hub.publish("t", i.to_string());
        }
        let at = |id: Option<&str>| {
            let (e, cursor, notice) = resume_point(hub.position(), id);
            assert_eq!(e, epoch);
            (cursor, notice)
        };
        // Live when there is no usable id.
        assert_eq!(at(None), (6, None));
        assert_eq!(at(Some("garbage")), (6, None));
        assert_eq!(at(Some(&format!("{epoch}-99"))), (6, None));
        // Exactly after the id when the history covers it.
        assert_eq!(at(Some(&format!("{epoch}-2"))), (3, None));
        assert_eq!(at(Some(&format!("{epoch}-5"))), (6, None));
        // Too old.
        let (cursor, notice) = at(Some(&format!("{epoch}-0")));
        let notice = notice.unwrap();
        assert_eq!(cursor, 3);
        assert_eq!(notice.reason, ResetReason::HistoryExceeded);
        assert_eq!((notice.missed_from, notice.missed_to), (Some(1), Some(2)));
        // Another run.
        let (cursor, notice) = at(Some(&format!("{}-4", epoch + 1)));
        let notice = notice.unwrap();
        assert_eq!(cursor, 3);
        assert_eq!(notice.reason, ResetReason::ServerRestarted);
        assert_eq!(
            notice.requested.as_deref(),
            Some(format!("{}-4", epoch + 1).as_str())
        );
    }
}
