//! Redis Streams as the log, shared by every server pointed at the stream.
//!
//! Entry ids are the SSE event ids. A small Lua script (atomic in Redis)
//! gives each new entry the id `<epoch>-<seq>` with the stream's epoch and
//! the next seq: the epoch is Redis's clock in ms when the stream got its
//! first entry, and seqs are contiguous. So any server can tell, from a
//! client's `Last-Event-ID` alone, where in the stream it is, and the
//! stream can be read with plain `XREAD`/`XRANGE` by other tools.
//!
//! Each server has one reader ([`RedisLog::follow`]): it loads the last
//! `--history` entries into the hub at start, then blocks in `XREAD` for
//! new ones and hands them to [`Hub::replicate`], which frames each event
//! once for all local subscribers. Publishing is an `EVALSHA` of the script
//! on a connection of its own, acknowledged once Redis has the entry. When
//! the stream is kept longer than the history (`--redis-max-len`), a client
//! resuming from before the history is replayed with `XRANGE` on that
//! connection ([`EventLog::range`]) until it reaches the history.
//!
//! When Redis cannot be reached, the reader logs it once, counts it and
//! retries with backoff; subscribers keep their connections (and their
//! keep-alives) and receive what they missed when the reader catches up;
//! publishing answers 503.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex as SyncMutex;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError, Script};
use shared::{EventId, ServerEvent};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{AppendFuture, Appended, EventLog, LogHealth, RangeFuture, Unavailable};
use crate::hub::{now_rfc3339, Hub};

/// Appends one event: numbers it after the stream's newest entry (or starts
/// a new epoch on an empty stream), adds it, trims the stream, returns the id.
const APPEND: &str = r"
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local epoch, seq
if #newest == 0 then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
  seq = 1
else
  local id = newest[1][1]
  local dash = string.find(id, '-', 1, true)
  epoch = string.sub(id, 1, dash - 1)
  seq = tonumber(string.sub(id, dash + 1)) + 1
end
local id = epoch .. '-' .. string.format('%d', seq)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], id,
  'id', ARGV[2], 'topic', ARGV[3], 'message', ARGV[4], 'time', ARGV[5])
return id
";

/// Longest wait in one `XREAD BLOCK`.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries asked for per read.
const BATCH: usize = 1024;
/// How long connecting may take before Redis counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a publish waits for Redis's answer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Retry delays of the reader while Redis is unreachable.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How to reach the stream.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db`.
    pub url: String,
    /// The stream's key.
    pub key: String,
    /// The stream is trimmed to this many entries.
    pub max_len: u64,
    /// Entries loaded into the hub at start (the hub's history).
    pub history: u64,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Whether Redis answers, as the reader sees it, with the counts `/metrics`
/// shows. Each change is logged once.
#[derive(Debug, Default)]
struct Health {
    state: AtomicU8,
    outages: AtomicU64,
    errors: AtomicU64,
    down_since: SyncMutex<Option<Instant>>,
}

impl Health {
    fn reached(&self) {
        match self.state.swap(UP, Ordering::Relaxed) {
            UNKNOWN => tracing::info!("connected to Redis"),
            DOWN => {
                let down = self.down_since.lock().take().map(|t| t.elapsed());
                tracing::info!(
                    down_for_ms = down.map_or(0, |d| d.as_millis() as u64),
                    "Redis is reachable again: publishing works and subscribers catch up"
                );
            }
            _ => {}
        }
    }

    fn failed(&self, during: &'static str, error: &RedisError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.state.swap(DOWN, Ordering::Relaxed) == DOWN {
            tracing::debug!(%error, during, "Redis still unreachable");
        } else {
            self.outages.fetch_add(1, Ordering::Relaxed);
            *self.down_since.lock() = Some(Instant::now());
            tracing::error!(
                %error,
                during,
                "Redis is unreachable: publishing answers 503, subscribers stay connected \
                 and catch up when it is back"
            );
        }
    }
}

/// The Redis stream log. Build it with [`RedisLog::new`], run
/// [`RedisLog::follow`] once per server, publish with [`EventLog::append`].
pub struct RedisLog {
    client: Client,
    /// The connection for publishes and replays, made on demand and
    /// dropped on error, so that a command after an outage connects afresh
    /// instead of failing on the dead connection.
    commands: Mutex<Option<MultiplexedConnection>>,
    options: RedisOptions,
    append: Script,
    health: Health,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog")
            .field("options", &self.options)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl RedisLog {
    /// A log on the stream `options.key` of the Redis at `options.url`. No
    /// connection is made yet.
    ///
    /// # Errors
    /// The URL is not a Redis URL.
    pub fn new(options: RedisOptions) -> Result<Self, RedisError> {
        Ok(Self {
            client: Client::open(options.url.as_str())?,
            commands: Mutex::new(None),
            options,
            append: Script::new(APPEND),
            health: Health::default(),
        })
    }

    async fn connect(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(response_timeout);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    async fn commands(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut slot = self.commands.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.connect(Some(PUBLISH_TIMEOUT)).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn try_append(&self, topic: String, message: String) -> Result<Appended, RedisError> {
        let uuid = Uuid::new_v4();
        let time = now_rfc3339();
        let mut conn = self.commands().await?;
        let result: Result<String, RedisError> = self
            .append
            .key(&self.options.key)
            .arg(self.options.max_len)
            .arg(uuid.to_string())
            .arg(&topic)
            .arg(&message)
            .arg(&time)
            .invoke_async(&mut conn)
            .await;
        let raw = result?;
        let id: EventId = raw.parse().map_err(|_| {
            RedisError::from((
                redis::ErrorKind::Client,
                "the append script returned an id that is not <epoch>-<seq>",
                raw.clone(),
            ))
        })?;
        Ok(Appended {
            id,
            event: ServerEvent {
                id: uuid,
                seq: id.seq,
                topic,
                message,
                time,
            },
        })
    }

    /// Records a failed command: a connection failure marks Redis down and
    /// drops the command connection (the next command connects afresh);
    /// any other error is counted and logged.
    async fn command_failed(&self, during: &'static str, error: &RedisError) {
        if is_connection_failure(error) {
            self.health.failed(during, error);
            *self.commands.lock().await = None;
        } else {
            self.health.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, during, "Redis refused a command");
        }
    }

    async fn try_range(
        &self,
        epoch: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(EventId, ServerEvent)>, RedisError> {
        let mut conn = self.commands().await?;
        let reply: StreamRangeReply = conn
            .xrange_count(
                &self.options.key,
                EventId::new(epoch, from).to_string(),
                EventId::new(epoch, to).to_string(),
                limit,
            )
            .await?;
        Ok(reply.ids.iter().filter_map(decode).collect())
    }

    /// Reads the stream into `hub` until the hub shuts down: one reader per
    /// server, reconnecting with backoff while Redis is unreachable.
    pub async fn follow(self: Arc<Self>, hub: Arc<Hub>) {
        let shutdown = hub.shutdown_token().clone();
        let mut backoff = BACKOFF_MIN;
        loop {
            let error = tokio::select! {
                () = shutdown.cancelled() => return,
                error = self.read_into(&hub, &mut backoff) => error,
            };
            self.health.failed("reading the stream", &error);
            // The command connection shares the reader's fate: the next
            // publish connects afresh.
            *self.commands.lock().await = None;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Connects, then reads entries into `hub` until a command fails.
    async fn read_into(&self, hub: &Hub, backoff: &mut Duration) -> RedisError {
        let mut conn = match self.connect(None).await {
            Ok(conn) => conn,
            Err(error) => return error,
        };
        let key = self.options.key.as_str();
        let mut last = match hub.last_id() {
            Some(id) => id.to_string(),
            None if hub.is_loaded() => "0-0".to_owned(),
            None => {
                // First load: start `history` entries before the newest
                // (ids are contiguous within the stream's epoch).
                let newest: Result<StreamRangeReply, _> =
                    conn.xrevrange_count(key, "+", "-", 1).await;
                match newest {
                    Ok(reply) => match reply.ids.first().and_then(|e| e.id.parse::<EventId>().ok())
                    {
                        Some(id) => {
                            EventId::new(id.epoch, id.seq.saturating_sub(self.options.history))
                                .to_string()
                        }
                        None => "0-0".to_owned(),
                    },
                    Err(error) => return error,
                }
            }
        };
        self.health.reached();
        *backoff = BACKOFF_MIN;
        loop {
            let loaded = hub.is_loaded();
            let options = if loaded {
                StreamReadOptions::default()
                    .count(BATCH)
                    .block(BLOCK.as_millis() as usize)
            } else {
                StreamReadOptions::default().count(BATCH)
            };
            let (keys, ids) = ([key], [last.as_str()]);
            let read = conn.xread_options(&keys, &ids, &options);
            let reply: Option<StreamReadReply> =
                match tokio::time::timeout(BLOCK + CONNECT_TIMEOUT * 2, read).await {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(error)) => return error,
                    Err(_) => {
                        return RedisError::from((
                            redis::ErrorKind::Io,
                            "no answer to XREAD in time",
                        ))
                    }
                };
            let entries: Vec<StreamId> = reply
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                .unwrap_or_default();
            if let Some(newest) = entries.last() {
                last.clone_from(&newest.id);
            }
            let count = entries.len();
            self.health.reached();
            hub.replicate(entries.iter().filter_map(decode));
            if !loaded && count < BATCH {
                tracing::info!(
                    key,
                    last_id = hub.last_id().map(|id| id.to_string()),
                    history = hub.history_len(),
                    "loaded the shared stream"
                );
                hub.mark_loaded();
            }
        }
    }
}

/// Whether `error` says Redis could not be reached (rather than that it
/// refused the command).
fn is_connection_failure(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

/// An entry as an event, or `None` (with a warning) for one this server did
/// not write.
fn decode(entry: &StreamId) -> Option<(EventId, ServerEvent)> {
    let event = (|| {
        let id: EventId = entry.id.parse().ok().filter(|id: &EventId| id.seq > 0)?;
        let uuid: String = entry.get("id")?;
        Some((
            id,
            ServerEvent {
                id: uuid.parse().ok()?,
                seq: id.seq,
                topic: entry.get("topic")?,
                message: entry.get("message")?,
                time: entry.get("time")?,
            },
        ))
    })();
    if event.is_none() {
        tracing::warn!(id = %entry.id, "skipping a stream entry that is not an event of this server");
    }
    event
}

impl EventLog for RedisLog {
    fn append(&self, topic: String, message: String) -> AppendFuture<'_> {
        Box::pin(async move {
            match self.try_append(topic, message).await {
                Ok(appended) => {
                    self.health.reached();
                    Ok(appended)
                }
                Err(error) => {
                    self.command_failed("publishing", &error).await;
                    let outcome = if error.is_timeout() {
                        "the event may or may not have been stored"
                    } else {
                        "the event was not published"
                    };
                    Err(Unavailable(format!(
                        "the event log (Redis) is unavailable: {error}; {outcome}"
                    )))
                }
            }
        })
    }

    fn reaches_further(&self) -> bool {
        self.options.max_len > self.options.history
    }

    fn range(&self, epoch: u64, from: u64, to: u64, limit: usize) -> RangeFuture<'_> {
        Box::pin(async move {
            match self.try_range(epoch, from, to, limit).await {
                Ok(events) => Ok(events),
                Err(error) => {
                    self.command_failed("replaying from the stream", &error)
                        .await;
                    Err(Unavailable(format!(
                        "the event log (Redis) is unavailable: {error}"
                    )))
                }
            }
        })
    }

    fn health(&self) -> LogHealth {
        LogHealth {
            kind: "redis",
            up: self.health.state.load(Ordering::Relaxed) == UP,
            outages: self.health.outages.load(Ordering::Relaxed),
            errors: self.health.errors.load(Ordering::Relaxed),
        }
    }
}
