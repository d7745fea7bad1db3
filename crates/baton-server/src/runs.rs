//! `/api/v1/runs`: starting, listing, reading and cancelling runs, and
//! what a recorded run proves (trace, provenance, checkpoints, artifacts).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_core::run::{Control, Decision, Digest, Millis, RunStatus};
use baton_core::{Format, Valid};
use baton_engine::RunOptions;
use baton_store::{RunCursor, RunFilter, Scope};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{Accepted, ArtifactShown, DecisionRequest, RunPage, Started, Traced};
use crate::auth::Principal;
use crate::checking;
use crate::described::Described;
use crate::problem::{ApiError, Body, PathArgs, Query};
use crate::refusals;
use crate::shown::RunShown;

/// Bodies whose types live in the engine and the store, documented from
/// their own schemas (the macros take a plain path).
type RunBody = Described<RunShown<'static>>;
type ProvenanceBody = Described<baton_engine::ProvenanceChain>;
type VerificationBody = Described<baton_engine::Verification>;
type CheckpointBody = Described<baton_store::CheckpointInfo>;

/// Runs listed per page unless `limit` says otherwise, and at most.
const PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

/// The largest time bound a listing takes: what a JSON number carries
/// exactly (2^53 - 1 ms, some 285,000 years).
const MAX_SAFE_MILLIS: u64 = 9_007_199_254_740_991;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRun {
    /// The workflow: a YAML or JSON text, or the spec as a JSON object.
    spec: Option<Value>,
    /// Or a registered workflow: `name` (its latest version) or
    /// `name@VERSION`.
    workflow: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, Value>,
    /// A request retried with the same key gets the same run, not a second.
    idempotency_key: Option<String>,
    /// At most this many tasks at once (overrides the workflow's).
    concurrency: Option<u32>,
    /// The run's timeout, like `10m` (overrides the workflow's).
    timeout: Option<baton_core::Duration>,
    /// Labels every task for remote workers requires unless it names the
    /// label itself: where this run runs (`{"region": "eu"}`).
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Written out, as a derived schema cannot say that a run names its
/// workflow one way or the other, exactly once.
impl utoipa::PartialSchema for StartRun {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let common = json!({
            "inputs": {"type": "object"},
            "idempotency_key": {"type": "string"},
            "concurrency": {"type": "integer", "minimum": 1, "maximum": u32::MAX},
            "labels": {
                "type": "object",
                "maxProperties": 64,
                "additionalProperties": {"type": "string", "maxLength": 256},
                "description": "Labels the run's tasks for remote workers require (a task's own value for a label wins)",
            },
            "timeout": {
                "type": "string",
                "minLength": 2,
                "pattern": "^([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?([0-9]{1,6}ms)?$",
                "description": "A duration like `90s`, `10m` or `1h30m`",
            },
        });
        let variant = |field: &str, schema: Value, description: &str| {
            let mut properties = common.clone();
            properties[field] = schema;
            json!({
                "type": "object",
                "description": description,
                "properties": properties,
                "required": [field],
                "additionalProperties": false,
            })
        };
        let schema = json!({"oneOf": [
            variant(
                "spec",
                json!({"oneOf": [
                    {"type": "string", "minLength": 1},
                    {"$ref": "#/components/schemas/Workflow"},
                ]}),
                "The workflow given whole: YAML or JSON text, or an object",
            ),
            variant(
                "workflow",
                json!({"type": "string", "pattern": "^[^@]+(@[0-9]+)?$"}),
                "A registered workflow: `name` (its latest version) or `name@VERSION`",
            ),
        ]});
        serde_json::from_value(schema).unwrap_or_default()
    }
}

impl utoipa::ToSchema for StartRun {}

/// `POST /api/v1/runs`: 201 with the new run, or 200 with the run an
/// earlier request with the same idempotency key started.
#[utoipa::path(
    post,
    path = "/api/v1/runs",
    tag = "runs",
    request_body = StartRun,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A request retried with the same key gets the same run"),
    ),
    responses(
        (status = 201, description = "The run started", body = Started),
        (status = 200, description = "The run an earlier request with this idempotency key started", body = Started),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::TooLarge,
        refusals::UnsupportedMediaType,
        refusals::Unprocessable,
        refusals::TooMany,
    ),
)]
pub(crate) async fn start(
    State(app): State<AppState>,
    headers: HeaderMap,
    principal: Option<axum::Extension<Principal>>,
    Body(request): Body<StartRun>,
) -> Result<Response, ApiError> {
    if request.concurrency == Some(0) {
        return Err(ApiError::Unprocessable(
            "`concurrency` is at least 1".to_owned(),
        ));
    }
    if request.labels.len() > 64
        || request
            .labels
            .values()
            .any(|value| value.chars().count() > 256)
    {
        return Err(ApiError::Unprocessable(
            "at most 64 `labels`, each value at most 256 characters".to_owned(),
        ));
    }
    let (valid, version) = match (&request.spec, &request.workflow) {
        (Some(spec), None) => {
            if let Some(axum::Extension(principal)) = &principal
                && !principal.scope.covers(Scope::Execute)
            {
                return Err(ApiError::Forbidden(format!(
                    "key `{}` has scope {}; an inline `spec` runs its commands as the \
                     server's user, which needs execute: start a registered workflow by \
                     `workflow` instead, or use an execute key",
                    principal.key_id, principal.scope
                )));
            }
            (checked(spec).await?, None)
        }
        (None, Some(reference)) => {
            let stored = crate::workflows::resolve(&app, reference).await?;
            let valid = checking::workflow(Arc::unwrap_or_clone(stored.workflow))
                .await?
                .map_err(ApiError::InvalidWorkflow)?;
            (valid, Some(stored.version))
        }
        _ => {
            return Err(ApiError::Unprocessable(
                "give the workflow as `spec` or by name as `workflow`, one of the two".to_owned(),
            ));
        }
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or(request.idempotency_key);
    let run_id = key.map(|key| keyed_run_id(&valid.workflow().name, &key));
    if let Some(run_id) = &run_id {
        match app.engine.store().summary(run_id).await {
            Ok(existing) => {
                return Ok(started(StatusCode::OK, &existing.run_id, existing.status));
            }
            Err(baton_store::Error::UnknownRun(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    admit(&app)?;
    let options = RunOptions {
        inputs: request.inputs,
        concurrency: request.concurrency,
        timeout: request.timeout,
        labels: request.labels,
        run_id,
        watch: true,
        served: true,
        workflow_version: version,
        ..RunOptions::default()
    };
    // The same key, sent twice at once: the other request started it.
    launched(&app, launch(&app, valid, options).await?).await
}

/// What came of starting a run under a run id that may be taken.
pub(crate) enum Launched {
    /// Started, and driven and streamed by this server.
    Here(String),
    /// Another request, replica or tick started the run of that id first.
    Taken(String),
}

impl Launched {
    pub(crate) fn into_run_id(self) -> String {
        match self {
            Launched::Here(run_id) | Launched::Taken(run_id) => run_id,
        }
    }
}

/// Starts `valid` as a run this server drives.
pub(crate) async fn launch(
    app: &AppState,
    valid: Valid,
    options: RunOptions,
) -> Result<Launched, baton_engine::Error> {
    match app.engine.start_recorded(Arc::new(valid), options).await {
        Ok(handle) => {
            let run_id = handle.run_id().to_owned();
            app.live.drive(handle);
            Ok(Launched::Here(run_id))
        }
        Err(baton_engine::Error::Store(baton_store::Error::RunExists(run_id))) => {
            Ok(Launched::Taken(run_id))
        }
        Err(error) => Err(error),
    }
}

/// The answer to a start: 201 for a run started here, 200 naming the run
/// an earlier start of the same id made.
pub(crate) async fn launched(app: &AppState, launched: Launched) -> Result<Response, ApiError> {
    Ok(match launched {
        Launched::Here(run_id) => started(StatusCode::CREATED, &run_id, RunStatus::Pending),
        Launched::Taken(run_id) => {
            let existing = app.engine.store().summary(&run_id).await?;
            started(StatusCode::OK, &run_id, existing.status)
        }
    })
}

/// Refuses a new run while this server drives as many as it may.
pub(crate) fn admit(app: &AppState) -> Result<(), ApiError> {
    match app.config.max_active_runs {
        Some(limit) if app.live.active() >= limit => Err(ApiError::TooMany {
            detail: format!(
                "this server drives {limit} runs, the most it takes at once \
                 ([server] max_active_runs): try again when one ends"
            ),
            retry_after: 1,
        }),
        _ => Ok(()),
    }
}

pub(crate) fn started(status: StatusCode, run_id: &str, run_status: RunStatus) -> Response {
    let location = format!("/api/v1/runs/{run_id}");
    let mut response = (
        status,
        Json(Started {
            run_id: run_id.to_owned(),
            status: run_status,
            href: location.clone(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A spec from a request: text (YAML, which JSON is too) gets its problems
/// located by line:col.
async fn checked(spec: &Value) -> Result<Valid, ApiError> {
    let (text, format) = match spec {
        Value::String(text) => (text.clone(), Format::Yaml),
        Value::Object(_) => (spec.to_string(), Format::Json),
        _ => {
            return Err(ApiError::Unprocessable(
                "`spec` must be a workflow: YAML or JSON text, or an object".to_owned(),
            ));
        }
    };
    checking::text(text, format).await
}

/// The run id an idempotency key stands for: the same key (for the same
/// workflow) always names the same run, so the store refuses a second.
pub(crate) fn keyed_run_id(workflow: &str, key: &str) -> String {
    let digest = Digest::of_bytes(format!("{workflow}\0{key}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.0[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListRuns {
    /// pending, running, paused, succeeded, failed, cancelled, compensated, compensation_failed.
    #[param(value_type = Option<String>, pattern = "^(pending|running|paused|succeeded|failed|cancelled|compensated|compensation_failed)$")]
    status: Option<RunStatus>,
    workflow: Option<String>,
    /// Milliseconds since the epoch.
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    started_after: Option<i64>,
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    started_before: Option<i64>,
    /// Runs per page, 1 to 1000 (50 by default).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the page before: `STARTED_MS.RUN_ID`, the
    /// place the page follows on from.
    #[param(pattern = r"^[0-9]{1,16}\.[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
    cursor: Option<String>,
}

/// A time bound of a listing, in ms since the epoch.
fn bound(name: &str, value: Option<i64>) -> Result<Option<Millis>, ApiError> {
    value
        .map(|millis| {
            u64::try_from(millis)
                .ok()
                .filter(|&millis| millis <= MAX_SAFE_MILLIS)
                .map(Millis)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "`{name}` is milliseconds since the epoch, 0 to {MAX_SAFE_MILLIS}"
                    ))
                })
        })
        .transpose()
}

/// `GET /api/v1/runs`: newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/runs",
    tag = "runs",
    params(ListRuns),
    responses(
        (status = 200, description = "Runs, newest first, and the cursor of the next page", body = RunPage),
        refusals::BadRequest,
        refusals::Unauthorized,
    ),
)]
pub(crate) async fn list(
    State(app): State<AppState>,
    Query(query): Query<ListRuns>,
) -> Result<Json<RunPage>, ApiError> {
    let after = query
        .cursor
        .as_deref()
        .map(str::parse::<RunCursor>)
        .transpose()
        .map_err(|error| ApiError::BadRequest(format!("`cursor`: {error}")))?;
    let limit = query.limit.unwrap_or(PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("`limit` is 1 to {MAX_PAGE}")));
    }
    let filter = RunFilter {
        status: query.status,
        workflow: query.workflow,
        started_after: bound("started_after", query.started_after)?,
        started_before: bound("started_before", query.started_before)?,
        after,
        limit,
        ..RunFilter::default()
    };
    let runs = app.engine.store().runs(&filter).await?;
    let next_cursor = (runs.len() == limit)
        .then(|| runs.last().map(|run| RunCursor::after(run).to_string()))
        .flatten();
    let now = app.now();
    let runs = runs.into_iter().map(|run| run.judged(now)).collect();
    Ok(Json(RunPage { runs, next_cursor }))
}

/// `GET /api/v1/runs/{id}`: tasks with states, attempts, timings, outputs.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run: tasks with states, attempts, timings, outputs", body = RunBody),
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn get(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Response, ApiError> {
    let view = app.engine.view(&run).await?;
    let waiting = app.engine.dispatcher().waiting(&run);
    Ok(json_bytes(app.shown.encode(&run, view, waiting).await?))
}

fn json_bytes(body: axum::body::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `POST /api/v1/runs/{id}/cancel`: 202; the run stops its tasks and ends
/// `cancelled`. Whoever drives it (this server or another process) sees it.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/cancel",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Cancel requested", body = Accepted),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
    ),
)]
pub(crate) async fn cancel(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Response, ApiError> {
    request(&app, run, Control::Cancel).await
}

/// `POST /api/v1/runs/{id}/pause`: 202; no new task starts, running ones
/// finish.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/pause",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Pause requested", body = Accepted),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
    ),
)]
pub(crate) async fn pause(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Response, ApiError> {
    request(&app, run, Control::Pause).await
}

/// `POST /api/v1/runs/{id}/resume`: 202; a paused run starts tasks again.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/resume",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Resume requested", body = Accepted),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
    ),
)]
pub(crate) async fn resume(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Response, ApiError> {
    request(&app, run, Control::Resume).await
}

/// `POST /api/v1/runs/{id}/tasks/{task}/decision`: 202; the waiting
/// approval succeeds with the choice as its output. 422 for a choice it
/// does not offer, 409 when it is not waiting.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/tasks/{task}/decision",
    tag = "approvals",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("task" = String, Path, description = "A task's id"),
    ),
    request_body = DecisionRequest,
    responses(
        (status = 202, description = "Decision recorded", body = Accepted),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
        refusals::UnsupportedMediaType,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn decide(
    State(app): State<AppState>,
    PathArgs((run, task)): PathArgs<(String, String)>,
    principal: Option<axum::Extension<Principal>>,
    Body(decision): Body<DecisionRequest>,
) -> Result<Response, ApiError> {
    // The key that sent the decision is who decided; what the body says
    // about it is a note beside it. Without keys (`--insecure-no-auth`)
    // nothing is known but what the body says.
    let (by, key_id, note) = match principal {
        Some(axum::Extension(principal)) => {
            (Some(principal.name), Some(principal.key_id), decision.by)
        }
        None => (decision.by, None, None),
    };
    let control = Control::Decide(Decision {
        task,
        choice: decision.choice,
        by,
        key_id,
        note,
        comment: decision.comment,
    });
    request(&app, run, control).await
}

/// Leaves `control` for the run, answering 202 once it is durable.
async fn request(app: &AppState, run: String, control: Control) -> Result<Response, ApiError> {
    app.engine.control(&run, control.clone()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            run_id: run,
            accepted: control,
        }),
    )
        .into_response())
}

/// `POST /api/v1/runs/{id}/tasks/{task}/retry`: 201 with a new run of the
/// same workflow and inputs that runs `task` and what depends on it again
/// and takes every other success from the finished run (whose record stays
/// as it was).
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/tasks/{task}/retry",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("task" = String, Path, description = "A task's id"),
    ),
    responses(
        (status = 201, description = "A new run that runs the task and its dependants again", body = Started),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
        refusals::TooMany,
    ),
)]
pub(crate) async fn retry(
    State(app): State<AppState>,
    PathArgs((run, task)): PathArgs<(String, String)>,
) -> Result<Response, ApiError> {
    let summary = app.engine.store().summary(&run).await?;
    if !summary.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "run `{run}` is {}: a task is retried once the run has ended",
            summary.status
        )));
    }
    let row = app
        .engine
        .store()
        .tasks(&run)
        .await?
        .into_iter()
        .find(|row| row.id == task);
    if let Some(row) = row
        && row.status.succeeded()
    {
        return Err(ApiError::Conflict(format!(
            "task `{task}` {} in run `{run}`: there is nothing to retry",
            row.status.name()
        )));
    }
    admit(&app)?;
    let handle = app.engine.rerun_recorded(&run, Some(&task), true).await?;
    let run_id = handle.run_id().to_owned();
    app.live.drive(handle);
    Ok(started(StatusCode::CREATED, &run_id, RunStatus::Pending))
}

/// `GET /api/v1/runs/{id}/trace`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/trace",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The digest of the run's event log", body = Traced),
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn trace(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Traced>, ApiError> {
    let trace = app.engine.trace(&run).await?;
    Ok(Json(Traced {
        run_id: run,
        trace: trace.to_string(),
    }))
}

/// `GET /api/v1/runs/{id}/provenance`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/provenance",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Provenance records and the root digest", body = ProvenanceBody),
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn provenance(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<baton_engine::ProvenanceChain>, ApiError> {
    Ok(Json(app.engine.provenance(&run).await?))
}

/// `GET /api/v1/runs/{id}/verify`: the provenance recomputed from events.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/verify",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The provenance recomputed from events", body = VerificationBody),
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn verify(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<baton_engine::Verification>, ApiError> {
    Ok(Json(app.engine.verify(&run).await?))
}

/// `GET /api/v1/runs/{id}/checkpoints`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/checkpoints",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Snapshots with their SHA-256", body = Vec<CheckpointBody>),
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn checkpoints(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Vec<baton_store::CheckpointInfo>>, ApiError> {
    let store = app.engine.store();
    store.summary(&run).await?;
    Ok(Json(store.checkpoints(&run).await?))
}

/// `GET /api/v1/runs/{id}/artifacts`: what tasks stored and consumed.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/artifacts",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Files tasks stored and consumed", body = Vec<ArtifactShown>),
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn artifacts(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Vec<ArtifactShown>>, ApiError> {
    let store = app.engine.store();
    let workflow = store.run(&run).await?.workflow;
    let rows = store.artifacts(&run).await?;
    let mut shown = Vec::with_capacity(rows.len());
    for row in rows {
        // A row naming no task of the run is damage, said as such.
        let Some(task) = workflow.tasks.get(row.task as usize) else {
            return Err(ApiError::Internal(format!(
                "run `{run}` is corrupt: an artifact row names task {}, which it does not have",
                row.task
            )));
        };
        shown.push(ArtifactShown {
            task: task.id.to_string(),
            attempt: row.attempt,
            role: row.role,
            path: row.artifact.path,
            digest: row.artifact.digest,
            size: row.artifact.size,
        });
    }
    Ok(Json(shown))
}

/// `GET /api/v1/artifacts/{sha256}`: an artifact's bytes.
#[utoipa::path(
    get,
    path = "/api/v1/artifacts/{sha256}",
    tag = "runs",
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The artifact's SHA-256, 64 hex digits")),
    responses(
        (status = 200, description = "The artifact's bytes", content_type = "application/octet-stream"),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn artifact(
    State(app): State<AppState>,
    PathArgs(digest): PathArgs<String>,
) -> Result<Response, ApiError> {
    let digest: Digest = digest.parse().map_err(|_| {
        ApiError::BadRequest("an artifact is named by its SHA-256, 64 hex digits".to_owned())
    })?;
    let bytes = tokio::fs::read(app.engine.artifact_file(&digest))
        .await
        .map_err(|_| ApiError::NotFound(format!("no artifact {digest}")))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
