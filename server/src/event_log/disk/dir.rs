//! The data dir: what makes a folder ours (a `VERSION` file naming this
//! server's log and its format), and opening the store file in it.

use std::fs;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use redb::Database;

use crate::config::ConfigError;

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

fn refused(dir: &Path, reason: impl Into<String>) -> ConfigError {
    ConfigError::DataDir {
        path: dir.to_path_buf(),
        reason: reason.into(),
    }
}

/// Makes sure `dir` is this server's data dir, creating it (with its
/// `VERSION` file) when it is missing or empty; returns the store file's
/// path.
///
/// # Errors
/// [`ConfigError::DataDir`] naming the folder: it cannot be created or
/// read, it is not a folder, it holds files but no `VERSION` (another
/// program's folder: nothing is written into it), or its `VERSION` is
/// another program's or another format's.
pub(super) fn prepare(dir: &Path) -> Result<PathBuf, ConfigError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(refused(dir, "is not a folder")),
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| refused(dir, format!("cannot be created: {e}")))?;
        }
        Err(error) => return Err(refused(dir, format!("cannot be read: {error}"))),
    }
    let version = dir.join(VERSION_FILE);
    match fs::read_to_string(&version) {
        Ok(text) => check_version(dir, &text)?,
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
            write_version(dir, &version)?;
        }
        Err(error) => {
            return Err(refused(
                dir,
                format!("its {VERSION_FILE} file cannot be read: {error}"),
            ))
        }
    }
    Ok(dir.join(STORE_FILE))
}

fn check_version(dir: &Path, text: &str) -> Result<(), ConfigError> {
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
fn write_version(dir: &Path, version: &Path) -> Result<(), ConfigError> {
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(version)?;
        writeln!(file, "{MAGIC}\nformat {FORMAT}")?;
        file.sync_all()?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| refused(dir, format!("cannot be written: {e}")))
}

/// Opens (or creates) the store file at `path`. After an unclean stop redb
/// repairs the file here, which reads all of it.
pub(super) fn open_store(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(CACHE_BYTES).create(path)
}

/// Checks at start-up, before the server listens, that `dir` can hold the
/// log: the folder is ours (or new) and the store opens. The store is closed
/// again; [`super::DiskLog::open`] opens it for the run.
///
/// # Errors
/// [`ConfigError::DataDir`] naming the folder or the store file.
pub fn check(dir: &Path) -> Result<(), ConfigError> {
    let store = prepare(dir)?;
    open_store(&store)
        .map(drop)
        .map_err(|error| store_refused(&store, &error))
}

/// The start-up error for a store file that does not open.
pub(super) fn store_refused(store: &Path, error: &redb::DatabaseError) -> ConfigError {
    let reason = match error {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            "is in use by another process (another server on the same --data-dir?)".to_owned()
        }
        redb::DatabaseError::UpgradeRequired(version) => {
            format!("is in an older store format ({version}) that this server does not read")
        }
        other => format!("cannot be opened: {other}"),
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
        // Ours: accepted again.
        prepare(&dir).unwrap();

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
