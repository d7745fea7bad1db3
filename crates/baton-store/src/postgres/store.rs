//! [`PostgresStore`]: the writer, the pool and the watcher of one
//! database, behind the store's traits.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use baton_core::Duration;
use baton_core::run::{Control, Digest, Event, Millis, Provenance, Sealed};
use tokio::sync::broadcast;

use super::connection::{Database, is_schema_name};
use super::reads::Reader;
use super::schema::migrate;
use super::watch::Watch;
use crate::owner::{Fence, Owner};
use crate::write::Writes;
use crate::{
    ApiKey, ArtifactRow, AttemptRow, Batch, CacheHit, Catalog, Change, CheckpointInfo, Error,
    FeedBatch, ReadModels, Result, RunFilter, RunLog, RunRecord, RunSummary, StoredWorkflow,
    TaskRow,
};

/// How a database is used.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections in the pool at most (the writer takes one while it
    /// commits; reads and the watcher share the rest).
    pub connections: usize,
    /// How long connecting may take.
    pub connect_timeout: StdDuration,
    /// How long a write waits out a database that cannot be reached (a
    /// restart, a failover) before its caller is told it failed.
    pub patience: StdDuration,
    /// How often the change feed looks for commits should a notification
    /// be lost.
    pub watch_interval: StdDuration,
    /// A schema to keep baton's tables in (created if missing) instead of
    /// the connection's own `search_path`: several stores share one
    /// database this way, each test its own.
    pub schema: Option<String>,
}

impl Default for PostgresOptions {
    fn default() -> PostgresOptions {
        PostgresOptions {
            connections: 16,
            connect_timeout: StdDuration::from_secs(5),
            patience: StdDuration::from_secs(60),
            watch_interval: StdDuration::from_secs(1),
            schema: None,
        }
    }
}

/// A baton database on a PostgreSQL server.
pub struct PostgresStore {
    database: Arc<Database>,
    options: PostgresOptions,
    writes: Writes,
    /// The change feed's watcher, started by the first subscriber.
    watch: Mutex<Option<Watch>>,
    /// The feed and control positions when the store connected.
    since: (u64, u64),
    /// Rung when any process offers or ends an attempt in the worker queue.
    work_bell: Arc<tokio::sync::Notify>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER@HOST:PORT/DB`),
    /// creating or upgrading baton's tables; refuses a schema newer than
    /// this build. Call it within a Tokio runtime: the writer is a task.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        PostgresStore::connect_with(url, PostgresOptions::default()).await
    }

    /// [`PostgresStore::connect`] with `options`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<PostgresStore> {
        if let Some(schema) = &options.schema
            && !is_schema_name(schema)
        {
            return Err(Error::Postgres {
                place: "(the store options)".to_owned(),
                message: format!(
                    "`{schema}` is no schema name baton uses: lowercase letters, digits and `_`, \
                     at most 48"
                ),
                source: None,
            });
        }
        let database = Arc::new(Database::new(
            url,
            options.schema.as_deref(),
            options.connections,
            options.connect_timeout,
        )?);
        migrate(&database, options.schema.as_deref()).await?;
        // The change feed, started by its first subscriber, publishes what
        // is committed from here on: a subscriber misses nothing written
        // after it subscribed, however late the watcher's first look.
        let since = Reader::of(&database).await?.positions().await?;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(super::writer::run(
            Arc::clone(&database),
            receiver,
            options.patience,
        ));
        Ok(PostgresStore {
            database,
            options,
            writes: Writes::new(sender),
            watch: Mutex::new(None),
            since,
            work_bell: Arc::default(),
        })
    }

    /// `HOST:PORT/DBNAME`, without credentials.
    pub fn place(&self) -> &str {
        &self.database.place
    }

    async fn reader(&self) -> Result<Reader<'_>> {
        Reader::of(&self.database).await
    }
}

impl Drop for PostgresStore {
    /// The writer commits what it was given, then stops.
    fn drop(&mut self) {
        self.writes.close();
    }
}

#[async_trait]
impl RunLog for PostgresStore {
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
        self.reader().await?.record(run).await
    }

    async fn write(&self, run: &str, first_seq: u64, fence: Fence, batch: Batch<'_>) -> Result<()> {
        self.writes.write(run, first_seq, fence, batch).await
    }

    async fn events_from(&self, run: &str, from: u64) -> Result<Vec<Event>> {
        self.reader().await?.events_from(run, from).await
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedBatch>> {
        self.reader().await?.feed(after, limit).await
    }

    async fn put_checkpoint(&self, run: &str, fence: Fence, sealed: &Sealed) -> Result<()> {
        self.writes.put_checkpoint(run, fence, sealed).await
    }

    async fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        self.reader().await?.checkpoints(run).await
    }

    async fn checkpoint(&self, run: &str, events: u64) -> Result<Sealed> {
        self.reader().await?.checkpoint(run, events).await
    }

    async fn request(&self, run: &str, control: &Control) -> Result<u64> {
        self.writes.request(run, control).await
    }

    async fn controls(&self, run: &str, from: u64) -> Result<Vec<Control>> {
        self.reader().await?.controls(run, from).await
    }

    async fn delete_run(&self, run: &str) -> Result<()> {
        self.writes.delete_run(run).await
    }

    fn changes(&self) -> broadcast::Receiver<Change> {
        let mut watch = self
            .watch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if watch.is_none() {
            // Outside a runtime there is no feed: subscribers hear that it
            // closed, and read the store when they must.
            if tokio::runtime::Handle::try_current().is_err() {
                return broadcast::channel(1).1;
            }
            *watch = Some(Watch::start(
                Arc::clone(&self.database),
                self.options.watch_interval,
                self.since,
                Arc::clone(&self.work_bell),
            ));
        }
        match watch.as_ref() {
            Some(watch) => watch.changes.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    fn work_queue(&self) -> Option<Arc<dyn crate::WorkQueue>> {
        // The change feed's listener hears the queue's notifications too.
        drop(self.changes());
        Some(Arc::new(super::queue::Queue {
            database: Arc::clone(&self.database),
            bell: Arc::clone(&self.work_bell),
            interval: self.options.watch_interval,
        }))
    }
}

#[async_trait]
impl ReadModels for PostgresStore {
    async fn summary(&self, run: &str) -> Result<RunSummary> {
        self.reader().await?.summary(run).await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        self.reader().await?.runs(filter).await
    }

    async fn tasks(&self, run: &str) -> Result<Vec<TaskRow>> {
        self.reader().await?.tasks(run).await
    }

    async fn task(&self, run: &str, task: u32) -> Result<Option<TaskRow>> {
        self.reader().await?.task(run, task).await
    }

    async fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>> {
        self.reader().await?.attempts(run).await
    }

    async fn outputs(&self, run: &str) -> Result<Vec<(u32, serde_json::Value)>> {
        self.reader().await?.outputs(run).await
    }

    async fn provenance(&self, run: &str) -> Result<Vec<Provenance>> {
        self.reader().await?.provenance(run).await
    }

    async fn cached(&self, key: &Digest) -> Result<Option<CacheHit>> {
        self.reader().await?.cached(key).await
    }

    async fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>> {
        self.reader().await?.artifacts(run).await
    }

    async fn artifact_digests(&self) -> Result<Vec<Digest>> {
        self.reader().await?.artifact_digests().await
    }
}

#[async_trait]
impl Catalog for PostgresStore {
    async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<()> {
        self.writes.put_workflow(workflow).await
    }

    async fn workflow(&self, name: &str, version: Option<u32>) -> Result<StoredWorkflow> {
        self.reader().await?.workflow(name, version).await
    }

    async fn workflows(&self) -> Result<Vec<StoredWorkflow>> {
        self.reader().await?.workflows().await
    }

    async fn workflow_versions(&self, name: &str) -> Result<Vec<StoredWorkflow>> {
        self.reader().await?.workflow_versions(name).await
    }

    async fn delete_workflow(&self, name: &str) -> Result<()> {
        self.writes.delete_workflow(name).await
    }

    async fn put_key(&self, key: &ApiKey) -> Result<()> {
        self.writes.put_key(key).await
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>> {
        Ok(self
            .reader()
            .await?
            .keys("WHERE id = $1", &[&id])
            .await?
            .pop())
    }

    async fn keys(&self) -> Result<Vec<ApiKey>> {
        self.reader().await?.keys("", &[]).await
    }

    async fn revoke_key(&self, id: &str, at: Millis) -> Result<()> {
        self.writes.revoke_key(id, at).await
    }

    async fn put_tick(&self, tick: &crate::Tick) -> Result<()> {
        self.writes.put_tick(tick).await
    }

    async fn ticks(&self, name: &str, limit: usize) -> Result<Vec<crate::Tick>> {
        self.reader().await?.ticks(name, limit).await
    }
}
