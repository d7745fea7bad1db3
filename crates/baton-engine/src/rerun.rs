//! `baton rerun`: a new run of a recorded run's workflow, inputs and
//! settings that takes what succeeded there from the record instead of
//! running it again.

use std::sync::Arc;

use baton_core::run::TaskStatus;
use baton_store::Reuse;

use crate::engine::{Engine, Error, RunHandle, RunOptions};

impl Engine {
    /// Starts a new run like `run_id`, reusing every task that succeeded
    /// there except `from` and everything downstream of it, which run even
    /// if the cache holds their result (with no `from`: only what did not
    /// succeed runs).
    pub fn rerun(&self, run_id: &str, from: Option<&str>, watch: bool) -> Result<RunHandle, Error> {
        let record = self.store.run(run_id)?;
        let workflow = Arc::unwrap_or_clone(Arc::clone(&record.workflow));
        let valid = baton_core::check(workflow).map_err(Error::Invalid)?;
        let again = match from {
            None => vec![false; valid.dag().len()],
            Some(id) => {
                let task = valid
                    .workflow()
                    .tasks
                    .iter()
                    .position(|task| task.id == id)
                    .ok_or_else(|| Error::UnknownTask {
                        run: run_id.to_owned(),
                        task: id.to_owned(),
                    })?;
                valid.dag().downstream(task as u32)
            }
        };
        let tasks = self
            .store
            .tasks(run_id)?
            .into_iter()
            .filter(|row| row.status == TaskStatus::Succeeded && !again[row.task as usize])
            .map(|row| row.id)
            .collect();
        let fresh = valid
            .workflow()
            .tasks
            .iter()
            .zip(&again)
            .filter(|&(_, &again)| again)
            .map(|(task, _)| task.id.clone())
            .collect();
        let options = RunOptions {
            inputs: record.inputs.into_iter().collect(),
            concurrency: record.concurrency,
            timeout: record.timeout,
            on_failure: record.on_failure,
            run_id: None,
            watch,
            served: record.served,
            reuse: Some(Reuse {
                run_id: run_id.to_owned(),
                tasks,
                fresh,
            }),
        };
        self.start_valid(Arc::new(valid), options)
    }
}
