//! One subscriber's response to `GET /stream`: where it starts (live, or
//! after its Last-Event-ID), then its events, with a reset notice wherever
//! events of its own topics are gone, a `position` event wherever its place
//! moved without an event of its own, keep-alive comments on a quiet
//! stream, and a clean end at shutdown.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use shared::{
    AuthExpired, EventId, ResetNotice, ResetReason, StreamPosition, TopicPattern,
    AUTH_EXPIRED_EVENT, POSITION_EVENT, RESET_EVENT,
};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use warp::http::{header, HeaderValue, Response};
use warp::Reply;

use crate::auth::StreamAccess;
use crate::error::ApiError;
use crate::event_log::{SharedLog, Span, Unavailable};
use crate::hub::store::Loss;
use crate::hub::{frame_json, Batch, Filter, Hub, HubStats, Position, Read, Refused, Subscription};

/// What a stream request asks for.
#[derive(Debug, Clone, Default)]
pub struct StreamRequest {
    /// The id the client last received (the `Last-Event-ID` header, else the
    /// `lastEventId` query parameter).
    pub last_event_id: Option<String>,
    /// The topics and patterns to receive (none: every topic).
    pub patterns: BTreeSet<TopicPattern>,
    /// How many of the selection's newest events to start with (`last`),
    /// when no id is given; 0: the stream starts live.
    pub last: u64,
}

impl StreamRequest {
    /// Reads `topic` (repeatable: a topic name, `prefix.*` or `*`),
    /// `lastEventId` and `last` (0 to `max_last`) from a query string; the
    /// `Last-Event-ID` header, sent by a reconnecting `EventSource`, wins
    /// over the query parameter, which stays the same across reconnects.
    /// An id, from either, makes `last` count for nothing.
    ///
    /// # Errors
    /// [`ApiError::InvalidTopic`] for a topic or pattern that breaks the
    /// rules; [`ApiError::InvalidQuery`] for a `last` that is not a number
    /// from 0 to `max_last`.
    pub fn from_query(
        query: &str,
        header_id: Option<String>,
        max_last: u64,
    ) -> Result<Self, ApiError> {
        let mut patterns = BTreeSet::new();
        let mut query_id = None;
        let mut last = 0;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "topic" => {
                    patterns.insert(TopicPattern::parse(&value).map_err(ApiError::InvalidTopic)?);
                }
                "lastEventId" => query_id = Some(value.into_owned()),
                "last" => last = parse_last(&value, max_last)?,
                _ => {}
            }
        }
        let last_event_id = header_id.or(query_id);
        Ok(Self {
            last: if last_event_id.is_some() { 0 } else { last },
            last_event_id,
            patterns,
        })
    }

    /// The filter of the patterns asked for.
    pub fn filter(&self) -> Filter {
        Filter::new(self.patterns.iter().cloned())
    }
}

/// A `last` query value: a number from 0 to `max_last`.
fn parse_last(value: &str, max_last: u64) -> Result<u64, ApiError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= max_last)
        .ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "last must be a number from 0 to {max_last} (--history-per-topic), not {value:?}"
            ))
        })
}

/// Per-server stream settings.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// Silence on a connection after which a keep-alive (or a `position`
    /// event) is written.
    pub keep_alive: Duration,
    /// Reconnection delay advised in the `retry:` field.
    pub retry: Duration,
    /// Most topics and patterns one stream may name.
    pub max_topics: usize,
    /// The largest `last` a stream may ask for (`--history-per-topic`).
    pub max_last: u64,
}

/// Where a new subscriber starts, as far as the log's position tells.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// At seq `cursor` of `epoch`; `restarted` when the client's id was of
    /// another log, whose events are gone.
    At {
        /// The epoch the cursor counts in.
        epoch: u64,
        /// The first seq to read.
        cursor: u64,
        /// Whether the client's id belonged to another log.
        restarted: bool,
    },
    /// The client's id is of a newer epoch than this replica has read: it
    /// waits until the replica has caught up with the shared log.
    Ahead,
}

/// Where a new subscriber starts, from the log's `position` and the
/// client's Last-Event-ID (a malformed one counts as none: the stream
/// starts live). Only asked once the log is loaded. What of the
/// subscriber's own is gone after it, the first read finds.
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
        epoch,
        horizon,
        next,
        ..
    } = position;
    let Some(mut id) = last_event_id.and_then(|raw| raw.parse::<EventId>().ok()) else {
        return Resume::At {
            epoch,
            cursor: next,
            restarted: false,
        };
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
        return Resume::At {
            epoch,
            cursor: horizon,
            restarted: true,
        };
    }
    let cursor = if id.seq >= next && !replica {
        // The in-memory log has not issued such an id: the client starts
        // live. A replica waits for what the client saw elsewhere.
        next
    } else {
        id.seq.saturating_add(1)
    };
    Resume::At {
        epoch,
        cursor,
        restarted: false,
    }
}

/// The notice for a client whose id belongs to another log (an earlier run,
/// or a shared stream that was replaced or lost events).
fn restarted(requested: Option<&str>, resume_seq: u64) -> ResetNotice {
    ResetNotice {
        reason: ResetReason::ServerRestarted,
        requested: requested.map(str::to_owned),
        missed_from: None,
        missed_to: None,
        missed_count: None,
        resume_seq,
        message: format!(
            "The event log restarted (a new server run, or a new shared stream): \
             events from before it are gone. Replaying what it keeps from seq {resume_seq}."
        ),
    }
}

/// The notice for events of the subscriber's own that are gone.
fn lost(reason: ResetReason, requested: Option<&str>, loss: Loss, resume_seq: u64) -> ResetNotice {
    let what = match loss.count {
        Some(1) => "1 event".to_owned(),
        Some(n) => format!("{n} events"),
        None => "events".to_owned(),
    };
    let why = match reason {
        ResetReason::FellBehind => "left the history before they could be sent",
        _ => "are no longer kept",
    };
    ResetNotice {
        reason,
        requested: requested.map(str::to_owned),
        missed_from: Some(loss.first),
        missed_to: Some(loss.last),
        missed_count: loss.count,
        resume_seq,
        message: format!(
            "{what} of your topics between seq {} and {} {why}. \
             Going on from seq {resume_seq}.",
            loss.first, loss.last
        ),
    }
}

/// What a backfill read says is lost in `first..=last`: the hub's count
/// when that is the very stretch the hub counted and the read covered it
/// all without finding an event, else an unknown count.
fn logged_loss(first: u64, last: u64, span: &Span, hub_loss: Loss) -> Loss {
    let all_gone = span.events.is_empty() && span.next > hub_loss.last;
    if all_gone && (first, last) == (hub_loss.first, hub_loss.last) {
        return hub_loss;
    }
    Loss::unknown(first, last)
}

/// The `event: reset` frame; its id makes a later reconnect resume right
/// after the notice.
fn reset_frame(hub: &Hub, epoch: u64, notice: &ResetNotice) -> Bytes {
    HubStats::add(&hub.stats.resets, 1);
    let id = EventId::new(epoch, notice.resume_seq.saturating_sub(1));
    frame_json(Some(RESET_EVENT), &id, notice)
}

/// The state of one subscriber's body.
///
/// The hot path (woken by a publish, write the new frames) touches no timer
/// and registers one waiter: the keep-alive timer is re-armed only when it
/// fires, and shutdown arrives through the same wake-up.
struct Subscriber {
    /// Registration with the hub: wake-ups, lag tracking, what it follows.
    /// A subscriber cut for lag is closed with its connection, which drops
    /// this stream.
    sub: Subscription,
    /// Where the subscriber is: waiting to settle its start, reading from
    /// the event log, or reading the hub.
    phase: Phase,
    /// The epoch `cursor` counts in; 0 when the log had no epoch yet (its
    /// first events are then this subscriber's without a notice).
    epoch: u64,
    /// The hub's generation the cursor counts in.
    generation: u64,
    /// The next seq to read.
    cursor: u64,
    /// The seq (in `epoch`) of the last id written to the client: of an
    /// event, a notice or a `position`. A `position` is due when the cursor
    /// has moved past it without an event for this subscriber.
    told: u64,
    /// Losses at or below this seq were announced already.
    announced_through: u64,
    /// Whether the first read after settling is still to come.
    resuming: Resuming,
    /// The event log, for a start settled late and for backfill.
    log: SharedLog,
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
    /// Whether the hub may hold frames not yet read: set by a wake-up, or
    /// when a read stopped at the batch size. When clear, the stream goes
    /// straight to waiting instead of reading again.
    dirty: bool,
    /// When the stream's token stops being accepted, and a timer for it:
    /// the stream then says so with `auth_expired` and ends.
    expiry: Option<(SystemTime, Pin<Box<Sleep>>)>,
    /// Set once the last frame (`auth_expired`) is out: the stream ends.
    ending: bool,
}

/// Whether a subscriber's first read after settling its start is still to
/// come: its losses are then `history_exceeded` for the client's id, and
/// later ones `fell_behind`.
#[derive(Debug)]
enum Resuming {
    /// The first read is to come.
    FirstRead {
        /// The client's Last-Event-ID, named in the notice.
        requested: Option<String>,
    },
    /// Past it (or the start announced everything before it already).
    Done,
}

impl Resuming {
    /// Takes the state, leaving [`Resuming::Done`].
    fn take(&mut self) -> Resuming {
        std::mem::replace(self, Resuming::Done)
    }

    /// The client's Last-Event-ID, while the first read is to come.
    fn requested(self) -> Option<String> {
        match self {
            Resuming::FirstRead { requested } => requested,
            Resuming::Done => None,
        }
    }
}

/// Where a subscriber reads from.
#[derive(Debug)]
enum Phase {
    /// The start is not settled yet: the log is not loaded (a server still
    /// catching up with a shared log), or the client's id is of an epoch
    /// this replica has not read yet. Settled from the client's
    /// Last-Event-ID once the log is loaded and has the id's epoch, or has
    /// caught up with the shared log (`synced` moved on) without it.
    Unsettled {
        /// The client's Last-Event-ID.
        requested: Option<String>,
        /// The hub's sync count when the subscriber arrived.
        synced_at: u64,
        /// How many of the selection's newest events to start with, when
        /// the client gave no id (`?last=N`).
        last: u64,
    },
    /// The hub holds fewer than the `last` events the client asked for:
    /// the event log is asked for the `want` newest before seq `before`,
    /// the oldest the hub holds (or its cursor), once, before the opening
    /// `position` goes out.
    Seeking {
        /// How many more events the client asked for.
        want: usize,
        /// The seq the start from the hub would be.
        before: u64,
    },
    /// Events the hub no longer holds come from the event log (Redis, or
    /// the disk), up
    /// to `upto`; then back to the hub.
    Backfill {
        /// The last seq to read from the log.
        upto: u64,
        /// The first seq the hub said was lost for this subscriber.
        lost_from: u64,
        /// How many of the subscriber's events the hub counted lost in
        /// `lost_from..=upto`, when it knew: the count told when the log
        /// holds none of them either.
        counted: Option<u64>,
        /// When the current run of failed reads began, if one is going on.
        failing_since: Option<Instant>,
    },
    /// Reading the hub.
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
        if self.ending {
            return None;
        }
        loop {
            if self.sub.hub().closed().is_cancelled() {
                return None;
            }
            match self.phase {
                Phase::Unsettled { .. } => {
                    if let Some(opening) = self.settle_start() {
                        return Some(opening);
                    }
                    if matches!(self.phase, Phase::Seeking { .. }) {
                        continue;
                    }
                }
                Phase::Seeking { want, before } => return Some(self.seek_last(want, before).await),
                Phase::Backfill { .. } => match self.backfill_chunk().await {
                    Ok(Some(chunk)) => return Some(chunk),
                    Ok(None) => continue,
                    Err(Ended) => return None,
                },
                Phase::Live => {
                    if self.dirty {
                        if let Some(chunk) = self.read_hub() {
                            return Some(chunk);
                        }
                        if !matches!(self.phase, Phase::Live) {
                            continue;
                        }
                    }
                }
            }
            let expiry = async {
                match self.expiry.as_mut() {
                    Some((_, sleep)) => sleep.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = expiry => {
                    return Some(self.expired());
                }
                () = self.sub.changed() => {
                    self.dirty = true;
                }
                () = self.tick.as_mut() => {
                    let due = self.last_write + self.keep_alive;
                    let now = Instant::now();
                    if now >= due {
                        self.tick.as_mut().reset(now + self.keep_alive);
                        if let Some(frame) = self.quiet_frame() {
                            return Some(frame);
                        }
                        continue;
                    }
                    self.tick.as_mut().reset(due);
                }
            }
        }
    }

    /// The `auth_expired` event, with the subscriber's place as its id; the
    /// stream ends after it.
    fn expired(&mut self) -> Bytes {
        self.ending = true;
        let at = self
            .expiry
            .as_ref()
            .map_or_else(SystemTime::now, |(at, _)| *at);
        let expired = AuthExpired {
            expired_at: humantime::format_rfc3339_seconds(at).to_string(),
        };
        let id = EventId::new(self.epoch, self.told);
        frame_json(Some(AUTH_EXPIRED_EVENT), &id, &expired)
    }

    /// What a quiet connection gets: anything new after all; else a
    /// `position` when the subscriber's place moved past events it does not
    /// receive; else a keep-alive. `None` when the phase changed instead.
    fn quiet_frame(&mut self) -> Option<Bytes> {
        if matches!(self.phase, Phase::Live) {
            // Brings the cursor up to what is visible, so that the position
            // is current.
            if let Some(chunk) = self.read_hub() {
                return Some(chunk);
            }
            if !matches!(self.phase, Phase::Live) {
                return None;
            }
            let at = self.cursor.saturating_sub(1);
            if at > self.told {
                return Some(self.position_at(at));
            }
        }
        Some(Bytes::from_static(KEEP_ALIVE))
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
        self.sub.clear_wake();
        let hub = self.sub.hub();
        let generation = hub.generation();
        let position = hub.position();
        if !position.loaded {
            return None;
        }
        let Phase::Unsettled {
            requested,
            synced_at,
            last,
        } = &self.phase
        else {
            return None;
        };
        let (requested, last) = (requested.clone(), *last);
        let resume = match resume_point(position, hub.is_replica(), requested.as_deref()) {
            Resume::Ahead if hub.synced() <= *synced_at => return None,
            // Caught up with the shared log and still not there: the id
            // was not issued by this log.
            Resume::Ahead => Resume::At {
                epoch: position.epoch,
                cursor: position.horizon,
                restarted: true,
            },
            resume => resume,
        };
        let Resume::At {
            epoch,
            cursor,
            restarted: was_restarted,
        } = resume
        else {
            return None;
        };
        self.epoch = epoch;
        self.generation = generation;
        self.cursor = cursor;
        self.phase = Phase::Live;
        self.dirty = true;
        if last > 0 && requested.is_none() {
            return self.start_from_last(usize::try_from(last).unwrap_or(usize::MAX));
        }
        let mut out = BytesMut::new();
        if was_restarted {
            // The notice stands for everything before the current log's
            // kept events, its own losses included.
            self.announced_through = position.next.saturating_sub(1);
            let notice = restarted(requested.as_deref(), cursor);
            out.extend_from_slice(&reset_frame(self.sub.hub(), epoch, &notice));
            self.resuming = Resuming::Done;
        } else {
            self.resuming = Resuming::FirstRead { requested };
        }
        // The client now holds everything before the cursor.
        let position = self.position_at(cursor.saturating_sub(1));
        out.extend_from_slice(&position);
        Some(out.freeze())
    }

    /// Starts at the `last` newest events of the selection the hub holds
    /// (the client gave no id): returns the `position` before them; or,
    /// when the hub holds fewer and the log reaches further, moves to
    /// [`Phase::Seeking`] and returns `None`. Nothing the selection lost
    /// before now is announced: the client asked for what is there.
    fn start_from_last(&mut self, last: usize) -> Option<Bytes> {
        let start = self.sub.last_start(last);
        self.announced_through = start.visible;
        self.resuming = Resuming::Done;
        let before = start.oldest.unwrap_or(self.cursor);
        if start.found < last && self.log.reaches_further() {
            self.phase = Phase::Seeking {
                want: last - start.found,
                before,
            };
            return None;
        }
        self.cursor = before;
        Some(self.position_at(before.saturating_sub(1)))
    }

    /// Asks the event log for the `want` newest events of the selection
    /// before seq `before` ([`Phase::Seeking`]): they are replayed from the
    /// log, then the stream goes on from the hub at `before`. A log that
    /// cannot be read now leaves the start at `before`. Returns the
    /// `position` before the start.
    async fn seek_last(&mut self, want: usize, before: u64) -> Bytes {
        let sought = self.log.oldest_of_last(
            &self.sub.filter,
            self.sub.hidden.clone(),
            self.epoch,
            before,
            want,
        );
        let oldest = match sought.await {
            Ok(oldest) => oldest,
            Err(error) => {
                tracing::info!(%error, "starting a stream at the hub's last events only");
                None
            }
        };
        match oldest.filter(|seq| *seq < before) {
            Some(seq) => {
                self.cursor = seq;
                self.phase = Phase::Backfill {
                    upto: before - 1,
                    lost_from: seq,
                    counted: None,
                    failing_since: None,
                };
            }
            None => {
                self.cursor = before;
                self.phase = Phase::Live;
                self.dirty = true;
            }
        }
        self.position_at(self.cursor.saturating_sub(1))
    }

    /// Reads the next events the hub no longer holds from the event log
    /// (Redis, or the disk): the bytes to write, or `None` when none of them
    /// is for this subscriber. Events of its own that the log does not hold
    /// either are announced once with a `history_exceeded` notice; a log that cannot be read is retried for
    /// [`BACKFILL_PATIENCE`], then the stream ends ([`Ended`]) so that the
    /// client reconnects and resumes from where it got to. Ends the backfill
    /// once the cursor passes `upto`.
    async fn backfill_chunk(&mut self) -> Result<Option<Bytes>, Ended> {
        let Phase::Backfill {
            upto,
            lost_from,
            counted,
            ..
        } = self.phase
        else {
            return Ok(None);
        };
        if self.cursor > upto || self.sub.hub().epoch() != self.epoch {
            self.announced_through = self.announced_through.max(upto);
            self.phase = Phase::Live;
            self.dirty = true;
            return Ok(None);
        }
        let read = self.log.span(
            &self.sub.filter,
            self.epoch,
            self.cursor,
            upto,
            BACKFILL_BATCH,
        );
        let span = match read.await {
            Ok(span) => span,
            Err(error) => return self.backfill_failed(&error).await,
        };
        self.backfill_recovered();
        let hub_loss = Loss {
            first: lost_from,
            last: upto,
            count: counted,
        };
        let out = self.backfill_frames(&span, hub_loss);
        // A read always moves on, so that a backfill ends.
        self.cursor = span.next.max(self.cursor + 1);
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(out.freeze()))
    }

    /// A backfill read succeeded: a run of failures, if any, is over.
    fn backfill_recovered(&mut self) {
        if let Phase::Backfill { failing_since, .. } = &mut self.phase {
            *failing_since = None;
        }
        self.sub.set_waiting(false);
    }

    /// A backfill read failed: retried after [`BACKFILL_RETRY`] until the
    /// failures have lasted [`BACKFILL_PATIENCE`]; then the stream ends.
    async fn backfill_failed(&mut self, error: &Unavailable) -> Result<Option<Bytes>, Ended> {
        let Phase::Backfill { failing_since, .. } = &mut self.phase else {
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
            () = self.sub.hub().closed().cancelled() => Err(Ended),
            () = tokio::time::sleep(BACKFILL_RETRY) => Ok(None),
        }
    }

    /// The frames of one backfill read: a `history_exceeded` notice for
    /// what the log no longer holds of this subscriber's (the hub knows
    /// that nothing before `hub_loss.first` was), then the events it
    /// follows. The notice carries the hub's count when the log holds none
    /// of the events the hub counted (they expired, say, from both).
    fn backfill_frames(&mut self, span: &Span, hub_loss: Loss) -> BytesMut {
        let mut out = BytesMut::new();
        if let Some((first, last)) = span.gone {
            let first = first.max(self.cursor).max(self.announced_through + 1);
            if last >= first && last >= hub_loss.first {
                self.announced_through = last;
                let loss = logged_loss(first.max(hub_loss.first), last, span, hub_loss);
                let requested = self.resuming.take().requested();
                let notice = lost(
                    ResetReason::HistoryExceeded,
                    requested.as_deref(),
                    loss,
                    last + 1,
                );
                out.extend_from_slice(&reset_frame(self.sub.hub(), self.epoch, &notice));
                self.told = last;
            }
        }
        let mut count = 0;
        // The log filters by the subscription; topics its token may not
        // read are skipped here.
        for (id, event) in span
            .events
            .iter()
            .filter(|(_, e)| self.sub.follows(&e.topic))
        {
            out.extend_from_slice(&frame_json(None, id, event));
            self.told = id.seq;
            count += 1;
        }
        HubStats::add(&self.sub.hub().stats.delivered, count);
        out
    }

    /// Reads what the hub holds for this subscriber after the cursor: the
    /// bytes to write, or `None` when there is nothing for it (or the phase
    /// changed to a backfill).
    fn read_hub(&mut self) -> Option<Bytes> {
        // Clear the wake flag before reading, so a publish racing with the
        // read still wakes us.
        self.sub.clear_wake();
        self.dirty = false;
        match self
            .sub
            .read(self.generation, self.cursor, self.announced_through)
        {
            Read::Restarted {
                epoch,
                horizon,
                generation,
            } => self.hub_restarted(epoch, horizon, generation),
            Read::Batch(batch) => self.hub_batch(batch),
        }
    }

    /// The hub forgot what it held since the cursor's generation: the
    /// log's first events, a stretch a replica skipped, or a new log.
    fn hub_restarted(&mut self, epoch: u64, horizon: u64, generation: u64) -> Option<Bytes> {
        let previous = self.epoch;
        self.generation = generation;
        self.dirty = true;
        if previous == 0 {
            // The log's first events: this subscriber was waiting for them.
            self.epoch = epoch;
            self.told = 0;
            self.cursor = self.cursor.max(horizon);
            return self.read_hub();
        }
        if epoch == previous {
            // A replica skipped a stretch it could not read.
            if self.cursor >= horizon {
                return self.read_hub();
            }
            let loss = Loss::unknown(self.cursor, horizon - 1);
            let notice = lost(ResetReason::FellBehind, None, loss, horizon);
            self.cursor = horizon;
            self.told = horizon - 1;
            return Some(reset_frame(self.sub.hub(), epoch, &notice));
        }
        let notice = new_log(
            EventId::new(previous, self.cursor.saturating_sub(1)),
            horizon,
        );
        self.epoch = epoch;
        self.cursor = horizon;
        self.announced_through = 0;
        self.told = horizon.saturating_sub(1);
        Some(reset_frame(self.sub.hub(), epoch, &notice))
    }

    /// The frames of one hub read, after the notice of what it lost; or a
    /// switch to a backfill when the log may still hold the loss.
    fn hub_batch(&mut self, batch: Batch) -> Option<Bytes> {
        if let Some(loss) = batch.loss {
            if self.log.reaches_further() && !matches!(self.phase, Phase::Backfill { .. }) {
                // The log may still hold what the hub dropped.
                self.phase = Phase::Backfill {
                    upto: loss.last,
                    lost_from: loss.first,
                    counted: loss.count,
                    failing_since: None,
                };
                return None;
            }
        }
        let notice = batch.loss.map(|loss| {
            let resume_seq = batch.first.unwrap_or(batch.next);
            let (reason, requested) = match self.resuming.take() {
                Resuming::FirstRead { requested } => (ResetReason::HistoryExceeded, requested),
                Resuming::Done => (ResetReason::FellBehind, None),
            };
            let notice = lost(reason, requested.as_deref(), loss, resume_seq);
            self.told = resume_seq - 1;
            self.announced_through = self.announced_through.max(loss.last);
            reset_frame(self.sub.hub(), self.epoch, &notice)
        });
        self.resuming = Resuming::Done;
        self.cursor = batch.next;
        self.dirty = batch.more;
        if batch.bytes.is_some() {
            self.told = batch.last;
            HubStats::add(&self.sub.hub().stats.delivered, batch.count);
        }
        match (notice, batch.bytes) {
            // The hot path: the shared frames, as they are.
            (None, bytes) => bytes,
            (Some(notice), None) => Some(notice),
            (Some(notice), Some(bytes)) => {
                let mut out = BytesMut::with_capacity(notice.len() + bytes.len());
                out.extend_from_slice(&notice);
                out.extend_from_slice(&bytes);
                Some(out.freeze())
            }
        }
    }
}

/// The notice of a log that began anew after `last`: the client goes on
/// from seq `horizon` of the new one.
fn new_log(last: EventId, horizon: u64) -> ResetNotice {
    ResetNotice {
        reason: ResetReason::ServerRestarted,
        requested: None,
        missed_from: None,
        missed_to: None,
        missed_count: None,
        resume_seq: horizon,
        message: format!(
            "The event log lost events after {last} (it was restored from an older copy, or \
             replaced): it began anew. Continuing from seq {horizon} of the new log."
        ),
    }
}

/// The stream ends: its client reconnects and resumes.
#[derive(Debug)]
struct Ended;

/// The body of a stream: pre-framed bytes, several pending events in one chunk.
fn body(feed: Feed) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + Sync {
    let stream = futures_util::stream::unfold(feed, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok(chunk), s))
    });
    sync_wrapper::SyncStream::new(stream)
}

/// A subscriber's stream of pre-framed bytes, whichever way it is sent:
/// as a hyper response body ([`response`]), or written to the socket by
/// the connection itself.
pub(crate) struct Feed(Box<Subscriber>);

impl Feed {
    /// The next bytes to send (several pending events in one chunk), or
    /// `None` when the stream ends.
    pub(crate) async fn next_chunk(&mut self) -> Option<Bytes> {
        self.0.next_chunk().await
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

/// Why a stream could not be opened.
#[derive(Debug)]
pub(crate) enum Unopened {
    /// The request names more topics than `--max-topics-per-stream`.
    TooManyTopics(ApiError),
    /// The hub refused the subscription.
    Refused(Refused),
}

impl Unopened {
    /// The answer, counting a refusal of the hub's in its stats (once per
    /// answer: a request that is retried another way is not counted twice).
    pub(crate) fn answer(self, hub: &Hub) -> ApiError {
        match self {
            Unopened::TooManyTopics(error) => error,
            Unopened::Refused(refused) => {
                HubStats::add(&hub.stats.refused, 1);
                match refused {
                    Refused::Full(limit) => ApiError::TooManySubscribers(limit),
                    Refused::TopicLimit(limit) => ApiError::TopicLimit(limit.0),
                }
            }
        }
    }
}

/// Subscribes for `GET /stream`: the stream to send.
///
/// # Errors
/// [`Unopened::TooManyTopics`] over `--max-topics-per-stream`;
/// [`Unopened::Refused`] at the subscriber limit, or when a topic it
/// names is new and the live-topic limit is reached.
pub(crate) fn subscribe(
    hub: &Arc<Hub>,
    log: &SharedLog,
    request: StreamRequest,
    access: StreamAccess,
    kill: CancellationToken,
    settings: StreamSettings,
) -> Result<Feed, Unopened> {
    let StreamAccess { hidden, expires_at } = access;
    if request.patterns.len() > settings.max_topics {
        return Err(Unopened::TooManyTopics(ApiError::TooManyTopics {
            given: request.patterns.len(),
            limit: settings.max_topics,
        }));
    }
    let sub = hub
        .subscribe(&request.filter(), hidden, kill)
        .map_err(Unopened::Refused)?;
    HubStats::add(&hub.stats.subscriptions, 1);
    let mut subscriber = Subscriber {
        sub,
        phase: Phase::Unsettled {
            requested: request.last_event_id,
            synced_at: hub.synced(),
            last: request.last,
        },
        epoch: 0,
        generation: 0,
        cursor: u64::MAX,
        told: 0,
        announced_through: 0,
        resuming: Resuming::Done,
        log: log.clone(),
        first: None,
        keep_alive: settings.keep_alive,
        retry_ms: settings.retry.as_millis() as u64,
        tick: Box::pin(tokio::time::sleep(settings.keep_alive)),
        last_write: Instant::now(),
        dirty: true,
        expiry: expires_at.map(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            (at, Box::pin(tokio::time::sleep(left)))
        }),
        ending: false,
    };
    // The start is settled now when the log is loaded, so that anything
    // published after the opening reaches this subscriber; the opening goes
    // out at once so clients and proxies see the stream live, with the
    // notice and the position.
    let mut first = BytesMut::from(
        format!(": stream open\nretry: {}\n\n", settings.retry.as_millis()).as_bytes(),
    );
    if let Some(settled) = subscriber.settle_start() {
        first.extend_from_slice(&settled);
    }
    subscriber.first = Some(first.freeze());
    Ok(Feed(Box::new(subscriber)))
}

/// The answer to `GET /stream` that hyper sends: the stream's headers and
/// `feed` as its body.
pub(crate) fn response(feed: Feed) -> warp::reply::Response {
    let mut response: Response<_> = warp::reply::stream(body(feed)).into_response();
    stream_headers(response.headers_mut());
    response
}

/// The headers of a stream's answer (`GET`, and `HEAD` alike): an event
/// stream, not cached, not buffered by a proxy.
pub(crate) fn stream_headers(headers: &mut warp::http::HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, cursor: u64, restarted: bool) -> Resume {
        Resume::At {
            epoch,
            cursor,
            restarted,
        }
    }

    #[test]
    fn resume_points() {
        let position = Position {
            loaded: true,
            epoch: 7,
            horizon: 1,
            next: 6,
        };
        // Live when there is no usable id.
        assert_eq!(resume_point(position, false, None), at(7, 6, false));
        assert_eq!(
            resume_point(position, false, Some("garbage")),
            at(7, 6, false)
        );
        assert_eq!(resume_point(position, false, Some("7-99")), at(7, 6, false));
        // Right after the id (what of it is gone, the first read finds).
        assert_eq!(resume_point(position, false, Some("7-2")), at(7, 3, false));
        assert_eq!(resume_point(position, false, Some("7-5")), at(7, 6, false));
        assert_eq!(resume_point(position, false, Some("7-0")), at(7, 1, false));
        // A position taken before the log had an epoch.
        assert_eq!(resume_point(position, false, Some("0-0")), at(7, 1, false));
        // Another run.
        assert_eq!(resume_point(position, false, Some("8-4")), at(7, 1, true));
    }

    #[test]
    fn a_replica_waits_for_ids_it_has_not_read() {
        let position = Position {
            loaded: true,
            epoch: 7,
            horizon: 3,
            next: 98,
        };
        assert_eq!(
            resume_point(position, true, Some("7-100")),
            at(7, 101, false)
        );
        assert_eq!(
            resume_point(position, true, Some(&format!("7-{}", u64::MAX))),
            at(7, u64::MAX, false)
        );
        assert_eq!(resume_point(position, true, Some("8-1")), Resume::Ahead);
        assert_eq!(resume_point(position, true, Some("6-1")), at(7, 3, true));
        assert_eq!(resume_point(position, false, Some("8-1")), at(7, 3, true));
    }
}
