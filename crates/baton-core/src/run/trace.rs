//! A run's trace: the digest of its event log, and the replay that checks
//! the state machine still makes every decision the log records.
//!
//! Results (a task succeeded, failed, was lost in a crash, the run was
//! cancelled) come from outside the state machine, so a replay takes them
//! from the log. Decisions (a task started, was skipped, the run finished)
//! come from [`RunState::decide`]: a replay asks for them again and checks
//! each recorded one is among them. The same workflow and the same results
//! give the same decisions, so the replayed trace has the original digest.

use std::fmt;

use rustc_hash::FxHashMap;

use super::digest::{Digest, Hasher};
use super::event::{Event, Millis};
use super::state::{Budget, Command, Inadmissible, RunState, TaskStatus};

/// Folds events, in order, into a trace digest.
#[derive(Default)]
pub struct Trace(Hasher);

impl Trace {
    pub fn push(&mut self, event: &Event) {
        self.0.serialized(event);
    }

    pub fn finish(mut self) -> Digest {
        self.0.finish()
    }

    /// The trace digest of a whole log.
    pub fn of(events: &[Event]) -> Digest {
        let mut trace = Trace::default();
        for event in events {
            trace.push(event);
        }
        trace.finish()
    }
}

/// A recorded decision the state machine does not make, or a recorded
/// event that cannot follow the state before it at all.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// Its position in the log.
    pub seq: u64,
    pub recorded: Event,
    /// What the state machine would do instead (events without times).
    pub expected: Vec<Event>,
    /// Why the event cannot follow the state, when it cannot.
    pub inadmissible: Option<Inadmissible>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recorded = serde_json::to_string(&self.recorded).unwrap_or_default();
        if let Some(why) = &self.inadmissible {
            return write!(
                f,
                "event {} ({recorded}) cannot follow the events before it: {why}",
                self.seq
            );
        }
        write!(
            f,
            "event {} ({recorded}) is not a decision the state machine makes here",
            self.seq
        )?;
        if !self.expected.is_empty() {
            let expected: Vec<String> = self
                .expected
                .iter()
                .take(5)
                .map(|event| serde_json::to_string(event).unwrap_or_default())
                .collect();
            write!(f, "; it would do: {}", expected.join(", "))?;
        }
        Ok(())
    }
}

/// What identifies a decision, whenever it was made.
type Key = (u8, u32, u32);

fn decision_key(event: &Event) -> Key {
    let (kind, task, detail) = match event {
        Event::TaskStarted { task, attempt, .. } => (0, *task, *attempt),
        Event::TaskSkipped { task, .. } => (1, *task, 0),
        Event::TaskCancelled { task, .. } => (2, *task, 0),
        Event::TaskFailed { task, attempt, .. } => (3, *task, *attempt),
        Event::CompensationStarted { task, .. } => (4, *task, 0),
        Event::RunTimedOut { .. } => (5, 0, 0),
        Event::RunFinished { .. } => (6, 0, 0),
        Event::ApprovalRequested { task, .. } => (7, *task, 0),
        _ => (8, event.task().unwrap_or(0), 0),
    };
    (kind, task, detail)
}

/// Whether `event` records a decision of the state machine (as opposed to
/// a result from outside), judged on the state before it is applied.
fn is_decision(state: &RunState, event: &Event) -> bool {
    match event {
        Event::TaskStarted { .. }
        | Event::TaskSkipped { .. }
        | Event::CompensationStarted { .. }
        | Event::ApprovalRequested { .. }
        | Event::RunTimedOut { .. }
        | Event::RunFinished { .. } => true,
        // A rejected task (its condition did not evaluate) never started.
        Event::TaskFailed { attempt, .. } => *attempt == 0,
        // Running attempts report their own cancellation; others are dropped.
        Event::TaskCancelled { task, .. } => state.status(*task) != TaskStatus::Running,
        Event::RunStarted { .. }
        | Event::TaskSucceeded { .. }
        | Event::TaskIterated { .. }
        | Event::CopySucceeded { .. }
        | Event::CompensationFinished { .. }
        | Event::ArtifactsStored { .. }
        | Event::ResultReused { .. }
        | Event::ArtifactsConsumed { .. }
        | Event::AttemptLost { .. }
        | Event::ControlReceived { .. }
        | Event::RunPaused { .. }
        | Event::RunResumed { .. }
        | Event::CancelRequested { .. }
        | Event::CompensationRequested { .. } => false,
    }
}

/// Re-drives a fresh `state` through a recorded log and returns the trace
/// digest, or the first recorded decision it would not make.
pub fn replay(state: &mut RunState, events: &[Event]) -> Result<Digest, Divergence> {
    let mut trace = Trace::default();
    // Decisions made and not yet seen in the log, by what they decide.
    let mut decided: FxHashMap<Key, Command> = FxHashMap::default();
    let mut commands = Vec::new();
    for (seq, event) in events.iter().enumerate() {
        if let Err(why) = state.admit(event) {
            return Err(Divergence {
                seq: seq as u64,
                recorded: event.clone(),
                expected: Vec::new(),
                inadmissible: Some(why),
            });
        }
        if is_decision(state, event) {
            let key = decision_key(event);
            if !decided.contains_key(&key) {
                commands.clear();
                let budget = Budget {
                    slots: usize::MAX,
                    batch: Budget::default().batch,
                };
                state.decide(event.at(), budget, &mut commands);
                for command in commands.drain(..) {
                    if let Some(made) = command.event(Millis(0)) {
                        decided.insert(decision_key(&made), command);
                    }
                }
            }
            // A decision is the same whenever it was made: compare it at
            // the time the log records.
            let made = decided.remove(&key);
            match made.as_ref().and_then(|command| command.event(event.at())) {
                Some(made) if made == *event => {}
                _ => {
                    let mut expected: Vec<Event> = decided
                        .into_values()
                        .chain(made)
                        .filter_map(|command| command.event(Millis(0)))
                        .collect();
                    expected.sort_by_key(decision_key);
                    return Err(Divergence {
                        seq: seq as u64,
                        recorded: event.clone(),
                        expected,
                        inadmissible: None,
                    });
                }
            }
        }
        state.fold(event);
        trace.push(event);
    }
    Ok(trace.finish())
}
