//! The problem responses the OpenAPI document lists, declared once: each
//! endpoint names the ones it can answer. The bodies themselves are built
//! from [`ApiError`](crate::ApiError); these types only describe them.
#![expect(
    dead_code,
    reason = "described in the OpenAPI document; the responses are made from ApiError"
)]

use utoipa::IntoResponses;

use crate::problem::Problem;

/// Malformed request: the body, query or path could not be read.
#[derive(IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
pub(crate) struct BadRequest(Problem);

/// No valid API key; or, from an address that kept sending keys that
/// are not valid, a key that would need looking up (`Retry-After` says
/// when to try again).
#[derive(IntoResponses)]
pub(crate) enum Unauthorized {
    #[response(status = 401, content_type = "application/problem+json")]
    NoKey(Problem),
    #[response(status = 429, content_type = "application/problem+json")]
    Slowed(Problem),
}

/// The key's scope does not cover this.
#[derive(IntoResponses)]
#[response(status = 403, content_type = "application/problem+json")]
pub(crate) struct Forbidden(Problem);

/// Not found.
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
pub(crate) struct NotFound(Problem);

/// Conflict with the resource's state.
#[derive(IntoResponses)]
#[response(status = 409, content_type = "application/problem+json")]
pub(crate) struct Conflict(Problem);

/// Body too large.
#[derive(IntoResponses)]
#[response(status = 413, content_type = "application/problem+json")]
pub(crate) struct TooLarge(Problem);

/// Unsupported media type.
#[derive(IntoResponses)]
#[response(status = 415, content_type = "application/problem+json")]
pub(crate) struct UnsupportedMediaType(Problem);

/// Invalid request or workflow: every problem is listed.
#[derive(IntoResponses)]
#[response(status = 422, content_type = "application/problem+json")]
pub(crate) struct Unprocessable(Problem);

/// Too many runs active (or failed authentications): `Retry-After` says
/// when to try again.
#[derive(IntoResponses)]
#[response(status = 429, content_type = "application/problem+json")]
pub(crate) struct TooMany(Problem);

/// The store does not answer.
#[derive(IntoResponses)]
#[response(status = 503, content_type = "application/problem+json")]
pub(crate) struct Unavailable(Problem);
