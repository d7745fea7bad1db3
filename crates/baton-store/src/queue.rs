//! The worker queue replicas share: what a store that several servers use
//! at once offers so that an attempt routed by one replica's run reaches a
//! worker registered with another. A single-process store has none: its
//! one dispatcher holds every worker.
//!
//! The queue moves opaque JSON (the engine's lease and how it ended); the
//! columns it filters and orders by are given beside it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use baton_core::run::Millis;
use serde_json::Value;

use crate::Result;

/// An attempt offered to the replicas' workers.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    pub capability: &'a str,
    /// Every one of these a taking worker must carry.
    pub labels: &'a BTreeMap<String, String>,
    /// Keys take turns: a key with much work queued does not hold back
    /// the others.
    pub fairness_key: &'a str,
    /// Higher is taken first within its key.
    pub priority: i32,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub item: &'a Value,
}

/// An offered attempt one replica took for its workers.
#[derive(Clone, Debug, PartialEq)]
pub struct Taken {
    pub ticket: i64,
    pub item: Value,
    pub queued_at: Millis,
}

/// What a taker's workers can run: a worker's capabilities and labels, and
/// how many more attempts it may hold.
#[derive(Clone, Copy, Debug)]
pub struct Room<'a> {
    pub capabilities: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
    pub free: u32,
}

#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Queues an attempt for `owner` (the offering process's owner id);
    /// its ticket.
    async fn offer(&self, owner: &str, offer: Offer<'_>, now: Millis) -> Result<i64>;

    /// Takes the attempt back; whether it was still there.
    async fn withdraw(&self, ticket: i64) -> Result<bool>;

    /// Whether the attempt still waits for a taker.
    async fn is_waiting(&self, ticket: i64) -> Result<bool>;

    /// Takes up to `room.free` waiting attempts a worker with `room` can
    /// run, for `taker`; none is taken by two.
    async fn take(&self, taker: &str, room: Room<'_>) -> Result<Vec<Taken>>;

    /// Puts a taken attempt back to wait for another taker.
    async fn give_back(&self, ticket: i64) -> Result<()>;

    /// Records how a taken attempt ended, for its owner to read; `false`
    /// when its owner took it back meanwhile.
    async fn finish(&self, ticket: i64, ended: &Value) -> Result<bool>;

    /// The attempts of `owner` that ended, with how; they leave the queue.
    async fn ended(&self, owner: &str) -> Result<Vec<(i64, Value)>>;

    /// Of the attempts `taker` took and has not finished, those still
    /// there (the others were taken back by their owners).
    async fn held(&self, taker: &str) -> Result<Vec<i64>>;

    /// Drops the attempts of owners whose lease ran out before `now` and
    /// ends as `lost` those taken by such processes.
    async fn sweep(&self, now: Millis, lost: &Value) -> Result<()>;

    /// Gives the waiting attempts of `task_id` in `run_id` a new priority;
    /// how many there were.
    async fn reprioritize(&self, run_id: &str, task_id: &str, priority: i32) -> Result<usize>;

    /// Waits until some process offers or ends an attempt (or a while has
    /// passed: a notification may be lost).
    async fn notified(&self);
}
