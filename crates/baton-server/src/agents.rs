//! `GET /api/v1/agents`: what serves agent capabilities here, how each
//! fares and where its circuit breaker stands. Today that is the chat
//! endpoints named in `[agents.CAPABILITY]`; remote workers will join them.

use axum::Json;
use axum::extract::State;

use crate::AppState;
use crate::api::AgentList;
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
