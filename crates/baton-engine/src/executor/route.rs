//! Which executor runs which attempt, and attempts that are several at
//! once (a swarm's copies, a foreach's items).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use baton_core::run::{Failure, FailureKind, Reduction, Vote, Work};
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::sync::oneshot;

use super::agent::Agents;
use super::child::ChildRuns;
use super::handler::InProcess;
use super::http::Http;
use super::job::{Attempt, Executor, Kill, Outcome};
use super::mcp::Mcp;
use super::process::Processes;
use super::remote::Remote;

/// Every executor a run has, each for the work it runs.
#[derive(Clone)]
pub(crate) struct Executors {
    pub(crate) processes: Processes,
    pub(crate) http: Http,
    pub(crate) in_process: InProcess,
    pub(crate) child_runs: ChildRuns,
    pub(crate) agents: Agents,
    pub(crate) mcp: Mcp,
    pub(crate) remote: Remote,
}

#[async_trait]
impl Executor for Executors {
    async fn execute(&self, attempt: Attempt, kill: Kill) -> Outcome {
        if self.is_remote(&attempt.resolved) {
            return self.remote.execute(attempt, kill).await;
        }
        match &attempt.resolved.work {
            Work::Shell(_) | Work::Command(_) => self.processes.execute(attempt, kill).await,
            Work::Http(_) => self.http.execute(attempt, kill).await,
            Work::Handler(_) => self.in_process.execute(attempt, kill).await,
            Work::Workflow(_) => self.child_runs.execute(attempt, kill).await,
            Work::Agent(_) => self.agents.execute(attempt, kill).await,
            Work::Mcp(_) => self.mcp.execute(attempt, kill).await,
            Work::Noop => Outcome::Succeeded(None),
            // The state machine makes approvals wait instead of dispatching
            // them; reaching here is a bug, reported rather than hidden.
            Work::Approval { .. } => Outcome::Failed(Failure::new(
                FailureKind::Error,
                "an approval waits for a decision; it has nothing to run",
            )),
        }
    }
}

/// Told of each copy that succeeds, with its index and output.
pub(crate) type CopyReporter = Box<dyn Fn(u32, &Option<Value>) + Send + Sync>;

/// The items (copies) of an attempt that earlier attempts finished, and
/// where each new success is reported as it happens, so it is recorded
/// before the attempt ends.
pub(crate) struct Finished {
    pub(crate) outputs: BTreeMap<u32, Option<Value>>,
    pub(crate) report: CopyReporter,
}

impl Executors {
    /// Whether a remote worker runs `resolved`: it names a capability no
    /// chat endpoint here serves.
    pub(crate) fn is_remote(&self, resolved: &baton_core::run::Resolved) -> bool {
        resolved.route.is_some() && !self.agents.serves(&resolved.work)
    }

    /// Runs the copies of a swarm or the items of a foreach side by side,
    /// at most `reduction.limit()` at once, and reduces their ends to one
    /// outcome; those `finished` holds count as they ended and do not run.
    /// With `first_success`, the first copy to succeed stops the others; a
    /// kill stops them all and the attempt reports cancelled.
    pub(crate) async fn run_copies(
        self: Arc<Self>,
        copies: Vec<Attempt>,
        mut kill: Kill,
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
                    let executors = Arc::clone(&self);
                    running.spawn(async move { (copy, executors.execute(attempt, stopped).await) });
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
}
