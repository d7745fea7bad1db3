//! [`Engine`]: configuration, handler registry, and starting runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once, RwLock};

use baton_core::run::{Chain, Control, ControlError, Event, Millis, RunSetup, RunState};
use baton_core::spec::FailurePolicy;
use baton_core::{Duration, Problem, Valid, Workflow};
use baton_store::{Fence, MemoryStore, Owner, ParentTask, Presence, Reuse, RunRecord, Store};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use tokio::sync::{Notify, OnceCell, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::report::RunReport;
use crate::runner::{Handler, Runners};
use crate::{runnable, shell, subworkflow, uses};

/// How an engine runs tasks; [`EngineConfig::default`] suits a laptop.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where run files (logs, outputs) go.
    pub state_dir: PathBuf,
    /// Where processes start; a task's `cwd` is relative to it.
    pub workdir: PathBuf,
    /// Task attempts in flight across every run of this engine.
    pub max_concurrency: usize,
    /// Between SIGTERM and SIGKILL when a task is killed without a timeout
    /// of its own to say.
    pub kill_grace: Duration,
    /// Start the clock here instead of at the system time (tests, replays).
    pub start_time: Option<Millis>,
    /// Commands `decide` hands out per round.
    pub batch: usize,
    /// A snapshot of a run's state is stored every this many events (or
    /// every twice as many events as the run has tasks, if more), so a
    /// resume replays at most that many.
    pub checkpoint_every: u64,
    /// How often a run asks its store whether another process asked to
    /// cancel it.
    pub poll_interval: Duration,
    /// Bytes of JSON above which a task's output is stored as an artifact
    /// and replaced by a reference to it (`output_artifact`).
    pub max_inline_output: usize,
    /// Where `workflow: name@version` tasks look for their workflow before
    /// the store's registry (see [`crate::workflow_dirs`]).
    pub workflow_dirs: Vec<PathBuf>,
    /// Where `uses: name@version` tasks find their template.
    pub template_dirs: Vec<PathBuf>,
    /// How long this engine's hold on the runs it drives lasts unless
    /// renewed (it renews every third of it): after a crash, how long
    /// until another process may take them over. On this machine a dead
    /// owner's runs are taken at once.
    pub lease: Duration,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            state_dir: PathBuf::from(".baton"),
            workdir: PathBuf::from("."),
            max_concurrency: 1024,
            kill_grace: Duration::from_secs(10),
            start_time: None,
            batch: 4096,
            checkpoint_every: 100_000,
            poll_interval: Duration::from_millis(250),
            max_inline_output: 1024 * 1024,
            workflow_dirs: Vec::new(),
            template_dirs: Vec::new(),
            lease: Duration::from_secs(4),
        }
    }
}

/// What can stop a run from starting or finishing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The workflow, its inputs, or what it asks of this engine is wrong;
    /// nothing ran.
    #[error("the workflow cannot run: {}", summary(.0))]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] baton_store::Error),
    #[error("the run's task stopped: {0}")]
    Aborted(String),
    /// `baton rerun` asked to reuse a result its run does not have.
    #[error("task `{task}` did not succeed in run `{run}`: it has no result to reuse")]
    NotReusable { run: String, task: String },
    #[error("run `{run}` has no task `{task}`")]
    UnknownTask { run: String, task: String },
    /// Run files (logs, artifacts) could not be read or removed.
    #[error("{0}")]
    Files(String),
    /// A control request that does not apply to the run as it stands.
    #[error(transparent)]
    Control(#[from] ControlError),
}

fn summary(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{}: {}", problem.path, problem.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Per-run choices.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Input values; text is read as the declared type (`-i n=3`).
    pub inputs: BTreeMap<String, Value>,
    /// Overrides the workflow's `concurrency`.
    pub concurrency: Option<u32>,
    /// Overrides the workflow's `timeout`.
    pub timeout: Option<Duration>,
    /// Overrides the workflow's `on_failure`.
    pub on_failure: Option<FailurePolicy>,
    /// A run id to use instead of a fresh UUIDv7.
    pub run_id: Option<String>,
    /// Stream events through [`RunHandle::events`].
    pub watch: bool,
    /// Take these tasks' results from an earlier run instead of running
    /// them (`baton rerun`).
    pub reuse: Option<Reuse>,
    /// Started through the API (`baton serve` resumes such runs when it
    /// starts again after dying).
    pub served: bool,
    /// The registered version of the workflow the run was started from.
    pub workflow_version: Option<u32>,
    /// For a sub-workflow's run: the task attempt it belongs to.
    pub parent: Option<ParentTask>,
    /// Workflows already found for `workflow: name@version` tasks; the
    /// others are looked up when the run starts.
    pub subworkflows: BTreeMap<String, Arc<Workflow>>,
}

/// One event of a run, numbered from 0 in log order.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEvent {
    pub seq: u64,
    pub event: Event,
}

impl RunEvent {
    /// The event as people and scripts read it (`--json` lines, the API's
    /// event streams): tagged with its `type` and `seq`, tasks named by id
    /// instead of index.
    pub fn json(&self, valid: &Valid) -> Value {
        let tasks = &valid.workflow().tasks;
        let mut line = serde_json::to_value(&self.event).unwrap_or_default();
        line["seq"] = Value::from(self.seq);
        if let Some(task) = self.event.task() {
            line["task"] = Value::from(tasks[task as usize].id.as_str());
        }
        if let Some(need) = line
            .get("reason")
            .and_then(|reason| reason.get("need"))
            .and_then(Value::as_u64)
        {
            line["reason"]["need"] = Value::from(tasks[need as usize].id.as_str());
        }
        line
    }
}

/// Runs workflows. Cheap to clone; clones share handlers, store, the
/// global concurrency limit and the engine's ownership of its runs.
#[derive(Clone)]
pub struct Engine {
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) runners: Arc<Runners>,
    pub(crate) handlers: Arc<RwLock<crate::runner::Handlers>>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) slots: Arc<Semaphore>,
    /// The runs this engine drives, each woken to read its control
    /// requests when the store's change feed says one was left.
    pub(crate) driven: Arc<Mutex<FxHashMap<String, Arc<Notify>>>>,
    /// Who this engine is to the store, while any clone of it lives.
    pub(crate) presence: Arc<Presence>,
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
        let handlers = Arc::new(RwLock::new(crate::runner::Handlers::new()));
        Engine {
            slots: Arc::new(Semaphore::new(
                config.max_concurrency.clamp(1, Semaphore::MAX_PERMITS),
            )),
            runners: Arc::new(Runners {
                handlers: Arc::clone(&handlers),
                http: reqwest::Client::new(),
            }),
            handlers,
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
        let (state, _) = self.rebuild(run).await?;
        state.control(&control, Millis(0))?;
        self.store.request(run, &control).await?;
        Ok(())
    }

    /// Registers a run this engine drives, so its controls wake it.
    pub(crate) fn drive_controls(&self, run: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.driven_lock()
            .insert(run.to_owned(), Arc::clone(&notify));
        notify
    }

    pub(crate) fn forget_controls(&self, run: &str) {
        self.driven_lock().remove(run);
    }

    fn driven_lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<String, Arc<Notify>>> {
        self.driven
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `handler` the function behind tasks written `handler: NAME`.
    pub fn register(&self, name: impl Into<String>, handler: Handler) -> &Engine {
        self.handlers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.into(), handler);
        self
    }

    /// The report of a recorded run, rebuilt from its record and events
    /// without running anything (a run still in progress shows as running).
    pub async fn recorded(&self, run_id: &str) -> Result<RunReport, Error> {
        let (state, _) = self.rebuild(run_id).await?;
        Ok(RunReport::from_state(&state, &self.config.state_dir))
    }

    /// A recorded run's state, rebuilt from its newest sound checkpoint and
    /// the events after it (or all its events), and how it was rebuilt.
    pub async fn rebuild(&self, run_id: &str) -> Result<(RunState, Recovery), Error> {
        self.rebuild_recorded(run_id)
            .await
            .map(|(state, recovery, _)| (state, recovery))
    }

    /// [`Engine::rebuild`], with what the run's record says to reuse.
    async fn rebuild_recorded(
        &self,
        run_id: &str,
    ) -> Result<(RunState, Recovery, RunRecord), Error> {
        let record = self.store.run(run_id).await?;
        let workflow = Arc::unwrap_or_clone(record.workflow.clone());
        let valid = Arc::new(baton_core::check(workflow).map_err(Error::Invalid)?);
        let mut recovery = Recovery::default();
        let mut restored = None;
        for info in self.store.checkpoints(run_id).await? {
            let opened = match self.store.checkpoint(run_id, info.events).await {
                Ok(sealed) => {
                    sealed
                        .open()
                        .map_err(|error| error.to_string())
                        .and_then(|snapshot| {
                            RunState::restore(Arc::clone(&valid), setup_of(&record), snapshot)
                                .map_err(|error| error.to_string())
                        })
                }
                Err(error) => Err(error.to_string()),
            };
            match opened {
                Ok(state) => {
                    restored = Some((state, info.events));
                    break;
                }
                Err(error) => recovery
                    .rejected
                    .push(format!("the checkpoint at event {}: {error}", info.events)),
            }
        }
        let (mut state, from) =
            restored.unwrap_or_else(|| (RunState::new(valid, setup_of(&record)), 0));
        let events = self.store.events_from(run_id, from).await?;
        for event in &events {
            state.apply(event);
        }
        recovery.checkpoint = (from > 0).then_some(from);
        recovery.replayed = events.len() as u64;
        Ok((state, recovery, record))
    }

    /// Finishes a run whose process died: tasks that had succeeded stay
    /// done; attempts that were in flight run again as attempt + 1. A run
    /// that had finished just reports. Refused while another live process
    /// drives the run.
    pub async fn resume(&self, run_id: &str, watch: bool) -> Result<RunHandle, Error> {
        self.resume_with(run_id, watch, false).await
    }

    /// Undoes a run that succeeded, as its parent's compensation asks: its
    /// succeeded tasks are compensated, the last to finish first, and it
    /// ends `compensated` (or `compensation_failed`). A run already
    /// compensating goes on; one that did not succeed just reports.
    pub(crate) async fn compensate(&self, run_id: &str) -> Result<RunHandle, Error> {
        self.resume_with(run_id, false, true).await
    }

    async fn resume_with(
        &self,
        run_id: &str,
        watch: bool,
        compensate: bool,
    ) -> Result<RunHandle, Error> {
        let fence = self.claim(run_id).await?;
        let (state, recovery, record) = self.rebuild_recorded(run_id).await?;
        let problems = self.unrunnable(state.valid().workflow());
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let chain = Chain::from_records(&state, &self.store.provenance(run_id).await?);
        let start = match recovery.events() {
            0 => shell::Start::New,
            seq => shell::Start::Resume { seq, compensate },
        };
        let reused = shell::reusable(self, &state, record.reuse.as_ref()).await?;
        let run = shell::Run {
            state,
            chain,
            start,
            reused,
            family: shell::Family::of(&record),
            fence,
        };
        let mut handle = self.spawn(run, None, watch);
        handle.recovery = Some(recovery);
        Ok(handle)
    }

    /// Runs `state` in the background, recording it first when `record`
    /// is given.
    fn spawn(&self, run: shell::Run, record: Option<RunRecord>, watch: bool) -> RunHandle {
        let state = &run.state;
        let run_id = state.run_id().to_owned();
        let valid = state.shared_valid();
        let ended = state.final_count();
        let (cancel, cancelled) = watch::channel(false);
        let (events, receiver) = if watch {
            let (sender, receiver) = mpsc::unbounded_channel();
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
            let state = shell::drive(&engine, run, events, cancelled).await?;
            Ok(RunReport::from_state(&state, &engine.config.state_dir))
        });
        RunHandle {
            run_id,
            valid,
            ended,
            events: receiver,
            cancel: Canceller(Arc::new(cancel)),
            join,
            recovery: None,
        }
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
    ) -> Result<(shell::Run, RunRecord), Error> {
        let valid = self.expand_templates(valid)?;
        let mut problems = self.unrunnable(valid.workflow());
        let mut subworkflows = options.subworkflows;
        problems.extend(subworkflow::pin(self, valid.workflow(), &mut subworkflows).await);
        let inputs = match baton_core::resolve_inputs(valid.workflow(), &options.inputs) {
            Ok(inputs) => inputs,
            Err(input_problems) => {
                problems.extend(input_problems);
                Map::new()
            }
        };
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
        };
        let state = RunState::new(valid, setup_of(&record));
        let chain = Chain::new(state.task_count());
        let reused = shell::reusable(self, &state, record.reuse.as_ref()).await?;
        let run = shell::Run {
            state,
            chain,
            start: shell::Start::New,
            reused,
            family: shell::Family::of(&record),
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
    driven: std::sync::Weak<Mutex<FxHashMap<String, Arc<Notify>>>>,
    mut changes: tokio::sync::broadcast::Receiver<baton_store::Change>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let change = changes.recv().await;
        let Some(driven) = driven.upgrade() else {
            return;
        };
        let driven = driven
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match change {
            Ok(baton_store::Change::Requested { run }) => {
                if let Some(notify) = driven.get(&*run) {
                    notify.notify_one();
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => driven.values().for_each(|notify| notify.notify_one()),
            Err(RecvError::Closed) => return,
        }
    }
}

impl Engine {
    /// What in `workflow` this engine cannot run.
    fn unrunnable(&self, workflow: &Workflow) -> Vec<Problem> {
        let handlers = self
            .handlers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        runnable::problems(workflow, &handlers)
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

/// How the state of a recorded run is set up: its record, read back.
pub(crate) fn setup_of(record: &RunRecord) -> RunSetup {
    RunSetup {
        run_id: record.run_id.clone(),
        inputs: record.inputs.clone(),
        concurrency: record.concurrency,
        timeout: record.timeout,
        on_failure: record.on_failure,
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

/// A run in progress.
pub struct RunHandle {
    run_id: String,
    valid: Arc<Valid>,
    ended: usize,
    events: Option<mpsc::UnboundedReceiver<RunEvent>>,
    cancel: Canceller,
    join: JoinHandle<Result<RunReport, Error>>,
    recovery: Option<Recovery>,
}

/// How a resumed run's state was rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The event the checkpoint it started from was taken at, if any.
    pub checkpoint: Option<u64>,
    /// Events applied after the checkpoint (or from the start).
    pub replayed: u64,
    /// Checkpoints that were skipped, newest first, and why.
    pub rejected: Vec<String>,
}

impl Recovery {
    /// Events the rebuilt state has folded.
    pub fn events(&self) -> u64 {
        self.checkpoint.unwrap_or(0) + self.replayed
    }
}

impl RunHandle {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The checked workflow: events name tasks by their index in it.
    pub fn valid(&self) -> &Arc<Valid> {
        &self.valid
    }

    /// Tasks that had already ended when this handle started the run
    /// (non-zero for a resumed run).
    pub fn ended(&self) -> usize {
        self.ended
    }

    /// The run's events as they are persisted, when started with
    /// [`RunOptions::watch`]; the stream ends with the run.
    pub fn events(&mut self) -> Option<&mut mpsc::UnboundedReceiver<RunEvent>> {
        self.events.as_mut()
    }

    /// How the state of a resumed run was rebuilt.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// A handle that cancels the run from anywhere (a signal handler).
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// Waits for the run to end.
    pub async fn finish(self) -> Result<RunReport, Error> {
        self.join
            .await
            .map_err(|error| Error::Aborted(error.to_string()))?
    }
}

/// Cancels one run: running tasks get SIGTERM (SIGKILL after the grace),
/// waiting ones are cancelled, and the run ends `cancelled`.
#[derive(Clone, Debug)]
pub struct Canceller(Arc<watch::Sender<bool>>);

impl Canceller {
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}
