//! The typed result of a run, read off its final state.

use std::path::PathBuf;

use baton_core::Duration;
use baton_core::run::{
    Artifact, Millis, RunMetrics, RunState, RunStatus, SkipReason, TaskStatus, Work,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::logs::attempt_prefix;

/// How a run ended, task by task, with its figures.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunReport {
    pub run_id: String,
    pub workflow: String,
    pub status: RunStatus,
    /// Why the run failed or stopped.
    pub reason: Option<String>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// In spec order.
    pub tasks: Vec<TaskReport>,
    pub metrics: RunMetrics,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskReport {
    pub id: String,
    pub status: TaskStatus,
    pub attempts: u32,
    /// From the first attempt's start to the end, retries included.
    pub duration: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed, or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The run its result was reused from (a cache hit, `baton rerun`),
    /// when it did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
    /// The files it stored from its `artifacts:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The prefix of the last attempt's log files (`PREFIX.stdout.log`,
    /// `PREFIX.stderr.log`), for `run` and `command` tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<PathBuf>,
    /// What an approval task that waits for a decision asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRequest>,
    /// Why a task routed to remote workers has not started on one
    /// ("waiting for a worker with capability `gpu`"), as the server that
    /// queues it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// The question a waiting approval puts to people, rendered.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApprovalRequest {
    pub prompt: String,
    pub choices: Vec<String>,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }

    pub fn task(&self, id: &str) -> Option<&TaskReport> {
        self.tasks.iter().find(|task| task.id == id)
    }

    pub(crate) fn from_state(state: &RunState, state_dir: &std::path::Path) -> RunReport {
        let workflow = state.valid().workflow();
        let tasks = (0..state.task_count() as u32)
            .map(|task| {
                let definition = state.task(task);
                let attempts = state.attempts(task);
                let failure = state.failure(task);
                let status = state.status(task);
                let note = match (status, state.skip_reason(task)) {
                    (TaskStatus::Skipped, Some(reason)) => Some(skip_note(state, reason)),
                    (TaskStatus::Cancelled, _) => Some(match state.reason() {
                        Some(reason) => format!("stopped: {reason}"),
                        None => "stopped".to_owned(),
                    }),
                    _ if !status.succeeded() || status == TaskStatus::CompensationFailed => failure
                        .map(|failure| match &definition.modifiers().escalate {
                            Some(target) if !status.succeeded() => {
                                format!("{}; escalated to `{target}`", failure.message)
                            }
                            _ => failure.message.clone(),
                        }),
                    // A sub-workflow's run is where its tasks are shown.
                    _ if matches!(definition.kind, baton_core::TaskKind::Workflow(_)) => {
                        state.output_json(task).and_then(|output| {
                            Some(format!("child run {}", output.get("run")?.as_str()?))
                        })
                    }
                    // And a spawning task's, the run of what it spawned.
                    _ if status == TaskStatus::Succeeded => {
                        state.output_json(task).and_then(|output| {
                            let run = output.get("spawned")?.get("run")?.as_str()?;
                            Some(format!("spawned run {run}"))
                        })
                    }
                    _ => None,
                };
                let runs_process = matches!(
                    definition.kind,
                    baton_core::TaskKind::Run(_) | baton_core::TaskKind::Command(_)
                );
                TaskReport {
                    id: definition.id.to_string(),
                    status,
                    attempts,
                    duration: state.elapsed(task),
                    exit_code: failure
                        .filter(|_| !status.succeeded())
                        .and_then(|failure| failure.kind.exit_code()),
                    note,
                    output: state
                        .output(task)
                        .and_then(|output| serde_json::to_value(output).ok()),
                    reused_from: state.reused_from(task).map(str::to_owned),
                    artifacts: state.artifacts(task).to_vec(),
                    logs: (runs_process && attempts > 0 && state.reused_from(task).is_none()).then(
                        || attempt_prefix(state_dir, state.run_id(), &definition.id, attempts),
                    ),
                    approval: approval_request(state, task),
                    waiting: None,
                }
            })
            .collect();
        RunReport {
            run_id: state.run_id().to_owned(),
            workflow: workflow.name.clone(),
            status: state.run_status(),
            reason: state.reason().map(str::to_owned),
            started_at: state.started_at(),
            finished_at: state.finished_at(),
            tasks,
            metrics: state.metrics(),
        }
    }
}

fn approval_request(state: &RunState, task: u32) -> Option<ApprovalRequest> {
    if state.status(task) != TaskStatus::Waiting {
        return None;
    }
    match state.resolve(task, state.attempts(task)).ok()?.work {
        Work::Approval { prompt, choices } => Some(ApprovalRequest { prompt, choices }),
        _ => None,
    }
}

fn skip_note(state: &RunState, reason: SkipReason) -> String {
    match reason {
        SkipReason::Condition => "its `when` was false".to_owned(),
        SkipReason::NeedFailed { need } => format!(
            "upstream task `{}` {}",
            state.task(need).id,
            match state.status(need) {
                TaskStatus::Cancelled => "was cancelled",
                TaskStatus::TimedOut => "timed out",
                _ => "failed",
            }
        ),
        SkipReason::NeedsSkipped => "every task it needs was skipped".to_owned(),
        SkipReason::NotEscalated => "nothing escalated to it".to_owned(),
        SkipReason::NeedDidNotFail { need } => format!(
            "it runs on the failure of `{}`, which {}",
            state.task(need).id,
            state.status(need).name()
        ),
        SkipReason::RunEnding => match state.reason() {
            Some(reason) => format!("the run stopped: {reason}"),
            None => "the run stopped".to_owned(),
        },
        SkipReason::TimedOut => "timed out (on_timeout: skip)".to_owned(),
    }
}
