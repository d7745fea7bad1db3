//! [`RunState::control`]: what a request to a running run (cancel, pause,
//! resume, an approval's decision) changes, or why it does not apply.

use crate::spec::TaskKind;

use super::super::control::{Control, ControlError, Decision, decision_output};
use super::super::event::{Event, Millis};
use super::progress::Phase;
use super::{RunState, TaskStatus};

impl RunState {
    /// The events that carry out `control` on the run as it stands, or why
    /// it does not apply.
    pub fn control(&self, control: &Control, at: Millis) -> Result<Vec<Event>, ControlError> {
        let running = match self.progress.phase {
            Phase::Finished(_) => return Err(ControlError::Finished),
            Phase::Pending | Phase::Running => true,
            Phase::Ending { .. } | Phase::Compensating => false,
        };
        Ok(match control {
            Control::Cancel if running => vec![Event::CancelRequested { at }],
            Control::Pause if !running => return Err(ControlError::Ending),
            Control::Pause if self.progress.paused => return Err(ControlError::AlreadyPaused),
            Control::Pause => vec![Event::RunPaused { at }],
            Control::Resume if !self.progress.paused || !running => {
                return Err(ControlError::NotPaused);
            }
            Control::Resume => vec![Event::RunResumed { at }],
            Control::Cancel => return Err(ControlError::Ending),
            Control::Decide(decision) => vec![self.decision(decision, at)?],
        })
    }

    /// The success of a waiting approval task with `decision` as output.
    fn decision(&self, decision: &Decision, at: Millis) -> Result<Event, ControlError> {
        let task = self
            .task_index(&decision.task)
            .ok_or_else(|| ControlError::UnknownTask(decision.task.clone()))?;
        let TaskKind::Approval(approval) = &self.task(task).kind else {
            return Err(ControlError::NotApproval(decision.task.clone()));
        };
        let status = self.progress.status[task as usize];
        if status != TaskStatus::Waiting {
            return Err(ControlError::NotWaiting {
                task: decision.task.clone(),
                status: status.name(),
            });
        }
        if !approval.choices.contains(&decision.choice) {
            return Err(ControlError::BadChoice {
                task: decision.task.clone(),
                choice: decision.choice.clone(),
                choices: approval.choices.clone(),
            });
        }
        Ok(Event::TaskSucceeded {
            at,
            task,
            attempt: self.progress.attempts[task as usize],
            output: Some(Box::new(decision_output(decision))),
        })
    }
}
