//! Triggers: `POST /api/v1/triggers/{name}` starts a registered workflow
//! when a sender that holds the trigger's secret asks (a webhook from a
//! forge, a queue, a cron elsewhere). The request carries no API key: an
//! HMAC-SHA256 of its body under the trigger's secret proves the sender,
//! checked in constant time. The body (JSON) becomes the run's inputs
//! through the trigger's templates. A delivery id in a header names the
//! delivery: the run id is derived from it, so a delivery sent again (the
//! sender retrying) starts one run, and the second answer names it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use baton_engine::RunOptions;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::problem::{ApiError, PathArgs};
use crate::{AppState, checking, refusals};

/// `[triggers.NAME]` in baton.toml.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The registered workflow it starts: `name`, or `name@version` to pin
    /// one.
    pub workflow: String,
    /// The key senders sign each body with (HMAC-SHA256), at least 16
    /// characters; from the environment with `BATON_TRIGGERS__NAME__SECRET`.
    pub secret: String,
    /// The run's inputs by name, each a template over `body` (the JSON
    /// sent), `delivery` and `trigger`: `{{ body.ref }}`. One that is a
    /// single `{{ expression }}` keeps its JSON type.
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    /// The header that carries the signature, as `sha256=HEX` or `HEX`
    /// (`X-Hub-Signature-256` for GitHub).
    #[serde(default = "signature_header")]
    pub signature_header: String,
    /// The header that names the delivery (`X-GitHub-Delivery` for GitHub).
    #[serde(default = "delivery_header")]
    pub delivery_header: String,
}

fn signature_header() -> String {
    "x-baton-signature".to_owned()
}

fn delivery_header() -> String {
    "x-baton-delivery".to_owned()
}

/// The shortest secret a trigger takes.
const MIN_SECRET: usize = 16;

/// The longest delivery id taken.
const MAX_DELIVERY: usize = 200;

impl Trigger {
    /// What is wrong with the trigger's settings, if anything.
    pub fn problem(&self) -> Option<String> {
        (self.secret.chars().count() < MIN_SECRET).then(|| {
            format!("its secret has fewer than {MIN_SECRET} characters: a short one can be guessed")
        })
    }

    /// Whether `signature` (`sha256=HEX` or `HEX`) is the body's HMAC under
    /// the secret; compared in constant time.
    pub fn signs(&self, body: &[u8], signature: &str) -> bool {
        let hex = signature.trim();
        let hex = hex.strip_prefix("sha256=").unwrap_or(hex);
        let Ok(expected) = hex::decode(hex) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(self.secret.as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    }
}

/// `sha256=HEX` of `body` under `secret`: what a sender puts in the
/// signature header.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A delivery to a trigger: checked, then its run started (201), or the
/// run an earlier delivery with the same id started named (200).
#[utoipa::path(
    post,
    path = "/api/v1/triggers/{name}",
    tag = "triggers",
    security(()),
    params(
        ("name" = String, Path, description = "The trigger's name in baton.toml"),
        ("x-baton-signature" = String, Header, description = "`sha256=HEX`: HMAC-SHA256 of the body under the trigger's secret (the header's name is the trigger's `signature_header`)"),
        ("x-baton-delivery" = String, Header, description = "The delivery's id: the same id again starts no second run (the header's name is the trigger's `delivery_header`)"),
    ),
    request_body(content = Object, description = "JSON the trigger's input templates read as `body`", content_type = "application/json"),
    responses(
        (status = 201, description = "The run the delivery started", body = crate::api::Started),
        (status = 200, description = "The run an earlier delivery with this id started", body = crate::api::Started),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::NotFound,
        refusals::TooLarge,
        refusals::Unprocessable,
        refusals::TooMany,
        refusals::Unavailable,
    ),
)]
pub(crate) async fn deliver(
    State(app): State<AppState>,
    PathArgs(name): PathArgs<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(trigger) = app.config.triggers.get(&name) else {
        return Err(ApiError::NotFound(format!("no trigger is named `{name}`")));
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let signed =
        header(&trigger.signature_header).is_some_and(|signature| trigger.signs(&body, signature));
    if !signed {
        return Err(ApiError::Unauthorized(format!(
            "the `{}` header is missing or is not the HMAC-SHA256 of the body under trigger `{name}`'s secret",
            trigger.signature_header
        )));
    }
    let Some(delivery) = header(&trigger.delivery_header) else {
        return Err(ApiError::BadRequest(format!(
            "the `{}` header names the delivery, so a delivery sent twice starts one run; it is missing",
            trigger.delivery_header
        )));
    };
    if delivery.len() > MAX_DELIVERY {
        return Err(ApiError::BadRequest(format!(
            "a delivery id is at most {MAX_DELIVERY} bytes"
        )));
    }
    let sent: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::BadRequest(format!("the body is not JSON: {error}")))?
    };
    if app.engine.is_draining() {
        return Err(baton_engine::Error::Draining.into());
    }
    let stored = crate::workflows::resolve(&app, &trigger.workflow).await?;
    let run_id =
        crate::runs::keyed_run_id(&stored.name, &format!("trigger {name} delivery {delivery}"));
    match app.engine.store().summary(&run_id).await {
        Ok(existing) => {
            return Ok(crate::runs::started(
                StatusCode::OK,
                &run_id,
                existing.status,
            ));
        }
        Err(baton_store::Error::UnknownRun(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let context = serde_json::json!({"body": sent, "delivery": delivery, "trigger": name});
    let mut inputs = BTreeMap::new();
    for (input, template) in &trigger.inputs {
        let value = baton_core::run::render_value(template, &context, &format!("input `{input}`"))
            .map_err(|error| ApiError::Unprocessable(format!("trigger `{name}`: {error}")))?;
        inputs.insert(input.clone(), value);
    }
    crate::runs::admit(&app)?;
    let valid = checking::workflow(Arc::unwrap_or_clone(stored.workflow))
        .await?
        .map_err(ApiError::InvalidWorkflow)?;
    let options = RunOptions {
        inputs,
        run_id: Some(run_id),
        watch: true,
        served: true,
        workflow_version: Some(stored.version),
        ..RunOptions::default()
    };
    // The same delivery, twice at once: the other request started it.
    crate::runs::launched(&app, crate::runs::launch(&app, valid, options).await?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger() -> Trigger {
        Trigger {
            workflow: "deploy".to_owned(),
            secret: "a secret of some length".to_owned(),
            inputs: BTreeMap::new(),
            signature_header: signature_header(),
            delivery_header: delivery_header(),
        }
    }

    #[test]
    fn a_body_signed_with_the_secret_is_taken_and_any_other_is_not() {
        let trigger = trigger();
        let body = br#"{"ref": "main"}"#;
        let signature = sign(&trigger.secret, body);
        assert!(trigger.signs(body, &signature));
        assert!(trigger.signs(body, signature.strip_prefix("sha256=").unwrap()));
        assert!(
            !trigger.signs(br#"{"ref": "evil"}"#, &signature),
            "another body"
        );
        assert!(!trigger.signs(body, &sign("another secret entirely", body)));
        assert!(!trigger.signs(body, "sha256=zz"));
        assert!(!trigger.signs(body, ""));
    }

    #[test]
    fn a_short_secret_is_named_as_the_problem() {
        let short = Trigger {
            secret: "hunter2".to_owned(),
            ..trigger()
        };
        assert!(short.problem().unwrap().contains("fewer than 16"));
        assert_eq!(trigger().problem(), None);
    }
}
