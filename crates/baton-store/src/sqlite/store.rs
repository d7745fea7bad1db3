//! [`SqliteStore`]: the writer, the readers and the watcher of one file,
//! behind the store's traits.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use baton_core::Duration;
use baton_core::run::{Control, Digest, Event, Millis, Provenance, Sealed};
use rusqlite::{Connection, params};
use tokio::sync::broadcast;

use super::connection::{connect, database_error};
use super::readers::Readers;
use super::reads;
use super::schema::migrate;
use super::watch::{Nudge, Watch};
use super::writer::Writer;
use crate::owner::{Fence, Owner};
use crate::write::Writes;
use crate::{
    ApiKey, ArtifactRow, AttemptRow, Batch, CacheHit, Catalog, Change, CheckpointInfo, Error,
    FeedBatch, ReadModels, Result, RunFilter, RunLog, RunRecord, RunSummary, StoredWorkflow,
    TaskRow,
};

/// How a database file is opened.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a write waits for another process's lock before it fails.
    pub busy_timeout: StdDuration,
    /// Reader connections at most.
    pub readers: usize,
    /// How often the change feed looks for other processes' commits.
    pub watch_interval: StdDuration,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            busy_timeout: StdDuration::from_secs(5),
            readers: 4,
            watch_interval: StdDuration::from_millis(25),
        }
    }
}

/// A baton database file.
pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    writes: Writes,
    thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Readers>,
    nudge: Nudge,
    /// The change feed's watcher, started by the first subscriber.
    watch: Mutex<Option<Watch>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, upgrading an older
    /// schema; refuses a file that is not baton's or is newer than this build.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let busy = options.busy_timeout;
        // Processes opening a new file at once can be refused the lock at
        // once (SQLite does not wait where waiting could deadlock): they
        // try again, for as long as a write would wait.
        let deadline = Instant::now() + busy;
        let writer = loop {
            let opened = connect(&path, busy).and_then(|mut writer| {
                migrate(&mut writer, &path, |error| {
                    database_error(&path, busy, &error)
                })?;
                Ok(writer)
            });
            match opened {
                Err(Error::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(StdDuration::from_millis(10));
                }
                other => break other?,
            }
        };
        let nudge: Nudge = Arc::default();
        let committed = {
            let nudge = Arc::clone(&nudge);
            Box::new(move || {
                if let Some(sender) = nudge
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .as_ref()
                {
                    let _ = sender.try_send(());
                }
            })
        };
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let run = Writer {
            path: path.clone(),
            busy_timeout: busy,
            committed,
        };
        let thread = std::thread::Builder::new()
            .name("baton-sqlite-writer".to_owned())
            .spawn(move || run.run(writer, receiver))
            .map_err(|error| Error::Database {
                path: path.clone(),
                message: format!("cannot start the writer thread: {error}"),
            })?;
        Ok(SqliteStore {
            readers: Arc::new(Readers::new(path.clone(), busy, options.readers)),
            path,
            options,
            writes: Writes::new(sender),
            thread: Mutex::new(Some(thread)),
            nudge,
            watch: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `read` on a reader connection off the runtime's threads.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection, &super::readers::Reading) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.readers.read(read).await
    }
}

impl Drop for SqliteStore {
    /// Lets the writer finish what it was given, then joins it; the watcher
    /// stops with its own drop.
    fn drop(&mut self) {
        self.writes.close();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl RunLog for SqliteStore {
    async fn heartbeat(&self, owner: &Owner, now: Millis, ttl: Duration) -> Result<()> {
        self.writes.heartbeat(owner, now, ttl).await
    }

    async fn create_run(&self, record: &RunRecord, owner: &str, now: Millis) -> Result<Fence> {
        self.writes.create_run(record, owner, now).await
    }

    async fn claim(
        &self,
        run: &str,
        owner: &str,
        now: Millis,
        steal: Option<Fence>,
    ) -> Result<Fence> {
        self.writes.claim(run, owner, now, steal).await
    }

    async fn release(&self, run: &str, fence: Fence) -> Result<()> {
        self.writes.release(run, fence).await
    }

    async fn run(&self, run: &str) -> Result<RunRecord> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::record(connection, reading, &run))
            .await
    }

    async fn write(&self, run: &str, first_seq: u64, fence: Fence, batch: Batch<'_>) -> Result<()> {
        self.writes.write(run, first_seq, fence, batch).await
    }

    async fn events_from(&self, run: &str, from: u64) -> Result<Vec<Event>> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::events_from(connection, reading, &run, from))
            .await
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedBatch>> {
        self.read(move |connection, reading| reads::feed(connection, reading, after, limit))
            .await
    }

    async fn put_checkpoint(&self, run: &str, fence: Fence, sealed: &Sealed) -> Result<()> {
        self.writes.put_checkpoint(run, fence, sealed).await
    }

    async fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::checkpoints(connection, reading, &run))
            .await
    }

    async fn checkpoint(&self, run: &str, events: u64) -> Result<Sealed> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::checkpoint(connection, reading, &run, events))
            .await
    }

    async fn request(&self, run: &str, control: &Control) -> Result<u64> {
        self.writes.request(run, control).await
    }

    async fn controls(&self, run: &str, from: u64) -> Result<Vec<Control>> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::controls(connection, reading, &run, from))
            .await
    }

    async fn delete_run(&self, run: &str) -> Result<()> {
        self.writes.delete_run(run).await
    }

    async fn integrity(&self) -> Result<Vec<String>> {
        self.read(|connection, reading| {
            let rows = reading.query(connection, "PRAGMA integrity_check", [], |row| {
                row.get::<_, String>(0)
            })?;
            Ok(rows.into_iter().filter(|row| row != "ok").collect())
        })
        .await
    }

    fn changes(&self) -> broadcast::Receiver<Change> {
        let mut watch = lock(&self.watch);
        if watch.is_none() {
            let started = Watch::start(
                self.path.clone(),
                self.options.busy_timeout,
                self.options.watch_interval,
                Arc::clone(&self.nudge),
            );
            match started {
                Ok(started) => *watch = Some(started),
                // A file that cannot be watched has no feed: subscribers
                // hear that it closed, and read the store when they must.
                Err(_) => return broadcast::channel(1).1,
            }
        }
        match watch.as_ref() {
            Some(watch) => watch.changes.subscribe(),
            None => broadcast::channel(1).1,
        }
    }
}

#[async_trait]
impl ReadModels for SqliteStore {
    async fn summary(&self, run: &str) -> Result<RunSummary> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::summary(connection, reading, &run))
            .await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let filter = filter.clone();
        self.read(move |connection, reading| reads::runs(connection, reading, &filter))
            .await
    }

    async fn tasks(&self, run: &str) -> Result<Vec<TaskRow>> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::tasks(connection, reading, &run))
            .await
    }

    async fn task(&self, run: &str, task: u32) -> Result<Option<TaskRow>> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::task(connection, reading, &run, task))
            .await
    }

    async fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::attempts(connection, reading, &run))
            .await
    }

    async fn outputs(&self, run: &str) -> Result<Vec<(u32, serde_json::Value)>> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::outputs(connection, reading, &run))
            .await
    }

    async fn provenance(&self, run: &str) -> Result<Vec<Provenance>> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::provenance(connection, reading, &run))
            .await
    }

    async fn cached(&self, key: &Digest) -> Result<Option<CacheHit>> {
        let key = *key;
        self.read(move |connection, reading| reads::cached(connection, reading, &key))
            .await
    }

    async fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>> {
        let run = run.to_owned();
        self.read(move |connection, reading| reads::artifacts(connection, reading, &run))
            .await
    }

    async fn artifact_digests(&self) -> Result<Vec<Digest>> {
        self.read(reads::artifact_digests).await
    }
}

#[async_trait]
impl Catalog for SqliteStore {
    async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<()> {
        self.writes.put_workflow(workflow).await
    }

    async fn workflow(&self, name: &str, version: Option<u32>) -> Result<StoredWorkflow> {
        let name = name.to_owned();
        self.read(move |connection, reading| reads::workflow(connection, reading, &name, version))
            .await
    }

    async fn workflows(&self) -> Result<Vec<StoredWorkflow>> {
        self.read(reads::workflows).await
    }

    async fn workflow_versions(&self, name: &str) -> Result<Vec<StoredWorkflow>> {
        let name = name.to_owned();
        self.read(move |connection, reading| reads::workflow_versions(connection, reading, &name))
            .await
    }

    async fn delete_workflow(&self, name: &str) -> Result<()> {
        self.writes.delete_workflow(name).await
    }

    async fn put_key(&self, key: &ApiKey) -> Result<()> {
        self.writes.put_key(key).await
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>> {
        let id = id.to_owned();
        self.read(move |connection, reading| {
            Ok(reads::keys(connection, reading, "WHERE id = ?1", params![id])?.pop())
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<ApiKey>> {
        self.read(|connection, reading| reads::keys(connection, reading, "", []))
            .await
    }

    async fn revoke_key(&self, id: &str, at: Millis) -> Result<()> {
        self.writes.revoke_key(id, at).await
    }

    async fn put_tick(&self, tick: &crate::Tick) -> Result<()> {
        self.writes.put_tick(tick).await
    }

    async fn ticks(&self, name: &str, limit: usize) -> Result<Vec<crate::Tick>> {
        let name = name.to_owned();
        self.read(move |connection, reading| reads::ticks(connection, reading, &name, limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::{APPLICATION_ID, MIGRATIONS};
    use super::*;

    /// A database written by the schema before provenance had its own table.
    fn third_schema(path: &Path) -> Connection {
        let connection = Connection::open(path).unwrap();
        for migration in &MIGRATIONS[..3] {
            connection.execute_batch(migration).unwrap();
        }
        connection
            .execute_batch(&format!(
                "PRAGMA user_version = 3; PRAGMA application_id = {APPLICATION_ID};
                 INSERT INTO runs (run_id, next_seq, workflow) VALUES ('old', 0, 'w');"
            ))
            .unwrap();
        connection
    }

    #[tokio::test]
    async fn upgrading_keeps_the_provenance_and_cache_keys_of_recorded_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton.db");
        let digest = |byte: u8| [byte; 32];
        let key = baton_core::run::cache_key(&Digest(digest(1)), &Digest(digest(2)));
        third_schema(&path)
            .execute(
                "INSERT INTO tasks (run, task, name, status, attempts, cacheable, attempt, spec,
                    inputs, output, artifacts, parents, digest, cache_key)
                 VALUES (1, 0, 'a', 'succeeded', 2, 1, 2, ?1, ?2, ?3, ?4, ?5, ?6, ?7),
                        (1, 1, 'b', 'running', 1, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
                params![
                    digest(1),
                    digest(2),
                    digest(3),
                    digest(4),
                    [digest(5), digest(6)].concat(),
                    digest(7),
                    key.0
                ],
            )
            .unwrap();

        let store = SqliteStore::open(&path).unwrap();
        let records = store.provenance("old").await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].task, "a");
        assert_eq!(records[0].attempt, 2);
        assert_eq!(records[0].parents, [Digest(digest(5)), Digest(digest(6))]);
        assert_eq!(records[0].digest, Digest(digest(7)));
        let tasks = store.tasks("old").await.unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].record.as_ref(), Some(&records[0]));
        assert_eq!(tasks[1].record, None);
        let hit = store
            .cached(&key)
            .await
            .unwrap()
            .expect("the old cache key");
        assert_eq!(
            (hit.run_id.as_str(), hit.record),
            ("old", records[0].clone())
        );
    }
}
