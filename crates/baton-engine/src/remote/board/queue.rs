//! A capability's queued work: by fairness key, each key's in priority
//! order, keys taken in turn; and a key's token bucket.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::breaker::Breaker;

/// One capability's queue and what it has in flight.
#[derive(Default)]
pub(super) struct Capability {
    /// Queued (priority, ticket)s by fairness key, each key's in priority
    /// order (higher first), then first come first served; keys are taken
    /// in turn.
    pub(super) queues: BTreeMap<String, VecDeque<(i32, u64)>>,
    /// The key after the one served last.
    pub(super) turn: Option<String>,
    pub(super) in_flight: u32,
    pub(super) breaker: Breaker,
}

impl Capability {
    pub(super) fn queued(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// Keys in the order they take their turns now.
    pub(super) fn keys_in_turn(&self) -> Vec<String> {
        let (after, before): (Vec<&String>, Vec<&String>) = self
            .queues
            .keys()
            .partition(|key| self.turn.as_ref().is_none_or(|turn| *key >= turn));
        after.into_iter().chain(before).cloned().collect()
    }

    /// Queues `ticket` among `key`'s work by its priority: after what has
    /// the same priority, or before it when `first` (work handed back).
    pub(super) fn insert(&mut self, key: String, priority: i32, ticket: u64, first: bool) {
        let queue = self.queues.entry(key).or_default();
        let at = queue.partition_point(|&(queued, _)| {
            if first {
                queued > priority
            } else {
                queued >= priority
            }
        });
        queue.insert(at, (priority, ticket));
    }

    /// The ticket `key` leases next.
    pub(super) fn front(&self, key: &str) -> Option<u64> {
        self.queues.get(key)?.front().map(|&(_, ticket)| ticket)
    }

    pub(super) fn remove(&mut self, key: &str, ticket: u64) {
        if let Some(queue) = self.queues.get_mut(key) {
            // Leasing takes the front; only a withdrawal looks further.
            if queue.front().map(|&(_, front)| front) == Some(ticket) {
                queue.pop_front();
            } else {
                queue.retain(|&(_, queued)| queued != ticket);
            }
            if queue.is_empty() {
                self.queues.remove(key);
            }
        }
    }
}

/// A fairness key's token bucket.
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) at: Instant,
}
