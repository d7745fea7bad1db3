//! `/api/v1/runs`: starting, listing, reading and cancelling runs, and
//! what a recorded run proves (trace, provenance, checkpoints, artifacts,
//! logs).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_core::run::{Digest, Millis, RunStatus};
use baton_core::{Format, Valid};
use baton_engine::RunOptions;
use baton_store::RunFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::problem::{ApiError, Body, PathArgs, Query};

/// Runs listed per page unless `limit` says otherwise, and at most.
const PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRun {
    /// The workflow: a YAML or JSON text, or the spec as a JSON object.
    spec: Value,
    #[serde(default)]
    inputs: BTreeMap<String, Value>,
    /// A request retried with the same key gets the same run, not a second.
    idempotency_key: Option<String>,
    concurrency: Option<u32>,
    timeout: Option<baton_core::Duration>,
}

/// `POST /api/v1/runs`: 201 with the new run, or 200 with the run an
/// earlier request with the same idempotency key started.
pub(crate) async fn start(
    State(app): State<AppState>,
    headers: HeaderMap,
    Body(request): Body<StartRun>,
) -> Result<Response, ApiError> {
    let valid = checked(&request.spec)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or(request.idempotency_key);
    let run_id = key.map(|key| keyed_run_id(&valid.workflow().name, &key));
    if let Some(run_id) = &run_id {
        match app.engine.store().summary(run_id) {
            Ok(existing) => {
                return Ok(started(StatusCode::OK, &existing.run_id, existing.status));
            }
            Err(baton_store::Error::UnknownRun(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let options = RunOptions {
        inputs: request.inputs,
        concurrency: request.concurrency,
        timeout: request.timeout,
        run_id,
        watch: true,
        served: true,
        ..RunOptions::default()
    };
    let handle = match app.engine.start_recorded(Arc::new(valid), options).await {
        Ok(handle) => handle,
        // The same key, sent twice at once: the other request started it.
        Err(baton_engine::Error::Store(baton_store::Error::RunExists(run_id))) => {
            let existing = app.engine.store().summary(&run_id)?;
            return Ok(started(StatusCode::OK, &run_id, existing.status));
        }
        Err(error) => return Err(error.into()),
    };
    let run_id = handle.run_id().to_owned();
    app.live.drive(handle);
    Ok(started(StatusCode::CREATED, &run_id, RunStatus::Pending))
}

fn started(status: StatusCode, run_id: &str, run_status: RunStatus) -> Response {
    let location = format!("/api/v1/runs/{run_id}");
    let mut response = (
        status,
        Json(json!({"run_id": run_id, "status": run_status, "href": location})),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A spec from a request: text (YAML, which JSON is too) gets its problems
/// located by line:col.
fn checked(spec: &Value) -> Result<Valid, ApiError> {
    let (text, format) = match spec {
        Value::String(text) => (text.clone(), Format::Yaml),
        Value::Object(_) => (spec.to_string(), Format::Json),
        _ => {
            return Err(ApiError::Malformed {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail: "`spec` must be a workflow: YAML or JSON text, or an object".to_owned(),
            });
        }
    };
    baton_core::check_source(&text, format).map_err(|mut problems| {
        if format == Format::Yaml {
            baton_core::SourceMap::locate_all(&text, &mut problems);
        }
        ApiError::InvalidWorkflow(problems)
    })
}

/// The run id an idempotency key stands for: the same key (for the same
/// workflow) always names the same run, so the store refuses a second.
fn keyed_run_id(workflow: &str, key: &str) -> String {
    let digest = Digest::of_bytes(format!("{workflow}\0{key}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.0[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListRuns {
    status: Option<RunStatus>,
    workflow: Option<String>,
    /// Milliseconds since the epoch.
    started_after: Option<u64>,
    started_before: Option<u64>,
    limit: Option<usize>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// `GET /api/v1/runs`: newest first, a page at a time.
pub(crate) async fn list(
    State(app): State<AppState>,
    Query(query): Query<ListRuns>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let filter = RunFilter {
        status: query.status,
        workflow: query.workflow,
        started_after: query.started_after.map(Millis),
        started_before: query.started_before.map(Millis),
        after: query.cursor,
        limit,
        ..RunFilter::default()
    };
    let runs = app
        .engine
        .store()
        .runs(&filter)
        .map_err(|error| match error {
            baton_store::Error::UnknownRun(_) => ApiError::Malformed {
                status: StatusCode::BAD_REQUEST,
                detail: "`cursor` names no run: use the `next_cursor` of the page before"
                    .to_owned(),
            },
            other => other.into(),
        })?;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|run| run.run_id.clone()))
        .flatten();
    Ok(Json(json!({"runs": runs, "next_cursor": next})))
}

/// `GET /api/v1/runs/{id}`: tasks with states, attempts, timings, outputs.
pub(crate) async fn get(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Value>, ApiError> {
    let report = app.engine.recorded(&run)?;
    Ok(Json(serde_json::to_value(report).map_err(internal)?))
}

/// `POST /api/v1/runs/{id}/cancel`: 202; the run stops its tasks and ends
/// `cancelled`. Whoever drives it (this server or another process) sees it.
pub(crate) async fn cancel(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Response, ApiError> {
    let summary = app.engine.store().summary(&run)?;
    if summary.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "run `{run}` already ended: {}",
            summary.status
        )));
    }
    if !app.live.cancel(&run) {
        app.engine.store().request_cancel(&run).await?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": run, "status": "cancelling"})),
    )
        .into_response())
}

/// `GET /api/v1/runs/{id}/trace`.
pub(crate) async fn trace(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Value>, ApiError> {
    let trace = app.engine.trace(&run)?;
    Ok(Json(json!({"run_id": run, "trace": trace.to_string()})))
}

/// `GET /api/v1/runs/{id}/provenance`.
pub(crate) async fn provenance(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Value>, ApiError> {
    let chain = app.engine.provenance(&run)?;
    Ok(Json(serde_json::to_value(chain).map_err(internal)?))
}

/// `GET /api/v1/runs/{id}/verify`: the provenance recomputed from events.
pub(crate) async fn verify(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Value>, ApiError> {
    let verification = app.engine.verify(&run)?;
    Ok(Json(serde_json::to_value(verification).map_err(internal)?))
}

/// `GET /api/v1/runs/{id}/checkpoints`.
pub(crate) async fn checkpoints(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.engine.store();
    store.summary(&run)?;
    Ok(Json(
        serde_json::to_value(store.checkpoints(&run)?).map_err(internal)?,
    ))
}

/// `GET /api/v1/runs/{id}/artifacts`: what tasks stored and consumed.
pub(crate) async fn artifacts(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.engine.store();
    let workflow = store.run(&run)?.workflow;
    let rows: Vec<Value> = store
        .artifacts(&run)?
        .into_iter()
        .map(|row| {
            let mut line = serde_json::to_value(&row).unwrap_or_default();
            line["task"] = Value::from(workflow.tasks[row.task as usize].id.as_str());
            line
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// `GET /api/v1/artifacts/{sha256}`: an artifact's bytes.
pub(crate) async fn artifact(
    State(app): State<AppState>,
    PathArgs(digest): PathArgs<String>,
) -> Result<Response, ApiError> {
    let digest: Digest = digest.parse().map_err(|_| ApiError::Malformed {
        status: StatusCode::BAD_REQUEST,
        detail: "an artifact is named by its SHA-256, 64 hex digits".to_owned(),
    })?;
    let bytes = tokio::fs::read(app.engine.artifact_file(&digest))
        .await
        .map_err(|_| ApiError::NotFound(format!("no artifact {digest}")))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    /// The task's last attempt when absent.
    attempt: Option<u32>,
    #[serde(default)]
    stream: LogStream,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogStream {
    #[default]
    Stdout,
    Stderr,
}

/// `GET /api/v1/runs/{id}/tasks/{task}/logs`: what an attempt printed.
pub(crate) async fn logs(
    State(app): State<AppState>,
    PathArgs((run, task)): PathArgs<(String, String)>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let rows = app.engine.store().tasks(&run)?;
    let row = rows.iter().find(|row| row.id == task).ok_or_else(|| {
        ApiError::NotFound(format!("run `{run}` has no task `{task}` that started"))
    })?;
    let attempt = query.attempt.unwrap_or(row.attempts);
    if attempt == 0 || attempt > row.attempts {
        return Err(ApiError::NotFound(format!(
            "task `{task}` has {} attempt(s)",
            row.attempts
        )));
    }
    let file = match query.stream {
        LogStream::Stdout => baton_engine::logs::STDOUT_FILE,
        LogStream::Stderr => baton_engine::logs::STDERR_FILE,
    };
    let path =
        baton_engine::logs::attempt_dir(app.engine.state_dir(), &run, &task, attempt).join(file);
    let text = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(internal(error)),
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(error.to_string())
}
