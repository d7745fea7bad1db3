//! [`Engine`]: the handler registry, the run ownership of this process,
//! and starting, resuming, rebuilding and steering runs. It is the top of
//! the crate: it makes each run's [`Host`] and is the [`Children`] through
//! which runs start runs of their own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Once};

use async_trait::async_trait;
use baton_core::run::{Chain, Control, Millis, RunState, run_id_problem};
use baton_core::{Code, Duration, Path, Problem, Valid, Workflow};
use baton_store::{Fence, MemoryStore, Owner, Presence, RunRecord, Store};
use serde_json::{Map, Value};
use tokio::sync::{OnceCell, Semaphore, mpsc, watch};

use crate::breaker::Breakers;
use crate::children::Children;
use crate::clock::Clock;
use crate::config::{EngineConfig, RunOptions, setup_of};
use crate::error::Error;
use crate::executor::{
    Agents, ChildRuns, Executors, Handler, Http, InProcess, Mcp, Processes, Remote,
};
use crate::handle::{Canceller, Recovery, RunHandle};
use crate::pin::{Place, pin};
use crate::remote::Dispatcher;
use crate::report::RunReport;
use crate::run::{Driven, Family, Host, Run, Start, drive, reusable};
use crate::views::{View, Views, rebuild};
use crate::{runnable, uses};

/// Runs workflows. Cheap to clone; clones share handlers, store, the
/// global concurrency limit and the engine's ownership of its runs.
#[derive(Clone)]
pub struct Engine {
    pub(crate) config: Arc<EngineConfig>,
    in_process: InProcess,
    http: Http,
    /// The agent capabilities this engine serves itself, with their calls.
    agents: Agents,
    /// Queues routed attempts for remote workers.
    dispatcher: Arc<Dispatcher>,
    pub(crate) store: Arc<dyn Store>,
    slots: Arc<Semaphore>,
    /// The runs this engine drives, each woken to read its control
    /// requests when the store's change feed says one was left.
    pub(crate) driven: Arc<Driven>,
    /// Who this engine is to the store, while any clone of it lives.
    pub(crate) presence: Arc<Presence>,
    /// Runs as readers see them, kept current from the change feed.
    views: Arc<Views>,
    /// Set once the store has heard of this engine and its lease is being
    /// renewed; the clock leases are stamped by.
    announced: Arc<OnceCell<Clock>>,
}

impl Engine {
    /// An engine with an in-memory store.
    pub fn new(config: EngineConfig) -> Engine {
        Engine::with_store(config, Arc::new(MemoryStore::default()))
    }

    pub fn with_store(mut config: EngineConfig, store: Arc<dyn Store>) -> Engine {
        install_crypto_provider();
        // Tasks change directory; the paths handed to them must not depend
        // on where they are.
        for path in [&mut config.state_dir, &mut config.workdir] {
            if let Ok(absolute) = std::path::absolute(&*path) {
                *path = absolute;
            }
        }
        let client = crate::net_guard::client(config.allow_link_local);
        let breakers = Arc::new(Breakers::new(config.breaker));
        Engine {
            slots: Arc::new(Semaphore::new(
                config.max_concurrency.clamp(1, Semaphore::MAX_PERMITS),
            )),
            in_process: InProcess::default(),
            http: Http {
                client: client.clone(),
                breakers: Arc::clone(&breakers),
                max_output: config.max_output,
                allow_link_local: config.allow_link_local,
            },
            agents: Agents::new(
                client,
                &config.agents,
                breakers,
                (config.max_output, config.allow_link_local),
            ),
            dispatcher: Dispatcher::new(
                config.workers.clone(),
                crate::artifacts::Cas::new(&config.state_dir),
            ),
            views: Arc::new(Views::new(Arc::clone(&store), config.state_dir.clone())),
            config: Arc::new(config),
            store,
            driven: Arc::default(),
            presence: Arc::new(Presence::new(Owner::this_process())),
            announced: Arc::default(),
        }
    }

    /// The clock leases are stamped by, once the store knows this engine
    /// and a task renews its lease for as long as the engine lives. The
    /// same task wakes driven runs when their control requests arrive.
    pub(crate) async fn announce(&self) -> Result<Clock, Error> {
        let clock = self
            .announced
            .get_or_try_init(|| async {
                let clock = self
                    .config
                    .start_time
                    .map_or_else(Clock::system, Clock::starting_at);
                let owner = self.presence.owner();
                self.store
                    .heartbeat(owner, clock.now(), self.config.lease)
                    .await?;
                tokio::spawn(renew(
                    Arc::downgrade(&self.presence),
                    Arc::clone(&self.store),
                    clock,
                    self.config.lease,
                ));
                tokio::spawn(wake_on_requests(
                    Arc::downgrade(&self.driven),
                    self.store.changes(),
                ));
                Ok::<Clock, Error>(clock)
            })
            .await?;
        Ok(*clock)
    }

    /// Takes `run_id` over for this engine: refused while another live
    /// process drives it; a dead owner on this machine is taken from at
    /// once, one elsewhere once its lease has run out.
    pub(crate) async fn claim(&self, run_id: &str) -> Result<Fence, Error> {
        let clock = self.announce().await?;
        let owner = &self.presence.owner().id;
        let steal = match self.store.summary(run_id).await?.driver {
            Some(driver) if driver.owner.id != *owner && driver.owner.is_gone() => {
                Some(driver.fence)
            }
            _ => None,
        };
        Ok(self.store.claim(run_id, owner, clock.now(), steal).await?)
    }

    /// Asks `run` to pause, resume, take an approval's decision or cancel:
    /// checked against the run's recorded state (so a wrong task or choice
    /// is refused at once), then stored for whichever process drives it.
    /// The run checks it again when it reads it, as it may have moved on.
    pub async fn control(&self, run: &str, control: Control) -> Result<(), Error> {
        let view = self.views.view(run).await?;
        // Requests left and not read yet come first: this one is checked
        // against the state they will leave (a pause asked for just before
        // makes an unpause valid), so requests apply in the order asked.
        let pending = self.store.controls(run, view.state.controls_read()).await?;
        if pending.is_empty() {
            view.state.control(&control, Millis(0))?;
        } else {
            let state = Arc::clone(&view.state);
            let checked = control.clone();
            tokio::task::spawn_blocking(move || {
                let mut state = Arc::unwrap_or_clone(state);
                for earlier in &pending {
                    for event in state.control(earlier, Millis(0)).unwrap_or_default() {
                        // What cannot follow changes nothing, as when read.
                        let _ = state.apply(&event);
                    }
                }
                state.control(&checked, Millis(0)).map(drop)
            })
            .await
            .map_err(|error| Error::Aborted(error.to_string()))??;
        }
        self.store.request(run, &control).await?;
        Ok(())
    }

    /// What one run's loop works with.
    fn host(&self) -> Host {
        let children: Arc<dyn Children> = Arc::new(self.clone());
        Host {
            config: Arc::clone(&self.config),
            store: Arc::clone(&self.store),
            slots: Arc::clone(&self.slots),
            executors: Arc::new(Executors {
                processes: Processes {
                    max_output: self.config.max_output,
                },
                http: self.http.clone(),
                in_process: self.in_process.clone(),
                child_runs: ChildRuns {
                    children: Arc::clone(&children),
                },
                agents: self.agents.clone(),
                mcp: Mcp,
                remote: Remote {
                    dispatcher: Arc::clone(&self.dispatcher),
                },
            }),
            children,
            driven: Arc::clone(&self.driven),
        }
    }

    /// What serves agent capabilities here, how each fares since this
    /// engine began, and its circuit breaker.
    pub fn agents(&self) -> Vec<crate::AgentStatus> {
        let mut agents = self.agents.registry();
        agents.extend(self.dispatcher.workers());
        agents
    }

    /// Serves agent capability `capability` by the chat endpoint
    /// `provider` from now on (until this process ends), as
    /// `[agents.CAPABILITY]` would; its entry in the registry.
    pub fn register_agent(
        &self,
        capability: &str,
        provider: crate::AgentProvider,
    ) -> Result<crate::AgentStatus, crate::EndpointError> {
        self.agents.endpoints().register(capability, provider)?;
        let id = format!("chat:{capability}");
        self.agents()
            .into_iter()
            .find(|agent| agent.id == id)
            .ok_or(crate::EndpointError::Unknown(capability.to_owned()))
    }

    /// Stops serving by the endpoint registered as `id` (`chat:CAPABILITY`).
    pub fn remove_agent(&self, id: &str) -> Result<(), crate::EndpointError> {
        match id.strip_prefix("chat:") {
            Some(capability) => self.agents.endpoints().remove(capability),
            None => Err(crate::EndpointError::Unknown(id.to_owned())),
        }
    }

    /// Asks each agent endpoint's health URL every `every`, for as long as
    /// the engine lives (`baton serve` does).
    pub fn watch_agent_health(&self, every: std::time::Duration) {
        let endpoints = Arc::downgrade(self.agents.endpoints());
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(endpoints) = endpoints.upgrade() else {
                    return;
                };
                endpoints
                    .check_health(every.min(std::time::Duration::from_secs(2)))
                    .await;
            }
        });
    }

    /// Starts leasing routed attempts to remote workers (a server that
    /// speaks the worker protocol calls it). When the store is shared by
    /// server replicas, so is the worker queue: once this process's lease
    /// is kept, its workers take what any replica's runs offer.
    pub fn serve_workers(&self) {
        let queue = self.store.work_queue();
        let shared = queue
            .clone()
            .map(|queue| (queue, self.presence.owner().id.clone()));
        self.dispatcher.serve(shared, self.config.state_dir.clone());
        if queue.is_some() {
            let engine = self.clone();
            tokio::spawn(async move {
                // A store that cannot be reached now is asked again, for a
                // while; meanwhile this replica's workers take only its own.
                for _ in 0..120 {
                    if let Ok(clock) = engine.announce().await {
                        engine.dispatcher.leased(clock);
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            });
        }
    }

    /// Where this engine's spans go, if anywhere.
    pub fn spans(&self) -> Option<&Arc<dyn crate::SpanSink>> {
        self.config.spans.as_ref()
    }

    /// The dispatcher that leases routed attempts to remote workers.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Makes `handler` the function behind tasks written `handler: NAME`.
    pub fn register(&self, name: impl Into<String>, handler: Handler) -> &Engine {
        self.in_process
            .handlers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.into(), handler);
        self
    }

    /// The report of a recorded run as far as its events go, without
    /// running anything (a run still in progress shows as running).
    pub async fn recorded(&self, run_id: &str) -> Result<RunReport, Error> {
        let report = self.view(run_id).await?.report().await?;
        Ok(Arc::unwrap_or_clone(report))
    }

    /// A recorded run as far as its events go: rebuilt the first time it is
    /// read, then brought up to date with only the events appended since.
    pub async fn view(&self, run_id: &str) -> Result<Arc<View>, Error> {
        self.views.view(run_id).await
    }

    /// A recorded run's state, rebuilt from its newest sound checkpoint and
    /// the events after it (or all its events), and how it was rebuilt.
    pub async fn rebuild(&self, run_id: &str) -> Result<(RunState, Recovery), Error> {
        rebuild(self.store.as_ref(), run_id).await
    }

    /// Finishes a run whose process died: tasks that had succeeded stay
    /// done; attempts that were in flight run again as attempt + 1. A run
    /// that had finished just reports. Refused while another live process
    /// drives the run.
    pub async fn resume(&self, run_id: &str, watch: bool) -> Result<RunHandle, Error> {
        self.resume_with(run_id, watch, false).await
    }

    async fn resume_with(
        &self,
        run_id: &str,
        watch: bool,
        compensate: bool,
    ) -> Result<RunHandle, Error> {
        self.refuse_when_draining()?;
        let fence = self.claim(run_id).await?;
        let record = self.store.run(run_id).await?;
        let (state, recovery) = self.rebuild(run_id).await?;
        let problems = self.unrunnable(state.valid().workflow());
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let chain = Chain::from_records(&state, &self.store.provenance(run_id).await?);
        let start = match recovery.events() {
            0 => Start::New,
            seq => Start::Resume { seq, compensate },
        };
        let reused = reusable(self.store.as_ref(), &state, record.reuse.as_ref()).await?;
        let run = Run {
            state,
            chain,
            start,
            reused,
            family: Family::of(&record),
            fence,
        };
        Ok(self.spawn(run, None, watch).with_recovery(recovery))
    }

    /// Runs `state` in the background, recording it first when `record`
    /// is given.
    fn spawn(&self, run: Run, record: Option<RunRecord>, watch: bool) -> RunHandle {
        let state = &run.state;
        let run_id = state.run_id().to_owned();
        let valid = state.shared_valid();
        let ended = state.final_count();
        let (cancel, cancelled) = watch::channel(false);
        let (events, receiver) = if watch {
            let (sender, receiver) = mpsc::channel(self.config.event_buffer.max(1));
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        let engine = self.clone();
        let join = tokio::spawn(async move {
            let mut run = run;
            if let Some(record) = record {
                run.fence = engine.create(&record).await?;
            }
            let host = engine.host();
            let state = drive(&host, run, events, cancelled).await?;
            Ok(RunReport::from_state(&state, &engine.config.state_dir))
        });
        RunHandle::new(run_id, valid, ended, receiver, Canceller::new(cancel), join)
    }

    /// Records a new run as this engine's.
    async fn create(&self, record: &RunRecord) -> Result<Fence, Error> {
        let clock = self.announce().await?;
        Ok(self
            .store
            .create_run(record, &self.presence.owner().id, clock.now())
            .await?)
    }

    /// The store runs are recorded in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Where run files live: logs, outputs, artifacts.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.config.state_dir
    }

    /// Who this engine is to the store.
    pub fn owner(&self) -> &Owner {
        self.presence.owner()
    }

    /// Where the artifact with `digest` is stored (it may have been
    /// deleted by retention since).
    pub fn artifact_file(&self, digest: &baton_core::run::Digest) -> PathBuf {
        crate::artifacts::Cas::new(&self.config.state_dir).object(digest)
    }

    /// Runs `workflow` to its end with `inputs`.
    pub async fn run(
        &self,
        workflow: Workflow,
        inputs: BTreeMap<String, Value>,
    ) -> Result<RunReport, Error> {
        let options = RunOptions {
            inputs,
            ..RunOptions::default()
        };
        self.start(workflow, options).await?.finish().await
    }

    /// Checks `workflow` and starts running it in the background.
    pub async fn start(&self, workflow: Workflow, options: RunOptions) -> Result<RunHandle, Error> {
        let valid = baton_core::check(workflow).map_err(Error::Invalid)?;
        self.start_valid(Arc::new(valid), options).await
    }

    /// Starts a workflow that has already been checked. The run is
    /// recorded in the background, before its first event.
    pub async fn start_valid(
        &self,
        valid: Arc<Valid>,
        options: RunOptions,
    ) -> Result<RunHandle, Error> {
        let watch = options.watch;
        let (run, record) = self.prepare(valid, options).await?;
        Ok(self.spawn(run, Some(record), watch))
    }

    /// [`Engine::start_valid`], answering once the run is recorded: a
    /// caller that then reads it finds it, and a taken run id is refused
    /// with [`baton_store::Error::RunExists`] before anything runs.
    pub async fn start_recorded(
        &self,
        valid: Arc<Valid>,
        options: RunOptions,
    ) -> Result<RunHandle, Error> {
        let watch = options.watch;
        let (mut run, record) = self.prepare(valid, options).await?;
        run.fence = self.create(&record).await?;
        Ok(self.spawn(run, None, watch))
    }

    /// Checks what the run needs of this engine and its inputs, and builds
    /// its record and first state.
    async fn prepare(
        &self,
        valid: Arc<Valid>,
        options: RunOptions,
    ) -> Result<(Run, RunRecord), Error> {
        self.refuse_when_draining()?;
        let valid = self.expand_templates(valid)?;
        let mut problems = self.unrunnable(valid.workflow());
        let mut subworkflows = options.subworkflows;
        let place = Place {
            dirs: &self.config.workflow_dirs,
            registry: self.store.as_ref(),
        };
        problems.extend(pin(&place, valid.workflow(), &mut subworkflows).await);
        let inputs = match baton_core::resolve_inputs(valid.workflow(), &options.inputs) {
            Ok(inputs) => inputs,
            Err(input_problems) => {
                problems.extend(input_problems);
                Map::new()
            }
        };
        if let Some(problem) = options.run_id.as_deref().and_then(run_id_problem) {
            problems.push(Problem::new(
                Code::InvalidValue,
                Path::root().key("run_id"),
                problem,
            ));
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let run_id = options
            .run_id
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let record = RunRecord {
            run_id: run_id.clone(),
            workflow: valid.shared_workflow(),
            inputs,
            concurrency: options.concurrency,
            timeout: options.timeout,
            on_failure: options.on_failure,
            reuse: options.reuse,
            served: options.served,
            workflow_version: options.workflow_version,
            parent: options.parent,
            subworkflows,
            labels: options.labels,
        };
        let state = RunState::new(valid, setup_of(&record));
        let chain = Chain::new(state.task_count());
        let reused = reusable(self.store.as_ref(), &state, record.reuse.as_ref()).await?;
        let run = Run {
            state,
            chain,
            start: Start::New,
            reused,
            family: Family::of(&record),
            fence: Fence(0),
        };
        Ok((run, record))
    }
}

/// Renews this engine's lease every third of its term for as long as the
/// engine lives. A renewal that fails is tried again at the next tick; if
/// the lease runs out meanwhile, another process may take the runs over,
/// and this one's writes to them are refused from then on.
async fn renew(
    presence: std::sync::Weak<Presence>,
    store: Arc<dyn Store>,
    clock: Clock,
    lease: Duration,
) {
    let every = (lease.as_std() / 3).max(std::time::Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(presence) = presence.upgrade() else {
            return;
        };
        let _ = store.heartbeat(presence.owner(), clock.now(), lease).await;
    }
}

/// Wakes each run this engine drives when a control request is left for
/// it, in this process or another; after missing changes (the feed went
/// ahead), wakes them all to look.
async fn wake_on_requests(
    driven: std::sync::Weak<Driven>,
    mut changes: tokio::sync::broadcast::Receiver<baton_store::Change>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let change = changes.recv().await;
        let Some(driven) = driven.upgrade() else {
            return;
        };
        match change {
            Ok(baton_store::Change::Requested { run }) => driven.wake(&run),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => driven.wake_all(),
            Err(RecvError::Closed) => return,
        }
    }
}

#[async_trait]
impl Children for Engine {
    async fn start(&self, workflow: Workflow, options: RunOptions) -> Result<RunHandle, Error> {
        Engine::start(self, workflow, options).await
    }

    async fn resume(&self, run: &str) -> Result<RunHandle, Error> {
        self.resume_with(run, false, false).await
    }

    async fn compensate(&self, run: &str) -> Result<RunHandle, Error> {
        self.resume_with(run, false, true).await
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

impl Engine {
    /// What in `workflow` this engine cannot run.
    fn unrunnable(&self, workflow: &Workflow) -> Vec<Problem> {
        let handlers = self
            .in_process
            .handlers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        runnable::problems(
            workflow,
            &handlers,
            |capability| self.agents.endpoints().serves(capability),
            self.dispatcher.is_served(),
        )
    }

    /// `valid` with its `uses` tasks replaced by their templates' tasks,
    /// checked again; `valid` itself when it has none.
    fn expand_templates(&self, valid: Arc<Valid>) -> Result<Arc<Valid>, Error> {
        if !uses::has_uses(valid.workflow()) {
            return Ok(valid);
        }
        uses::expand_templates(valid.workflow(), &self.config.template_dirs)
            .map(Arc::new)
            .map_err(Error::Invalid)
    }
}
/// An HTTP client builder for programs around the engine (the CLI talking
/// to a server), with the TLS provider in place.
pub fn http_client() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// reqwest is built without a default TLS provider (the default pulls
/// aws-lc-rs, which needs a C toolchain and CMake); ring is installed once.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
