//! What a store keeps besides runs: the workflow registry (every change a
//! new immutable version) and the server's API keys (only their hashes).

use std::sync::Arc;

use baton_core::Workflow;
use baton_core::run::{Digest, Millis};
use serde::{Deserialize, Serialize};

/// One version of a registered workflow. Versions count from 1 per name and
/// never change once stored; runs started from one pin it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredWorkflow {
    pub name: String,
    pub version: u32,
    /// SHA-256 of the workflow's canonical JSON: an unchanged spec sent
    /// again is recognised instead of becoming a new version.
    pub digest: Digest,
    pub created_at: Millis,
    pub workflow: Arc<Workflow>,
}

/// A tick of a registered workflow's schedule and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    pub workflow: String,
    /// When the schedule fired (or, for a backfill, the time it stands for).
    pub at: Millis,
    pub outcome: TickOutcome,
    pub recorded_at: Millis,
}

/// What a tick became.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TickOutcome {
    /// It started the run `run_id`.
    Started { run_id: String },
    /// The schedule's previous run was still going (`overlap: skip`).
    Skipped,
    /// It waits for the previous run to end (`overlap: queue`).
    Queued,
    /// The catch-up policy passed over it after downtime.
    Missed,
}

impl TickOutcome {
    pub fn name(&self) -> &'static str {
        match self {
            TickOutcome::Started { .. } => "started",
            TickOutcome::Skipped => "skipped",
            TickOutcome::Queued => "queued",
            TickOutcome::Missed => "missed",
        }
    }

    pub fn run_id(&self) -> Option<&str> {
        match self {
            TickOutcome::Started { run_id } => Some(run_id),
            _ => None,
        }
    }

    /// The outcome named `name`, started ones with `run_id`.
    pub fn from_parts(name: &str, run_id: Option<String>) -> Option<TickOutcome> {
        Some(match (name, run_id) {
            ("started", Some(run_id)) => TickOutcome::Started { run_id },
            ("skipped", _) => TickOutcome::Skipped,
            ("queued", _) => TickOutcome::Queued,
            ("missed", _) => TickOutcome::Missed,
            _ => return None,
        })
    }
}

/// What an API key may do: `read` < `write` < `execute` < `admin`, each
/// including the ones before it; `worker` stands apart, covering only the
/// worker protocol (and `admin` covers it too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read runs, workflows, events, logs.
    Read,
    /// Also start runs of registered workflows, cancel, pause and resume
    /// runs, decide approvals and retry tasks.
    Write,
    /// Also start runs of inline specs (`spec` in the request): their
    /// commands run as the server's user, which registering a workflow
    /// (admin) otherwise guards.
    Execute,
    /// Also manage workflows and keys.
    Admin,
    /// Only register as a worker, take leases, and report on them (with
    /// their logs): it reads no run and starts none.
    Worker,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Execute => "execute",
            Scope::Admin => "admin",
            Scope::Worker => "worker",
        }
    }

    /// Whether a key with this scope may do what `needed` guards.
    pub fn covers(self, needed: Scope) -> bool {
        match (self, needed) {
            (Scope::Admin, _) | (Scope::Worker, Scope::Worker) => true,
            (Scope::Worker, _) | (_, Scope::Worker) => false,
            (have, needed) => have.rank() >= needed.rank(),
        }
    }

    fn rank(self) -> u8 {
        match self {
            Scope::Read => 0,
            Scope::Write => 1,
            Scope::Execute => 2,
            Scope::Admin | Scope::Worker => 3,
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Scope, String> {
        match text {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "execute" => Ok(Scope::Execute),
            "admin" => Ok(Scope::Admin),
            "worker" => Ok(Scope::Worker),
            _ => Err(format!(
                "`{text}` is not a scope: read, write, execute, admin or worker"
            )),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An API key as stored: the secret itself is shown once when the key is
/// made and kept only as its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public, unique: the part of the key before its secret, and what
    /// revoking names.
    pub id: String,
    /// Who or what holds it, for people reading the list (and decisions'
    /// `by`).
    pub name: String,
    pub scope: Scope,
    /// SHA-256 of the secret.
    pub hash: Digest,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Millis>,
}
