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
//! store.append("run-1", 0, &[Event::RunStarted { at: Millis(0) }]).unwrap();
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
    /// A stored event that no longer reads back.
    #[error("event {seq} of run `{run}` is corrupt: {message}")]
    Corrupt {
        run: String,
        seq: u64,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Persistence for run event logs.
pub trait Store: Send + Sync {
    /// Appends `events` to `run`'s log, which must hold exactly `first_seq`
    /// events so far (optimistic concurrency: a second writer fails instead
    /// of interleaving). All of `events` are stored, or none.
    fn append(&self, run: &str, first_seq: u64, events: &[Event]) -> Result<()>;

    /// The whole log of `run`, in order.
    fn events(&self, run: &str) -> Result<Vec<Event>>;
}
