//! `/api/v1/keys`: listing, creating and revoking API keys (admin scope).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_store::Scope;
use serde::Deserialize;

use crate::AppState;
use crate::api::{KeyIssued, KeyList, KeyShown, Whoami};
use crate::auth::Principal;
use crate::problem::{ApiError, Body, PathArgs};
use crate::refusals;

/// `GET /api/v1/whoami`: the calling key's name and scope.
#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    tag = "keys",
    responses(
        (status = 200, description = "The key the request carried", body = Whoami),
        refusals::Unauthorized,
        refusals::Forbidden,
    ),
)]
pub(crate) async fn whoami(principal: Option<axum::Extension<Principal>>) -> Json<Whoami> {
    Json(match principal {
        Some(axum::Extension(principal)) => Whoami {
            scope: principal.scope,
            name: Some(principal.name),
            key_id: Some(principal.key_id),
        },
        None => Whoami {
            scope: Scope::Admin,
            name: None,
            key_id: None,
        },
    })
}

/// `GET /api/v1/keys`: every key without its secret, revoked ones marked.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    responses(
        (status = 200, description = "Every key, without secrets", body = KeyList),
        refusals::Unauthorized,
        refusals::Forbidden,
    ),
)]
pub(crate) async fn list(State(app): State<AppState>) -> Result<Json<KeyList>, ApiError> {
    let keys = app.engine.store().keys().await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyShown::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// Who or what holds it: up to 100 characters, not only spaces, no
    /// control characters (a terminal would act on them).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    /// read, write, execute or admin.
    #[schema(value_type = String, pattern = "^(read|write|execute|admin)$")]
    scope: Scope,
}

/// `POST /api/v1/keys`: 201 with the key's text, the only time it is shown.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    request_body = NewKey,
    responses(
        (status = 201, description = "The key, shown this once", body = KeyIssued),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::UnsupportedMediaType,
        refusals::Unprocessable,
    ),
)]
pub(crate) async fn create(
    State(app): State<AppState>,
    Body(request): Body<NewKey>,
) -> Result<Response, ApiError> {
    crate::auth::check_key_name(&request.name)
        .map_err(|error| ApiError::Unprocessable(error.to_string()))?;
    let (key, token) = crate::auth::issue(&request.name, request.scope, app.now());
    app.engine.store().put_key(&key).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyIssued {
            shown: KeyShown::from(&key),
            key: token,
        }),
    )
        .into_response())
}

/// `DELETE /api/v1/keys/{id}`: 204; the key stops working at once here.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
    ),
)]
pub(crate) async fn revoke(
    State(app): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    app.engine.store().revoke_key(&id, app.now()).await?;
    app.keys.forget();
    Ok(StatusCode::NO_CONTENT)
}
