//! Runs as `GET /api/v1/runs/{id}` shows them: the engine's view of the
//! run, encoded once per event count however many clients ask at once
//! (they wait for the one encoding), and kept for the runs read lately.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use baton_engine::View;

use crate::problem::ApiError;

/// Runs whose encoding is kept.
const CAPACITY: usize = 1024;

#[derive(Default)]
pub(crate) struct Shown {
    kept: Mutex<HashMap<String, Arc<Encoding>>>,
}

/// One view's encoding, made by the first reader to need it.
struct Encoding {
    events: u64,
    bytes: tokio::sync::OnceCell<Bytes>,
}

impl Shown {
    /// `view` of `run` as JSON, with why its tasks queued for workers wait
    /// (`waiting`, by task id: this changes without events, so such a
    /// run's encoding is made afresh and not kept).
    pub(crate) async fn encode(
        &self,
        run: &str,
        view: Arc<View>,
        waiting: std::collections::BTreeMap<String, String>,
    ) -> Result<Bytes, ApiError> {
        if !waiting.is_empty() {
            let mut report = Arc::unwrap_or_clone(view.report().await?);
            for task in &mut report.tasks {
                task.waiting = waiting.get(&task.id).cloned();
            }
            return encoded(Arc::new(report), view.workflow_version).await;
        }
        let encoding = {
            let mut kept = self.lock();
            match kept.get(run) {
                Some(encoding) if encoding.events == view.events => Arc::clone(encoding),
                _ => {
                    if kept.len() >= CAPACITY {
                        kept.clear();
                    }
                    let encoding = Arc::new(Encoding {
                        events: view.events,
                        bytes: tokio::sync::OnceCell::new(),
                    });
                    kept.insert(run.to_owned(), Arc::clone(&encoding));
                    encoding
                }
            }
        };
        let bytes = encoding
            .bytes
            .get_or_try_init(|| async move {
                encoded(view.report().await?, view.workflow_version).await
            })
            .await?;
        Ok(bytes.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Encoding>>> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `report` as the body shows it, encoded off the async threads (a big
/// run's report takes a while).
async fn encoded(
    report: Arc<baton_engine::RunReport>,
    workflow_version: Option<u32>,
) -> Result<Bytes, ApiError> {
    tokio::task::spawn_blocking(move || {
        let shown = RunShown {
            trace_id: baton_core::run::trace_context::hex(
                &baton_core::run::trace_context::trace_id(&report.run_id),
            ),
            report: &report,
            workflow_version,
        };
        serde_json::to_vec(&shown).map(Bytes::from)
    })
    .await
    .map_err(|error| ApiError::Internal(error.to_string()))?
    .map_err(|error| ApiError::Internal(error.to_string()))
}

/// `GET /api/v1/runs/{id}`'s body: the run's report and the version of
/// the registered workflow it was started from.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct RunShown<'a> {
    #[serde(flatten)]
    report: &'a baton_engine::RunReport,
    /// Absent for a run of a spec given whole.
    workflow_version: Option<u32>,
    /// The run's trace in the tracing backend `[telemetry]` exports to:
    /// the run is its root span, each task attempt a child.
    trace_id: String,
}
