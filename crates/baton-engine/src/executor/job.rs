//! The seam between the run loop and whatever runs an attempt: an
//! [`Executor`] takes one resolved [`Attempt`] and a kill switch, and
//! answers with its [`Outcome`]. The loop never knows where the attempt
//! ran: a process here, an HTTP call, a function in this program, a child
//! run (and, later, a remote worker) all sit behind it.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use baton_core::Duration;
use baton_core::run::{Failure, FailureKind, Resolved};
use baton_store::ParentTask;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::pin::Pinned;

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Succeeded(Option<Value>),
    Failed(Failure),
    /// Stopped by the run loop (cancellation, fail-fast).
    Cancelled,
}

/// Told once to stop the attempt; dropping the sender stops nothing.
pub(crate) type Kill = oneshot::Receiver<()>;

/// Runs attempts.
#[async_trait]
pub(crate) trait Executor: Send + Sync {
    /// Runs `attempt` to its end, honouring its timeout and `kill`.
    async fn execute(&self, attempt: Attempt, kill: Kill) -> Outcome;
}

/// Everything an executor needs for one attempt.
#[derive(Clone)]
pub(crate) struct Attempt {
    pub(crate) resolved: Resolved,
    pub(crate) context: TaskContext,
    /// Where logs and `$BATON_OUTPUT` go: the prefix of their file names
    /// (see [`crate::logs::attempt_file`]).
    pub(crate) prefix: PathBuf,
    /// The working directory relative paths start from.
    pub(crate) workdir: PathBuf,
    pub(crate) timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub(crate) grace: Duration,
    /// For an attempt that starts a child run: where the child belongs.
    pub(crate) lineage: Option<Arc<Lineage>>,
    /// A file a process reads as its stdin (a worker's agent command reads
    /// its task there); none reads nothing.
    pub(crate) stdin: Option<PathBuf>,
    /// For an attempt a remote worker runs: the files carried to it and
    /// back, as the attempt's file work hands them over.
    pub(crate) carried: Option<Arc<Carried>>,
}

/// The files of an attempt that runs on a remote worker: those its needs
/// produced (the worker places them), its `artifacts:` patterns (the
/// worker collects and uploads them), and what came back.
#[derive(Debug, Default)]
pub(crate) struct Carried {
    pub(crate) needs: Vec<baton_core::run::Artifact>,
    pub(crate) declared: Vec<String>,
    pub(crate) produced: std::sync::Mutex<Vec<baton_core::run::Artifact>>,
    /// The name of the worker that ran it, once it reported.
    pub(crate) worker: std::sync::Mutex<Option<String>>,
}

impl Attempt {
    /// Where the attempt's process starts and its artifacts are found.
    pub(crate) fn working_dir(&self) -> PathBuf {
        match &self.resolved.cwd {
            Some(cwd) => self.workdir.join(cwd),
            None => self.workdir.clone(),
        }
    }
}

/// Where a child run of an attempt belongs: the attempt, the workflows its
/// run pinned, and the attempts of the task a crash cut off (whose children
/// are continued rather than started again).
#[derive(Clone, Debug)]
pub(crate) struct Lineage {
    pub(crate) parent: ParentTask,
    pub(crate) pinned: Arc<Pinned>,
    pub(crate) lost: Vec<u32>,
    /// The run's labels for remote workers, which its children keep.
    pub(crate) labels: std::collections::BTreeMap<String, String>,
}

/// What a handler (and every attempt) gets to work with.
#[derive(Clone, Debug)]
pub struct TaskContext {
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    /// `run:task:attempt`, stable across a replay, for de-duplicating side effects.
    pub idempotency_key: String,
    /// The run's inputs.
    pub inputs: Value,
    /// Outputs of the tasks this one needs, by task id.
    pub needs: serde_json::Map<String, Value>,
    /// The task's `env`, rendered.
    pub env: Vec<(String, String)>,
}

impl TaskContext {
    /// The W3C `traceparent` naming this attempt's span, which the task's
    /// own spans (and the services it calls) can hang under.
    pub fn traceparent(&self) -> String {
        use baton_core::run::trace_context::{attempt_span_id, trace_id, traceparent};
        traceparent(
            trace_id(&self.run_id),
            attempt_span_id(&self.run_id, &self.task_id, self.attempt),
        )
    }
}

/// The failure of an attempt that ran out of time.
pub(crate) fn timed_out(timeout: Option<Duration>) -> Failure {
    let after = timeout.unwrap_or(Duration::ZERO);
    Failure::new(FailureKind::Timeout, format!("timed out after {after}"))
}

/// An output over the configured cap: the attempt fails rather than the
/// process holding whatever a task produced.
pub(crate) fn too_large(what: &str, max_output: u64) -> Failure {
    Failure::new(
        FailureKind::Error,
        format!(
            "{what} is larger than max_output ({max_output} bytes): write large data to a file \
             (an artifact) and hand back its path, or raise [engine] max_output in baton.toml"
        ),
    )
}

/// Runs `work` until it ends, its timeout passes or the loop kills it;
/// dropping the future is how an in-process attempt stops.
pub(crate) async fn bounded(
    work: impl std::future::Future<Output = Outcome>,
    timeout: Option<Duration>,
    kill: Kill,
) -> Outcome {
    let limit = async {
        match timeout {
            Some(after) => tokio::time::sleep(after.as_std()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        outcome = work => outcome,
        () = limit => Outcome::Failed(timed_out(timeout)),
        Ok(()) = kill => Outcome::Cancelled,
    }
}
