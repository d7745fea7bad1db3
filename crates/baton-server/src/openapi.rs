//! The OpenAPI 3.1 document, generated from the handlers' annotations, and
//! the browsable reference page (Swagger UI, its files built into the
//! binary, so it works offline).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use serde_json::Value;

use crate::shown::RunShown;
use crate::{
    agents, described, drawing, events, feed, keys, logs, problem, queue, runs, schedules,
    telemetry, triggers, workers, workflows,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "baton",
        description = "A durable DAG orchestrator for agents and jobs. Every error is an RFC 9457 problem (application/problem+json) with a stable `type`."
    ),
    paths(
        runs::start, runs::list, runs::get, runs::cancel, runs::pause, runs::resume,
        runs::decide, runs::retry, runs::trace, drawing::run_graph, runs::provenance, runs::verify,
        runs::checkpoints, runs::artifacts, runs::artifact, logs::logs, queue::reprioritize,
        events::run_events, feed::events, feed::websocket,
        workflows::create, workflows::validate, workflows::list, workflows::get,
        workflows::version, workflows::versions, workflows::delete, workflows::graph,
        workflows::export, workflows::import,
        schedules::routes::list, schedules::routes::backfill, triggers::deliver,
        keys::whoami, keys::list, keys::create, keys::revoke, agents::list, agents::health, agents::register,
        agents::remove,
        workers::register, workers::poll, workers::complete, workers::logs, workers::upload_file,
        workers::download_file, workers::drain,
        workers::deregister,
        crate::healthz, crate::readyz, telemetry::metrics,
    ),
    components(schemas(problem::Problem)),
    modifiers(&BearerKeys),
    security(("api_key" = [])),
    tags(
        (name = "runs", description = "Starting, steering and proving runs"),
        (name = "approvals", description = "Deciding waiting approval tasks"),
        (name = "events", description = "Live event streams"),
        (name = "workflows", description = "The workflow registry"),
        (name = "triggers", description = "Webhooks that start registered workflows, proven by an HMAC of the body (no API key)"),
        (name = "schedules", description = "Registered workflows' schedules, and backfills of their past ticks"),
        (name = "keys", description = "API keys (admin)"),
        (name = "agents", description = "What serves agent capabilities, and how each fares"),
        (name = "workers", description = "The worker protocol: register, poll for leases, report, upload logs, drain, leave (keys with scope `worker` or `admin`)"),
        (name = "service", description = "Health, readiness, metrics"),
    )
)]
pub(crate) struct ApiDoc;

/// `Authorization: Bearer baton_...` on every operation.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("baton_<id>_<secret>")
                    .build(),
            ),
        );
    }
}

/// The document: the handlers' annotations, and the schemas of the bodies
/// whose types live in the engine and the store.
pub(crate) fn document() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(components) = document["components"]["schemas"].as_object_mut() {
        described::add::<RunShown<'static>>(components);
        described::add::<baton_engine::ProvenanceChain>(components);
        described::add::<baton_engine::Verification>(components);
        described::add::<baton_store::CheckpointInfo>(components);
        described::add::<baton_core::Workflow>(components);
        described::add::<baton_engine::AgentStatus>(components);
        use baton_engine::remote::protocol;
        described::add_request::<protocol::Registration>(components);
        described::add_request::<protocol::Poll>(components);
        described::add_request::<protocol::Report>(components);
        described::add::<protocol::Registered>(components);
        described::add::<protocol::Polled>(components);
    }
    document
}

/// The document and the reference page, as routes.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new("/api/v1/docs")
        .external_url_unchecked("/api/v1/openapi.json", document())
        .into()
}
