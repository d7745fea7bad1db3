//! The dispatcher's side of a worker queue that server replicas share
//! (the store's [`WorkQueue`]): an attempt no worker of this replica can
//! take at once is offered there, so a worker registered with any replica
//! runs it; this replica's workers with room take what others offered.
//!
//! Each replica stays the only one to talk to its own workers: a taken
//! attempt is leased through this replica's board like one of its own, and
//! how it ended goes back through the queue to the replica whose run waits
//! for it. What crosses the queue is [`Wire`] and [`WireEnd`]: a lease and
//! its route, and an outcome, never a path (each replica writes the logs
//! of the leases it hands out under its own state directory).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use baton_core::run::{Failure, FailureKind, Route};
use baton_store::{Offer, Room, WorkQueue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

use super::board::{Ended, Item};
use super::protocol::{Lease, LeasedFile};
use crate::clock::Clock;
use crate::executor::Outcome;

/// An attempt as it waits in the shared queue.
#[derive(Serialize, Deserialize)]
struct Wire {
    route: Route,
    lease: Lease,
    /// How long the attempt may take from when it was queued.
    timeout_ms: Option<u64>,
}

/// How an attempt taken by another replica ended.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireEnd {
    Succeeded {
        output: Option<Value>,
        files: Vec<LeasedFile>,
        /// The worker that ran it (absent in rows older baton wrote).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
    },
    Failed {
        failure: Failure,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
    },
    Cancelled,
}

impl WireEnd {
    fn of(ended: Ended) -> WireEnd {
        match ended.outcome {
            Outcome::Succeeded(output) => WireEnd::Succeeded {
                output,
                files: ended.files,
                worker: ended.worker,
            },
            Outcome::Failed(failure) => WireEnd::Failed {
                failure,
                worker: ended.worker,
            },
            Outcome::Cancelled => WireEnd::Cancelled,
        }
    }

    fn ended(self) -> Ended {
        match self {
            WireEnd::Succeeded {
                output,
                files,
                worker,
            } => Ended {
                outcome: Outcome::Succeeded(output),
                files,
                worker,
            },
            WireEnd::Failed { failure, worker } => Ended {
                outcome: Outcome::Failed(failure),
                files: Vec::new(),
                worker,
            },
            WireEnd::Cancelled => Ended {
                outcome: Outcome::Cancelled,
                files: Vec::new(),
                worker: None,
            },
        }
    }

    fn json(self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// How an attempt ends whose taker stopped.
    fn lost() -> WireEnd {
        WireEnd::Failed {
            failure: Failure::new(
                FailureKind::Lost,
                "lost: the server replica that leased it to a worker stopped",
            ),
            worker: None,
        }
    }
}

/// An attempt this replica offered, waiting to hear how it ended.
struct Offered {
    reply: oneshot::Sender<Ended>,
    run_id: String,
    task_id: String,
    route: Route,
}

/// How long an end read before its offer was recorded is kept for it.
const EARLY_KEPT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Books {
    /// Offered attempts by queue ticket.
    offered: HashMap<i64, Offered>,
    /// Ends read back before their offer's ticket was recorded here.
    early: HashMap<i64, (Ended, Instant)>,
    /// Attempts taken for this replica's workers: queue ticket to board
    /// ticket.
    taken: HashMap<i64, super::board::Ticket>,
}

pub(crate) struct Shared {
    pub(crate) queue: Arc<dyn WorkQueue>,
    /// This process's owner id: the owner of what it offers, the taker of
    /// what it takes.
    me: String,
    state_dir: PathBuf,
    books: Mutex<Books>,
    /// The clock the store's leases are stamped by, once this process's
    /// lease is kept: until then it takes nothing (another replica would
    /// see a taker with no lease and end what it took as lost).
    pub(crate) clock: OnceLock<Clock>,
    /// Rung when a worker of this replica asks for work it has room for.
    pub(crate) prompt: Notify,
}

impl Shared {
    pub(crate) fn new(queue: Arc<dyn WorkQueue>, me: String, state_dir: PathBuf) -> Shared {
        Shared {
            queue,
            me,
            state_dir,
            books: Mutex::default(),
            clock: OnceLock::new(),
            prompt: Notify::new(),
        }
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Offers `item` to every replica's workers; the item back if the
    /// queue cannot be reached.
    pub(crate) async fn offer(&self, item: Box<Item>) -> Result<i64, Box<Item>> {
        let wire = Wire {
            route: item.route.clone(),
            lease: item.lease.clone(),
            timeout_ms: item.timeout.map(|timeout| timeout.as_millis() as u64),
        };
        let Ok(body) = serde_json::to_value(&wire) else {
            return Err(item);
        };
        let offer = Offer {
            capability: &item.route.capability,
            labels: &item.route.labels,
            fairness_key: item.route.fairness_key.as_deref().unwrap_or_default(),
            priority: item.route.priority,
            run_id: &item.lease.run_id,
            task_id: &item.lease.task_id,
            item: &body,
        };
        let ticket = match self
            .queue
            .offer(&self.me, offer, crate::clock::wall_clock())
            .await
        {
            Ok(ticket) => ticket,
            Err(_) => return Err(item),
        };
        let mut books = self.books();
        let item = *item;
        if let Some((ended, _)) = books.early.remove(&ticket) {
            let _ = item.reply.send(ended);
        } else {
            books.offered.insert(
                ticket,
                Offered {
                    reply: item.reply,
                    run_id: item.lease.run_id,
                    task_id: item.lease.task_id,
                    route: item.route,
                },
            );
        }
        Ok(ticket)
    }

    /// Takes an offered attempt back (its attempt was cancelled or ran out
    /// of time): out of the queue, and off the worker of whichever replica
    /// took it, which sees it gone.
    pub(crate) fn withdraw(self: &Arc<Self>, ticket: i64) {
        {
            let mut books = self.books();
            books.offered.remove(&ticket);
            books.early.remove(&ticket);
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(self);
            runtime.spawn(async move {
                let _ = shared.queue.withdraw(ticket).await;
            });
        }
    }

    /// Offered attempts of `run_id` still waiting here: (task, route).
    pub(crate) fn offered_of(&self, run_id: &str) -> Vec<(String, Route)> {
        self.books()
            .offered
            .values()
            .filter(|offered| offered.run_id == run_id)
            .map(|offered| (offered.task_id.clone(), offered.route.clone()))
            .collect()
    }

    pub(crate) fn offered_count(&self) -> usize {
        self.books().offered.len()
    }

    /// Hands each offered attempt that ended (on any replica) its end.
    pub(crate) async fn collect(&self) {
        // Only what this process offered can end for it.
        if self.books().offered.is_empty() {
            return;
        }
        let Ok(ended) = self.queue.ended(&self.me).await else {
            return;
        };
        let now = Instant::now();
        let mut books = self.books();
        for (ticket, end) in ended {
            let ended = serde_json::from_value::<WireEnd>(end)
                .unwrap_or_else(|error| WireEnd::Failed {
                    failure: Failure::new(
                        FailureKind::Error,
                        format!("the end another replica recorded does not read back: {error}"),
                    ),
                    worker: None,
                })
                .ended();
            match books.offered.remove(&ticket) {
                Some(offered) => {
                    let _ = offered.reply.send(ended);
                }
                None => {
                    books.early.insert(ticket, (ended, now));
                }
            }
        }
        books
            .early
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < EARLY_KEPT);
    }

    /// Takes, for each of this replica's workers with room, what waits for
    /// it; each becomes an item to lease here, whose end goes back through
    /// the queue.
    pub(crate) async fn take(
        self: &Arc<Self>,
        rooms: Vec<(Vec<String>, std::collections::BTreeMap<String, String>, u32)>,
    ) -> Vec<(i64, Item)> {
        if self.clock.get().is_none() {
            return Vec::new();
        }
        let mut items = Vec::new();
        for (capabilities, labels, free) in rooms {
            let room = Room {
                capabilities: &capabilities,
                labels: &labels,
                free,
            };
            let Ok(taken) = self.queue.take(&self.me, room).await else {
                return items;
            };
            for taken in taken {
                match serde_json::from_value::<Wire>(taken.item) {
                    Ok(wire) => {
                        let waited = crate::clock::wall_clock()
                            .0
                            .saturating_sub(taken.queued_at.0);
                        items.push((taken.ticket, self.item(taken.ticket, wire, waited)));
                    }
                    Err(error) => {
                        let end = WireEnd::Failed {
                            failure: Failure::new(
                                FailureKind::Error,
                                format!("the attempt offered does not read back: {error}"),
                            ),
                            worker: None,
                        };
                        let _ = self.queue.finish(taken.ticket, &end.json()).await;
                    }
                }
            }
        }
        items
    }

    /// An item for this replica's board from an attempt taken from the
    /// queue, `waited` ms after it was offered.
    fn item(self: &Arc<Self>, ticket: i64, wire: Wire, waited: u64) -> Item {
        let (reply, answer) = oneshot::channel();
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            // Dropped unanswered when the board let go of it (withdrawn):
            // nobody waits for it any more.
            if let Ok(ended) = answer.await {
                shared.finish(ticket, WireEnd::of(ended)).await;
            }
        });
        let prefix = crate::logs::attempt_prefix(
            &self.state_dir,
            &wire.lease.run_id,
            &wire.lease.task_id,
            wire.lease.attempt,
        );
        Item {
            route: wire.route,
            lease: wire.lease,
            prefix,
            queued: Instant::now()
                .checked_sub(Duration::from_millis(waited))
                .unwrap_or_else(Instant::now),
            timeout: wire.timeout_ms.map(Duration::from_millis),
            reply,
        }
    }

    /// Records that `ticket` is leased here as the board's `held`.
    pub(crate) fn hold(&self, ticket: i64, held: super::board::Ticket) {
        self.books().taken.insert(ticket, held);
    }

    /// Writes how a taken attempt ended, for its owner; tried again for a
    /// while should the database not answer.
    async fn finish(&self, ticket: i64, end: WireEnd) {
        self.books().taken.remove(&ticket);
        let end = end.json();
        for _ in 0..120 {
            if self.queue.finish(ticket, &end).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The board tickets of attempts taken here that their owners took
    /// back since; they stop being held.
    pub(crate) async fn taken_back(&self) -> Vec<super::board::Ticket> {
        let Ok(held) = self.queue.held(&self.me).await else {
            return Vec::new();
        };
        let held: std::collections::HashSet<i64> = held.into_iter().collect();
        let mut books = self.books();
        let gone: Vec<i64> = books
            .taken
            .keys()
            .filter(|ticket| !held.contains(ticket))
            .copied()
            .collect();
        gone.into_iter()
            .filter_map(|ticket| books.taken.remove(&ticket))
            .collect()
    }

    /// Drops what processes whose lease ran out offered, and ends as lost
    /// what they took.
    pub(crate) async fn sweep(&self) {
        if let Some(clock) = self.clock.get() {
            let _ = self.queue.sweep(clock.now(), &WireEnd::lost().json()).await;
        }
    }
}
