//! Where one task of a run stands.

/// Where one task stands.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for its needs.
    Pending,
    /// Its needs are done; waiting for a slot.
    Queued,
    Running,
    /// An `approval` task waiting for a decision.
    Waiting,
    /// Failed, and waiting to be tried again.
    RetryWait,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    TimedOut,
    /// Succeeded, and its `compensate` action is running.
    Compensating,
    Compensated,
    /// Succeeded, and its `compensate` action failed.
    CompensationFailed,
}

impl TaskStatus {
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Waiting => "waiting",
            TaskStatus::RetryWait => "retry_wait",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::TimedOut => "timed_out",
            TaskStatus::Compensating => "compensating",
            TaskStatus::Compensated => "compensated",
            TaskStatus::CompensationFailed => "compensation_failed",
        }
    }

    /// Whether the task is done for this run (compensation aside).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            TaskStatus::Pending
                | TaskStatus::Queued
                | TaskStatus::Running
                | TaskStatus::Waiting
                | TaskStatus::RetryWait
        )
    }

    /// Whether the task's work happened and stands (or was undone after).
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded
                | TaskStatus::Compensating
                | TaskStatus::Compensated
                | TaskStatus::CompensationFailed
        )
    }

    pub(super) fn blocks_dependants(self) -> bool {
        matches!(
            self,
            TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::TimedOut
        )
    }
}
