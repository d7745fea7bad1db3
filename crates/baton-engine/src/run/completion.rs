//! The events an attempt's end becomes: what it consumed, reused and
//! stored, then how it ended (a `repeat` going round, a `check` failing).

use baton_core::run::{Event, Iteration, Millis, RunState};

use super::report::{Done, Ran};
use crate::executor::Outcome;

/// The events a report ends its attempt with: what it consumed, reused
/// and stored, then how it ended.
pub(crate) fn completion_events(
    report: Done,
    at: Millis,
    state: &RunState,
    pending: &mut Vec<Event>,
) {
    let Done {
        task,
        attempt,
        ran,
        outcome,
        files,
    } = report;
    let compensation = match ran {
        Ran::Attempt => false,
        Ran::Compensation => true,
        Ran::Copy(copy) => {
            if let Outcome::Succeeded(output) = outcome {
                pending.push(Event::CopySucceeded {
                    at,
                    task,
                    attempt,
                    copy,
                    output: output.map(Box::new),
                });
            }
            return;
        }
    };
    if !files.consumed.is_empty() {
        pending.push(Event::ArtifactsConsumed {
            at,
            task,
            attempt,
            artifacts: files.consumed.into(),
        });
    }
    if let Some(run) = files.reused_from {
        pending.push(Event::ResultReused {
            at,
            task,
            attempt,
            run: run.into(),
        });
    }
    if !files.produced.is_empty() {
        pending.push(Event::ArtifactsStored {
            at,
            task,
            attempt,
            artifacts: files.produced.into(),
        });
    }
    // A success counts once a `repeat` loop is done and its output passes
    // the task's `check`; until then the task goes round again.
    let outcome = match outcome {
        Outcome::Succeeded(output) if !compensation => {
            match state
                .iteration(task, attempt, output.as_ref())
                .and_then(|iteration| {
                    state
                        .check_output(task, attempt, output.as_ref())
                        .map(|()| iteration)
                }) {
                Ok(Iteration::Done) => Outcome::Succeeded(output),
                Ok(Iteration::Again) => {
                    pending.push(Event::TaskIterated {
                        at,
                        task,
                        attempt,
                        output: output.map(Box::new),
                    });
                    return;
                }
                Err(failure) => Outcome::Failed(failure),
            }
        }
        other => other,
    };
    pending.push(ended(task, attempt, compensation, outcome, at));
}

fn ended(task: u32, attempt: u32, compensation: bool, outcome: Outcome, at: Millis) -> Event {
    match (compensation, outcome) {
        (true, Outcome::Succeeded(_)) => Event::CompensationFinished {
            at,
            task,
            error: None,
        },
        (true, Outcome::Failed(failure)) => Event::CompensationFinished {
            at,
            task,
            error: Some(failure.message),
        },
        (true, Outcome::Cancelled) => Event::CompensationFinished {
            at,
            task,
            error: Some("cancelled".to_owned()),
        },
        (false, Outcome::Succeeded(output)) => Event::TaskSucceeded {
            at,
            task,
            attempt,
            output: output.map(Box::new),
        },
        (false, Outcome::Failed(failure)) => Event::TaskFailed {
            at,
            task,
            attempt,
            failure: Box::new(failure),
        },
        (false, Outcome::Cancelled) => Event::TaskCancelled { at, task },
    }
}
