//! Checking a recorded run after the fact: its provenance chain recomputed
//! from its record and events (`baton verify`), the chain exported
//! (`baton provenance`), its trace digest, and a replay of its decisions
//! (`baton replay`). Nothing here runs a task.

use std::collections::HashMap;
use std::sync::Arc;

use baton_core::run::{Chain, Digest, Divergence, Event, Provenance, RunState, Trace};
use serde::Serialize;

use crate::config::setup_of;
use crate::engine::Engine;
use crate::error::Error;
use crate::run::record_of;

/// A run's provenance chain, as `baton provenance --json` exports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProvenanceChain {
    pub run_id: String,
    /// Seals every record, in task order.
    pub root: Digest,
    pub records: Vec<Provenance>,
}

/// What `baton verify` found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verification {
    pub run_id: String,
    /// The root recomputed from the events.
    pub root: Digest,
    /// Records recomputed and compared.
    pub records: usize,
    /// The first stored record that does not match, if any.
    pub mismatch: Option<Mismatch>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mismatch {
    pub task: String,
    pub problem: String,
}

impl Engine {
    /// A fresh state for a recorded run, its events, and its record's
    /// workflow checked.
    async fn recorded_log(&self, run_id: &str) -> Result<(RunState, Vec<Event>), Error> {
        let record = self.store.run(run_id).await?;
        let workflow = Arc::unwrap_or_clone(record.workflow.clone());
        let valid = Arc::new(baton_core::check(workflow).map_err(Error::Invalid)?);
        let events = self.store.events(run_id).await?;
        Ok((RunState::new(valid, setup_of(&record)), events))
    }

    /// The stored provenance chain of a run and its root.
    pub async fn provenance(&self, run_id: &str) -> Result<ProvenanceChain, Error> {
        let (state, _) = self.recorded_log(run_id).await?;
        let records = self.store.provenance(run_id).await?;
        let root = Chain::from_records(&state, &records).root();
        Ok(ProvenanceChain {
            run_id: run_id.to_owned(),
            root,
            records,
        })
    }

    /// Recomputes every provenance record from the run's record and events
    /// and compares it with the stored one, in the order the tasks ended.
    pub async fn verify(&self, run_id: &str) -> Result<Verification, Error> {
        let (mut state, events) = self.recorded_log(run_id).await?;
        let mut stored: HashMap<String, Provenance> = self
            .store
            .provenance(run_id)
            .await?
            .into_iter()
            .map(|record| (record.task.clone(), record))
            .collect();
        let outputs: HashMap<u32, serde_json::Value> =
            self.store.outputs(run_id).await?.into_iter().collect();
        let mut chain = Chain::new(state.task_count());
        let mut records = 0;
        let mut mismatch = None;
        for (seq, event) in events.iter().enumerate() {
            state.apply(event).map_err(|why| Error::Corrupt {
                run: run_id.to_owned(),
                seq: seq as u64,
                why,
            })?;
            let Some(expected) = record_of(&mut chain, &state, event) else {
                continue;
            };
            records += 1;
            if mismatch.is_some() {
                continue;
            }
            let output = match event {
                Event::TaskSucceeded { task, output, .. } => (*task, output.as_deref().cloned()),
                _ => continue,
            };
            mismatch = compare(&expected, stored.remove(&expected.task), &outputs, output);
        }
        if mismatch.is_none()
            && let Some(task) = stored.into_keys().min()
        {
            mismatch = Some(Mismatch {
                task,
                problem: "a record is stored for a task that did not succeed".to_owned(),
            });
        }
        Ok(Verification {
            run_id: run_id.to_owned(),
            root: chain.root(),
            records,
            mismatch,
        })
    }

    /// The digest of the run's recorded events.
    pub async fn trace(&self, run_id: &str) -> Result<Digest, Error> {
        let (_, events) = self.recorded_log(run_id).await?;
        Ok(Trace::of(&events))
    }

    /// Re-drives the state machine through the run's recorded results
    /// without running anything: the trace digest, or the first recorded
    /// decision it would not make.
    pub async fn replay(&self, run_id: &str) -> Result<Result<Digest, Divergence>, Error> {
        let (mut state, events) = self.recorded_log(run_id).await?;
        Ok(baton_core::run::replay(&mut state, &events))
    }
}

/// The first way a stored record (and the stored output) differs from the
/// one recomputed from events.
fn compare(
    expected: &Provenance,
    stored: Option<Provenance>,
    outputs: &HashMap<u32, serde_json::Value>,
    (task, output): (u32, Option<serde_json::Value>),
) -> Option<Mismatch> {
    let problem = |problem: String| {
        Some(Mismatch {
            task: expected.task.clone(),
            problem,
        })
    };
    let Some(stored) = stored else {
        return problem("its record is missing".to_owned());
    };
    if stored.seal() != stored.digest {
        return problem(format!(
            "its stored record does not seal to its digest {} (the record was altered)",
            stored.digest
        ));
    }
    let fields = [
        ("spec", expected.spec, stored.spec),
        ("inputs", expected.inputs, stored.inputs),
        ("output", expected.output, stored.output),
        ("artifacts", expected.artifacts, stored.artifacts),
    ];
    for (name, recomputed, kept) in fields {
        if recomputed != kept {
            return problem(format!(
                "its {name} digest is {kept}, but the events give {recomputed}"
            ));
        }
    }
    if expected.parents != stored.parents {
        return problem("its parents' digests differ from those the events give".to_owned());
    }
    if expected.digest != stored.digest {
        return problem(format!(
            "its digest is {}, but the events give {}",
            stored.digest, expected.digest
        ));
    }
    if outputs.get(&task) != output.as_ref() {
        return problem("its stored output differs from the one its event records".to_owned());
    }
    None
}
