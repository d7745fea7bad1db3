//! Results a run takes from an earlier run instead of running (`baton
//! rerun`): loaded once when the run starts or resumes.

use baton_core::run::{Artifact, RunState, TaskStatus};
use baton_store::{ArtifactRole, Reuse, Store};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use crate::error::Error;

/// A result an attempt can take instead of running.
#[derive(Clone, Debug)]
pub(crate) struct Reusable {
    pub(crate) run: String,
    pub(crate) output: Option<Value>,
    pub(crate) artifacts: Vec<Artifact>,
}

/// What a rerun takes from its earlier run, by task, and what it must run
/// afresh.
#[derive(Default)]
pub(crate) struct Reused {
    pub(crate) results: FxHashMap<u32, Reusable>,
    pub(crate) fresh: FxHashSet<u32>,
}

/// Loads the results `reuse` names from its run; each must have succeeded.
pub(crate) async fn reusable(
    store: &dyn Store,
    state: &RunState,
    reuse: Option<&Reuse>,
) -> Result<Reused, Error> {
    let Some(reuse) = reuse else {
        return Ok(Reused::default());
    };
    let source = &reuse.run_id;
    let rows = store.tasks(source).await?;
    let mut outputs: FxHashMap<u32, Value> = store.outputs(source).await?.into_iter().collect();
    let artifacts = store.artifacts(source).await?;
    let mut reused = Reused::default();
    for id in &reuse.tasks {
        let not_reusable = || Error::NotReusable {
            run: source.clone(),
            task: id.clone(),
        };
        let row = rows
            .iter()
            .find(|row| row.id == *id && row.status == TaskStatus::Succeeded)
            .ok_or_else(not_reusable)?;
        let task = state.task_index(id).ok_or_else(not_reusable)?;
        reused.results.insert(
            task,
            Reusable {
                run: source.clone(),
                output: outputs.remove(&row.task),
                artifacts: artifacts
                    .iter()
                    .filter(|stored| {
                        stored.task == row.task
                            && stored.attempt == row.attempts
                            && stored.role == ArtifactRole::Produced
                    })
                    .map(|stored| stored.artifact.clone())
                    .collect(),
            },
        );
    }
    reused.fresh = reuse
        .fresh
        .iter()
        .filter_map(|id| state.task_index(id))
        .collect();
    Ok(reused)
}
