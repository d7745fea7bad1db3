//! What the loop writes with each batch of events besides the events: the
//! rows of the tasks they moved (with the provenance of those they
//! finished) and the attempts they ended. Computed while the events are
//! applied, in log order, so a verifier replaying the log makes the same
//! records.

use baton_core::run::{Chain, Digest, Event, Inadmissible, Provenance, RunState, TaskStatus};
use baton_store::{ArtifactRole, ArtifactRow, AttemptRow, AttemptStatus, TaskRow};
use rustc_hash::FxHashMap;

pub(crate) struct Recorder {
    /// Off for a store that keeps no read models.
    enabled: bool,
    pub(crate) chain: Chain,
    /// Per task, the batch it was last touched in.
    touched_in: Vec<u64>,
    batch: u64,
    touched: Vec<u32>,
    records: FxHashMap<u32, (Provenance, Option<Digest>)>,
    pub(crate) tasks: Vec<TaskRow>,
    pub(crate) attempts: Vec<AttemptRow>,
    pub(crate) artifacts: Vec<ArtifactRow>,
}

impl Recorder {
    pub(crate) fn new(chain: Chain, tasks: usize, enabled: bool) -> Recorder {
        Recorder {
            enabled,
            chain,
            touched_in: vec![0; if enabled { tasks } else { 0 }],
            batch: 1,
            touched: Vec::new(),
            records: FxHashMap::default(),
            tasks: Vec::new(),
            attempts: Vec::new(),
            artifacts: Vec::new(),
        }
    }

    /// Applies `event` to `state` and notes what it changes; an event the
    /// state refuses changes nothing here either.
    pub(crate) fn apply(
        &mut self,
        state: &mut RunState,
        event: &Event,
    ) -> Result<(), Inadmissible> {
        if !self.enabled {
            return state.apply(event);
        }
        let Some(task) = event.task() else {
            return state.apply(event);
        };
        state.admit(event)?;
        let was_running = matches!(
            state.status(task),
            TaskStatus::Running | TaskStatus::Waiting
        );
        state.apply(event)?;
        let seen = &mut self.touched_in[task as usize];
        if *seen != self.batch {
            *seen = self.batch;
            self.touched.push(task);
        }
        if let Event::TaskSucceeded { attempt, .. } = *event {
            // Keyed before the record links the task into the chain; a key
            // that no longer renders leaves the result uncached.
            let key = self
                .chain
                .cache_key(state, task, attempt)
                .and_then(Result::ok);
            if let Some(record) = record_of(&mut self.chain, state, event) {
                self.records.insert(task, (record, key));
            }
        }
        artifact_rows(event, &mut self.artifacts);
        if was_running && let Some(row) = ended_attempt(state, event) {
            self.attempts.push(row);
        }
        Ok(())
    }

    /// Ends a batch: the rows of the tasks it touched are in `tasks`.
    pub(crate) fn seal(&mut self, state: &RunState) {
        for task in self.touched.drain(..) {
            let (started_at, finished_at) = state.times(task);
            let (record, cache_key) = self
                .records
                .remove(&task)
                .map_or((None, None), |(record, key)| (Some(record), key));
            self.tasks.push(TaskRow {
                task,
                id: state.task(task).id.to_string(),
                status: state.status(task),
                attempts: state.attempts(task),
                started_at,
                finished_at,
                record,
                cache_key,
            });
        }
        self.batch += 1;
    }

    /// Forgets the rows of the last batch once written.
    pub(crate) fn clear(&mut self) {
        self.tasks.clear();
        self.attempts.clear();
        self.artifacts.clear();
    }
}

/// The artifact rows an event stores or consumes.
fn artifact_rows(event: &Event, rows: &mut Vec<ArtifactRow>) {
    let (task, attempt, role, artifacts) = match event {
        Event::ArtifactsStored {
            task,
            attempt,
            artifacts,
            ..
        } => (*task, *attempt, ArtifactRole::Produced, artifacts),
        Event::ArtifactsConsumed {
            task,
            attempt,
            artifacts,
            ..
        } => (*task, *attempt, ArtifactRole::Consumed, artifacts),
        _ => return,
    };
    rows.extend(artifacts.iter().map(|artifact| ArtifactRow {
        task,
        attempt,
        role,
        artifact: artifact.clone(),
    }));
}

/// The row of the attempt a just-applied event ended, if it ended one.
fn ended_attempt(state: &RunState, event: &Event) -> Option<AttemptRow> {
    let (task, at, status, error) = match event {
        Event::TaskSucceeded { task, at, .. } | Event::TaskIterated { task, at, .. } => {
            (*task, *at, AttemptStatus::Succeeded, None)
        }
        Event::TaskFailed {
            task, at, failure, ..
        } => (
            *task,
            *at,
            AttemptStatus::Failed,
            Some(failure.message.clone()),
        ),
        Event::TaskCancelled { task, at } => (*task, *at, AttemptStatus::Cancelled, None),
        Event::AttemptLost { task, at, .. } => (*task, *at, AttemptStatus::Lost, None),
        _ => return None,
    };
    Some(AttemptRow {
        task,
        attempt: state.attempts(task),
        status,
        started_at: state.attempt_started(task),
        finished_at: at,
        error,
    })
}

/// The provenance record a just-applied event makes, if it finished a task.
pub(crate) fn record_of(chain: &mut Chain, state: &RunState, event: &Event) -> Option<Provenance> {
    match event {
        Event::TaskSucceeded {
            task,
            attempt,
            output,
            ..
        } => Some(chain.record(
            state,
            *task,
            *attempt,
            output.as_deref(),
            state.artifacts(*task),
        )),
        _ => None,
    }
}
