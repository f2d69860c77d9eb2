//! Fsynced appends per second with N concurrent publishers, for redb and
//! fjall, with the same group commit the server uses: one writer takes every
//! pending append, writes them in one transaction (or batch), syncs once,
//! then answers each publisher. Old events are trimmed in the same commit
//! once the log holds more than `KEEP`, as the server's retention does.
//! Also: the time to reopen the store after the process died without
//! closing it (the writer is leaked), and to read 512 events from the
//! middle of the log.
//!
//! `cargo run --release [-- SECONDS]` in this folder; the stores go to a
//! fresh folder under the system temp dir (here the same disk as /work).

use std::path::Path;

use redb::ReadableDatabase;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const VALUE: usize = 250;
const KEEP: u64 = 50_000;

trait Store: Send + 'static {
    /// Appends `values` at seqs `first..`, trims below `trim_below`, syncs.
    fn commit(&mut self, first: u64, values: &[Vec<u8>], trim_below: u64);
    fn read(&self, from: u64, n: usize) -> usize;
}

struct Redb {
    db: redb::Database,
    quick_repair: bool,
}

const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");

impl Store for Redb {
    fn commit(&mut self, first: u64, values: &[Vec<u8>], trim_below: u64) {
        let mut tx = self.db.begin_write().unwrap();
        tx.set_quick_repair(self.quick_repair);
        {
            let mut table = tx.open_table(EVENTS).unwrap();
            for (i, v) in values.iter().enumerate() {
                table.insert(first + i as u64, v.as_slice()).unwrap();
            }
            if trim_below > 0 {
                table.retain_in(..trim_below, |_, _| false).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn read(&self, from: u64, n: usize) -> usize {
        let tx = self.db.begin_read().unwrap();
        let table = tx.open_table(EVENTS).unwrap();
        table
            .range(from..)
            .unwrap()
            .take(n)
            .map(|e| e.unwrap().1.value().len())
            .sum()
    }
}

struct Fjall {
    db: fjall::Database,
    events: fjall::Keyspace,
    trimmed: u64,
}

impl Store for Fjall {
    fn commit(&mut self, first: u64, values: &[Vec<u8>], trim_below: u64) {
        let mut batch = self.db.batch();
        for (i, v) in values.iter().enumerate() {
            batch.insert(&self.events, (first + i as u64).to_be_bytes(), v.as_slice());
        }
        while self.trimmed < trim_below {
            batch.remove(&self.events, self.trimmed.to_be_bytes());
            self.trimmed += 1;
        }
        batch.commit().unwrap();
        self.db.persist(fjall::PersistMode::SyncData).unwrap();
    }
    fn read(&self, from: u64, n: usize) -> usize {
        self.events
            .range(from.to_be_bytes()..)
            .take(n)
            .map(|g| g.into_inner().unwrap().1.len())
            .sum()
    }
}

fn open_redb(dir: &Path, quick_repair: bool) -> Redb {
    Redb {
        db: redb::Database::create(dir.join("log.redb")).unwrap(),
        quick_repair,
    }
}

fn open_fjall(dir: &Path) -> Fjall {
    let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
    let events = db
        .keyspace("events", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    let trimmed = events
        .first_key_value()
        .map(|g| {
            let key = g.key().unwrap();
            u64::from_be_bytes(key[..8].try_into().unwrap())
        })
        .unwrap_or(1);
    Fjall {
        db,
        events,
        trimmed,
    }
}

type Request = (Vec<u8>, Instant, mpsc::SyncSender<Duration>);

/// Runs `publishers` threads publishing for `seconds` against `store`;
/// returns (events/s, commits/s, p50 ms, p99 ms).
fn run<S: Store>(mut store: S, publishers: usize, seconds: f64) -> (S, f64, f64, f64, f64) {
    let (tx, rx) = mpsc::channel::<Request>();
    let writer = thread::spawn(move || {
        let mut next = 1u64;
        let mut commits = 0u64;
        while let Ok(first) = rx.recv() {
            let mut pending = vec![first];
            while let Ok(more) = rx.try_recv() {
                pending.push(more);
            }
            let values: Vec<Vec<u8>> = pending.iter().map(|p| p.0.clone()).collect();
            let end = next + values.len() as u64;
            let trim = end.saturating_sub(KEEP);
            store.commit(next, &values, trim);
            next = end;
            commits += 1;
            for (_, at, answer) in pending {
                let _ = answer.send(at.elapsed());
            }
        }
        (store, commits)
    });
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..publishers)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut latencies = Vec::new();
                let (answer, answered) = mpsc::sync_channel(1);
                while Instant::now() < deadline {
                    let value = vec![b'a' + (p % 26) as u8; VALUE];
                    tx.send((value, Instant::now(), answer.clone())).unwrap();
                    latencies.push(answered.recv().unwrap());
                }
                latencies
            })
        })
        .collect();
    drop(tx);
    let mut latencies: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let (store, commits) = writer.join().unwrap();
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    (
        store,
        latencies.len() as f64 / elapsed,
        commits as f64 / elapsed,
        pct(0.5),
        pct(0.99),
    )
}

fn fill(name: &str, dir: &Path) {
    let values: Vec<Vec<u8>> = (0..1000).map(|_| vec![b'x'; VALUE]).collect();
    if name == "fjall" {
        let mut s = open_fjall(dir);
        for b in 0..1000u64 {
            s.commit(1 + b * 1000, &values, 0);
        }
        std::mem::forget(s);
    } else {
        let mut s = open_redb(dir, name.contains("quick"));
        for b in 0..1000u64 {
            s.commit(1 + b * 1000, &values, 0);
        }
        std::mem::forget(s);
    }
    std::process::exit(0);
}

fn reopen(name: &str, dir: &Path) {
    let started = Instant::now();
    let (bytes, read_ms) = if name == "fjall" {
        let s = open_fjall(dir);
        let opened = started.elapsed();
        let t = Instant::now();
        let bytes = s.read(500_000, 512);
        (bytes, (opened, t.elapsed()))
    } else {
        let s = open_redb(dir, name.contains("quick"));
        let opened = started.elapsed();
        let t = Instant::now();
        let bytes = s.read(500_000, 512);
        (bytes, (opened, t.elapsed()))
    };
    assert_eq!(bytes, 512 * VALUE);
    println!(
        "| {name} | {:.0} ms | {:.2} ms |",
        read_ms.0.as_secs_f64() * 1e3,
        read_ms.1.as_secs_f64() * 1e3
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--fill") {
        fill(&args[2], Path::new(&args[3]));
    }
    if args.get(1).map(String::as_str) == Some("--reopen") {
        reopen(&args[2], Path::new(&args[3]));
        return;
    }
    let seconds: f64 = std::env::args()
        .nth(1)
        .map_or(5.0, |s| s.parse().expect("seconds"));
    let root = std::env::temp_dir().join(format!("store-choice-{}", std::process::id()));
    println!("| store | publishers | events/s | fsynced commits/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for publishers in publisher_counts() {
        for name in ["redb", "redb quick-repair", "fjall"] {
            let dir = root.join(format!("{name}-{publishers}").replace(' ', "-"));
            std::fs::create_dir_all(&dir).unwrap();
            let line = |e: f64, c: f64, p50: f64, p99: f64| {
                println!("| {name} | {publishers} | {e:.0} | {c:.0} | {p50:.2} | {p99:.2} |");
            };
            match name {
                "fjall" => {
                    let (_, e, c, p50, p99) = run(open_fjall(&dir), publishers, seconds);
                    line(e, c, p50, p99);
                }
                _ => {
                    let quick = name.contains("quick");
                    let (_, e, c, p50, p99) = run(open_redb(&dir, quick), publishers, seconds);
                    line(e, c, p50, p99);
                }
            }
        }
    }
    // Reopening after a crash, and a read from the middle, with 1,000,000
    // events of 250 bytes written in commits of 1000.
    println!();
    println!("| store | reopen after a crash, 1M events | read 512 from the middle |");
    println!("|---|---:|---:|");
    for name in ["redb", "redb quick-repair", "fjall"] {
        let dir = root.join(format!("crash-{name}").replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = std::env::current_exe().unwrap();
        // Filled by a process that exits without closing the store, as a
        // crash would; reopened by another one, as a restart would.
        let filled = std::process::Command::new(&exe)
            .args(["--fill", name, dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(filled.success());
        let out = std::process::Command::new(exe)
            .args(["--reopen", name, dir.to_str().unwrap()])
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// `PUBLISHERS=1,8` picks the publisher counts (default 1, 8, 64); `0`
/// skips the throughput rows.
fn publisher_counts() -> Vec<usize> {
    std::env::var("PUBLISHERS")
        .unwrap_or_else(|_| "1,8,64".into())
        .split(',')
        .map(|n| n.trim().parse().expect("a number"))
        .filter(|&n| n > 0)
        .collect()
}
