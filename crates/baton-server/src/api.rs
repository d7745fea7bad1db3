//! The bodies of the API's answers and requests, typed once: the handlers
//! build them, the OpenAPI document describes them from their derives, and
//! the CLI's remote client reads them back with the same types.

use baton_core::run::{Control, RunStatus};
use baton_store::RunSummary;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A run that was started (201), or the one an earlier request with the
/// same idempotency key started (200).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Started {
    pub run_id: String,
    #[schema(value_type = String, example = "pending")]
    pub status: RunStatus,
    /// Where the run is read.
    pub href: String,
}

/// A page of runs, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<RunSummary>,
    /// Send it as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// A control request left for a run; it applies in the order requested.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub run_id: String,
    #[schema(value_type = Object)]
    pub accepted: Control,
}

/// A decision on a waiting approval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// One of the approval's `choices`.
    pub choice: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// A note on who decided, kept beside the key that sent the decision
    /// (which is what the run records as the decider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The digest of a run's event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Traced {
    pub run_id: String,
    /// SHA-256 over the canonical JSON of every event, in order.
    pub trace: String,
}

/// A spec that checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Validated {
    pub valid: bool,
    pub name: String,
    pub tasks: usize,
}

/// What `/healthz` and `/readyz` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}
