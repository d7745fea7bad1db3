//! The agent registry's entries: whatever serves agent capabilities (a
//! configured chat endpoint, a registered worker), as `GET /api/v1/agents`
//! and `baton agents` list them.

use std::collections::BTreeMap;

use crate::{BreakerChange, BreakerState};

/// Something that serves capabilities, how it fares and its breaker.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct AgentStatus {
    /// `chat:CAPABILITY` for an endpoint, the worker id for a worker.
    pub id: String,
    pub kind: AgentKind,
    /// For people: the capability an endpoint serves, a worker's name.
    pub name: String,
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where it is reached: an endpoint's base URL, a worker's version.
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Calls it takes at once, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    pub status: AgentHealth,
    pub breaker: BreakerState,
    /// Its breaker's last moves, newest last: every transition is kept
    /// (up to 16) besides being counted in the metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breaker_changes: Vec<BreakerChange>,
    /// Calls in flight now, and ended, since this process began.
    pub in_flight: u32,
    pub succeeded: u64,
    pub failed: u64,
    /// For a worker: how long since it last polled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_ms_ago: Option<u64>,
}

/// What kind of server an agent is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// An OpenAI-compatible chat endpoint named in `[agents.CAPABILITY]`.
    ChatEndpoint,
    /// A remote worker registered over the worker protocol.
    Worker,
}

/// Whether work is routed to it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AgentHealth {
    /// Heard from in time, breaker closed: gets work.
    Healthy,
    /// Its breaker is open or probing after failing calls: gets none, or
    /// only probes, until it recovers.
    Unhealthy,
    /// A worker finishing what it holds before it leaves: no new work.
    Draining,
    /// A worker silent for three heartbeats: its leases run out and its
    /// attempts go elsewhere.
    Dead,
}
