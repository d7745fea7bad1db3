//! The imperative shell around [`RunState`]: the one loop that turns what
//! happens (completions, timers, cancellation) into events, persists them,
//! applies them, asks the state what to do, and does it.
//!
//! Write-ahead: the event of every command (a task started, a task skipped)
//! is persisted before the command is acted on, so after a crash the log
//! never shows less than what happened. Events are persisted in batches: all
//! completions that arrived together go in one append.

use std::sync::Arc;

use baton_core::run::{
    Artifact, Budget, Chain, ChildRun, Command, Digest, Event, Failure, FailureKind, Iteration,
    Millis, Reduction, RunState, TaskStatus, Work,
};
use baton_store::{ArtifactRole, Batch, Fence, ParentTask, Reuse, Store};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::artifacts::{ArtifactError, Cas};
use crate::clock::Clock;
use crate::engine::{Engine, Error, RunEvent};
use crate::hooks::Hooks;
use crate::leftovers;
use crate::logs::{attempt_dir, compensation_dir};
use crate::record::Recorder;
use crate::runner::{Attempt, CopyJob, Finished, Outcome, Runners, TaskContext};
use crate::spawn::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_SPAWN, Spawner};
use crate::subworkflow::{Child, Pinned};
use crate::telemetry::Observer;

/// A runner's report, tagged with what it ran.
struct Done {
    task: u32,
    attempt: u32,
    ran: Ran,
    outcome: Outcome,
    files: Files,
}

/// What a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ran {
    /// The attempt: its end holds the task's global slot.
    Attempt,
    Compensation,
    /// One item (copy) of the attempt succeeded; the attempt goes on.
    Copy(u32),
}

/// What an attempt consumed, produced or reused besides its outcome.
#[derive(Default)]
struct Files {
    consumed: Vec<Artifact>,
    produced: Vec<Artifact>,
    /// The run whose result it took instead of running.
    reused_from: Option<String>,
}

/// A result an attempt can take instead of running.
#[derive(Clone, Debug)]
pub(crate) struct Reusable {
    run: String,
    output: Option<Value>,
    artifacts: Vec<Artifact>,
}

/// Per task, the result `baton rerun` takes from the earlier run.
/// What a rerun takes from its earlier run, and what it must run afresh.
#[derive(Default)]
pub(crate) struct Reused {
    results: FxHashMap<u32, Reusable>,
    fresh: FxHashSet<u32>,
}

/// What [`drive`] starts from.
pub(crate) struct Run {
    pub(crate) state: RunState,
    pub(crate) chain: Chain,
    pub(crate) start: Start,
    pub(crate) reused: Reused,
    pub(crate) family: Family,
    /// The fence this engine holds the run by: every write carries it.
    pub(crate) fence: Fence,
}

/// Where a run sits among sub-workflows and spawned tasks: what its
/// `workflow:` tasks and spawning tasks need.
pub(crate) struct Family {
    /// How deep it is nested: 0 for a run started on its own.
    depth: u32,
    /// How many spawns deep its tasks are.
    spawn_depth: u32,
    max_spawn: u32,
    max_spawn_depth: u32,
    pinned: Arc<Pinned>,
}

impl Family {
    pub(crate) fn of(record: &baton_store::RunRecord) -> Family {
        Family {
            depth: record.parent.as_ref().map_or(0, |parent| parent.depth),
            spawn_depth: record
                .parent
                .as_ref()
                .map_or(0, |parent| parent.spawn_depth),
            max_spawn: record.workflow.max_spawn.unwrap_or(DEFAULT_MAX_SPAWN),
            max_spawn_depth: record.workflow.max_spawn_depth.unwrap_or(DEFAULT_MAX_DEPTH),
            pinned: Arc::new(record.subworkflows.clone()),
        }
    }
}

/// Work whose output is the task's own, which may ask for tasks.
fn can_spawn(work: &Work) -> bool {
    matches!(
        work,
        Work::Shell(_) | Work::Command(_) | Work::Http(_) | Work::Handler(_)
    )
}

/// A `workflow:` task gives its global slot back while its child runs:
/// the child's tasks take slots of their own, and a parent holding one
/// could starve them.
fn holds_slot(state: &RunState, task: u32) -> bool {
    !matches!(state.task(task).kind, baton_core::TaskKind::Workflow(_))
}

/// Loads the results `reuse` names from its run; each must have succeeded.
pub(crate) async fn reusable(
    engine: &Engine,
    state: &RunState,
    reuse: Option<&Reuse>,
) -> Result<Reused, Error> {
    let Some(reuse) = reuse else {
        return Ok(Reused::default());
    };
    let store = &engine.store;
    let source = &reuse.run_id;
    let rows = store.tasks(source).await?;
    let mut outputs: FxHashMap<u32, Value> = store.outputs(source).await?.into_iter().collect();
    let artifacts = store.artifacts(source).await?;
    let mut reused = Reused::default();
    for id in &reuse.tasks {
        let not_reusable = || Error::NotReusable {
            run: source.clone(),
            task: id.clone(),
        };
        let row = rows
            .iter()
            .find(|row| row.id == *id && row.status == TaskStatus::Succeeded)
            .ok_or_else(not_reusable)?;
        let task = state.task_index(id).ok_or_else(not_reusable)?;
        reused.results.insert(
            task,
            Reusable {
                run: source.clone(),
                output: outputs.remove(&row.task),
                artifacts: artifacts
                    .iter()
                    .filter(|stored| {
                        stored.task == row.task
                            && stored.attempt == row.attempts
                            && stored.role == ArtifactRole::Produced
                    })
                    .map(|stored| stored.artifact.clone())
                    .collect(),
            },
        );
    }
    reused.fresh = reuse
        .fresh
        .iter()
        .filter_map(|id| state.task_index(id))
        .collect();
    Ok(reused)
}

/// How a run comes to the loop.
pub(crate) enum Start {
    New,
    /// Replayed from `seq` recorded events; what was in flight was lost.
    Resume {
        seq: u64,
        /// Its parent is compensating: undo the run if it succeeded.
        compensate: bool,
    },
}

/// Drives `state` to the end of its run.
pub(crate) async fn drive(
    engine: &Engine,
    run: Run,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    mut cancelled: watch::Receiver<bool>,
) -> Result<RunState, Error> {
    let Run {
        mut state,
        chain,
        start,
        reused,
        family,
        fence,
    } = run;
    let cas = Cas::new(&engine.config.state_dir);
    let clock = engine
        .config
        .start_time
        .map_or_else(Clock::system, Clock::starting_at);
    let (done_sender, mut done) = mpsc::unbounded_channel::<Done>();
    // Attempts in flight, with the sender that kills them (taken once sent);
    // each holds one global slot until its completion arrives.
    let mut kills: FxHashMap<u32, Option<oneshot::Sender<()>>> = FxHashMap::default();
    let at = clock.now();
    let mut lost_attempts = Vec::new();
    let (mut pending, mut seq) = match start {
        Start::New => (vec![Event::RunStarted { at }], 0),
        Start::Resume { seq, compensate } => {
            let lost = state.in_flight();
            lost_attempts.clone_from(&lost);
            let keys: Vec<String> = lost
                .iter()
                .map(|&(task, attempt)| idempotency_key(&state, task, attempt))
                .collect();
            leftovers::stop(&keys, engine.config.kill_grace.as_std()).await;
            let lost =
                lost.into_iter()
                    .map(|(task, attempt)| Event::AttemptLost { at, task, attempt });
            let undo = (compensate && state.run_status() == baton_core::run::RunStatus::Succeeded)
                .then_some(Event::CompensationRequested { at });
            (lost.chain(undo).collect(), seq)
        }
    };
    let mut commands = Vec::new();
    let mut launches: Vec<(u32, u32)> = Vec::new();
    let mut compensations: Vec<u32> = Vec::new();
    let mut cancel_recorded = false;
    let mut won = 0usize;
    let batch = engine.config.batch.max(1);
    let mut recorder = Recorder::new(chain, state.task_count(), engine.store.keeps_read_models());
    // A snapshot costs time in proportion to the tasks; taking one every
    // twice as many events as tasks keeps that cost per event constant.
    let every = engine
        .config
        .checkpoint_every
        .max(2 * state.task_count() as u64)
        .max(1);
    let controls = Controls::new(engine, &state);
    // Requests left before this loop began (or while it was away) are read
    // at once; later ones wake it through the store's change feed.
    controls.wake.notify_one();
    let mut observer = Observer::default();
    let mut hooks = Hooks::new(&state);
    // Events of `pending` already applied to `state` (inline completions,
    // applied early so one decision sees them), not yet persisted.
    let mut applied = 0;
    loop {
        if !pending.is_empty() {
            for event in &pending[applied..] {
                recorder.apply(&mut state, event);
            }
            applied = 0;
            recorder.seal(&state);
            let write = Batch {
                events: &pending,
                tasks: &recorder.tasks,
                attempts: &recorder.attempts,
                artifacts: &recorder.artifacts,
            };
            let append = std::time::Instant::now();
            if let Err(error) = engine.store.write(state.run_id(), seq, fence, write).await {
                // Another process took the run over (or the store refused):
                // this one stops its attempts and writes nothing more.
                for kill in kills.values_mut().filter_map(Option::take) {
                    let _ = kill.send(());
                }
                return Err(error.into());
            }
            observer.batch(&state, &pending, append.elapsed());
            hooks.fire(engine, &state, &pending, seq);
            recorder.clear();
            let before = seq;
            for event in pending.drain(..) {
                if let Some(events) = &events {
                    let _ = events.send(RunEvent { seq, event });
                }
                seq += 1;
            }
            if engine.store.keeps_read_models()
                && seq / every > before / every
                && !state.is_finished()
            {
                let sealed = state.snapshot(seq).seal();
                engine
                    .store
                    .put_checkpoint(state.run_id(), fence, &sealed)
                    .await?;
            }
        }
        let mut finished_inline = 0;
        for (task, attempt) in launches.drain(..) {
            let at = clock.now();
            let launcher = Launcher {
                engine,
                cas: &cas,
                state: &state,
                chain: &recorder.chain,
                reused: &reused,
                family: &family,
                lost: &lost_attempts,
                done: &done_sender,
            };
            if let Some(event) = launcher.launch(task, attempt, &mut kills, at) {
                pending.push(event);
                finished_inline += 1;
            } else if !holds_slot(&state, task) {
                finished_inline += 1;
            }
        }
        engine.slots.add_permits(finished_inline);
        for task in compensations.drain(..) {
            launch_compensation(engine, &state, task, &done_sender);
        }
        // What finished inline is applied now, so the decision below sees it
        // and its events share one append with the completions: a wave of
        // no-op tasks costs one commit, not two. Nothing is acted on before
        // that append.
        for event in &pending[applied..] {
            recorder.apply(&mut state, event);
        }
        applied = pending.len();
        if state.is_finished() {
            if pending.is_empty() {
                break;
            }
            continue;
        }

        // A permit won while starved is kept: handing it back would pass it
        // to the next waiter and two starved runs would trade it forever.
        let kept = std::mem::take(&mut won);
        let slots = kept + take_slots(engine, batch.saturating_sub(kept));
        commands.clear();
        let now = clock.now();
        state.decide(now, Budget { slots, batch }, &mut commands);
        let mut wake = None;
        for command in commands.drain(..) {
            if let Some(event) = command.event(now) {
                pending.push(event);
            }
            match command {
                Command::Dispatch { task, attempt } => launches.push((task, attempt)),
                Command::Compensate { task } => compensations.push(task),
                Command::Kill { task } => {
                    if let Some(kill) = kills.get_mut(&task).and_then(Option::take) {
                        let _ = kill.send(());
                    }
                }
                Command::WakeAt(at) => wake = Some(at),
                _ => {}
            }
        }
        engine.slots.add_permits(slots - launches.len());
        if !pending.is_empty() {
            continue;
        }

        let starved = slots == 0 && state.has_ready();
        tokio::select! {
            Some(first) = done.recv() => {
                let mut next = Some(first);
                while let Some(report) = next {
                    let at = clock.now();
                    if report.ran == Ran::Attempt
                        && kills.remove(&report.task).is_some()
                        && holds_slot(&state, report.task)
                    {
                        engine.slots.add_permits(1);
                    }
                    completion_events(report, at, &state, &mut pending);
                    next = if pending.len() < batch { done.try_recv().ok() } else { None };
                }
            }
            () = sleep_until(&clock, wake) => {}
            Ok(()) = cancelled.changed(), if !cancel_recorded => {
                if *cancelled.borrow() {
                    cancel_recorded = true;
                    pending.push(Event::CancelRequested { at: clock.now() });
                }
            }
            Ok(permit) = engine.slots.acquire(), if starved => {
                permit.forget();
                won = 1;
            }
            // A request left in the store by any process (`baton cancel`,
            // `baton approve`, the API) wakes the loop through the change feed.
            () = controls.wake.notified() => {
                controls.read(&mut state, &mut recorder, clock.now(), &mut pending).await;
                applied = pending.len();
            }
        }
    }
    // Attempts the end of the run stopped (a cancel, fail-fast) report once
    // their processes are reaped: the run ends after them, leaving nothing
    // of its own running. Without the loop's sender, the channel closes
    // should an attempt die without reporting.
    drop(done_sender);
    while !kills.is_empty() {
        let Some(report) = done.recv().await else {
            break;
        };
        if report.ran == Ran::Attempt
            && kills.remove(&report.task).is_some()
            && holds_slot(&state, report.task)
        {
            engine.slots.add_permits(1);
        }
    }
    hooks.finish().await;
    // Nobody drives a finished run; a release that fails leaves it to the
    // lease, which runs out.
    let _ = engine.store.release(state.run_id(), fence).await;
    Ok(state)
}

/// The run's control requests: where it reads on from, and what wakes it
/// when this engine records one. Dropped with the loop, so an engine forgets
/// the runs it no longer drives however the loop ends.
struct Controls<'a> {
    engine: &'a Engine,
    run: String,
    next: std::sync::atomic::AtomicU64,
    wake: Arc<tokio::sync::Notify>,
}

impl<'a> Controls<'a> {
    fn new(engine: &'a Engine, state: &RunState) -> Controls<'a> {
        Controls {
            engine,
            run: state.run_id().to_owned(),
            next: std::sync::atomic::AtomicU64::new(state.controls_read()),
            wake: engine.drive_controls(state.run_id()),
        }
    }

    /// Records each new request, and what it changes, in `pending`, applied:
    /// the position of every request read is in the log, so a resumed run
    /// neither misses nor repeats one. A request that no longer applies
    /// (its approval was decided meanwhile) changes nothing. A store that
    /// cannot answer is asked again next time it wakes the loop.
    async fn read(
        &self,
        state: &mut RunState,
        recorder: &mut Recorder,
        at: Millis,
        pending: &mut Vec<Event>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let from = self.next.load(Relaxed);
        let Ok(controls) = self.engine.store.controls(&self.run, from).await else {
            return;
        };
        for control in controls {
            let seq = self.next.fetch_add(1, Relaxed);
            let effects = state.control(&control, at).unwrap_or_default();
            let received = Event::ControlReceived {
                at,
                seq,
                control: Box::new(control),
            };
            for event in std::iter::once(received).chain(effects) {
                recorder.apply(state, &event);
                pending.push(event);
            }
        }
    }
}

impl Drop for Controls<'_> {
    fn drop(&mut self) {
        self.engine.forget_controls(&self.run);
    }
}

/// Takes as many global slots as are free, up to `batch`.
fn take_slots(engine: &Engine, batch: usize) -> usize {
    let wanted = engine.slots.available_permits().min(batch);
    if wanted == 0 {
        return 0;
    }
    match engine.slots.try_acquire_many(wanted as u32) {
        Ok(permit) => {
            permit.forget();
            wanted
        }
        Err(_) => 0,
    }
}

async fn sleep_until(clock: &Clock, wake: Option<Millis>) {
    match wake {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What launching an attempt needs from the loop.
struct Launcher<'a> {
    engine: &'a Engine,
    cas: &'a Cas,
    state: &'a RunState,
    chain: &'a Chain,
    reused: &'a Reused,
    family: &'a Family,
    /// Attempts a crash cut off, found when this process resumed the run.
    lost: &'a [(u32, u32)],
    done: &'a mpsc::UnboundedSender<Done>,
}

impl Launcher<'_> {
    /// Attempt `attempt` of sub-workflow task `task` (or one item or copy
    /// of it), as a child run to start.
    fn child(
        &self,
        task: u32,
        attempt: u32,
        run: &ChildRun,
        timeout: Option<baton_core::Duration>,
        copy: Option<String>,
    ) -> Child {
        Child {
            engine: self.engine.clone(),
            parent: self.parent(task, attempt, 0, copy),
            run: run.clone(),
            pinned: Arc::clone(&self.family.pinned),
            timeout,
            lost: self.lost_attempts(task),
        }
    }

    /// Attempt `attempt` of `task` as the parent of a child run nested one
    /// deeper, `spawn_depth` spawns deep.
    fn parent(
        &self,
        task: u32,
        attempt: u32,
        spawn_depth: u32,
        copy: Option<String>,
    ) -> ParentTask {
        ParentTask {
            run_id: self.state.run_id().to_owned(),
            task: self.state.task(task).id.clone(),
            attempt,
            depth: self.family.depth + 1,
            spawn_depth,
            copy,
        }
    }

    /// The attempts of `task` a crash cut off, as this resume found them.
    fn lost_attempts(&self, task: u32) -> Vec<u32> {
        self.lost
            .iter()
            .filter(|&&(lost, _)| lost == task)
            .map(|&(_, attempt)| attempt)
            .collect()
    }

    /// Starts attempt `attempt` of `task`, or returns the event it ended
    /// with at once (a no-op, a spec that does not evaluate).
    fn launch(
        &self,
        task: u32,
        attempt: u32,
        kills: &mut FxHashMap<u32, Option<oneshot::Sender<()>>>,
        at: Millis,
    ) -> Option<Event> {
        let (state, definition) = (self.state, self.state.task(task));
        let plain = definition.cache.is_none()
            && definition.artifacts.is_empty()
            && definition.check.is_empty()
            && definition.repeat.is_none()
            && definition.swarm.is_none()
            && definition.foreach.is_none()
            && !self.reused.results.contains_key(&task);
        if plain && matches!(definition.kind, baton_core::TaskKind::Noop) {
            return Some(Event::TaskSucceeded {
                at,
                task,
                attempt,
                output: None,
            });
        }
        let resolved = match state.resolve(task, attempt) {
            Ok(resolved) => resolved,
            Err(error) => {
                return Some(Event::TaskFailed {
                    at,
                    task,
                    attempt,
                    failure: Box::new(Failure::new(FailureKind::Template, error.to_string())),
                });
            }
        };
        let config = &self.engine.config;
        let timeout = state.timeout(task);
        let id = &definition.id;
        let run = Attempt {
            context: task_context(state, task, attempt, &resolved),
            dir: attempt_dir(&config.state_dir, state.run_id(), id, attempt),
            workdir: config.workdir.clone(),
            timeout: timeout.map(|timeout| timeout.after),
            grace: timeout.map_or(config.kill_grace, |timeout| timeout.grace),
            resolved,
        };
        let plan = match (state.reduction(task, attempt), &run.resolved.work) {
            (None, Work::Workflow(child)) => {
                let child = self.child(task, attempt, child, run.timeout, None);
                Plan::Child(Box::new(child), Box::new(run))
            }
            (None, _) => Plan::One(Box::new(run)),
            (Some(reduction), _) => {
                // Each copy logs and writes its output under its own
                // directory of the attempt's: `item-N` or `copy-N`.
                let copy = |name: String, resolved: baton_core::run::Resolved| {
                    if let Work::Workflow(child) = &resolved.work {
                        let child = self.child(task, attempt, child, run.timeout, Some(name));
                        return CopyJob::Child(Box::new(child));
                    }
                    CopyJob::Run(Box::new(Attempt {
                        context: task_context(state, task, attempt, &resolved),
                        dir: run.dir.join(name),
                        resolved,
                        ..run.clone()
                    }))
                };
                let copies = match state.foreach_items(task, attempt) {
                    Ok(Some(items)) => items
                        .iter()
                        .enumerate()
                        .map(|(index, item)| {
                            state
                                .resolve_item(task, attempt, index, item)
                                .map(|resolved| copy(format!("item-{index}"), resolved))
                        })
                        .collect::<Result<Vec<_>, _>>(),
                    Ok(None) => (0..state.copies(task))
                        .map(|index| {
                            state
                                .resolve_variant(task, attempt, index)
                                .map(|resolved| copy(format!("copy-{index}"), resolved))
                        })
                        .collect(),
                    Err(error) => Err(error),
                };
                let report = self.done.clone();
                let finished = Finished {
                    outputs: state.copies_done(task).cloned().unwrap_or_default(),
                    report: Box::new(move |copy, output| {
                        let _ = report.send(Done {
                            task,
                            attempt,
                            ran: Ran::Copy(copy),
                            outcome: Outcome::Succeeded(output.clone()),
                            files: Files::default(),
                        });
                    }),
                };
                match copies {
                    Ok(copies) => Plan::Copies {
                        base: Box::new(run),
                        copies,
                        reduction,
                        finished,
                    },
                    Err(error) => {
                        return Some(Event::TaskFailed {
                            at,
                            task,
                            attempt,
                            failure: Box::new(Failure::new(
                                FailureKind::Template,
                                error.to_string(),
                            )),
                        });
                    }
                }
            }
        };
        let spawner = match &plan {
            Plan::One(run) if can_spawn(&run.resolved.work) => Some(Spawner {
                engine: self.engine.clone(),
                parent: self.parent(task, attempt, self.family.spawn_depth + 1, None),
                lost: self.lost_attempts(task),
                max_spawn: self.family.max_spawn,
                max_depth: self.family.max_spawn_depth,
                pinned: Arc::clone(&self.family.pinned),
            }),
            _ => None,
        };
        let files = AttemptFiles {
            spawner,
            cas: self.cas.clone(),
            store: Arc::clone(&self.engine.store),
            source: match self.reused.results.get(&task) {
                Some(reusable) => Source::Rerun(reusable.clone()),
                None if self.reused.fresh.contains(&task) => Source::None,
                None => match self.chain.cache_key(state, task, attempt) {
                    Some(Ok(key)) => Source::Cache {
                        key,
                        fresh_after: definition
                            .cache
                            .as_ref()
                            .and_then(|policy| policy.ttl)
                            .map(|ttl| Millis(at.0.saturating_sub(ttl.as_millis()))),
                    },
                    _ => Source::None,
                },
            },
            needs: state
                .valid()
                .dag()
                .needs(task)
                .iter()
                .flat_map(|&need| state.artifacts(need).iter().cloned())
                .collect(),
            declared: definition.artifacts.clone(),
            max_inline_output: config.max_inline_output,
        };
        let (kill, killed) = oneshot::channel();
        kills.insert(task, Some(kill));
        let runners = Arc::clone(&self.engine.runners);
        let done = self.done.clone();
        tokio::spawn(async move {
            let (outcome, files) = files.attempt(runners, plan, killed).await;
            let _ = done.send(Done {
                task,
                attempt,
                ran: Ran::Attempt,
                outcome,
                files,
            });
        });
        None
    }
}

/// What an attempt runs: the task, a swarm's copies of it, or a child run.
enum Plan {
    One(Box<Attempt>),
    /// The attempt as a whole is kept for where it works and its name.
    Child(Box<Child>, Box<Attempt>),
    Copies {
        /// The attempt as a whole: where it works, what it is called.
        base: Box<Attempt>,
        copies: Vec<CopyJob>,
        reduction: Reduction,
        finished: Finished,
    },
}

/// Where an attempt may take its result from instead of running.
enum Source {
    None,
    /// `baton rerun` reuses this task's earlier result.
    Rerun(Reusable),
    /// A `cache:` task: an earlier result under `key`, if new enough.
    Cache {
        key: Digest,
        fresh_after: Option<Millis>,
    },
}

/// The file work around one attempt: reuse, consumed and produced
/// artifacts. Blocking file and store work runs off the runtime threads.
struct AttemptFiles {
    /// For a task whose output may ask for tasks (`spawn`).
    spawner: Option<Spawner>,
    cas: Cas,
    store: Arc<dyn Store>,
    source: Source,
    /// The artifacts of the task's needs.
    needs: Vec<Artifact>,
    /// Its own `artifacts:` patterns.
    declared: Vec<String>,
    /// Bytes of JSON above which the output is stored as an artifact.
    max_inline_output: usize,
}

impl AttemptFiles {
    async fn attempt(
        self,
        runners: Arc<Runners>,
        plan: Plan,
        killed: oneshot::Receiver<()>,
    ) -> (Outcome, Files) {
        let first = match &plan {
            Plan::One(run) | Plan::Copies { base: run, .. } | Plan::Child(_, run) => run,
        };
        let dir = first.working_dir();
        let task_id = first.context.task_id.clone();
        let AttemptFiles {
            spawner,
            cas,
            store,
            source,
            needs,
            declared,
            max_inline_output,
        } = self;
        let found = match source {
            Source::None => None,
            Source::Rerun(reusable) => Some(reusable),
            Source::Cache { key, fresh_after } => store
                .cached(&key)
                .await
                .ok()
                .flatten()
                .filter(|hit| fresh_after.is_none_or(|after| hit.finished_at >= after))
                .map(|hit| Reusable {
                    run: hit.run_id,
                    output: hit.output,
                    artifacts: hit.artifacts,
                }),
        };
        if let Some(found) = found {
            let (cas, dir) = (cas.clone(), dir.clone());
            let artifacts = found.artifacts.clone();
            // A result whose files cannot be placed is run again instead.
            if blocking(move || cas.place(&dir, &artifacts)).await.is_ok() {
                let files = Files {
                    produced: found.artifacts,
                    reused_from: Some(found.run),
                    ..Files::default()
                };
                return (Outcome::Succeeded(found.output), files);
            }
        }
        let mut files = Files::default();
        if !needs.is_empty() {
            let (cas, dir) = (cas.clone(), dir.clone());
            let placed = needs.clone();
            if let Err(error) = blocking(move || cas.place(&dir, &placed)).await {
                return (artifact_failure(error), files);
            }
            files.consumed = needs;
        }
        // A task that may spawn listens for a kill while its process runs
        // and while its spawned tasks do; spawned tasks a crash cut off go
        // on instead of the process running again.
        let (killed, spawning) = match spawner {
            Some(spawner) => {
                let (run_kill, run_killed) = oneshot::channel();
                let (spawn_kill, spawn_killed) = oneshot::channel();
                tokio::spawn(async move {
                    if killed.await.is_ok() {
                        let _ = run_kill.send(());
                        let _ = spawn_kill.send(());
                    }
                });
                match spawner.carried().await {
                    Ok(Some((handle, output))) => {
                        return (spawner.follow(handle, output, spawn_killed).await, files);
                    }
                    Ok(None) => (run_killed, Some((spawner, spawn_killed))),
                    Err(failure) => return (Outcome::Failed(failure), files),
                }
            }
            None => (killed, None),
        };
        let mut outcome = match plan {
            Plan::One(run) => runners.run(*run, killed).await,
            Plan::Child(child, _) => child.run(killed).await,
            Plan::Copies {
                copies,
                reduction,
                finished,
                ..
            } => {
                runners
                    .run_copies(copies, killed, reduction, finished)
                    .await
            }
        };
        if let Some((spawner, spawn_killed)) = spawning
            && let Outcome::Succeeded(Some(output)) = &mut outcome
            && Spawner::asks(output)
        {
            outcome = spawner.spawn(output.take(), spawn_killed).await;
        }
        let Outcome::Succeeded(output) = &mut outcome else {
            return (outcome, files);
        };
        let oversized = output
            .as_ref()
            .map(|value| serde_json::to_vec(value).unwrap_or_default())
            .filter(|bytes| bytes.len() > max_inline_output);
        if let Some(bytes) = oversized {
            let cas = cas.clone();
            match blocking(move || store_output(&cas, &task_id, &bytes)).await {
                Ok((reference, artifact)) => {
                    *output = Some(reference);
                    files.produced.push(artifact);
                }
                Err(error) => return (artifact_failure(error), files),
            }
        }
        if declared.is_empty() {
            return (outcome, files);
        }
        match blocking(move || cas.collect(&dir, &declared)).await {
            Ok(produced) => {
                files.produced.extend(produced);
                files.produced.sort_by(|a, b| a.path.cmp(&b.path));
                (outcome, files)
            }
            Err(error) => (artifact_failure(error), files),
        }
    }
}

/// Where an output too large to keep inline is placed for the tasks that
/// need it, relative to their working directory.
const OUTPUT_ARTIFACTS: &str = ".baton-outputs";

/// Stores an output too large to keep inline (its JSON `bytes`) as an
/// artifact, and returns the reference the run keeps instead, so events,
/// rows and templates stay small; the tasks that need it find the file in
/// their working directory at the reference's `path`.
fn store_output(cas: &Cas, task: &str, bytes: &[u8]) -> Result<(Value, Artifact), ArtifactError> {
    let (digest, size) = cas.put_bytes(bytes)?;
    let artifact = Artifact {
        path: format!("{OUTPUT_ARTIFACTS}/{task}.json"),
        digest,
        size,
    };
    let reference = serde_json::json!({
        "output_artifact": {"path": artifact.path, "sha256": digest.to_string(), "size": size}
    });
    Ok((reference, artifact))
}

fn artifact_failure(error: String) -> Outcome {
    Outcome::Failed(Failure::new(FailureKind::Error, error))
}

/// Runs blocking file or store work on tokio's blocking pool; a panic in it
/// comes back as an error.
async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(error) => Err(format!("file work stopped: {error}")),
    }
}

/// Starts the `compensate` action of `task`; it is not killed, as undoing
/// work half-way helps no one, but its own timeout applies.
fn launch_compensation(
    engine: &Engine,
    state: &RunState,
    task: u32,
    done: &mpsc::UnboundedSender<Done>,
) {
    let attempt = state.attempts(task);
    let report = move |outcome| Done {
        task,
        attempt,
        ran: Ran::Compensation,
        outcome,
        files: Files::default(),
    };
    // Without an action of its own, a task undoes the child run it made.
    if state.task(task).compensate.is_none()
        && let Some(child) = state.child_run(task)
    {
        let engine = engine.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let _ = done.send(report(compensate_child(&engine, &child).await));
        });
        return;
    }
    let resolved = match state.resolve_compensation(task) {
        Ok(resolved) => resolved,
        Err(error) => {
            let failure = Failure::new(FailureKind::Template, error.to_string());
            let _ = done.send(report(Outcome::Failed(failure)));
            return;
        }
    };
    let config = &engine.config;
    let timeout = state.timeout(task);
    let run = Attempt {
        context: task_context(state, task, attempt, &resolved),
        dir: compensation_dir(&config.state_dir, state.run_id(), &state.task(task).id),
        workdir: config.workdir.clone(),
        timeout: timeout.map(|timeout| timeout.after),
        grace: timeout.map_or(config.kill_grace, |timeout| timeout.grace),
        resolved,
    };
    let runners = Arc::clone(&engine.runners);
    let done = done.clone();
    tokio::spawn(async move {
        let (_keep, never) = oneshot::channel();
        let outcome = runners.run(run, never).await;
        let _ = done.send(report(outcome));
    });
}

/// Compensates child run `child` and reports how that went.
async fn compensate_child(engine: &Engine, child: &str) -> Outcome {
    let failed = |message: String| Outcome::Failed(Failure::new(FailureKind::Error, message));
    let report = match engine.compensate(child).await {
        Ok(handle) => handle.finish().await,
        Err(error) => return failed(format!("cannot compensate child run {child}: {error}")),
    };
    match report {
        Ok(report) if report.status == baton_core::run::RunStatus::Compensated => {
            Outcome::Succeeded(None)
        }
        Ok(report) => failed(format!(
            "child run {child} {}: {}",
            report.status,
            report.reason.unwrap_or_default()
        )),
        Err(error) => failed(format!("child run {child} stopped: {error}")),
    }
}

fn task_context(
    state: &RunState,
    task: u32,
    attempt: u32,
    resolved: &baton_core::run::Resolved,
) -> TaskContext {
    let id = state.task(task).id.clone();
    let in_process = matches!(resolved.work, baton_core::run::Work::Handler(_));
    TaskContext {
        idempotency_key: idempotency_key(state, task, attempt),
        run_id: state.run_id().to_owned(),
        attempt,
        inputs: if in_process {
            state.inputs_json()
        } else {
            Value::Null
        },
        needs: if in_process {
            state
                .valid()
                .dag()
                .needs(task)
                .iter()
                .filter_map(|&need| Some((state.task(need).id.clone(), state.output_json(need)?)))
                .collect()
        } else {
            serde_json::Map::new()
        },
        env: resolved.env.clone(),
        task_id: id,
    }
}

/// `RUN:TASK:ATTEMPT`: names one attempt, in its environment and logs.
fn idempotency_key(state: &RunState, task: u32, attempt: u32) -> String {
    format!("{}:{}:{attempt}", state.run_id(), state.task(task).id)
}

/// The events a report ends its attempt with: what it consumed, reused
/// and stored, then how it ended.
fn completion_events(report: Done, at: Millis, state: &RunState, pending: &mut Vec<Event>) {
    let Done {
        task,
        attempt,
        ran,
        outcome,
        files,
    } = report;
    let compensation = match ran {
        Ran::Attempt => false,
        Ran::Compensation => true,
        Ran::Copy(copy) => {
            if let Outcome::Succeeded(output) = outcome {
                pending.push(Event::CopySucceeded {
                    at,
                    task,
                    attempt,
                    copy,
                    output: output.map(Box::new),
                });
            }
            return;
        }
    };
    if !files.consumed.is_empty() {
        pending.push(Event::ArtifactsConsumed {
            at,
            task,
            attempt,
            artifacts: files.consumed.into(),
        });
    }
    if let Some(run) = files.reused_from {
        pending.push(Event::ResultReused {
            at,
            task,
            attempt,
            run: run.into(),
        });
    }
    if !files.produced.is_empty() {
        pending.push(Event::ArtifactsStored {
            at,
            task,
            attempt,
            artifacts: files.produced.into(),
        });
    }
    // A success counts once a `repeat` loop is done and its output passes
    // the task's `check`; until then the task goes round again.
    let outcome = match outcome {
        Outcome::Succeeded(output) if !compensation => {
            match state
                .iteration(task, attempt, output.as_ref())
                .and_then(|iteration| {
                    state
                        .check_output(task, attempt, output.as_ref())
                        .map(|()| iteration)
                }) {
                Ok(Iteration::Done) => Outcome::Succeeded(output),
                Ok(Iteration::Again) => {
                    pending.push(Event::TaskIterated {
                        at,
                        task,
                        attempt,
                        output: output.map(Box::new),
                    });
                    return;
                }
                Err(failure) => Outcome::Failed(failure),
            }
        }
        other => other,
    };
    pending.push(ended(task, attempt, compensation, outcome, at));
}

fn ended(task: u32, attempt: u32, compensation: bool, outcome: Outcome, at: Millis) -> Event {
    match (compensation, outcome) {
        (true, Outcome::Succeeded(_)) => Event::CompensationFinished {
            at,
            task,
            error: None,
        },
        (true, Outcome::Failed(failure)) => Event::CompensationFinished {
            at,
            task,
            error: Some(failure.message),
        },
        (true, Outcome::Cancelled) => Event::CompensationFinished {
            at,
            task,
            error: Some("cancelled".to_owned()),
        },
        (false, Outcome::Succeeded(output)) => Event::TaskSucceeded {
            at,
            task,
            attempt,
            output: output.map(Box::new),
        },
        (false, Outcome::Failed(failure)) => Event::TaskFailed {
            at,
            task,
            attempt,
            failure: Box::new(failure),
        },
        (false, Outcome::Cancelled) => Event::TaskCancelled { at, task },
    }
}
