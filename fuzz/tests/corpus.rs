//! Replays the committed inputs of every fuzz target under `cargo test`:
//! each file of `fuzz/corpus/TARGET/` (the seeds, at least one) and of
//! `fuzz/regressions/TARGET/` (the kept crashing inputs) goes through the
//! target's `run`, the code its libFuzzer binary runs (see
//! `fuzz::targets`). A failing input fails the test, naming its file; the
//! count of inputs replayed is printed (`cargo test -p fuzz -- --nocapture`).
//!
//! Coverage-guided runs, which look for new inputs, are `scripts/fuzz.sh`'s.

use std::any::Any;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::thread;

use fuzz::targets;

/// The files of `dir`, sorted by name; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs `run` on every committed input of `target`. `run` returns `false`
/// for an input that its target skips (one that does not decode to the
/// target's typed input, which libFuzzer rejects too).
fn replay(target: &str, mut run: impl FnMut(&[u8]) -> bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus_dir = root.join("corpus").join(target);
    let corpus = files(&corpus_dir);
    assert!(
        !corpus.is_empty(),
        "{}: no seeds to replay",
        corpus_dir.display()
    );
    let regressions = files(&root.join("regressions").join(target));

    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        match panic::catch_unwind(AssertUnwindSafe(|| run(&data))) {
            Ok(true) => {}
            Ok(false) => skipped.push(path.display().to_string()),
            Err(payload) => failures.push(format!(
                "{}: {}",
                path.display(),
                panic_message(payload.as_ref())
            )),
        }
    }
    println!(
        "{target}: replayed {} inputs ({} seeds, {} regressions){}",
        corpus.len() + regressions.len(),
        corpus.len(),
        regressions.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(
                "; {} skipped, not decodable: {}",
                skipped.len(),
                skipped.join(", ")
            )
        }
    );
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs fail:\n{}",
        failures.len(),
        corpus.len() + regressions.len(),
        failures.join("\n")
    );
}

#[test]
fn parse() {
    targets::parse::init();
    replay("parse", |data| {
        targets::parse::run(data);
        true
    });
}

#[test]
fn encode() {
    replay("encode", targets::encode::run);
}

#[test]
fn last_event_id() {
    replay("last_event_id", targets::last_event_id::run);
}

#[test]
fn publish_body() {
    replay("publish_body", |data| {
        targets::publish_body::run(data);
        true
    });
}

#[test]
fn token() {
    replay("token", targets::token::run);
}

/// The tests above, whose threads' panics are not the server's.
const OTHER_TESTS: [&str; 5] = ["parse", "encode", "last_event_id", "publish_body", "token"];

/// Panics seen on any thread but the other tests': where, and the message.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every panic in [`PANICS`] (then hands it to the hook that was
/// there before). Under libFuzzer a panic in any thread is a crash; here
/// tokio would catch one in a server task, and the connection would simply
/// close.
fn record_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let thread = thread::current();
            let name = thread.name().unwrap_or("an unnamed thread");
            if !OTHER_TESTS.contains(&name) {
                let location = info
                    .location()
                    .map_or_else(String::new, |l| format!(" at {l}"));
                let message = panic_message(info.payload());
                PANICS
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(format!("{name}{location}: {message}"));
            }
            previous(info);
        }));
    });
}

#[test]
fn http_request() {
    record_panics();
    replay("http_request", |data| {
        targets::http_request::run(data);
        true
    });
    // Every panic up to the last answer is in; a connection's task that
    // is still running after it is libFuzzer's to catch.
    let panics = PANICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        panics.is_empty(),
        "{} panics (in the server's tasks or the harness):\n{}",
        panics.len(),
        panics.join("\n")
    );
}
