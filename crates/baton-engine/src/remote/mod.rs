//! Remote workers: the dispatcher that queues attempts routed to a
//! capability, leases them to registered workers over the worker protocol
//! ([`protocol`]), and turns their reports (or their silence) into the
//! attempts' ends. The run loop reaches it through the executor seam
//! (the executors' remote one) and never learns where an
//! attempt ran; the server speaks the protocol's HTTP side; `baton worker`
//! the other.

mod board;
mod local;
pub mod protocol;
mod settings;
mod shared;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

pub use board::{Caller, WorkerError};
pub(crate) use board::{Ended, Item};
pub use local::Workspace;
pub use settings::WorkerSettings;

use board::Board;
use protocol::{Poll, Polled, Registered, Registration, Report};
use shared::Shared;

/// Names a submitted attempt until it ends: on this replica's board, or
/// offered in the queue replicas share.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ticket {
    Here(board::Ticket),
    Shared(i64),
}

/// Hands attempts to remote workers. One per engine; cheap to share.
pub struct Dispatcher {
    board: Mutex<Board>,
    /// Where files workers upload are kept, and those they download come
    /// from: the engine's artifact store.
    cas: crate::artifacts::Cas,
    settings: WorkerSettings,
    /// Set when a server serves the protocol: until then nothing can reach
    /// a worker, and routed tasks are refused before a run starts.
    served: std::sync::atomic::AtomicBool,
    /// The queue shared with other replicas, when the store has one and
    /// workers are served.
    shared: std::sync::OnceLock<Arc<Shared>>,
    /// Set when the engine drains: this replica's workers take nothing more
    /// from the shared queue (what they hold they finish).
    draining: std::sync::atomic::AtomicBool,
}

/// The longest a poll waits for work.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

impl Dispatcher {
    pub(crate) fn new(settings: WorkerSettings, cas: crate::artifacts::Cas) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            board: Mutex::new(Board::new(settings.clone())),
            cas,
            settings,
            served: std::sync::atomic::AtomicBool::new(false),
            shared: std::sync::OnceLock::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn board(&self) -> MutexGuard<'_, Board> {
        self.board
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts serving workers: routed tasks are accepted from now on, and
    /// a task ends leases that run out for as long as the dispatcher lives.
    /// With `shared` (a queue other replicas use, and this process's owner
    /// id), attempts no worker here can take go there, and this replica's
    /// workers take what others offered.
    pub(crate) fn serve(
        self: &Arc<Self>,
        shared: Option<(Arc<dyn baton_store::WorkQueue>, String)>,
        state_dir: std::path::PathBuf,
    ) {
        if self.served.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        tokio::spawn(expire(Arc::downgrade(self), self.tick()));
        if let Some((queue, me)) = shared {
            let shared = Arc::new(Shared::new(queue, me, state_dir));
            let _ = self.shared.set(Arc::clone(&shared));
            tokio::spawn(relay(Arc::downgrade(self), shared, self.tick()));
        }
    }

    /// Tells the shared queue's side the clock of this process's lease in
    /// the store, now that it is kept: it may take work from then on.
    pub(crate) fn leased(&self, clock: crate::clock::Clock) {
        if let Some(shared) = self.shared.get() {
            let _ = shared.clock.set(clock);
            shared.prompt.notify_one();
        }
    }

    pub(crate) fn is_served(&self) -> bool {
        self.served.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How often leases and rate limits are looked at.
    fn tick(&self) -> Duration {
        (self.settings.lease.as_std() / 8)
            .clamp(Duration::from_millis(10), Duration::from_millis(250))
    }

    pub fn settings(&self) -> &WorkerSettings {
        &self.settings
    }

    /// Registers a worker for `key` (the id of the API key it called with).
    pub fn register(&self, key: &str, registration: Registration) -> Registered {
        self.board().register(key, registration, Instant::now()).0
    }

    /// One poll: takes `poll.results`, extends `poll.running`, and hands
    /// over up to `poll.take` leases, waiting up to `poll.wait_ms` (at most
    /// [`MAX_WAIT`]) for one when none is there.
    pub async fn poll(&self, caller: Caller<'_>, poll: Poll) -> Result<Polled, WorkerError> {
        let wait = Duration::from_millis(poll.wait_ms).min(MAX_WAIT);
        let (mut polled, wake) = {
            let mut board = self.board();
            let polled = board.poll(
                caller,
                poll.results,
                &poll.running,
                poll.take,
                Instant::now(),
            )?;
            (polled, board.wake_of(caller.worker))
        };
        let Some(wake) = wake else {
            return Ok(polled);
        };
        if polled.leases.is_empty()
            && poll.take > 0
            && let Some(shared) = self.shared.get()
        {
            shared.prompt.notify_one();
        }
        if polled.leases.is_empty() && poll.take > 0 && !wait.is_zero() && polled.stop.is_empty() {
            let until = tokio::time::Instant::now() + wait;
            while polled.leases.is_empty() && !polled.draining {
                if tokio::time::timeout_at(until, wake.notified())
                    .await
                    .is_err()
                {
                    break;
                }
                let mut board = self.board();
                polled.leases = board.hand_over(caller.worker, poll.take, Instant::now());
                polled.stop = board.stops(caller.worker);
                polled.draining = board.is_draining(caller.worker);
                if !polled.stop.is_empty() {
                    break;
                }
            }
        }
        Ok(polled)
    }

    /// One result outside a poll; an error if it was not applied.
    pub fn complete(&self, caller: Caller<'_>, report: Report) -> Result<(), WorkerError> {
        self.board().complete(caller, report, Instant::now())
    }

    /// Appends `bytes` to the log `stream` of a lease the worker holds,
    /// where `baton logs` and the API read a local attempt's.
    pub async fn append_log(
        &self,
        caller: Caller<'_>,
        lease: &str,
        stream: protocol::LogStream,
        bytes: &[u8],
    ) -> Result<(), WorkerError> {
        let prefix = self.board().held(caller, lease)?.prefix.clone();
        let file = crate::logs::attempt_file(
            &prefix,
            match stream {
                protocol::LogStream::Stdout => crate::logs::STDOUT_FILE,
                protocol::LogStream::Stderr => crate::logs::STDERR_FILE,
            },
        );
        let written = async {
            use tokio::io::AsyncWriteExt;
            if let Some(dir) = file.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let mut log = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .await?;
            log.write_all(bytes).await
        };
        written.await.map_err(|error| WorkerError::Log {
            path: file.clone(),
            source: std::sync::Arc::new(error),
        })
    }

    /// Stores a file the worker's lease produced, checking it is what its
    /// digest says; its report then names it.
    pub async fn upload_file(
        &self,
        caller: Caller<'_>,
        lease: &str,
        sha256: &str,
        bytes: Vec<u8>,
    ) -> Result<(), WorkerError> {
        self.board().held(caller, lease)?;
        let cas = self.cas.clone();
        let stored = tokio::task::spawn_blocking(move || cas.put_bytes(&bytes))
            .await
            .map_err(|error| WorkerError::File(error.to_string()))?
            .map_err(|error| WorkerError::File(error.to_string()))?;
        if stored.0.to_string() != sha256 {
            return Err(WorkerError::File(format!(
                "the bytes sent have SHA-256 {}, not {sha256}",
                stored.0
            )));
        }
        Ok(())
    }

    /// A file the worker's lease is to be given (one of its `files`).
    pub async fn download_file(
        &self,
        caller: Caller<'_>,
        lease: &str,
        sha256: &str,
    ) -> Result<Vec<u8>, WorkerError> {
        let listed = self
            .board()
            .held(caller, lease)?
            .lease
            .files
            .iter()
            .any(|file| file.sha256 == sha256);
        let digest: Option<baton_core::run::Digest> = sha256.parse().ok();
        let Some(digest) = digest.filter(|_| listed) else {
            return Err(WorkerError::File(format!(
                "lease `{lease}` is given no file with SHA-256 {sha256}"
            )));
        };
        let path = self.cas.object(&digest);
        tokio::fs::read(&path)
            .await
            .map_err(|error| WorkerError::File(format!("{}: {error}", path.display())))
    }

    /// Whether the object with `digest` is stored (an upload arrived).
    pub(crate) fn holds_file(&self, digest: &baton_core::run::Digest) -> bool {
        self.cas.object(digest).is_file()
    }

    pub fn drain(&self, caller: Caller<'_>) -> Result<(), WorkerError> {
        self.board().drain(caller)
    }

    pub fn deregister(&self, caller: Caller<'_>) -> Result<(), WorkerError> {
        self.board().deregister(caller, Instant::now())
    }

    /// Every registered worker, as the agent registry shows it.
    pub fn workers(&self) -> Vec<crate::AgentStatus> {
        self.board().workers(Instant::now())
    }

    /// Why `run_id`'s queued attempts wait, by task id.
    pub fn waiting(&self, run_id: &str) -> BTreeMap<String, String> {
        let now = Instant::now();
        let board = self.board();
        let mut waiting = board.waiting(run_id, now);
        if let Some(shared) = self.shared.get() {
            for (task, route) in shared.offered_of(run_id) {
                let why = format!(
                    "{}; offered to the workers of every replica",
                    board.why_waiting(&route, now)
                );
                waiting.insert(task, why);
            }
        }
        waiting
    }

    /// Gives the attempts of `task` in `run_id` waiting for a worker a new
    /// priority (higher is leased first among its fairness key's work);
    /// how many there were.
    pub async fn reprioritize(&self, run_id: &str, task: &str, priority: i32) -> usize {
        let here = self.board().reprioritize(run_id, task, priority);
        let shared = match self.shared.get() {
            Some(shared) => shared
                .queue
                .reprioritize(run_id, task, priority)
                .await
                .unwrap_or_default(),
            None => 0,
        };
        here + shared
    }

    /// Attempts queued and leased.
    pub fn depth(&self) -> (usize, usize) {
        let (queued, leased) = self.board().depth();
        let offered = self.shared.get().map_or(0, |shared| shared.offered_count());
        (queued + offered, leased)
    }

    /// Queues an attempt: leased here at once when a worker here may take
    /// it, offered to every replica's workers when a shared queue is
    /// served, queued here otherwise (or when that queue cannot be
    /// reached).
    pub(crate) async fn submit(&self, item: Item) -> Ticket {
        let Some(shared) = self.shared.get() else {
            return Ticket::Here(self.board().submit(item, Instant::now()));
        };
        let item = match self.board().lease_now(item, Instant::now()) {
            Ok(ticket) => return Ticket::Here(ticket),
            Err(item) => item,
        };
        match shared.offer(item).await {
            Ok(ticket) => Ticket::Shared(ticket),
            Err(item) => Ticket::Here(self.board().submit(*item, Instant::now())),
        }
    }

    /// Whether the attempt still waits for a worker.
    pub(crate) async fn is_queued(&self, ticket: Ticket) -> bool {
        match (ticket, self.shared.get()) {
            (Ticket::Here(ticket), _) => self.board().is_queued(ticket),
            (Ticket::Shared(ticket), Some(shared)) => {
                shared.queue.is_waiting(ticket).await.unwrap_or(false)
            }
            (Ticket::Shared(_), None) => false,
        }
    }

    /// Takes no more work from other replicas' runs: the engine drains.
    pub(crate) fn stop_taking(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn withdraw(&self, ticket: Ticket) {
        match (ticket, self.shared.get()) {
            (Ticket::Here(ticket), _) => self.board().withdraw(ticket),
            (Ticket::Shared(ticket), Some(shared)) => shared.withdraw(ticket),
            (Ticket::Shared(_), None) => {}
        }
    }

    /// One exchange with the shared queue: ends read back, work taken for
    /// the workers here with room, and (every `sweep`) attempts taken back
    /// by their owners stopped and stopped processes' attempts swept.
    async fn exchange(&self, shared: &Arc<Shared>, sweep: bool) {
        shared.collect().await;
        let rooms = if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            Vec::new()
        } else {
            self.board().rooms(Instant::now())
        };
        for (ticket, item) in shared.take(rooms).await {
            let leased = self.board().lease_now(item, Instant::now());
            match leased {
                Ok(held) => shared.hold(ticket, held),
                // Its capability's limit, rate or breaker holds it back
                // here: another replica may take it.
                Err(_) => {
                    let _ = shared.queue.give_back(ticket).await;
                }
            }
        }
        if sweep {
            for held in shared.taken_back().await {
                self.board().withdraw(held);
            }
            shared.sweep().await;
        }
    }
}

/// Keeps this replica's side of the shared queue moving for as long as
/// the dispatcher lives: woken when any replica offers or ends an
/// attempt, when a worker here asks for work, or every `tick`.
async fn relay(dispatcher: Weak<Dispatcher>, shared: Arc<Shared>, tick: Duration) {
    let sweep_every = tick * 8;
    let mut swept = Instant::now();
    loop {
        {
            let Some(dispatcher) = dispatcher.upgrade() else {
                return;
            };
            let sweep = swept.elapsed() >= sweep_every;
            if sweep {
                swept = Instant::now();
            }
            dispatcher.exchange(&shared, sweep).await;
        }
        tokio::select! {
            () = shared.queue.notified() => {}
            () = shared.prompt.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
    }
}

/// Ends leases that ran out, and starts work a rate limit held back, for
/// as long as the dispatcher lives.
async fn expire(dispatcher: Weak<Dispatcher>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(dispatcher) = dispatcher.upgrade() else {
            return;
        };
        let mut board = dispatcher.board();
        board.expire(Instant::now());
        let (queued, leased) = board.depth();
        drop(board);
        metrics::gauge!("baton_worker_queue_depth").set(queued as f64);
        metrics::gauge!("baton_worker_leases").set(leased as f64);
    }
}

#[cfg(test)]
mod tests;

/// What `baton bench workers` measures of routing alone: `workers` workers
/// registered (ten capabilities, four zones), then `attempts` attempts
/// queued, each leased at once to the least loaded match after its
/// breakers are consulted. The time per attempt.
pub fn routing_cost(workers: usize, attempts: usize) -> Duration {
    let settings = WorkerSettings::default();
    let mut board = Board::new(settings);
    let now = Instant::now();
    for index in 0..workers {
        let registration = Registration {
            name: format!("w{index}"),
            capabilities: vec![format!("cap{}", index % 10)],
            labels: BTreeMap::from([("zone".to_owned(), format!("z{}", index % 4))]),
            concurrency: u32::MAX,
            version: String::new(),
        };
        board.register("key", registration, now);
    }
    let items: Vec<(Item, tokio::sync::oneshot::Receiver<Ended>)> = (0..attempts)
        .map(|index| {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let route = baton_core::run::Route {
                capability: format!("cap{}", index % 10),
                labels: BTreeMap::from([("zone".to_owned(), format!("z{}", index % 4))]),
                fairness_key: None,
                priority: 0,
            };
            let lease = protocol::Lease {
                lease_id: String::new(),
                fencing: 0,
                expires_in_ms: 0,
                run_id: "bench".to_owned(),
                task_id: format!("t{index}"),
                attempt: 1,
                idempotency_key: String::new(),
                capability: route.capability.clone(),
                work: protocol::LeasedWork::Noop,
                env: BTreeMap::new(),
                cwd: None,
                timeout_ms: None,
                grace_ms: 0,
                inputs: serde_json::Value::Null,
                needs: serde_json::Map::new(),
                files: Vec::new(),
                artifacts: Vec::new(),
            };
            let item = Item {
                route,
                lease,
                prefix: std::path::PathBuf::new(),
                queued: now,
                timeout: None,
                reply,
            };
            (item, answer)
        })
        .collect();
    let mut answers = Vec::with_capacity(attempts);
    let clock = Instant::now();
    for (item, answer) in items {
        board.submit(item, now);
        answers.push(answer);
    }
    let took = clock.elapsed();
    assert_eq!(board.depth(), (0, attempts), "every attempt was leased");
    took / attempts.max(1) as u32
}
