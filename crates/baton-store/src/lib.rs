//! Where runs live: the [`Store`] trait and its backends.
//!
//! A run's source of truth is its append-only event log; the engine appends
//! each batch of events before it acts on them (write-ahead), so a run can be
//! rebuilt by replaying its log into a
//! [`RunState`](baton_core::run::RunState). [`MemoryStore`] keeps logs in
//! memory for library use, tests and benchmarks; [`SqliteStore`] keeps them in
//! one SQLite file (WAL, one writer thread, group commit).
//!
//! ```
//! use baton_core::run::{Event, Millis};
//! use baton_store::{MemoryStore, Store};
//!
//! let store = MemoryStore::default();
//! store.append("run-1", 0, &[Event::RunStarted { at: Millis(0) }]).wait().unwrap();
//! assert_eq!(store.events("run-1").unwrap().len(), 1);
//! ```

mod catalog;
mod memory;
mod projection;
mod sqlite;

pub use catalog::{ApiKey, Scope, StoredWorkflow};
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use projection::Projection;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

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
    #[error("{}: {message}", path.display())]
    Database { path: PathBuf, message: String },
    /// Another process held the database's lock for longer than baton
    /// waits; nothing of the refused write was kept.
    #[error("{}: another process has held the database locked for over {seconds} s; nothing was written (try again once it lets go)", path.display())]
    Locked { path: PathBuf, seconds: u32 },
    #[error("{} is not a baton database", .0.display())]
    NotBaton(PathBuf),
    #[error("{} has schema version {found}, newer than this baton understands ({supported}); use a newer baton", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("run `{run}` has no checkpoint at event {events}")]
    NoCheckpoint { run: String, events: u64 },
    #[error("run `{0}` has not finished: only finished runs can be deleted")]
    Unfinished(String),
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
    /// A stored event that no longer reads back.
    #[error("event {seq} of run `{run}` is corrupt: {message}")]
    Corrupt {
        run: String,
        seq: u64,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The answer to an append: awaited by async callers (the engine's loop must
/// not block a runtime thread on a commit), or waited for with
/// [`Appended::wait`] by others.
pub struct Appended(AppendedState);

enum AppendedState {
    Done(Option<Result<()>>),
    Pending(tokio::sync::oneshot::Receiver<Result<()>>),
}

impl Appended {
    pub(crate) fn done(result: Result<()>) -> Appended {
        Appended(AppendedState::Done(Some(result)))
    }

    pub(crate) fn pending(receiver: tokio::sync::oneshot::Receiver<Result<()>>) -> Appended {
        Appended(AppendedState::Pending(receiver))
    }

    /// Blocks until the append is durable or refused; not for async code.
    pub fn wait(self) -> Result<()> {
        match self.0 {
            AppendedState::Done(result) => result.unwrap_or(Ok(())),
            AppendedState::Pending(receiver) => receiver
                .blocking_recv()
                .unwrap_or(Err(Error::WriterStopped)),
        }
    }
}

impl std::future::Future for Appended {
    type Output = Result<()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        match &mut self.0 {
            AppendedState::Done(result) => std::task::Poll::Ready(result.take().unwrap_or(Ok(()))),
            AppendedState::Pending(receiver) => std::pin::Pin::new(receiver)
                .poll(context)
                .map(|answer| answer.unwrap_or(Err(Error::WriterStopped))),
        }
    }
}

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
    /// Started through the API: a server that restarts resumes it.
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
    /// The page after this run, in listing order (cursor pagination).
    pub after: Option<String>,
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
    /// succeeded; only such rows are found by [`Store::cached`].
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

/// Persistence for runs. Every backend passes the same conformance suite
/// (`tests/it/conformance.rs`).
pub trait Store: Send + Sync {
    /// Records a new run before its first event; fails if the id is taken.
    fn create_run(&self, record: &RunRecord) -> Appended;

    /// A run's record.
    fn run(&self, run: &str) -> Result<RunRecord>;

    /// One run's row.
    fn summary(&self, run: &str) -> Result<RunSummary>;

    /// Runs that pass `filter`, most recently started first.
    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>>;

    /// Appends `batch` to `run`'s log, which must hold exactly `first_seq`
    /// events so far (optimistic concurrency: a second writer fails instead
    /// of interleaving), and updates the read models in the same
    /// transaction. The answer comes once all of it is durable.
    fn write(&self, run: &str, first_seq: u64, batch: Batch<'_>) -> Appended;

    /// Appends events alone (see [`Store::write`]).
    fn append(&self, run: &str, first_seq: u64, events: &[Event]) -> Appended {
        self.write(
            run,
            first_seq,
            Batch {
                events,
                ..Batch::default()
            },
        )
    }

    /// The log of `run` from event `from` on (the whole log from 0).
    fn events_from(&self, run: &str, from: u64) -> Result<Vec<Event>>;

    /// The whole log of `run`, in order.
    fn events(&self, run: &str) -> Result<Vec<Event>> {
        self.events_from(run, 0)
    }

    /// Up to `limit` appended batches of any run, in the order the store
    /// took them, from the one after position `after` (0: the first).
    fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedBatch>>;

    /// The `tasks` read model of `run`, in task order; a task no event has
    /// touched yet has no row.
    fn tasks(&self, run: &str) -> Result<Vec<TaskRow>>;

    /// Every ended attempt of `run`, by task and attempt.
    fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>>;

    /// Task outputs of `run`, by task index.
    fn outputs(&self, run: &str) -> Result<Vec<(u32, serde_json::Value)>>;

    /// The provenance records of `run`, in task order.
    fn provenance(&self, run: &str) -> Result<Vec<Provenance>>;

    /// The newest cacheable result stored under `key`, from any run.
    fn cached(&self, key: &Digest) -> Result<Option<CacheHit>>;

    /// The artifacts `run`'s attempts produced and consumed, by task,
    /// attempt, role and path.
    fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>>;

    /// Deletes a finished run: its record, events, read models,
    /// checkpoints. A run that has not finished is refused and kept.
    fn delete_run(&self, run: &str) -> Appended;

    /// Every artifact digest a recorded run refers to, each once: what
    /// retention must keep in the artifact store.
    fn artifact_digests(&self) -> Result<Vec<Digest>>;

    /// Stores a snapshot of `run`'s state; durable once answered.
    fn put_checkpoint(&self, run: &str, sealed: &Sealed) -> Appended;

    /// `run`'s checkpoints, newest first.
    fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>>;

    /// The checkpoint taken after `events` events, as stored: whoever opens
    /// it checks its digest.
    fn checkpoint(&self, run: &str, events: u64) -> Result<Sealed>;

    /// Leaves a request for whoever drives `run` (`baton cancel`, an
    /// approval's decision, a pause, from any process); durable once
    /// answered. Requests are numbered from 0 in the order they arrive.
    fn request(&self, run: &str, control: &Control) -> Appended;

    /// `run`'s control requests from number `from` on, in order.
    fn controls(&self, run: &str, from: u64) -> Result<Vec<Control>>;

    /// Registers a version of a workflow; refused if that version of the
    /// name is taken (versions never change).
    fn put_workflow(&self, workflow: &StoredWorkflow) -> Appended;

    /// Version `version` of workflow `name`, or its latest with `None`.
    fn workflow(&self, name: &str, version: Option<u32>) -> Result<StoredWorkflow>;

    /// The latest version of every registered workflow, by name.
    fn workflows(&self) -> Result<Vec<StoredWorkflow>>;

    /// Every version of workflow `name`, oldest first.
    fn workflow_versions(&self, name: &str) -> Result<Vec<StoredWorkflow>>;

    /// Deletes every version of workflow `name` (runs keep their copy).
    fn delete_workflow(&self, name: &str) -> Appended;

    /// Stores a new API key; its id must be new.
    fn put_key(&self, key: &ApiKey) -> Appended;

    /// Every API key, revoked ones too, by id.
    fn keys(&self) -> Result<Vec<ApiKey>>;

    /// Marks key `id` revoked at `at`; it no longer authenticates.
    fn revoke_key(&self, id: &str, at: Millis) -> Appended;

    /// Whether the store keeps the read models (tasks, provenance) the
    /// engine computes for it; a log-only store spares the engine the work.
    fn keeps_read_models(&self) -> bool {
        true
    }
}
