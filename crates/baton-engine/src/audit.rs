//! Checking a recorded run after the fact: its provenance chain recomputed
//! from its record and events, its log checked dense and whole, its
//! checkpoints against its events and the store's own integrity (`baton
//! verify`); the chain exported (`baton provenance`), its trace digest, a
//! replay of its decisions (`baton replay`), its events checked as they are
//! read (`baton events`). Nothing here runs a task.

use std::collections::HashMap;
use std::sync::Arc;

use baton_core::run::{Chain, Digest, Divergence, Event, Provenance, RunState, Trace};
use baton_store::CheckpointInfo;
use serde::Serialize;

use crate::config::setup_of;
use crate::engine::Engine;
use crate::error::Error;
use crate::run::record_of;

/// A run's provenance chain, as `baton provenance --json` exports it.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProvenanceChain {
    pub run_id: String,
    /// Seals every record, in task order.
    pub root: Digest,
    pub records: Vec<Provenance>,
}

/// What `baton verify` found.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Verification {
    pub run_id: String,
    /// The root recomputed from the events.
    pub root: Digest,
    /// Records recomputed and compared.
    pub records: usize,
    /// The first stored record that does not match, if any.
    pub mismatch: Option<Mismatch>,
    /// Events read, every one following the state before it.
    pub events: u64,
    /// Checkpoints that match the state their events rebuild.
    pub checkpoints: usize,
    /// What is damaged: the log (a gap, a count that does not add up, an
    /// event that cannot follow), a checkpoint, the store's own pages.
    pub damage: Vec<String>,
}

impl Verification {
    /// Whether nothing was found wrong.
    pub fn is_sound(&self) -> bool {
        self.mismatch.is_none() && self.damage.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Mismatch {
    pub task: String,
    pub problem: String,
}

impl Engine {
    /// A fresh state for a recorded run, its events, and its record's
    /// workflow checked.
    async fn recorded_log(&self, run_id: &str) -> Result<(RunState, Vec<Event>), Error> {
        let record = self.store.run(run_id).await?;
        let events = self.store.events(run_id).await?;
        let state = tokio::task::spawn_blocking(move || {
            let workflow = Arc::unwrap_or_clone(Arc::clone(&record.workflow));
            let valid = Arc::new(baton_core::check(workflow).map_err(Error::Invalid)?);
            Ok::<_, Error>(RunState::new(valid, setup_of(&record)))
        })
        .await
        .map_err(|error| Error::Aborted(error.to_string()))??;
        Ok((state, events))
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

    /// Checks a recorded run: the store's integrity, its log dense and
    /// whole with every event following the state before it, each
    /// checkpoint against the state its events rebuild, and every
    /// provenance record recomputed from the events and compared with the
    /// stored one, in the order the tasks ended. What is damaged is
    /// reported in the answer, not as an error.
    pub async fn verify(&self, run_id: &str) -> Result<Verification, Error> {
        let mut damage: Vec<String> = self
            .store
            .integrity()
            .await?
            .into_iter()
            .map(|problem| format!("the store: {problem}"))
            .collect();
        let mut verification = Verification {
            run_id: run_id.to_owned(),
            root: Digest::default(),
            records: 0,
            mismatch: None,
            events: 0,
            checkpoints: 0,
            damage: Vec::new(),
        };
        let (state, events) = match self.recorded_log(run_id).await {
            Ok(log) => log,
            Err(error @ Error::Store(baton_store::Error::Corrupt { .. }))
            | Err(error @ Error::Store(baton_store::Error::Damaged { .. })) => {
                damage.push(error.to_string());
                verification.damage = damage;
                return Ok(verification);
            }
            Err(error) => return Err(error),
        };
        let stored: HashMap<String, Provenance> = self
            .store
            .provenance(run_id)
            .await?
            .into_iter()
            .map(|record| (record.task.clone(), record))
            .collect();
        let outputs: HashMap<u32, serde_json::Value> =
            self.store.outputs(run_id).await?.into_iter().collect();
        let mut checkpoints = Vec::new();
        for info in self.store.checkpoints(run_id).await? {
            let sealed = self.store.checkpoint(run_id, info.events).await;
            checkpoints.push((info, sealed));
        }
        let run = run_id.to_owned();
        let checked = tokio::task::spawn_blocking(move || {
            recompute(&run, state, &events, stored, &outputs, checkpoints)
        })
        .await
        .map_err(|error| Error::Aborted(error.to_string()))?;
        damage.extend(checked.damage);
        Ok(Verification { damage, ..checked })
    }

    /// A recorded run's events, each checked to follow the state the ones
    /// before it left: a log that is not whole, or holds an event that
    /// cannot follow, is an error naming the run and the event.
    pub async fn events(&self, run_id: &str) -> Result<Vec<Event>, Error> {
        let (mut state, events) = self.recorded_log(run_id).await?;
        let run = run_id.to_owned();
        tokio::task::spawn_blocking(move || {
            for (seq, event) in events.iter().enumerate() {
                state.apply(event).map_err(|why| Error::Corrupt {
                    run: run.clone(),
                    seq: seq as u64,
                    why,
                })?;
            }
            Ok(events)
        })
        .await
        .map_err(|error| Error::Aborted(error.to_string()))?
    }

    /// The digest of the run's recorded events, each checked to follow the
    /// ones before it.
    pub async fn trace(&self, run_id: &str) -> Result<Digest, Error> {
        Ok(Trace::of(&self.events(run_id).await?))
    }

    /// Re-drives the state machine through the run's recorded results
    /// without running anything: the trace digest, or the first recorded
    /// decision it would not make.
    pub async fn replay(&self, run_id: &str) -> Result<Result<Digest, Divergence>, Error> {
        let (mut state, events) = self.recorded_log(run_id).await?;
        Ok(baton_core::run::replay(&mut state, &events))
    }
}

/// Replays `events` into `state`, recomputing each provenance record and
/// comparing it (and the stored output) with what is stored, and each
/// checkpoint with the state at its event.
fn recompute(
    run_id: &str,
    mut state: RunState,
    events: &[Event],
    mut stored: HashMap<String, Provenance>,
    outputs: &HashMap<u32, serde_json::Value>,
    checkpoints: Vec<(
        CheckpointInfo,
        Result<baton_core::run::Sealed, baton_store::Error>,
    )>,
) -> Verification {
    let mut damage = Vec::new();
    let mut snapshots = HashMap::new();
    let mut matching = 0;
    for (info, sealed) in checkpoints {
        match sealed
            .map_err(|error| error.to_string())
            .and_then(|sealed| sealed.open().map_err(|error| error.to_string()))
        {
            Ok(snapshot) => {
                snapshots.insert(info.events, snapshot);
            }
            Err(problem) => damage.push(format!(
                "the checkpoint at event {}: {problem}",
                info.events
            )),
        }
    }
    let mut chain = Chain::new(state.task_count());
    let mut records = 0;
    let mut mismatch = None;
    let mut folded = 0;
    let compare_snapshot = |state: &RunState, at: u64, damage: &mut Vec<String>| {
        snapshots.get(&at).map(|snapshot| {
            if *snapshot == state.snapshot(at) {
                true
            } else {
                damage.push(format!(
                    "the checkpoint at event {at} differs from the state its events rebuild"
                ));
                false
            }
        })
    };
    for (seq, event) in events.iter().enumerate() {
        if compare_snapshot(&state, seq as u64, &mut damage) == Some(true) {
            matching += 1;
        }
        if let Err(why) = state.apply(event) {
            damage.push(format!("run `{run_id}` is corrupt at event {seq}: {why}"));
            break;
        }
        folded += 1;
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
        mismatch = compare(&expected, stored.remove(&expected.task), outputs, output);
    }
    if folded == events.len() && compare_snapshot(&state, folded as u64, &mut damage) == Some(true)
    {
        matching += 1;
    }
    if let Some(beyond) = snapshots.keys().filter(|&&at| at > folded as u64).min() {
        damage.push(format!(
            "a checkpoint is taken at event {beyond}, past the log's {folded} events"
        ));
    }
    if mismatch.is_none()
        && damage.is_empty()
        && let Some(task) = stored.into_keys().min()
    {
        mismatch = Some(Mismatch {
            task,
            problem: "a record is stored for a task that did not succeed".to_owned(),
        });
    }
    Verification {
        run_id: run_id.to_owned(),
        root: chain.root(),
        records,
        mismatch,
        events: folded as u64,
        checkpoints: matching,
        damage,
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
