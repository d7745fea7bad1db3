//! API keys: issuing them, and the middleware that checks each request's
//! `Authorization: Bearer` key against the scope its route needs.
//!
//! A key reads `baton_<id>_<secret>`. The id is public (listing and revoking
//! name it); the secret is random, shown once, and stored only as its
//! SHA-256, compared in constant time. Keys found are cached for a second,
//! so a hot endpoint does not read the store per request and a key revoked
//! from another process stops working within that second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_core::run::{Digest, Millis};
use baton_store::{ApiKey, Scope, Store};

use crate::AppState;
use crate::problem::ApiError;

/// How long a key looked up stays trusted without asking the store.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// Who made a request: the key it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    pub scope: Scope,
}

/// A new key: its stored record, and the text to hand over (once).
pub fn issue(name: &str, scope: Scope, now: Millis) -> (ApiKey, String) {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let key = ApiKey {
        id: id.clone(),
        name: name.to_owned(),
        scope,
        hash: Digest::of_bytes(secret.as_bytes()),
        created_at: now,
        revoked_at: None,
    };
    (key, format!("baton_{id}_{secret}"))
}

/// Whether the service asks for keys, and the keys it has seen lately.
pub(crate) struct Keys {
    required: bool,
    seen: Mutex<HashMap<String, (Instant, Option<Principal>)>>,
}

impl Keys {
    pub(crate) fn new(required: bool) -> Keys {
        Keys {
            required,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The principal `token` authenticates, if any.
    fn principal(&self, store: &dyn Store, token: &str) -> Result<Option<Principal>, ApiError> {
        let now = Instant::now();
        if let Some((at, principal)) = self.lock().get(token)
            && now.duration_since(*at) < CACHE_FOR
        {
            return Ok(principal.clone());
        }
        let principal = match parse(token) {
            None => None,
            Some((id, secret)) => {
                let hash = Digest::of_bytes(secret.as_bytes());
                store
                    .keys()
                    .map_err(|error| ApiError::Unavailable(error.to_string()))?
                    .into_iter()
                    .find(|key| key.id == id && key.revoked_at.is_none() && same(&key.hash, &hash))
                    .map(|key| Principal {
                        key_id: key.id,
                        name: key.name,
                        scope: key.scope,
                    })
            }
        };
        let mut seen = self.lock();
        // Bounded: a flood of made-up tokens cannot grow it without end.
        if seen.len() > 10_000 {
            seen.clear();
        }
        seen.insert(token.to_owned(), (now, principal.clone()));
        Ok(principal)
    }

    /// Forgets every key seen, so a revocation here takes effect at once.
    pub(crate) fn forget(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Principal>)>> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `baton_<id>_<secret>`, split.
fn parse(token: &str) -> Option<(&str, &str)> {
    token.strip_prefix("baton_")?.split_once('_')
}

/// Compares digests in time independent of where they differ.
fn same(left: &Digest, right: &Digest) -> bool {
    left.0
        .iter()
        .zip(right.0.iter())
        .fold(0u8, |differ, (a, b)| differ | (a ^ b))
        == 0
}

/// The scope a request needs; `None` for what anyone may read (health,
/// readiness, the API's own description).
fn needed(method: &Method, path: &str) -> Option<Scope> {
    let api = path.strip_prefix("/api/v1")?;
    if api == "/openapi.json" || api == "/docs" || api.starts_with("/docs/") {
        return None;
    }
    let reads = matches!(*method, Method::GET | Method::HEAD);
    Some(if api.starts_with("/keys") {
        Scope::Admin
    } else if reads || api == "/workflows/validate" {
        Scope::Read
    } else if api.starts_with("/workflows") {
        Scope::Admin
    } else {
        Scope::Write
    })
}

/// The middleware: 401 without a valid key, 403 with one whose scope is too
/// small; otherwise the request goes on carrying its [`Principal`].
pub(crate) async fn authorize(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let scope = if path == "/metrics" {
        Some(Scope::Read)
    } else {
        needed(request.method(), path)
    };
    let Some(scope) = scope.filter(|_| app.keys.required) else {
        return next.run(request).await;
    };
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return ApiError::Unauthorized(
            "this endpoint needs an API key: send `Authorization: Bearer KEY`".to_owned(),
        )
        .into_response();
    };
    match app.keys.principal(app.engine.store().as_ref(), token) {
        Err(error) => error.into_response(),
        Ok(None) => ApiError::Unauthorized(
            "the API key is not valid (unknown, revoked or malformed)".to_owned(),
        )
        .into_response(),
        Ok(Some(principal)) if principal.scope < scope => ApiError::Forbidden(format!(
            "key `{}` has scope {}; this needs {scope}",
            principal.key_id, principal.scope
        ))
        .into_response(),
        Ok(Some(principal)) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_what_a_route_changes() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(needed(&get, "/healthz"), None);
        assert_eq!(needed(&get, "/api/v1/openapi.json"), None);
        assert_eq!(needed(&get, "/api/v1/runs"), Some(Scope::Read));
        assert_eq!(needed(&post, "/api/v1/runs"), Some(Scope::Write));
        assert_eq!(needed(&post, "/api/v1/runs/r/cancel"), Some(Scope::Write));
        assert_eq!(
            needed(&post, "/api/v1/workflows/validate"),
            Some(Scope::Read)
        );
        assert_eq!(needed(&post, "/api/v1/workflows"), Some(Scope::Admin));
        assert_eq!(
            needed(&Method::DELETE, "/api/v1/workflows/w"),
            Some(Scope::Admin)
        );
        assert_eq!(needed(&get, "/api/v1/keys"), Some(Scope::Admin));
    }

    #[test]
    fn an_issued_key_parses_back_to_its_id_and_hashed_secret() {
        let (key, token) = issue("ci", Scope::Write, Millis(1));
        let (id, secret) = parse(&token).unwrap();
        assert_eq!(id, key.id);
        assert!(same(&key.hash, &Digest::of_bytes(secret.as_bytes())));
        assert!(!token.contains(&key.hash.to_string()));
    }
}
