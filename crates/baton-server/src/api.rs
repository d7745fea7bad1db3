//! The bodies of the API's answers and requests, typed once: the handlers
//! build them, the OpenAPI document describes them from their derives, and
//! the CLI's remote client reads them back with the same types.

use baton_core::run::{Control, Millis, RunStatus};
use baton_store::{ApiKey, RunSummary, Scope, StoredWorkflow};
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

/// Who a request's key is: what the dashboard shows, and which buttons it
/// draws. Without keys required, every caller may do everything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Whoami {
    #[schema(value_type = String, example = "read")]
    pub scope: Scope,
    /// The key's name; none when the server requires no keys.
    pub name: Option<String>,
    pub key_id: Option<String>,
}

/// An API key as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyShown {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, example = "write")]
    pub scope: Scope,
    #[schema(value_type = u64)]
    pub created_at: Millis,
    #[schema(value_type = Option<u64>)]
    pub revoked_at: Option<Millis>,
}

impl From<&ApiKey> for KeyShown {
    fn from(key: &ApiKey) -> KeyShown {
        KeyShown {
            id: key.id.clone(),
            name: key.name.clone(),
            scope: key.scope,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// Every key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyShown>,
}

/// A key just made: its text (`key`) is shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyIssued {
    #[serde(flatten)]
    pub shown: KeyShown,
    /// `baton_<id>_<secret>`: send it as `Authorization: Bearer KEY`.
    pub key: String,
}

/// A registered version of a workflow; with its spec when one version is
/// asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowShown {
    pub name: String,
    pub version: u32,
    /// SHA-256 of the spec's canonical JSON.
    pub digest: String,
    #[schema(value_type = u64)]
    pub created_at: Millis,
    pub description: Option<String>,
    /// How many tasks it has.
    pub tasks: usize,
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::described::WorkflowSpec>)]
    pub spec: Option<serde_json::Value>,
}

/// Every version of every registered workflow, oldest first per name: what
/// `GET /api/v1/workflows/export` gives and `POST /api/v1/workflows/import`
/// takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Exported {
    pub workflows: Vec<ExportedWorkflow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExportedWorkflow {
    pub name: String,
    pub version: u32,
    #[schema(value_type = crate::described::WorkflowSpec)]
    pub spec: serde_json::Value,
}

/// What an import registered, in the bundle's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Imported {
    pub imported: Vec<ImportedWorkflow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImportedWorkflow {
    pub name: String,
    pub version: u32,
    /// Whether it is a new version (false: the same spec was registered).
    pub new: bool,
}

impl WorkflowShown {
    /// `stored` as listed; with `spec`, the workflow itself.
    pub fn of(stored: &StoredWorkflow, spec: bool) -> WorkflowShown {
        WorkflowShown {
            name: stored.name.clone(),
            version: stored.version,
            digest: stored.digest.to_string(),
            created_at: stored.created_at,
            description: stored.workflow.description.clone(),
            tasks: stored.workflow.tasks.len(),
            href: format!(
                "/api/v1/workflows/{}/versions/{}",
                stored.name, stored.version
            ),
            spec: spec.then(|| serde_json::to_value(&*stored.workflow).unwrap_or_default()),
        }
    }
}

/// Workflows: the latest version of each, or every version of one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowShown>,
}

/// Every version of one workflow, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<WorkflowShown>,
}

/// A file a task of the run stored or consumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactShown {
    /// The task's id.
    pub task: String,
    pub attempt: u32,
    #[schema(value_type = String, example = "produced")]
    pub role: baton_store::ArtifactRole,
    /// Where it is, relative to the task's working directory.
    pub path: String,
    /// SHA-256 of its bytes (`GET /api/v1/artifacts/{sha256}`).
    #[schema(value_type = String)]
    pub digest: baton_core::run::Digest,
    pub size: u64,
}

/// `GET /api/v1/agents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    #[schema(value_type = Vec<crate::described::AgentBody>)]
    pub agents: Vec<baton_engine::AgentStatus>,
}

/// A registered workflow's schedule: when it fires next and what its last
/// tick became.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleShown {
    pub workflow: String,
    /// The version whose schedule this is (the latest).
    pub version: u32,
    pub cron: String,
    /// The IANA zone the cron is read in.
    pub timezone: String,
    #[schema(example = "latest")]
    pub catch_up: String,
    #[schema(example = "skip")]
    pub overlap: String,
    /// The next fire times, RFC 3339 in the schedule's zone.
    pub next: Vec<String>,
    /// The newest tick handled, if any.
    pub last: Option<TickShown>,
}

/// A tick of a schedule and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TickShown {
    /// RFC 3339 in the schedule's zone.
    pub tick: String,
    /// Milliseconds since the epoch.
    #[schema(value_type = u64)]
    pub at: Millis,
    /// started, skipped, queued or missed; `planned` in a backfill's answer.
    #[schema(example = "started")]
    pub outcome: String,
    pub run_id: Option<String>,
}

/// `POST /api/v1/schedules/{name}/backfill`: the range of past ticks to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// The first day (`2026-11-01`, from its midnight) or time (RFC 3339,
    /// or local `2026-11-01T02:00`), in the schedule's zone.
    pub from: String,
    /// The last day (to its end) or time, included.
    pub to: String,
    /// Runs of the backfill unfinished at once, 1 to 64 (4 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// The ticks a backfill starts, each with its run's id (runs of ticks that
/// ran already are not started again).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Backfill {
    pub workflow: String,
    pub version: u32,
    pub concurrency: u32,
    pub ticks: Vec<TickShown>,
}
