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
    /// Who decided: through the API, the name of the key that sent the
    /// decision; on this machine, whom the user names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The id of the API key that sent the decision, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Who the sender says decided, when a key sent it: kept beside the
    /// key, never in place of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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

/// What the output of an approval task holds when its timeout took the
/// `default`.
pub(crate) fn default_output(default: &str) -> serde_json::Value {
    serde_json::json!({
        "choice": default,
        "by": null,
        "comment": null,
        "timed_out": true,
    })
}

/// What the output of an approval task holds when someone decided.
pub(crate) fn decision_output(decision: &Decision) -> serde_json::Value {
    let mut output = serde_json::json!({
        "choice": decision.choice,
        "by": decision.by,
        "comment": decision.comment,
        "timed_out": false,
    });
    if let Some(key_id) = &decision.key_id {
        output["key_id"] = key_id.as_str().into();
    }
    if let Some(note) = &decision.note {
        output["note"] = note.as_str().into();
    }
    output
}
