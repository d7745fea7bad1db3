//! A registered worker as the agent registry shows it.

use std::collections::BTreeMap;

use crate::BreakerState;

/// Whether work is routed to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Heard from in time, breaker closed or probing: gets work.
    Healthy,
    /// Its breaker is open after failing attempts: gets none until the
    /// cool-down is over.
    Unhealthy,
    /// Finishing what it holds before it leaves: gets no new work.
    Draining,
    /// Silent for three heartbeats: its leases run out and its attempts
    /// go elsewhere.
    Dead,
}

/// One registered worker.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct WorkerView {
    pub id: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    /// Attempts it runs at once.
    pub concurrency: u32,
    pub status: WorkerStatus,
    /// Leases it holds now.
    pub in_flight: u32,
    pub registered_ms_ago: u64,
    pub last_heartbeat_ms_ago: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub breaker: BreakerState,
}
