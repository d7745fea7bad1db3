//! The dispatcher's state, with time passed in: the registered workers,
//! the queued attempts of each capability, and the leases held. Every
//! method is a step of the protocol; [`super::Dispatcher`] holds a board
//! under a lock and adds the waiting.
//!
//! Work is pushed, not grabbed: an attempt that becomes routable goes to
//! the least loaded matching worker at once (its lease waits in the
//! worker's mailbox until its next poll), so balancing is decided in one
//! place with every worker's load in view.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::run::{Failure, FailureKind, Route};
use rustc_hash::FxHashMap;
use tokio::sync::{Notify, oneshot};

mod queue;
mod shown;
mod worker;

use queue::{Bucket, Capability};
use worker::Worker;

use super::protocol::{
    End, Held, Lease, LeasedFile, Polled, Registered, Registration, Report, Taken,
};
use super::settings::WorkerSettings;
use crate::breaker::{Breaker, Target, transition};
use crate::executor::Outcome;

/// An attempt waiting for a worker, or leased to one.
pub(crate) struct Item {
    pub(crate) route: Route,
    /// The lease as the worker will get it; its lease id, fencing token,
    /// deadline and remaining time are filled in when it is leased.
    pub(crate) lease: Lease,
    /// Where its logs go (see [`crate::logs::attempt_file`]).
    pub(crate) prefix: std::path::PathBuf,
    /// When it was queued, and how long it may take from then.
    pub(crate) queued: Instant,
    pub(crate) timeout: Option<Duration>,
    /// Where its end goes.
    pub(crate) reply: oneshot::Sender<Ended>,
}

/// How an attempt ended on its worker: its outcome, and the files it
/// reported (uploaded by digest) when it succeeded.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) outcome: Outcome,
    pub(crate) files: Vec<LeasedFile>,
    /// The name of the worker that ran it, when one did.
    pub(crate) worker: Option<String>,
}

impl Ended {
    fn without_files(outcome: Outcome) -> Ended {
        Ended {
            outcome,
            files: Vec::new(),
            worker: None,
        }
    }
}

/// Names a submitted item until it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Ticket(u64);

/// Why a worker's call was refused.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WorkerError {
    /// No such worker: never registered, deregistered, or registered with a
    /// server that has since restarted. It registers again.
    #[error("no worker `{0}` is registered here; register again")]
    Unknown(String),
    /// Another key registered it, or the token is wrong.
    #[error("worker `{0}` was registered by another key, or the token does not match")]
    NotYours(String),
    /// The lease named is not this worker's to report on.
    #[error(
        "lease `{0}` is not held by this worker with that fencing token: it expired, was cancelled or was handed to another worker"
    )]
    StaleLease(String),
    /// A file upload or download that could not be done.
    #[error("{0}")]
    File(String),
    /// A log upload could not be written on the server.
    #[error("cannot write the log {}", path.display())]
    Log {
        path: std::path::PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl PartialEq for WorkerError {
    /// Equal when they say the same (a log error by its path).
    fn eq(&self, other: &WorkerError) -> bool {
        self.to_string() == other.to_string()
    }
}

/// Who calls for a worker: its id, the id of the API key it calls with
/// (empty when the server takes no keys), and its token.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub worker: &'a str,
    pub key: &'a str,
    pub token: &'a str,
}

enum Place {
    Queued,
    Leased {
        lease_id: String,
        fencing: u64,
        worker: String,
        deadline: Instant,
        delivered: bool,
    },
}

struct Entry {
    item: Item,
    place: Place,
}

/// Everything the dispatcher knows.
pub(crate) struct Board {
    settings: WorkerSettings,
    workers: FxHashMap<String, Worker>,
    /// The ids of the workers offering each capability, for routing
    /// without looking at every worker.
    offering: FxHashMap<String, Vec<String>>,
    capabilities: BTreeMap<String, Capability>,
    entries: FxHashMap<u64, Entry>,
    /// Ticket of each lease id.
    leases: FxHashMap<String, u64>,
    buckets: FxHashMap<String, Bucket>,
    next: u64,
}

impl Board {
    pub(crate) fn new(settings: WorkerSettings) -> Board {
        Board {
            settings,
            workers: FxHashMap::default(),
            offering: FxHashMap::default(),
            capabilities: BTreeMap::new(),
            entries: FxHashMap::default(),
            leases: FxHashMap::default(),
            buckets: FxHashMap::default(),
            next: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    pub(crate) fn register(
        &mut self,
        key: &str,
        registration: Registration,
        now: Instant,
    ) -> (Registered, Arc<Notify>) {
        let id = format!("w-{}", uuid::Uuid::new_v4().simple());
        let token = uuid::Uuid::new_v4().simple().to_string();
        let wake = Arc::new(Notify::new());
        for capability in &registration.capabilities {
            self.capabilities.entry(capability.clone()).or_default();
            self.offering
                .entry(capability.clone())
                .or_default()
                .push(id.clone());
        }
        self.workers.insert(
            id.clone(),
            Worker {
                id: id.clone(),
                key: key.to_owned(),
                token: token.clone(),
                registration,
                seen: now,
                draining: false,
                in_flight: 0,
                mailbox: VecDeque::new(),
                stop: Vec::new(),
                breaker: Breaker::default(),
                succeeded: 0,
                failed: 0,
                last_given: 0,
                wake: Arc::clone(&wake),
            },
        );
        self.assign(now);
        let registered = Registered {
            worker_id: id,
            token,
            heartbeat_ms: self.settings.heartbeat.as_std().as_millis() as u64,
            lease_ms: self.settings.lease.as_std().as_millis() as u64,
        };
        (registered, wake)
    }

    /// The worker `id`, if `key` registered it and `token` is its own.
    fn worker_mut(&mut self, caller: Caller<'_>) -> Result<&mut Worker, WorkerError> {
        let worker = self
            .workers
            .get_mut(caller.worker)
            .ok_or_else(|| WorkerError::Unknown(caller.worker.to_owned()))?;
        if worker.key != caller.key || worker.token != caller.token {
            return Err(WorkerError::NotYours(caller.worker.to_owned()));
        }
        Ok(worker)
    }

    /// Leases the worker must be told to stop, taken from its list.
    pub(crate) fn stops(&mut self, id: &str) -> Vec<String> {
        self.workers
            .get_mut(id)
            .map(|worker| std::mem::take(&mut worker.stop))
            .unwrap_or_default()
    }

    pub(crate) fn is_draining(&self, id: &str) -> bool {
        self.workers.get(id).is_some_and(|worker| worker.draining)
    }

    /// The bell a worker's long poll waits on.
    pub(crate) fn wake_of(&self, id: &str) -> Option<Arc<Notify>> {
        self.workers.get(id).map(|worker| Arc::clone(&worker.wake))
    }

    /// Queues an attempt and leases it at once if a worker is free.
    pub(crate) fn submit(&mut self, item: Item, now: Instant) -> Ticket {
        let ticket = self.next();
        let key = item.route.fairness_key.clone().unwrap_or_default();
        self.capabilities
            .entry(item.route.capability.clone())
            .or_default()
            .insert(key, item.route.priority, ticket, false);
        self.entries.insert(
            ticket,
            Entry {
                item,
                place: Place::Queued,
            },
        );
        self.assign(now);
        Ticket(ticket)
    }

    /// Leases an attempt at once if a worker may take it now; hands it
    /// back otherwise, queuing nothing.
    pub(crate) fn lease_now(&mut self, item: Item, now: Instant) -> Result<Ticket, Box<Item>> {
        let ticket = self.submit(item, now);
        if !self.is_queued(ticket) {
            return Ok(ticket);
        }
        let entry = self
            .entries
            .remove(&ticket.0)
            .expect("a queued ticket has its entry");
        let key = entry.item.route.fairness_key.clone().unwrap_or_default();
        if let Some(capability) = self.capabilities.get_mut(&entry.item.route.capability) {
            capability.remove(&key, ticket.0);
        }
        Err(Box::new(entry.item))
    }

    /// What the workers that may be given work now can take: for each set
    /// of capabilities and labels they offer, how many more attempts they
    /// hold between them (workers alike are asked about once).
    pub(crate) fn rooms(&self, now: Instant) -> Vec<(Vec<String>, BTreeMap<String, String>, u32)> {
        let mut rooms: BTreeMap<(&[String], &BTreeMap<String, String>), u32> = BTreeMap::new();
        for worker in self.workers.values().filter(|worker| {
            !worker.draining
                && worker.has_room()
                && worker.alive(now, &self.settings)
                && worker.breaker.admits(now, &self.settings.breaker)
        }) {
            let registration = &worker.registration;
            *rooms
                .entry((&registration.capabilities, &registration.labels))
                .or_default() += registration.concurrency - worker.in_flight;
        }
        rooms
            .into_iter()
            .map(|((capabilities, labels), free)| (capabilities.to_vec(), labels.clone(), free))
            .collect()
    }

    pub(crate) fn is_queued(&self, ticket: Ticket) -> bool {
        self.entries
            .get(&ticket.0)
            .is_some_and(|entry| matches!(entry.place, Place::Queued))
    }

    /// Takes an attempt back (cancelled, or out of time): out of its queue,
    /// or off its worker, who is told to stop it.
    pub(crate) fn withdraw(&mut self, ticket: Ticket) {
        let Some(entry) = self.entries.remove(&ticket.0) else {
            return;
        };
        match entry.place {
            Place::Queued => {
                let key = entry.item.route.fairness_key.clone().unwrap_or_default();
                if let Some(capability) = self.capabilities.get_mut(&entry.item.route.capability) {
                    capability.remove(&key, ticket.0);
                }
            }
            Place::Leased {
                lease_id, worker, ..
            } => {
                self.leases.remove(&lease_id);
                self.release(&entry.item.route.capability, &worker, ticket.0);
                if let Some(worker) = self.workers.get_mut(&worker) {
                    worker.stop.push(lease_id);
                    worker.wake.notify_one();
                }
            }
        }
    }

    /// Frees the room a lease held on its worker and capability.
    fn release(&mut self, capability: &str, worker: &str, ticket: u64) {
        if let Some(capability) = self.capabilities.get_mut(capability) {
            capability.in_flight = capability.in_flight.saturating_sub(1);
        }
        if let Some(worker) = self.workers.get_mut(worker) {
            worker.in_flight = worker.in_flight.saturating_sub(1);
            worker.mailbox.retain(|queued| *queued != ticket);
        }
    }

    /// A poll: takes the worker's results, extends what it still runs,
    /// and hands over up to `take` leases from its mailbox.
    pub(crate) fn poll(
        &mut self,
        caller: Caller<'_>,
        results: Vec<Report>,
        running: &[Held],
        take: u32,
        now: Instant,
    ) -> Result<Polled, WorkerError> {
        let id = caller.worker;
        let worker = self.worker_mut(caller)?;
        worker.seen = now;
        let draining = worker.draining;
        let mut stop = std::mem::take(&mut worker.stop);
        let taken = results
            .into_iter()
            .map(|report| self.report(id, report, now))
            .collect();
        let deadline = now + self.settings.lease.as_std();
        for held in running {
            match self.held_by(id, &held.lease_id, held.fencing) {
                Some(ticket) => self.extend(ticket, deadline),
                None => stop.push(held.lease_id.clone()),
            }
        }
        let waiting: Vec<u64> = self.workers[id].mailbox.iter().copied().collect();
        for ticket in waiting {
            self.extend(ticket, deadline);
        }
        self.assign(now);
        let leases = self.hand_over(id, take, now);
        Ok(Polled {
            leases,
            results: taken,
            stop,
            draining,
        })
    }

    /// Up to `take` leases from worker `id`'s mailbox.
    pub(crate) fn hand_over(&mut self, id: &str, take: u32, now: Instant) -> Vec<Lease> {
        let Some(worker) = self.workers.get_mut(id) else {
            return Vec::new();
        };
        let count = (take as usize).min(worker.mailbox.len());
        let tickets: Vec<u64> = worker.mailbox.drain(..count).collect();
        tickets
            .into_iter()
            .filter_map(|ticket| {
                let entry = self.entries.get_mut(&ticket)?;
                let Place::Leased {
                    delivered,
                    deadline,
                    ..
                } = &mut entry.place
                else {
                    return None;
                };
                *delivered = true;
                let mut lease = entry.item.lease.clone();
                lease.expires_in_ms = deadline.saturating_duration_since(now).as_millis() as u64;
                lease.timeout_ms = entry.item.timeout.map(|timeout| {
                    timeout
                        .saturating_sub(now.saturating_duration_since(entry.item.queued))
                        .as_millis() as u64
                });
                Some(lease)
            })
            .collect()
    }

    /// The ticket of lease `lease_id` if worker `id` holds it with `fencing`.
    fn held_by(&self, id: &str, lease_id: &str, fencing: u64) -> Option<u64> {
        let ticket = *self.leases.get(lease_id)?;
        match &self.entries.get(&ticket)?.place {
            Place::Leased {
                worker,
                fencing: current,
                ..
            } if worker == id && *current == fencing => Some(ticket),
            _ => None,
        }
    }

    fn extend(&mut self, ticket: u64, to: Instant) {
        if let Some(Entry {
            place: Place::Leased { deadline, .. },
            ..
        }) = self.entries.get_mut(&ticket)
        {
            *deadline = (*deadline).max(to);
        }
    }

    /// Takes one result: applied if the worker holds the lease with that
    /// token, refused as stale (changing nothing) otherwise.
    fn report(&mut self, id: &str, report: Report, now: Instant) -> Taken {
        let Some(ticket) = self.held_by(id, &report.lease_id, report.fencing) else {
            return Taken::Stale;
        };
        let entry = self
            .entries
            .remove(&ticket)
            .expect("a held lease has its entry");
        self.leases.remove(&report.lease_id);
        let capability = entry.item.route.capability.clone();
        self.release(&capability, id, ticket);
        let outcome = match report.end {
            End::Succeeded { output } => Outcome::Succeeded(with_usage(output, report.usage)),
            End::Failed { failure } => Outcome::Failed(failure.into()),
            End::Stopped => {
                // Handed back unfinished (the worker is shutting down): the
                // attempt goes to another worker as it is.
                self.requeue(ticket, entry.item, now);
                return Taken::Applied;
            }
        };
        let succeeded = matches!(outcome, Outcome::Succeeded(_));
        self.record(id, &capability, succeeded, now);
        let files = if succeeded {
            report.artifacts
        } else {
            Vec::new()
        };
        let worker = self
            .workers
            .get(id)
            .map(|worker| worker.registration.name.clone());
        let _ = entry.item.reply.send(Ended {
            outcome,
            files,
            worker,
        });
        Taken::Applied
    }

    fn requeue(&mut self, ticket: u64, item: Item, now: Instant) {
        let key = item.route.fairness_key.clone().unwrap_or_default();
        if let Some(capability) = self.capabilities.get_mut(&item.route.capability) {
            capability.insert(key, item.route.priority, ticket, true);
        }
        self.entries.insert(
            ticket,
            Entry {
                item,
                place: Place::Queued,
            },
        );
        self.assign(now);
    }

    /// Counts an attempt's end on its worker and capability, moving their
    /// breakers.
    fn record(&mut self, worker: &str, capability: &str, succeeded: bool, now: Instant) {
        let settings = self.settings.breaker;
        if let Some(worker) = self.workers.get_mut(worker) {
            if succeeded {
                worker.succeeded += 1;
            } else {
                worker.failed += 1;
            }
            if let Some(to) = worker.breaker.record(succeeded, now, &settings) {
                transition(Target::Worker, &worker.id, to);
            }
        }
        let own = self.settings.capability_breaker(capability);
        if let Some(state) = self.capabilities.get_mut(capability)
            && let Some(to) = state.breaker.record(succeeded, now, &own)
        {
            transition(Target::Capability, capability, to);
        }
    }

    /// Leases queued attempts to free workers, each to the least loaded
    /// worker that may take it, keys of a capability in turn.
    fn assign(&mut self, now: Instant) {
        let names: Vec<String> = self
            .capabilities
            .iter()
            .filter(|(_, capability)| !capability.queues.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            self.assign_capability(&name, now);
        }
    }

    fn assign_capability(&mut self, name: &str, now: Instant) {
        let limit = self.settings.limits.get(name).copied();
        loop {
            let mut leased_any = false;
            let keys = self.capabilities[name].keys_in_turn();
            for key in keys {
                let capability = &self.capabilities[name];
                if limit.is_some_and(|limit| capability.in_flight >= limit)
                    || !capability
                        .breaker
                        .admits(now, &self.settings.capability_breaker(name))
                {
                    return;
                }
                let Some(ticket) = capability.front(&key) else {
                    continue;
                };
                if !self.take_token(&key, now, false) {
                    continue;
                }
                let Some(worker) = self.best_worker(&self.entries[&ticket].item.route, now) else {
                    continue;
                };
                self.take_token(&key, now, true);
                self.lease(name, &key, ticket, &worker, now);
                leased_any = true;
            }
            if !leased_any {
                return;
            }
        }
    }

    /// Whether `key`'s bucket holds a token now (taking it if `take`).
    fn take_token(&mut self, key: &str, now: Instant, take: bool) -> bool {
        let Some(rate) = self.settings.rate_of(key) else {
            return true;
        };
        let capacity = rate.max(1.0);
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        if take {
            bucket.tokens -= 1.0;
        }
        true
    }

    fn best_worker(&self, route: &Route, now: Instant) -> Option<String> {
        self.offering
            .get(&route.capability)?
            .iter()
            .filter_map(|id| self.workers.get(id))
            .filter(|worker| {
                !worker.draining
                    && worker.has_room()
                    && worker.alive(now, &self.settings)
                    && worker.offers(route)
                    && worker.breaker.admits(now, &self.settings.breaker)
            })
            .reduce(|best, worker| {
                if worker.less_loaded_than(best) {
                    worker
                } else {
                    best
                }
            })
            .map(|worker| worker.id.clone())
    }

    fn lease(&mut self, capability: &str, key: &str, ticket: u64, worker: &str, now: Instant) {
        let order = self.next();
        let (worker_breaker, capability_breaker) = (
            self.settings.breaker,
            self.settings.capability_breaker(capability),
        );
        let deadline = now + self.settings.lease.as_std();
        let state = self
            .capabilities
            .get_mut(capability)
            .expect("a queued capability is known");
        if let Ok(Some(to)) = state.breaker.admit(now, &capability_breaker) {
            transition(Target::Capability, capability, to);
        }
        state.remove(key, ticket);
        state.in_flight += 1;
        // With one key there are no turns to take.
        if state.queues.len() > 1 || state.turn.is_some() {
            state.turn = Some(format!("{key}\0"));
        }
        let worker = self
            .workers
            .get_mut(worker)
            .expect("the best worker exists");
        if let Ok(Some(to)) = worker.breaker.admit(now, &worker_breaker) {
            transition(Target::Worker, &worker.id, to);
        }
        worker.in_flight += 1;
        worker.last_given = order;
        worker.mailbox.push_back(ticket);
        worker.wake.notify_one();
        let lease_id = format!("l-{}", uuid::Uuid::new_v4().simple());
        let entry = self
            .entries
            .get_mut(&ticket)
            .expect("a queued ticket has its entry");
        entry.item.lease.lease_id = lease_id.clone();
        entry.item.lease.fencing = order;
        entry.place = Place::Leased {
            lease_id: lease_id.clone(),
            fencing: order,
            worker: worker.id.clone(),
            deadline,
            delivered: false,
        };
        self.leases.insert(lease_id, ticket);
    }

    /// Ends the leases whose deadline passed (their attempts are lost, and
    /// count against their workers' breakers; one never handed over goes
    /// back to the queue) and forgets workers dead for long.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                matches!(entry.place, Place::Leased { deadline, .. } if deadline <= now)
            })
            .map(|(ticket, _)| *ticket)
            .collect();
        for ticket in expired {
            let entry = self.entries.remove(&ticket).expect("listed above");
            let Place::Leased {
                lease_id,
                worker,
                delivered,
                ..
            } = entry.place
            else {
                continue;
            };
            self.leases.remove(&lease_id);
            let capability = entry.item.route.capability.clone();
            self.release(&capability, &worker, ticket);
            self.record(&worker, &capability, false, now);
            if !delivered {
                // The worker never got it: it goes to another as it is.
                self.requeue(ticket, entry.item, now);
                continue;
            }
            if let Some(holder) = self.workers.get_mut(&worker) {
                holder.stop.push(lease_id.clone());
            }
            metrics::counter!("baton_worker_leases_lost_total").increment(1);
            let failure = Failure::new(
                FailureKind::Lost,
                format!(
                    "lost: worker `{}` did not extend its lease within {}",
                    self.workers
                        .get(&worker)
                        .map_or(worker.as_str(), |holder| holder.registration.name.as_str()),
                    self.settings.lease
                ),
            );
            let _ = entry
                .item
                .reply
                .send(Ended::without_files(Outcome::Failed(failure)));
        }
        // A worker silent for ten heartbeats past death is forgotten; one
        // that comes back registers again.
        let forget = self.settings.dead_after() * 10;
        let forgotten: Vec<String> = self
            .workers
            .values()
            .filter(|worker| {
                worker.in_flight == 0 && now.saturating_duration_since(worker.seen) >= forget
            })
            .map(|worker| worker.id.clone())
            .collect();
        for id in forgotten {
            self.forget(&id);
        }
        self.assign(now);
    }

    fn forget(&mut self, id: &str) {
        if let Some(worker) = self.workers.remove(id) {
            for capability in &worker.registration.capabilities {
                if let Some(ids) = self.offering.get_mut(capability) {
                    ids.retain(|offering| offering != id);
                }
            }
        }
    }

    /// Stops giving the worker new leases.
    pub(crate) fn drain(&mut self, caller: Caller<'_>) -> Result<(), WorkerError> {
        let worker = self.worker_mut(caller)?;
        worker.draining = true;
        worker.wake.notify_one();
        Ok(())
    }

    /// Removes the worker; the attempts it held go back to the queue.
    pub(crate) fn deregister(
        &mut self,
        caller: Caller<'_>,
        now: Instant,
    ) -> Result<(), WorkerError> {
        self.worker_mut(caller)?;
        let id = caller.worker;
        let held: Vec<u64> = self
            .entries
            .iter()
            .filter(
                |(_, entry)| matches!(&entry.place, Place::Leased { worker, .. } if worker == id),
            )
            .map(|(ticket, _)| *ticket)
            .collect();
        for ticket in held {
            let entry = self.entries.remove(&ticket).expect("listed above");
            if let Place::Leased { lease_id, .. } = &entry.place {
                self.leases.remove(lease_id);
            }
            let capability = entry.item.route.capability.clone();
            self.release(&capability, id, ticket);
            self.requeue(ticket, entry.item, now);
        }
        self.forget(id);
        self.assign(now);
        Ok(())
    }

    /// The attempt leased as `lease_id`, if the caller's worker holds it:
    /// for calls about one lease (its logs, its files).
    pub(crate) fn held(
        &mut self,
        caller: Caller<'_>,
        lease_id: &str,
    ) -> Result<&Item, WorkerError> {
        self.worker_mut(caller)?;
        let id = caller.worker;
        self.leases
            .get(lease_id)
            .and_then(|ticket| self.entries.get(ticket))
            .filter(|entry| matches!(&entry.place, Place::Leased { worker, .. } if worker == id))
            .map(|entry| &entry.item)
            .ok_or_else(|| WorkerError::StaleLease(lease_id.to_owned()))
    }

    /// Reports one result outside a poll: refused unless applied.
    pub(crate) fn complete(
        &mut self,
        caller: Caller<'_>,
        report: Report,
        now: Instant,
    ) -> Result<(), WorkerError> {
        let lease_id = report.lease_id.clone();
        self.worker_mut(caller)?.seen = now;
        match self.report(caller.worker, report, now) {
            Taken::Applied => Ok(()),
            Taken::Stale => Err(WorkerError::StaleLease(lease_id)),
        }
    }

    /// Gives the queued attempts of `task` in `run_id` a new priority; how
    /// many there were.
    pub(crate) fn reprioritize(&mut self, run_id: &str, task: &str, priority: i32) -> usize {
        let tickets: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                matches!(entry.place, Place::Queued)
                    && entry.item.lease.run_id == run_id
                    && entry.item.lease.task_id == task
            })
            .map(|(ticket, _)| *ticket)
            .collect();
        for &ticket in &tickets {
            let entry = self.entries.get_mut(&ticket).expect("listed above");
            entry.item.route.priority = priority;
            let route = &entry.item.route;
            let key = route.fairness_key.clone().unwrap_or_default();
            if let Some(capability) = self.capabilities.get_mut(&route.capability) {
                capability.remove(&key, ticket);
                capability.insert(key, priority, ticket, false);
            }
        }
        tickets.len()
    }

    /// Attempts queued and leased, for the metrics.
    pub(crate) fn depth(&self) -> (usize, usize) {
        let queued = self
            .capabilities
            .values()
            .map(Capability::queued)
            .sum::<usize>();
        (queued, self.leases.len())
    }
}

/// A worker's usage report joins the output's `baton` key, where a local
/// task puts it.
fn with_usage(
    output: Option<serde_json::Value>,
    usage: Option<serde_json::Map<String, serde_json::Value>>,
) -> Option<serde_json::Value> {
    let Some(usage) = usage else {
        return output;
    };
    let mut object = match output {
        Some(serde_json::Value::Object(object)) => object,
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(other) => serde_json::Map::from_iter([("value".to_owned(), other)]),
    };
    let baton = object
        .entry("baton")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if let serde_json::Value::Object(baton) = baton {
        baton.extend(usage);
    }
    Some(serde_json::Value::Object(object))
}
