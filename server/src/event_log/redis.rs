//! Redis Streams as the log, shared by every server pointed at the stream.
//!
//! Entry ids are the SSE event ids. A small Lua script (atomic in Redis)
//! gives each new entry the id `<epoch>-<seq>` with the stream's epoch and
//! the next seq: the epoch is Redis's clock in microseconds when the epoch
//! began, and seqs are contiguous. So any server can tell, from a client's
//! `Last-Event-ID` alone, where in the stream it is, and the stream can be
//! read with plain `XREAD`/`XRANGE` by other tools. A stream that holds less
//! than it did (restored from an older snapshot, a lagging replica promoted,
//! entries deleted at the top, the key deleted) begins a new, higher epoch
//! at the next append, so an id is never issued twice.
//!
//! Each server has one reader ([`RedisLog::follow`]): it loads the last
//! `--history` entries into the hub at start, then blocks in `XREAD` for
//! new ones and hands them to [`Hub::replicate`], which frames each event
//! once for all local subscribers. Publishing is an `EVALSHA` of the script
//! on a connection of its own, kept by one task ([`RedisLog::keep_connected`])
//! and acknowledged once Redis has the entry; while it is down a publish
//! fails at once. Every command has a timeout. When
//! the stream is kept longer than the history (`--redis-max-len`), a client
//! resuming from before the history is replayed with `XRANGE` on that
//! connection ([`EventLog::span`]) until it reaches the history.
//!
//! When Redis cannot be reached, the reader logs it once, counts it and
//! retries with backoff; subscribers keep their connections (and their
//! keep-alives) and receive what they missed when the reader catches up;
//! publishing answers 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError, Script};
use shared::{EventId, ServerEvent};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    AppendError as LogAppendError, AppendFuture, Appended, BatchAppend, BatchFuture, EventLog,
    Keyed, KeyedAppend, KeyedFuture, LastFuture, LogHealth, NewEvent, Shape, Span, SpanFuture,
    Unavailable,
};
use crate::hub::{now_rfc3339, sweep_every, Filter, Hidden, Hub, LAST_SCAN};
use crate::idempotency::{KeyOptions, Keys, Record};

/// Appends a publish's events (one, or a batch) with consecutive seqs and
/// returns `{first_id, note, found, forgotten, held}`. The events are
/// `ARGV[10..]`, three arguments each (uuid, topic, message), all with the
/// time `ARGV[2]`; each is trimmed to `MAXLEN ARGV[1]` as it is added. The
/// script runs whole or not at all, so a batch is never half stored.
///
/// With an idempotency key (`ARGV[5]`, its name; empty for none), the
/// key's record is looked up first in the hash `KEYS[2]` (name → record
/// JSON), whose names `KEYS[3]` orders by the time they were stored: keys
/// older than `ARGV[7]` ms are dropped first. A key found is returned as
/// `found`, and nothing is appended. Otherwise the events are appended and
/// the key's record (with fingerprint `ARGV[6]`; the answer of one event,
/// or a batch's `{"events": [...]}` when `ARGV[9]` is `batch`) stored in
/// the same script, so that a retry on any server finds it. A record
/// weighs its answer's events (1 for one event, N for a batch of N): the
/// hash `KEYS[4]` holds the weight of each record that weighs more than 1,
/// and `KEYS[5]` their sum (counted anew from the other two when missing);
/// the oldest keys are dropped while the sum is over `ARGV[8]`. Every key
/// expires `ARGV[7]` ms after the last record was stored (the sum, when a
/// lookup changes it, with the records' time left). `forgotten` is
/// how many records this call dropped; `held`, how many are left (-1
/// without a key).
///
/// The events are numbered after the stream's newest entry, in its epoch;
/// after its last generated id when it holds no entry but was emptied
/// from the front (`XTRIM`, as `--history-ttl`'s `MINID` does: trimming
/// leaves Redis 7's `max-deleted-entry-id` alone, while `XDEL` of the top
/// entry raises it to the last generated id). Unless the stream holds less
/// than it once did: it is missing, or empty with its top entry deleted
/// (or on Redis before 7.0, which does not tell), its newest entry is
/// below its own last generated id (entries were deleted at the top), or
/// any of these is below the high-water mark (`ARGV[3]`-`ARGV[4]`) of the
/// server that appends (the newest id that server has seen acknowledged
/// or read: Redis came back from an older snapshot, or a replica that
/// lagged took over). Then a new epoch begins, above every id seen, so
/// that no id is ever issued twice; `note` is then `new`.
const APPEND: &str = r#"
local function split(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function before(e1, s1, e2, s2)
  return e1 < e2 or (e1 == e2 and s1 < s2)
end
local hw_epoch, hw_seq = tonumber(ARGV[3]), tonumber(ARGV[4])
local name, ttl, max_keys = ARGV[5], tonumber(ARGV[7]), tonumber(ARGV[8])
local now_ms, forgotten, weight = 0, 0, 0
local function drop(names)
  for _, n in ipairs(names) do
    weight = weight - tonumber(redis.call('HGET', KEYS[4], n) or '1')
    redis.call('HDEL', KEYS[2], n)
    redis.call('ZREM', KEYS[3], n)
    redis.call('HDEL', KEYS[4], n)
  end
  forgotten = forgotten + #names
end
-- The sum expires with the records: `px`, the ms they have left.
local function save_weight(px)
  redis.call('SET', KEYS[5], string.format('%.0f', weight), 'PX', px)
end
if name ~= '' then
  local stored = redis.call('GET', KEYS[5])
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('DEL', KEYS[4])
  elseif stored then
    weight = tonumber(stored)
  else
    weight = redis.call('ZCARD', KEYS[3])
    for _, w in ipairs(redis.call('HVALS', KEYS[4])) do
      weight = weight + tonumber(w) - 1
    end
  end
  local now = redis.call('TIME')
  now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  drop(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms - ttl, 'LIMIT', 0, 1024))
  local found = redis.call('HGET', KEYS[2], name)
  if found then
    local left = redis.call('PTTL', KEYS[2])
    if left > 0 and (forgotten > 0 or not stored) then
      save_weight(left)
    end
    return {'', '', found, forgotten, redis.call('ZCARD', KEYS[3])}
  end
end
local top_epoch, top_seq = 0, 0
local del_epoch, del_seq = nil, nil
local epoch, seq
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      top_epoch, top_seq = split(info[i + 1])
    elseif info[i] == 'max-deleted-entry-id' then
      del_epoch, del_seq = split(info[i + 1])
    end
  end
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #newest > 0 then
    local e, s = split(newest[1][1])
    if not before(e, s, top_epoch, top_seq) and not before(e, s, hw_epoch, hw_seq) then
      epoch, seq = e, s + 1
    end
  elseif del_epoch ~= nil and before(del_epoch, del_seq, top_epoch, top_seq)
      and not before(top_epoch, top_seq, hw_epoch, hw_seq) then
    -- Emptied from the front (every entry expired, XTRIM MINID), not
    -- deleted at the top: the seqs go on.
    epoch, seq = top_epoch, top_seq + 1
  end
end
local note = ''
if epoch == nil then
  if top_epoch > 0 or hw_epoch > 0 then
    note = 'new'
  end
  local now = redis.call('TIME')
  epoch = math.max(tonumber(now[1]) * 1000000 + tonumber(now[2]), top_epoch + 1, hw_epoch + 1)
  seq = 1
end
local first = string.format('%.0f-%.0f', epoch, seq)
-- Every field is digits, hex, '-' or a topic's characters: no escaping.
local answers = {}
for i = 10, #ARGV, 3 do
  local id = string.format('%.0f-%.0f', epoch, seq)
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], id,
    'id', ARGV[i], 'topic', ARGV[i + 1], 'message', ARGV[i + 2], 'time', ARGV[2])
  answers[#answers + 1] = '{"event_id":"' .. id .. '","id":"' .. ARGV[i] .. '","seq":' ..
    string.format('%.0f', seq) .. ',"topic":"' .. ARGV[i + 1] .. '"}'
  seq = seq + 1
end
if name == '' then
  return {first, note, '', 0, -1}
end
local answer = answers[1]
if ARGV[9] == 'batch' then
  answer = '{"events":[' .. table.concat(answers, ',') .. ']}'
end
local record = '{"fingerprint":"' .. ARGV[6] .. '","at_ms":' .. string.format('%.0f', now_ms) ..
  ',"answer":' .. answer .. '}'
redis.call('HSET', KEYS[2], name, record)
redis.call('ZADD', KEYS[3], now_ms, name)
if #answers > 1 then
  redis.call('HSET', KEYS[4], name, #answers)
end
weight = weight + #answers
-- The oldest first, never the record just stored (it fits alone:
-- --max-batch is within the bound; one stored in the same ms may sort first).
while weight > max_keys do
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 1)
  local n = oldest[1]
  if n == name then
    n = oldest[2]
  end
  if n == nil then
    break
  end
  drop({n})
end
save_weight(ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
return {first, note, '', forgotten, redis.call('ZCARD', KEYS[3])}
"#;

/// Longest wait in one `XREAD BLOCK`: a reader that gets no answer within
/// this plus [`COMMAND_TIMEOUT`] reports Redis down.
const BLOCK: Duration = Duration::from_secs(2);
/// Entries asked for per read.
const BATCH: usize = 1024;
/// How long connecting may take before Redis counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long any other command waits for Redis's answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes one backfill read may bring at most, counting every entry at the
/// largest size a publish may have.
const BACKFILL_BYTES: u64 = 4 * 1024 * 1024;
/// Retry delays of the reader and the connection keeper while Redis is
/// unreachable.
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
    /// The largest event a publish may store, in bytes: bounds the bytes of
    /// one backfill read.
    pub max_event_bytes: u64,
    /// How long and how many idempotency keys are remembered (in Redis,
    /// beside the stream: `<key>:idempotency` and `<key>:idempotency:order`).
    pub keys: KeyOptions,
    /// `--history-ttl`: entries older than this are trimmed from the
    /// stream (`XTRIM MINID`).
    pub ttl: Option<Duration>,
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
    down_since: Mutex<Option<Instant>>,
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
/// [`RedisLog::keep_connected`] and [`RedisLog::follow`] once per server,
/// publish with [`EventLog::append`].
pub struct RedisLog {
    client: Client,
    /// The connection for publishes and replays, made by
    /// [`RedisLog::keep_connected`]; `None` while Redis is unreachable, so
    /// that a publish then fails at once instead of waiting to connect.
    commands: Mutex<Option<MultiplexedConnection>>,
    /// Wakes the connection keeper when a command found the connection
    /// broken.
    broken: Notify,
    /// Notified each time the keeper has made the command connection.
    connected: Notify,
    options: RedisOptions,
    append: Script,
    health: Health,
    /// The newest id this server has seen acknowledged or read: an append
    /// that finds the stream's newest entry below it starts a new epoch.
    high_water: Mutex<EventId>,
    /// The idempotency keys in flight here (their records are in Redis).
    keys: Keys,
    /// The hash of the keys' records, and the sorted set of their names.
    key_records: String,
    key_order: String,
    /// `<key>:idempotency:weights`: name → weight, for batches of more
    /// than one event.
    key_weights: String,
    /// `<key>:idempotency:weight`: the weight of every record together.
    key_weight: String,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog")
            .field("options", &self.options)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

/// Why a publish was not stored.
#[derive(Debug)]
enum AppendError {
    /// Redis is known to be unreachable: nothing was sent.
    NotConnected,
    /// Redis failed or refused the command.
    Redis(RedisError),
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
            broken: Notify::new(),
            connected: Notify::new(),
            append: Script::new(APPEND),
            health: Health::default(),
            high_water: Mutex::new(EventId::new(0, 0)),
            keys: Keys::in_flight_only(options.keys),
            key_records: format!("{}:idempotency", options.key),
            key_order: format!("{}:idempotency:order", options.key),
            key_weights: format!("{}:idempotency:weights", options.key),
            key_weight: format!("{}:idempotency:weight", options.key),
            options,
        })
    }

    /// Connects, and checks that Redis answers and serves data (a
    /// connection to a frozen Redis is accepted by the kernel all the same,
    /// and a Redis loading its files answers only some commands).
    async fn connect(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(response_timeout);
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // A keyspace command, not PING: a Redis still loading its data
        // answers PING but refuses these with LOADING.
        within(COMMAND_TIMEOUT, "EXISTS", async {
            redis::cmd("EXISTS")
                .arg(&self.options.key)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await?;
        Ok(conn)
    }

    /// Keeps the command connection made until the server shuts down:
    /// reconnects with backoff whenever a command found it broken. One task
    /// does this, so that publishes never queue to connect.
    pub async fn keep_connected(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.commands.lock().is_none() {
                match self.connect(Some(COMMAND_TIMEOUT)).await {
                    Ok(conn) => {
                        *self.commands.lock() = Some(conn);
                        self.health.reached();
                        self.connected.notify_waiters();
                        backoff = BACKOFF_MIN;
                    }
                    Err(error) => {
                        self.health.failed("connecting", &error);
                        // The reader's reconnect cuts the wait short.
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                            () = self.broken.notified() => {}
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.broken.notified() => {}
            }
        }
    }

    /// Resolves once the command connection is made (at start-up, so that
    /// the first publishes do not find it still being made).
    pub async fn until_connected(&self) {
        loop {
            let connected = self.connected.notified();
            if self.commands.lock().is_some() {
                return;
            }
            connected.await;
        }
    }

    /// The command connection, or `None` while Redis is unreachable.
    fn command_connection(&self) -> Option<MultiplexedConnection> {
        self.commands.lock().clone()
    }

    /// Drops the command connection and has the keeper make a new one.
    fn drop_commands(&self) {
        *self.commands.lock() = None;
        self.broken.notify_one();
    }

    /// Raises the high-water mark to `id`.
    fn saw(&self, id: EventId) {
        let mut high = self.high_water.lock();
        if id > *high {
            *high = id;
        }
    }

    /// The append script's call for `events` (with ids `uuids`).
    fn invocation(
        &self,
        events: &[NewEvent],
        uuids: &[Uuid],
        shape: Shape,
        keyed: Option<&Keyed>,
        time: &str,
    ) -> redis::ScriptInvocation<'_> {
        let high = *self.high_water.lock();
        let options = self.keys.options();
        let mut invocation = self.append.key(&self.options.key);
        invocation
            .key(&self.key_records)
            .key(&self.key_order)
            .key(&self.key_weights)
            .key(&self.key_weight)
            .arg(self.options.max_len)
            .arg(time)
            .arg(high.epoch)
            .arg(high.seq)
            .arg(keyed.map_or("", |k| k.name.as_str()))
            .arg(keyed.map_or("", |k| k.fingerprint.as_str()))
            .arg(u64::try_from(options.ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(options.max)
            .arg(match shape {
                Shape::One => "one",
                Shape::Batch => "batch",
            });
        for (uuid, event) in uuids.iter().zip(events) {
            invocation
                .arg(uuid.to_string())
                .arg(&event.topic)
                .arg(&event.message);
        }
        invocation
    }

    async fn try_append(
        &self,
        events: Vec<NewEvent>,
        shape: Shape,
        keyed: Option<&Keyed>,
    ) -> Result<BatchAppend, AppendError> {
        let mut conn = self.command_connection().ok_or(AppendError::NotConnected)?;
        let time = now_rfc3339();
        let high = *self.high_water.lock();
        let uuids: Vec<Uuid> = events.iter().map(|_| Uuid::new_v4()).collect();
        let invocation = self.invocation(&events, &uuids, shape, keyed, &time);
        let (raw, note, found, forgotten, held): (String, String, String, u64, i64) = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(AppendError::Redis)?;
        if let Ok(held) = u64::try_from(held) {
            self.keys.reported(held, forgotten);
        }
        if !found.is_empty() {
            let record: Record = serde_json::from_str(&found).map_err(|e| {
                AppendError::Redis(RedisError::from((
                    redis::ErrorKind::Client,
                    "an idempotency record in Redis does not decode",
                    e.to_string(),
                )))
            })?;
            return Ok(BatchAppend::Found(record));
        }
        let first: EventId = raw.parse().map_err(|_| {
            AppendError::Redis(RedisError::from((
                redis::ErrorKind::Client,
                "the append script returned an id that is not <epoch>-<seq>",
                raw.clone(),
            )))
        })?;
        if note == "new" {
            tracing::warn!(
                id = %first,
                seen = %high,
                "the Redis stream held less than it had (restored from an older copy, \
                 failed over to a replica that lagged, or entries deleted): a new epoch \
                 began, and subscribers get a reset notice"
            );
        }
        let appended: Vec<Appended> = events
            .into_iter()
            .zip(uuids)
            .zip(first.seq..)
            .map(|((NewEvent { topic, message }, uuid), seq)| Appended {
                id: EventId::new(first.epoch, seq),
                event: ServerEvent {
                    id: uuid,
                    seq,
                    topic,
                    message,
                    time: time.clone(),
                },
            })
            .collect();
        if let Some(last) = appended.last() {
            self.saw(last.id);
        }
        Ok(BatchAppend::Stored(appended))
    }

    /// Records a failed command: a connection failure (a timeout included)
    /// marks Redis down and has the command connection made anew; any
    /// other error is counted and logged.
    fn command_failed(&self, during: &'static str, error: &RedisError) {
        if is_connection_failure(error) {
            self.health.failed(during, error);
            self.drop_commands();
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
        let Some(mut conn) = self.command_connection() else {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "not connected to Redis",
            )));
        };
        let fit = BACKFILL_BYTES / self.options.max_event_bytes.max(1);
        let limit = limit.min(usize::try_from(fit).unwrap_or(usize::MAX)).max(1);
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

    /// Whether `event` is older than `--history-ttl` at `now_ms` (one whose
    /// time does not read counts from now, as a replay counts it).
    fn expired(&self, event: &ServerEvent, now_ms: u64) -> bool {
        self.options
            .ttl
            .is_some_and(|ttl| crate::time::event_expired(&event.time, ttl, now_ms))
    }

    /// The seq of the oldest of the newest `count` events below `before`
    /// of `epoch` that `follows` accepts and that are not expired: the
    /// stream read backwards a page at a time, at most [`LAST_SCAN`]
    /// entries, stopping at the first expired one.
    async fn try_oldest_of_last(
        &self,
        follows: impl Fn(&str) -> bool,
        epoch: u64,
        before: u64,
        count: usize,
    ) -> Result<Option<u64>, RedisError> {
        let Some(mut conn) = self.command_connection() else {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "not connected to Redis",
            )));
        };
        let fit = BACKFILL_BYTES / self.options.max_event_bytes.max(1);
        let page = BATCH.min(usize::try_from(fit).unwrap_or(usize::MAX)).max(1);
        let (mut found, mut oldest, mut looked) = (0, None, 0);
        let mut end = before;
        let now = crate::time::unix_ms();
        while end > 1 && found < count && looked < LAST_SCAN {
            let reply: StreamRangeReply = conn
                .xrevrange_count(
                    &self.options.key,
                    EventId::new(epoch, end - 1).to_string(),
                    EventId::new(epoch, 1).to_string(),
                    page,
                )
                .await?;
            looked += reply.ids.len();
            for (id, event) in reply.ids.iter().filter_map(decode) {
                if self.expired(&event, now) {
                    // Those older are expired too (but for clock steps
                    // back: the start then holds fewer, never an expired one).
                    return Ok(oldest);
                }
                end = end.min(id.seq);
                if found < count && follows(&event.topic) {
                    found += 1;
                    oldest = Some(id.seq);
                }
            }
            if reply.ids.len() < page {
                break;
            }
        }
        Ok(oldest)
    }

    /// Reads the stream into `hub` until the hub shuts down: one reader per
    /// server, reconnecting with backoff while Redis is unreachable.
    pub async fn follow(self: Arc<Self>, hub: Arc<Hub>) {
        let shutdown = hub.closed().clone();
        let mut backoff = BACKOFF_MIN;
        loop {
            let error = tokio::select! {
                () = shutdown.cancelled() => return,
                error = self.read_into(&hub, &mut backoff) => error,
            };
            self.health.failed("reading the stream", &error);
            // The command connection shares the reader's fate: it is made
            // anew, and publishes fail at once until it is.
            self.drop_commands();
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
        let last = match self.start_point(&mut conn, hub).await {
            Ok(last) => last,
            Err(error) => return error,
        };
        self.health.reached();
        if self.commands.lock().is_none() {
            // Redis is back: have the command connection made now.
            self.broken.notify_one();
        }
        *backoff = BACKOFF_MIN;
        self.follow_entries(&mut conn, hub, last).await
    }

    /// The stream id to read after: the last one `hub` holds; on a first
    /// load, `history` entries before the newest (ids are contiguous
    /// within the stream's epoch). Warns when the stream went back behind
    /// what this server read.
    async fn start_point(
        &self,
        conn: &mut MultiplexedConnection,
        hub: &Hub,
    ) -> Result<String, RedisError> {
        let key = self.options.key.as_str();
        let newest: StreamRangeReply = within(
            COMMAND_TIMEOUT,
            "XREVRANGE",
            conn.xrevrange_count(key, "+", "-", 1),
        )
        .await?;
        let newest = newest
            .ids
            .first()
            .and_then(|e| e.id.parse::<EventId>().ok());
        let held = hub.last_id();
        if let (Some(held), Some(newest)) = (held, newest) {
            if newest < held {
                tracing::warn!(
                    %newest,
                    %held,
                    "the Redis stream's newest entry is older than what this server read: \
                     the stream lost events, and the next publish begins a new epoch"
                );
            }
        }
        if let Some(held) = held {
            self.saw(held);
        }
        if newest.is_none() && held.is_none() {
            if let Some(top) = self.begin_at_top(conn, hub).await? {
                return Ok(top.to_string());
            }
        }
        Ok(match held {
            Some(id) => id.to_string(),
            None if hub.is_loaded() => "0-0".to_owned(),
            None => newest.map_or_else(
                || "0-0".to_owned(),
                |id| {
                    EventId::new(id.epoch, id.seq.saturating_sub(self.options.history)).to_string()
                },
            ),
        })
    }

    /// A stream that exists but holds no entry (with `--history-ttl`,
    /// every one expired): `hub` goes on after its last generated id, so
    /// that a client holding that id resumes without a notice; returns
    /// that id, to read after. Its length and last id come from one
    /// `XINFO STREAM`, so that an entry added meanwhile is read, not
    /// skipped: `None` when the stream is missing or holds entries.
    async fn begin_at_top(
        &self,
        conn: &mut MultiplexedConnection,
        hub: &Hub,
    ) -> Result<Option<EventId>, RedisError> {
        let key = self.options.key.as_str();
        let exists: bool = within(COMMAND_TIMEOUT, "EXISTS", conn.exists(key)).await?;
        if !exists {
            return Ok(None);
        }
        let info = redis::cmd("XINFO").arg("STREAM").arg(key).to_owned();
        let info: HashMap<String, redis::Value> =
            within(COMMAND_TIMEOUT, "XINFO", info.query_async(conn)).await?;
        let field = |name: &str| {
            info.get(name)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        };
        if field("length").as_deref() != Some("0") {
            return Ok(None);
        }
        let Some(top) = field("last-generated-id").and_then(|id| id.parse::<EventId>().ok()) else {
            return Ok(None);
        };
        hub.begin_at(top.epoch, top.seq.saturating_add(1));
        self.saw(top);
        Ok(Some(top))
    }

    /// Reads entries after `last` into `hub`, blocking for new ones once it
    /// is loaded, until a command fails.
    async fn follow_entries(
        &self,
        conn: &mut MultiplexedConnection,
        hub: &Hub,
        mut last: String,
    ) -> RedisError {
        loop {
            let loaded = hub.is_loaded();
            let entries = match self.read_batch(conn, &last, loaded).await {
                Ok(entries) => entries,
                Err(error) => return error,
            };
            if let Some(newest) = entries.last() {
                last.clone_from(&newest.id);
            }
            let count = entries.len();
            self.health.reached();
            hub.replicate(entries.iter().filter_map(decode));
            if let Some(id) = hub.last_id() {
                self.saw(id);
            }
            if count < BATCH {
                if !loaded {
                    tracing::info!(
                        key = self.options.key.as_str(),
                        last_id = hub.last_id().map(|id| id.to_string()),
                        history = hub.history_len(),
                        "loaded the shared stream"
                    );
                    hub.mark_loaded();
                }
                hub.mark_synced();
            }
        }
    }

    /// One `XREAD` of up to [`BATCH`] entries after `last`, blocking for
    /// [`BLOCK`] when the hub is `loaded` (while loading, the history is
    /// read as fast as it comes).
    async fn read_batch(
        &self,
        conn: &mut MultiplexedConnection,
        last: &str,
        loaded: bool,
    ) -> Result<Vec<StreamId>, RedisError> {
        let options = if loaded {
            StreamReadOptions::default()
                .count(BATCH)
                .block(BLOCK.as_millis() as usize)
        } else {
            StreamReadOptions::default().count(BATCH)
        };
        let (keys, ids) = ([self.options.key.as_str()], [last]);
        let read = conn.xread_options(&keys, &ids, &options);
        let reply: Option<StreamReadReply> = within(BLOCK + COMMAND_TIMEOUT, "XREAD", read).await?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }
}

impl RedisLog {
    /// Trims entries older than `--history-ttl` from the stream until
    /// `shutdown`, every [`sweep_every`] of the TTL (at once again while a
    /// pass stops at its limit). Every server runs it; the trims agree.
    /// Returns at once without a TTL.
    pub async fn trim_expired(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(ttl) = self.options.ttl else {
            return;
        };
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = match within(COMMAND_TIMEOUT, "XTRIM", self.trim_pass(ttl)).await {
                Ok(true) => Duration::ZERO,
                Ok(false) => sweep_every(ttl),
                Err(error) => {
                    self.command_failed("trimming expired entries", &error);
                    sweep_every(ttl)
                }
            };
        }
    }

    /// One trim: the stream's oldest [`BATCH`] entries are read, and those
    /// before the first that is not expired go with `XTRIM MINID` (the ids
    /// are `<epoch>-<seq>`, not times: the bound is the first entry kept,
    /// or the seq after the last one read). Returns whether every entry
    /// read was expired and more may be.
    async fn trim_pass(&self, ttl: Duration) -> Result<bool, RedisError> {
        let Some(mut conn) = self.command_connection() else {
            return Ok(false);
        };
        let key = self.options.key.as_str();
        let front: StreamRangeReply = conn.xrange_count(key, "-", "+", BATCH).await?;
        let now = crate::time::unix_ms();
        let expired = front
            .ids
            .iter()
            .take_while(|entry| {
                let time: Option<String> = entry.get("time");
                time.is_some_and(|t| crate::time::event_expired(&t, ttl, now))
            })
            .count();
        let bound = match front.ids.get(expired) {
            _ if expired == 0 => return Ok(false),
            Some(kept) => kept.id.clone(),
            None => match front.ids[expired - 1].id.parse::<EventId>() {
                Ok(last) => EventId::new(last.epoch, last.seq.saturating_add(1)).to_string(),
                Err(_) => return Ok(false),
            },
        };
        let trim = redis::cmd("XTRIM")
            .arg(key)
            .arg("MINID")
            .arg("=")
            .arg(&bound)
            .to_owned();
        let trimmed: u64 = trim.query_async(&mut conn).await?;
        tracing::debug!(trimmed, %bound, "expired entries trimmed from the stream");
        Ok(expired == front.ids.len() && expired == BATCH)
    }
}

/// Runs a Redis command, or fails with a timeout error after `limit`: every
/// call has one, so a frozen Redis or a half-open socket is an outage, not a
/// hang.
async fn within<T>(
    limit: Duration,
    command: &'static str,
    call: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer to {command} in time"),
        )))
    })
}

/// Whether `error` says Redis could not be reached (rather than that it
/// refused the command).
fn is_connection_failure(error: &RedisError) -> bool {
    // LOADING: up, but not serving data yet (it is reading its files).
    error.code() == Some("LOADING")
        || error.is_io_error()
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

impl RedisLog {
    /// Runs the append script, with `keyed`'s key when given, and turns
    /// its failures into the log's errors.
    async fn store(
        &self,
        events: Vec<NewEvent>,
        shape: Shape,
        keyed: Option<&Keyed>,
    ) -> Result<BatchAppend, LogAppendError> {
        match self.try_append(events, shape, keyed).await {
            Ok(appended) => {
                self.health.reached();
                Ok(appended)
            }
            Err(AppendError::NotConnected) => Err(LogAppendError::Unavailable(Unavailable(
                "the event log (Redis) is unreachable; the event was not published".into(),
            ))),
            Err(AppendError::Redis(error)) => {
                self.command_failed("publishing", &error);
                let message = if error.is_timeout() {
                    "the event log (Redis) did not answer in time; the event may or may \
                     not have been stored"
                } else if is_connection_failure(&error) {
                    "the event log (Redis) is unreachable; the event was not published"
                } else {
                    "the event log (Redis) refused the event; it was not published"
                };
                Err(LogAppendError::Unavailable(Unavailable(message.into())))
            }
        }
    }

    /// Stores one event, with `keyed`'s key when given.
    async fn store_one(
        &self,
        topic: String,
        message: String,
        keyed: Option<&Keyed>,
    ) -> Result<KeyedAppend, LogAppendError> {
        let events = vec![NewEvent { topic, message }];
        match self.store(events, Shape::One, keyed).await? {
            BatchAppend::Found(record) => Ok(KeyedAppend::Found(record)),
            BatchAppend::Stored(mut appended) => {
                appended.pop().map(KeyedAppend::Stored).ok_or_else(|| {
                    LogAppendError::Unavailable(Unavailable(
                        "the event log (Redis) stored nothing; retry".into(),
                    ))
                })
            }
        }
    }
}

impl EventLog for RedisLog {
    fn append(&self, topic: String, message: String) -> AppendFuture<'_> {
        Box::pin(async move {
            match self.store_one(topic, message, None).await? {
                KeyedAppend::Stored(appended) => Ok(appended),
                // Without a key the script finds none.
                KeyedAppend::Found(_) => Err(LogAppendError::Unavailable(Unavailable(
                    "the event log (Redis) answered a publish without a key with a key's \
                     record; it was not published"
                        .into(),
                ))),
            }
        })
    }

    fn append_keyed(&self, keyed: Keyed, topic: String, message: String) -> KeyedFuture<'_> {
        Box::pin(async move { self.store_one(topic, message, Some(&keyed)).await })
    }

    fn append_batch(&self, events: Vec<NewEvent>, keyed: Option<Keyed>) -> BatchFuture<'_> {
        Box::pin(async move { self.store(events, Shape::Batch, keyed.as_ref()).await })
    }

    fn keys(&self) -> &Keys {
        &self.keys
    }

    fn reaches_further(&self) -> bool {
        self.options.max_len > self.options.history
    }

    fn span<'a>(
        &'a self,
        filter: &'a Filter,
        epoch: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> SpanFuture<'a> {
        Box::pin(async move {
            let read = within(
                COMMAND_TIMEOUT,
                "XRANGE",
                self.try_range(epoch, from, to, limit),
            );
            match read.await {
                Ok(events) => {
                    let mut span = Span::of_stream(events, filter, from, to);
                    span.drop_expired(from, self.options.ttl, crate::time::unix_ms());
                    Ok(span)
                }
                Err(error) => {
                    self.command_failed("replaying from the stream", &error);
                    Err(Unavailable(
                        "the event log (Redis) cannot be read now".into(),
                    ))
                }
            }
        })
    }

    fn oldest_of_last<'a>(
        &'a self,
        filter: &'a Filter,
        hidden: Option<Arc<Hidden>>,
        epoch: u64,
        before: u64,
        count: usize,
    ) -> LastFuture<'a> {
        Box::pin(async move {
            let follows = |topic: &str| {
                filter.matches(topic) && !hidden.as_ref().is_some_and(|h| h.hides(topic))
            };
            let read = within(
                COMMAND_TIMEOUT,
                "XREVRANGE",
                self.try_oldest_of_last(follows, epoch, before, count),
            );
            read.await.map_err(|error| {
                self.command_failed("reading the stream's last events", &error);
                Unavailable("the event log (Redis) cannot be read now".into())
            })
        })
    }

    fn health(&self) -> LogHealth {
        LogHealth {
            kind: "redis",
            // Up only when a publish would be tried, not refused at once.
            up: self.health.state.load(Ordering::Relaxed) == UP && self.commands.lock().is_some(),
            outages: self.health.outages.load(Ordering::Relaxed),
            errors: self.health.errors.load(Ordering::Relaxed),
        }
    }
}
