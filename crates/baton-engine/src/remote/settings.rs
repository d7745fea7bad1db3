//! How the server treats its workers: how often they must be heard from,
//! how long a lease lasts, when their breakers open, and how much of each
//! capability may run at once.

use std::collections::BTreeMap;

use baton_core::Duration;

use crate::BreakerSettings;

/// `[workers]` in baton.toml.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// How often a worker polls or heartbeats; one silent for three of
    /// these is dead, and its leases are lost.
    pub heartbeat: Duration,
    /// How long a lease lasts without being extended by a poll: after a
    /// worker is cut off, how long until its attempts are lost and the
    /// retry policy decides.
    pub lease: Duration,
    /// When a worker's breaker (and a capability's) opens: failing
    /// attempts in a row, how long it stays open, probes let through.
    pub breaker: BreakerSettings,
    /// When a capability's breaker opens: failing attempts in a row across
    /// all its workers (higher than a worker's, so one bad worker does not
    /// close a capability that others serve well).
    pub capability_breaker: BreakerSettings,
    /// A capability's own breaker settings, overriding `capability_breaker`.
    pub breakers: BTreeMap<String, BreakerSettings>,
    /// Attempts of a capability in flight at once across every worker.
    pub limits: BTreeMap<String, u32>,
    /// Attempts started per second for each fairness key (a token bucket
    /// holding one second's worth), by key; `"*"` is the rate of every key
    /// not named. A key with no rate is not limited.
    pub rates: BTreeMap<String, f64>,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            heartbeat: Duration::from_secs(2),
            lease: Duration::from_secs(10),
            breaker: BreakerSettings::default(),
            capability_breaker: BreakerSettings {
                failures: 20,
                ..BreakerSettings::default()
            },
            breakers: BTreeMap::new(),
            limits: BTreeMap::new(),
            rates: BTreeMap::new(),
        }
    }
}

impl WorkerSettings {
    /// Silent this long, a worker is taken for dead.
    pub(crate) fn dead_after(&self) -> std::time::Duration {
        self.heartbeat.as_std() * 3
    }

    /// The breaker settings of `capability`.
    pub(crate) fn capability_breaker(&self, capability: &str) -> BreakerSettings {
        self.breakers
            .get(capability)
            .copied()
            .unwrap_or(self.capability_breaker)
    }

    /// The rate of `key`, if it is limited.
    pub(crate) fn rate_of(&self, key: &str) -> Option<f64> {
        self.rates
            .get(key)
            .or_else(|| self.rates.get("*"))
            .copied()
            .filter(|rate| *rate > 0.0 && rate.is_finite())
    }
}
