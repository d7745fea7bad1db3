//! `baton rerun`: a new run of a recorded run's workflow, inputs and
//! settings that takes what succeeded there from the record instead of
//! running it again.

use std::sync::Arc;

use baton_core::Valid;
use baton_core::run::TaskStatus;
use baton_store::Reuse;

use crate::config::RunOptions;
use crate::engine::Engine;
use crate::error::Error;
use crate::handle::RunHandle;

impl Engine {
    /// Starts a new run like `run_id`, reusing every task that succeeded
    /// there except `from` and everything downstream of it, which run even
    /// if the cache holds their result (with no `from`: only what did not
    /// succeed runs).
    pub async fn rerun(
        &self,
        run_id: &str,
        from: Option<&str>,
        watch: bool,
    ) -> Result<RunHandle, Error> {
        let (valid, options) = self.rerun_of(run_id, from, watch).await?;
        self.start_valid(valid, options).await
    }

    /// [`Engine::rerun`], answering once the new run is recorded.
    pub async fn rerun_recorded(
        &self,
        run_id: &str,
        from: Option<&str>,
        watch: bool,
    ) -> Result<RunHandle, Error> {
        let (valid, options) = self.rerun_of(run_id, from, watch).await?;
        self.start_recorded(valid, options).await
    }

    /// The workflow and options of a rerun of `run_id`.
    async fn rerun_of(
        &self,
        run_id: &str,
        from: Option<&str>,
        watch: bool,
    ) -> Result<(Arc<Valid>, RunOptions), Error> {
        let record = self.store.run(run_id).await?;
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
            .tasks(run_id)
            .await?
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
            .map(|(task, _)| task.id.to_string())
            .collect();
        let options = RunOptions {
            inputs: record.inputs.into_iter().collect(),
            concurrency: record.concurrency,
            timeout: record.timeout,
            on_failure: record.on_failure,
            run_id: None,
            watch,
            served: record.served,
            workflow_version: record.workflow_version,
            parent: None,
            subworkflows: record.subworkflows,
            labels: record.labels,
            reuse: Some(Reuse {
                run_id: run_id.to_owned(),
                tasks,
                fresh,
            }),
        };
        Ok((Arc::new(valid), options))
    }
}
