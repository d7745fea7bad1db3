//! The board as people see it: the registry's entries for workers, why
//! queued work waits, and the queue's depth.

use std::collections::BTreeMap;
use std::time::Instant;

use baton_core::run::Route;

use super::worker::Worker;
use super::{Board, Place};
use crate::registry::{AgentHealth, AgentKind, AgentStatus};

impl Board {
    /// Every worker as the registry shows it.
    pub(crate) fn workers(&self, now: Instant) -> Vec<AgentStatus> {
        let mut workers: Vec<&Worker> = self.workers.values().collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        workers
            .into_iter()
            .map(|worker| AgentStatus {
                id: worker.id.clone(),
                kind: AgentKind::Worker,
                name: worker.registration.name.clone(),
                capabilities: worker.registration.capabilities.clone(),
                labels: worker.registration.labels.clone(),
                endpoint: format!("baton worker {}", worker.registration.version),
                model: None,
                concurrency: Some(worker.registration.concurrency),
                status: if !worker.alive(now, &self.settings) {
                    AgentHealth::Dead
                } else if worker.draining {
                    AgentHealth::Draining
                } else if !worker.breaker.admits(now, &self.settings.breaker) {
                    AgentHealth::Unhealthy
                } else {
                    AgentHealth::Healthy
                },
                breaker: worker.breaker.state(now),
                breaker_changes: worker.breaker.changes(now),
                in_flight: worker.in_flight,
                succeeded: worker.succeeded,
                failed: worker.failed,
                last_heartbeat_ms_ago: Some(
                    now.saturating_duration_since(worker.seen).as_millis() as u64
                ),
            })
            .collect()
    }

    /// Why the queued attempts of `run_id` wait, by task id.
    pub(crate) fn waiting(&self, run_id: &str, now: Instant) -> BTreeMap<String, String> {
        self.entries
            .values()
            .filter(|entry| {
                matches!(entry.place, Place::Queued) && entry.item.lease.run_id == run_id
            })
            .map(|entry| {
                (
                    entry.item.lease.task_id.clone(),
                    self.why_waiting(&entry.item.route, now),
                )
            })
            .collect()
    }

    pub(crate) fn why_waiting(&self, route: &Route, now: Instant) -> String {
        let wanted = if route.labels.is_empty() {
            format!("capability `{}`", route.capability)
        } else {
            let labels: Vec<String> = route
                .labels
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            format!(
                "capability `{}` and labels {}",
                route.capability,
                labels.join(",")
            )
        };
        let offering: Vec<&Worker> = self
            .workers
            .values()
            .filter(|worker| worker.offers(route) && worker.alive(now, &self.settings))
            .collect();
        if offering.is_empty() {
            return format!("waiting for a worker with {wanted}");
        }
        if let Some(capability) = self.capabilities.get(&route.capability) {
            let own = self.settings.capability_breaker(&route.capability);
            if !capability.breaker.admits(now, &own) {
                return format!(
                    "waiting: the circuit breaker of capability `{}` is open",
                    route.capability
                );
            }
            if let Some(limit) = self.settings.limits.get(&route.capability)
                && capability.in_flight >= *limit
            {
                return format!(
                    "waiting: capability `{}` has its limit of {limit} attempts in flight",
                    route.capability
                );
            }
        }
        if offering
            .iter()
            .all(|worker| !worker.breaker.admits(now, &self.settings.breaker))
        {
            return format!("waiting: every worker with {wanted} has its circuit breaker open");
        }
        if offering.iter().all(|worker| worker.draining) {
            return format!("waiting: every worker with {wanted} is draining");
        }
        format!("waiting for a free worker with {wanted}")
    }
}
