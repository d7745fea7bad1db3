//! What can stop a run from starting or finishing.

use baton_core::Problem;
use baton_core::run::{ControlError, Inadmissible};

/// What can stop a run from starting or finishing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The workflow, its inputs, or what it asks of this engine is wrong;
    /// nothing ran.
    #[error("the workflow cannot run: {}", summary(.0))]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] baton_store::Error),
    #[error("the run's task stopped: {0}")]
    Aborted(String),
    /// The engine drains: it starts no run.
    #[error(
        "this server is shutting down and starts no new run; another server, or this one once it is back, will"
    )]
    Draining,
    /// The engine drained while driving the run: it stopped at a clean
    /// point and let the run go, for another process to go on with.
    #[error(
        "run `{0}` was handed back: this server is shutting down, and the run goes on where another server (or this one, restarted) picks it up"
    )]
    HandedBack(String),
    /// `baton rerun` asked to reuse a result its run does not have.
    #[error("task `{task}` did not succeed in run `{run}`: it has no result to reuse")]
    NotReusable { run: String, task: String },
    #[error("run `{run}` has no task `{task}`")]
    UnknownTask { run: String, task: String },
    /// A run's files (logs) could not be read or removed.
    #[error("{}: {source}", path.display())]
    Files {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The artifact store could not be swept.
    #[error(transparent)]
    Artifacts(#[from] crate::artifacts::ArtifactError),
    /// Work handed to the blocking pool died before answering.
    #[error("background work of the engine stopped: {0}")]
    Background(#[from] tokio::task::JoinError),
    /// A control request that does not apply to the run as it stands.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A recorded event that cannot follow the events before it: the log
    /// is damaged, or not this run's.
    #[error("run `{run}` is corrupt at event {seq}: {why}")]
    Corrupt {
        run: String,
        seq: u64,
        #[source]
        why: Inadmissible,
    },
}

fn summary(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{}: {}", problem.path, problem.message))
        .collect::<Vec<_>>()
        .join("; ")
}
