//! `GET /api/v1/agents`: what serves agent capabilities here, how each
//! fares and where its circuit breaker stands. Today that is the chat
//! endpoints named in `[agents.CAPABILITY]`; remote workers will join them.

use axum::Json;
use axum::extract::State;

use crate::AppState;
use crate::api::AgentList;
use crate::described::AgentBody;
use crate::problem::{ApiError, PathArgs};
use crate::refusals;

/// `GET /api/v1/agents`: every agent, by capability.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    responses(
        (status = 200, description = "What serves each capability, its calls and its breaker", body = AgentList),
        refusals::Unauthorized,
    ),
)]
pub(crate) async fn list(State(app): State<AppState>) -> Json<AgentList> {
    Json(AgentList {
        agents: app.engine.agents(),
    })
}

/// `GET /api/v1/agents/{id}/health`: one agent, as the list shows it; 404
/// for an id nothing here has.
#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}/health",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id, e.g. `chat:summarize`")),
    responses(
        (status = 200, description = "Its health, calls and breaker", body = AgentBody),
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn health(
    State(app): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Json<baton_engine::AgentStatus>, ApiError> {
    app.engine
        .agents()
        .into_iter()
        .find(|agent| agent.id == id)
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!("no agent `{id}`: `GET /api/v1/agents` lists them"))
        })
}
