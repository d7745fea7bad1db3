//! A registered worker as the board keeps it: who may act for it, what it
//! offers, how loaded it is, and its breaker.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use baton_core::run::Route;
use tokio::sync::Notify;

use crate::breaker::Breaker;
use crate::remote::protocol::Registration;
use crate::remote::settings::WorkerSettings;

pub(super) struct Worker {
    pub(super) id: String,
    pub(super) key: String,
    pub(super) token: String,
    pub(super) registration: Registration,
    pub(super) seen: Instant,
    pub(super) draining: bool,
    /// Leases it holds, delivered or waiting in its mailbox.
    pub(super) in_flight: u32,
    /// Leases assigned and not yet handed over by a poll.
    pub(super) mailbox: VecDeque<u64>,
    /// Leases taken back that it must be told to stop.
    pub(super) stop: Vec<String>,
    pub(super) breaker: Breaker,
    pub(super) succeeded: u64,
    pub(super) failed: u64,
    /// When it was last given work: ties in load go to the one given work
    /// longest ago, which makes them round-robin.
    pub(super) last_given: u64,
    pub(super) wake: Arc<Notify>,
}

impl Worker {
    pub(super) fn alive(&self, now: Instant, settings: &WorkerSettings) -> bool {
        now.saturating_duration_since(self.seen) < settings.dead_after()
    }

    pub(super) fn offers(&self, route: &Route) -> bool {
        self.registration.capabilities.contains(&route.capability)
            && route
                .labels
                .iter()
                .all(|(name, value)| self.registration.labels.get(name) == Some(value))
    }

    pub(super) fn has_room(&self) -> bool {
        self.in_flight < self.registration.concurrency
    }

    /// `in_flight / concurrency` is less than `other`'s.
    pub(super) fn less_loaded_than(&self, other: &Worker) -> bool {
        let mine = u64::from(self.in_flight) * u64::from(other.registration.concurrency);
        let theirs = u64::from(other.in_flight) * u64::from(self.registration.concurrency);
        mine < theirs || (mine == theirs && self.last_given < other.last_given)
    }
}
