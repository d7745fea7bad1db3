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

use baton_core::run::Event;

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

/// Persistence for run event logs.
pub trait Store: Send + Sync {
    /// Appends `events` to `run`'s log, which must hold exactly `first_seq`
    /// events so far (optimistic concurrency: a second writer fails instead
    /// of interleaving). All of `events` are stored, or none; the answer
    /// comes once they are durable.
    fn append(&self, run: &str, first_seq: u64, events: &[Event]) -> Appended;

    /// The whole log of `run`, in order.
    fn events(&self, run: &str) -> Result<Vec<Event>>;
}
