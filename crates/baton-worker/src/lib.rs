//! `baton worker`: the reference worker of baton's worker protocol. It
//! registers with a server, takes leases while it has room, runs each as a
//! local task runs (the engine's own process executor: process groups,
//! timeouts with SIGTERM then SIGKILL, `$BATON_OUTPUT`, logs), uploads the
//! logs and reports the end. Two loops share the session: the taker
//! long-polls for work while there is room (carrying any results ready),
//! and the reporter sends results as they come and heartbeats in between,
//! so a finished attempt is never held behind a long poll.
//!
//! When the server goes away the worker keeps what runs and retries with
//! backoff; when the server no longer knows it (restarted), it stops what
//! it runs (those leases are gone) and registers again. Asked to stop, it
//! drains: takes nothing new, lets what runs finish for a while, hands
//! back the rest, and deregisters.

mod client;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_engine::remote::Workspace;
use baton_engine::remote::protocol::{
    End, Held, Lease, LeasedFile, LogStream, Poll, Polled, Registration, RemoteFailure,
    RemoteFailureKind, Report, Taken,
};
use tokio::sync::{Notify, oneshot, watch};

pub use client::CallError;
use client::{Client, Session};

/// How a worker is set up.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The server's base URL (`http://127.0.0.1:8080`).
    pub server: String,
    /// An API key with scope `worker` (or none when the server takes none).
    pub key: Option<String>,
    pub registration: Registration,
    pub workspace: Workspace,
    /// After a stop is asked, how long what runs may take to finish before
    /// it is handed back to the server.
    pub drain_timeout: Duration,
}

/// Why the worker stopped other than being asked to.
#[derive(Debug, thiserror::Error)]
pub enum WorkerFailure {
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The server refused the worker for good (a bad key, a registration
    /// it will not take).
    #[error("the server will not take this worker")]
    Refused(#[source] CallError),
}

/// What a worker did, for its last words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub succeeded: u64,
    pub failed: u64,
    /// Handed back or stopped before they ended.
    pub stopped: u64,
}

/// Runs a worker until `shutdown` resolves (then drains and leaves) or
/// the server refuses it.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, WorkerFailure> {
    let client = Client::new(&config.server, config.key.clone()).map_err(WorkerFailure::Client)?;
    let worker = Arc::new(Worker {
        client,
        config,
        state: Mutex::new(State::default()),
        changed: Notify::new(),
        away: AtomicBool::new(false),
    });
    let (stop, stopping) = watch::channel(false);
    let serving = {
        let worker = Arc::clone(&worker);
        async move {
            loop {
                let session = worker.register(stopping.clone()).await?;
                let Some(session) = session else {
                    return Ok(());
                };
                match worker.serve(&session, stopping.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(CallError::UnknownWorker(detail)) => {
                        tracing::info!(
                            "baton worker: the server forgot this worker ({detail}); stopping what runs and registering again"
                        );
                        worker.stop_all();
                        worker.lock().outbox.clear();
                    }
                    Err(error) => return Err(WorkerFailure::Refused(error)),
                }
            }
        }
    };
    tokio::pin!(serving);
    tokio::select! {
        ended = &mut serving => return ended.map(|()| worker.summary()),
        () = shutdown => {}
    }
    let _ = stop.send(true);
    serving.await.map(|()| worker.summary())
}

#[derive(Default)]
struct State {
    /// Leases running here, with the switch that stops each.
    running: HashMap<String, Running>,
    /// Results not yet sent.
    outbox: Vec<Report>,
    summary: Summary,
}

struct Running {
    fencing: u64,
    stop: Option<oneshot::Sender<()>>,
}

struct Worker {
    client: Client,
    config: WorkerConfig,
    state: Mutex<State>,
    /// Rung when a result is ready or room is freed.
    changed: Notify,
    /// The server stopped answering (said once, until it answers).
    away: AtomicBool,
}

/// Backoff between tries against a server that does not answer.
const BACKOFF: [u64; 6] = [100, 250, 500, 1000, 2000, 5000];

impl Worker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn summary(&self) -> Summary {
        self.lock().summary
    }

    /// Registers, retrying while the server is away; none if asked to
    /// stop first.
    async fn register(
        &self,
        mut stopping: watch::Receiver<bool>,
    ) -> Result<Option<Session>, WorkerFailure> {
        let mut tries = 0;
        loop {
            if *stopping.borrow() {
                return Ok(None);
            }
            match self.client.register(&self.config.registration).await {
                Ok(registered) => {
                    // Registering says the server answers.
                    self.away.store(false, Ordering::Relaxed);
                    tracing::info!(
                        "baton worker: registered with {} as {} ({}), capabilities {}, concurrency {}",
                        self.config.server,
                        registered.worker_id,
                        self.config.registration.name,
                        self.config.registration.capabilities.join(", "),
                        self.config.registration.concurrency,
                    );
                    return Ok(Some(Session {
                        id: registered.worker_id,
                        token: registered.token,
                        heartbeat: Duration::from_millis(registered.heartbeat_ms.max(50)),
                    }));
                }
                Err(error) if error.is_transient() => {
                    if tries == 0 {
                        tracing::warn!("baton worker: {error}; retrying");
                    }
                    let wait = Duration::from_millis(BACKOFF[tries.min(BACKOFF.len() - 1)]);
                    tries += 1;
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stopping.changed() => {}
                    }
                }
                Err(error) => return Err(WorkerFailure::Refused(error)),
            }
        }
    }

    /// Serves one session until asked to stop (then drains and leaves) or
    /// a call is refused for good.
    async fn serve(
        self: &Arc<Self>,
        session: &Session,
        stopping: watch::Receiver<bool>,
    ) -> Result<(), CallError> {
        let (done, finished) = watch::channel(false);
        let reporter = {
            let worker = Arc::clone(self);
            let session = session.clone();
            tokio::spawn(async move { worker.report(&session, finished).await })
        };
        let taken = self.take(session, stopping).await;
        let _ = done.send(true);
        let reported = reporter.await.unwrap_or_else(|error| {
            Err(CallError::Refused {
                status: 0,
                detail: error.to_string(),
            })
        });
        taken?;
        reported?;
        match self.client.deregister(session).await {
            Ok(()) | Err(CallError::UnknownWorker(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The taker: long-polls for work while there is room, until asked to
    /// stop; then drains.
    async fn take(
        self: &Arc<Self>,
        session: &Session,
        mut stopping: watch::Receiver<bool>,
    ) -> Result<(), CallError> {
        let concurrency = self.config.registration.concurrency as usize;
        let mut tries = 0;
        while !*stopping.borrow() {
            let room = concurrency.saturating_sub(self.lock().running.len());
            if room == 0 {
                tokio::select! {
                    () = self.changed.notified() => {}
                    _ = stopping.changed() => {}
                }
                continue;
            }
            let (results, running) = self.outgoing();
            let poll = Poll {
                results,
                running,
                take: room as u32,
                wait_ms: session.heartbeat.as_millis() as u64,
            };
            let polled = tokio::select! {
                polled = self.client.poll(session, &poll) => polled,
                _ = stopping.changed() => {
                    self.lock().outbox.extend(poll.results);
                    break;
                }
            };
            match polled {
                Ok(polled) => {
                    self.reached(&mut tries);
                    self.absorb(session, &poll.results, polled);
                }
                Err(error) if error.is_transient() => {
                    self.lock().outbox.extend(poll.results);
                    self.backoff(&mut tries, &error).await;
                }
                Err(error) => return Err(error),
            }
        }
        self.drain(session).await
    }

    /// Asked to stop: takes nothing new, lets what runs finish for
    /// `drain_timeout`, then stops the rest (handed back as they stop).
    async fn drain(&self, session: &Session) -> Result<(), CallError> {
        match self.client.drain(session).await {
            Ok(()) => {}
            Err(error) if error.is_transient() => {}
            Err(error) => return Err(error),
        }
        let running = self.lock().running.len();
        if running > 0 {
            tracing::info!(
                "baton worker: draining: {running} attempts running, handed back after {:?}",
                self.config.drain_timeout
            );
        }
        let deadline = tokio::time::Instant::now() + self.config.drain_timeout;
        while !self.lock().running.is_empty() {
            if tokio::time::timeout_at(deadline, self.changed.notified())
                .await
                .is_err()
            {
                self.stop_all();
                while !self.lock().running.is_empty() {
                    self.changed.notified().await;
                }
            }
        }
        Ok(())
    }

    /// The reporter: sends results as they come, and heartbeats at least
    /// every heartbeat; after `finished`, flushes what is left.
    async fn report(
        self: &Arc<Self>,
        session: &Session,
        mut finished: watch::Receiver<bool>,
    ) -> Result<(), CallError> {
        let mut tries = 0;
        loop {
            let last = *finished.borrow();
            let (results, running) = self.outgoing();
            if last && results.is_empty() {
                return Ok(());
            }
            let poll = Poll {
                results,
                running,
                take: 0,
                wait_ms: 0,
            };
            match self.client.poll(session, &poll).await {
                Ok(polled) => {
                    self.reached(&mut tries);
                    self.absorb(session, &poll.results, polled);
                }
                Err(error) if error.is_transient() && !last => {
                    self.lock().outbox.extend(poll.results);
                    self.backoff(&mut tries, &error).await;
                    continue;
                }
                Err(error) if error.is_transient() => return Ok(()),
                Err(error) => return Err(error),
            }
            if !self.lock().outbox.is_empty() {
                continue;
            }
            tokio::select! {
                () = self.changed.notified() => {}
                () = tokio::time::sleep(session.heartbeat / 2) => {}
                _ = finished.changed() => {}
            }
        }
    }

    /// The results to send (taken from the outbox) and the leases held.
    fn outgoing(&self) -> (Vec<Report>, Vec<Held>) {
        let mut state = self.lock();
        let results = std::mem::take(&mut state.outbox);
        let running = state
            .running
            .iter()
            .map(|(lease_id, running)| Held {
                lease_id: lease_id.clone(),
                fencing: running.fencing,
            })
            .collect();
        (results, running)
    }

    /// Acts on a poll's answer: stops what the server took back, notes
    /// refused results, starts the new leases.
    fn absorb(self: &Arc<Self>, session: &Session, sent: &[Report], polled: Polled) {
        for (report, taken) in sent.iter().zip(&polled.results) {
            if *taken == Taken::Stale {
                tracing::info!(
                    "baton worker: the server refused the result of lease {} (it expired or was taken back)",
                    report.lease_id
                );
            }
        }
        {
            let mut state = self.lock();
            for lease in &polled.stop {
                if let Some(stop) = state
                    .running
                    .get_mut(lease)
                    .and_then(|running| running.stop.take())
                {
                    let _ = stop.send(());
                }
            }
        }
        for lease in polled.leases {
            self.start(session, lease);
        }
    }

    fn start(self: &Arc<Self>, session: &Session, lease: Lease) {
        let (stop, stopped) = oneshot::channel();
        self.lock().running.insert(
            lease.lease_id.clone(),
            Running {
                fencing: lease.fencing,
                stop: Some(stop),
            },
        );
        let worker = Arc::clone(self);
        let session = session.clone();
        tokio::spawn(async move {
            let (end, artifacts) = match worker.fetch_files(&session, &lease).await {
                Ok(()) => {
                    let end = worker.config.workspace.run(&lease, stopped).await;
                    worker.hand_back_files(&session, &lease, end).await
                }
                Err(message) => (failed(message), Vec::new()),
            };
            worker.upload_logs(&session, &lease).await;
            let mut state = worker.lock();
            match &end {
                End::Succeeded { .. } => state.summary.succeeded += 1,
                End::Failed { .. } => state.summary.failed += 1,
                End::Stopped => state.summary.stopped += 1,
            }
            state.running.remove(&lease.lease_id);
            state.outbox.push(Report {
                lease_id: lease.lease_id.clone(),
                fencing: lease.fencing,
                end,
                usage: None,
                artifacts,
            });
            drop(state);
            worker.changed.notify_waiters();
            worker.changed.notify_one();
        });
    }

    /// Places the files the lease is given (its needs' artifacts) before
    /// it runs.
    async fn fetch_files(&self, session: &Session, lease: &Lease) -> Result<(), String> {
        for file in &lease.files {
            let bytes = self
                .client
                .download(session, &lease.lease_id, &file.sha256)
                .await
                .map_err(|error| format!("cannot fetch `{}` for the task: {error}", file.path))?;
            self.config.workspace.place(lease, file, &bytes)?;
        }
        Ok(())
    }

    /// After a success, uploads the files its `artifacts:` match, to be
    /// named in the report; a file that cannot be collected or sent fails
    /// the attempt, as a missing artifact fails a local one.
    async fn hand_back_files(
        &self,
        session: &Session,
        lease: &Lease,
        end: End,
    ) -> (End, Vec<LeasedFile>) {
        if lease.artifacts.is_empty() || !matches!(end, End::Succeeded { .. }) {
            return (end, Vec::new());
        }
        let sent = async {
            let found = self.config.workspace.collect(lease)?;
            let mut files = Vec::with_capacity(found.len());
            for (file, object) in found {
                let bytes = tokio::fs::read(&object)
                    .await
                    .map_err(|error| format!("{}: {error}", object.display()))?;
                self.client
                    .upload(session, &lease.lease_id, &file.sha256, bytes)
                    .await
                    .map_err(|error| format!("cannot upload `{}`: {error}", file.path))?;
                files.push(file);
            }
            Ok::<_, String>(files)
        };
        let outcome = sent.await;
        let _ = tokio::fs::remove_dir_all(self.config.workspace.files_dir(lease)).await;
        match outcome {
            Ok(files) => (end, files),
            Err(message) => (failed(message), Vec::new()),
        }
    }

    /// Sends the attempt's logs to the server (where `baton logs` reads
    /// them), then removes its files here.
    async fn upload_logs(&self, session: &Session, lease: &Lease) {
        let prefix = self.config.workspace.prefix(lease);
        for (stream, file) in [
            (LogStream::Stdout, baton_engine::logs::STDOUT_FILE),
            (LogStream::Stderr, baton_engine::logs::STDERR_FILE),
        ] {
            let path = baton_engine::logs::attempt_file(&prefix, file);
            let Ok(bytes) = tokio::fs::read(&path).await else {
                continue;
            };
            for chunk in bytes.chunks(LOG_CHUNK) {
                if let Err(error) = self
                    .client
                    .upload_log(session, &lease.lease_id, stream, chunk.to_vec())
                    .await
                {
                    tracing::warn!(
                        "baton worker: the logs of lease {} were not kept: {error}",
                        lease.lease_id
                    );
                    break;
                }
            }
        }
        for file in [
            baton_engine::logs::STDOUT_FILE,
            baton_engine::logs::STDERR_FILE,
            baton_engine::logs::OUTPUT_FILE,
            "task.json",
        ] {
            let _ = tokio::fs::remove_file(baton_engine::logs::attempt_file(&prefix, file)).await;
        }
    }

    /// Stops every running lease.
    fn stop_all(&self) {
        for running in self.lock().running.values_mut() {
            if let Some(stop) = running.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

fn failed(message: String) -> End {
    End::Failed {
        failure: RemoteFailure {
            kind: RemoteFailureKind::Error,
            message,
            code: None,
            signal: None,
        },
    }
}

/// Log bytes per upload, under the server's body limit.
const LOG_CHUNK: usize = 1024 * 1024;

impl Worker {
    /// Waits before trying the server again, saying so once per outage
    /// however many loops wait.
    async fn backoff(&self, tries: &mut usize, error: &CallError) {
        if !self.away.swap(true, Ordering::Relaxed) {
            tracing::warn!("baton worker: {error}; retrying");
        }
        let wait = Duration::from_millis(BACKOFF[(*tries).min(BACKOFF.len() - 1)]);
        *tries += 1;
        tokio::time::sleep(wait).await;
    }

    /// The server answered: an outage, if there was one, is over.
    fn reached(&self, tries: &mut usize) {
        *tries = 0;
        if self.away.swap(false, Ordering::Relaxed) {
            tracing::info!("baton worker: the server answers again");
        }
    }
}
