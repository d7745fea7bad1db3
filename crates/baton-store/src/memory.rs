//! The in-memory store: one vector of events per run behind a mutex.

use std::collections::HashMap;
use std::sync::Mutex;

use baton_core::run::{Event, RunStatus};

use crate::{Appended, Error, Projection, Result, RunRecord, RunSummary, Store};

#[derive(Debug, Default)]
pub struct MemoryStore {
    runs: Mutex<HashMap<String, Run>>,
}

/// One run: its record (absent for a log appended without one), its events
/// and its row, in creation order.
#[derive(Debug)]
struct Run {
    record: Option<RunRecord>,
    events: Vec<Event>,
    summary: RunSummary,
    created: usize,
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

    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>> {
        let runs = self.lock();
        let mut all: Vec<&Run> = runs.values().collect();
        all.sort_by_key(|run| {
            std::cmp::Reverse((run.summary.started_at.unwrap_or_default(), run.created))
        });
        Ok(all
            .into_iter()
            .take(limit)
            .map(|run| run.summary.clone())
            .collect())
    }

    fn append(&self, run: &str, first_seq: u64, events: &[Event]) -> Appended {
        Appended::done(self.append_now(run, first_seq, events))
    }

    fn events(&self, run: &str) -> Result<Vec<Event>> {
        self.lock()
            .get(run)
            .filter(|run| !run.events.is_empty())
            .map(|run| run.events.clone())
            .ok_or_else(|| Error::UnknownRun(run.to_owned()))
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
        }
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append_now(&self, run_id: &str, first_seq: u64, events: &[Event]) -> Result<()> {
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
        run.events.extend_from_slice(events);
        let projection = Projection::of(events);
        let summary = &mut run.summary;
        summary.events = run.events.len() as u64;
        if let Some(at) = projection.started_at {
            summary.status = RunStatus::Running;
            summary.started_at = Some(at);
        }
        if let Some((status, at)) = projection.finished {
            summary.status = status;
            summary.finished_at = Some(at);
        }
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
