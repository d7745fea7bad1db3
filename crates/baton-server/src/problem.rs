//! Errors as RFC 9457 problem details (`application/problem+json`), one
//! stable `type` per kind, and the extractors that turn malformed requests
//! into them instead of axum's plain-text rejections.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_core::run::ControlError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where problem types live; a kind's type is this plus its name.
const TYPE_BASE: &str = "/api/v1/problems/";

/// What went wrong with a request, by kind.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    /// No API key, or one that is not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid key whose scope does not cover the request.
    #[error("{0}")]
    Forbidden(String),
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: String },
    /// The body, query or path could not be read as the endpoint's input.
    #[error("{0}")]
    BadRequest(String),
    /// A body over the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// A body of a content type the endpoint does not read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A well-formed body whose values the endpoint refuses.
    #[error("{0}")]
    Unprocessable(String),
    /// A spec or its inputs with problems: every one is listed.
    #[error("the workflow has {} problem(s)", .0.len())]
    InvalidWorkflow(Vec<baton_core::Problem>),
    /// The request is well formed but the resource's state refuses it.
    #[error("{0}")]
    Conflict(String),
    /// Too many requests of a kind: try again after `retry_after` seconds.
    #[error("{detail}")]
    TooMany { detail: String, retry_after: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn kind(&self) -> (&'static str, &'static str, StatusCode) {
        match self {
            ApiError::NotFound(_) => ("not-found", "Not found", StatusCode::NOT_FOUND),
            ApiError::Unauthorized(_) => ("unauthorized", "Unauthorized", StatusCode::UNAUTHORIZED),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden", StatusCode::FORBIDDEN),
            ApiError::MethodNotAllowed { .. } => (
                "method-not-allowed",
                "Method not allowed",
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            ApiError::BadRequest(_) => (
                "malformed-request",
                "Malformed request",
                StatusCode::BAD_REQUEST,
            ),
            ApiError::TooLarge(_) => (
                "body-too-large",
                "Request body too large",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            ApiError::UnsupportedMediaType(_) => (
                "unsupported-media-type",
                "Unsupported media type",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            ApiError::Unprocessable(_) => (
                "invalid-request",
                "Invalid request",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ApiError::InvalidWorkflow(_) => (
                "invalid-workflow",
                "Invalid workflow",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ApiError::Conflict(_) => ("conflict", "Conflict", StatusCode::CONFLICT),
            ApiError::TooMany { .. } => (
                "too-many-requests",
                "Too many requests",
                StatusCode::TOO_MANY_REQUESTS,
            ),
            ApiError::Unavailable(_) => (
                "unavailable",
                "Service unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            ApiError::Internal(_) => (
                "internal",
                "Internal error",
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        }
    }
}

/// The body of a problem response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Every problem of an invalid workflow, with line:col when the spec
    /// came as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub problems: Option<Vec<baton_core::Problem>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (name, title, status) = self.kind();
        let detail = self.to_string();
        let challenge = matches!(self, ApiError::Unauthorized(_));
        let retry_after = match &self {
            ApiError::TooMany { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let problems = match self {
            ApiError::InvalidWorkflow(problems) => Some(problems),
            _ => None,
        };
        let body = Problem {
            kind: format!("{TYPE_BASE}{name}"),
            title,
            status: status.as_u16(),
            detail,
            problems,
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"baton\""),
            );
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<baton_engine::Error> for ApiError {
    fn from(error: baton_engine::Error) -> ApiError {
        match error {
            baton_engine::Error::Invalid(problems) => ApiError::InvalidWorkflow(problems),
            baton_engine::Error::Store(store) => store.into(),
            baton_engine::Error::UnknownTask { .. } => ApiError::NotFound(error.to_string()),
            baton_engine::Error::NotReusable { .. } => ApiError::Conflict(error.to_string()),
            baton_engine::Error::Control(ControlError::UnknownTask(_)) => {
                ApiError::NotFound(error.to_string())
            }
            baton_engine::Error::Control(control) if control.is_invalid() => {
                ApiError::Unprocessable(control.to_string())
            }
            baton_engine::Error::Control(control) => ApiError::Conflict(control.to_string()),
            baton_engine::Error::Draining => ApiError::Unavailable(error.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<baton_store::Error> for ApiError {
    fn from(error: baton_store::Error) -> ApiError {
        match error {
            baton_store::Error::UnknownRun(_)
            | baton_store::Error::UnknownWorkflow(_)
            | baton_store::Error::UnknownVersion { .. }
            | baton_store::Error::UnknownKey(_) => ApiError::NotFound(error.to_string()),
            baton_store::Error::RunExists(_)
            | baton_store::Error::Conflict { .. }
            | baton_store::Error::Unfinished(_)
            | baton_store::Error::VersionExists { .. } => ApiError::Conflict(error.to_string()),
            baton_store::Error::Database { .. }
            | baton_store::Error::Postgres { .. }
            | baton_store::Error::Locked { .. }
            | baton_store::Error::WriterStopped => {
                metrics::counter!("baton_store_errors_total", "kind" => "unavailable").increment(1);
                ApiError::Unavailable(error.to_string())
            }
            other => {
                metrics::counter!("baton_store_errors_total", "kind" => "failed").increment(1);
                ApiError::Internal(other.to_string())
            }
        }
    }
}

/// An extractor's refusal, by the status axum gave it.
pub(crate) fn rejected(status: StatusCode, detail: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(detail),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(detail),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(detail),
        _ => ApiError::BadRequest(detail),
    }
}

/// A JSON body; what cannot be read is a problem with axum's own status
/// (400 syntax, 415 content type, 413 size, 422 shape).
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Body<T>, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    rejected(rejection.status(), rejection.body_text())
}

/// Query parameters; a bad one is a 400 problem.
pub(crate) struct Query<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection: QueryRejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// Path parameters; a bad one is a 400 problem.
pub(crate) struct PathArgs<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PathArgs<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathArgs(value))
            .map_err(|rejection: PathRejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// Unknown routes.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}

/// Known routes asked with a method they do not take.
pub(crate) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_cannot_answer_is_a_503_not_a_500() {
        let unreachable = baton_store::Error::Postgres {
            place: "db:5432/baton".to_owned(),
            message: "cannot connect".to_owned(),
            source: None,
        };
        let error = ApiError::from(baton_engine::Error::Store(unreachable));
        assert_eq!(error.kind().2, StatusCode::SERVICE_UNAVAILABLE);
    }
}
