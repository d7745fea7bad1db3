//! Opening a connection to a baton database, and what SQLite's errors mean
//! to the people who see them.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::Error;

/// Opens `path` (creating it) in WAL mode; a write waits up to
/// `busy_timeout` for another process's lock.
pub(crate) fn connect(path: &Path, busy_timeout: Duration) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)
        .map_err(|error| database_error(path, busy_timeout, &error))?;
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = {}; PRAGMA cache_size = -32768;",
            busy_timeout.as_millis()
        ))
        .map_err(|error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => Error::NotBaton(path.to_path_buf()),
            _ => database_error(path, busy_timeout, &error),
        })?;
    Ok(connection)
}

/// The store's error for a SQLite error on `path`.
pub(crate) fn database_error(
    path: &Path,
    busy_timeout: Duration,
    error: &rusqlite::Error,
) -> Error {
    let message = match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            return Error::Locked {
                path: path.to_path_buf(),
                seconds: busy_timeout.as_secs().max(1) as u32,
            };
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            return Error::Damaged {
                path: path.to_path_buf(),
                message: error.to_string(),
            };
        }
        Some(rusqlite::ErrorCode::NotADatabase) => return Error::NotBaton(path.to_path_buf()),
        Some(rusqlite::ErrorCode::DiskFull) => {
            "the disk is full; nothing of the failed write was kept (free space and try again)"
                .to_owned()
        }
        Some(rusqlite::ErrorCode::ReadOnly) => format!(
            "the database is read-only to this process ({error}); nothing was written (give it write access, or point --state-dir elsewhere)"
        ),
        _ => error.to_string(),
    };
    Error::Database {
        path: path.to_path_buf(),
        message,
    }
}
