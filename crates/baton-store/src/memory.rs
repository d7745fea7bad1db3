//! The in-memory store: each run's log and read models behind one mutex.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton_core::Duration;
use baton_core::run::{Control, Digest, Event, Millis, Provenance, RunStatus, Sealed};
use tokio::sync::broadcast;

use crate::owner::{Fence, Owner, Ownership};
use crate::projection::Projection;
use crate::{
    ApiKey, ArtifactRole, ArtifactRow, AttemptRow, Batch, CHANGE_BACKLOG, CacheHit, Catalog,
    Change, CheckpointInfo, Error, FeedBatch, ReadModels, Result, RunFilter, RunLog, RunRecord,
    RunSummary, StoredWorkflow, TaskRow,
};

#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    changes: broadcast::Sender<Change>,
    log_only: bool,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore {
            state: Mutex::default(),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
            log_only: false,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    runs: HashMap<String, Run>,
    /// Every appended batch as (run, first seq, count); a batch's position
    /// is its index + 1.
    feed: Vec<(String, u64, u64)>,
    owners: HashMap<String, (Owner, Millis)>,
    workflows: BTreeMap<(String, u32), StoredWorkflow>,
    keys: BTreeMap<String, ApiKey>,
    ticks: BTreeMap<(String, Millis), crate::Tick>,
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

/// One run: its record, its events and read models, in creation order.
#[derive(Debug)]
struct Run {
    record: RunRecord,
    events: Vec<Event>,
    summary: RunSummary,
    created: usize,
    /// Its owner's id while one drives it.
    owner: Option<String>,
    fence: Fence,
    claimed_at: Millis,
    tasks: BTreeMap<u32, TaskRow>,
    attempts: BTreeMap<(u32, u32), AttemptRow>,
    outputs: BTreeMap<u32, serde_json::Value>,
    artifacts: Vec<ArtifactRow>,
    checkpoints: Vec<Sealed>,
    controls: Vec<Control>,
}

impl State {
    /// `run`'s current ownership, if someone drives it.
    fn ownership(&self, run: &Run) -> Option<Ownership> {
        let id = run.owner.as_ref()?;
        let (owner, expires_at) = self.owners.get(id)?;
        Some(Ownership {
            owner: owner.clone(),
            fence: run.fence,
            since: run.claimed_at,
            expires_at: *expires_at,
        })
    }

    fn summary(&self, run: &Run) -> RunSummary {
        RunSummary {
            driver: self.ownership(run),
            ..run.summary.clone()
        }
    }

    /// The run, if `fence` is its current one.
    fn fenced(&mut self, run_id: &str, fence: Fence) -> Result<&mut Run> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| Error::UnknownRun(run_id.to_owned()))?;
        if run.fence != fence || run.owner.is_none() {
            return Err(Error::Fenced {
                run: run_id.to_owned(),
            });
        }
        Ok(run)
    }
}

#[async_trait]
impl RunLog for MemoryStore {
    async fn heartbeat(&self, owner: &Owner, now: Millis, ttl: Duration) -> Result<()> {
        self.lock()
            .owners
            .insert(owner.id.clone(), (owner.clone(), now.plus(ttl)));
        Ok(())
    }

    async fn create_run(&self, record: &RunRecord, owner: &str, now: Millis) -> Result<Fence> {
        let mut state = self.lock();
        if !state.owners.contains_key(owner) {
            return Err(Error::UnknownOwner(owner.to_owned()));
        }
        if state.runs.contains_key(&record.run_id) {
            return Err(Error::RunExists(record.run_id.clone()));
        }
        let created = state.runs.len();
        let fence = Fence(1);
        let run = Run {
            owner: Some(owner.to_owned()),
            fence,
            claimed_at: now,
            ..Run::new(record.clone(), created)
        };
        state.runs.insert(record.run_id.clone(), run);
        Ok(fence)
    }

    async fn claim(
        &self,
        run_id: &str,
        owner: &str,
        now: Millis,
        steal: Option<Fence>,
    ) -> Result<Fence> {
        let mut state = self.lock();
        if !state.owners.contains_key(owner) {
            return Err(Error::UnknownOwner(owner.to_owned()));
        }
        let run = state
            .runs
            .get(run_id)
            .ok_or_else(|| Error::UnknownRun(run_id.to_owned()))?;
        if let Some(current) = state.ownership(run)
            && current.owner.id != owner
            && current.expires_at > now
            && steal != Some(current.fence)
        {
            return Err(Error::Owned {
                run: run_id.to_owned(),
                ownership: Box::new(current),
            });
        }
        let run = state.runs.get_mut(run_id).expect("looked up above");
        run.fence = Fence(run.fence.0 + 1);
        run.owner = Some(owner.to_owned());
        run.claimed_at = now;
        Ok(run.fence)
    }

    async fn release(&self, run_id: &str, fence: Fence) -> Result<()> {
        let mut state = self.lock();
        let run = state
            .runs
            .get_mut(run_id)
            .ok_or_else(|| Error::UnknownRun(run_id.to_owned()))?;
        if run.fence == fence {
            run.owner = None;
        }
        Ok(())
    }

    async fn run(&self, run: &str) -> Result<RunRecord> {
        self.read(run, |_, run| run.record.clone())
    }

    async fn write(&self, run: &str, first_seq: u64, fence: Fence, batch: Batch<'_>) -> Result<()> {
        let change = self.write_now(run, first_seq, fence, batch)?;
        if let Some(change) = change {
            // No subscriber is not an error: the log has it all.
            let _ = self.changes.send(change);
        }
        Ok(())
    }

    async fn events_from(&self, run: &str, from: u64) -> Result<Vec<Event>> {
        self.read(run, |_, run| {
            let from = (from as usize).min(run.events.len());
            run.events[from..].to_vec()
        })
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedBatch>> {
        let state = self.lock();
        Ok(state
            .feed
            .iter()
            .enumerate()
            .skip(after.min(state.feed.len() as u64) as usize)
            .filter_map(|(index, (run_id, first_seq, count))| {
                let run = state.runs.get(run_id)?;
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

    async fn put_checkpoint(&self, run: &str, fence: Fence, sealed: &Sealed) -> Result<()> {
        let mut state = self.lock();
        let run = state.fenced(run, fence)?;
        run.checkpoints.retain(|kept| kept.events != sealed.events);
        run.checkpoints.push(sealed.clone());
        run.checkpoints.sort_by_key(|kept| kept.events);
        Ok(())
    }

    async fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        self.read(run, |_, run| {
            run.checkpoints
                .iter()
                .rev()
                .map(|sealed| CheckpointInfo {
                    events: sealed.events,
                    digest: sealed.digest,
                    size: sealed.data.len() as u64,
                })
                .collect()
        })
    }

    async fn checkpoint(&self, run: &str, events: u64) -> Result<Sealed> {
        let found = self.read(run, |_, run| {
            run.checkpoints
                .iter()
                .find(|sealed| sealed.events == events)
                .cloned()
        })?;
        found.ok_or_else(|| Error::NoCheckpoint {
            run: run.to_owned(),
            events,
        })
    }

    async fn request(&self, run_id: &str, control: &Control) -> Result<u64> {
        let seq = {
            let mut state = self.lock();
            let run = state
                .runs
                .get_mut(run_id)
                .ok_or_else(|| Error::UnknownRun(run_id.to_owned()))?;
            run.controls.push(control.clone());
            run.controls.len() as u64 - 1
        };
        let _ = self.changes.send(Change::Requested {
            run: Arc::from(run_id),
        });
        Ok(seq)
    }

    async fn controls(&self, run: &str, from: u64) -> Result<Vec<Control>> {
        self.read(run, |_, run| {
            run.controls
                .get(from as usize..)
                .unwrap_or_default()
                .to_vec()
        })
    }

    async fn delete_run(&self, run: &str) -> Result<()> {
        let mut state = self.lock();
        match state.runs.get(run) {
            None => Err(Error::UnknownRun(run.to_owned())),
            Some(found) if !found.summary.status.is_final() => {
                Err(Error::Unfinished(run.to_owned()))
            }
            Some(_) => {
                state.runs.remove(run);
                Ok(())
            }
        }
    }

    fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn keeps_read_models(&self) -> bool {
        !self.log_only
    }
}

#[async_trait]
impl ReadModels for MemoryStore {
    async fn summary(&self, run: &str) -> Result<RunSummary> {
        self.read(run, |state, run| state.summary(run))
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let state = self.lock();
        fn key(summary: &RunSummary) -> (Millis, &str) {
            (
                summary.started_at.unwrap_or_default(),
                summary.run_id.as_str(),
            )
        }
        let mut all: Vec<(&Run, RunSummary)> = state
            .runs
            .values()
            .map(|run| (run, state.summary(run)))
            .filter(|(_, summary)| filter.admits(summary))
            .collect();
        all.sort_by(|(_, a), (_, b)| key(b).cmp(&key(a)));
        let skip = match &filter.after {
            None => 0,
            Some(after) => all.partition_point(|(_, summary)| {
                key(summary) >= (after.started_at, after.run_id.as_str())
            }),
        };
        Ok(all
            .into_iter()
            .skip(skip)
            .take(filter.limit)
            .map(|(_, summary)| summary)
            .collect())
    }

    async fn tasks(&self, run: &str) -> Result<Vec<TaskRow>> {
        self.read(run, |_, run| run.tasks.values().cloned().collect())
    }

    async fn task(&self, run: &str, task: u32) -> Result<Option<TaskRow>> {
        self.read(run, |_, run| run.tasks.get(&task).cloned())
    }

    async fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>> {
        self.read(run, |_, run| run.attempts.values().cloned().collect())
    }

    async fn outputs(&self, run: &str) -> Result<Vec<(u32, serde_json::Value)>> {
        self.read(run, |_, run| {
            run.outputs
                .iter()
                .map(|(&task, output)| (task, output.clone()))
                .collect()
        })
    }

    async fn provenance(&self, run: &str) -> Result<Vec<Provenance>> {
        self.read(run, |_, run| {
            run.tasks
                .values()
                .filter_map(|row| row.record.clone())
                .collect()
        })
    }

    async fn cached(&self, key: &Digest) -> Result<Option<CacheHit>> {
        let state = self.lock();
        let newest = state
            .runs
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
                        && stored.role == ArtifactRole::Produced
                })
                .map(|stored| stored.artifact.clone())
                .collect(),
            finished_at: row.finished_at.unwrap_or_default(),
        }))
    }

    async fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>> {
        self.read(run, |_, run| run.artifacts.clone())
    }

    async fn artifact_digests(&self) -> Result<Vec<Digest>> {
        let mut digests: Vec<Digest> = self
            .lock()
            .runs
            .values()
            .flat_map(|run| run.artifacts.iter().map(|row| row.artifact.digest))
            .collect();
        digests.sort_unstable();
        digests.dedup();
        Ok(digests)
    }
}

#[async_trait]
impl Catalog for MemoryStore {
    async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<()> {
        let mut state = self.lock();
        let key = (workflow.name.clone(), workflow.version);
        match state.workflows.entry(key) {
            std::collections::btree_map::Entry::Occupied(_) => Err(Error::VersionExists {
                name: workflow.name.clone(),
                version: workflow.version,
            }),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(workflow.clone());
                Ok(())
            }
        }
    }

    async fn workflow(&self, name: &str, version: Option<u32>) -> Result<StoredWorkflow> {
        let versions = self.workflow_versions(name).await?;
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

    async fn workflows(&self) -> Result<Vec<StoredWorkflow>> {
        let state = self.lock();
        let mut latest: BTreeMap<&str, &StoredWorkflow> = BTreeMap::new();
        for ((name, _), stored) in &state.workflows {
            latest.insert(name, stored);
        }
        Ok(latest.into_values().cloned().collect())
    }

    async fn workflow_versions(&self, name: &str) -> Result<Vec<StoredWorkflow>> {
        let versions: Vec<StoredWorkflow> = self
            .lock()
            .workflows
            .range((name.to_owned(), 0)..=(name.to_owned(), u32::MAX))
            .map(|(_, stored)| stored.clone())
            .collect();
        if versions.is_empty() {
            return Err(Error::UnknownWorkflow(name.to_owned()));
        }
        Ok(versions)
    }

    async fn delete_workflow(&self, name: &str) -> Result<()> {
        let mut state = self.lock();
        let before = state.workflows.len();
        state.workflows.retain(|(stored, _), _| stored != name);
        if state.workflows.len() == before {
            return Err(Error::UnknownWorkflow(name.to_owned()));
        }
        Ok(())
    }

    async fn put_key(&self, key: &ApiKey) -> Result<()> {
        match self.lock().keys.entry(key.id.clone()) {
            std::collections::btree_map::Entry::Occupied(_) => {
                Err(Error::KeyExists(key.id.clone()))
            }
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(key.clone());
                Ok(())
            }
        }
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>> {
        Ok(self.lock().keys.get(id).cloned())
    }

    async fn keys(&self) -> Result<Vec<ApiKey>> {
        Ok(self.lock().keys.values().cloned().collect())
    }

    async fn revoke_key(&self, id: &str, at: Millis) -> Result<()> {
        match self.lock().keys.get_mut(id) {
            Some(key) => {
                key.revoked_at.get_or_insert(at);
                Ok(())
            }
            None => Err(Error::UnknownKey(id.to_owned())),
        }
    }

    async fn put_tick(&self, tick: &crate::Tick) -> Result<()> {
        self.lock()
            .ticks
            .insert((tick.workflow.clone(), tick.at), tick.clone());
        Ok(())
    }

    async fn ticks(&self, name: &str, limit: usize) -> Result<Vec<crate::Tick>> {
        let state = self.lock();
        let of_name = (name.to_owned(), Millis(0))..=(name.to_owned(), Millis(u64::MAX));
        Ok(state
            .ticks
            .range(of_name)
            .rev()
            .take(limit)
            .map(|(_, tick)| tick.clone())
            .collect())
    }
}

impl Run {
    fn new(record: RunRecord, created: usize) -> Run {
        Run {
            summary: RunSummary {
                run_id: record.run_id.clone(),
                workflow: record.workflow.name.clone(),
                status: RunStatus::Pending,
                started_at: None,
                finished_at: None,
                events: 0,
                driver: None,
                driven: None,
            },
            record,
            events: Vec::new(),
            created,
            owner: None,
            fence: Fence(0),
            claimed_at: Millis(0),
            tasks: BTreeMap::new(),
            attempts: BTreeMap::new(),
            outputs: BTreeMap::new(),
            artifacts: Vec::new(),
            checkpoints: Vec::new(),
            controls: Vec::new(),
        }
    }

    fn project(&mut self, projection: Projection, outputs: bool) {
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
        if outputs {
            for (task, output) in projection.outputs {
                if let Ok(output) = serde_json::from_str(&output) {
                    self.outputs.insert(task, output);
                }
            }
        }
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `read` of a known run.
    fn read<T>(&self, run_id: &str, read: impl FnOnce(&State, &Run) -> T) -> Result<T> {
        let state = self.lock();
        let run = state
            .runs
            .get(run_id)
            .ok_or_else(|| Error::UnknownRun(run_id.to_owned()))?;
        Ok(read(&state, run))
    }

    fn write_now(
        &self,
        run_id: &str,
        first_seq: u64,
        fence: Fence,
        batch: Batch<'_>,
    ) -> Result<Option<Change>> {
        let mut state = self.lock();
        let log_only = self.log_only;
        let run = state.fenced(run_id, fence)?;
        let actual = run.events.len() as u64;
        if actual != first_seq {
            return Err(Error::Conflict {
                run: run_id.to_owned(),
                expected: first_seq,
                actual,
            });
        }
        run.events.extend_from_slice(batch.events);
        let events = run.events.len() as u64;
        run.project(Projection::of(batch.events, !log_only), !log_only);
        if !log_only {
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
            if !batch.artifacts.is_empty() {
                run.artifacts.extend_from_slice(batch.artifacts);
                run.artifacts.sort_by(|a, b| {
                    (a.task, a.attempt, a.role, &a.artifact.path).cmp(&(
                        b.task,
                        b.attempt,
                        b.role,
                        &b.artifact.path,
                    ))
                });
            }
        }
        if batch.events.is_empty() {
            return Ok(None);
        }
        state
            .feed
            .push((run_id.to_owned(), first_seq, batch.events.len() as u64));
        Ok(Some(Change::Appended {
            position: state.feed.len() as u64,
            run: Arc::from(run_id),
            events,
        }))
    }
}
