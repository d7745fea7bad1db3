//! [`Control`]: what people ask of a run while it runs (pause it, resume
//! it, decide an approval, cancel it), from any process. Requests wait in
//! the store; the process driving the run reads them in order, records each
//! in the log as [`Event::ControlReceived`](super::Event::ControlReceived)
//! with its position (so a resumed run neither loses nor repeats one), and
//! [`RunState::control`](super::RunState::control) says what it changes.

use serde::{Deserialize, Serialize};

/// One request to a running run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// Stop the run: running attempts are killed, waiting tasks cancelled.
    Cancel,
    /// Start no new task; running ones finish.
    Pause,
    /// Start tasks again after a pause.
    Resume,
    /// The choice made for a waiting `approval` task.
    Decide(Decision),
}

/// A choice for an approval task, with who made it and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The approval task's id.
    pub task: String,
    /// One of the task's `choices`.
    pub choice: String,
    /// Who decided (an API key's name, a user), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Why a control does not apply to the run as it stands. Checked when it is
/// asked for (so the asker hears at once) and again when the run reads it
/// (the run may have moved on since); a control refused then changes
/// nothing, though it stays in the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("the run has finished")]
    Finished,
    #[error("the run is already paused")]
    AlreadyPaused,
    #[error("the run is not paused")]
    NotPaused,
    #[error("the run is ending and starts no more tasks")]
    Ending,
    #[error("the run has no task `{0}`")]
    UnknownTask(String),
    #[error("task `{0}` is not an approval")]
    NotApproval(String),
    #[error("task `{task}` is {status}, not waiting for a decision")]
    NotWaiting { task: String, status: &'static str },
    #[error("`{choice}` is not a choice of task `{task}` (choices: {})", .choices.join(", "))]
    BadChoice {
        task: String,
        choice: String,
        choices: Vec<String>,
    },
}

impl ControlError {
    /// Whether the request itself is wrong (a name or choice that does not
    /// exist) rather than untimely: the API answers 404/422 versus 409.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            ControlError::UnknownTask(_)
                | ControlError::NotApproval(_)
                | ControlError::BadChoice { .. }
        )
    }
}

/// What the output of an approval task holds: the decision, or the
/// `default` its timeout took.
pub(crate) fn decision_output(
    choice: &str,
    by: Option<&str>,
    comment: Option<&str>,
    timed_out: bool,
) -> serde_json::Value {
    serde_json::json!({
        "choice": choice,
        "by": by,
        "comment": comment,
        "timed_out": timed_out,
    })
}
