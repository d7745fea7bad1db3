//! Runners do one attempt of one task and report an [`Outcome`]: a process
//! (`run`, `command`), an HTTP call, an in-process handler. Each honours its
//! timeout and a kill signal from the run loop.

mod handler;
mod http;
mod process;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use baton_core::Duration;
use baton_core::run::{Failure, FailureKind, Reduction, Resolved, Vote, Work};
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::sync::oneshot;

pub(crate) use handler::Handlers;
pub use handler::{Handler, HandlerError, HandlerResult, TaskContext};

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Succeeded(Option<Value>),
    Failed(Failure),
    /// Stopped by the run loop (cancellation, fail-fast).
    Cancelled,
}

/// Everything a runner needs for one attempt.
#[derive(Clone)]
pub(crate) struct Attempt {
    pub(crate) resolved: Resolved,
    pub(crate) context: TaskContext,
    /// Where logs and `$BATON_OUTPUT` go.
    pub(crate) dir: PathBuf,
    /// The working directory relative paths start from.
    pub(crate) workdir: PathBuf,
    pub(crate) timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub(crate) grace: Duration,
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

/// One copy of a swarm or item of a foreach: a runner's attempt, or, for a
/// sub-workflow task, a child run.
pub(crate) enum CopyJob {
    Run(Box<Attempt>),
    Child(Box<crate::subworkflow::Child>),
}

/// Told of each copy that succeeds, with its index and output.
pub(crate) type CopyReporter = Box<dyn Fn(u32, &Option<Value>) + Send + Sync>;

/// The items (copies) of an attempt that earlier attempts finished, and
/// where each new success is reported as it happens, so it is recorded
/// before the attempt ends.
pub(crate) struct Finished {
    pub(crate) outputs: std::collections::BTreeMap<u32, Option<Value>>,
    pub(crate) report: CopyReporter,
}

/// Shared by every attempt of an engine.
pub(crate) struct Runners {
    pub(crate) handlers: Arc<RwLock<Handlers>>,
    pub(crate) http: reqwest::Client,
}

impl Runners {
    /// Runs the copies of a swarm or the items of a foreach side by side,
    /// at most `reduction.limit()` at once, and reduces their ends to one
    /// outcome; those `finished` holds count as they ended and do not run.
    /// With `first_success`, the first copy to succeed stops the others; a
    /// kill stops them all and the attempt reports cancelled.
    pub(crate) async fn run_copies(
        self: Arc<Self>,
        copies: Vec<CopyJob>,
        mut kill: oneshot::Receiver<()>,
        reduction: Reduction,
        finished: Finished,
    ) -> Outcome {
        let first_success = reduction.first_success();
        let limit = reduction.limit().unwrap_or(usize::MAX).max(1);
        let mut votes: Vec<(usize, Vote)> = finished
            .outputs
            .iter()
            .map(|(&copy, output)| (copy as usize, Vote::Output(output.clone())))
            .collect();
        let pending = copies.len().saturating_sub(finished.outputs.len());
        let mut waiting = copies
            .into_iter()
            .enumerate()
            .filter(|(copy, _)| !finished.outputs.contains_key(&(*copy as u32)));
        // Once stopping, nothing more starts.
        let mut stopping = first_success && !votes.is_empty();
        let first_wave = if stopping { 0 } else { limit.min(pending) };
        let mut running = tokio::task::JoinSet::new();
        let mut stops: FxHashMap<usize, oneshot::Sender<()>> = FxHashMap::default();
        let mut start =
            |running: &mut tokio::task::JoinSet<(usize, Outcome)>,
             stops: &mut FxHashMap<usize, oneshot::Sender<()>>| {
                if let Some((copy, attempt)) = waiting.next() {
                    let (stop, stopped) = oneshot::channel();
                    stops.insert(copy, stop);
                    let runners = Arc::clone(&self);
                    running.spawn(async move {
                        let outcome = match attempt {
                            CopyJob::Run(attempt) => runners.run(*attempt, stopped).await,
                            CopyJob::Child(child) => child.run(stopped).await,
                        };
                        (copy, outcome)
                    });
                }
            };
        for _ in 0..first_wave {
            start(&mut running, &mut stops);
        }
        let stop_all = |stops: &mut FxHashMap<usize, oneshot::Sender<()>>| {
            for (_, stop) in stops.drain() {
                let _ = stop.send(());
            }
        };
        let mut killed = false;
        loop {
            tokio::select! {
                joined = running.join_next() => match joined {
                    Some(Ok((copy, outcome))) => {
                        stops.remove(&copy);
                        if let Outcome::Succeeded(output) = &outcome {
                            (finished.report)(copy as u32, output);
                        }
                        if first_success && matches!(outcome, Outcome::Succeeded(_)) {
                            stopping = true;
                            stop_all(&mut stops);
                        }
                        votes.push((copy, match outcome {
                            Outcome::Succeeded(output) => Vote::Output(output),
                            Outcome::Failed(failure) => Vote::Failed(failure),
                            Outcome::Cancelled => Vote::Stopped,
                        }));
                        if !stopping {
                            start(&mut running, &mut stops);
                        }
                    }
                    Some(Err(error)) => votes.push((
                        usize::MAX,
                        Vote::Failed(Failure::new(FailureKind::Error, error.to_string())),
                    )),
                    None => break,
                },
                Ok(()) = &mut kill, if !killed => {
                    killed = true;
                    stopping = true;
                    stop_all(&mut stops);
                }
            }
        }
        if killed {
            return Outcome::Cancelled;
        }
        match reduction.reduce(&votes) {
            Ok(output) => Outcome::Succeeded(output),
            Err(failure) => Outcome::Failed(failure),
        }
    }

    pub(crate) async fn run(&self, attempt: Attempt, kill: oneshot::Receiver<()>) -> Outcome {
        match &attempt.resolved.work {
            Work::Shell(_) | Work::Command(_) => process::run(&attempt, kill).await,
            Work::Http(call) => bounded(http::call(&self.http, call), attempt.timeout, kill).await,
            Work::Handler(name) => match self.handler(name) {
                Some(handler) => {
                    bounded(handler.call(attempt.context.clone()), attempt.timeout, kill).await
                }
                None => Outcome::Failed(Failure::new(
                    FailureKind::Error,
                    format!("no handler named `{name}` is registered"),
                )),
            },
            Work::Noop => Outcome::Succeeded(None),
            // The state machine makes approvals wait instead of dispatching
            // them; reaching here is a bug, reported rather than hidden.
            Work::Approval { .. } => Outcome::Failed(Failure::new(
                FailureKind::Error,
                "an approval waits for a decision; it has nothing to run",
            )),
            // A sub-workflow's attempt (or copy) is a child run the shell
            // starts (`Plan::Child`, `CopyJob::Child`), never a runner's.
            Work::Workflow(_) => Outcome::Failed(Failure::new(
                FailureKind::Error,
                "a `workflow` task runs one child run per attempt",
            )),
        }
    }

    fn handler(&self, name: &str) -> Option<Handler> {
        self.handlers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }
}

/// Runs `work` until it ends, its timeout passes or the loop kills it;
/// dropping the future is how an in-process attempt stops.
async fn bounded(
    work: impl Future<Output = Outcome>,
    timeout: Option<Duration>,
    kill: oneshot::Receiver<()>,
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

fn timed_out(timeout: Option<Duration>) -> Failure {
    let after = timeout.unwrap_or(Duration::ZERO);
    Failure::new(FailureKind::Timeout, format!("timed out after {after}"))
}
