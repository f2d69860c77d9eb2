//! `Idempotency-Key` on `POST /publish`: a publisher's retry gets the first
//! answer instead of publishing again.
//!
//! A key is scoped to its publisher ([`scope`]): the same key from two
//! publishers names two things. What a key is remembered with is a
//! [`Record`]: the fingerprint of the body it came with (SHA-256 of the
//! topic and message) and the answer it got. A key is remembered for
//! `--idempotency-ttl`; a record weighs the events its answer holds (1 for
//! one event, N for a batch of N: [`Record::weight`]), and the records
//! remembered weigh at most `--idempotency-keys` together (the oldest are
//! forgotten first). The configuration keeps `--max-batch` within that
//! bound, so that the newest record always fits.
//!
//! [`Keys`] is this process's table. A publish [`Keys::claim`]s its key
//! first: a key already answered is replayed (or refused, for another
//! body); a key still in flight is waited for, so that a repeat sent while
//! the first is being stored never stores a second event; a new key is
//! marked in flight until the log has stored the event and its record
//! ([`Keys::remember`]) or the publish failed (the mark goes with the
//! [`Pending`] guard). Where the record is kept is the log's business: in
//! this table alone (in memory); in this table and in the same disk commit
//! as the event (`--data-dir`, loaded back at start); in Redis, written by
//! the append script itself (`--redis`), where this table holds only the
//! keys in flight here.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::{PublishBatchResponse, PublishResponse};
use tokio::sync::watch;
use warp::http::HeaderValue;

use crate::auth::Who;
use crate::error::ApiError;
use crate::time::unix_ms;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// How long keys are remembered, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOptions {
    /// `--idempotency-ttl`.
    pub ttl: Duration,
    /// `--idempotency-keys`: the most events the remembered answers hold
    /// together (see [`Record::weight`]).
    pub max: usize,
}

impl Default for KeyOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 60 * 60),
            max: 100_000,
        }
    }
}

/// The `Idempotency-Key` headers of a request, as sent.
#[derive(Debug, Default, Clone)]
pub enum KeyHeader {
    /// None was sent.
    #[default]
    Absent,
    /// One was sent.
    One(HeaderValue),
    /// More than one was sent.
    Repeated,
}

impl KeyHeader {
    /// The key header(s) among `headers`.
    pub fn read(headers: &warp::http::HeaderMap) -> Self {
        let mut values = headers.get_all("idempotency-key").iter();
        match (values.next(), values.next()) {
            (None, _) => Self::Absent,
            (Some(value), None) => Self::One(value.clone()),
            (Some(_), Some(_)) => Self::Repeated,
        }
    }

    /// The key, checked: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
    ///
    /// # Errors
    /// [`ApiError::BadIdempotencyKey`] for any other value, or for more
    /// than one header.
    pub fn key(&self) -> Result<Option<&str>, ApiError> {
        let value = match self {
            Self::Absent => return Ok(None),
            Self::Repeated => {
                return Err(ApiError::BadIdempotencyKey(
                    "send one Idempotency-Key header, not several".into(),
                ))
            }
            Self::One(value) => value.as_bytes(),
        };
        if value.is_empty() || value.len() > MAX_KEY_LEN {
            return Err(ApiError::BadIdempotencyKey(format!(
                "the Idempotency-Key is {} bytes long; it must be 1 to {MAX_KEY_LEN}",
                value.len()
            )));
        }
        if !value.iter().all(u8::is_ascii_graphic) {
            return Err(ApiError::BadIdempotencyKey(
                "the Idempotency-Key must be visible ASCII characters (no spaces)".into(),
            ));
        }
        // Visible ASCII is UTF-8.
        Ok(std::str::from_utf8(value).ok())
    }
}

/// The scope of a publisher's keys: its token's subject (or the token's
/// hash, or the publish token), or the one anonymous scope.
pub fn scope(who: Option<&Who>) -> String {
    match who {
        Some(Who::Subject(subject)) => format!("sub:{subject}"),
        Some(Who::Token(hash)) => format!("token:{hash:016x}"),
        Some(Who::PublishToken) => "publish-token".to_owned(),
        None => "anonymous".to_owned(),
    }
}

/// A key in its scope, with the fingerprint of the body it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `<key> <scope>`: a key has no space, so this names one key of one
    /// scope.
    pub name: String,
    /// Hex SHA-256 of the body's fields.
    pub fingerprint: String,
}

impl Claim {
    /// The claim of `key` in `scope` for one event of `topic` and `message`.
    pub fn new(key: &str, scope: &str, topic: &str, message: &str) -> Self {
        Self::of_fields(key, scope, ["one", topic, message])
    }

    /// The claim of `key` in `scope` for a batch of `(topic, message)`
    /// events, in order: a batch of one is another body than one event.
    pub fn batch<'a>(
        key: &str,
        scope: &str,
        events: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let fields = std::iter::once("batch").chain(
            events
                .into_iter()
                .flat_map(|(topic, message)| [topic, message]),
        );
        Self::of_fields(key, scope, fields)
    }

    fn of_fields<'a>(key: &str, scope: &str, fields: impl IntoIterator<Item = &'a str>) -> Self {
        let mut hash = Sha256::new();
        for field in fields {
            // Each field with its length: no two bodies hash the same input.
            hash.update((field.len() as u64).to_le_bytes());
            hash.update(field.as_bytes());
        }
        Self {
            name: format!("{key} {scope}"),
            fingerprint: hex(&hash.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What a key is remembered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The fingerprint of the first body.
    pub fingerprint: String,
    /// When it was stored, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The first answer.
    pub answer: Answer,
}

impl Record {
    /// The seq of the last event its publish stored: its place in the
    /// order of keys on disk.
    pub fn seq(&self) -> u64 {
        match &self.answer {
            Answer::One(answer) => answer.seq,
            Answer::Batch(batch) => batch.events.last().map_or(0, |answer| answer.seq),
        }
    }

    /// What it counts against `--idempotency-keys`: the events its answer
    /// holds (1 for one event, N for a batch of N), so that the bound is on
    /// the bytes the answers hold, not only on their number.
    pub fn weight(&self) -> u64 {
        match &self.answer {
            Answer::One(_) => 1,
            Answer::Batch(batch) => (batch.events.len() as u64).max(1),
        }
    }
}

/// A publish's answer as a key remembers it: one event's, or a batch's.
/// Stored untagged, so that a record of one event is the answer itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// `POST /publish` of one event.
    One(PublishResponse),
    /// A batch (`application/x-ndjson`).
    Batch(PublishBatchResponse),
}

/// The counters `/metrics` shows.
#[derive(Debug, Default)]
pub struct KeyStats {
    /// Keys remembered now (each counted once, whatever its weight).
    pub held: AtomicU64,
    /// Publishes answered with a remembered answer.
    pub replayed: AtomicU64,
    /// Keys forgotten: past `--idempotency-ttl`, or the oldest over
    /// `--idempotency-keys`.
    pub forgotten: AtomicU64,
}

/// One key in the table.
#[derive(Debug)]
enum Entry {
    /// Being stored; dropped (waking the waiters) when it is answered.
    InFlight {
        fingerprint: String,
        mark: u64,
        done: watch::Sender<()>,
    },
    /// Answered.
    Done { record: Arc<Record>, mark: u64 },
}

/// The table behind the lock.
#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Entry>,
    /// Answered keys, oldest first: `(at_ms, mark, name)`.
    order: VecDeque<(u64, u64, String)>,
    /// The weight of the answered keys together ([`Record::weight`]).
    weight: u64,
    /// Tells one claim of a name from a later one.
    next_mark: u64,
}

/// What [`Keys::claim`] found.
#[derive(Debug)]
pub enum Claimed<'a> {
    /// The key is new: store the event, then [`Keys::remember`].
    First(Pending<'a>),
    /// The key was answered with this body: give its answer again.
    Replay(Arc<Record>),
    /// The key was used with another body.
    Reused,
}

/// A key in flight; dropped before [`Keys::remember`], it is released (the
/// publish failed), and a waiting repeat tries again.
#[derive(Debug)]
pub struct Pending<'a> {
    keys: &'a Keys,
    /// The claim.
    pub claim: Claim,
    /// This claim's mark.
    pub mark: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut table = self.keys.table.lock();
        if let Some(Entry::InFlight { mark, .. }) = table.entries.get(&self.claim.name) {
            if *mark == self.mark {
                table.entries.remove(&self.claim.name);
            }
        }
    }
}

/// This process's keys.
#[derive(Debug)]
pub struct Keys {
    options: KeyOptions,
    /// Whether answered keys are kept here (memory, disk) or only in the
    /// log (Redis).
    remember: bool,
    table: Mutex<Table>,
    /// The counters.
    pub stats: KeyStats,
}

impl Keys {
    /// A table that remembers answered keys.
    pub fn remembering(options: KeyOptions) -> Self {
        Self::build(options, true)
    }

    /// A table of the keys in flight here only: the log remembers answers.
    pub fn in_flight_only(options: KeyOptions) -> Self {
        Self::build(options, false)
    }

    fn build(options: KeyOptions, remember: bool) -> Self {
        Self {
            options,
            remember,
            table: Mutex::new(Table::default()),
            stats: KeyStats::default(),
        }
    }

    /// How long and how many.
    pub fn options(&self) -> KeyOptions {
        self.options
    }

    /// Claims `claim`'s key: waits while it is in flight, then tells what
    /// to do.
    pub async fn claim(&self, claim: Claim) -> Claimed<'_> {
        loop {
            let mut waiting = {
                let mut table = self.table.lock();
                self.expire(&mut table, unix_ms());
                let mark = table.next_mark;
                match table.entries.entry(claim.name.clone()) {
                    Slot::Vacant(slot) => {
                        slot.insert(Entry::InFlight {
                            fingerprint: claim.fingerprint.clone(),
                            mark,
                            done: watch::Sender::new(()),
                        });
                        table.next_mark += 1;
                        return Claimed::First(Pending {
                            keys: self,
                            claim,
                            mark,
                        });
                    }
                    Slot::Occupied(slot) => match slot.get() {
                        Entry::Done { record, .. } => return self.replay(record, &claim),
                        Entry::InFlight { fingerprint, .. }
                            if *fingerprint != claim.fingerprint =>
                        {
                            return Claimed::Reused
                        }
                        Entry::InFlight { done, .. } => done.subscribe(),
                    },
                }
            };
            // Resolves (with an error) once the first is answered or failed.
            let _ = waiting.changed().await;
        }
    }

    /// The answer to a repeat of `claim` that finds `record`.
    pub fn replay(&self, record: &Arc<Record>, claim: &Claim) -> Claimed<'static> {
        if record.fingerprint == claim.fingerprint {
            self.stats.replayed.fetch_add(1, Ordering::Relaxed);
            Claimed::Replay(record.clone())
        } else {
            Claimed::Reused
        }
    }

    /// Records the answer of the claim `name` marked `mark` (the log calls
    /// this once the event and its record are stored), waking its waiters.
    /// Without remembering, only releases it.
    pub fn remember(&self, name: &str, mark: u64, record: Record) {
        let mut table = self.table.lock();
        let current = matches!(
            table.entries.get(name),
            Some(Entry::InFlight { mark: m, .. }) if *m == mark
        );
        if !current {
            return;
        }
        if !self.remember {
            table.entries.remove(name);
            return;
        }
        self.insert(&mut table, name.to_owned(), record);
    }

    /// Loads a record read back from the log (at start), oldest first.
    pub fn load(&self, name: String, record: Record) {
        let mut table = self.table.lock();
        if record.at_ms + self.ttl_ms() > unix_ms() {
            self.insert(&mut table, name, record);
        }
    }

    fn insert(&self, table: &mut Table, name: String, record: Record) {
        let mark = table.next_mark;
        table.next_mark += 1;
        table.order.push_back((record.at_ms, mark, name.clone()));
        table.weight += record.weight();
        let record = Arc::new(record);
        // A name already answered (loaded twice) keeps its count and drops
        // its old weight; its older place in the order is stale, and skipped
        // when it comes up.
        match table.entries.insert(name, Entry::Done { record, mark }) {
            Some(Entry::Done { record, .. }) => table.weight -= record.weight(),
            _ => {
                self.stats.held.fetch_add(1, Ordering::Relaxed);
            }
        }
        let max = self.options.max as u64;
        while table.weight > max {
            if !self.forget_oldest(table) {
                break;
            }
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.options.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Forgets the keys remembered longer than the TTL.
    fn expire(&self, table: &mut Table, now: u64) {
        let ttl = self.ttl_ms();
        while table
            .order
            .front()
            .is_some_and(|(at, ..)| at.saturating_add(ttl) <= now)
        {
            self.forget_oldest(table);
        }
    }

    /// Forgets the oldest remembered key; `false` when there is none.
    fn forget_oldest(&self, table: &mut Table) -> bool {
        let Some((_, mark, name)) = table.order.pop_front() else {
            return false;
        };
        if let Slot::Occupied(slot) = table.entries.entry(name) {
            let weight = match slot.get() {
                Entry::Done { record, mark: m } if *m == mark => record.weight(),
                // Stale: the name was stored again later, or is in flight.
                _ => return true,
            };
            slot.remove();
            table.weight -= weight;
            self.stats.held.fetch_sub(1, Ordering::Relaxed);
            self.stats.forgotten.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Forgets every answered key (their events are gone: a new epoch).
    pub fn clear(&self) {
        let mut table = self.table.lock();
        table
            .entries
            .retain(|_, entry| matches!(entry, Entry::InFlight { .. }));
        table.order.clear();
        table.weight = 0;
        self.stats.held.store(0, Ordering::Relaxed);
    }

    /// Counts what the log reports it holds and forgot (Redis: the append
    /// script keeps the records).
    pub fn reported(&self, held: u64, forgotten: u64) {
        self.stats.held.store(held, Ordering::Relaxed);
        self.stats.forgotten.fetch_add(forgotten, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn record(claim: &Claim, seq: u64) -> Record {
        Record {
            fingerprint: claim.fingerprint.clone(),
            at_ms: unix_ms(),
            answer: Answer::One(PublishResponse {
                event_id: format!("1-{seq}"),
                id: uuid::Uuid::new_v4(),
                seq,
                topic: "t".into(),
            }),
        }
    }

    fn header(value: &'static [u8]) -> KeyHeader {
        KeyHeader::One(HeaderValue::from_bytes(value).unwrap())
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert_eq!(KeyHeader::Absent.key().unwrap(), None);
        assert_eq!(header(b"order-42").key().unwrap(), Some("order-42"));
        let long = "k".repeat(MAX_KEY_LEN);
        let one = KeyHeader::One(HeaderValue::from_str(&long).unwrap());
        assert_eq!(one.key().unwrap(), Some(long.as_str()));
        let over = KeyHeader::One(HeaderValue::from_str(&format!("{long}k")).unwrap());
        for bad in [
            header(b""),
            header(b"a b"),
            header(b"caf\xc3\xa9"),
            header(b"tab\there"),
            over,
            KeyHeader::Repeated,
        ] {
            assert_eq!(bad.key().unwrap_err().code(), "bad_idempotency_key");
        }
    }

    #[test]
    fn fingerprints_tell_fields_apart() {
        let a = Claim::new("k", "anonymous", "ab", "c");
        let b = Claim::new("k", "anonymous", "a", "bc");
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_eq!(a, Claim::new("k", "anonymous", "ab", "c"));
        assert_ne!(a.name, Claim::new("k", "sub:x", "ab", "c").name);
    }

    #[tokio::test]
    async fn a_repeat_waits_for_the_first_and_gets_its_answer() {
        let keys = Keys::remembering(KeyOptions::default());
        let claim = Claim::new("k", "anonymous", "t", "m");
        let Claimed::First(first) = keys.claim(claim.clone()).await else {
            panic!("a new key");
        };
        let repeat = keys.claim(claim.clone());
        let mut repeat = std::pin::pin!(repeat);
        assert!(repeat.as_mut().now_or_never().is_none());
        let other = keys.claim(Claim::new("k", "anonymous", "t", "other")).await;
        assert!(matches!(other, Claimed::Reused));
        keys.remember(&first.claim.name, first.mark, record(&claim, 1));
        drop(first);
        let Claimed::Replay(found) = repeat.await else {
            panic!("the first answer");
        };
        assert_eq!(found.seq(), 1);
        assert_eq!(keys.stats.replayed.load(Ordering::Relaxed), 1);
        assert_eq!(keys.stats.held.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_failed_first_lets_the_repeat_try() {
        let keys = Keys::remembering(KeyOptions::default());
        let claim = Claim::new("k", "anonymous", "t", "m");
        let Claimed::First(first) = keys.claim(claim.clone()).await else {
            panic!("a new key");
        };
        let repeat = keys.claim(claim.clone());
        let mut repeat = std::pin::pin!(repeat);
        assert!(repeat.as_mut().now_or_never().is_none());
        drop(first);
        assert!(matches!(repeat.await, Claimed::First(_)));
    }

    #[tokio::test]
    async fn the_oldest_are_forgotten_first_and_expired_ones_go() {
        let keys = Keys::remembering(KeyOptions {
            ttl: Duration::from_secs(60),
            max: 2,
        });
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            let claim = Claim::new(key, "anonymous", "t", "m");
            let Claimed::First(pending) = keys.claim(claim.clone()).await else {
                panic!("new");
            };
            keys.remember(&pending.claim.name, pending.mark, record(&claim, i as u64));
        }
        assert_eq!(keys.stats.held.load(Ordering::Relaxed), 2);
        assert_eq!(keys.stats.forgotten.load(Ordering::Relaxed), 1);
        let a = Claim::new("a", "anonymous", "t", "m");
        assert!(matches!(keys.claim(a).await, Claimed::First(_)));
        let c = Claim::new("c", "anonymous", "t", "m");
        assert!(matches!(keys.claim(c.clone()).await, Claimed::Replay(_)));
        // Past the TTL: forgotten at the next claim.
        let mut old = record(&c, 9);
        old.at_ms -= 61_000;
        let stale = Keys::remembering(keys.options());
        stale.load("x anonymous".into(), old.clone());
        assert_eq!(stale.stats.held.load(Ordering::Relaxed), 0);
        let mut table = keys.table.lock();
        keys.expire(&mut table, unix_ms() + 61_000);
        assert!(table.entries.is_empty());
    }

    fn batch_record(claim: &Claim, last: u64, n: u64) -> Record {
        let events = (last + 1 - n..=last)
            .map(|seq| match record(claim, seq).answer {
                Answer::One(answer) => answer,
                Answer::Batch(_) => unreachable!("one event's record"),
            })
            .collect();
        Record {
            answer: Answer::Batch(PublishBatchResponse { events }),
            ..record(claim, last)
        }
    }

    async fn remember_batch(keys: &Keys, key: &str, last: u64, n: u64) {
        let claim = Claim::batch(key, "anonymous", [("t", "m")]);
        let Claimed::First(pending) = keys.claim(claim.clone()).await else {
            panic!("new");
        };
        keys.remember(
            &pending.claim.name,
            pending.mark,
            batch_record(&claim, last, n),
        );
    }

    #[tokio::test]
    async fn a_batch_weighs_its_events_and_the_oldest_go_when_over() {
        let options = KeyOptions {
            ttl: Duration::from_secs(60),
            max: 10,
        };
        let keys = Keys::remembering(options);
        for (i, key) in ["a", "b"].into_iter().enumerate() {
            remember_batch(&keys, key, 4 * (i as u64 + 1), 4).await;
        }
        let held = |keys: &Keys| keys.stats.held.load(Ordering::Relaxed);
        assert_eq!((held(&keys), keys.table.lock().weight), (2, 8));
        // One more event fits (9), a third batch does not (13): a goes.
        let one = Claim::new("one", "anonymous", "t", "m");
        let Claimed::First(pending) = keys.claim(one.clone()).await else {
            panic!("new");
        };
        keys.remember(&pending.claim.name, pending.mark, record(&one, 9));
        drop(pending);
        assert_eq!((held(&keys), keys.table.lock().weight), (3, 9));
        remember_batch(&keys, "c", 13, 4).await;
        assert_eq!((held(&keys), keys.table.lock().weight), (3, 9));
        assert_eq!(keys.stats.forgotten.load(Ordering::Relaxed), 1);
        let batch = |key| Claim::batch(key, "anonymous", [("t", "m")]);
        assert!(matches!(keys.claim(batch("a")).await, Claimed::First(_)));
        assert!(matches!(keys.claim(batch("b")).await, Claimed::Replay(_)));
        // A batch of 10 alone fills the bound: everything older goes.
        remember_batch(&keys, "d", 23, 10).await;
        assert_eq!((held(&keys), keys.table.lock().weight), (1, 10));
        assert!(matches!(keys.claim(batch("d")).await, Claimed::Replay(_)));
        // Loading at start keeps the same rule, oldest first.
        let loaded = Keys::remembering(options);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            let claim = batch(key);
            let last = 4 * (i as u64 + 1);
            loaded.load(claim.name.clone(), batch_record(&claim, last, 4));
        }
        assert_eq!((held(&loaded), loaded.table.lock().weight), (2, 8));
        assert!(matches!(loaded.claim(batch("a")).await, Claimed::First(_)));
        assert!(matches!(loaded.claim(batch("c")).await, Claimed::Replay(_)));
        // A name loaded again drops its old weight.
        let c = batch("c");
        loaded.load(c.name.clone(), batch_record(&c, 14, 2));
        assert_eq!((held(&loaded), loaded.table.lock().weight), (2, 6));
    }

    #[test]
    fn without_remembering_an_answer_releases_the_key() {
        let keys = Keys::in_flight_only(KeyOptions::default());
        let claim = Claim::new("k", "anonymous", "t", "m");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let Claimed::First(pending) = runtime.block_on(keys.claim(claim.clone())) else {
            panic!("new");
        };
        keys.remember(&pending.claim.name, pending.mark, record(&claim, 1));
        drop(pending);
        assert!(keys.table.lock().entries.is_empty());
        assert_eq!(keys.stats.held.load(Ordering::Relaxed), 0);
    }
}
