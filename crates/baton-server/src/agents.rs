//! `/api/v1/agents`: what serves agent capabilities here (chat endpoints,
//! configured or registered here, and remote workers), how each fares and
//! where its circuit breaker stands; registering and removing endpoints.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::api::AgentList;
use crate::described::AgentBody;
use crate::problem::{ApiError, Body, PathArgs};
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

/// An OpenAI-compatible chat endpoint to serve a capability, as
/// `[agents.CAPABILITY]` names one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAgent {
    /// The capability it serves (`agent: {capability: ...}` in specs).
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.-]+$")]
    capability: String,
    /// Where `/chat/completions` is: an http:// or https:// URL, e.g.
    /// `http://127.0.0.1:11434/v1`.
    #[schema(min_length = 1)]
    base_url: String,
    #[schema(min_length = 1)]
    model: String,
    /// The server's environment variable holding its API key.
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    prompt_cost_per_million: f64,
    #[serde(default)]
    completion_cost_per_million: f64,
    #[serde(
        default,
        deserialize_with = "baton_engine::remote::protocol::whole::optional"
    )]
    #[schema(minimum = 1, maximum = 10000)]
    concurrency: Option<u32>,
    #[serde(default)]
    rate_per_second: Option<f64>,
    /// An http:// or https:// URL that answers 2xx while it is up; asked
    /// every few seconds.
    #[serde(default)]
    health_url: Option<String>,
}

fn refused(error: baton_engine::EndpointError) -> ApiError {
    use baton_engine::EndpointError;
    match error {
        EndpointError::Taken(_) | EndpointError::Configured(_) => {
            ApiError::Conflict(error.to_string())
        }
        EndpointError::Unknown(_) => ApiError::NotFound(error.to_string()),
        EndpointError::Invalid(_) => ApiError::Unprocessable(error.to_string()),
    }
}

/// `POST /api/v1/agents`: serves a capability by a chat endpoint until the
/// server stops (name it in baton.toml to keep it).
#[utoipa::path(
    post,
    path = "/api/v1/agents",
    tag = "agents",
    request_body(content = NewAgent, description = "The endpoint and what it serves"),
    responses(
        (status = 201, description = "Registered: its entry in the registry", body = AgentBody),
        refusals::BadRequest,
        refusals::UnsupportedMediaType,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::Conflict,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn register(
    State(app): State<AppState>,
    Body(request): Body<NewAgent>,
) -> Result<Response, ApiError> {
    let valid = baton_core::spec::is_capability(&request.capability);
    if request
        .concurrency
        .is_some_and(|concurrency| !(1..=10_000).contains(&concurrency))
    {
        return Err(ApiError::Unprocessable(
            "`concurrency` is 1 to 10000".to_owned(),
        ));
    }
    if !valid || request.model.is_empty() {
        return Err(ApiError::Unprocessable(
            "`capability` is 1 to 128 letters, digits, `_`, `-` and `.`, and `model` is not empty"
                .to_owned(),
        ));
    }
    let provider = baton_engine::AgentProvider {
        base_url: request.base_url,
        model: request.model,
        api_key_env: request.api_key_env,
        prompt_cost_per_million: request.prompt_cost_per_million,
        completion_cost_per_million: request.completion_cost_per_million,
        concurrency: request.concurrency,
        rate_per_second: request.rate_per_second,
        health_url: request.health_url,
    };
    let agent = app
        .engine
        .register_agent(&request.capability, provider)
        .map_err(refused)?;
    Ok((StatusCode::CREATED, Json(agent)).into_response())
}

/// `DELETE /api/v1/agents/{id}`: stops serving by an endpoint registered
/// through the API. Configured endpoints stay (baton.toml names them);
/// workers leave on their own (`DELETE /api/v1/workers/{id}`).
#[utoipa::path(
    delete,
    path = "/api/v1/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "`chat:CAPABILITY`")),
    responses(
        (status = 204, description = "Removed"),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
    ),
)]
pub(crate) async fn remove(
    State(app): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    if id.starts_with("w-") && app.engine.agents().iter().any(|agent| agent.id == id) {
        return Err(ApiError::Conflict(format!(
            "`{id}` is a worker: it leaves on its own (SIGTERM to `baton worker`, or `DELETE /api/v1/workers/{id}` with its token)"
        )));
    }
    app.engine
        .remove_agent(&id)
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(refused)
}
