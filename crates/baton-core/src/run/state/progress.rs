//! [`Progress`]: everything events change in a run's state, in one
//! serializable struct. A snapshot is this struct encoded, so a field added
//! here is in snapshots with no other edit. What the workflow and the run's
//! setup fix (the graph, the run's id and inputs, its limits) is not here:
//! it comes from the run's record, as for a fresh state.
//!
//! The encoding is canonical: queues and maps are written sorted, so two
//! states that mean the same encode to the same bytes however they were
//! reached (a replay and a restore from a checkpoint agree byte for byte).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use minijinja::Value;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::super::event::{Artifact, Failure, Millis, RunStatus, SkipReason};
use super::status::TaskStatus;

/// Where the run as a whole stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub(super) enum Phase {
    Pending,
    Running,
    /// No new work starts; running tasks are being stopped.
    Ending {
        status: RunStatus,
        compensate: bool,
    },
    Compensating,
    Finished(RunStatus),
}

/// The items (or swarm copies) of a task that succeeded, by index.
pub type CopyOutputs = BTreeMap<u32, Option<serde_json::Value>>;

/// What events have changed, task by task and for the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Progress {
    pub(super) phase: Phase,
    pub(super) reason: Option<String>,
    pub(super) started_at: Option<Millis>,
    pub(super) finished_at: Option<Millis>,
    pub(super) deadline: Option<Millis>,

    pub(super) status: Vec<TaskStatus>,
    pub(super) attempts: Vec<u32>,
    /// Needs not yet final.
    pub(super) unmet: Vec<u32>,
    /// Needs that succeeded.
    pub(super) live_needs: Vec<u32>,
    /// The first task upstream that failed, was cancelled or timed out.
    pub(super) blocked_by: Vec<u32>,
    /// Tasks that will be skipped because a need they wait on for its
    /// failure did not fail, with that need. (Absent from snapshots taken
    /// before needs had conditions.)
    #[serde(default, with = "pairs")]
    pub(super) declined: BTreeMap<u32, u32>,
    pub(super) attempt_started: Vec<Millis>,
    pub(super) first_started: Vec<Millis>,
    pub(super) finished: Vec<Millis>,
    pub(super) busy: Vec<u64>,
    pub(super) outputs: Outputs,
    #[serde(with = "pairs")]
    pub(super) failures: BTreeMap<u32, Failure>,
    #[serde(with = "pairs")]
    pub(super) skip_reasons: BTreeMap<u32, SkipReason>,
    #[serde(with = "pairs")]
    pub(super) artifacts: BTreeMap<u32, Box<[Artifact]>>,
    /// Tasks whose result came from an earlier run, by that run's id.
    /// (Absent from snapshots taken before results could be reused.)
    #[serde(default, with = "pairs")]
    pub(super) reused: BTreeMap<u32, Box<str>>,
    /// Iterations a `repeat` task has finished without its `until` holding.
    #[serde(default, with = "pairs")]
    pub(super) iterations: BTreeMap<u32, u32>,
    /// Per `foreach`/`swarm` task, the items (copies) that succeeded in an
    /// attempt that has not ended the task yet, with their outputs.
    #[serde(default, with = "copy_pairs")]
    pub(super) copies: BTreeMap<u32, CopyOutputs>,
    pub(super) final_count: usize,
    pub(super) running: u32,
    /// Approval tasks waiting for a decision. (This and the two below are
    /// absent from snapshots taken before approvals, pauses and controls.)
    #[serde(default)]
    pub(super) waiting: u32,
    /// No task starts while set (a pause).
    #[serde(default)]
    pub(super) paused: bool,
    /// Control requests read so far: where a resumed run reads on.
    #[serde(default)]
    pub(super) controls: u64,
    pub(super) failed_tasks: u32,
    /// The run's own timeout passed: no verdict turns that into success.
    #[serde(default)]
    pub(super) timed_out: bool,

    /// Ready tasks, as ranks in (priority desc, id asc) order.
    pub(super) ready: Heap<u32>,
    /// Tasks whose needs are final but which must be skipped, in order.
    pub(super) settle: VecDeque<u32>,
    /// Retries and approval timeouts: when, and for which task.
    pub(super) timers: Heap<(Millis, u32)>,
    pub(super) key_running: Vec<u32>,
    /// Ranks waiting because their key is full, in rank order per key.
    pub(super) parked: Vec<VecDeque<u32>>,
    /// Whether the running attempts were told to stop; once is enough, as
    /// nothing starts after the run begins to end.
    pub(super) kills_sent: bool,
    pub(super) compensation_order: Vec<u32>,
    pub(super) compensation_cursor: usize,
    pub(super) compensating: Option<u32>,
    pub(super) compensation_failed: bool,
    /// Compensations started per task: each is retried by the task's
    /// retry policy.
    #[serde(default, with = "pairs")]
    pub(super) compensation_attempts: BTreeMap<u32, u32>,
    /// When a failed compensation is tried again.
    #[serde(default)]
    pub(super) compensation_retry_at: Option<Millis>,
}

impl Progress {
    /// A run of `count` tasks that has not started, with `keys`
    /// concurrency keys.
    pub(super) fn new(count: usize, keys: usize) -> Progress {
        Progress {
            phase: Phase::Pending,
            reason: None,
            started_at: None,
            finished_at: None,
            deadline: None,
            status: vec![TaskStatus::Pending; count],
            attempts: vec![0; count],
            unmet: vec![0; count],
            live_needs: vec![0; count],
            blocked_by: vec![u32::MAX; count],
            declined: BTreeMap::new(),
            attempt_started: vec![Millis(0); count],
            first_started: vec![Millis(0); count],
            finished: vec![Millis(0); count],
            busy: vec![0; count],
            outputs: Outputs(vec![None; count]),
            failures: BTreeMap::new(),
            skip_reasons: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            reused: BTreeMap::new(),
            iterations: BTreeMap::new(),
            copies: BTreeMap::new(),
            final_count: 0,
            running: 0,
            waiting: 0,
            paused: false,
            controls: 0,
            failed_tasks: 0,
            timed_out: false,
            ready: Heap::default(),
            settle: VecDeque::new(),
            timers: Heap::default(),
            key_running: vec![0; keys],
            parked: vec![VecDeque::new(); keys],
            kills_sent: false,
            compensation_order: Vec::new(),
            compensation_cursor: 0,
            compensating: None,
            compensation_failed: false,
            compensation_attempts: BTreeMap::new(),
            compensation_retry_at: None,
        }
    }
}

/// A min-heap whose encoding (and equality) is its sorted contents, so a
/// heap rebuilt from a snapshot equals the one that was saved.
#[derive(Clone, Debug)]
pub(super) struct Heap<T: Ord>(pub(super) BinaryHeap<Reverse<T>>);

impl<T: Ord> Default for Heap<T> {
    fn default() -> Heap<T> {
        Heap(BinaryHeap::new())
    }
}

impl<T: Ord> std::ops::Deref for Heap<T> {
    type Target = BinaryHeap<Reverse<T>>;

    fn deref(&self) -> &BinaryHeap<Reverse<T>> {
        &self.0
    }
}

impl<T: Ord> std::ops::DerefMut for Heap<T> {
    fn deref_mut(&mut self) -> &mut BinaryHeap<Reverse<T>> {
        &mut self.0
    }
}

impl<T: Ord + Copy> Heap<T> {
    fn sorted(&self) -> Vec<T> {
        let mut all: Vec<T> = self.0.iter().map(|entry| entry.0).collect();
        all.sort_unstable();
        all
    }
}

impl<T: Ord + Copy> PartialEq for Heap<T> {
    fn eq(&self, other: &Heap<T>) -> bool {
        self.sorted() == other.sorted()
    }
}

impl<T: Ord + Copy + Serialize> Serialize for Heap<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.sorted().serialize(serializer)
    }
}

impl<'de, T: Ord + Deserialize<'de>> Deserialize<'de> for Heap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Heap<T>, D::Error> {
        let all = Vec::<T>::deserialize(deserializer)?;
        Ok(Heap(all.into_iter().map(Reverse).collect()))
    }
}

/// Task outputs as templates read them, by task; encoded as the sorted
/// list of `(task, output)` of the tasks that have one.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Outputs(pub(super) Vec<Option<Value>>);

impl std::ops::Deref for Outputs {
    type Target = Vec<Option<Value>>;

    fn deref(&self) -> &Vec<Option<Value>> {
        &self.0
    }
}

impl std::ops::DerefMut for Outputs {
    fn deref_mut(&mut self) -> &mut Vec<Option<Value>> {
        &mut self.0
    }
}

impl Serialize for Outputs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let present: Vec<(u32, &Value)> = self
            .0
            .iter()
            .enumerate()
            .filter_map(|(task, output)| Some((task as u32, output.as_ref()?)))
            .collect();
        present.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Outputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Outputs, D::Error> {
        let present = Vec::<(u32, serde_json::Value)>::deserialize(deserializer)?;
        // Sized by the largest task named; the restore checks it against
        // the workflow and refuses one that names a task it lacks.
        let size = present
            .iter()
            .map(|(task, _)| *task as usize + 1)
            .max()
            .unwrap_or(0);
        let mut outputs = vec![None; size];
        for (task, output) in present {
            outputs[task as usize] = Some(Value::from(minijinja::value::Serde(output)));
        }
        Ok(Outputs(outputs))
    }
}

/// Maps by task encoded as sorted `(task, value)` lists.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer, V: Serialize>(
        map: &BTreeMap<u32, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(&u32, &V)> = map.iter().collect();
        pairs.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u32, V>, D::Error> {
        Ok(Vec::<(u32, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// Copies by task, each as a sorted `(copy, output)` list.
mod copy_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::CopyOutputs;

    type Encoded = Vec<(u32, Vec<(u32, Option<serde_json::Value>)>)>;

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<u32, CopyOutputs>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let encoded: Encoded = map
            .iter()
            .map(|(&task, done)| {
                let done = done
                    .iter()
                    .map(|(&copy, output)| (copy, output.clone()))
                    .collect();
                (task, done)
            })
            .collect();
        encoded.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u32, CopyOutputs>, D::Error> {
        Ok(Encoded::deserialize(deserializer)?
            .into_iter()
            .map(|(task, done)| (task, done.into_iter().collect()))
            .collect())
    }
}
