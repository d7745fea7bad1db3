//! Checkpoints of a [`RunState`]: every field that events change, so a
//! snapshot plus the events after it rebuild the state that all the events
//! would. Fields fixed by the workflow and the run's setup are not in it;
//! they come from the run's record, as for a fresh state.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use minijinja::Value;
use serde::{Deserialize, Serialize};

use super::{NONE, Phase, RunSetup, RunState, TaskStatus};
use crate::check::Valid;
use crate::run::digest::Digest;
use crate::run::event::{Artifact, Failure, Millis, SkipReason};

/// A run's state after `events` events, as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Events folded into it.
    pub events: u64,
    phase: Phase,
    reason: Option<String>,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    deadline: Option<Millis>,
    status: Vec<TaskStatus>,
    attempts: Vec<u32>,
    unmet: Vec<u32>,
    live_needs: Vec<u32>,
    blocked_by: Vec<u32>,
    attempt_started: Vec<Millis>,
    first_started: Vec<Millis>,
    finished: Vec<Millis>,
    busy: Vec<u64>,
    outputs: Vec<(u32, serde_json::Value)>,
    failures: Vec<(u32, Failure)>,
    skip_reasons: Vec<(u32, SkipReason)>,
    artifacts: Vec<(u32, Box<[Artifact]>)>,
    /// Absent from snapshots taken before results could be reused.
    #[serde(default)]
    reused: Vec<(u32, Box<str>)>,
    #[serde(default)]
    iterations: Vec<(u32, u32)>,
    #[serde(default)]
    copies: Vec<(u32, CopyList)>,
    final_count: usize,
    running: u32,
    /// Absent from snapshots taken before approvals, pauses and controls.
    #[serde(default)]
    waiting: u32,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    controls: u64,
    failed_tasks: u32,
    ready: Vec<u32>,
    settle: Vec<u32>,
    timers: Vec<(Millis, u32)>,
    key_running: Vec<u32>,
    parked: Vec<Vec<u32>>,
    kills_sent: bool,
    compensation_order: Vec<u32>,
    compensation_cursor: usize,
    compensating: Option<u32>,
    compensation_failed: bool,
    #[serde(default)]
    compensation_attempts: Vec<(u32, u32)>,
    #[serde(default)]
    compensation_retry_at: Option<Millis>,
}

/// The items (copies) of one task that succeeded, with their outputs.
type CopyList = Vec<(u32, Option<serde_json::Value>)>;

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

fn sorted<T: Clone>(map: &rustc_hash::FxHashMap<u32, T>) -> Vec<(u32, T)> {
    let mut entries: Vec<(u32, T)> = map.iter().map(|(&k, v)| (k, v.clone())).collect();
    entries.sort_unstable_by_key(|entry| entry.0);
    entries
}

impl RunState {
    /// The state as a snapshot, taken after `events` events.
    pub fn snapshot(&self, events: u64) -> Snapshot {
        let mut ready: Vec<u32> = self.ready.iter().map(|rank| rank.0).collect();
        ready.sort_unstable();
        let mut timers: Vec<(Millis, u32)> = self.timers.iter().map(|timer| timer.0).collect();
        timers.sort_unstable();
        Snapshot {
            events,
            phase: self.phase.clone(),
            reason: self.reason.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            deadline: self.deadline,
            status: self.status.clone(),
            attempts: self.attempts.clone(),
            unmet: self.unmet.clone(),
            live_needs: self.live_needs.clone(),
            blocked_by: self.blocked_by.clone(),
            attempt_started: self.attempt_started.clone(),
            first_started: self.first_started.clone(),
            finished: self.finished.clone(),
            busy: self.busy.clone(),
            outputs: self
                .outputs
                .iter()
                .enumerate()
                .filter_map(|(task, output)| {
                    let output = output.as_ref()?;
                    Some((task as u32, serde_json::to_value(output).ok()?))
                })
                .collect(),
            failures: sorted(&self.failures),
            skip_reasons: sorted(&self.skip_reasons),
            artifacts: sorted(&self.artifacts),
            reused: sorted(&self.reused),
            iterations: sorted(&self.iterations),
            copies: {
                let mut copies: Vec<(u32, CopyList)> = self
                    .copies
                    .iter()
                    .map(|(&task, done)| {
                        (
                            task,
                            done.iter()
                                .map(|(&copy, output)| (copy, output.clone()))
                                .collect(),
                        )
                    })
                    .collect();
                copies.sort_unstable_by_key(|entry| entry.0);
                copies
            },
            final_count: self.final_count,
            running: self.running,
            waiting: self.waiting,
            paused: self.paused,
            controls: self.controls,
            failed_tasks: self.failed_tasks,
            ready,
            settle: self.settle.iter().copied().collect(),
            timers,
            key_running: self.key_running.clone(),
            parked: self
                .parked
                .iter()
                .map(|queue| queue.iter().copied().collect())
                .collect(),
            kills_sent: self.kills_sent,
            compensation_order: self.compensation_order.clone(),
            compensation_cursor: self.compensation_cursor,
            compensating: self.compensating,
            compensation_failed: self.compensation_failed,
            compensation_attempts: {
                let mut attempts: Vec<(u32, u32)> = self
                    .compensation_attempts
                    .iter()
                    .map(|(&task, &count)| (task, count))
                    .collect();
                attempts.sort_unstable();
                attempts
            },
            compensation_retry_at: self.compensation_retry_at,
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
        let count = state.status.len();
        let tasks_fit = [
            snapshot.status.len(),
            snapshot.attempts.len(),
            snapshot.unmet.len(),
            snapshot.live_needs.len(),
            snapshot.blocked_by.len(),
            snapshot.attempt_started.len(),
            snapshot.first_started.len(),
            snapshot.finished.len(),
            snapshot.busy.len(),
        ]
        .iter()
        .all(|&len| len == count);
        if !tasks_fit {
            return Err(SnapshotError::Mismatch("a different number of tasks"));
        }
        if snapshot.key_running.len() != state.key_limit.len()
            || snapshot.parked.len() != state.key_limit.len()
        {
            return Err(SnapshotError::Mismatch("different concurrency keys"));
        }
        let in_range = |task: u32| (task as usize) < count;
        let indexes_fit = snapshot.outputs.iter().all(|entry| in_range(entry.0))
            && snapshot.failures.iter().all(|entry| in_range(entry.0))
            && snapshot.skip_reasons.iter().all(|entry| in_range(entry.0))
            && snapshot.artifacts.iter().all(|entry| in_range(entry.0))
            && snapshot.reused.iter().all(|entry| in_range(entry.0))
            && snapshot.iterations.iter().all(|entry| in_range(entry.0))
            && snapshot.copies.iter().all(|entry| in_range(entry.0))
            && snapshot.ready.iter().all(|&rank| in_range(rank))
            && snapshot.settle.iter().all(|&task| in_range(task))
            && snapshot.timers.iter().all(|timer| in_range(timer.1))
            && snapshot.parked.iter().flatten().all(|&rank| in_range(rank))
            && snapshot
                .compensation_order
                .iter()
                .all(|&task| in_range(task))
            && snapshot.compensating.is_none_or(in_range)
            && snapshot
                .compensation_attempts
                .iter()
                .all(|entry| in_range(entry.0))
            && snapshot
                .blocked_by
                .iter()
                .all(|&task| task == NONE || in_range(task));
        if !indexes_fit {
            return Err(SnapshotError::Mismatch("a task index out of range"));
        }
        state.phase = snapshot.phase;
        state.reason = snapshot.reason;
        state.started_at = snapshot.started_at;
        state.finished_at = snapshot.finished_at;
        state.deadline = snapshot.deadline;
        state.status = snapshot.status;
        state.attempts = snapshot.attempts;
        state.unmet = snapshot.unmet;
        state.live_needs = snapshot.live_needs;
        state.blocked_by = snapshot.blocked_by;
        state.attempt_started = snapshot.attempt_started;
        state.first_started = snapshot.first_started;
        state.finished = snapshot.finished;
        state.busy = snapshot.busy;
        state.outputs = vec![None; count];
        for (task, output) in snapshot.outputs {
            state.outputs[task as usize] = Some(Value::from(minijinja::value::Serde(output)));
        }
        state.failures = snapshot.failures.into_iter().collect();
        state.skip_reasons = snapshot.skip_reasons.into_iter().collect();
        state.artifacts = snapshot.artifacts.into_iter().collect();
        state.reused = snapshot.reused.into_iter().collect();
        state.iterations = snapshot.iterations.into_iter().collect();
        state.copies = snapshot
            .copies
            .into_iter()
            .map(|(task, done)| (task, done.into_iter().collect()))
            .collect();
        state.final_count = snapshot.final_count;
        state.running = snapshot.running;
        state.waiting = snapshot.waiting;
        state.paused = snapshot.paused;
        state.controls = snapshot.controls;
        state.failed_tasks = snapshot.failed_tasks;
        state.ready = snapshot
            .ready
            .into_iter()
            .map(Reverse)
            .collect::<BinaryHeap<_>>();
        state.settle = VecDeque::from(snapshot.settle);
        state.timers = snapshot.timers.into_iter().map(Reverse).collect();
        state.key_running = snapshot.key_running;
        state.parked = snapshot.parked.into_iter().map(VecDeque::from).collect();
        state.kills_sent = snapshot.kills_sent;
        state.compensation_order = snapshot.compensation_order;
        state.compensation_cursor = snapshot.compensation_cursor;
        state.compensating = snapshot.compensating;
        state.compensation_failed = snapshot.compensation_failed;
        state.compensation_attempts = snapshot.compensation_attempts.into_iter().collect();
        state.compensation_retry_at = snapshot.compensation_retry_at;
        Ok(state)
    }
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
    use crate::run::Event;
    use crate::{Format, check_source};

    fn state(spec: &str) -> RunState {
        let valid = check_source(spec, Format::Yaml).unwrap();
        RunState::new(Arc::new(valid), RunSetup::default())
    }

    #[test]
    fn a_flipped_byte_is_caught_by_the_digest() {
        let mut run = state("name: s\ntasks:\n  a: {noop: true}\n");
        run.apply(&Event::RunStarted { at: Millis(1) });
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
}
