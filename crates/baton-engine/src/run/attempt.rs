//! The file work around one attempt: a result reused instead of running,
//! the needs' artifacts placed before it runs, spawned tasks after, an
//! output too large to keep inline stored, its own artifacts collected.

use std::sync::Arc;

use baton_core::run::{Artifact, Digest, Failure, FailureKind, Millis, Reduction};
use baton_store::Store;
use serde_json::Value;

use super::report::Files;
use super::reuse::Reusable;
use super::spawn::Spawner;
use crate::artifacts::{ArtifactError, Cas, OUTPUT_ARTIFACTS};
use crate::executor::{Attempt, Carried, Executor, Executors, Finished, Kill, Outcome};
use crate::logs::{OUTPUT_FILE, attempt_file};

/// What an attempt runs: the task, or a swarm's copies of it (a foreach's
/// items), each through the executors.
pub(crate) enum Plan {
    One(Box<Attempt>),
    Copies {
        /// The attempt as a whole: where it works, what it is called.
        base: Box<Attempt>,
        copies: Vec<Attempt>,
        reduction: Reduction,
        finished: Finished,
    },
}

/// Where an attempt may take its result from instead of running.
pub(crate) enum Source {
    None,
    /// `baton rerun` reuses this task's earlier result.
    Rerun(Reusable),
    /// A `cache:` task: an earlier result under `key`, if new enough.
    Cache {
        key: Digest,
        fresh_after: Option<Millis>,
    },
}

/// The file work around one attempt: reuse, consumed and produced
/// artifacts. Blocking file and store work runs off the runtime threads.
pub(crate) struct AttemptFiles {
    /// For a task whose output may ask for tasks (`spawn`).
    pub(crate) spawner: Option<Spawner>,
    pub(crate) cas: Cas,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) source: Source,
    /// The artifacts of the task's needs.
    pub(crate) needs: Vec<Artifact>,
    /// Its own `artifacts:` patterns.
    pub(crate) declared: Vec<String>,
    /// Bytes of JSON above which the output is stored as an artifact.
    pub(crate) max_inline_output: usize,
}

impl AttemptFiles {
    pub(crate) async fn attempt(
        self,
        executors: Arc<Executors>,
        mut plan: Plan,
        killed: Kill,
    ) -> (Outcome, Files) {
        let first = match &plan {
            Plan::One(run) | Plan::Copies { base: run, .. } => run,
        };
        let dir = first.working_dir();
        let task_id = first.context.task_id.clone();
        let AttemptFiles {
            spawner,
            cas,
            store,
            source,
            needs,
            declared,
            max_inline_output,
        } = self;
        let found = match source {
            Source::None => None,
            Source::Rerun(reusable) => Some(reusable),
            Source::Cache { key, fresh_after } => store
                .cached(&key)
                .await
                .ok()
                .flatten()
                .filter(|hit| fresh_after.is_none_or(|after| hit.finished_at >= after))
                .map(|hit| Reusable {
                    run: hit.run_id,
                    output: hit.output,
                    artifacts: hit.artifacts,
                }),
        };
        if let Some(found) = found {
            let (cas, dir) = (cas.clone(), dir.clone());
            let artifacts = found.artifacts.clone();
            // A result whose files cannot be placed is run again instead.
            if blocking(move || cas.place(&dir, &artifacts)).await.is_ok() {
                let files = Files {
                    produced: found.artifacts,
                    reused_from: Some(found.run),
                    ..Files::default()
                };
                return (Outcome::Succeeded(found.output), files);
            }
        }
        let mut files = Files::default();
        // A remote worker's attempt has its files carried to and from its
        // worker: placed there, collected there, uploaded by digest.
        let carried = match &mut plan {
            Plan::One(run) if executors.is_remote(&run.resolved) => {
                let carried = Arc::new(Carried {
                    needs: needs.clone(),
                    declared: declared.clone(),
                    ..Carried::default()
                });
                run.carried = Some(Arc::clone(&carried));
                files.consumed.clone_from(&needs);
                Some(carried)
            }
            _ => None,
        };
        if !needs.is_empty() && carried.is_none() {
            let (cas, dir) = (cas.clone(), dir.clone());
            let placed = needs.clone();
            if let Err(error) = blocking(move || cas.place(&dir, &placed)).await {
                return (artifact_failure(error), files);
            }
            files.consumed = needs;
        }
        // A task that may spawn listens for a kill while its process runs
        // and while its spawned tasks do; spawned tasks a crash cut off go
        // on instead of the process running again.
        let (killed, spawning) = match spawner {
            Some(spawner) => {
                let (run_kill, run_killed) = tokio::sync::oneshot::channel();
                let (spawn_kill, spawn_killed) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    if killed.await.is_ok() {
                        let _ = run_kill.send(());
                        let _ = spawn_kill.send(());
                    }
                });
                match spawner.carried().await {
                    Ok(Some((handle, output))) => {
                        return (spawner.follow(handle, output, spawn_killed).await, files);
                    }
                    Ok(None) => (run_killed, Some((spawner, spawn_killed))),
                    Err(failure) => return (Outcome::Failed(failure), files),
                }
            }
            None => (killed, None),
        };
        // The file the output came in, once it is read: kept only while
        // nothing else holds the output.
        let handed_back = match &plan {
            Plan::One(run) => Some(attempt_file(&run.prefix, OUTPUT_FILE)),
            Plan::Copies { .. } => None,
        };
        let mut outcome = match plan {
            Plan::One(run) => executors.execute(*run, killed).await,
            Plan::Copies {
                copies,
                reduction,
                finished,
                ..
            } => {
                executors
                    .run_copies(copies, killed, reduction, finished)
                    .await
            }
        };
        if let Some(carried) = &carried {
            files.worker = carried
                .worker
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
        }
        if let Some((spawner, spawn_killed)) = spawning
            && let Outcome::Succeeded(Some(output)) = &mut outcome
            && Spawner::asks(output)
        {
            outcome = spawner.spawn(output.take(), spawn_killed).await;
        }
        let Outcome::Succeeded(output) = &mut outcome else {
            return (outcome, files);
        };
        let oversized = output
            .as_ref()
            .map(|value| serde_json::to_vec(value).unwrap_or_default())
            .filter(|bytes| bytes.len() > max_inline_output);
        if let Some(bytes) = oversized {
            let cas = cas.clone();
            match blocking(move || store_output(&cas, &task_id, &bytes)).await {
                Ok((reference, artifact)) => {
                    *output = Some(reference);
                    files.produced.push(artifact);
                    // The artifact store holds it now: a second whole copy
                    // in the run's files would only take the space again.
                    if let Some(path) = handed_back {
                        let _ = tokio::fs::remove_file(path).await;
                    }
                }
                Err(error) => return (artifact_failure(error), files),
            }
        }
        if let Some(carried) = carried {
            let produced = std::mem::take(
                &mut *carried
                    .produced
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            files.produced.extend(produced);
            files.produced.sort_by(|a, b| a.path.cmp(&b.path));
            return (outcome, files);
        }
        if declared.is_empty() {
            return (outcome, files);
        }
        match blocking(move || cas.collect(&dir, &declared)).await {
            Ok(produced) => {
                files.produced.extend(produced);
                files.produced.sort_by(|a, b| a.path.cmp(&b.path));
                (outcome, files)
            }
            Err(error) => (artifact_failure(error), files),
        }
    }
}

/// Stores an output too large to keep inline (its JSON `bytes`) as an
/// artifact, and returns the reference the run keeps instead, so events,
/// rows and templates stay small; the tasks that need it find the file in
/// their working directory at the reference's `path`.
fn store_output(cas: &Cas, task: &str, bytes: &[u8]) -> Result<(Value, Artifact), ArtifactError> {
    let (digest, size) = cas.put_bytes(bytes)?;
    let artifact = Artifact {
        path: format!("{OUTPUT_ARTIFACTS}/{task}.json"),
        digest,
        size,
    };
    let reference = serde_json::json!({
        "output_artifact": {"path": artifact.path, "sha256": digest.to_string(), "size": size}
    });
    Ok((reference, artifact))
}

fn artifact_failure(error: String) -> Outcome {
    Outcome::Failed(Failure::new(FailureKind::Error, error))
}

/// Runs blocking file or store work on tokio's blocking pool; a panic in it
/// comes back as an error.
async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(error) => Err(format!("file work stopped: {error}")),
    }
}
