//! Schedules: `baton serve` starts the runs of registered workflows that
//! carry a `schedule:`. Every look (each second) reads where each schedule
//! stands from the store (its newest tick, or when its version was
//! registered), works out what is due with [`Timetable`], and records what
//! each tick became. A tick's run id is derived from the workflow and the
//! tick, so replicas that look at once start it once: the store refuses
//! the second. Backfills start the same ids, so a tick that ran is not run
//! again.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_core::run::Millis;
use baton_core::spec::{Overlap, Schedule};
use baton_core::timetable::Timetable;
use baton_engine::RunOptions;
use baton_store::{StoredWorkflow, Tick, TickOutcome};
use serde_json::Value;

use crate::AppState;

pub mod backfill;
pub(crate) mod routes;

pub use routes::{overview, planned};

/// How late a tick may be seen and still count as on time: what separates
/// a tick that is due from one missed in downtime (`catch_up: none`).
pub const SLACK: baton_core::Duration = baton_core::Duration::from_secs(60);

/// The ticks of its history a look reads: enough to find the schedule's
/// running and queued ticks.
const HISTORY: usize = 64;

/// What a look did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Looked {
    /// `(workflow, tick, run)` for every run started, in order.
    pub started: Vec<(String, Millis, String)>,
    /// `(workflow, tick, outcome)` for every tick that started nothing.
    pub passed: Vec<(String, Millis, &'static str)>,
}

/// Why a look at the schedules stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] baton_store::Error),
    #[error("cannot start a run of `{workflow}` for its tick: {source}")]
    Start {
        workflow: String,
        #[source]
        source: baton_engine::Error,
    },
}

/// Looks at every schedule every `every` for as long as the runtime runs,
/// and stops when the server drains.
pub fn keep_scheduling(app: AppState, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if app.engine.is_draining() {
                return;
            }
            match look(&app, app.now()).await {
                Ok(looked) => {
                    for (workflow, at, run) in &looked.started {
                        tracing::info!("schedule: started run {run} of {workflow} for {}", at.0);
                    }
                }
                Err(error) => tracing::warn!("schedule: {error}"),
            }
        }
    });
}

/// One look at every schedule at `now`: starts what is due, records what
/// each tick became.
pub async fn look(app: &AppState, now: Millis) -> Result<Looked, ScheduleError> {
    let mut looked = Looked::default();
    for stored in app.engine.store().workflows().await? {
        let Some(schedule) = stored.workflow.schedule.clone() else {
            continue;
        };
        // A registered schedule was checked; one that cannot be read (a
        // time zone this build does not know) waits for a new version.
        let Ok(timetable) = Timetable::new(&schedule) else {
            continue;
        };
        look_at(app, &stored, &schedule, &timetable, now, &mut looked).await?;
    }
    Ok(looked)
}

async fn look_at(
    app: &AppState,
    stored: &StoredWorkflow,
    schedule: &Schedule,
    timetable: &Timetable,
    now: Millis,
    looked: &mut Looked,
) -> Result<(), ScheduleError> {
    let store = app.engine.store();
    let name = &stored.name;
    let history = store.ticks(name, HISTORY).await?;
    let mut running = running(app, &history).await?;
    // Queued ticks go first, oldest first, one at a time.
    for queued in history
        .iter()
        .rev()
        .filter(|tick| tick.outcome == TickOutcome::Queued)
    {
        if running {
            break;
        }
        let run = start(app, stored, timetable, queued.at, now)
            .await?
            .into_run_id();
        looked.started.push((name.clone(), queued.at, run));
        running = true;
    }
    let last = history.first().map_or(stored.created_at, |tick| tick.at);
    let due = timetable.due(schedule.catch_up, last, now, SLACK);
    for at in due.missed {
        record(app, name, at, TickOutcome::Missed, now).await?;
        looked.passed.push((name.clone(), at, "missed"));
    }
    for at in due.start {
        let passed = match (running, schedule.overlap) {
            (true, Overlap::Skip) => TickOutcome::Skipped,
            (true, Overlap::Queue) => TickOutcome::Queued,
            _ => {
                let run = start(app, stored, timetable, at, now).await?.into_run_id();
                looked.started.push((name.clone(), at, run));
                running = true;
                continue;
            }
        };
        looked.passed.push((name.clone(), at, passed.name()));
        record(app, name, at, passed, now).await?;
    }
    Ok(())
}

/// Whether the schedule's newest started run is still going.
async fn running(app: &AppState, history: &[Tick]) -> Result<bool, ScheduleError> {
    let Some(run) = history.iter().find_map(|tick| tick.outcome.run_id()) else {
        return Ok(false);
    };
    match app.engine.store().summary(run).await {
        Ok(summary) => Ok(!summary.status.is_final()),
        // Pruned since: long over.
        Err(baton_store::Error::UnknownRun(_)) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

async fn record(
    app: &AppState,
    workflow: &str,
    at: Millis,
    outcome: TickOutcome,
    now: Millis,
) -> Result<(), ScheduleError> {
    metrics::counter!("baton_schedule_ticks_total", "outcome" => outcome.name()).increment(1);
    let tick = Tick {
        workflow: workflow.to_owned(),
        at,
        outcome,
        recorded_at: now,
    };
    Ok(app.engine.store().put_tick(&tick).await?)
}

/// The run id of `workflow`'s tick at `at`: the same on every replica and
/// for a backfill of that tick.
pub fn tick_run_id(workflow: &str, at: Millis) -> String {
    crate::runs::keyed_run_id(workflow, &format!("schedule tick {}", at.0))
}

/// Starts the run of `stored`'s tick at `at` (one another replica started
/// already counts) and records it.
pub(crate) async fn start(
    app: &AppState,
    stored: &StoredWorkflow,
    timetable: &Timetable,
    at: Millis,
    now: Millis,
) -> Result<crate::runs::Launched, ScheduleError> {
    let name = &stored.name;
    let run_id = tick_run_id(name, at);
    let failed = |source| ScheduleError::Start {
        workflow: name.clone(),
        source,
    };
    let valid = match crate::checking::workflow((*stored.workflow).clone()).await {
        Ok(Ok(valid)) => valid,
        Ok(Err(problems)) => return Err(failed(baton_engine::Error::Invalid(problems))),
        Err(error) => {
            return Err(failed(baton_engine::Error::Aborted(error.to_string())));
        }
    };
    let options = RunOptions {
        inputs: inputs(stored, timetable, at),
        run_id: Some(run_id.clone()),
        watch: true,
        served: true,
        workflow_version: Some(stored.version),
        ..RunOptions::default()
    };
    let launched = crate::runs::launch(app, valid, options)
        .await
        .map_err(failed)?;
    let started = TickOutcome::Started {
        run_id: run_id.clone(),
    };
    record(app, name, at, started, now).await?;
    Ok(launched)
}

/// A tick's run's inputs: the schedule's, and the tick's time as `tick`
/// when the workflow declares it.
fn inputs(stored: &StoredWorkflow, timetable: &Timetable, at: Millis) -> BTreeMap<String, Value> {
    let workflow = &stored.workflow;
    let mut inputs: BTreeMap<String, Value> = workflow
        .schedule
        .iter()
        .flat_map(|schedule| schedule.inputs.clone())
        .collect();
    if workflow.inputs.contains_key("tick") {
        inputs.insert("tick".to_owned(), Value::from(timetable.local(at)));
    }
    inputs
}
