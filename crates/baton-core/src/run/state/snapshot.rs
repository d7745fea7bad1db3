//! Checkpoints of a [`RunState`]: its [`Progress`] after some events, so a
//! snapshot plus the events after it rebuild the state that all the events
//! would. What the workflow and the run's setup fix comes from the run's
//! record, as for a fresh state.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::progress::Progress;
use super::{NONE, RunSetup, RunState};
use crate::check::Valid;
use crate::run::digest::Digest;

/// A run's state after `events` events, as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Events folded into it.
    pub events: u64,
    #[serde(flatten)]
    progress: Progress,
}

/// A snapshot as stored: its encoding and the digest that guards it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sealed {
    pub events: u64,
    pub data: Vec<u8>,
    pub digest: Digest,
}

/// Why a stored snapshot cannot be used; the run is rebuilt from events.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("its SHA-256 is {actual}, but {expected} was recorded")]
    Digest { expected: Digest, actual: Digest },
    #[error("it does not decode: {0}")]
    Decode(String),
    #[error("it does not fit this run's workflow: {0}")]
    Mismatch(&'static str),
}

impl RunState {
    /// The state as a snapshot, taken after `events` events.
    pub fn snapshot(&self, events: u64) -> Snapshot {
        Snapshot {
            events,
            progress: self.progress.clone(),
        }
    }

    /// The state a snapshot describes, for the run `setup` and `valid` set
    /// up. Refuses a snapshot whose shape does not fit the workflow, so a
    /// bad one never panics later.
    pub fn restore(
        valid: Arc<Valid>,
        setup: RunSetup,
        snapshot: Snapshot,
    ) -> Result<RunState, SnapshotError> {
        let mut state = RunState::new(valid, setup);
        let mut progress = snapshot.progress;
        fits(&progress, state.task_count(), state.key_limit.len())?;
        progress.outputs.resize(state.task_count(), None);
        state.progress = progress;
        Ok(state)
    }
}

/// Whether `progress` fits a run of `count` tasks and `keys` concurrency
/// keys: every per-task list has one entry per task, and every task (or
/// rank) it names is one of them.
fn fits(progress: &Progress, count: usize, keys: usize) -> Result<(), SnapshotError> {
    let tasks_fit = [
        progress.status.len(),
        progress.attempts.len(),
        progress.unmet.len(),
        progress.live_needs.len(),
        progress.blocked_by.len(),
        progress.attempt_started.len(),
        progress.first_started.len(),
        progress.finished.len(),
        progress.busy.len(),
    ]
    .iter()
    .all(|&len| len == count);
    if !tasks_fit || progress.outputs.len() > count {
        return Err(SnapshotError::Mismatch("a different number of tasks"));
    }
    if progress.key_running.len() != keys || progress.parked.len() != keys {
        return Err(SnapshotError::Mismatch("different concurrency keys"));
    }
    let in_range = |task: u32| (task as usize) < count;
    let indexes_fit = progress.failures.keys().all(|&task| in_range(task))
        && progress.skip_reasons.keys().all(|&task| in_range(task))
        && progress.artifacts.keys().all(|&task| in_range(task))
        && progress.reused.keys().all(|&task| in_range(task))
        && progress.iterations.keys().all(|&task| in_range(task))
        && progress.copies.keys().all(|&task| in_range(task))
        && progress.ready.iter().all(|rank| in_range(rank.0))
        && progress.settle.iter().all(|&task| in_range(task))
        && progress.timers.iter().all(|timer| in_range(timer.0.1))
        && progress.parked.iter().flatten().all(|&rank| in_range(rank))
        && progress
            .compensation_order
            .iter()
            .all(|&task| in_range(task))
        && progress.compensating.is_none_or(in_range)
        && progress
            .compensation_attempts
            .keys()
            .all(|&task| in_range(task))
        && progress
            .blocked_by
            .iter()
            .all(|&task| task == NONE || in_range(task));
    if !indexes_fit {
        return Err(SnapshotError::Mismatch("a task index out of range"));
    }
    Ok(())
}

impl Snapshot {
    /// Encodes the snapshot and seals it with its SHA-256.
    pub fn seal(&self) -> Sealed {
        // Plain data with string keys: encoding cannot fail.
        let data = serde_json::to_vec(self).unwrap_or_default();
        Sealed {
            events: self.events,
            digest: Digest::of_bytes(&data),
            data,
        }
    }
}

impl Sealed {
    /// The snapshot, if its bytes still match their digest.
    pub fn open(&self) -> Result<Snapshot, SnapshotError> {
        let actual = Digest::of_bytes(&self.data);
        if actual != self.digest {
            return Err(SnapshotError::Digest {
                expected: self.digest,
                actual,
            });
        }
        let snapshot: Snapshot = serde_json::from_slice(&self.data)
            .map_err(|error| SnapshotError::Decode(error.to_string()))?;
        if snapshot.events != self.events {
            return Err(SnapshotError::Mismatch("taken at a different event"));
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{Event, Millis};
    use crate::{Format, check_source};

    fn state(spec: &str) -> RunState {
        let valid = check_source(spec, Format::Yaml).unwrap();
        RunState::new(Arc::new(valid), RunSetup::default())
    }

    #[test]
    fn a_flipped_byte_is_caught_by_the_digest() {
        let mut run = state("name: s\ntasks:\n  a: {noop: true}\n");
        run.apply(&Event::RunStarted { at: Millis(1) }).unwrap();
        let mut sealed = run.snapshot(1).seal();
        assert!(sealed.open().is_ok());
        let middle = sealed.data.len() / 2;
        sealed.data[middle] ^= 1;
        assert!(matches!(sealed.open(), Err(SnapshotError::Digest { .. })));
    }

    #[test]
    fn a_snapshot_of_another_workflow_is_refused() {
        let one = state("name: s\ntasks:\n  a: {noop: true}\n");
        let two = state("name: s\ntasks:\n  a: {noop: true}\n  b: {noop: true}\n");
        let refused = RunState::restore(two.shared_valid(), RunSetup::default(), one.snapshot(0));
        assert!(matches!(refused, Err(SnapshotError::Mismatch(_))));
    }

    #[test]
    fn a_snapshot_keeps_the_encoding_checkpoints_were_written_in() {
        let mut run = state("name: s\ntasks:\n  a: {noop: true}\n  b: {noop: true, needs: [a]}\n");
        run.apply(&Event::RunStarted { at: Millis(1) }).unwrap();
        let encoded: serde_json::Value =
            serde_json::from_slice(&run.snapshot(1).seal().data).unwrap();
        // Field names and shapes of the format before it was derived: a
        // checkpoint from then still opens.
        assert_eq!(encoded["phase"], serde_json::json!({"phase": "running"}));
        assert_eq!(encoded["ready"], serde_json::json!([0]));
        assert_eq!(encoded["outputs"], serde_json::json!([]));
        assert_eq!(encoded["failures"], serde_json::json!([]));
        assert_eq!(encoded["events"], 1);
    }
}
