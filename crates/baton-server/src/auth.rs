//! API keys: issuing them, and the middleware that checks each request's
//! `Authorization: Bearer` key against the scope its route needs.
//!
//! A key reads `baton_<id>_<secret>`. The id is public (listing and revoking
//! name it); the secret is random, shown once, and stored only as its
//! SHA-256, compared in constant time. A request's key is looked up by its
//! id, never by scanning; keys found are kept for a second (so a hot
//! endpoint does not read the store per request, and a key revoked from
//! another process stops working within that second). Failed
//! authentications are counted per client address: past a burst, a key
//! from that address that would need a lookup gets 429 without the store
//! being asked, so a flood of made-up tokens costs neither lookups nor
//! other clients' cached keys. A request with no key (or no well-formed
//! one) costs nothing and is always answered 401, and a key this process
//! has found before is still checked, so the address's real client goes on
//! working.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_core::run::{Digest, Millis};
use baton_store::{ApiKey, Catalog, Scope};

use crate::AppState;
use crate::problem::ApiError;

/// How long a key looked up stays trusted without asking the store.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// Keys kept at most; past it the oldest entry makes room.
const CACHED_KEYS: usize = 10_000;

/// Failed authentications an address may make at once, and how fast its
/// allowance comes back (one per this long).
const FAILURE_BURST: f64 = 20.0;
const FAILURE_REFILL: Duration = Duration::from_secs(1);

/// Client addresses whose failures are counted at most; past it the
/// longest quiet one is forgotten.
const COUNTED_ADDRESSES: usize = 10_000;

/// Who made a request: the key it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    pub scope: Scope,
}

/// The longest key name.
const MAX_KEY_NAME: usize = 100;

/// Why a key's name is refused: it is printed in listings, logs and the
/// decisions the key sends, so it must be something a terminal shows as
/// it is.
#[derive(Debug, thiserror::Error)]
pub enum BadKeyName {
    #[error("a key needs a name: who or what holds it")]
    Empty,
    #[error("a key's name is at most {MAX_KEY_NAME} characters")]
    TooLong,
    #[error("a key's name may not hold control characters (a terminal would act on them)")]
    ControlCharacter,
}

/// Checks a name for a new key.
pub fn check_key_name(name: &str) -> Result<(), BadKeyName> {
    if name.trim().is_empty() {
        Err(BadKeyName::Empty)
    } else if name.chars().count() > MAX_KEY_NAME {
        Err(BadKeyName::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(BadKeyName::ControlCharacter)
    } else {
        Ok(())
    }
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

/// Whether the service asks for keys, the keys it has looked up lately,
/// and the failures each client address has made.
pub(crate) struct Keys {
    required: bool,
    found: Mutex<HashMap<String, (Instant, Option<ApiKey>)>>,
    failures: Mutex<HashMap<IpAddr, Allowance>>,
}

/// A token bucket of failed authentications.
#[derive(Clone, Copy)]
struct Allowance {
    left: f64,
    at: Instant,
}

impl Keys {
    pub(crate) fn new(required: bool) -> Keys {
        Keys {
            required,
            found: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The principal `token` authenticates, if any. Only a well-formed
    /// token's id reaches the store.
    async fn principal(
        &self,
        store: &dyn Catalog,
        token: &str,
    ) -> Result<Option<Principal>, ApiError> {
        let Some((id, secret)) = parse(token) else {
            return Ok(None);
        };
        let now = Instant::now();
        let cached = lock(&self.found)
            .get(id)
            .filter(|(at, _)| now.duration_since(*at) < CACHE_FOR)
            .map(|(_, key)| key.clone());
        let key = match cached {
            Some(key) => key,
            None => {
                let key = store
                    .key(id)
                    .await
                    .map_err(|error| ApiError::Unavailable(error.to_string()))?;
                self.remember(id, now, key.clone());
                key
            }
        };
        let hash = Digest::of_bytes(secret.as_bytes());
        Ok(key
            .filter(|key| key.revoked_at.is_none() && same(&key.hash, &hash))
            .map(|key| Principal {
                key_id: key.id,
                name: key.name,
                scope: key.scope,
            }))
    }

    /// Keeps what the store said of key `id`; a full cache drops its
    /// oldest entry, never everything.
    fn remember(&self, id: &str, at: Instant, key: Option<ApiKey>) {
        let mut found = lock(&self.found);
        if found.len() >= CACHED_KEYS && !found.contains_key(id) {
            let oldest = found
                .iter()
                .min_by_key(|(_, (seen, _))| *seen)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                found.remove(&oldest);
            }
        }
        found.insert(id.to_owned(), (at, key));
    }

    /// Whether key `id` exists as far as this process has seen.
    fn knows(&self, id: &str) -> bool {
        lock(&self.found)
            .get(id)
            .is_some_and(|(_, key)| key.is_some())
    }

    /// Forgets every key seen, so a revocation here takes effect at once.
    pub(crate) fn forget(&self) {
        lock(&self.found).clear();
    }

    /// Whether `address` may try to authenticate now, and when it may if
    /// not (in whole seconds).
    fn admits(&self, address: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let Some(address) = address else {
            return Ok(());
        };
        let failures = lock(&self.failures);
        let Some(allowance) = failures.get(&address) else {
            return Ok(());
        };
        if allowance.refilled(now).left >= 1.0 {
            return Ok(());
        }
        Err(FAILURE_REFILL.as_secs().max(1))
    }

    /// Counts a failed authentication from `address`.
    fn failed(&self, address: Option<IpAddr>, now: Instant) {
        let Some(address) = address else {
            return;
        };
        let mut failures = lock(&self.failures);
        if failures.len() >= COUNTED_ADDRESSES && !failures.contains_key(&address) {
            let quietest = failures
                .iter()
                .min_by_key(|(_, allowance)| allowance.at)
                .map(|(address, _)| *address);
            if let Some(quietest) = quietest {
                failures.remove(&quietest);
            }
        }
        let allowance = failures.entry(address).or_insert(Allowance {
            left: FAILURE_BURST,
            at: now,
        });
        let refilled = allowance.refilled(now);
        *allowance = Allowance {
            left: (refilled.left - 1.0).max(0.0),
            at: now,
        };
    }
}

impl Allowance {
    fn refilled(self, now: Instant) -> Allowance {
        let earned = now.duration_since(self.at).as_secs_f64() / FAILURE_REFILL.as_secs_f64();
        Allowance {
            left: (self.left + earned).min(FAILURE_BURST),
            at: now,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `baton_<id>_<secret>`, split.
fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix("baton_")?.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
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
    // A trigger's sender proves itself by the body's signature instead.
    if api == "/openapi.json"
        || api == "/docs"
        || api.starts_with("/docs/")
        || api.starts_with("/triggers/")
    {
        return None;
    }
    let reads = matches!(*method, Method::GET | Method::HEAD);
    Some(if api.starts_with("/workers") {
        Scope::Worker
    } else if api.starts_with("/keys") || (api.starts_with("/agents") && !reads) {
        Scope::Admin
    } else if reads || api == "/workflows/validate" {
        Scope::Read
    } else if api.starts_with("/workflows") {
        Scope::Admin
    } else {
        Scope::Write
    })
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme's case
/// does not matter (RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The middleware: 401 without a valid key, 403 with one whose scope is too
/// small, 429 for an address that keeps failing; otherwise the request goes
/// on carrying its [`Principal`].
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
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let now = Instant::now();
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer);
    // Answering a missing or malformed key costs nothing, so it is always
    // answered; only a lookup in the store is what a failing address is
    // kept from, and a key this process knows needs none.
    let Some((token, (id, _))) = token.and_then(|token| Some((token, parse(token)?))) else {
        return ApiError::Unauthorized(
            "this endpoint needs an API key: send `Authorization: Bearer baton_ID_SECRET`"
                .to_owned(),
        )
        .into_response();
    };
    if !app.keys.knows(id)
        && let Err(retry_after) = app.keys.admits(address, now)
    {
        return ApiError::TooMany {
            detail: "too many failed authentications from this address; wait and send a valid key"
                .to_owned(),
            retry_after,
        }
        .into_response();
    }
    match app.keys.principal(app.engine.store().as_ref(), token).await {
        Err(error) => error.into_response(),
        Ok(None) => {
            app.keys.failed(address, now);
            ApiError::Unauthorized(
                "the API key is not valid (unknown, revoked or malformed)".to_owned(),
            )
            .into_response()
        }
        Ok(Some(principal)) if !principal.scope.covers(scope) => ApiError::Forbidden(format!(
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
            needed(&post, "/api/v1/triggers/deploy"),
            None,
            "a trigger's signature is its proof"
        );
        assert_eq!(
            needed(&post, "/api/v1/schedules/nightly/backfill"),
            Some(Scope::Write)
        );
        assert_eq!(
            needed(&Method::DELETE, "/api/v1/workflows/w"),
            Some(Scope::Admin)
        );
        assert_eq!(needed(&get, "/api/v1/keys"), Some(Scope::Admin));
        assert_eq!(needed(&get, "/api/v1/agents"), Some(Scope::Read));
        assert_eq!(needed(&post, "/api/v1/agents"), Some(Scope::Admin));
        assert_eq!(needed(&post, "/api/v1/workers"), Some(Scope::Worker));
        assert_eq!(
            needed(&post, "/api/v1/workers/w-1/poll"),
            Some(Scope::Worker)
        );
        assert!(!Scope::Worker.covers(Scope::Read));
        assert!(!Scope::Execute.covers(Scope::Worker));
        assert!(Scope::Admin.covers(Scope::Worker));
    }

    #[test]
    fn an_issued_key_parses_back_to_its_id_and_hashed_secret() {
        let (key, token) = issue("ci", Scope::Write, Millis(1));
        let (id, secret) = parse(&token).unwrap();
        assert_eq!(id, key.id);
        assert!(same(&key.hash, &Digest::of_bytes(secret.as_bytes())));
        assert!(!token.contains(&key.hash.to_string()));
        assert_eq!(parse("baton__x"), None);
        assert_eq!(parse("baton_id_"), None);
    }

    #[test]
    fn the_bearer_scheme_is_read_whatever_its_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_until_its_allowance_returns() {
        let keys = Keys::new(true);
        let address = Some(IpAddr::from([192, 0, 2, 1]));
        let other = Some(IpAddr::from([192, 0, 2, 2]));
        let start = Instant::now();
        for _ in 0..FAILURE_BURST as usize {
            assert!(keys.admits(address, start).is_ok());
            keys.failed(address, start);
        }
        assert!(keys.admits(address, start).is_err());
        assert!(keys.admits(other, start).is_ok(), "others are not held up");
        assert!(keys.admits(address, start + FAILURE_REFILL).is_ok());
    }
}
