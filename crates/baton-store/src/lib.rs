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

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use std::path::PathBuf;
use std::sync::Arc;

use baton_core::run::{Event, Millis, RunStatus};
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
    #[error("{} is not a baton database", .0.display())]
    NotBaton(PathBuf),
    #[error("{} has schema version {found}, newer than this baton understands ({supported}); use a newer baton", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the store's writer has stopped")]
    WriterStopped,
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
}

/// A line of `baton runs`: the run's row, kept current with its events.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub workflow: String,
    pub status: RunStatus,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// Events recorded so far.
    pub events: u64,
}

/// What a batch of events changes in its run's row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Projection {
    pub(crate) started_at: Option<Millis>,
    pub(crate) finished: Option<(RunStatus, Millis)>,
}

impl Projection {
    pub(crate) fn of(events: &[Event]) -> Projection {
        let mut projection = Projection::default();
        for event in events {
            match *event {
                Event::RunStarted { at } => projection.started_at = Some(at),
                Event::RunFinished { at, status } => projection.finished = Some((status, at)),
                _ => {}
            }
        }
        projection
    }
}

/// Persistence for runs: their records and event logs.
pub trait Store: Send + Sync {
    /// Records a new run before its first event; fails if the id is taken.
    fn create_run(&self, record: &RunRecord) -> Appended;

    /// A run's record.
    fn run(&self, run: &str) -> Result<RunRecord>;

    /// The most recently started runs, newest first.
    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>>;

    /// Appends `events` to `run`'s log, which must hold exactly `first_seq`
    /// events so far (optimistic concurrency: a second writer fails instead
    /// of interleaving). All of `events` are stored, or none; the answer
    /// comes once they are durable.
    fn append(&self, run: &str, first_seq: u64, events: &[Event]) -> Appended;

    /// The whole log of `run`, in order.
    fn events(&self, run: &str) -> Result<Vec<Event>>;
}
