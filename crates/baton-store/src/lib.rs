//! Where runs live: the [`Store`] traits and their backends.
//!
//! A run's source of truth is its append-only event log; the engine appends
//! each batch of events before it acts on them (write-ahead), so a run can be
//! rebuilt by replaying its log into a
//! [`RunState`](baton_core::run::RunState). [`MemoryStore`] keeps logs in
//! memory for library use, tests and benchmarks; [`SqliteStore`] keeps them in
//! one SQLite file (WAL, one writer thread, group commit, a small pool of
//! readers).
//!
//! The boundary is async and in three parts, so a backend can land in
//! parts and a networked database can implement it: [`RunLog`] (records,
//! ownership, events, checkpoints, control requests, the change feed),
//! [`ReadModels`] (what the engine derives from events: run rows, task
//! rows, attempts, outputs, provenance, artifacts) and [`Catalog`]
//! (registered workflows, API keys). [`Store`] is all three.
//!
//! A run has one owner at a time. An owner is a process ([`Owner`]) whose
//! lease it renews with [`RunLog::heartbeat`]; it creates or claims runs
//! and gets a [`Fence`] for each, which every write to the run carries. A
//! claim raises the run's fencing token, so a write from an owner that lost
//! the run (its lease expired and another took over) is refused with
//! [`Error::Fenced`] and changes nothing.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use baton_core::run::{Event, Millis};
//! use baton_store::{MemoryStore, Owner, RunLog, RunRecord};
//!
//! let store = MemoryStore::default();
//! let owner = Owner::this_process();
//! store.heartbeat(&owner, Millis(0), baton_core::Duration::from_secs(10)).await.unwrap();
//! let record = RunRecord::new("run-1", baton_core::Workflow::new("w"));
//! let fence = store.create_run(&record, &owner.id, Millis(0)).await.unwrap();
//! store.append("run-1", 0, fence, &[Event::RunStarted { at: Millis(0) }]).await.unwrap();
//! assert_eq!(store.events("run-1").await.unwrap().len(), 1);
//! # });
//! ```

mod catalog;
mod codec;
pub mod copy;
mod memory;
mod owner;
mod postgres;
mod projection;
mod queue;
mod sqlite;
mod write;

pub use catalog::{ApiKey, Scope, StoredWorkflow, Tick, TickOutcome};
pub use memory::MemoryStore;
pub use owner::{Fence, Owner, Ownership, Presence};
pub use postgres::{PostgresOptions, PostgresStore};
pub use queue::{Offer, Room, Taken, WorkQueue};
pub use sqlite::{SqliteOptions, SqliteStore};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use baton_core::run::{
    Artifact, Control, Digest, Event, Millis, Provenance, RunStatus, Sealed, TaskStatus,
};
use baton_core::spec::FailurePolicy;
use baton_core::{Duration, Workflow};
use serde::{Deserialize, Serialize};

/// What can go wrong with a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two writers appended to one run: the log is not where the caller
    /// thought it was.
    #[error("run `{run}` has {actual} events, but the append expected {expected}")]
    Conflict {
        run: String,
        expected: u64,
        actual: u64,
    },
    #[error("no run `{0}`")]
    UnknownRun(String),
    #[error("a run `{0}` already exists")]
    RunExists(String),
    /// Another live process drives the run.
    #[error("run `{run}` is {ownership}")]
    Owned {
        run: String,
        ownership: Box<Ownership>,
    },
    /// The caller no longer owns the run: another process claimed it since
    /// (its lease had expired). Nothing of the refused write was kept.
    #[error("run `{run}` was taken over by another process; this one no longer drives it")]
    Fenced { run: String },
    /// An owner that never announced itself with a heartbeat.
    #[error("no owner `{0}`: it must send a heartbeat before it claims runs")]
    UnknownOwner(String),
    #[error("{}: {message}", path.display())]
    Database { path: PathBuf, message: String },
    /// Another process held the database's lock for longer than baton
    /// waits; nothing of the refused write was kept.
    #[error("{}: another process has held the database locked for over {seconds} s; nothing was written (try again once it lets go)", path.display())]
    Locked { path: PathBuf, seconds: u32 },
    /// SQLite found the file's pages damaged.
    #[error("{} is damaged ({message}); `sqlite3 {} 'PRAGMA integrity_check'` lists what is wrong", path.display(), path.display())]
    Damaged { path: PathBuf, message: String },
    #[error("{} is not a baton database", .0.display())]
    NotBaton(PathBuf),
    #[error(
        "{place} has schema version {found}, newer than this baton understands ({supported}); use a newer baton"
    )]
    TooNew {
        /// The database: a file's path, or a server's address.
        place: String,
        found: i64,
        supported: i64,
    },
    #[error("run `{run}` has no checkpoint at event {events}")]
    NoCheckpoint { run: String, events: u64 },
    #[error("run `{0}` has not finished: only finished runs can be deleted")]
    Unfinished(String),
    /// A value the store could not encode to keep it.
    #[error("cannot encode what was to be stored")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    /// PostgreSQL refused or failed a request, or could not be reached.
    #[error("PostgreSQL at {place}: {message}")]
    Postgres {
        /// The server and database, without credentials.
        place: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("the store's writer has stopped")]
    WriterStopped,
    #[error("no workflow `{0}`")]
    UnknownWorkflow(String),
    #[error("workflow `{name}` has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    /// Two writers registered a version of one workflow at once.
    #[error("workflow `{name}` already has a version {version}")]
    VersionExists { name: String, version: u32 },
    #[error("no API key `{0}`")]
    UnknownKey(String),
    #[error("an API key `{0}` already exists")]
    KeyExists(String),
    /// Something stored that no longer reads back: a damaged or foreign
    /// record, named by its run and the event sequence number it is at.
    #[error("run `{run}` is corrupt at event {seq}: {message}")]
    Corrupt {
        run: String,
        seq: u64,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a run was started with: with its events, enough to rebuild its
/// state exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub workflow: Arc<Workflow>,
    pub inputs: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FailurePolicy>,
    /// Results taken from an earlier run instead of running (`baton rerun`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<Reuse>,
    /// Started through the API: a server takes it over when whoever drove
    /// it is gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub served: bool,
    /// The registered version of the workflow it was started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_version: Option<u32>,
    /// The task attempt that started it, for a sub-workflow's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentTask>,
    /// The workflows its `workflow: name@version` tasks (and theirs, in
    /// turn) name, found when it started: a resumed run and its children
    /// run what was pinned then, whatever the registry holds now.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subworkflows: BTreeMap<String, Arc<Workflow>>,
    /// Labels its tasks for remote workers require, chosen when it started.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl RunRecord {
    /// The record of a run of `workflow` with no inputs or overrides.
    pub fn new(run_id: impl Into<String>, workflow: Workflow) -> RunRecord {
        RunRecord {
            run_id: run_id.into(),
            workflow: Arc::new(workflow),
            inputs: serde_json::Map::new(),
            concurrency: None,
            timeout: None,
            on_failure: None,
            reuse: None,
            served: false,
            workflow_version: None,
            parent: None,
            subworkflows: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// The attempt of a parent run's task that a child run belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentTask {
    pub run_id: String,
    pub task: String,
    pub attempt: u32,
    /// How deep the child is nested: 1 under a run started on its own.
    pub depth: u32,
    /// For tasks spawned at run time, how many spawns deep they are (0 for
    /// a sub-workflow, which starts counting afresh).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spawn_depth: u32,
    /// For a `foreach` or `swarm` over a sub-workflow: which item
    /// (`item-N`) or copy (`copy-N`) of the attempt the child runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Tasks whose results a run takes from an earlier run of the same
/// workflow: kept with the run's record, so a resumed rerun still reuses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reuse {
    pub run_id: String,
    /// Task ids; each must have succeeded in that run.
    pub tasks: Vec<String>,
    /// Task ids asked to run again (`--from`): the cache may not answer
    /// for them either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fresh: Vec<String>,
}

/// A line of `baton runs`: the run's row, kept current with its events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub workflow: String,
    pub status: RunStatus,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// Events recorded so far.
    pub events: u64,
    /// Who drives it, while someone does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<Ownership>,
    /// For a run that has not finished: whether a live process drives it,
    /// as judged by [`RunSummary::judged`] (the store leaves it unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driven: Option<Driven>,
}

/// Whether an unfinished run is being driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driven {
    /// A live process holds it and renews its lease.
    Live,
    /// Nobody does: its process died (or stopped renewing); `baton
    /// resume`, or a server for a run it started, takes it over.
    Orphaned,
}

impl RunSummary {
    /// The summary with [`RunSummary::driven`] judged at `now`.
    pub fn judged(self, now: Millis) -> RunSummary {
        let driven = (!self.status.is_final()).then(|| {
            match self
                .driver
                .as_ref()
                .is_some_and(|driver| driver.is_live(now))
            {
                true => Driven::Live,
                false => Driven::Orphaned,
            }
        });
        RunSummary { driven, ..self }
    }
}

/// A place in the run listing, which goes newest first and, among runs
/// started in the same millisecond, by run id: the start and id of the
/// last run of a page. It names a place rather than a run, so a page
/// follows on even when that run has been deleted since, and any cursor of
/// the right shape is a valid one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCursor {
    /// When the run started (0 for one that has not).
    pub started_at: Millis,
    pub run_id: String,
}

impl RunCursor {
    /// The place just after `run`.
    pub fn after(run: &RunSummary) -> RunCursor {
        RunCursor {
            started_at: run.started_at.unwrap_or_default(),
            run_id: run.run_id.clone(),
        }
    }
}

impl std::fmt::Display for RunCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.started_at.0, self.run_id)
    }
}

/// A cursor that is not `STARTED_MS.RUN_ID`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a cursor is `STARTED_MS.RUN_ID`, the `next_cursor` of the page before")]
pub struct BadCursor;

impl std::str::FromStr for RunCursor {
    type Err = BadCursor;

    fn from_str(text: &str) -> std::result::Result<RunCursor, BadCursor> {
        let (started, run_id) = text.split_once('.').ok_or(BadCursor)?;
        let started_at = (1..=16)
            .contains(&started.len())
            .then(|| started.parse::<u64>().ok())
            .flatten()
            .filter(|_| started.bytes().all(|byte| byte.is_ascii_digit()))
            .ok_or(BadCursor)?;
        if baton_core::run::run_id_problem(run_id).is_some() {
            return Err(BadCursor);
        }
        Ok(RunCursor {
            started_at: Millis(started_at),
            run_id: run_id.to_owned(),
        })
    }
}

/// Which runs to list, newest first.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub workflow: Option<String>,
    /// Only runs that finished before this time (retention).
    pub finished_before: Option<Millis>,
    /// Only runs started at or after this time.
    pub started_after: Option<Millis>,
    /// Only runs started before this time.
    pub started_before: Option<Millis>,
    /// Only runs that have not finished and that no live owner drives at
    /// this time: those a process may take over.
    pub orphaned_at: Option<Millis>,
    /// Only runs that have not finished.
    pub unfinished: bool,
    /// The page after this place in the listing (cursor pagination).
    pub after: Option<RunCursor>,
    pub limit: usize,
}

impl Default for RunFilter {
    fn default() -> RunFilter {
        RunFilter {
            status: None,
            workflow: None,
            finished_before: None,
            started_after: None,
            started_before: None,
            orphaned_at: None,
            unfinished: false,
            after: None,
            limit: 20,
        }
    }
}

impl RunFilter {
    fn admits(&self, run: &RunSummary) -> bool {
        self.status.is_none_or(|status| status == run.status)
            && self
                .workflow
                .as_ref()
                .is_none_or(|workflow| *workflow == run.workflow)
            && self
                .finished_before
                .is_none_or(|before| run.finished_at.is_some_and(|at| at < before))
            && self
                .started_after
                .is_none_or(|after| run.started_at.is_some_and(|at| at >= after))
            && self
                .started_before
                .is_none_or(|before| run.started_at.is_some_and(|at| at < before))
            && (!self.unfinished || !run.status.is_final())
            && self.orphaned_at.is_none_or(|now| {
                !run.status.is_final()
                    && run
                        .driver
                        .as_ref()
                        .is_none_or(|driver| driver.expires_at <= now)
            })
    }
}

/// Where one task of a run stands: the `tasks` read model, written by the
/// engine from its state along with the events that moved the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    /// The task's index in the workflow.
    pub task: u32,
    pub id: String,
    pub status: TaskStatus,
    /// Attempts started; the last one is running while the task is.
    pub attempts: u32,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// Its provenance, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Provenance>,
    /// The key later runs find its result by, for a `cache:` task that
    /// succeeded; only such rows are found by [`ReadModels::cached`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<Digest>,
}

/// One ended attempt of a task: the `attempts` read model. The attempt in
/// flight is on its task's row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptRow {
    pub task: u32,
    pub attempt: u32,
    pub status: AttemptStatus,
    pub started_at: Millis,
    pub finished_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Succeeded,
    Failed,
    Cancelled,
    /// Its process died with baton; the task ran again.
    Lost,
}

impl AttemptStatus {
    pub fn name(self) -> &'static str {
        match self {
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Cancelled => "cancelled",
            AttemptStatus::Lost => "lost",
        }
    }
}

/// A file an attempt produced or consumed: the `artifacts` read model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRow {
    pub task: u32,
    pub attempt: u32,
    pub role: ArtifactRole,
    #[serde(flatten)]
    pub artifact: Artifact,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactRole {
    /// Declared in the task's `artifacts:` and stored by content.
    Produced,
    /// A need's artifact placed in the task's directory before it ran.
    Consumed,
}

impl ArtifactRole {
    pub fn name(self) -> &'static str {
        match self {
            ArtifactRole::Produced => "produced",
            ArtifactRole::Consumed => "consumed",
        }
    }
}

/// One write to a run: events, and the rows they change that the store
/// cannot derive from the events alone. All of it is stored, or none.
#[derive(Clone, Copy, Debug, Default)]
pub struct Batch<'a> {
    pub events: &'a [Event],
    /// The tasks the events moved, as they now stand.
    pub tasks: &'a [TaskRow],
    /// The attempts the events ended.
    pub attempts: &'a [AttemptRow],
    /// The artifacts the events stored or consumed.
    pub artifacts: &'a [ArtifactRow],
}

/// One appended batch of a run's events, at its place in the store's feed
/// of all runs (positions grow; deleted runs leave gaps).
#[derive(Clone, Debug, PartialEq)]
pub struct FeedBatch {
    pub position: u64,
    pub run_id: String,
    /// The run's sequence number of the first event.
    pub first_seq: u64,
    pub events: Vec<Event>,
}

/// A stored checkpoint, without its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CheckpointInfo {
    /// Events folded into the snapshot.
    pub events: u64,
    pub digest: Digest,
    pub size: u64,
}

/// A successful result found by its cache key.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheHit {
    pub run_id: String,
    pub record: Provenance,
    pub output: Option<serde_json::Value>,
    pub artifacts: Vec<Artifact>,
    /// When the result was made, for a cache's `ttl`.
    pub finished_at: Millis,
}

/// Something that changed in the store, from this process or another: what
/// the store's change feed ([`RunLog::changes`]) carries, so one watcher per
/// process wakes only the runs and streams it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A batch of events was appended to `run`, whose log now holds
    /// `events` events; `position` is the batch's place in the feed.
    Appended {
        position: u64,
        run: Arc<str>,
        events: u64,
    },
    /// A control request was left for `run`.
    Requested { run: Arc<str> },
}

impl Change {
    /// The run it concerns.
    pub fn run(&self) -> &str {
        match self {
            Change::Appended { run, .. } | Change::Requested { run } => run,
        }
    }
}

/// How many changes a subscriber of the change feed may fall behind before
/// it is told it lagged (and must look at everything it follows again).
pub const CHANGE_BACKLOG: usize = 4096;

/// A run's durable history and who may extend it: records, ownership,
/// events, checkpoints, control requests and the change feed.
#[async_trait]
pub trait RunLog: Send + Sync {
    /// Announces `owner`, or renews its lease: until `now + ttl` the runs it
    /// claimed are its own. An owner whose lease runs out loses its runs to
    /// the first process that claims them.
    async fn heartbeat(&self, owner: &Owner, now: Millis, ttl: Duration) -> Result<()>;

    /// Records a new run before its first event, owned by `owner` (which
    /// must have sent a heartbeat); fails if the id is taken.
    async fn create_run(&self, record: &RunRecord, owner: &str, now: Millis) -> Result<Fence>;

    /// Takes `run` over for `owner`: granted when nobody drives it, its
    /// owner's lease expired by `now`, `owner` already holds it, or `steal`
    /// names its current fence (a caller that proved the owner dead). Every
    /// claim raises the fencing token. Refused with [`Error::Owned`] naming
    /// the live owner otherwise.
    async fn claim(
        &self,
        run: &str,
        owner: &str,
        now: Millis,
        steal: Option<Fence>,
    ) -> Result<Fence>;

    /// Gives `run` up: nobody drives it until the next claim. A fence that
    /// is no longer the run's changes nothing.
    async fn release(&self, run: &str, fence: Fence) -> Result<()>;

    /// A run's record.
    async fn run(&self, run: &str) -> Result<RunRecord>;

    /// Appends `batch` to `run`'s log, which must hold exactly `first_seq`
    /// events so far (optimistic concurrency: a second writer fails instead
    /// of interleaving), as its owner of `fence`, and updates the read
    /// models in the same transaction. The answer comes once all of it is
    /// durable.
    async fn write(&self, run: &str, first_seq: u64, fence: Fence, batch: Batch<'_>) -> Result<()>;

    /// Appends events alone (see [`RunLog::write`]).
    async fn append(
        &self,
        run: &str,
        first_seq: u64,
        fence: Fence,
        events: &[Event],
    ) -> Result<()> {
        let batch = Batch {
            events,
            ..Batch::default()
        };
        self.write(run, first_seq, fence, batch).await
    }

    /// The log of `run` from event `from` on (the whole log from 0). A log
    /// whose stored batches do not add up to its recorded count is
    /// [`Error::Corrupt`], never a shorter history.
    async fn events_from(&self, run: &str, from: u64) -> Result<Vec<Event>>;

    /// The whole log of `run`, in order.
    async fn events(&self, run: &str) -> Result<Vec<Event>> {
        self.events_from(run, 0).await
    }

    /// Up to `limit` appended batches of any run, in the order the store
    /// took them, from the one after position `after` (0: the first).
    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedBatch>>;

    /// Stores a snapshot of `run`'s state, as its owner of `fence`; durable
    /// once answered.
    async fn put_checkpoint(&self, run: &str, fence: Fence, sealed: &Sealed) -> Result<()>;

    /// `run`'s checkpoints, newest first.
    async fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>>;

    /// The checkpoint taken after `events` events, as stored: whoever opens
    /// it checks its digest.
    async fn checkpoint(&self, run: &str, events: u64) -> Result<Sealed>;

    /// Leaves a request for whoever drives `run` (`baton cancel`, an
    /// approval's decision, a pause, from any process); durable once
    /// answered. Requests are numbered from 0 in the order they arrive; the
    /// answer is this one's number.
    async fn request(&self, run: &str, control: &Control) -> Result<u64>;

    /// `run`'s control requests from number `from` on, in order.
    async fn controls(&self, run: &str, from: u64) -> Result<Vec<Control>>;

    /// Deletes a finished run: its record, events, read models,
    /// checkpoints. A run that has not finished is refused and kept.
    async fn delete_run(&self, run: &str) -> Result<()>;

    /// What the backend itself finds damaged in what it keeps (SQLite's
    /// `PRAGMA integrity_check`), none when it is sound.
    async fn integrity(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Every change to any run from now on, from this process or another:
    /// appended events and control requests. One subscription per consumer
    /// that fans out (a receiver that lags is told so, and must look again
    /// at everything it follows).
    fn changes(&self) -> tokio::sync::broadcast::Receiver<Change>;

    /// Whether the store keeps the read models (tasks, provenance) the
    /// engine computes for it; a log-only store spares the engine the work.
    fn keeps_read_models(&self) -> bool {
        true
    }

    /// The worker queue this store shares between the processes that use
    /// it at once, if it is such a store.
    fn work_queue(&self) -> Option<Arc<dyn WorkQueue>> {
        None
    }
}

/// What the engine derives from events and a store keeps beside them.
#[async_trait]
pub trait ReadModels: Send + Sync {
    /// One run's row.
    async fn summary(&self, run: &str) -> Result<RunSummary>;

    /// Runs that pass `filter`, most recently started first.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>>;

    /// The `tasks` read model of `run`, in task order; a task no event has
    /// touched yet has no row.
    async fn tasks(&self, run: &str) -> Result<Vec<TaskRow>>;

    /// One task's row, if an event has touched it.
    async fn task(&self, run: &str, task: u32) -> Result<Option<TaskRow>>;

    /// Every ended attempt of `run`, by task and attempt.
    async fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>>;

    /// Task outputs of `run`, by task index.
    async fn outputs(&self, run: &str) -> Result<Vec<(u32, serde_json::Value)>>;

    /// The provenance records of `run`, in task order.
    async fn provenance(&self, run: &str) -> Result<Vec<Provenance>>;

    /// The newest cacheable result stored under `key`, from any run.
    async fn cached(&self, key: &Digest) -> Result<Option<CacheHit>>;

    /// The artifacts `run`'s attempts produced and consumed, by task,
    /// attempt, role and path.
    async fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>>;

    /// Every artifact digest a recorded run refers to, each once: what
    /// retention must keep in the artifact store.
    async fn artifact_digests(&self) -> Result<Vec<Digest>>;
}

/// What a store keeps besides runs: the workflow registry and API keys.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Registers a version of a workflow; refused if that version of the
    /// name is taken (versions never change).
    async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<()>;

    /// Version `version` of workflow `name`, or its latest with `None`.
    async fn workflow(&self, name: &str, version: Option<u32>) -> Result<StoredWorkflow>;

    /// The latest version of every registered workflow, by name.
    async fn workflows(&self) -> Result<Vec<StoredWorkflow>>;

    /// Every version of workflow `name`, oldest first.
    async fn workflow_versions(&self, name: &str) -> Result<Vec<StoredWorkflow>>;

    /// Deletes every version of workflow `name` (runs keep their copy).
    async fn delete_workflow(&self, name: &str) -> Result<()>;

    /// Stores a new API key; its id must be new.
    async fn put_key(&self, key: &ApiKey) -> Result<()>;

    /// The key with id `id`, revoked or not.
    async fn key(&self, id: &str) -> Result<Option<ApiKey>>;

    /// Every API key, revoked ones too, by id.
    async fn keys(&self) -> Result<Vec<ApiKey>>;

    /// Marks key `id` revoked at `at`; it no longer authenticates.
    async fn revoke_key(&self, id: &str, at: Millis) -> Result<()>;

    /// Records what a tick of a workflow's schedule became, replacing what
    /// was recorded for that tick before (a queued tick that started).
    async fn put_tick(&self, tick: &Tick) -> Result<()>;

    /// The newest `limit` ticks of workflow `name`'s schedule, newest first.
    async fn ticks(&self, name: &str, limit: usize) -> Result<Vec<Tick>>;
}

/// A whole store: run logs, their read models and the catalog.
pub trait Store: RunLog + ReadModels + Catalog {}

impl<T: RunLog + ReadModels + Catalog> Store for T {}
