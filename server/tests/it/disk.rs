//! One server that keeps its history on disk (`--data-dir`): the real
//! server binary as a child process, so that SIGKILL is real, restarted on
//! the same folder.
//!
//! What these tests prove and what they do not: a SIGKILL ends the process
//! at any instruction, but the kernel's page cache survives it, so they
//! show that the log never acknowledges what it has not written, that it
//! recovers its own files after any stop, and that ids, seqs and resumes
//! go on exactly; they cannot show that a power cut keeps what `fsync`
//! was asked to keep (that rests on the store's fsync and on the disk).

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use common::cluster::ServerProcess;
use common::{await_health, get, metric, publish_raw, try_publish_json, Sse};
use shared::{EventId, ResetReason, ServerEvent};

/// An acknowledged publish.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    id: EventId,
    uuid: String,
    message: String,
}

/// Publishes and returns the acknowledgement, or `None` when the server
/// could not be reached or did not answer 200.
async fn try_publish(addr: SocketAddr, topic: &str, message: &str) -> Option<Ack> {
    let body = serde_json::json!({ "message": message, "topic": topic });
    let json = try_publish_json(addr, &body).await?;
    Some(Ack {
        id: json["event_id"].as_str()?.parse().ok()?,
        uuid: json["id"].as_str()?.to_owned(),
        message: message.to_owned(),
    })
}

async fn publish(addr: SocketAddr, topic: &str, message: &str) -> Ack {
    try_publish(addr, topic, message)
        .await
        .unwrap_or_else(|| panic!("publishing {message:?} on {addr} is acknowledged"))
}

/// The server's epoch and last seq, from `/healthz`.
async fn position(addr: SocketAddr) -> (u64, u64) {
    let health = get(addr, "/healthz").await.json();
    assert_eq!(health["log"], "disk", "{health}");
    (
        health["epoch"].as_u64().expect("epoch"),
        health["last_seq"].as_u64().expect("last_seq"),
    )
}

/// Ordinary events from `sse` up to and including seq `last` (a reset
/// notice on the way fails the test).
async fn receive_through(sse: &mut Sse, last: u64) -> Vec<(EventId, ServerEvent)> {
    let mut out = Vec::new();
    while out
        .last()
        .is_none_or(|(id, _): &(EventId, ServerEvent)| id.seq < last)
    {
        let (raw, event) = sse.next_message().await;
        out.push((raw.last_event_id.parse().expect("an event id"), event));
    }
    out
}

/// A random number below `n`, from the system's randomness.
fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u64
}

fn data_dir(root: &Path) -> String {
    root.join("data").to_str().expect("utf-8 path").to_owned()
}

async fn start(dir: &str, args: &[&str]) -> ServerProcess {
    let mut all = vec!["--data-dir", dir];
    all.extend_from_slice(args);
    ServerProcess::start_alone(&all, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_a_sigkill_in_the_middle_of_a_burst() {
    const PUBLISHERS: usize = 8;
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    let args = ["--history", "100000", "--fsync", "always"];
    let mut epoch = None;
    let mut next_seq = 1;
    for round in 0..3 {
        let server = start(&dir, &args).await;
        let addr = server.addr;
        let (now_epoch, last_seq) = position(addr).await;
        // The epoch and the numbering go on from the run before.
        assert_eq!(*epoch.get_or_insert(now_epoch), now_epoch, "round {round}");
        assert_eq!(last_seq + 1, next_seq, "round {round}");

        // A burst from several publishers, killed once `kill_at` are
        // acknowledged: a random point, so some publishes are in flight.
        let kill_at = 20 + random_below(200) as usize;
        eprintln!("round {round}: SIGKILL after {kill_at} acknowledged publishes");
        let acks = server
            .kill_mid_burst(PUBLISHERS, kill_at, move |addr, p, i| async move {
                let message = format!("round {round} publisher {p} #{i}");
                try_publish(addr, &format!("topic-{}", p % 3), &message).await
            })
            .await;
        assert!(acks.len() >= kill_at);

        let server = start(&dir, &args).await;
        let addr = server.addr;
        let (after_epoch, last_seq) = position(addr).await;
        assert_eq!(after_epoch, now_epoch, "the epoch survives a SIGKILL");
        let newest_ack = acks.iter().map(|a| a.id.seq).max().expect("acks");
        assert!(
            last_seq >= newest_ack,
            "{last_seq} < acknowledged {newest_ack}"
        );

        // Everything since the first start, in order, without a gap: every
        // acknowledged event with its id, uuid and message.
        let mut all = Sse::open(addr, "/stream", Some(&format!("{now_epoch}-0"))).await;
        let stored = receive_through(&mut all, last_seq).await;
        let seqs: Vec<u64> = stored.iter().map(|(id, _)| id.seq).collect();
        assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
        let by_id: HashMap<EventId, &ServerEvent> =
            stored.iter().map(|(id, event)| (*id, event)).collect();
        for ack in &acks {
            let event = by_id
                .get(&ack.id)
                .unwrap_or_else(|| panic!("acknowledged {} is gone", ack.id));
            assert_eq!(
                (event.id.to_string(), &event.message),
                (ack.uuid.clone(), &ack.message)
            );
        }
        // A resume from any acknowledged id is exact.
        for _ in 0..3 {
            let ack = &acks[random_below(acks.len() as u64) as usize];
            let mut resumed = Sse::open(addr, "/stream", Some(&ack.id.to_string())).await;
            let rest = if ack.id.seq == last_seq {
                Vec::new()
            } else {
                receive_through(&mut resumed, last_seq).await
            };
            let expected: Vec<_> = stored[ack.id.seq as usize..].to_vec();
            assert_eq!(
                rest.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                expected.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                "resume from {}",
                ack.id
            );
        }
        // The next publish takes the next seq.
        let ack = publish(addr, "after", "after the restart").await;
        assert_eq!(ack.id, EventId::new(now_epoch, last_seq + 1));
        next_seq = last_seq + 2;
        server.kill().await;
    }
}

#[tokio::test]
async fn batch_mode_begins_a_new_epoch_after_a_sigkill_and_keeps_it_after_a_clean_stop() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    let args = ["--fsync", "batch=100ms"];
    let server = start(&dir, &args).await;
    let mut last = None;
    for i in 0..5 {
        last = Some(publish(server.addr, "news", &format!("n{i}")).await);
    }
    let last = last.expect("published").id;
    server.kill().await;

    // Unclean stop in batch mode: the last events may not be on disk.
    let server = start(&dir, &args).await;
    let (epoch, last_seq) = position(server.addr).await;
    assert!(
        epoch > last.epoch,
        "a new, higher epoch: {epoch} after {}",
        last.epoch
    );
    assert_eq!(last_seq, 0);
    let mut sse = Sse::open(server.addr, "/stream", Some(&last.to_string())).await;
    let (_, notice) = sse.next_reset().await;
    assert_eq!(notice.reason, ResetReason::ServerRestarted);
    assert_eq!(notice.requested.as_deref(), Some(last.to_string().as_str()));
    let first = publish(server.addr, "news", "first of the new epoch").await;
    assert_eq!(first.id, EventId::new(epoch, 1));
    let (_, event) = sse.next_message().await;
    assert_eq!(event.message, "first of the new epoch");
    drop(sse);
    let second = publish(server.addr, "news", "second").await;

    // A clean stop writes its marker: the epoch and the history stay.
    server.terminate().await;
    let server = start(&dir, &args).await;
    assert_eq!(position(server.addr).await, (epoch, 2));
    let mut sse = Sse::open(server.addr, "/stream", Some(&first.id.to_string())).await;
    let rest = receive_through(&mut sse, 2).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0, second.id);
    server.terminate().await;
}

#[tokio::test]
async fn a_deep_resume_is_served_from_disk_exactly_and_per_topic() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    // A ring of 20 events in memory; everything on disk.
    let args = [
        "--history",
        "20",
        "--max-lag",
        "10",
        "--history-per-topic",
        "2",
    ];
    let server = start(&dir, &args).await;
    let topics = ["a", "b", "rooms.1", "rooms.2", "b"];
    let mut acks = Vec::new();
    for i in 0..300 {
        let topic = topics[i % topics.len()];
        acks.push((
            topic,
            publish(server.addr, topic, &format!("{topic} {i}")).await,
        ));
    }
    let last_seq = acks.last().expect("acks").1.id.seq;
    let expect_after = |from: u64, matches: &dyn Fn(&str) -> bool| -> Vec<EventId> {
        acks.iter()
            .filter(|(topic, ack)| ack.id.seq > from && matches(topic))
            .map(|(_, ack)| ack.id)
            .collect()
    };
    let check = |addr: SocketAddr, path: &'static str, from: EventId, want: Vec<EventId>| async move {
        let mut sse = Sse::open(addr, path, Some(&from.to_string())).await;
        let got = receive_through(&mut sse, want.last().expect("events").seq).await;
        assert_eq!(
            got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            want,
            "{path} from {from}"
        );
    };
    let from = acks[3].1.id;
    check(
        server.addr,
        "/stream?topic=a",
        from,
        expect_after(from.seq, &|t| t == "a"),
    )
    .await;
    check(
        server.addr,
        "/stream?topic=rooms.*",
        from,
        expect_after(from.seq, &|t| t.starts_with("rooms.")),
    )
    .await;
    check(
        server.addr,
        "/stream?topic=a&topic=rooms.2",
        from,
        expect_after(from.seq, &|t| t == "a" || t == "rooms.2"),
    )
    .await;
    check(
        server.addr,
        "/stream",
        from,
        expect_after(from.seq, &|_| true),
    )
    .await;
    assert!(metric(server.addr, "sse_history_events").await <= 20);

    // After a restart the memory holds only the newest events; the rest is
    // still read from disk.
    server.terminate().await;
    let server = start(&dir, &args).await;
    assert_eq!(position(server.addr).await.1, last_seq);
    let from = acks[1].1.id;
    check(
        server.addr,
        "/stream?topic=b",
        from,
        expect_after(from.seq, &|t| t == "b"),
    )
    .await;
    server.terminate().await;
}

#[tokio::test]
async fn the_disk_keeps_a_quiet_topic_through_turnover_and_tells_exact_losses() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    let args = [
        "--history",
        "10",
        "--max-lag",
        "5",
        "--history-per-topic",
        "3",
        "--disk-history",
        "30",
    ];
    let server = start(&dir, &args).await;
    let quiet: Vec<Ack> = [
        publish(server.addr, "quiet", "q1").await,
        publish(server.addr, "quiet", "q2").await,
    ]
    .into();
    let mut busy = Vec::new();
    for i in 0..200 {
        busy.push(publish(server.addr, "busy", &format!("b{i}")).await);
    }
    server.terminate().await;
    let server = start(&dir, &args).await;

    // The quiet topic's events are kept on disk (its floor), and a resume
    // from before them gets them without any notice.
    let mut sse = Sse::open(
        server.addr,
        "/stream?topic=quiet",
        Some(&format!("{}-0", quiet[0].id.epoch)),
    )
    .await;
    let got = receive_through(&mut sse, quiet[1].id.seq).await;
    assert_eq!(
        got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![quiet[0].id, quiet[1].id]
    );
    drop(sse);

    // The busy topic lost its oldest: the notice says so, then what is kept.
    let mut sse = Sse::open(
        server.addr,
        "/stream?topic=busy",
        Some(&busy[0].id.to_string()),
    )
    .await;
    let (_, notice) = sse.next_reset().await;
    assert_eq!(notice.reason, ResetReason::HistoryExceeded);
    let (_, first) = sse.next_message().await;
    assert_eq!(notice.resume_seq, notice.missed_to.expect("missed_to") + 1);
    assert!(first.seq >= notice.resume_seq, "{first:?} after {notice:?}");
    assert!(
        first.seq > busy[150].id.seq,
        "the disk kept about 30 events"
    );
    server.terminate().await;
}

/// Runs the server binary with `args` and expects it to refuse to start:
/// returns its stderr.
fn refused(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--addr", "127.0.0.1:0", "--ticker-interval", "off"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the server binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "it started: {stdout}");
    assert!(!stdout.contains("listening on"), "it listened: {stdout}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_foreign_or_wrong_version_data_dir_is_refused_before_listening() {
    let root = tempfile::tempdir().expect("temporary directory");
    let foreign = root.path().join("someone-elses");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("photo.jpg"), "not ours").unwrap();
    let foreign = foreign.to_str().unwrap();
    let error = refused(&["--data-dir", foreign]);
    assert!(
        error.contains(foreign) && error.contains("not this server's"),
        "{error}"
    );
    assert!(
        std::fs::read_dir(foreign).unwrap().count() == 1,
        "nothing written into it"
    );

    let newer = root.path().join("newer");
    std::fs::create_dir(&newer).unwrap();
    std::fs::write(newer.join("VERSION"), "sse-server event log\nformat 7\n").unwrap();
    let newer = newer.to_str().unwrap();
    let error = refused(&["--data-dir", newer]);
    assert!(
        error.contains(newer) && error.contains("format 7"),
        "{error}"
    );

    let file = root.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let error = refused(&["--data-dir", file.to_str().unwrap()]);
    assert!(error.contains("not a folder"), "{error}");

    let dir = data_dir(root.path());
    let error = refused(&["--data-dir", &dir, "--redis", "redis://127.0.0.1:1/"]);
    assert!(
        error.contains("--data-dir") && error.contains("--redis"),
        "{error}"
    );
    let error = refused(&["--data-dir", &dir, "--fsync", "sometimes"]);
    assert!(
        error.contains("--fsync") && error.contains("batch="),
        "{error}"
    );
    let error = refused(&["--fsync", "always"]);
    assert!(error.contains("--data-dir"), "{error}");
    let error = refused(&[
        "--data-dir",
        &dir,
        "--disk-history",
        "10",
        "--history",
        "20",
        "--max-lag",
        "5",
    ]);
    assert!(error.contains("--disk-history (10)"), "{error}");
}

/// A small tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(Tmpfs(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a server still dying cannot keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system at `dir` with `filler` until it is full, then
/// gives `room` bytes back.
fn fill(filler: &Path, room: u64) {
    use std::io::Write;
    let mut file = std::fs::File::create(filler).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while file
        .write_all(&chunk)
        .and_then(|()| file.sync_all())
        .is_ok()
    {}
    let len = file.metadata().expect("filler size").len();
    file.set_len(len.saturating_sub(room))
        .expect("give room back");
}

#[tokio::test]
async fn a_full_disk_answers_503_degrades_health_and_recovers_when_space_returns() {
    let root = tempfile::tempdir().expect("temporary directory");
    let mount = root.path().join("small");
    // A real full disk where this machine lets the test mount one; else the
    // debug build's test seam fails every write while a file exists.
    let (tmpfs, seam) = match Tmpfs::mount(&mount, "8m") {
        Ok(tmpfs) => (Some(tmpfs), None),
        Err(why) => {
            eprintln!(
                "cannot mount a tmpfs ({}): using the injected I/O error seam instead",
                why.trim()
            );
            (None, Some(root.path().join("fail-writes")))
        }
    };
    let dir = mount.join("data");
    let dir = dir.to_str().unwrap();
    let seam_env = seam
        .as_ref()
        .map(|p| ("SSE_TEST_DISK_FAULT_FILE", p.to_str().unwrap().to_owned()));
    let env: Vec<(&str, &str)> = seam_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start_alone(&["--data-dir", dir], &env).await;
    let addr = server.addr;
    let before = publish(addr, "t", "before the disk fills").await;
    let filler = mount.join("filler");
    match &seam {
        Some(fault) => std::fs::write(fault, "").expect("fault file"),
        None => fill(&filler, 256 * 1024),
    }

    // Publishes (of 32 KiB) fail once the disk is full, with 503.
    let big = "x".repeat(32 * 1024);
    let mut refused = None;
    for _ in 0..1000 {
        let answer = publish_raw(
            addr,
            &serde_json::json!({ "message": big, "topic": "t" }).to_string(),
        )
        .await;
        if answer.status != 200 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a publish refused on a full disk");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["error"], "log_unavailable");
    let health = get(addr, "/healthz").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "degraded");
    assert_eq!(health.json()["log"], "disk");
    assert!(metric(addr, "sse_log_errors_total").await >= 1);
    assert_eq!(metric(addr, "sse_log_outages_total").await, 1);
    assert_eq!(metric(addr, "sse_log_up").await, 0);

    // Space returns: the log reopens, publishing works, nothing is lost.
    match &seam {
        Some(fault) => std::fs::remove_file(fault).expect("remove the fault file"),
        None => std::fs::remove_file(&filler).expect("remove the filler"),
    }
    await_health(addr, 200).await;
    let after = publish(addr, "t", "after space returned").await;
    assert_eq!(after.id.epoch, before.id.epoch);
    let mut sse = Sse::open(addr, "/stream?topic=t", Some(&before.id.to_string())).await;
    let rest = receive_through(&mut sse, after.id.seq).await;
    assert_eq!(rest.last().map(|(id, _)| *id), Some(after.id));
    let seqs: Vec<u64> = rest.iter().map(|(id, _)| id.seq).collect();
    assert_eq!(seqs, (before.id.seq + 1..=after.id.seq).collect::<Vec<_>>());
    server.kill().await;
    drop(tmpfs);
}

/// Acknowledged publishes of `count` events, from 8 publishers at once,
/// each message `size` bytes or so.
async fn publish_many(addr: SocketAddr, count: usize, size: usize) -> Vec<Ack> {
    let per = count.div_ceil(8);
    let tasks: Vec<_> = (0..8)
        .map(|p| {
            tokio::spawn(async move {
                let mut acks = Vec::with_capacity(per);
                for i in 0..per {
                    let message = format!("publisher {p} #{i} {}", "x".repeat(size));
                    acks.push(publish(addr, &format!("topic-{}", p % 3), &message).await);
                }
                acks
            })
        })
        .collect();
    let mut acks = Vec::with_capacity(count);
    for task in tasks {
        acks.extend(task.await.expect("publisher"));
    }
    acks.sort_by_key(|ack| ack.id.seq);
    acks
}

/// Copies a data dir's files into a new folder `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Inverts `len` bytes of `file` from `at`, in place.
fn flip_bytes(file: &Path, at: u64, len: usize) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut bytes = vec![0u8; len];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut bytes).unwrap();
    for byte in &mut bytes {
        *byte ^= 0xff;
    }
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&bytes).unwrap();
    f.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_damaged_on_disk_is_refused_by_name_never_served_with_a_gap() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    let args = ["--history", "100000", "--fsync", "batch=10ms"];
    let server = start(&dir, &args).await;
    let acks = publish_many(server.addr, 3000, 100).await;
    let (epoch, last_seq) = position(server.addr).await;
    assert_eq!(last_seq, 3000);
    server.terminate().await;

    let store_size = std::fs::metadata(Path::new(&dir).join("events.redb"))
        .unwrap()
        .len();
    let (mut refusals, mut whole) = (0, 0);
    // Damage at every tenth of the file, each on its own copy.
    for tenth in 1..10u64 {
        let trial = root.path().join(format!("trial-{tenth}"));
        copy_dir(Path::new(&dir), &trial);
        let store = trial.join("events.redb");
        flip_bytes(&store, store_size * tenth / 10, 64);
        let trial = trial.to_str().unwrap().to_owned();
        let mut trial_args = vec!["--data-dir", trial.as_str()];
        trial_args.extend_from_slice(&args);
        match ServerProcess::try_start_alone(&trial_args).await {
            Err(exited) => {
                // Refused: by name, saying what to do, never a panic.
                assert_eq!(exited.code, Some(1), "tenth {tenth}: {exited:?}");
                assert!(
                    exited
                        .stderr
                        .contains(&format!("{}: is damaged", store.display())),
                    "tenth {tenth}: {}",
                    exited.stderr
                );
                assert!(
                    exited.stderr.contains("restore the folder from a backup"),
                    "tenth {tenth}: {}",
                    exited.stderr
                );
                refusals += 1;
            }
            Ok(server) => {
                // The damage fell where no event is (free space): every
                // acknowledged event is served, with its id, no reset.
                let mut sse = Sse::open(server.addr, "/stream", Some(&format!("{epoch}-0"))).await;
                let got = receive_through(&mut sse, last_seq).await;
                let got: Vec<_> = got.iter().map(|(id, e)| (*id, e.message.clone())).collect();
                let want: Vec<_> = acks.iter().map(|a| (a.id, a.message.clone())).collect();
                let missing: Vec<u64> = want
                    .iter()
                    .filter(|w| !got.contains(w))
                    .map(|(id, _)| id.seq)
                    .collect();
                assert!(
                    got == want,
                    "tenth {tenth}: {} of {} events served, {} missing (seqs {:?}…)",
                    got.len(),
                    want.len(),
                    missing.len(),
                    &missing[..missing.len().min(5)]
                );
                server.terminate().await;
                whole += 1;
            }
        }
    }
    eprintln!("of 9 damaged copies: {refusals} refused, {whole} served whole");
    assert!(refusals > 0, "the damage reached the events at least once");
}

#[test]
fn a_store_truncated_or_deleted_under_its_version_is_refused_not_begun_again() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = data_dir(root.path());
    // A log that held events.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = start(&dir, &[]).await;
        publish_many(server.addr, 16, 10).await;
        server.terminate().await;
    });
    let store = Path::new(&dir).join("events.redb");
    let half = std::fs::metadata(&store).unwrap().len() / 2;
    let copy = root.path().join("half");
    copy_dir(Path::new(&dir), &copy);
    std::fs::OpenOptions::new()
        .write(true)
        .open(copy.join("events.redb"))
        .unwrap()
        .set_len(half)
        .unwrap();
    let error = refused(&["--data-dir", copy.to_str().unwrap()]);
    assert!(error.contains("events.redb"), "half: {error}");

    std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap()
        .set_len(0)
        .unwrap();
    let error = refused(&["--data-dir", &dir]);
    assert!(
        error.contains(&format!(
            "{}: is empty, though VERSION says this folder holds an event log",
            store.display()
        )),
        "{error}"
    );
    assert!(
        error.contains("restore the folder from a backup"),
        "{error}"
    );
    assert_eq!(
        std::fs::metadata(&store).unwrap().len(),
        0,
        "nothing was begun in it"
    );

    std::fs::remove_file(&store).unwrap();
    let error = refused(&["--data-dir", &dir]);
    assert!(
        error.contains(&format!(
            "{}: is missing, though VERSION says",
            store.display()
        )),
        "{error}"
    );
    assert!(!store.exists(), "nothing was begun");
}
