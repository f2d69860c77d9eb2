//! The data dir: what makes a folder ours (a `VERSION` file naming this
//! server's log and its format), and opening the store file in it.

use std::fs;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use redb::Database;

use crate::event_log::DataDirError;

/// The file that says the folder holds this server's log, and in which
/// format.
pub(super) const VERSION_FILE: &str = "VERSION";
/// Its first line.
const MAGIC: &str = "sse-server event log";
/// The format this server reads and writes: the layout of the tables in
/// [`STORE_FILE`] and of the values in them.
pub(super) const FORMAT: u32 = 1;
/// The store (redb) file.
pub(super) const STORE_FILE: &str = "events.redb";
/// Memory redb may use to cache pages of the store.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

fn refused(dir: &Path, reason: impl Into<String>) -> DataDirError {
    DataDirError {
        path: dir.to_path_buf(),
        reason: reason.into(),
    }
}

/// Makes sure `dir` is this server's data dir, creating it (with its store
/// file, then its `VERSION` file) when it is missing or empty; returns the
/// store file's path.
///
/// `VERSION` is written only once the store exists, so a folder with
/// `VERSION` has held a store: a store file that is missing or empty there
/// was lost or truncated, and is refused rather than begun again.
///
/// # Errors
/// [`DataDirError`] naming the folder: it cannot be created or
/// read, it is not a folder, it holds files but no `VERSION` (another
/// program's folder: nothing is written into it), or its `VERSION` is
/// another program's or another format's; or naming the store file when
/// `VERSION` says the folder held a log and the file is missing or empty.
pub(super) fn prepare(dir: &Path) -> Result<PathBuf, DataDirError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(refused(dir, "is not a folder")),
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| refused(dir, format!("cannot be created: {e}")))?;
        }
        Err(error) => return Err(refused(dir, format!("cannot be read: {error}"))),
    }
    let version = dir.join(VERSION_FILE);
    let store = dir.join(STORE_FILE);
    match fs::read_to_string(&version) {
        Ok(text) => {
            check_version(dir, &text)?;
            check_store_is_there(&store)?;
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let entries = fs::read_dir(dir)
                .map_err(|e| refused(dir, format!("cannot be listed: {e}")))?
                .filter_map(Result::ok)
                // A fresh file system's own folder.
                .filter(|entry| entry.file_name() != "lost+found")
                .count();
            if entries > 0 {
                return Err(refused(
                    dir,
                    format!(
                        "holds files but no {VERSION_FILE} file: it is not this server's data \
                         dir, and nothing is written into it (give an empty or new folder)"
                    ),
                ));
            }
            create_store(&store)?;
            write_version(dir, &version)?;
        }
        Err(error) => {
            return Err(refused(
                dir,
                format!("its {VERSION_FILE} file cannot be read: {error}"),
            ))
        }
    }
    Ok(store)
}

/// What to do with a store that cannot be used as it is.
const DAMAGED_ADVICE: &str = "restore the folder from a backup, or move the file aside (to keep \
     it for inspection) together with VERSION, so that the server begins a new, empty log: \
     clients that resume then get a reset notice";

/// Refuses a store file that `VERSION` says exists but that is gone or
/// empty.
fn check_store_is_there(store: &Path) -> Result<(), DataDirError> {
    match fs::metadata(store) {
        Ok(meta) if meta.len() > 0 => Ok(()),
        Ok(_) => Err(refused(
            store,
            format!(
                "is empty, though {VERSION_FILE} says this folder holds an event log: the file \
                 was truncated, and the events it held are gone; {DAMAGED_ADVICE}"
            ),
        )),
        Err(error) if error.kind() == ErrorKind::NotFound => Err(refused(
            store,
            format!(
                "is missing, though {VERSION_FILE} says this folder holds an event log: the \
                 file was deleted or moved; {DAMAGED_ADVICE}"
            ),
        )),
        Err(error) => Err(refused(store, format!("cannot be read: {error}"))),
    }
}

/// Creates the store of a new data dir, so that it exists before `VERSION`
/// does.
fn create_store(store: &Path) -> Result<(), DataDirError> {
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(store)
        .map(drop)
        .map_err(|error| store_refused(store, &StoreError::Open(error)))?;
    fs::File::open(store)
        .and_then(|file| file.sync_all())
        .map_err(|e| refused(store, format!("cannot be synced: {e}")))
}

fn check_version(dir: &Path, text: &str) -> Result<(), DataDirError> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(refused(
            dir,
            format!(
                "its {VERSION_FILE} file is not this server's (it should begin with {MAGIC:?})"
            ),
        ));
    }
    let format = lines
        .next()
        .and_then(|line| line.strip_prefix("format "))
        .and_then(|n| n.trim().parse::<u32>().ok());
    match format {
        Some(FORMAT) => Ok(()),
        Some(other) => Err(refused(
            dir,
            format!(
                "holds format {other} of the event log; this server reads format {FORMAT} only"
            ),
        )),
        None => Err(refused(
            dir,
            format!("its {VERSION_FILE} file names no format"),
        )),
    }
}

/// Writes `VERSION` and syncs it and the folder, so that a data dir is
/// never half made.
fn write_version(dir: &Path, version: &Path) -> Result<(), DataDirError> {
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(version)?;
        writeln!(file, "{MAGIC}\nformat {FORMAT}")?;
        file.sync_all()?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| refused(dir, format!("cannot be written: {e}")))
}

/// Why the store file cannot be used.
#[derive(Debug)]
pub(super) enum StoreError {
    /// redb refused to open it.
    Open(redb::DatabaseError),
    /// Its pages do not match their checksums: bytes changed on disk.
    Damaged(String),
    /// redb panicked reading it: its structure is damaged.
    Panicked(String),
}

/// Opens the store file at `path` (made by [`prepare`]) and checks every
/// page against its checksum, so that a store whose bytes changed on disk
/// is refused at start instead of serving a silent gap. After an unclean
/// stop redb repairs the file first, which reads all of it. A panic inside
/// redb on a damaged file is caught and refused the same way.
pub(super) fn open_store(path: &Path) -> Result<Database, StoreError> {
    let opened = std::panic::catch_unwind(|| {
        let mut store = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open(path)
            .map_err(StoreError::Open)?;
        match store.check_integrity() {
            Ok(true) => Ok(store),
            Ok(false) => Err(StoreError::Damaged(
                "some of its pages did not match their checksums (redb rebuilt what it could, \
                 which may have dropped acknowledged events)"
                    .to_owned(),
            )),
            Err(error) => Err(StoreError::Damaged(error.to_string())),
        }
    });
    opened.unwrap_or_else(|panic| Err(StoreError::Panicked(panic_text(&*panic))))
}

/// Opens the store again after a failed write (disk full, an I/O error):
/// redb repairs a torn commit itself; the whole check of [`open_store`] is
/// for the start.
pub(super) fn reopen_store(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(CACHE_BYTES).open(path)
}

/// The text of a caught panic.
pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// A data dir's store, opened and checked whole ([`Store::open`]), that
/// [`super::DiskLog::open`] runs on.
pub struct Store {
    /// The store file.
    pub(super) path: PathBuf,
    /// It, open.
    pub(super) database: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store of `dir` at start-up, before the server listens: the
    /// folder is made ours when it is new ([`prepare`]), and the store file
    /// opens and checks whole ([`open_store`]).
    ///
    /// # Errors
    /// [`DataDirError`] naming the folder or the store file.
    pub fn open(dir: &Path) -> Result<Self, DataDirError> {
        let path = prepare(dir)?;
        let database = open_store(&path).map_err(|error| store_refused(&path, &error))?;
        Ok(Self { path, database })
    }
}

/// The start-up error for a store file that cannot be used.
pub(super) fn store_refused(store: &Path, error: &StoreError) -> DataDirError {
    let reason = match error {
        StoreError::Open(redb::DatabaseError::DatabaseAlreadyOpen) => {
            "is in use by another process (another server on the same --data-dir?)".to_owned()
        }
        StoreError::Open(redb::DatabaseError::UpgradeRequired(version)) => {
            format!("is in an older store format ({version}) that this server does not read")
        }
        StoreError::Open(other) => {
            format!("cannot be opened ({other}): it may be damaged; {DAMAGED_ADVICE}")
        }
        StoreError::Damaged(why) => {
            format!("is damaged ({why}); nothing was changed; {DAMAGED_ADVICE}")
        }
        StoreError::Panicked(why) => {
            format!("is damaged (reading it failed: {why}); {DAMAGED_ADVICE}")
        }
    };
    refused(store, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_folders_are_made_ours_and_others_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        assert_eq!(prepare(&dir).unwrap(), dir.join(STORE_FILE));
        assert!(fs::read_to_string(dir.join(VERSION_FILE))
            .unwrap()
            .starts_with(MAGIC));
        // Ours: accepted again, with its store made before its VERSION.
        assert!(dir.join(STORE_FILE).metadata().unwrap().len() > 0);
        prepare(&dir).unwrap();
        // A store that VERSION says exists is never begun again.
        fs::write(dir.join(STORE_FILE), "").unwrap();
        let error = prepare(&dir).unwrap_err().to_string();
        assert!(error.contains("is empty"), "{error}");
        fs::remove_file(dir.join(STORE_FILE)).unwrap();
        let error = prepare(&dir).unwrap_err().to_string();
        assert!(error.contains("is missing"), "{error}");

        let foreign = root.path().join("foreign");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("notes.txt"), "hello").unwrap();
        let error = prepare(&foreign).unwrap_err().to_string();
        assert!(
            error.contains("foreign") && error.contains("no VERSION"),
            "{error}"
        );

        fs::write(dir.join(VERSION_FILE), format!("{MAGIC}\nformat 9\n")).unwrap();
        let error = prepare(&dir).unwrap_err().to_string();
        assert!(error.contains("format 9"), "{error}");

        fs::write(dir.join(VERSION_FILE), "something else\n").unwrap();
        assert!(prepare(&dir)
            .unwrap_err()
            .to_string()
            .contains("not this server's"));

        let file = root.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(prepare(&file)
            .unwrap_err()
            .to_string()
            .contains("not a folder"));
    }
}
