//! `baton serve`: the orchestrator as a service, on the same engine and
//! store as `baton run`. REST under `/api/v1` (JSON in and out, errors as
//! RFC 9457 problem details), a run's events as Server-Sent Events from the
//! durable log, health and readiness probes.
//!
//! [`router`] builds the whole service over an [`AppState`], so tests drive
//! it in process with `tower::ServiceExt::oneshot`; [`serve`] puts it on a
//! listener.

mod agents;
pub mod api;
mod auth;
mod checking;
mod consume;
mod dashboard;
mod described;
mod drawing;
mod events;
mod feed;
mod following;
mod host;
mod keys;
mod listen;
mod live;
mod logs;
mod openapi;
pub mod otlp;
mod problem;
mod queue;
mod refusals;
mod relayed;
mod runs;
pub mod schedules;
mod shown;
mod streams;
mod telemetry;
mod triggers;
mod workers;
mod workflows;

pub use triggers::{Trigger, sign as sign_delivery};
pub use workflows::register_workflow;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use baton_engine::Engine;

pub use auth::{BadKeyName, Principal, check_key_name, issue};
pub use consume::{Consumer, Delivered, Handled, consume as consume_events};
pub use problem::{ApiError, Problem};
pub use streams::{RedisEvents, publish as publish_to_redis};

/// What the service is configured with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted (413 above it).
    pub body_limit: usize,
    /// Whether requests must carry an API key (`--insecure-no-auth` turns
    /// it off for local use).
    pub require_keys: bool,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and
    /// how long it may sit idle between requests, before it is closed.
    pub header_read_timeout: std::time::Duration,
    /// Host names the server answers to besides IP addresses and
    /// `localhost` (a `Host` of any other name is refused: DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Runs this server drives at once; a start beyond it is answered 429
    /// with `Retry-After`. Unlimited when `None`.
    pub max_active_runs: Option<usize>,
    /// How often agent endpoints' health URLs are asked.
    pub agent_health_every: std::time::Duration,
    /// Webhooks that start registered workflows, by name.
    pub triggers: std::collections::BTreeMap<String, Trigger>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            body_limit: 2 * 1024 * 1024,
            require_keys: true,
            max_connections: 1024,
            header_read_timeout: std::time::Duration::from_secs(10),
            allowed_hosts: Vec::new(),
            max_active_runs: None,
            agent_health_every: std::time::Duration::from_secs(5),
            triggers: std::collections::BTreeMap::new(),
        }
    }
}

/// Shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    engine: Engine,
    live: Arc<live::Live>,
    keys: Arc<auth::Keys>,
    shown: Arc<shown::Shown>,
    config: Arc<ServerConfig>,
    /// Where events are published, once the publisher runs: the global
    /// event stream then reads from there.
    redis: Arc<std::sync::OnceLock<RedisEvents>>,
}

impl AppState {
    /// The service over `engine`; it serves the worker protocol, so the
    /// engine's routed tasks (`runs_on`, agents no endpoint serves) go to
    /// registered workers. Call it within a Tokio runtime.
    pub fn new(engine: Engine, config: ServerConfig) -> AppState {
        telemetry::registry();
        engine.serve_workers();
        engine.watch_agent_health(config.agent_health_every);
        AppState {
            engine,
            live: Arc::new(live::Live::default()),
            keys: Arc::new(auth::Keys::new(config.require_keys)),
            shown: Arc::default(),
            config: Arc::new(config),
            redis: Arc::default(),
        }
    }

    /// The time by the system clock, for what the server stamps itself.
    pub(crate) fn now(&self) -> baton_core::run::Millis {
        baton_engine::wall_clock()
    }

    /// The Redis Streams this server publishes to, if it does.
    pub(crate) fn redis_events(&self) -> Option<RedisEvents> {
        self.redis.get().cloned()
    }

    /// The store behind the service (keys, workflows, runs).
    pub fn store(&self) -> &Arc<dyn baton_store::Store> {
        self.engine.store()
    }

    /// How many runs this server drives now.
    pub fn active_runs(&self) -> usize {
        self.live.active()
    }

    /// Takes over the runs started through the API that nobody drives any
    /// more (the server that drove them was killed, crashed, or stopped
    /// renewing its lease): what they finished stays done, what was in
    /// flight runs again. A run another live server (or `baton` process)
    /// drives is left to it; runs `baton run` started are left to `baton
    /// resume`. Returns the runs taken over, and the errors of those that
    /// could not be.
    pub async fn recover(
        &self,
    ) -> Result<(Vec<String>, Vec<baton_engine::Error>), baton_engine::Error> {
        let store = self.engine.store();
        let mut resumed = Vec::new();
        let mut failed = Vec::new();
        let filter = baton_store::RunFilter {
            unfinished: true,
            limit: usize::MAX,
            ..baton_store::RunFilter::default()
        };
        let now = self.now();
        for run in store.runs(&filter).await? {
            let run = run.judged(now);
            if run.driven != Some(baton_store::Driven::Orphaned)
                || !store.run(&run.run_id).await?.served
            {
                continue;
            }
            match self.engine.resume(&run.run_id, true).await {
                Ok(handle) => {
                    self.live.drive(handle);
                    resumed.push(run.run_id);
                }
                // Another server took it first: it is in good hands.
                Err(baton_engine::Error::Store(baton_store::Error::Owned { .. })) => {}
                Err(error) => failed.push(error),
            }
        }
        Ok((resumed, failed))
    }

    /// Looks for served runs nobody drives every `every`, and takes them
    /// over ([`AppState::recover`]): how a server carries on the runs of
    /// another that died on the same store.
    pub async fn keep_recovering(self, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if self.engine.is_draining() {
                return;
            }
            match self.recover().await {
                Ok((resumed, failed)) => {
                    if !resumed.is_empty() {
                        tracing::info!("took over {} run(s) nobody drove any more", resumed.len());
                    }
                    for error in failed {
                        tracing::warn!("warning: a run could not be taken over: {error}");
                    }
                }
                Err(error) => tracing::warn!("warning: looking for runs to take over: {error}"),
            }
        }
    }
}

/// The whole service.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/runs", post(runs::start).get(runs::list))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/pause", post(runs::pause))
        .route("/runs/{id}/resume", post(runs::resume))
        .route("/runs/{id}/tasks/{task}/decision", post(runs::decide))
        .route("/runs/{id}/tasks/{task}/retry", post(runs::retry))
        .route("/runs/{id}/events", get(events::run_events))
        .route("/events", get(feed::events))
        .route("/events/ws", get(feed::websocket))
        .route("/runs/{id}/trace", get(runs::trace))
        .route("/runs/{id}/graph", get(drawing::run_graph))
        .route("/runs/{id}/provenance", get(runs::provenance))
        .route("/runs/{id}/verify", get(runs::verify))
        .route("/runs/{id}/checkpoints", get(runs::checkpoints))
        .route("/runs/{id}/artifacts", get(runs::artifacts))
        .route("/runs/{id}/tasks/{task}/logs", get(logs::logs))
        .route(
            "/runs/{id}/tasks/{task}/priority",
            post(queue::reprioritize),
        )
        .route("/artifacts/{sha256}", get(runs::artifact))
        .route("/workflows", post(workflows::create).get(workflows::list))
        .route("/workflows/validate", post(workflows::validate))
        .route("/workflows/export", get(workflows::export))
        .route("/workflows/import", post(workflows::import))
        .route(
            "/workflows/{name}",
            get(workflows::get).delete(workflows::delete),
        )
        .route("/workflows/{name}/versions", get(workflows::versions))
        .route(
            "/workflows/{name}/versions/{version}",
            get(workflows::version),
        )
        .route("/workflows/{name}/graph", get(workflows::graph))
        .route("/agents", get(agents::list).post(agents::register))
        .route("/agents/{id}", axum::routing::delete(agents::remove))
        .route("/agents/{id}/health", get(agents::health))
        .route("/workers", post(workers::register))
        .route("/workers/{id}", axum::routing::delete(workers::deregister))
        .route("/workers/{id}/poll", post(workers::poll))
        .route("/workers/{id}/complete", post(workers::complete))
        .route("/workers/{id}/drain", post(workers::drain))
        .route("/workers/{id}/leases/{lease}/logs", post(workers::logs))
        .route(
            "/workers/{id}/leases/{lease}/files/{sha256}",
            axum::routing::put(workers::upload_file)
                .get(workers::download_file)
                .layer(DefaultBodyLimit::max(workers::FILE_LIMIT)),
        )
        .route("/schedules", get(schedules::routes::list))
        .route(
            "/schedules/{name}/backfill",
            post(schedules::routes::backfill),
        )
        .route("/triggers/{name}", post(triggers::deliver))
        .route("/whoami", get(keys::whoami))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}", axum::routing::delete(keys::revoke));
    let limit = state.config.body_limit;
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(telemetry::metrics))
        .merge(openapi::routes())
        .merge(dashboard::routes())
        .method_not_allowed_fallback(problem::method_not_allowed)
        .fallback(problem::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::measure,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host::check,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = listen::Limits {
        max_connections: state.config.max_connections,
        header_read_timeout: state.config.header_read_timeout,
    };
    listen::serve(listener, router(state), limits, shutdown).await
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    security(()),
    responses((status = 200, description = "The process answers", body = api::Health)),
)]
async fn healthz() -> axum::Json<api::Health> {
    axum::Json(api::Health {
        status: "ok".to_owned(),
    })
}

/// Ready when the store answers and the server is not draining (a load
/// balancer stops sending it requests while it hands its runs back).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    security(()),
    responses(
        (status = 200, description = "The store answers and the server takes work", body = api::Health),
        refusals::Unavailable,
    ),
)]
async fn readyz(State(app): State<AppState>) -> Result<axum::Json<api::Health>, ApiError> {
    if app.engine.is_draining() {
        return Err(ApiError::Unavailable(
            "the server is draining: it finishes what runs and takes no new work".to_owned(),
        ));
    }
    let probe = baton_store::RunFilter {
        limit: 1,
        ..baton_store::RunFilter::default()
    };
    app.engine
        .store()
        .runs(&probe)
        .await
        .map_err(|error| ApiError::Unavailable(format!("the store does not answer: {error}")))?;
    Ok(axum::Json(api::Health {
        status: "ready".to_owned(),
    }))
}
