//! The in-memory store: each run's log and read models behind one mutex.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use baton_core::run::{Control, Digest, Event, Millis, Provenance, RunStatus, Sealed};

use crate::{
    ApiKey, Appended, ArtifactRow, AttemptRow, Batch, CacheHit, CheckpointInfo, Error, FeedBatch,
    Projection, Result, RunFilter, RunRecord, RunSummary, Store, StoredWorkflow, TaskRow,
};

#[derive(Debug, Default)]
pub struct MemoryStore {
    runs: Mutex<HashMap<String, Run>>,
    /// Every appended batch as (run, first seq, count); a batch's position
    /// is its index + 1. Locked after `runs` when both are.
    feed: Mutex<Vec<(String, u64, u64)>>,
    catalog: Mutex<Catalog>,
    log_only: bool,
}

/// Registered workflows by (name, version), and API keys by id.
#[derive(Debug, Default)]
struct Catalog {
    workflows: BTreeMap<(String, u32), StoredWorkflow>,
    keys: BTreeMap<String, ApiKey>,
}

impl MemoryStore {
    /// A store that keeps runs' records and event logs but no read models:
    /// what benchmarks of the engine's own speed use.
    pub fn log_only() -> MemoryStore {
        MemoryStore {
            log_only: true,
            ..MemoryStore::default()
        }
    }
}

/// One run: its record (absent for a log appended without one), its events
/// and read models, in creation order.
#[derive(Debug)]
struct Run {
    record: Option<RunRecord>,
    events: Vec<Event>,
    summary: RunSummary,
    created: usize,
    tasks: BTreeMap<u32, TaskRow>,
    attempts: BTreeMap<(u32, u32), AttemptRow>,
    outputs: BTreeMap<u32, serde_json::Value>,
    artifacts: Vec<ArtifactRow>,
    checkpoints: Vec<Sealed>,
    controls: Vec<Control>,
}

impl Store for MemoryStore {
    fn create_run(&self, record: &RunRecord) -> Appended {
        let mut runs = self.lock();
        if runs.contains_key(&record.run_id) {
            return Appended::done(Err(Error::RunExists(record.run_id.clone())));
        }
        let created = runs.len();
        let mut run = Run::new(&record.run_id, &record.workflow.name, created);
        run.record = Some(record.clone());
        runs.insert(record.run_id.clone(), run);
        Appended::done(Ok(()))
    }

    fn run(&self, run: &str) -> Result<RunRecord> {
        self.lock()
            .get(run)
            .and_then(|run| run.record.clone())
            .ok_or_else(|| Error::UnknownRun(run.to_owned()))
    }

    fn summary(&self, run: &str) -> Result<RunSummary> {
        self.read(run, |run| Some(run.summary.clone()))
    }

    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let runs = self.lock();
        let mut all: Vec<&Run> = runs
            .values()
            .filter(|run| filter.admits(&run.summary))
            .collect();
        let order = |run: &Run| {
            std::cmp::Reverse((run.summary.started_at.unwrap_or_default(), run.created))
        };
        all.sort_by_key(|run| order(run));
        let skip = match &filter.after {
            None => 0,
            Some(after) => {
                let cursor = runs
                    .get(after)
                    .map(order)
                    .ok_or_else(|| Error::UnknownRun(after.clone()))?;
                all.partition_point(|run| order(run) <= cursor)
            }
        };
        Ok(all
            .into_iter()
            .skip(skip)
            .take(filter.limit)
            .map(|run| run.summary.clone())
            .collect())
    }

    fn write(&self, run: &str, first_seq: u64, batch: Batch<'_>) -> Appended {
        Appended::done(self.write_now(run, first_seq, batch))
    }

    fn events_from(&self, run: &str, from: u64) -> Result<Vec<Event>> {
        self.read(run, |run| {
            if run.events.is_empty() {
                return None;
            }
            let from = (from as usize).min(run.events.len());
            Some(run.events[from..].to_vec())
        })
    }

    fn tasks(&self, run: &str) -> Result<Vec<TaskRow>> {
        self.read(run, |run| Some(run.tasks.values().cloned().collect()))
    }

    fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>> {
        self.read(run, |run| Some(run.attempts.values().cloned().collect()))
    }

    fn outputs(&self, run: &str) -> Result<Vec<(u32, serde_json::Value)>> {
        self.read(run, |run| {
            Some(
                run.outputs
                    .iter()
                    .map(|(&task, output)| (task, output.clone()))
                    .collect(),
            )
        })
    }

    fn provenance(&self, run: &str) -> Result<Vec<Provenance>> {
        self.read(run, |run| {
            Some(
                run.tasks
                    .values()
                    .filter_map(|row| row.record.clone())
                    .collect(),
            )
        })
    }

    fn cached(&self, key: &Digest) -> Result<Option<CacheHit>> {
        let runs = self.lock();
        let newest = runs
            .values()
            .flat_map(|run| run.tasks.values().map(move |row| (run, row)))
            .filter(|(_, row)| row.cache_key == Some(*key))
            .filter_map(|(run, row)| Some((run, row, row.record.as_ref()?)))
            .max_by_key(|(run, row, _)| (run.created, row.task));
        Ok(newest.map(|(run, row, record)| CacheHit {
            run_id: run.summary.run_id.clone(),
            record: record.clone(),
            output: run.outputs.get(&row.task).cloned(),
            artifacts: run
                .artifacts
                .iter()
                .filter(|stored| {
                    stored.task == row.task
                        && stored.attempt == record.attempt
                        && stored.role == crate::ArtifactRole::Produced
                })
                .map(|stored| stored.artifact.clone())
                .collect(),
            finished_at: row.finished_at.unwrap_or_default(),
        }))
    }

    fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>> {
        self.read(run, |run| Some(run.artifacts.clone()))
    }

    fn delete_run(&self, run: &str) -> Appended {
        let mut runs = self.lock();
        let answer = match runs.get(run) {
            None => Err(Error::UnknownRun(run.to_owned())),
            Some(found) if !found.summary.status.is_final() => {
                Err(Error::Unfinished(run.to_owned()))
            }
            Some(_) => {
                runs.remove(run);
                Ok(())
            }
        };
        Appended::done(answer)
    }

    fn artifact_digests(&self) -> Result<Vec<Digest>> {
        let mut digests: Vec<Digest> = self
            .lock()
            .values()
            .flat_map(|run| run.artifacts.iter().map(|row| row.artifact.digest))
            .collect();
        digests.sort_unstable();
        digests.dedup();
        Ok(digests)
    }

    fn put_checkpoint(&self, run: &str, sealed: &Sealed) -> Appended {
        let mut runs = self.lock();
        let Some(run) = runs.get_mut(run) else {
            return Appended::done(Err(Error::UnknownRun(run.to_owned())));
        };
        run.checkpoints.retain(|kept| kept.events != sealed.events);
        run.checkpoints.push(sealed.clone());
        run.checkpoints.sort_by_key(|kept| kept.events);
        Appended::done(Ok(()))
    }

    fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        self.read(run, |run| {
            Some(
                run.checkpoints
                    .iter()
                    .rev()
                    .map(|sealed| CheckpointInfo {
                        events: sealed.events,
                        digest: sealed.digest,
                        size: sealed.data.len() as u64,
                    })
                    .collect(),
            )
        })
    }

    fn checkpoint(&self, run: &str, events: u64) -> Result<Sealed> {
        let found = self.read(run, |run| {
            Some(
                run.checkpoints
                    .iter()
                    .find(|sealed| sealed.events == events)
                    .cloned(),
            )
        })?;
        found.ok_or_else(|| Error::NoCheckpoint {
            run: run.to_owned(),
            events,
        })
    }

    fn request(&self, run: &str, control: &Control) -> Appended {
        let mut runs = self.lock();
        Appended::done(match runs.get_mut(run) {
            Some(run) => {
                run.controls.push(control.clone());
                Ok(())
            }
            None => Err(Error::UnknownRun(run.to_owned())),
        })
    }

    fn controls(&self, run: &str, from: u64) -> Result<Vec<Control>> {
        self.read(run, |run| {
            Some(
                run.controls
                    .get(from as usize..)
                    .unwrap_or_default()
                    .to_vec(),
            )
        })
    }

    fn put_workflow(&self, workflow: &StoredWorkflow) -> Appended {
        let mut catalog = self.catalog();
        let key = (workflow.name.clone(), workflow.version);
        Appended::done(match catalog.workflows.entry(key) {
            std::collections::btree_map::Entry::Occupied(_) => Err(Error::VersionExists {
                name: workflow.name.clone(),
                version: workflow.version,
            }),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(workflow.clone());
                Ok(())
            }
        })
    }

    fn workflow(&self, name: &str, version: Option<u32>) -> Result<StoredWorkflow> {
        let versions = self.workflow_versions(name)?;
        match version {
            None => versions.last().cloned(),
            Some(version) => versions
                .into_iter()
                .find(|stored| stored.version == version),
        }
        .ok_or_else(|| match version {
            Some(version) => Error::UnknownVersion {
                name: name.to_owned(),
                version,
            },
            None => Error::UnknownWorkflow(name.to_owned()),
        })
    }

    fn workflows(&self) -> Result<Vec<StoredWorkflow>> {
        let catalog = self.catalog();
        let mut latest: BTreeMap<&str, &StoredWorkflow> = BTreeMap::new();
        for ((name, _), stored) in &catalog.workflows {
            latest.insert(name, stored);
        }
        Ok(latest.into_values().cloned().collect())
    }

    fn workflow_versions(&self, name: &str) -> Result<Vec<StoredWorkflow>> {
        let versions: Vec<StoredWorkflow> = self
            .catalog()
            .workflows
            .range((name.to_owned(), 0)..=(name.to_owned(), u32::MAX))
            .map(|(_, stored)| stored.clone())
            .collect();
        if versions.is_empty() {
            return Err(Error::UnknownWorkflow(name.to_owned()));
        }
        Ok(versions)
    }

    fn delete_workflow(&self, name: &str) -> Appended {
        let mut catalog = self.catalog();
        let before = catalog.workflows.len();
        catalog.workflows.retain(|(stored, _), _| stored != name);
        Appended::done(if catalog.workflows.len() == before {
            Err(Error::UnknownWorkflow(name.to_owned()))
        } else {
            Ok(())
        })
    }

    fn put_key(&self, key: &ApiKey) -> Appended {
        let mut catalog = self.catalog();
        Appended::done(match catalog.keys.entry(key.id.clone()) {
            std::collections::btree_map::Entry::Occupied(_) => Err(Error::Database {
                path: "(memory)".into(),
                message: format!("an API key `{}` already exists", key.id),
            }),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(key.clone());
                Ok(())
            }
        })
    }

    fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedBatch>> {
        let runs = self.lock();
        let feed = self
            .feed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(feed
            .iter()
            .enumerate()
            .skip(after.min(feed.len() as u64) as usize)
            .filter_map(|(index, (run_id, first_seq, count))| {
                let run = runs.get(run_id)?;
                let events = run
                    .events
                    .get(*first_seq as usize..(first_seq + count) as usize)?;
                Some(FeedBatch {
                    position: index as u64 + 1,
                    run_id: run_id.clone(),
                    first_seq: *first_seq,
                    events: events.to_vec(),
                })
            })
            .take(limit)
            .collect())
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        Ok(self.catalog().keys.values().cloned().collect())
    }

    fn revoke_key(&self, id: &str, at: Millis) -> Appended {
        Appended::done(match self.catalog().keys.get_mut(id) {
            Some(key) => {
                key.revoked_at.get_or_insert(at);
                Ok(())
            }
            None => Err(Error::UnknownKey(id.to_owned())),
        })
    }

    fn keeps_read_models(&self) -> bool {
        !self.log_only
    }
}

impl Run {
    fn new(run_id: &str, workflow: &str, created: usize) -> Run {
        Run {
            record: None,
            events: Vec::new(),
            summary: RunSummary {
                run_id: run_id.to_owned(),
                workflow: workflow.to_owned(),
                status: RunStatus::Pending,
                started_at: None,
                finished_at: None,
                events: 0,
            },
            created,
            tasks: BTreeMap::new(),
            attempts: BTreeMap::new(),
            outputs: BTreeMap::new(),
            artifacts: Vec::new(),
            checkpoints: Vec::new(),
            controls: Vec::new(),
        }
    }

    /// Keeps the run's row current: all a log-only store does.
    fn summarise(&mut self, events: &[Event]) {
        let summary = &mut self.summary;
        summary.events = self.events.len() as u64;
        for event in events {
            match *event {
                Event::RunStarted { at } => {
                    summary.status = RunStatus::Running;
                    summary.started_at = Some(at);
                }
                Event::RunPaused { .. } => summary.status = RunStatus::Paused,
                Event::RunResumed { .. } => summary.status = RunStatus::Running,
                Event::RunFinished { at, status } => {
                    summary.status = status;
                    summary.finished_at = Some(at);
                }
                _ => {}
            }
        }
    }

    fn project(&mut self, projection: Projection) {
        let summary = &mut self.summary;
        summary.events = self.events.len() as u64;
        if let Some(at) = projection.started_at {
            summary.status = RunStatus::Running;
            summary.started_at = Some(at);
        }
        match projection.paused {
            Some(true) => summary.status = RunStatus::Paused,
            Some(false) => summary.status = RunStatus::Running,
            None => {}
        }
        if let Some((status, at)) = projection.finished {
            summary.status = status;
            summary.finished_at = Some(at);
        }
        for (task, output) in projection.outputs {
            if let Ok(output) = serde_json::from_str(&output) {
                self.outputs.insert(task, output);
            }
        }
    }
}

impl MemoryStore {
    fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `read` of a known run; a run without events or record is unknown.
    fn read<T>(&self, run_id: &str, read: impl FnOnce(&Run) -> Option<T>) -> Result<T> {
        self.lock()
            .get(run_id)
            .and_then(read)
            .ok_or_else(|| Error::UnknownRun(run_id.to_owned()))
    }

    fn write_now(&self, run_id: &str, first_seq: u64, batch: Batch<'_>) -> Result<()> {
        let mut runs = self.lock();
        let created = runs.len();
        let run = runs
            .entry(run_id.to_owned())
            .or_insert_with(|| Run::new(run_id, "", created));
        let actual = run.events.len() as u64;
        if actual != first_seq {
            return Err(Error::Conflict {
                run: run_id.to_owned(),
                expected: first_seq,
                actual,
            });
        }
        run.events.extend_from_slice(batch.events);
        if !batch.events.is_empty() {
            self.feed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push((run_id.to_owned(), first_seq, batch.events.len() as u64));
        }
        if self.log_only {
            run.summarise(batch.events);
            return Ok(());
        }
        run.project(Projection::of(batch.events, true));
        for row in batch.tasks {
            let kept = run.tasks.entry(row.task).or_insert_with(|| row.clone());
            // A record, once made, stays (as the SQL backends keep it).
            let record = kept.record.take().or_else(|| row.record.clone());
            *kept = TaskRow {
                record,
                ..row.clone()
            };
        }
        for row in batch.attempts {
            run.attempts.insert((row.task, row.attempt), row.clone());
        }
        run.artifacts.extend_from_slice(batch.artifacts);
        run.artifacts.sort_by(|a, b| {
            (a.task, a.attempt, a.role, &a.artifact.path).cmp(&(
                b.task,
                b.attempt,
                b.role,
                &b.artifact.path,
            ))
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use baton_core::run::Millis;

    use super::*;

    #[test]
    fn an_append_at_the_wrong_position_is_refused_and_changes_nothing() {
        let store = MemoryStore::default();
        let started = Event::RunStarted { at: Millis(1) };
        store
            .append("r", 0, std::slice::from_ref(&started))
            .wait()
            .unwrap();
        let error = store
            .append("r", 0, std::slice::from_ref(&started))
            .wait()
            .unwrap_err();
        assert!(
            matches!(error, Error::Conflict { actual: 1, .. }),
            "{error}"
        );
        assert_eq!(store.events("r").unwrap(), [started]);
        assert!(matches!(store.events("other"), Err(Error::UnknownRun(_))));
    }
}
