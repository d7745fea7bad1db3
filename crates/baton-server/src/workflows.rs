//! `/api/v1/workflows`: the registry. Every change to a workflow is a new
//! immutable version; sending an unchanged spec again is recognised and
//! answered with the version it already is. Runs started by name pin the
//! version they started with.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_core::run::{Digest, RunStatus};
use baton_core::{Format, Valid, Workflow};
use baton_store::{RunFilter, StoredWorkflow};
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::api::{
    Exported, ExportedWorkflow, Imported, ImportedWorkflow, Validated, VersionList, WorkflowList,
    WorkflowShown,
};
use crate::checking;
use crate::problem::{ApiError, Body, PathArgs, Query, rejected};
use crate::refusals;

/// A spec sent as the body: YAML (`application/yaml`, `text/yaml`) or
/// JSON (`application/json`).
pub(crate) struct SpecText {
    text: String,
    format: Format,
}

impl<S: Send + Sync> FromRequest<S> for SpecText {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<SpecText, ApiError> {
        let kind = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        // Only types a web page cannot send without asking first (a CORS
        // preflight): `text/plain`, forms and a body with no type are what
        // a cross-site page posts freely, and a spec runs commands.
        let format = match kind.as_deref() {
            Some("application/json") => Format::Json,
            Some("application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml") => {
                Format::Yaml
            }
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "a workflow is sent as application/yaml or application/json, not {}",
                    other.unwrap_or("a body without a content type")
                )));
            }
        };
        let text = String::from_request(request, state)
            .await
            .map_err(|rejection| rejected(rejection.status(), rejection.body_text()))?;
        if text.trim().is_empty() {
            return Err(ApiError::BadRequest(
                "the body is empty: send a workflow spec".to_owned(),
            ));
        }
        Ok(SpecText { text, format })
    }
}

/// What identifies a workflow's content, whatever its formatting.
fn digest(workflow: &Workflow) -> Digest {
    Digest::of_json(&serde_json::to_value(workflow).unwrap_or_default())
}

/// Which registered versions a spec sent again is recognised as.
#[derive(Clone, Copy, PartialEq)]
enum Same {
    /// Only the latest: sending an older spec again makes it the latest
    /// (a revert is a change).
    Latest,
    /// Any version: importing a bundle twice registers nothing new.
    Any,
}

/// Registers `valid` as a new version of its name, unless `same` finds it
/// registered already. Whether it is new, and the version.
async fn register(
    app: &AppState,
    valid: Valid,
    same: Same,
) -> Result<(bool, StoredWorkflow), ApiError> {
    Ok(register_in(app.engine.store().as_ref(), valid, same, app.now()).await?)
}

/// Registers `valid` in `store` as its name's next version at `now`,
/// unless it is the latest version already (`baton workflows register`
/// without a server). Whether it is new, and the version.
pub async fn register_workflow(
    store: &dyn baton_store::Store,
    valid: Valid,
    now: baton_core::run::Millis,
) -> Result<(bool, StoredWorkflow), baton_store::Error> {
    register_in(store, valid, Same::Latest, now).await
}

async fn register_in(
    store: &dyn baton_store::Store,
    valid: Valid,
    same: Same,
    now: baton_core::run::Millis,
) -> Result<(bool, StoredWorkflow), baton_store::Error> {
    let workflow = valid.into_workflow();
    let digest = digest(&workflow);
    let versions = match store.workflow_versions(&workflow.name).await {
        Ok(versions) => versions,
        Err(baton_store::Error::UnknownWorkflow(_)) => Vec::new(),
        Err(error) => return Err(error),
    };
    let candidates = match same {
        Same::Latest => versions.last().into_iter().collect::<Vec<_>>(),
        Same::Any => versions.iter().collect(),
    };
    if let Some(existing) = candidates
        .into_iter()
        .find(|stored| stored.digest == digest)
    {
        return Ok((false, existing.clone()));
    }
    let next = versions.last().map_or(1, |latest| latest.version + 1);
    let stored = StoredWorkflow {
        name: workflow.name.clone(),
        version: next,
        digest,
        created_at: now,
        workflow: std::sync::Arc::new(workflow),
    };
    store.put_workflow(&stored).await?;
    Ok((true, stored))
}

fn registered(new: bool, stored: &StoredWorkflow) -> Response {
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = WorkflowShown::of(stored, false);
    let mut response = (status, Json(body)).into_response();
    let location = format!(
        "/api/v1/workflows/{}/versions/{}",
        stored.name, stored.version
    );
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `POST /api/v1/workflows`: 201 with a new version, 200 when the spec is
/// the latest version already, 422 with every problem of an invalid one.
#[utoipa::path(
    post,
    path = "/api/v1/workflows",
    tag = "workflows",
    request_body(
        description = "The spec: a YAML or JSON document",
        content((Object = "application/yaml"), (Object = "application/json")),
    ),
    responses(
        (status = 201, description = "A new version", body = WorkflowShown),
        (status = 200, description = "The spec is the latest version already", body = WorkflowShown),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::TooLarge,
        refusals::UnsupportedMediaType,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn create(
    State(app): State<AppState>,
    spec: SpecText,
) -> Result<Response, ApiError> {
    let valid = checking::text(spec.text, spec.format).await?;
    let (new, stored) = register(&app, valid, Same::Latest).await?;
    Ok(registered(new, &stored))
}

/// `POST /api/v1/workflows/validate`: checks a spec, saving nothing: 200
/// when it is valid, 422 with every problem when it is not.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/validate",
    tag = "workflows",
    request_body(
        description = "The spec: a YAML or JSON document",
        content((Object = "application/yaml"), (Object = "application/json")),
    ),
    responses(
        (status = 200, description = "The spec is valid", body = Validated),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::TooLarge,
        refusals::UnsupportedMediaType,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn validate(spec: SpecText) -> Result<Json<Validated>, ApiError> {
    let valid = checking::text(spec.text, spec.format).await?;
    Ok(Json(Validated {
        valid: true,
        name: valid.workflow().name.clone(),
        tasks: valid.workflow().tasks.len(),
    }))
}

/// `GET /api/v1/workflows`: the latest version of each, by name.
#[utoipa::path(
    get,
    path = "/api/v1/workflows",
    tag = "workflows",
    responses(
        (status = 200, description = "The latest version of each workflow", body = WorkflowList),
        refusals::Unauthorized,
    ),
)]
pub(crate) async fn list(State(app): State<AppState>) -> Result<Json<WorkflowList>, ApiError> {
    let workflows = app
        .engine
        .store()
        .workflows()
        .await?
        .iter()
        .map(|stored| WorkflowShown::of(stored, false))
        .collect();
    Ok(Json(WorkflowList { workflows }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Pick {
    /// A version; the latest when absent.
    version: Option<u32>,
}

/// `GET /api/v1/workflows/{name}[?version=N]`: one version, with its spec.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{name}",
    tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name"), Pick),
    responses(
        (status = 200, description = "A version with its spec", body = WorkflowShown),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn get(
    State(app): State<AppState>,
    PathArgs(name): PathArgs<String>,
    Query(pick): Query<Pick>,
) -> Result<Json<WorkflowShown>, ApiError> {
    let stored = app.engine.store().workflow(&name, pick.version).await?;
    Ok(Json(WorkflowShown::of(&stored, true)))
}

/// `GET /api/v1/workflows/{name}/versions/{version}`.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{name}/versions/{version}",
    tag = "workflows",
    params(
        ("name" = String, Path, description = "The workflow's name"),
        ("version" = u32, Path, description = "The version"),
    ),
    responses(
        (status = 200, description = "The version with its spec", body = WorkflowShown),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn version(
    State(app): State<AppState>,
    PathArgs((name, version)): PathArgs<(String, u32)>,
) -> Result<Json<WorkflowShown>, ApiError> {
    let stored = app.engine.store().workflow(&name, Some(version)).await?;
    Ok(Json(WorkflowShown::of(&stored, true)))
}

/// `GET /api/v1/workflows/{name}/versions`: oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{name}/versions",
    tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name")),
    responses(
        (status = 200, description = "Every version, oldest first", body = VersionList),
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn versions(
    State(app): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<Json<VersionList>, ApiError> {
    let versions = app
        .engine
        .store()
        .workflow_versions(&name)
        .await?
        .iter()
        .map(|stored| WorkflowShown::of(stored, false))
        .collect();
    Ok(Json(VersionList { versions }))
}

/// `DELETE /api/v1/workflows/{name}`: 204; 409 while a run of it has not
/// ended. Runs keep their own copy of the spec they ran.
#[utoipa::path(
    delete,
    path = "/api/v1/workflows/{name}",
    tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name")),
    responses(
        (status = 204, description = "Deleted"),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
    ),
)]
pub(crate) async fn delete(
    State(app): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    let store = app.engine.store();
    store.workflow(&name, None).await?;
    for status in [RunStatus::Pending, RunStatus::Running, RunStatus::Paused] {
        let active = store
            .runs(&RunFilter {
                status: Some(status),
                workflow: Some(name.clone()),
                limit: 1,
                ..RunFilter::default()
            })
            .await?;
        if let Some(run) = active.first() {
            return Err(ApiError::Conflict(format!(
                "workflow `{name}` has a run that has not ended ({}, {status}); cancel it or wait",
                run.run_id
            )));
        }
    }
    store.delete_workflow(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct GraphQuery {
    /// `mermaid` (default), `dot`, or `layout`: every task placed for
    /// drawing, as JSON.
    format: Option<String>,
    version: Option<u32>,
}

/// `GET /api/v1/workflows/{name}/graph?format=mermaid|dot|layout`: the DAG
/// as text, or placed for drawing.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{name}/graph",
    tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name"), GraphQuery),
    responses(
        (status = 200, description = "The DAG as Mermaid or DOT text, or placed for drawing (`format=layout`)", content(
            (String = "text/plain"),
            (crate::drawing::Drawing = "application/json"),
        )),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn graph(
    State(app): State<AppState>,
    PathArgs(name): PathArgs<String>,
    Query(query): Query<GraphQuery>,
) -> Result<Response, ApiError> {
    let stored = app.engine.store().workflow(&name, query.version).await?;
    let valid = checking::workflow(Arc::unwrap_or_clone(stored.workflow))
        .await?
        .map_err(ApiError::InvalidWorkflow)?;
    let text = match query.format.as_deref().unwrap_or("mermaid") {
        "mermaid" => baton_core::render::mermaid(valid.workflow(), valid.dag()),
        "dot" => baton_core::render::dot(valid.workflow(), valid.dag()),
        "layout" => return Ok(Json(crate::drawing::drawing(&valid)).into_response()),
        other => {
            return Err(ApiError::BadRequest(format!(
                "`format` is mermaid, dot or layout, not `{other}`"
            )));
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /api/v1/workflows/export`: every version of every workflow, as a
/// bundle `POST /api/v1/workflows/import` takes.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/export",
    tag = "workflows",
    responses(
        (status = 200, description = "Every version of every workflow, as a bundle", body = Exported),
        refusals::Unauthorized,
    ),
)]
pub(crate) async fn export(State(app): State<AppState>) -> Result<Json<Exported>, ApiError> {
    let store = app.engine.store();
    let mut workflows = Vec::new();
    for latest in store.workflows().await? {
        for stored in store.workflow_versions(&latest.name).await? {
            workflows.push(ExportedWorkflow {
                spec: serde_json::to_value(&*stored.workflow)
                    .map_err(|error| ApiError::Internal(error.to_string()))?,
                name: stored.name,
                version: stored.version,
            });
        }
    }
    Ok(Json(Exported { workflows }))
}

/// Workflows as `GET /api/v1/workflows/export` gives them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Bundle {
    workflows: Vec<BundleEntry>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct BundleEntry {
    /// The workflow as JSON; `name` and `version` beside it are ignored.
    #[schema(value_type = crate::described::WorkflowSpec)]
    spec: Value,
}

/// `POST /api/v1/workflows/import`: registers each spec of a bundle in
/// order, as a new version where it differs from the latest. All are
/// checked first: one invalid spec imports nothing (422, its problems
/// paths prefixed with its place in the bundle).
#[utoipa::path(
    post,
    path = "/api/v1/workflows/import",
    tag = "workflows",
    request_body = Bundle,
    responses(
        (status = 200, description = "What was registered", body = Imported),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::TooLarge,
        refusals::UnsupportedMediaType,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn import(
    State(app): State<AppState>,
    Body(bundle): Body<Bundle>,
) -> Result<Response, ApiError> {
    let mut checked = Vec::with_capacity(bundle.workflows.len());
    let mut problems = Vec::new();
    for (index, entry) in bundle.workflows.iter().enumerate() {
        match checking::text(entry.spec.to_string(), Format::Json).await {
            Ok(valid) => checked.push(valid),
            Err(ApiError::InvalidWorkflow(found)) => {
                problems.extend(found.into_iter().map(|mut problem| {
                    problem.message = format!("workflows[{index}]: {}", problem.message);
                    problem
                }));
            }
            Err(other) => return Err(other),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::InvalidWorkflow(problems));
    }
    let mut imported = Vec::new();
    for valid in checked {
        let (new, stored) = register(&app, valid, Same::Any).await?;
        imported.push(ImportedWorkflow {
            name: stored.name,
            version: stored.version,
            new,
        });
    }
    Ok((StatusCode::OK, Json(Imported { imported })).into_response())
}

/// A `name` or `name@version` a run names its workflow by.
pub(crate) async fn resolve(app: &AppState, reference: &str) -> Result<StoredWorkflow, ApiError> {
    let (name, version) = match reference.rsplit_once('@') {
        Some((name, version)) => {
            let version = version.parse().map_err(|_| {
                ApiError::Unprocessable(format!(
                    "`{reference}`: a workflow is named `name` or `name@VERSION`"
                ))
            })?;
            (name, Some(version))
        }
        None => (reference, None),
    };
    app.engine
        .store()
        .workflow(name, version)
        .await
        .map_err(|error| match error {
            baton_store::Error::UnknownWorkflow(_) | baton_store::Error::UnknownVersion { .. } => {
                ApiError::Unprocessable(error.to_string())
            }
            other => other.into(),
        })
}
