//! The imperative shell around [`RunState`]: the one loop that turns what
//! happens (completions, timers, cancellation) into events, persists them,
//! applies them, asks the state what to do, and does it.
//!
//! Write-ahead: the event of every command (a task started, a task skipped)
//! is persisted before the command is acted on, so after a crash the log
//! never shows less than what happened. Events are persisted in batches: all
//! completions that arrived together go in one append.

use std::sync::Arc;

use baton_core::run::{Budget, Chain, Command, Event, Failure, FailureKind, Millis, RunState};
use baton_store::Batch;
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::engine::{Engine, Error, RunEvent};
use crate::leftovers;
use crate::logs::{attempt_dir, compensation_dir};
use crate::record::Recorder;
use crate::runner::{Attempt, Outcome, TaskContext};

/// A runner's report, tagged with what it ran.
struct Done {
    task: u32,
    attempt: u32,
    compensation: bool,
    outcome: Outcome,
}

/// How a run comes to the loop.
pub(crate) enum Start {
    New,
    /// Replayed from `seq` recorded events; what was in flight was lost.
    Resume {
        seq: u64,
    },
}

/// Drives `state` to the end of its run.
pub(crate) async fn drive(
    engine: &Engine,
    mut state: RunState,
    chain: Chain,
    start: Start,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    mut cancelled: watch::Receiver<bool>,
) -> Result<RunState, Error> {
    let clock = engine
        .config
        .start_time
        .map_or_else(Clock::system, Clock::starting_at);
    let (done_sender, mut done) = mpsc::unbounded_channel::<Done>();
    // Attempts in flight, with the sender that kills them (taken once sent);
    // each holds one global slot until its completion arrives.
    let mut kills: FxHashMap<u32, Option<oneshot::Sender<()>>> = FxHashMap::default();
    let at = clock.now();
    let (mut pending, mut seq) = match start {
        Start::New => (vec![Event::RunStarted { at }], 0),
        Start::Resume { seq } => {
            let lost = state.in_flight();
            let keys: Vec<String> = lost
                .iter()
                .map(|&(task, attempt)| idempotency_key(&state, task, attempt))
                .collect();
            leftovers::stop(&keys, engine.config.kill_grace.as_std()).await;
            let lost =
                lost.into_iter()
                    .map(|(task, attempt)| Event::AttemptLost { at, task, attempt });
            (lost.collect(), seq)
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
    let mut poll = tokio::time::interval(engine.config.poll_interval.as_std());
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !pending.is_empty() {
            for event in &pending {
                recorder.apply(&mut state, event);
            }
            recorder.seal(&state);
            let write = Batch {
                events: &pending,
                tasks: &recorder.tasks,
                attempts: &recorder.attempts,
            };
            engine.store.write(state.run_id(), seq, write).await?;
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
                engine.store.put_checkpoint(state.run_id(), &sealed).await?;
            }
        }
        let mut finished_inline = 0;
        for (task, attempt) in launches.drain(..) {
            let at = clock.now();
            if let Some(event) = launch(engine, &state, task, attempt, &done_sender, &mut kills, at)
            {
                pending.push(event);
                finished_inline += 1;
            }
        }
        engine.slots.add_permits(finished_inline);
        for task in compensations.drain(..) {
            launch_compensation(engine, &state, task, &done_sender);
        }
        if state.is_finished() {
            break;
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
                    if !report.compensation && kills.remove(&report.task).is_some() {
                        engine.slots.add_permits(1);
                    }
                    pending.push(completion_event(report, at));
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
            _ = poll.tick(), if !cancel_recorded => {
                // `baton cancel` from another process leaves its request in
                // the store; a store that cannot answer is asked again.
                if engine.store.cancel_requested(state.run_id()).unwrap_or(false) {
                    cancel_recorded = true;
                    pending.push(Event::CancelRequested { at: clock.now() });
                }
            }
        }
    }
    Ok(state)
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

/// Starts attempt `attempt` of `task`. A no-op, or a task whose templates
/// do not evaluate, ends here: its event is returned instead.
fn launch(
    engine: &Engine,
    state: &RunState,
    task: u32,
    attempt: u32,
    done: &mpsc::UnboundedSender<Done>,
    kills: &mut FxHashMap<u32, Option<oneshot::Sender<()>>>,
    at: Millis,
) -> Option<Event> {
    if matches!(state.task(task).kind, baton_core::TaskKind::Noop) {
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
    let config = &engine.config;
    let timeout = state.timeout(task);
    let id = &state.task(task).id;
    let run = Attempt {
        context: task_context(state, task, attempt, &resolved),
        dir: attempt_dir(&config.state_dir, state.run_id(), id, attempt),
        workdir: config.workdir.clone(),
        timeout: timeout.map(|timeout| timeout.after),
        grace: timeout.map_or(config.kill_grace, |timeout| timeout.grace),
        resolved,
    };
    let (kill, killed) = oneshot::channel();
    kills.insert(task, Some(kill));
    let runners = Arc::clone(&engine.runners);
    let done = done.clone();
    tokio::spawn(async move {
        let outcome = runners.run(run, killed).await;
        let _ = done.send(Done {
            task,
            attempt,
            compensation: false,
            outcome,
        });
    });
    None
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
        compensation: true,
        outcome,
    };
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

fn completion_event(report: Done, at: Millis) -> Event {
    let Done {
        task,
        attempt,
        compensation,
        outcome,
    } = report;
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
