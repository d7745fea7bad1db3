//! Checking a workflow costs time in proportion to its size (a 100,000-task
//! spec takes tens of milliseconds, a damaged one with many problems
//! seconds), so it runs on the blocking pool: the async threads keep
//! answering other requests, `/healthz` among them, meanwhile.

use baton_core::{Format, Problem, Valid, Workflow};

use crate::problem::ApiError;

/// Checks a spec's text; its problems come with line:col.
pub(crate) async fn text(text: String, format: Format) -> Result<Valid, ApiError> {
    blocking(move || {
        baton_core::check_source(&text, format).map_err(|mut problems| {
            baton_core::SourceMap::locate_all(&text, &mut problems);
            problems
        })
    })
    .await?
    .map_err(ApiError::InvalidWorkflow)
}

/// Checks a workflow already read (a registered one, a run's record).
pub(crate) async fn workflow(workflow: Workflow) -> Result<Result<Valid, Vec<Problem>>, ApiError> {
    blocking(move || baton_core::check(workflow)).await
}

/// Runs `work` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError::Internal(format!("background work stopped: {error}")))
}
