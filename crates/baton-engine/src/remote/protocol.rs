//! The worker protocol's messages, as both sides read and write them: the
//! server (which hands out leases) and `baton worker` (which runs them).
//! They are plain JSON with no baton-internal types, so a worker in any
//! language needs only this file's shapes (also in the OpenAPI document).
//!
//! A worker registers once, then polls: each poll hands back what it
//! finished and asks for more, so one round trip carries both. A lease is
//! one attempt of one task; its `fencing` token changes whenever the
//! attempt is handed to someone else, and a result carrying an old token is
//! refused, so no attempt is applied twice.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The header every call after registering carries the worker's token in.
pub const TOKEN_HEADER: &str = "Baton-Worker-Token";

/// What a worker says of itself when it registers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// A name for people (host name, pod name); need not be unique.
    #[schemars(regex(pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,128}$"))]
    pub name: String,
    /// What it can run: the `capability` of `agent` tasks and `runs_on`.
    #[schemars(
        length(min = 1, max = 64),
        inner(regex(pattern = "^[A-Za-z0-9_.-]{1,128}$"))
    )]
    pub capabilities: Vec<String>,
    /// Labels a task's `labels` must all match.
    #[serde(default)]
    #[schemars(extend(
        "maxProperties" = 64,
        "propertyNames" = {"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,128}$"},
        "additionalProperties" = {"type": "string", "maxLength": 256}
    ))]
    pub labels: BTreeMap<String, String>,
    /// Attempts it runs at once.
    #[schemars(range(min = 1, max = 10000))]
    #[serde(deserialize_with = "whole::deserialize")]
    pub concurrency: u32,
    /// The worker's own version, shown in the registry.
    #[serde(default)]
    pub version: String,
}

/// The answer to a registration: who the worker now is, and how often it
/// must be heard from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Registered {
    pub worker_id: String,
    /// Sent with every later call as the `Baton-Worker-Token` header; only
    /// the registering key and this token together act for the worker.
    pub token: String,
    /// Poll or heartbeat at least this often, or the worker is taken for dead.
    pub heartbeat_ms: u64,
    /// How long a lease lasts without a heartbeat.
    pub lease_ms: u64,
}

/// A poll: results of attempts that ended, and how many new ones the
/// worker takes (waiting up to `wait_ms` for one to come).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    #[serde(default)]
    pub results: Vec<Report>,
    /// Attempts still running here, whose leases this poll extends.
    #[serde(default)]
    pub running: Vec<Held>,
    /// New attempts wanted now (0: only report and extend).
    #[serde(default, deserialize_with = "whole::deserialize")]
    #[schemars(range(max = 1000))]
    pub take: u32,
    /// How long to wait for work when none is there; at most 30 000.
    #[serde(default, deserialize_with = "whole::deserialize")]
    #[schemars(range(max = 30000))]
    pub wait_ms: u64,
}

/// A lease a worker holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Held {
    pub lease_id: String,
    #[serde(deserialize_with = "whole::deserialize")]
    #[schemars(range(max = u64::MAX))]
    pub fencing: u64,
}

/// The answer to a poll.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Polled {
    /// New work, at most `take` leases.
    pub leases: Vec<Lease>,
    /// How each reported result was taken, in the order sent.
    pub results: Vec<Taken>,
    /// Leases this worker must stop: cancelled, timed out on the server, or
    /// no longer its own (expired and handed to another worker).
    pub stop: Vec<String>,
    /// The worker is draining: it gets no new leases.
    pub draining: bool,
}

/// How a result was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Taken {
    /// Recorded as the attempt's end.
    Applied,
    /// Refused, changing nothing: the lease expired, was cancelled or was
    /// handed on, so its fencing token is stale.
    Stale,
}

/// One attempt of one task, leased to a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Lease {
    pub lease_id: String,
    /// Send it back with the result; a stale one is refused.
    pub fencing: u64,
    /// Milliseconds from now within which a poll must extend the lease
    /// (relative, so the two machines' clocks need not agree).
    pub expires_in_ms: u64,
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    /// `run:task:attempt`: the same for a rerun of the same attempt, to
    /// de-duplicate side effects.
    pub idempotency_key: String,
    pub capability: String,
    pub work: LeasedWork,
    /// The task's `env`, rendered.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The task's `cwd`, relative to the worker's working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Time the attempt has left (its timeout less the time it waited for
    /// a worker); none when it has no timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Between SIGTERM and SIGKILL when it runs out of time.
    pub grace_ms: u64,
    /// The run's inputs.
    pub inputs: Value,
    /// Outputs of the tasks it needs, by task id.
    pub needs: serde_json::Map<String, Value>,
    /// Files its needs produced, to place under its working directory
    /// before it runs (each downloaded by its digest from this lease).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<LeasedFile>,
    /// Its `artifacts:` patterns: after it succeeds, the files they match
    /// under its working directory are uploaded and listed in the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
}

/// A file by its path (relative to the task's working directory,
/// `/`-separated) and content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeasedFile {
    pub path: String,
    /// SHA-256 of its bytes, 64 hex digits.
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub sha256: String,
    #[serde(deserialize_with = "whole::deserialize")]
    #[schemars(range(max = u64::MAX))]
    pub size: u64,
}

/// What a leased attempt does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LeasedWork {
    /// `sh -c script`, with `values` set as environment variables (the
    /// script refers to them: templated values never become script text).
    Shell {
        script: String,
        values: BTreeMap<String, String>,
    },
    /// An argv, run without a shell.
    Command { argv: Vec<String> },
    /// Nothing to run: succeed at once.
    Noop,
    /// A question for the agent behind the capability.
    Agent {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
        /// A JSON Schema the reply must follow.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<Value>,
    },
}

/// Which of an attempt's logs an upload appends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// How an attempt ended, as its worker reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub lease_id: String,
    #[serde(deserialize_with = "whole::deserialize")]
    #[schemars(range(max = u64::MAX))]
    pub fencing: u64,
    pub end: End,
    /// Usage to add to the run's totals (`tokens`, `cost`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<serde_json::Map<String, Value>>,
    /// The files its `artifacts:` matched, each uploaded first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<LeasedFile>,
}

/// The end of an attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum End {
    Succeeded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
    },
    Failed {
        failure: RemoteFailure,
    },
    /// The worker stopped it (told to, or shutting down) before it ended.
    Stopped,
}

/// Why an attempt failed, in the kinds a retry policy names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteFailure {
    pub kind: RemoteFailureKind,
    pub message: String,
    /// The exit code, for `exit`.
    #[serde(
        default,
        deserialize_with = "whole::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub code: Option<i32>,
    /// The signal, for `signal`.
    #[serde(
        default,
        deserialize_with = "whole::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub signal: Option<i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemoteFailureKind {
    Exit,
    Signal,
    Timeout,
    Error,
}

/// Whole numbers as JSON may write them: `3` or `3.0` (JSON Schema's
/// `integer` takes both, so a client generated from the document may send
/// either); a fraction or a number out of range is refused.
pub mod whole {
    use serde::{Deserialize, Deserializer, de};

    fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i128, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        if let Some(value) = number.as_i64() {
            return Ok(i128::from(value));
        }
        if let Some(value) = number.as_u64() {
            return Ok(i128::from(value));
        }
        match number.as_f64() {
            Some(value) if value.fract() == 0.0 && value.abs() < 1e30 => Ok(value as i128),
            _ => Err(de::Error::custom(format!("{number} is not a whole number"))),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        let value = number(deserializer)?;
        T::try_from(value).map_err(|_| de::Error::custom(format!("{value} is out of range")))
    }

    /// As [`deserialize`], for a field that may be `null`.
    pub fn optional<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        deserializer: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<serde_json::Number>::deserialize(deserializer)? {
            None => Ok(None),
            Some(number) => deserialize(number).map(Some).map_err(de::Error::custom),
        }
    }
}

impl From<RemoteFailure> for baton_core::run::Failure {
    fn from(failure: RemoteFailure) -> Self {
        use baton_core::run::FailureKind;
        let kind = match (failure.kind, failure.code, failure.signal) {
            (RemoteFailureKind::Exit, Some(code), _) => FailureKind::Exit { code },
            (RemoteFailureKind::Signal, _, Some(signal)) => FailureKind::Signal { signal },
            (RemoteFailureKind::Timeout, _, _) => FailureKind::Timeout,
            _ => FailureKind::Error,
        };
        baton_core::run::Failure::new(kind, failure.message)
    }
}

impl From<baton_core::run::Failure> for RemoteFailure {
    /// Kinds only the server decides (`check`, `repeat`, HTTP statuses,
    /// templates, breakers) travel as `error`.
    fn from(failure: baton_core::run::Failure) -> Self {
        use baton_core::run::FailureKind;
        let (kind, code, signal) = match failure.kind {
            FailureKind::Exit { code } => (RemoteFailureKind::Exit, Some(code), None),
            FailureKind::Signal { signal } => (RemoteFailureKind::Signal, None, Some(signal)),
            FailureKind::Timeout => (RemoteFailureKind::Timeout, None, None),
            _ => (RemoteFailureKind::Error, None, None),
        };
        RemoteFailure {
            kind,
            message: failure.message,
            code,
            signal,
        }
    }
}
