//! The imperative shell around [`RunState`]: the one loop that turns what
//! happens (completions, timers, cancellation) into events, persists them,
//! applies them, asks the state what to do, and does it.
//!
//! Write-ahead: the event of every command (a task started, a task skipped)
//! is persisted before the command is acted on, so after a crash the log
//! never shows less than what happened. Events are persisted in batches: all
//! completions that arrived together go in one append.

use baton_core::run::{Budget, Chain, Command, Event, Millis, RunState};
use baton_store::{Batch, Fence};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot, watch};

use super::compensation::launch_compensation;
use super::completion::completion_events;
use super::controls::Controls;
use super::hooks::Hooks;
use super::host::Host;
use super::launch::{Family, Launcher, holds_slot, idempotency_key};
use super::record::Recorder;
use super::report::{Done, Ran};
use super::reuse::Reused;
use super::telemetry::Observer;
use crate::artifacts::Cas;
use crate::clock::Clock;
use crate::error::Error;
use crate::handle::RunEvent;
use crate::leftovers;

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
    host: &Host,
    run: Run,
    events: Option<mpsc::Sender<RunEvent>>,
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
    let cas = Cas::new(&host.config.state_dir);
    let clock = host
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
            leftovers::stop(&keys, host.config.kill_grace.as_std()).await;
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
    let batch = host.config.batch.max(1);
    let mut recorder = Recorder::new(chain, state.task_count(), host.store.keeps_read_models());
    // A snapshot costs time in proportion to the tasks; taking one every
    // twice as many events as tasks keeps that cost per event constant.
    let every = host
        .config
        .checkpoint_every
        .max(2 * state.task_count() as u64)
        .max(1);
    let controls = Controls::new(host, &state, fence);
    let mut draining = host.driven.draining();
    // Requests left before this loop began (or while it was away) are read
    // at once; later ones wake it through the store's change feed.
    controls.wake.notify_one();
    let mut observer = Observer::default();
    // The remote workers that ran attempts, until their spans are made.
    let mut ran_by: FxHashMap<(u32, u32), String> = FxHashMap::default();
    let mut hooks = Hooks::new(&state);
    // Events of `pending` already applied to `state` (inline completions,
    // applied early so one decision sees them), not yet persisted.
    let mut applied = 0;
    // Completions just received are decided on before they are persisted,
    // so they share one append with what they lead to: a link of a chain
    // (a task ends, the next starts) costs one commit, not two. Nothing is
    // acted on before that append.
    let mut decide_first = false;
    loop {
        if !pending.is_empty() && !std::mem::take(&mut decide_first) {
            apply(
                &mut recorder,
                &mut state,
                &pending[applied..],
                seq + applied as u64,
            )?;
            applied = 0;
            recorder.seal(&state);
            let write = Batch {
                events: &pending,
                tasks: &recorder.tasks,
                attempts: &recorder.attempts,
                artifacts: &recorder.artifacts,
            };
            if leftovers::abandoned() {
                return Err(Error::Aborted(
                    "this process killed its tasks to exit; `baton resume` finishes the run"
                        .to_owned(),
                ));
            }
            let append = std::time::Instant::now();
            if let Err(error) = host.store.write(state.run_id(), seq, fence, write).await {
                // Another process took the run over (or the store refused):
                // this one stops its attempts and writes nothing more.
                for kill in kills.values_mut().filter_map(Option::take) {
                    let _ = kill.send(());
                }
                return Err(error.into());
            }
            observer.batch(&state, &pending, append.elapsed());
            if let Some(sink) = &host.config.spans {
                crate::spans::report(sink, &state, &pending, &mut ran_by);
            }
            hooks.fire(host, &state, &pending, seq);
            recorder.clear();
            let before = seq;
            for event in pending.drain(..) {
                // A watcher that went away is not an error: the log has it.
                if let Some(events) = &events {
                    let _ = events.send(RunEvent { seq, event }).await;
                }
                seq += 1;
            }
            if host.store.keeps_read_models()
                && seq / every > before / every
                && !state.is_finished()
            {
                let sealed = state.snapshot(seq).seal();
                host.store
                    .put_checkpoint(state.run_id(), fence, &sealed)
                    .await?;
            }
        }
        let mut finished_inline = 0;
        for (task, attempt) in launches.drain(..) {
            let at = clock.now();
            let launcher = Launcher {
                host,
                cas: &cas,
                state: &state,
                chain: &recorder.chain,
                reused: &reused,
                family: &family,
                lost: &lost_attempts,
                done: &done_sender,
            };
            // What took a slot and holds none now (it ended inline, or it
            // is a child run, which holds none while it waits) gives it back.
            let took = state.task(task).takes_slot();
            if let Some(event) = launcher.launch(task, attempt, &mut kills, at) {
                pending.push(event);
                finished_inline += usize::from(took);
            } else if took && !holds_slot(&state, task) {
                finished_inline += 1;
            }
        }
        host.slots.add_permits(finished_inline);
        for task in compensations.drain(..) {
            launch_compensation(host, &state, task, &done_sender);
        }
        // What finished inline is applied now, so the decision below sees it
        // and its events share one append with the completions: a wave of
        // no-op tasks costs one commit, not two. Nothing is acted on before
        // that append.
        apply(
            &mut recorder,
            &mut state,
            &pending[applied..],
            seq + applied as u64,
        )?;
        applied = pending.len();
        if state.is_finished() {
            if pending.is_empty() {
                break;
            }
            continue;
        }

        let mut wake = None;
        let mut starved = false;
        if *draining.borrow_and_update() {
            // The engine drains: nothing new starts, and once what is in
            // flight has ended (children hand their runs back too), the
            // run is handed back for another server, or this one after a
            // restart, to go on from its events.
            host.slots.add_permits(std::mem::take(&mut won));
            if !pending.is_empty() {
                continue;
            }
            if kills.is_empty() {
                hooks.finish().await;
                let _ = host.store.release(state.run_id(), fence).await;
                return Err(Error::HandedBack(state.run_id().to_owned()));
            }
        } else {
            // A permit won while starved is kept: handing it back would
            // pass it to the next waiter and two starved runs would trade
            // it forever.
            let kept = std::mem::take(&mut won);
            let slots = kept + take_slots(host, batch.saturating_sub(kept));
            commands.clear();
            let now = clock.now();
            state.decide(now, Budget { slots, batch }, &mut commands);
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
            let slotted = launches
                .iter()
                .filter(|&&(task, _)| state.task(task).takes_slot())
                .count();
            host.slots.add_permits(slots - slotted);
            if !pending.is_empty() {
                continue;
            }
            starved = slots == 0 && state.has_ready();
        }

        tokio::select! {
            Some(first) = done.recv() => {
                let mut next = Some(first);
                while let Some(report) = next {
                    let at = clock.now();
                    if *draining.borrow() && is_child_run(&state, &report) {
                        // A child run that drains ends by handing itself
                        // back, which is no end of the task: whoever goes
                        // on with this run picks the child up again (a
                        // finished one just reports).
                        kills.remove(&report.task);
                        next = done.try_recv().ok();
                        continue;
                    }
                    if report.ran == Ran::Attempt
                        && kills.remove(&report.task).is_some()
                        && holds_slot(&state, report.task)
                    {
                        host.slots.add_permits(1);
                    }
                    if let Some(worker) = report.files.worker.clone()
                        && host.config.spans.is_some()
                    {
                        ran_by.insert((report.task, report.attempt), worker);
                    }
                    completion_events(report, at, &state, &mut pending);
                    next = if pending.len() < batch { done.try_recv().ok() } else { None };
                }
                decide_first = true;
            }
            () = sleep_until(&clock, wake) => {}
            Ok(()) = draining.changed() => {}
            Ok(()) = cancelled.changed(), if !cancel_recorded => {
                if *cancelled.borrow() {
                    cancel_recorded = true;
                    pending.push(Event::CancelRequested { at: clock.now() });
                }
            }
            Ok(permit) = host.slots.acquire(), if starved => {
                permit.forget();
                won = 1;
            }
            // A request left in the store by any process (`baton cancel`,
            // `baton approve`, the API) wakes the loop through the change feed.
            () = controls.wake.notified() => {
                let first = seq + pending.len() as u64;
                let read = controls.read(&mut state, &mut recorder, clock.now(), first).await?;
                pending.extend(read);
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
            host.slots.add_permits(1);
        }
    }
    hooks.finish().await;
    // Nobody drives a finished run; a release that fails leaves it to the
    // lease, which runs out.
    let _ = host.store.release(state.run_id(), fence).await;
    Ok(state)
}

/// Applies `events`, the log's `first` onwards, to `state`: one the state
/// refuses would be this engine's own mistake, and stops the run rather
/// than be folded or recorded.
fn apply(
    recorder: &mut Recorder,
    state: &mut RunState,
    events: &[Event],
    first: u64,
) -> Result<(), Error> {
    for (offset, event) in events.iter().enumerate() {
        recorder.apply(state, event).map_err(|why| Error::Corrupt {
            run: state.run_id().to_owned(),
            seq: first + offset as u64,
            why,
        })?;
    }
    Ok(())
}

/// Whether `report` is the end of an attempt that a child run carries out.
fn is_child_run(state: &RunState, report: &Done) -> bool {
    report.ran == Ran::Attempt
        && matches!(
            state.task(report.task).kind,
            baton_core::TaskKind::Workflow(_)
        )
}

/// Takes as many global slots as are free, up to `batch`.
fn take_slots(host: &Host, batch: usize) -> usize {
    let wanted = host.slots.available_permits().min(batch);
    if wanted == 0 {
        return 0;
    }
    match host.slots.try_acquire_many(wanted as u32) {
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
