//! One subscriber's response to `GET /stream`: where it starts (live, or
//! after its Last-Event-ID, with a reset notice when the history cannot cover
//! the gap), then the live events, keep-alive comments on a quiet stream, and
//! a clean end at shutdown.

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use shared::{EventId, ResetNotice, ResetReason, StreamPosition, POSITION_EVENT, RESET_EVENT};
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
        let mut topics: HashSet<Box<str>> = HashSet::new();
        let mut query_id = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "topic" => {
                    shared::validate_topic(&value).map_err(ApiError::InvalidTopic)?;
                    if !topics.contains(value.as_ref()) {
                        topics.insert(Box::from(value.as_ref()));
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
                Topics::Only(topics)
            },
        })
    }
}

/// Per-server stream settings.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// Silence on a connection after which a keep-alive (or a `position`
    /// event) is written.
    pub keep_alive: Duration,
    /// Reconnection delay advised in the `retry:` field.
    pub retry: Duration,
    /// Most topics one stream may name.
    pub max_topics: usize,
}

/// Where a new subscriber starts, as far as the log's position tells.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// At seq `cursor` of `epoch`, after the notice, if the history cannot
    /// take the client exactly where it left off.
    At(u64, u64, Option<ResetNotice>),
    /// The client's id is of a newer epoch than this replica has read: it
    /// waits until the replica has caught up with the shared log.
    Ahead,
}

/// Where a new subscriber starts, from the log's `position` and the
/// client's Last-Event-ID (a malformed one counts as none: the stream
/// starts live). Only asked once the log is loaded.
///
/// A `replica` (a server reading a shared log) may not have read yet what
/// the client saw on another server: an id ahead of it is waited for, never
/// replayed from before it.
pub(crate) fn resume_point(
    position: Position,
    replica: bool,
    last_event_id: Option<&str>,
) -> Resume {
    let Position {
        epoch, first, next, ..
    } = position;
    let Some((raw, mut id)) =
        last_event_id.and_then(|raw| Some((raw, raw.parse::<EventId>().ok()?)))
    else {
        return Resume::At(epoch, next, None);
    };
    if id.epoch == 0 {
        // A position taken before the log had any event: everything of the
        // log's first epoch is new to this client.
        id = EventId::new(epoch, 0);
    }
    if id.epoch != epoch {
        if replica && id.epoch > epoch {
            return Resume::Ahead;
        }
        return Resume::At(epoch, first, Some(restarted(position, raw)));
    }
    if id.seq >= next {
        // A replica waits for what the client saw elsewhere; the in-memory
        // log has not issued such an id, so the client starts live.
        let cursor = if replica {
            id.seq.saturating_add(1)
        } else {
            next
        };
        return Resume::At(epoch, cursor, None);
    }
    let wanted = id.seq + 1;
    if wanted < first {
        return Resume::At(
            epoch,
            first,
            Some(history_exceeded(Some(raw), wanted, first)),
        );
    }
    Resume::At(epoch, wanted, None)
}

/// The notice for a client whose id belongs to another log (an earlier run,
/// or a shared stream that was replaced).
fn restarted(position: Position, requested: &str) -> ResetNotice {
    let first = position.first;
    let missed = (first > 1).then(|| (1, first - 1));
    ResetNotice {
        reason: ResetReason::ServerRestarted,
        requested: Some(requested.to_owned()),
        missed_from: missed.map(|m| m.0),
        missed_to: missed.map(|m| m.1),
        resume_seq: first,
        message: format!(
            "The event log restarted (a new server run, or a new shared stream): \
             events from before it are gone. Replaying from seq {first}."
        ),
    }
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
    /// The seq (in `epoch`) of the last id written to the client: of an
    /// event, a notice or a `position`. A `position` is due when the cursor
    /// has moved past it without an event for this subscriber.
    told: u64,
    /// The event log, for a start settled late and for backfill.
    log: SharedLog,
    /// The topics to deliver.
    topics: Topics,
    /// Changes after every publish, and at shutdown.
    wake: watch::Receiver<u64>,
    /// Bytes to send before anything else (the opening, a reset notice and
    /// the position).
    first: Option<Bytes>,
    /// Silence after which a keep-alive or `position` is written.
    keep_alive: Duration,
    /// The advised reconnection delay, repeated in `position` events.
    retry_ms: u64,
    /// Fires at `last_write + keep_alive`; re-armed only when it fires, so
    /// writing an event costs no timer work.
    tick: Pin<Box<Sleep>>,
    /// When bytes were last handed to the connection.
    last_write: Instant,
    /// Whether the log may hold frames not yet read: set by a publish
    /// notification, or when a read stopped at the batch size. When clear,
    /// the stream goes straight to waiting instead of reading the log again.
    dirty: bool,
}

/// Where a subscriber reads from.
#[derive(Debug)]
enum Phase {
    /// The start is not settled yet: the log is not loaded (a server still
    /// catching up with a shared log), or the client's id is of an epoch
    /// this replica has not read yet. Settled from the client's
    /// Last-Event-ID, kept here, once the log is loaded and has the id's
    /// epoch, or has caught up with the shared log (`synced` moved on)
    /// without it.
    Unsettled {
        /// The client's Last-Event-ID.
        requested: Option<String>,
        /// The hub's sync count when the subscriber arrived.
        synced_at: u64,
    },
    /// The cursor is older than the hub's history: the next events come
    /// from the event log (Redis) until the cursor reaches the history.
    Backfill {
        /// When the current run of failed reads began, if one is going on.
        failing_since: Option<Instant>,
    },
    /// Reading the hub's ring.
    Live,
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Events read from the event log at a time during a backfill (the log
/// may read fewer, to bound the bytes of one batch).
const BACKFILL_BATCH: usize = 512;

/// How long a backfill retries a failing event log before it ends the
/// stream, so that the client reconnects and resumes from where it got to.
const BACKFILL_PATIENCE: Duration = Duration::from_secs(5);

/// Delay between backfill retries.
const BACKFILL_RETRY: Duration = Duration::from_millis(200);

impl Subscriber {
    /// The next bytes to write, or `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let chunk = self.produce().await?;
        self.last_write = Instant::now();
        Some(chunk)
    }

    async fn produce(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            if self.sub.hub().shutdown_token().is_cancelled() {
                return None;
            }
            match self.phase {
                Phase::Unsettled { .. } => {
                    if let Some(opening) = self.settle_start() {
                        return Some(opening);
                    }
                }
                Phase::Backfill { .. } => match self.backfill_chunk().await {
                    Ok(Some(chunk)) => return Some(chunk),
                    Ok(None) => continue,
                    Err(Ended) => return None,
                },
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
                    let due = self.last_write + self.keep_alive;
                    let now = Instant::now();
                    if now >= due {
                        self.tick.as_mut().reset(now + self.keep_alive);
                        return Some(self.quiet_frame());
                    }
                    self.tick.as_mut().reset(due);
                }
            }
        }
    }

    /// What a quiet connection gets: a `position` when the subscriber's
    /// place moved past events it does not receive, else a keep-alive.
    fn quiet_frame(&mut self) -> Bytes {
        match self.position_frame() {
            Some(frame) => frame,
            None => Bytes::from_static(KEEP_ALIVE),
        }
    }

    /// The `position` event for the subscriber's place, when the client's
    /// last id is behind it.
    fn position_frame(&mut self) -> Option<Bytes> {
        if !matches!(self.phase, Phase::Live) {
            return None;
        }
        let at = self.cursor.saturating_sub(1);
        if at <= self.told {
            return None;
        }
        Some(self.position_at(at))
    }

    /// A `position` event for seq `at` of the subscriber's epoch.
    fn position_at(&mut self, at: u64) -> Bytes {
        self.told = at;
        let id = EventId::new(self.epoch, at);
        let position = StreamPosition {
            id: id.to_string(),
            retry_ms: self.retry_ms,
        };
        frame_json(Some(POSITION_EVENT), &id, &position)
    }

    /// Settles where this subscriber starts once the log is loaded (a
    /// server reading a shared log may still be catching up when the
    /// subscriber arrives, or not have read the client's epoch yet):
    /// returns the notice, if any, and the `position` to send first.
    fn settle_start(&mut self) -> Option<Bytes> {
        self.wake.borrow_and_update();
        let hub = self.sub.hub();
        let position = hub.position();
        if !position.loaded {
            return None;
        }
        let Phase::Unsettled {
            requested,
            synced_at,
        } = &self.phase
        else {
            return None;
        };
        let requested = requested.as_deref();
        let resume = match resume_point(position, hub.is_replica(), requested) {
            Resume::Ahead if hub.synced() <= *synced_at => return None,
            // Caught up with the shared log and still not there: the id
            // was not issued by this log.
            Resume::Ahead => Resume::At(
                position.epoch,
                position.first,
                Some(restarted(position, requested.unwrap_or_default())),
            ),
            resume => resume,
        };
        let Resume::At(epoch, cursor, notice) = resume else {
            return None;
        };
        let (cursor, notice, phase) = plan_start(cursor, notice, self.log.as_ref());
        self.epoch = epoch;
        self.cursor = cursor;
        self.phase = phase;
        self.sub.advance(cursor);
        self.dirty = true;
        let mut out = BytesMut::new();
        if let Some(notice) = notice {
            out.extend_from_slice(&reset_frame(self.sub.hub(), epoch, &notice));
        }
        // The client now holds everything before the cursor.
        let position = self.position_at(cursor.saturating_sub(1));
        out.extend_from_slice(&position);
        Some(out.freeze())
    }

    /// Reads the next events older than the hub's history from the event
    /// log: the bytes to write, or `None` when none of them is for this
    /// subscriber. Events the log no longer holds are announced with a
    /// `history_exceeded` notice; a log that cannot be read is retried for
    /// [`BACKFILL_PATIENCE`], then the stream ends ([`Ended`]) so that the
    /// client reconnects and resumes from where it got to. Ends the backfill
    /// once the cursor reaches the history.
    async fn backfill_chunk(&mut self) -> Result<Option<Bytes>, Ended> {
        let position = self.sub.hub().position();
        if position.epoch != self.epoch || self.cursor >= position.first {
            self.phase = Phase::Live;
            self.dirty = true;
            return Ok(None);
        }
        let events = match self
            .log
            .range(self.epoch, self.cursor, position.first - 1, BACKFILL_BATCH)
            .await
        {
            Ok(events) => {
                self.phase = Phase::Backfill {
                    failing_since: None,
                };
                self.sub.set_waiting(false);
                events
            }
            Err(error) => {
                let Phase::Backfill { failing_since } = &mut self.phase else {
                    return Ok(None);
                };
                let since = *failing_since.get_or_insert_with(Instant::now);
                self.sub.set_waiting(true);
                if since.elapsed() >= BACKFILL_PATIENCE {
                    tracing::info!(
                        %error,
                        cursor = self.cursor,
                        "ending a stream whose replay the event log cannot serve; \
                         the client reconnects and resumes"
                    );
                    return Err(Ended);
                }
                tokio::select! {
                    () = self.sub.hub().shutdown_token().cancelled() => return Err(Ended),
                    () = tokio::time::sleep(BACKFILL_RETRY) => {}
                }
                return Ok(None);
            }
        };
        // The first seq the log gave, or where the history starts.
        let found = events.first().map_or(position.first, |(id, _)| id.seq);
        let mut out = BytesMut::new();
        if found > self.cursor {
            let notice = history_exceeded(None, self.cursor, found);
            out.extend_from_slice(&reset_frame(self.sub.hub(), self.epoch, &notice));
            self.told = found - 1;
        }
        let mut count = 0;
        let mut next = found;
        for (id, event) in &events {
            next = id.seq + 1;
            if self.topics.matches(&event.topic) {
                out.extend_from_slice(&frame_json(None, id, event));
                self.told = id.seq;
                count += 1;
            }
        }
        self.cursor = next;
        self.sub.advance(next);
        Metrics::add(&self.sub.hub().metrics.delivered, count);
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(out.freeze()))
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
                self.told = 0;
                self.read_log()
            }
            Read::Replaced { epoch, first } => {
                let last = EventId::new(self.epoch, self.cursor.saturating_sub(1));
                let notice = ResetNotice {
                    reason: ResetReason::ServerRestarted,
                    requested: None,
                    missed_from: None,
                    missed_to: None,
                    resume_seq: first,
                    message: format!(
                        "The event log lost events after {last} (it was restored from an \
                         older copy, or replaced): it began anew. Continuing from seq \
                         {first} of the new log."
                    ),
                };
                self.epoch = epoch;
                self.cursor = first;
                self.told = first - 1;
                self.sub.advance(first);
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
                self.told = first - 1;
                self.sub.advance(first);
                self.dirty = true;
                Some(reset_frame(self.sub.hub(), self.epoch, &notice))
            }
            Read::Frames {
                bytes,
                count,
                last,
                next,
                more,
            } => {
                self.cursor = next;
                self.sub.advance(next);
                self.dirty = more;
                let bytes = bytes?;
                self.told = last;
                Metrics::add(&self.sub.hub().metrics.delivered, count);
                Some(bytes)
            }
        }
    }
}

/// The stream ends: its client reconnects and resumes.
#[derive(Debug)]
struct Ended;

/// Where a subscriber settled at `cursor` starts reading: when the events it
/// asks for are older than the hub's history but `log` may still hold them,
/// at the first of them in [`Phase::Backfill`], without the notice.
fn plan_start(
    cursor: u64,
    notice: Option<ResetNotice>,
    log: &dyn EventLog,
) -> (u64, Option<ResetNotice>, Phase) {
    match notice {
        Some(notice) if notice.reason == ResetReason::HistoryExceeded && log.reaches_further() => {
            let wanted = notice.missed_from.unwrap_or(cursor);
            (
                wanted,
                None,
                Phase::Backfill {
                    failing_since: None,
                },
            )
        }
        notice => (cursor, notice, Phase::Live),
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
/// [`ApiError::TooManyTopics`] over `--max-topics-per-stream`;
/// [`ApiError::TooManySubscribers`] at the subscriber limit.
pub(crate) fn open(
    hub: &Arc<Hub>,
    log: &SharedLog,
    request: StreamRequest,
    kill: CancellationToken,
    settings: StreamSettings,
) -> Result<warp::reply::Response, ApiError> {
    if request.topics.len() > settings.max_topics {
        return Err(ApiError::TooManyTopics {
            given: request.topics.len(),
            limit: settings.max_topics,
        });
    }
    // The start is settled at the first poll of the body when the log is
    // loaded, before anything published after the opening can be missed:
    // the cursor is taken now, and settling only decides the notice and the
    // position. Until then the cursor is out of the reaper's reach.
    let sub = hub.subscribe(u64::MAX, kill).map_err(|full| {
        Metrics::add(&hub.metrics.refused, 1);
        ApiError::TooManySubscribers(full.0)
    })?;
    Metrics::add(&hub.metrics.subscriptions, 1);
    let mut subscriber = Subscriber {
        sub,
        phase: Phase::Unsettled {
            requested: request.last_event_id,
            synced_at: hub.synced(),
        },
        epoch: 0,
        cursor: u64::MAX,
        told: u64::MAX,
        log: log.clone(),
        topics: request.topics,
        wake: hub.watch(),
        first: None,
        keep_alive: settings.keep_alive,
        retry_ms: settings.retry.as_millis() as u64,
        tick: Box::pin(tokio::time::sleep(settings.keep_alive)),
        last_write: Instant::now(),
        dirty: true,
    };
    // The opening goes out at once so clients and proxies see the stream
    // live; with a loaded log it holds the notice and the position too.
    let mut first = BytesMut::from(
        format!(": stream open\nretry: {}\n\n", settings.retry.as_millis()).as_bytes(),
    );
    if let Some(settled) = subscriber.settle_start() {
        first.extend_from_slice(&settled);
    }
    subscriber.first = Some(first.freeze());

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
        let hub = Hub::new(crate::hub::tests::options(3, 3, 10));
        let epoch = hub.epoch();
        assert_eq!(
            resume_point(hub.position(), false, None),
            Resume::At(epoch, 1, None)
        );
        for i in 0..5 {
            hub.publish("t", i.to_string());
        }
        let at = |id: Option<&str>| {
            let Resume::At(e, cursor, notice) = resume_point(hub.position(), false, id) else {
                panic!("the in-memory log never waits");
            };
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

    #[test]
    fn a_replica_waits_for_ids_it_has_not_read() {
        let position = Position {
            loaded: true,
            epoch: 7,
            first: 3,
            next: 98,
        };
        // Same epoch, ahead: start right after the client's id.
        assert_eq!(
            resume_point(position, true, Some("7-100")),
            Resume::At(7, 101, None)
        );
        // The top of the range does not overflow.
        assert_eq!(
            resume_point(position, true, Some(&format!("7-{}", u64::MAX))),
            Resume::At(7, u64::MAX, None)
        );
        // A newer epoch than the replica has read: wait for it.
        assert_eq!(resume_point(position, true, Some("8-1")), Resume::Ahead);
        // An older one is gone.
        let Resume::At(7, 3, Some(notice)) = resume_point(position, true, Some("6-1")) else {
            panic!("an older epoch resets");
        };
        assert_eq!(notice.reason, ResetReason::ServerRestarted);
        // In memory, the same ids start live: this log issued none of them.
        assert_eq!(
            resume_point(position, false, Some("7-100")),
            Resume::At(7, 98, None)
        );
        assert!(matches!(
            resume_point(position, false, Some("8-1")),
            Resume::At(7, 3, Some(_))
        ));
    }
}
