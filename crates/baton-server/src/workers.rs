//! The worker protocol's HTTP side (`/api/v1/workers`): a worker registers,
//! polls (reporting what ended, extending what runs, taking new leases),
//! uploads logs, drains and leaves. Every call but registering names the
//! worker in the path and carries its token in `Baton-Worker-Token`; the
//! key must be the one that registered it, so a worker key acts only for
//! its own workers and their leases. The messages are
//! [`baton_engine::remote::protocol`]'s.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_engine::WorkerError;
use baton_engine::remote::protocol::{
    LogStream, Poll, Polled, Registered, Registration, Report, TOKEN_HEADER,
};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Principal;
use crate::described::{PollBody, PolledBody, RegisteredBody, RegistrationBody, ReportBody};
use crate::problem::{ApiError, Body, PathArgs, Query};
use crate::refusals;

/// Who calls: the key's id (none when keys are off) and the worker token.
pub(crate) struct Caller {
    key: String,
    token: String,
}

impl Caller {
    /// As the dispatcher names a caller for worker `id`.
    fn acting_for<'a>(&'a self, id: &'a str) -> baton_engine::remote::Caller<'a> {
        baton_engine::remote::Caller {
            worker: id,
            key: &self.key,
            token: &self.token,
        }
    }
}

/// Read from the request: the key the middleware let through, and the
/// token header (empty when absent, which no worker has).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Caller, Self::Rejection> {
        let token = parts
            .headers
            .get(TOKEN_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let key = parts
            .extensions
            .get::<Principal>()
            .map_or_else(String::new, |principal| principal.key_id.clone());
        Ok(Caller { key, token })
    }
}

fn refused(error: WorkerError) -> ApiError {
    match error {
        WorkerError::Unknown(_) => ApiError::NotFound(error.to_string()),
        WorkerError::NotYours(_) => ApiError::Forbidden(error.to_string()),
        WorkerError::StaleLease(_) => ApiError::Conflict(error.to_string()),
        WorkerError::File(_) => ApiError::Unprocessable(error.to_string()),
        WorkerError::Log { .. } => ApiError::Internal(error.to_string()),
    }
}

fn check(registration: &Registration) -> Result<(), ApiError> {
    let name_ok = |name: &str| {
        (1..=128).contains(&name.chars().count()) && !name.chars().any(char::is_control)
    };
    if !name_ok(&registration.name) {
        return Err(ApiError::Unprocessable(
            "`name` must be 1 to 128 characters without control characters".to_owned(),
        ));
    }
    if registration.capabilities.is_empty()
        || registration.capabilities.len() > 64
        || !registration
            .capabilities
            .iter()
            .all(|capability| baton_core::spec::is_capability(capability))
    {
        return Err(ApiError::Unprocessable(
            "`capabilities` must list 1 to 64 names of letters, digits, `_`, `-` and `.`"
                .to_owned(),
        ));
    }
    if !(1..=10_000).contains(&registration.concurrency) {
        return Err(ApiError::Unprocessable(
            "`concurrency` must be 1 to 10000".to_owned(),
        ));
    }
    if registration.labels.len() > 64
        || registration
            .labels
            .iter()
            .any(|(name, value)| !name_ok(name) || value.chars().count() > 256)
    {
        return Err(ApiError::Unprocessable(
            "at most 64 labels, each name 1 to 128 characters and each value at most 256"
                .to_owned(),
        ));
    }
    Ok(())
}

/// `POST /api/v1/workers`: registers a worker, answering its id and token.
#[utoipa::path(
    post,
    path = "/api/v1/workers",
    tag = "workers",
    request_body(content = RegistrationBody, description = "What the worker offers"),
    responses(
        (status = 201, description = "Registered: send the token with every later call", body = RegisteredBody),
        refusals::BadRequest,
        refusals::UnsupportedMediaType,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn register(
    State(app): State<AppState>,
    caller: Caller,
    Body(registration): Body<Registration>,
) -> Result<Response, ApiError> {
    check(&registration)?;
    let registered: Registered = app.engine.dispatcher().register(&caller.key, registration);
    Ok((StatusCode::CREATED, Json(registered)).into_response())
}

/// `POST /api/v1/workers/{id}/poll`: reports results, extends leases and
/// takes new ones, waiting up to `wait_ms` when there is no work.
#[utoipa::path(
    post,
    path = "/api/v1/workers/{id}/poll",
    tag = "workers",
    params(
        ("id" = String, Path, description = "The worker's id"),
        ("Baton-Worker-Token" = String, Header, description = "The token registration answered"),
    ),
    request_body(content = PollBody, description = "Results, leases held, work wanted"),
    responses(
        (status = 200, description = "New leases, how each result was taken, leases to stop", body = PolledBody),
        refusals::BadRequest,
        refusals::UnsupportedMediaType,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn poll(
    State(app): State<AppState>,
    caller: Caller,
    PathArgs(id): PathArgs<String>,
    Body(poll): Body<Poll>,
) -> Result<Json<Polled>, ApiError> {
    if poll.take > 1000 || poll.results.len() > 10_000 || poll.running.len() > 10_000 {
        return Err(ApiError::Unprocessable(
            "a poll takes at most 1000 leases and reports at most 10000 results and leases held"
                .to_owned(),
        ));
    }
    app.engine
        .dispatcher()
        .poll(caller.acting_for(&id), poll)
        .await
        .map(Json)
        .map_err(refused)
}

/// `POST /api/v1/workers/{id}/complete`: reports one attempt's end; 409
/// (changing nothing) when the lease is not the worker's with that fencing
/// token any more.
#[utoipa::path(
    post,
    path = "/api/v1/workers/{id}/complete",
    tag = "workers",
    params(
        ("id" = String, Path, description = "The worker's id"),
        ("Baton-Worker-Token" = String, Header, description = "The token registration answered"),
    ),
    request_body(content = ReportBody, description = "The lease, its fencing token and how it ended"),
    responses(
        (status = 204, description = "Recorded as the attempt's end"),
        refusals::BadRequest,
        refusals::UnsupportedMediaType,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn complete(
    State(app): State<AppState>,
    caller: Caller,
    PathArgs(id): PathArgs<String>,
    Body(report): Body<Report>,
) -> Result<StatusCode, ApiError> {
    app.engine
        .dispatcher()
        .complete(caller.acting_for(&id), report)
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(refused)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// `stdout` or `stderr`.
    #[param(value_type = String, pattern = "^(stdout|stderr)$")]
    stream: LogStream,
}

/// `POST /api/v1/workers/{id}/leases/{lease}/logs?stream=stdout`: appends
/// the body to the attempt's log, which `baton logs` and the API show.
#[utoipa::path(
    post,
    path = "/api/v1/workers/{id}/leases/{lease}/logs",
    tag = "workers",
    params(
        ("id" = String, Path, description = "The worker's id"),
        ("lease" = String, Path, description = "A lease the worker holds"),
        ("Baton-Worker-Token" = String, Header, description = "The token registration answered"),
        LogQuery,
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "Log bytes, appended as they are"),
    responses(
        (status = 204, description = "Appended"),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
        refusals::TooLarge,
    ),
)]
pub(crate) async fn logs(
    State(app): State<AppState>,
    caller: Caller,
    PathArgs((id, lease)): PathArgs<(String, String)>,
    Query(query): Query<LogQuery>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    app.engine
        .dispatcher()
        .append_log(caller.acting_for(&id), &lease, query.stream, &body)
        .await
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(refused)
}

/// The largest file a worker uploads in one request.
pub(crate) const FILE_LIMIT: usize = 64 * 1024 * 1024;

/// `PUT /api/v1/workers/{id}/leases/{lease}/files/{sha256}`: stores a file
/// the lease's task produced (one its `artifacts:` match), checked against
/// its digest; the report then names it.
#[utoipa::path(
    put,
    path = "/api/v1/workers/{id}/leases/{lease}/files/{sha256}",
    tag = "workers",
    params(
        ("id" = String, Path, description = "The worker's id"),
        ("lease" = String, Path, description = "A lease the worker holds"),
        ("sha256" = String, Path, description = "SHA-256 of the bytes, 64 hex digits", pattern = "^[0-9a-f]{64}$"),
        ("Baton-Worker-Token" = String, Header, description = "The token registration answered"),
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "The file's bytes (at most 64 MiB)"),
    responses(
        (status = 204, description = "Stored"),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
        refusals::TooLarge,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn upload_file(
    State(app): State<AppState>,
    caller: Caller,
    PathArgs((id, lease, sha256)): PathArgs<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    app.engine
        .dispatcher()
        .upload_file(caller.acting_for(&id), &lease, &sha256, body.to_vec())
        .await
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(refused)
}

/// `GET /api/v1/workers/{id}/leases/{lease}/files/{sha256}`: a file the
/// lease's task is given (one its needs produced).
#[utoipa::path(
    get,
    path = "/api/v1/workers/{id}/leases/{lease}/files/{sha256}",
    tag = "workers",
    params(
        ("id" = String, Path, description = "The worker's id"),
        ("lease" = String, Path, description = "A lease the worker holds"),
        ("sha256" = String, Path, description = "SHA-256 of one of the lease's `files`", pattern = "^[0-9a-f]{64}$"),
        ("Baton-Worker-Token" = String, Header, description = "The token registration answered"),
    ),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = String),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Conflict,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn download_file(
    State(app): State<AppState>,
    caller: Caller,
    PathArgs((id, lease, sha256)): PathArgs<(String, String, String)>,
) -> Result<Response, ApiError> {
    let bytes = app
        .engine
        .dispatcher()
        .download_file(caller.acting_for(&id), &lease, &sha256)
        .await
        .map_err(refused)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}

/// `POST /api/v1/workers/{id}/drain`: the worker gets no new leases; what
/// it holds goes on.
#[utoipa::path(
    post,
    path = "/api/v1/workers/{id}/drain",
    tag = "workers",
    params(
        ("id" = String, Path, description = "The worker's id"),
        ("Baton-Worker-Token" = String, Header, description = "The token registration answered"),
    ),
    responses(
        (status = 204, description = "Draining"),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
    ),
)]
pub(crate) async fn drain(
    State(app): State<AppState>,
    caller: Caller,
    PathArgs(id): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    app.engine
        .dispatcher()
        .drain(caller.acting_for(&id))
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(refused)
}

/// `DELETE /api/v1/workers/{id}`: the worker leaves; attempts it still
/// holds go to other workers as they are.
#[utoipa::path(
    delete,
    path = "/api/v1/workers/{id}",
    tag = "workers",
    params(
        ("id" = String, Path, description = "The worker's id"),
        ("Baton-Worker-Token" = String, Header, description = "The token registration answered"),
    ),
    responses(
        (status = 204, description = "Deregistered"),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
    ),
)]
pub(crate) async fn deregister(
    State(app): State<AppState>,
    caller: Caller,
    PathArgs(id): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    app.engine
        .dispatcher()
        .deregister(caller.acting_for(&id))
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(refused)
}
