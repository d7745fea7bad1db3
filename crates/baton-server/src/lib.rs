//! `baton serve`: the orchestrator as a service, on the same engine and
//! store as `baton run`. REST under `/api/v1` (JSON in and out, errors as
//! RFC 9457 problem details), a run's events as Server-Sent Events from the
//! durable log, health and readiness probes.
//!
//! [`router`] builds the whole service over an [`AppState`], so tests drive
//! it in process with `tower::ServiceExt::oneshot`; [`serve`] puts it on a
//! listener.

mod events;
mod live;
mod problem;
mod runs;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use baton_core::run::RunStatus;
use baton_engine::Engine;
use serde_json::json;

pub use problem::{ApiError, Problem};

/// What the service is configured with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted (413 above it).
    pub body_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            body_limit: 2 * 1024 * 1024,
        }
    }
}

/// Shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    engine: Engine,
    live: Arc<live::Live>,
    config: Arc<ServerConfig>,
}

impl AppState {
    pub fn new(engine: Engine, config: ServerConfig) -> AppState {
        AppState {
            engine,
            live: Arc::new(live::Live::default()),
            config: Arc::new(config),
        }
    }

    /// How many runs this server drives now.
    pub fn active_runs(&self) -> usize {
        self.live.active()
    }

    /// Resumes the runs started through the API that had not finished when
    /// the server last stopped (killed, crashed): what they finished stays
    /// done, what was in flight runs again. Runs `baton run` started are
    /// left to `baton resume`. Returns the runs resumed, and the errors of
    /// those that could not be.
    pub fn recover(&self) -> Result<(Vec<String>, Vec<baton_engine::Error>), baton_engine::Error> {
        let store = self.engine.store();
        let mut resumed = Vec::new();
        let mut failed = Vec::new();
        for status in [RunStatus::Pending, RunStatus::Running] {
            let filter = baton_store::RunFilter {
                status: Some(status),
                limit: usize::MAX,
                ..baton_store::RunFilter::default()
            };
            for run in store.runs(&filter)? {
                if !store.run(&run.run_id)?.served {
                    continue;
                }
                match self.engine.resume(&run.run_id, true) {
                    Ok(handle) => {
                        self.live.drive(handle);
                        resumed.push(run.run_id);
                    }
                    Err(error) => failed.push(error),
                }
            }
        }
        Ok((resumed, failed))
    }
}

/// The whole service.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/runs", post(runs::start).get(runs::list))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/events", get(events::run_events))
        .route("/runs/{id}/trace", get(runs::trace))
        .route("/runs/{id}/provenance", get(runs::provenance))
        .route("/runs/{id}/verify", get(runs::verify))
        .route("/runs/{id}/checkpoints", get(runs::checkpoints))
        .route("/runs/{id}/artifacts", get(runs::artifacts))
        .route("/runs/{id}/tasks/{task}/logs", get(runs::logs))
        .route("/artifacts/{sha256}", get(runs::artifact));
    let limit = state.config.body_limit;
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .method_not_allowed_fallback(problem::method_not_allowed)
        .fallback(problem::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "ok"}))
}

/// Ready when the store answers.
async fn readyz(State(app): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let probe = baton_store::RunFilter {
        limit: 1,
        ..baton_store::RunFilter::default()
    };
    app.engine
        .store()
        .runs(&probe)
        .map_err(|error| ApiError::Unavailable(format!("the store does not answer: {error}")))?;
    Ok(axum::Json(json!({"status": "ready"})))
}
