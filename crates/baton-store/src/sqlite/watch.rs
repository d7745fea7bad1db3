//! The change feed of a database file: a thread that notices commits from
//! any connection (this process's writer, or another process's) through
//! `PRAGMA data_version`, reads what the `feed` and `controls` tables
//! gained since it last looked, and publishes it. This process's writer
//! nudges it after each commit, so local changes go out at once; others'
//! are seen within one interval.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::broadcast;

use super::connection::connect;
use crate::{CHANGE_BACKLOG, Change, Error};

/// Where the writer nudges the watcher, once one runs.
pub(crate) type Nudge = Arc<Mutex<Option<SyncSender<()>>>>;

/// Rows read per look, so a long absence catches up in bounded steps.
const PAGE: i64 = 10_000;

/// A running watcher and its subscribers.
pub(crate) struct Watch {
    pub(crate) changes: broadcast::Sender<Change>,
    stop: Arc<AtomicBool>,
    nudge: Nudge,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Watch {
    /// Starts watching `path` from its current positions: only what is
    /// committed from now on is published.
    pub(crate) fn start(
        path: PathBuf,
        busy_timeout: Duration,
        interval: Duration,
        nudge: Nudge,
    ) -> Result<Watch, Error> {
        let connection = connect(&path, busy_timeout)?;
        // The version first: a commit between the two reads is looked at.
        let first_version = version(&connection);
        let from = positions(&connection).map_err(|error| Error::Database {
            path: path.clone(),
            message: error.to_string(),
        })?;
        let (changes, _) = broadcast::channel(CHANGE_BACKLOG);
        let (sender, nudges) = std::sync::mpsc::sync_channel(1);
        *lock(&nudge) = Some(sender);
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = Watcher {
            connection,
            changes: changes.clone(),
            feed: from.0,
            controls: from.1,
        };
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("baton-sqlite-watch".to_owned())
            .spawn(move || {
                let mut watcher = watcher;
                let mut seen = first_version;
                loop {
                    match nudges.recv_timeout(interval) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = version(&watcher.connection);
                    if now != seen {
                        // A look that fails is tried again at the next tick.
                        seen = if watcher.look() { now } else { -1 };
                    }
                }
            })
            .map_err(|error| Error::Database {
                path,
                message: format!("cannot start the change watcher: {error}"),
            })?;
        Ok(Watch {
            changes,
            stop,
            nudge,
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        lock(&self.nudge).take();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

struct Watcher {
    connection: Connection,
    changes: broadcast::Sender<Change>,
    /// The last feed and control positions published.
    feed: u64,
    controls: u64,
}

/// SQLite's count of commits by other connections; a read error counts as
/// a change, so the watcher looks rather than miss one.
fn version(connection: &Connection) -> i64 {
    connection
        .query_row("PRAGMA data_version", [], |row| row.get(0))
        .unwrap_or(-1)
}

impl Watcher {
    /// Publishes the batches and requests committed since the last look;
    /// false if the file could not be read. Both are read in one snapshot,
    /// so a request committed after an append is never published before it.
    fn look(&mut self) -> bool {
        if self.connection.execute_batch("BEGIN").is_err() {
            return false;
        }
        let looked = self.publish();
        let _ = self.connection.execute_batch("COMMIT");
        looked
    }

    fn publish(&mut self) -> bool {
        loop {
            let Ok(appended) = self.appended() else {
                return false;
            };
            let full = appended.len() as i64 == PAGE;
            for (position, run, events) in appended {
                self.feed = position;
                let _ = self.changes.send(Change::Appended {
                    position,
                    run: Arc::from(run),
                    events,
                });
            }
            if !full {
                break;
            }
        }
        let Ok(requested) = self.requested() else {
            return false;
        };
        for (position, run) in requested {
            self.controls = position;
            let _ = self.changes.send(Change::Requested {
                run: Arc::from(run),
            });
        }
        true
    }

    fn appended(&self) -> rusqlite::Result<Vec<(u64, String, u64)>> {
        let mut select = self.connection.prepare_cached(
            "SELECT feed.position, runs.run_id, feed.first_seq + event_batches.count
             FROM feed JOIN runs ON runs.id = feed.run
             JOIN event_batches ON event_batches.run = feed.run
                AND event_batches.first_seq = feed.first_seq
             WHERE feed.position > ?1 ORDER BY feed.position LIMIT ?2",
        )?;
        select
            .query_map(params![self.feed as i64, PAGE], |row| {
                Ok((
                    row.get::<_, i64>(0)? as u64,
                    row.get(1)?,
                    row.get::<_, i64>(2)? as u64,
                ))
            })?
            .collect()
    }

    fn requested(&self) -> rusqlite::Result<Vec<(u64, String)>> {
        let mut select = self.connection.prepare_cached(
            "SELECT controls.position, runs.run_id FROM controls
             JOIN runs ON runs.id = controls.run
             WHERE controls.position > ?1 ORDER BY controls.position",
        )?;
        select
            .query_map([self.controls as i64], |row| {
                Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
            })?
            .collect()
    }
}

/// The highest positions so far: the last appended batch's and the last
/// control request's.
fn positions(connection: &Connection) -> rusqlite::Result<(u64, u64)> {
    connection.query_row(
        "SELECT (SELECT coalesce(max(position), 0) FROM feed),
                (SELECT coalesce(max(position), 0) FROM controls)",
        [],
        |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
