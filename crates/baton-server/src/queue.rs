//! `POST /api/v1/runs/{id}/tasks/{task}/priority`: a new priority for a
//! task's attempts that wait for a worker, so urgent work queued behind a
//! backlog goes first.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::problem::{ApiError, Body, PathArgs};
use crate::refusals;

/// The new priority.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPriority {
    /// Higher is leased first among its fairness key's queued work.
    #[serde(deserialize_with = "baton_engine::remote::protocol::whole::deserialize")]
    priority: i32,
}

/// What was moved.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Reprioritized {
    run_id: String,
    task: String,
    priority: i32,
    /// Attempts of the task that were waiting for a worker.
    queued: usize,
}

#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/tasks/{task}/priority",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("task" = String, Path, description = "The task's id"),
    ),
    request_body(content = NewPriority, description = "The new priority"),
    responses(
        (status = 200, description = "Its queued attempts now wait at the new priority", body = Reprioritized),
        refusals::BadRequest,
        refusals::UnsupportedMediaType,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn reprioritize(
    State(app): State<AppState>,
    PathArgs((run_id, task)): PathArgs<(String, String)>,
    Body(request): Body<NewPriority>,
) -> Result<Json<Reprioritized>, ApiError> {
    let queued = app
        .engine
        .dispatcher()
        .reprioritize(&run_id, &task, request.priority)
        .await;
    if queued == 0 {
        return Err(ApiError::NotFound(format!(
            "task `{task}` of run `{run_id}` has no attempt waiting for a worker; only queued work for workers is reprioritized"
        )));
    }
    Ok(Json(Reprioritized {
        run_id,
        task,
        priority: request.priority,
        queued,
    }))
}
