//! The writer thread: the one place that changes the store. It takes every
//! publish waiting, stores them in one transaction (group commit), hands the
//! batch to the hub and answers the publishers; syncs in batch mode; reopens
//! the store after a failure; marks the clean stop.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use shared::{EventId, ServerEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::retention::{Dropped, EVENT_OVERHEAD};
use super::{
    begin_epoch, decode_record, dir, load_retention, unavailable, DiskOptions, Fsync, Request,
    Shared, StoreResult, BY_TOPIC, EVENTS, KEYS, KEY_ORDER, KEY_WEIGHT, MAX_BATCH, META, RETRY_MAX,
    RETRY_MIN, STOPPED, TOPICS,
};
use crate::event_log::{Appended, Keyed, NewEvent};
use crate::hub::{now_rfc3339, sweep_every, Hub};
use crate::idempotency::{KeyOptions, Record};
use crate::time::unix_ms;

/// Expired keys dropped from the store in one commit at most, beside those
/// over the bound: the rest go in the next commits.
const EXPIRE_PER_COMMIT: usize = 1024;

/// The error of a store operation that the test seam failed on purpose.
#[cfg(debug_assertions)]
fn injected() -> redb::Error {
    redb::Error::Io(std::io::Error::other(
        "injected I/O error (SSE_TEST_DISK_FAULT_FILE exists)",
    ))
}

/// The writer thread's state.
pub(super) struct Writer {
    /// The store; `None` after a failure until it is reopened.
    store: Option<Arc<Database>>,
    /// The store file.
    path: PathBuf,
    options: DiskOptions,
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    fsync: Fsync,
    /// The seq the next event gets.
    next_seq: u64,
    /// When the store was last synced (batch mode).
    synced: Instant,
    /// Whether commits since then wait for a sync (batch mode).
    unsynced: bool,
    /// When to sweep the store for expired events (with `--history-ttl`).
    expire_at: Option<Instant>,
    /// When to try reopening a failed store.
    retry_at: Instant,
    backoff: Duration,
    /// Test seam (debug builds only): while this file exists, every write
    /// and reopen fails as a full disk would.
    #[cfg(debug_assertions)]
    fault: Option<PathBuf>,
}

/// What woke the writer.
enum Wake {
    Request(Request),
    Timer,
    Stop,
}

impl Writer {
    /// The writer of `store` (the file at `path`), whose last stored seq is
    /// `last_seq`.
    pub(super) fn new(
        store: Arc<Database>,
        path: PathBuf,
        options: DiskOptions,
        shared: Arc<Shared>,
        hub: Arc<Hub>,
        last_seq: u64,
    ) -> Self {
        Self {
            store: Some(store),
            path,
            fsync: options.fsync,
            // The first sweep comes at once: a restart drops what expired
            // while the server was down.
            expire_at: options.ttl.map(|_| Instant::now()),
            options,
            shared,
            hub,
            next_seq: last_seq + 1,
            synced: Instant::now(),
            unsynced: false,
            retry_at: Instant::now(),
            backoff: RETRY_MIN,
            #[cfg(debug_assertions)]
            fault: std::env::var_os("SSE_TEST_DISK_FAULT_FILE").map(PathBuf::from),
        }
    }

    /// Runs until the hub shuts down (or every sender is gone): stores what
    /// is queued then, closes the store cleanly and signals `done`.
    pub(super) fn run(
        mut self,
        runtime: &tokio::runtime::Handle,
        mut queue: mpsc::Receiver<Request>,
        done: oneshot::Sender<()>,
    ) {
        let shutdown = self.hub.closed().clone();
        loop {
            let timer = self.next_timer();
            let wake = runtime.block_on(async {
                tokio::select! {
                    biased;
                    request = queue.recv() => request.map_or(Wake::Stop, Wake::Request),
                    () = shutdown.cancelled() => Wake::Stop,
                    () = sleep_until(timer), if timer.is_some() => Wake::Timer,
                }
            });
            match wake {
                Wake::Request(first) => {
                    let mut events = first.events.len();
                    let mut batch = vec![first];
                    while events < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(request) => {
                                events += request.events.len();
                                batch.push(request);
                            }
                            Err(_) => break,
                        }
                    }
                    self.store_batch(batch);
                }
                Wake::Timer => self.tick(),
                Wake::Stop => break,
            }
        }
        // Store what was queued before the stop, then refuse the rest.
        queue.close();
        let mut batch = Vec::new();
        while let Ok(request) = queue.try_recv() {
            batch.push(request);
        }
        if !batch.is_empty() {
            self.store_batch(batch);
        }
        self.close();
        let _ = done.send(());
    }

    /// When the writer must wake without a publish: to sync (batch mode),
    /// to sweep for expired events, or to retry a failed store.
    fn next_timer(&self) -> Option<Instant> {
        if self.store.is_none() {
            return Some(self.retry_at);
        }
        [self.sync_at(), self.expire_at].into_iter().flatten().min()
    }

    /// When batch mode's sync is due, if commits wait for one.
    fn sync_at(&self) -> Option<Instant> {
        match self.fsync {
            Fsync::Batch(every) if self.unsynced => Some(self.synced + every),
            _ => None,
        }
    }

    fn tick(&mut self) {
        if self.store.is_none() {
            self.try_reopen();
            return;
        }
        let now = Instant::now();
        if self.expire_at.is_some_and(|at| at <= now) {
            self.sweep();
        }
        if self.store.is_some() && self.sync_at().is_some_and(|at| at <= now) {
            if let Err(error) = self.sync() {
                self.failed("syncing", &error);
            }
        }
    }

    /// One sweep for expired events; the next comes after
    /// [`sweep_every`], or at once while a sweep stops at its limit.
    fn sweep(&mut self) {
        let Some(ttl) = self.options.ttl else {
            return;
        };
        let more = match self.expire(ttl) {
            Ok(more) => more,
            Err(error) => {
                self.failed("dropping expired events", &error);
                false
            }
        };
        let wait = if more {
            Duration::ZERO
        } else {
            sweep_every(ttl)
        };
        self.expire_at = Some(Instant::now() + wait);
    }

    /// Drops from the store, oldest seq first, up to
    /// [`EXPIRE_PER_COMMIT`] events older than `ttl`, stopping at the first
    /// that is not, in one transaction; returns whether it stopped at the
    /// limit.
    fn expire(&mut self, ttl: Duration) -> StoreResult<bool> {
        let store = self.open_store()?;
        let expired = expired_front(&store, ttl)?;
        if expired.is_empty() {
            return Ok(false);
        }
        let durable = self.durable_now();
        let tx = begin_write(&store, durable)?;
        {
            let mut stored = tx.open_table(EVENTS)?;
            let mut by_topic = tx.open_table(BY_TOPIC)?;
            let mut topics = tx.open_table(TOPICS)?;
            let mut retention = self.shared.retention.lock();
            let dropped = retention.expire(&expired);
            apply_dropped(&dropped, &mut stored, &mut by_topic, &mut topics)?;
            tx.open_table(META)?
                .insert("forgotten_through", retention.forgotten_through)?;
        }
        tx.commit()?;
        self.committed(durable);
        tracing::debug!(expired = expired.len(), "expired events dropped from disk");
        Ok(expired.len() == EXPIRE_PER_COMMIT)
    }

    /// The open store, unless a test's fault file says it fails now.
    fn open_store(&self) -> StoreResult<Arc<Database>> {
        self.check_fault()?;
        self.store.clone().ok_or(redb::Error::DatabaseClosed)
    }

    /// Whether the next commit is synced: always, or once batch mode's
    /// interval has passed.
    fn durable_now(&self) -> bool {
        match self.fsync {
            Fsync::Always => true,
            Fsync::Batch(every) => self.synced.elapsed() >= every,
        }
    }

    /// Records a commit, `durable` or waiting for batch mode's sync.
    fn committed(&mut self, durable: bool) {
        if durable {
            self.synced = Instant::now();
            self.unsynced = false;
        } else {
            self.unsynced = true;
        }
    }

    #[cfg(debug_assertions)]
    fn check_fault(&self) -> StoreResult<()> {
        match &self.fault {
            Some(path) if path.exists() => Err(injected()),
            _ => Ok(()),
        }
    }

    #[cfg(not(debug_assertions))]
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)]
    fn check_fault(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Stores `batch` in one transaction, then hands it to the hub and
    /// answers each publisher; on failure, answers 503.
    fn store_batch(&mut self, batch: Vec<Request>) {
        if self.store.is_none() && Instant::now() >= self.retry_at {
            self.try_reopen();
        }
        if self.store.is_none() {
            for request in batch {
                let _ = request.answer.send(Err(unavailable(
                    "the event log (disk) cannot write now (disk full, or an I/O error); the \
                     event was not published",
                )));
            }
            return;
        }
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let time = now_rfc3339();
        let mut answers = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        let mut records = Vec::new();
        for mut request in batch {
            let first = events.len();
            for NewEvent { topic, message } in std::mem::take(&mut request.events) {
                let seq = self.next_seq + events.len() as u64;
                events.push((
                    EventId::new(epoch, seq),
                    ServerEvent {
                        id: Uuid::new_v4(),
                        seq,
                        topic,
                        message,
                        time: time.clone(),
                    },
                ));
            }
            let appended: Vec<Appended> = events[first..]
                .iter()
                .map(|(id, event)| Appended {
                    id: *id,
                    event: event.clone(),
                })
                .collect();
            records.extend(request.record(&appended));
            answers.push((request.answer, appended));
        }
        match self.commit(&events, &records) {
            Ok(()) => {
                self.next_seq += events.len() as u64;
                if !self.shared.up.swap(true, Ordering::AcqRel) {
                    tracing::info!("the event log on disk can write again: publishing works");
                }
                self.hub.replicate(events);
                // Remembered before the answers go: a repeat waiting for a
                // key finds its record.
                for (key, record) in records {
                    self.shared.keys.remember(&key.name, key.mark, record);
                }
                for (answer, appended) in answers {
                    let _ = answer.send(Ok(appended));
                }
            }
            Err(error) => {
                self.failed("storing events", &error);
                for (answer, _) in answers {
                    let _ = answer.send(Err(unavailable(
                        "the event log (disk) could not store the event (disk full, or an I/O \
                         error); it was not published",
                    )));
                }
            }
        }
    }

    /// One transaction: the events, what retention drops to make room, the
    /// sequence counter. Synced unless batch mode's interval has not passed.
    fn commit(
        &mut self,
        events: &[(EventId, ServerEvent)],
        records: &[(Keyed, Record)],
    ) -> StoreResult<()> {
        let store = self.open_store()?;
        let durable = self.durable_now();
        let tx = begin_write(&store, durable)?;
        {
            let mut stored = tx.open_table(EVENTS)?;
            let mut by_topic = tx.open_table(BY_TOPIC)?;
            let mut topics = tx.open_table(TOPICS)?;
            let mut meta = tx.open_table(META)?;
            // The index runs ahead of the transaction; after a failed one
            // the store is reopened and the index rebuilt from it.
            let mut retention = self.shared.retention.lock();
            for (_, event) in events {
                // Serializing the project's own message type cannot fail.
                let value = serde_json::to_vec(event).unwrap_or_default();
                let size = value.len() as u64 + EVENT_OVERHEAD;
                stored.insert(event.seq, value.as_slice())?;
                by_topic.insert((event.topic.as_str(), event.seq), size)?;
                retention.push(&event.topic, event.seq, size);
            }
            let dropped = retention.evict(|seq| self.hub.holds(seq));
            apply_dropped(&dropped, &mut stored, &mut by_topic, &mut topics)?;
            meta.insert("forgotten_through", retention.forgotten_through)?;
            drop(retention);
            if let Some((id, _)) = events.last() {
                meta.insert("last_seq", id.seq)?;
            }
            let mut keys = tx.open_table(KEYS)?;
            let mut order = tx.open_table(KEY_ORDER)?;
            let mut weight = meta.get(KEY_WEIGHT)?.map_or(0, |v| v.value());
            store_keys(&mut keys, &mut order, &mut weight, records)?;
            trim_keys(&mut keys, &mut order, &mut weight, self.options.keys)?;
            meta.insert(KEY_WEIGHT, weight)?;
        }
        tx.commit()?;
        self.committed(durable);
        Ok(())
    }

    /// Batch mode: makes every commit so far durable.
    fn sync(&mut self) -> StoreResult<()> {
        let store = self.open_store()?;
        let tx = store.begin_write()?;
        tx.open_table(META)?
            .insert("last_seq", self.next_seq.saturating_sub(1))?;
        tx.commit()?;
        self.committed(true);
        Ok(())
    }

    /// Records a failure and drops the store, to be reopened after a
    /// backoff (redb refuses every operation after an I/O error).
    fn failed(&mut self, during: &str, error: &redb::Error) {
        self.shared.failed(during, error);
        self.store = None;
        *self.shared.store.write() = None;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }

    /// Reopens the store after a failure and goes on from what it holds.
    fn try_reopen(&mut self) {
        match self.reopen() {
            Ok(()) => {
                self.backoff = RETRY_MIN;
                if !self.shared.up.swap(true, Ordering::AcqRel) {
                    tracing::info!("the event log on disk can write again: publishing works");
                }
            }
            Err(error) => {
                self.shared.failed("reopening the store", &error);
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(RETRY_MAX);
            }
        }
    }

    fn reopen(&mut self) -> StoreResult<()> {
        self.check_fault()?;
        let store = dir::reopen_store(&self.path)?;
        let acked = self.next_seq - 1;
        let tx = store.begin_write()?;
        let (epoch, last_seq) = {
            let meta = tx.open_table(META)?;
            let get = |key: &str| -> StoreResult<u64> {
                Ok(meta.get(key)?.map_or(0, |value| value.value()))
            };
            (get("epoch")?, get("last_seq")?)
        };
        let mut next_seq = last_seq + 1;
        let current = self.shared.epoch.load(Ordering::Acquire);
        if epoch != current || last_seq < acked {
            // Acknowledged events did not reach the disk (batch mode): their
            // ids must not be issued again.
            let new = begin_epoch(&tx, epoch.max(current))?;
            tracing::warn!(
                old = current,
                new,
                acknowledged = acked,
                on_disk = last_seq,
                "acknowledged events were lost with the failed writes: a new epoch begins, \
                 and subscribers get a reset notice"
            );
            self.shared.epoch.store(new, Ordering::Release);
            self.shared.keys.clear();
            next_seq = 1;
        } else if last_seq > acked {
            // A failed commit reached the disk after all; its publishes were
            // answered 503 and no one saw its ids: they go.
            let mut stored = tx.open_table(EVENTS)?;
            let mut by_topic = tx.open_table(BY_TOPIC)?;
            let gone: Vec<(String, u64)> = stored
                .range(acked + 1..)?
                .filter_map(Result::ok)
                .filter_map(|(_, value)| {
                    let event: ServerEvent = serde_json::from_slice(value.value()).ok()?;
                    Some((event.topic, event.seq))
                })
                .collect();
            for (topic, seq) in &gone {
                stored.remove(seq)?;
                by_topic.remove((topic.as_str(), *seq))?;
            }
            drop_keys_after(&tx, acked)?;
            tx.open_table(META)?.insert("last_seq", acked)?;
            next_seq = acked + 1;
        }
        tx.open_table(META)?
            .insert("running", self.fsync.running())?;
        tx.commit()?;
        let retention = load_retention(&store, &self.options)?;
        *self.shared.retention.lock() = retention;
        self.next_seq = next_seq;
        self.synced = Instant::now();
        self.unsynced = false;
        let store = Arc::new(store);
        *self.shared.store.write() = Some(store.clone());
        self.store = Some(store);
        Ok(())
    }

    /// Marks the clean stop (the next run keeps the epoch) and closes the
    /// store.
    fn close(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        *self.shared.store.write() = None;
        let mark = || -> StoreResult<()> {
            self.check_fault()?;
            let tx = store.begin_write()?;
            {
                let mut meta = tx.open_table(META)?;
                meta.insert("last_seq", self.next_seq.saturating_sub(1))?;
                meta.insert("running", STOPPED)?;
            }
            tx.commit()?;
            Ok(())
        };
        match mark() {
            Ok(()) => tracing::info!(
                last_seq = self.next_seq.saturating_sub(1),
                "the event log on disk is closed cleanly"
            ),
            Err(error) => self.shared.failed("closing the store", &error),
        }
    }
}

/// The events at the store's front older than `ttl` (topic and seq, in seq
/// order), up to [`EXPIRE_PER_COMMIT`]: up to the first that is not.
/// A write transaction, synced at its commit when `durable`.
fn begin_write(store: &Database, durable: bool) -> StoreResult<WriteTransaction> {
    let mut tx = store.begin_write()?;
    if !durable {
        tx.set_durability(Durability::None)?;
    }
    Ok(tx)
}

fn expired_front(store: &Database, ttl: Duration) -> StoreResult<Vec<(Arc<str>, u64)>> {
    let now = unix_ms();
    let tx = store.begin_read()?;
    let events = tx.open_table(EVENTS)?;
    let mut expired = Vec::new();
    for entry in events.range::<u64>(..)?.take(EXPIRE_PER_COMMIT) {
        let (seq, value) = entry?;
        let head = super::head_of(seq.value(), value.value())?;
        if !crate::time::event_expired(&head.time, ttl, now) {
            break;
        }
        expired.push((Arc::from(head.topic), seq.value()));
    }
    Ok(expired)
}

/// Applies what retention dropped to the tables: the events go, and each
/// topic's newest dropped seq is kept (or the topic forgotten).
fn apply_dropped(
    dropped: &Dropped,
    stored: &mut Table<'_, u64, &[u8]>,
    by_topic: &mut Table<'_, (&str, u64), u64>,
    topics: &mut Table<'_, &str, u64>,
) -> StoreResult<()> {
    for (topic, seq) in &dropped.events {
        stored.remove(seq)?;
        by_topic.remove((&**topic, *seq))?;
    }
    for (topic, through) in &dropped.topics {
        topics.insert(&**topic, through)?;
    }
    for topic in &dropped.forgotten {
        topics.remove(&**topic)?;
    }
    Ok(())
}

/// Stores each key's record under its name, in the order of its event,
/// and counts its weight in `weight` (less that of a record it replaces).
fn store_keys(
    keys: &mut Table<'_, &str, (u64, &[u8])>,
    order: &mut Table<'_, u64, (u64, &str)>,
    weight: &mut u64,
    records: &[(Keyed, Record)],
) -> StoreResult<()> {
    for (key, record) in records {
        // Serializing the project's own record type cannot fail.
        let json = serde_json::to_vec(record).unwrap_or_default();
        let seq = record.seq();
        let replaced = match keys.insert(key.name.as_str(), (seq, json.as_slice()))? {
            Some(old) => {
                let (old_seq, old_json) = old.value();
                Some((old_seq, decode_record(old_json)?.weight()))
            }
            None => None,
        };
        if let Some((old, old_weight)) = replaced {
            // The name was forgotten in memory and used again.
            order.remove(old)?;
            *weight = weight.saturating_sub(old_weight);
        }
        order.insert(seq, (record.at_ms, key.name.as_str()))?;
        *weight += record.weight();
    }
    Ok(())
}

/// Drops the oldest keys while they weigh more than `options.max`
/// together, then up to [`EXPIRE_PER_COMMIT`] past the TTL.
fn trim_keys(
    keys: &mut Table<'_, &str, (u64, &[u8])>,
    order: &mut Table<'_, u64, (u64, &str)>,
    weight: &mut u64,
    options: KeyOptions,
) -> StoreResult<()> {
    let ttl = u64::try_from(options.ttl.as_millis()).unwrap_or(u64::MAX);
    let now = unix_ms();
    let mut expired = 0;
    loop {
        let over = *weight > options.max as u64;
        let Some((seq, at, name)) = order.first()?.map(|(seq, value)| {
            let (at, name) = value.value();
            (seq.value(), at, name.to_owned())
        }) else {
            break;
        };
        let expires = expired < EXPIRE_PER_COMMIT && at.saturating_add(ttl) <= now;
        if !over && !expires {
            break;
        }
        if !over {
            expired += 1;
        }
        order.remove(seq)?;
        *weight = weight.saturating_sub(drop_key(keys, &name)?);
    }
    Ok(())
}

/// Drops the record of `name`; returns its weight (0 when there was none).
fn drop_key(keys: &mut Table<'_, &str, (u64, &[u8])>, name: &str) -> StoreResult<u64> {
    match keys.remove(name)? {
        Some(old) => Ok(decode_record(old.value().1)?.weight()),
        None => Ok(0),
    }
}

/// Drops the keys of events after `acked` (a failed commit that reached
/// the disk after all: its publishes were answered 503).
fn drop_keys_after(tx: &redb::WriteTransaction, acked: u64) -> StoreResult<()> {
    let mut keys = tx.open_table(KEYS)?;
    let mut order = tx.open_table(KEY_ORDER)?;
    let mut meta = tx.open_table(META)?;
    let mut weight = meta.get(KEY_WEIGHT)?.map_or(0, |v| v.value());
    let gone: Vec<(u64, String)> = order
        .range(acked + 1..)?
        .filter_map(Result::ok)
        .map(|(seq, value)| (seq.value(), value.value().1.to_owned()))
        .collect();
    for (seq, name) in &gone {
        order.remove(seq)?;
        weight = weight.saturating_sub(drop_key(&mut keys, name)?);
    }
    meta.insert(KEY_WEIGHT, weight)?;
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
