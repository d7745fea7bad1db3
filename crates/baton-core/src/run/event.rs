//! What happened in a run, as data: the history [`RunState`](super::RunState)
//! folds, and what a store persists. Tasks are named by their index in
//! `Workflow::tasks`, which a valid workflow fixes, so events stay small.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::Duration;

use super::control::Control;
use super::digest::Digest;

/// Milliseconds since the Unix epoch, as the shell's clock read them. Time
/// enters the state machine only through events and `decide`'s `now`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub fn plus(self, duration: Duration) -> Millis {
        Millis(self.0.saturating_add(duration.as_millis()))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// One state change of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        at: Millis,
    },
    /// An attempt was handed to a runner (attempts count from 1).
    TaskStarted {
        at: Millis,
        task: u32,
        attempt: u32,
    },
    TaskSucceeded {
        at: Millis,
        task: u32,
        attempt: u32,
        /// The JSON the task wrote to `$BATON_OUTPUT`, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<Value>>,
    },
    /// An iteration of a `repeat` task ended without `until` holding: its
    /// output is the next iteration's `previous`, and the task runs again.
    TaskIterated {
        at: Millis,
        task: u32,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<Value>>,
    },
    /// One item of a `foreach` (or copy of a `swarm`) succeeded within its
    /// attempt: kept, so a later attempt after a crash (or, for `foreach`,
    /// a retry) does not run it again.
    CopySucceeded {
        at: Millis,
        task: u32,
        attempt: u32,
        copy: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<Value>>,
    },
    /// An attempt failed; the state decides whether it is retried. A task
    /// that never started (its condition did not evaluate) fails with attempt 0.
    TaskFailed {
        at: Millis,
        task: u32,
        attempt: u32,
        failure: Box<Failure>,
    },
    TaskSkipped {
        at: Millis,
        task: u32,
        reason: SkipReason,
    },
    /// A running attempt was stopped, or a waiting task dropped, because the
    /// run was cancelled or is failing fast.
    TaskCancelled {
        at: Millis,
        task: u32,
    },
    CompensationStarted {
        at: Millis,
        task: u32,
    },
    CompensationFinished {
        at: Millis,
        task: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Files an attempt declared in `artifacts:`, stored by content before
    /// its success is recorded.
    ArtifactsStored {
        at: Millis,
        task: u32,
        attempt: u32,
        artifacts: Box<[Artifact]>,
    },
    /// The attempt's result is taken from an earlier run's record (a cache
    /// hit, or a task `baton rerun` did not ask to run again) instead of
    /// running; its artifacts and success follow.
    ResultReused {
        at: Millis,
        task: u32,
        attempt: u32,
        /// The run whose result is reused.
        run: Box<str>,
    },
    /// Artifacts of its needs placed in an attempt's working directory
    /// before it ran: what it consumed.
    ArtifactsConsumed {
        at: Millis,
        task: u32,
        attempt: u32,
        artifacts: Box<[Artifact]>,
    },
    /// An attempt (or compensation) that was in flight when the process
    /// running it died; the resumed run starts the task again, attempt + 1.
    AttemptLost {
        at: Millis,
        task: u32,
        attempt: u32,
    },
    /// An `approval` task is waiting for a decision (attempt 1 begins).
    ApprovalRequested {
        at: Millis,
        task: u32,
    },
    /// The run read its `seq`-th control request (counting from 0). What it
    /// changed, if anything, follows as events of its own.
    ControlReceived {
        at: Millis,
        seq: u64,
        control: Box<Control>,
    },
    /// No new task starts until the run is resumed.
    RunPaused {
        at: Millis,
    },
    RunResumed {
        at: Millis,
    },
    /// Someone asked the run to stop (Ctrl-C, the API).
    CancelRequested {
        at: Millis,
    },
    /// The parent of a finished, succeeded run (a sub-workflow's, spawned
    /// tasks') is compensating: this run undoes its own work in turn.
    CompensationRequested {
        at: Millis,
    },
    /// The run's own `timeout` passed.
    RunTimedOut {
        at: Millis,
    },
    RunFinished {
        at: Millis,
        status: RunStatus,
    },
}

impl Event {
    /// When the event happened, by the shell's clock.
    pub fn at(&self) -> Millis {
        match self {
            Event::RunStarted { at }
            | Event::TaskStarted { at, .. }
            | Event::TaskSucceeded { at, .. }
            | Event::TaskIterated { at, .. }
            | Event::CopySucceeded { at, .. }
            | Event::TaskFailed { at, .. }
            | Event::TaskSkipped { at, .. }
            | Event::TaskCancelled { at, .. }
            | Event::CompensationStarted { at, .. }
            | Event::CompensationFinished { at, .. }
            | Event::ArtifactsStored { at, .. }
            | Event::ResultReused { at, .. }
            | Event::ArtifactsConsumed { at, .. }
            | Event::AttemptLost { at, .. }
            | Event::ApprovalRequested { at, .. }
            | Event::ControlReceived { at, .. }
            | Event::RunPaused { at }
            | Event::RunResumed { at }
            | Event::CancelRequested { at }
            | Event::CompensationRequested { at }
            | Event::RunTimedOut { at }
            | Event::RunFinished { at, .. } => *at,
        }
    }

    /// The task this event is about, if any.
    pub fn task(&self) -> Option<u32> {
        match self {
            Event::TaskStarted { task, .. }
            | Event::TaskSucceeded { task, .. }
            | Event::TaskIterated { task, .. }
            | Event::CopySucceeded { task, .. }
            | Event::TaskFailed { task, .. }
            | Event::TaskSkipped { task, .. }
            | Event::TaskCancelled { task, .. }
            | Event::CompensationStarted { task, .. }
            | Event::CompensationFinished { task, .. }
            | Event::ArtifactsStored { task, .. }
            | Event::ResultReused { task, .. }
            | Event::ArtifactsConsumed { task, .. }
            | Event::AttemptLost { task, .. }
            | Event::ApprovalRequested { task, .. } => Some(*task),
            Event::RunStarted { .. }
            | Event::ControlReceived { .. }
            | Event::RunPaused { .. }
            | Event::RunResumed { .. }
            | Event::CancelRequested { .. }
            | Event::CompensationRequested { .. }
            | Event::RunTimedOut { .. }
            | Event::RunFinished { .. } => None,
        }
    }
}

/// A file a task produced, kept in the content-addressed store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Artifact {
    /// Relative to the task's working directory, `/`-separated.
    pub path: String,
    pub digest: Digest,
    pub size: u64,
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(flatten)]
    pub kind: FailureKind,
    /// For people: what went wrong, with a log tail when there is one.
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The class of a failure, which `retry.on` selects by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureKind {
    /// A process exited with a non-zero code.
    Exit { code: i32 },
    /// A process was killed by a signal it did not expect.
    Signal { signal: i32 },
    /// The task's timeout passed.
    Timeout,
    /// The attempt ran, but its output failed the task's `check`.
    Check,
    /// A `repeat` ran `max` iterations without its `until` holding.
    Repeat,
    /// An HTTP response with a status the task does not accept.
    Http { status: u16 },
    /// Anything else that may go away on a retry: a spawn error, a network
    /// error, a handler's error, output that is not JSON.
    Error,
    /// A template or condition that cannot be evaluated: the same state gives
    /// the same error, so it is never retried.
    Template,
    /// The call was not made: the host's circuit breaker is open after
    /// failing calls, so this one fails at once instead of adding to them.
    CircuitOpen,
    /// The remote worker that held the attempt's lease stopped answering
    /// before it ended, so its end is unknown.
    Lost,
}

impl FailureKind {
    /// The exit code, for summaries.
    pub fn exit_code(self) -> Option<i32> {
        match self {
            FailureKind::Exit { code } => Some(code),
            _ => None,
        }
    }
}

/// Why a task did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// Its `when:` was false.
    Condition,
    /// A task upstream failed, timed out or was cancelled: `need`, or the
    /// task whose failure skipped `need`.
    NeedFailed { need: u32 },
    /// Every task it needs was skipped.
    NeedsSkipped,
    /// The run stopped starting tasks (fail-fast, a run timeout).
    RunEnding,
    /// It timed out with `on_timeout: skip`.
    TimedOut,
    /// It is an `escalate` target, and no task escalating to it failed.
    NotEscalated,
    /// It needs `need` with `condition: on_failure`, and `need` did not
    /// fail.
    NeedDidNotFail { need: u32 },
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    /// Running tasks finish; no new one starts until it is resumed.
    Paused,
    Succeeded,
    Failed,
    Cancelled,
    /// A failed run whose compensations all ran.
    Compensated,
    /// A failed run whose compensation stopped at a compensation that kept
    /// failing; its reason lists what was not undone.
    CompensationFailed,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Compensated => "compensated",
            RunStatus::CompensationFailed => "compensation_failed",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(
            self,
            RunStatus::Pending | RunStatus::Running | RunStatus::Paused
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_small_enough_to_stream_millions() {
        assert!(std::mem::size_of::<Event>() <= 40);
    }

    #[test]
    fn events_read_back_from_json_as_written() {
        let event = Event::TaskFailed {
            at: Millis(5),
            task: 2,
            attempt: 1,
            failure: Box::new(Failure::new(FailureKind::Exit { code: 3 }, "exit 3")),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"type":"task_failed","at":5,"task":2,"attempt":1,"failure":{"kind":"exit","code":3,"message":"exit 3"}}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }
}
