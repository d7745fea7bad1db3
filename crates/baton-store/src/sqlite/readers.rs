//! A small pool of reader connections. Each read takes one on tokio's
//! blocking pool, so a query never holds up a runtime thread, and readers
//! run side by side with each other and with the writer (WAL).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::connection::{connect, database_error};
use crate::{Error, Result};

pub(crate) struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    /// One permit per connection the pool may hold.
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration, size: usize) -> Readers {
        Readers {
            path,
            busy_timeout,
            permits: Arc::new(Semaphore::new(size.max(1))),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on a connection of the pool (opened on first use) in
    /// one read transaction, off the runtime's threads.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection, &Reading) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::WriterStopped)?;
        let readers = Arc::clone(self);
        let answer = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut connection = match readers.lock().pop() {
                Some(connection) => connection,
                None => connect(&readers.path, readers.busy_timeout)?,
            };
            let reading = Reading {
                path: &readers.path,
                busy_timeout: readers.busy_timeout,
            };
            // One read transaction: a read of several queries (a log and its
            // recorded count) sees one state of the file, whatever commits
            // meanwhile.
            let answer = match connection.transaction() {
                Ok(snapshot) => {
                    let answer = read(&snapshot, &reading);
                    drop(snapshot);
                    answer
                }
                Err(error) => Err(reading.error(&error)),
            };
            readers.lock().push(connection);
            answer
        })
        .await;
        answer.unwrap_or_else(|error| {
            Err(Error::Database {
                path: self.path.clone(),
                message: format!("a read stopped: {error}"),
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a read needs to turn SQLite's errors into the store's.
pub(crate) struct Reading<'a> {
    path: &'a std::path::Path,
    busy_timeout: Duration,
}

impl Reading<'_> {
    pub(crate) fn error(&self, error: &rusqlite::Error) -> Error {
        database_error(self.path, self.busy_timeout, error)
    }

    /// Rows of `sql` with `params`, each made by `row`.
    pub(crate) fn query<T, P: rusqlite::Params>(
        &self,
        connection: &Connection,
        sql: &str,
        params: P,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut select = connection
            .prepare_cached(sql)
            .map_err(|error| self.error(&error))?;
        select
            .query_map(params, row)
            .and_then(|rows| rows.collect())
            .map_err(|error| self.error(&error))
    }
}
