//! Sub-workflows: an attempt of a `workflow:` task is a child run of its
//! own (own id, events, trace and provenance), recorded with the parent
//! task's attempt it belongs to. The child's end is the attempt's end, so
//! the parent task's retry, timeout and failure policy apply to it as to
//! any task.
//!
//! Durability: a child's id is `PARENT.TASK.ATTEMPT`. When a crash cuts a
//! parent off, its next attempt continues the child the lost attempt
//! started (resumed from the store, finished tasks kept) instead of
//! starting the child's work again.

use std::sync::Arc;

use async_trait::async_trait;
use baton_core::Duration;
use baton_core::run::{ChildWorkflow, Failure, FailureKind, TaskStatus, Work};
use baton_store::ParentTask;
use serde_json::{Map, Value};

use super::job::{Attempt, Executor, Kill, Outcome};
use crate::children::Children;
use crate::config::RunOptions;
use crate::error::Error;
use crate::handle::RunHandle;
use crate::pin::MAX_DEPTH;
use crate::report::RunReport;

/// Runs `workflow:` attempts: each is a child run started (or, after a
/// crash, continued) through [`Children`].
#[derive(Clone)]
pub(crate) struct ChildRuns {
    pub(crate) children: Arc<dyn Children>,
}

#[async_trait]
impl Executor for ChildRuns {
    /// Runs (or continues) the child to its end, stopping it if the
    /// parent's attempt is killed or times out.
    async fn execute(&self, attempt: Attempt, kill: Kill) -> Outcome {
        let handle = match self.start(&attempt).await {
            Ok(handle) => handle,
            Err(failure) => return Outcome::Failed(failure),
        };
        let run_id = handle.run_id().to_owned();
        match supervise(handle, attempt.timeout, kill).await {
            Ok(report) => ended(&run_id, report),
            Err(stopped) => stopped,
        }
    }
}

impl ChildRuns {
    /// Continues the child of an earlier attempt that a crash interrupted,
    /// or starts this attempt's.
    async fn start(&self, attempt: &Attempt) -> Result<RunHandle, Failure> {
        let template = |message: String| Failure::new(FailureKind::Template, message);
        let (Work::Workflow(run), Some(lineage)) = (&attempt.resolved.work, &attempt.lineage)
        else {
            return Err(template(
                "only a `workflow` task's attempt is a child run".to_owned(),
            ));
        };
        let parent = &lineage.parent;
        if let Some(handle) = carried(self.children.as_ref(), parent, &lineage.lost).await? {
            return Ok(handle);
        }
        if parent.depth > MAX_DEPTH {
            return Err(template(format!(
                "sub-workflows nest more than {MAX_DEPTH} deep"
            )));
        }
        let workflow = match &run.workflow {
            ChildWorkflow::Inline(workflow) => Arc::clone(workflow),
            ChildWorkflow::Reference(reference) => match lineage.pinned.get(reference) {
                Some(workflow) => Arc::clone(workflow),
                None => {
                    return Err(template(format!(
                        "`{reference}` was not found when the run started"
                    )));
                }
            },
        };
        let options = RunOptions {
            inputs: run.inputs.clone().into_iter().collect(),
            run_id: Some(child_id(parent, parent.attempt)),
            parent: Some(parent.clone()),
            subworkflows: (*lineage.pinned).clone(),
            labels: lineage.labels.clone(),
            ..RunOptions::default()
        };
        self.children
            .start(Arc::unwrap_or_clone(workflow), options)
            .await
            .map_err(|why| template(why.to_string()))
    }
}

/// `PARENT.TASK.ATTEMPT` (`.item-N` or `.copy-N` for one of a foreach's
/// or swarm's children): the child run of one attempt.
pub(crate) fn child_id(parent: &ParentTask, attempt: u32) -> String {
    match &parent.copy {
        Some(copy) => format!("{}.{}.{attempt}.{copy}", parent.run_id, parent.task),
        None => format!("{}.{}.{attempt}", parent.run_id, parent.task),
    }
}

/// The child run of an earlier attempt of the task that a crash cut off:
/// one that never finished, or finished while the attempt was lost. It is
/// resumed (a finished one just reports) instead of its work done again.
pub(crate) async fn carried(
    children: &dyn Children,
    parent: &ParentTask,
    lost: &[u32],
) -> Result<Option<RunHandle>, Failure> {
    let error = |message: String| Failure::new(FailureKind::Error, message);
    for earlier in (1..parent.attempt).rev() {
        let id = child_id(parent, earlier);
        match children.store().summary(&id).await {
            Ok(summary) if !summary.status.is_final() || lost.contains(&earlier) => {
                return children
                    .resume(&id)
                    .await
                    .map(Some)
                    .map_err(|why| error(format!("cannot continue child run {id}: {why}")));
            }
            Ok(_) => return Ok(None),
            Err(baton_store::Error::UnknownRun(_)) => {}
            Err(why) => return Err(error(format!("cannot read child run {id}: {why}"))),
        }
    }
    Ok(None)
}

/// Waits for a child run's end, cancelling it (and waiting for that) if
/// the attempt is killed or its timeout passes; then the attempt's end is
/// the error.
pub(crate) async fn supervise(
    handle: RunHandle,
    timeout: Option<Duration>,
    kill: Kill,
) -> Result<Result<RunReport, Error>, Outcome> {
    let canceller = handle.canceller();
    let mut finish = std::pin::pin!(handle.finish());
    let limit = async {
        match timeout {
            Some(after) => tokio::time::sleep(after.as_std()).await,
            None => std::future::pending().await,
        }
    };
    let stopped = tokio::select! {
        report = &mut finish => return Ok(report),
        () = limit => Outcome::Failed(Failure::new(
            FailureKind::Timeout,
            format!("timed out after {}", timeout.unwrap_or(Duration::ZERO)),
        )),
        Ok(()) = kill => Outcome::Cancelled,
    };
    canceller.cancel();
    let _ = finish.await;
    Err(stopped)
}

/// The attempt's end, from the child's: its outputs by task when it
/// succeeded, why it did not otherwise.
pub(crate) fn ended(run_id: &str, report: Result<RunReport, Error>) -> Outcome {
    let report = match report {
        Ok(report) => report,
        Err(why) => {
            return Outcome::Failed(Failure::new(
                FailureKind::Error,
                format!("child run {run_id} stopped: {why}"),
            ));
        }
    };
    if report.succeeded() {
        let tasks: Map<String, Value> = report
            .tasks
            .into_iter()
            .filter_map(|task| Some((task.id, task.output?)))
            .collect();
        return Outcome::Succeeded(Some(serde_json::json!({
            "run": run_id,
            "tasks": tasks,
        })));
    }
    // The reason names the task that failed; its note says why, so a
    // failure deep in nested runs reaches the top with its root cause.
    let cause = report
        .tasks
        .iter()
        .find(|task| matches!(task.status, TaskStatus::Failed | TaskStatus::TimedOut))
        .and_then(|task| task.note.as_deref())
        .map_or_else(String::new, |note| format!(" ({note})"));
    let why = report
        .reason
        .map_or_else(String::new, |reason| format!(": {reason}{cause}"));
    Outcome::Failed(Failure::new(
        FailureKind::Error,
        format!("child run {run_id} {}{why}", report.status.name()),
    ))
}
