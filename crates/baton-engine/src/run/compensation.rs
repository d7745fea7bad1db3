//! Running a task's `compensate` action, or undoing the child run it made.

use std::sync::Arc;

use baton_core::run::{Failure, FailureKind, RunState, RunStatus};
use tokio::sync::{mpsc, oneshot};

use super::host::Host;
use super::launch::task_context;
use super::report::{Done, Files, Ran};
use crate::children::Children;
use crate::executor::{Attempt, Executor, Outcome};
use crate::logs::compensation_prefix;

/// Starts the `compensate` action of `task`; it is not killed, as undoing
/// work half-way helps no one, but its own timeout applies.
pub(crate) fn launch_compensation(
    host: &Host,
    state: &RunState,
    task: u32,
    done: &mpsc::UnboundedSender<Done>,
) {
    let attempt = state.attempts(task);
    let report = move |outcome| Done {
        task,
        attempt,
        ran: Ran::Compensation,
        outcome,
        files: Files::default(),
    };
    // Without an action of its own, a task undoes the child run it made.
    if state.task(task).modifiers().compensate.is_none()
        && let Some(child) = state.child_run(task)
    {
        let children = Arc::clone(&host.children);
        let done = done.clone();
        tokio::spawn(async move {
            let _ = done.send(report(compensate_child(children.as_ref(), &child).await));
        });
        return;
    }
    let resolved = match state.resolve_compensation(task) {
        Ok(resolved) => resolved,
        Err(error) => {
            let failure = Failure::new(FailureKind::Template, error.to_string());
            let _ = done.send(report(Outcome::Failed(failure)));
            return;
        }
    };
    let config = &host.config;
    let timeout = state.timeout(task);
    let run = Attempt {
        context: task_context(state, task, attempt, &resolved),
        prefix: compensation_prefix(&config.state_dir, state.run_id(), &state.task(task).id),
        workdir: config.workdir.clone(),
        timeout: timeout.map(|timeout| timeout.after),
        grace: timeout.map_or(config.kill_grace, |timeout| timeout.grace),
        resolved,
        lineage: None,
        stdin: None,
        carried: None,
    };
    let executors = Arc::clone(&host.executors);
    let done = done.clone();
    tokio::spawn(async move {
        let (_keep, never) = oneshot::channel();
        let outcome = executors.execute(run, never).await;
        let _ = done.send(report(outcome));
    });
}

/// Compensates child run `child` and reports how that went.
async fn compensate_child(children: &dyn Children, child: &str) -> Outcome {
    let failed = |message: String| Outcome::Failed(Failure::new(FailureKind::Error, message));
    let report = match children.compensate(child).await {
        Ok(handle) => handle.finish().await,
        Err(error) => return failed(format!("cannot compensate child run {child}: {error}")),
    };
    match report {
        Ok(report) if report.status == RunStatus::Compensated => Outcome::Succeeded(None),
        Ok(report) => failed(format!(
            "child run {child} {}: {}",
            report.status,
            report.reason.unwrap_or_default()
        )),
        Err(error) => failed(format!("child run {child} stopped: {error}")),
    }
}
