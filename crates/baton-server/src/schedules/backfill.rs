//! Backfills: one run per tick of a workflow's schedule over a range of
//! past time, each with its tick as the `tick` input, at most so many at
//! once. A tick's run has the id a scheduled run of that tick would have,
//! so a tick that already ran (on schedule, or in an earlier backfill) is
//! not run again.

use std::collections::HashSet;

use baton_core::run::{Event, Millis};
use baton_core::timetable::Timetable;
use baton_store::StoredWorkflow;
use tokio::sync::broadcast::error::RecvError;

use super::{ScheduleError, start, tick_run_id};
use crate::AppState;
use crate::runs::Launched;

/// The most ticks one backfill starts: a range that holds more is refused
/// rather than flooding the server.
pub const MAX_BACKFILL: usize = 10_000;

/// A backfill's ticks, before any starts.
#[derive(Clone, Debug)]
pub struct Planned {
    pub workflow: StoredWorkflow,
    pub timetable: Timetable,
    /// `(tick, run id)`, oldest first.
    pub ticks: Vec<(Millis, String)>,
}

/// Why a backfill cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Store(#[from] baton_store::Error),
    #[error("workflow `{0}` has no `schedule:` to backfill")]
    NoSchedule(String),
    #[error("the range from {from} to {to} is empty or backwards")]
    Backwards { from: String, to: String },
    #[error("the range ends in the future ({to}); a backfill covers time that has passed")]
    Future { to: String },
    #[error("the range holds more than {MAX_BACKFILL} ticks; backfill it in parts")]
    TooMany,
}

/// The ticks of `name`'s schedule from `from` to `to`, both included, as
/// of `now`.
pub async fn plan(
    app: &AppState,
    name: &str,
    from: Millis,
    to: Millis,
    now: Millis,
) -> Result<Planned, PlanError> {
    let workflow = app.engine.store().workflow(name, None).await?;
    let Some(schedule) = &workflow.workflow.schedule else {
        return Err(PlanError::NoSchedule(name.to_owned()));
    };
    let timetable = Timetable::new(schedule).map_err(|_| PlanError::NoSchedule(name.to_owned()))?;
    if to < from {
        return Err(PlanError::Backwards {
            from: timetable.local(from),
            to: timetable.local(to),
        });
    }
    if to > now {
        return Err(PlanError::Future {
            to: timetable.local(to),
        });
    }
    let after = Millis(from.0.saturating_sub(1));
    let ticks = timetable.between(after, to, MAX_BACKFILL + 1);
    if ticks.len() > MAX_BACKFILL {
        return Err(PlanError::TooMany);
    }
    let ticks = ticks
        .into_iter()
        .map(|tick| (tick, tick_run_id(name, tick)))
        .collect();
    Ok(Planned {
        workflow,
        timetable,
        ticks,
    })
}

/// Starts the planned runs, oldest first, keeping at most `concurrency`
/// of them unfinished; `started(tick, run, new)` hears of each (`new` is
/// false for a tick that had run already). Answers once the last has
/// started, or with `settle`, once the last has finished.
pub async fn run(
    app: &AppState,
    planned: &Planned,
    concurrency: usize,
    settle: bool,
    mut started: impl FnMut(Millis, &str, bool),
) -> Result<(), ScheduleError> {
    let mut ends = app.live.subscribe();
    let mut going: HashSet<String> = HashSet::new();
    for (tick, run) in &planned.ticks {
        let existed = match app.engine.store().summary(run).await {
            Ok(_) => true,
            Err(baton_store::Error::UnknownRun(_)) => false,
            Err(error) => return Err(error.into()),
        };
        if existed {
            started(*tick, run, false);
            continue;
        }
        until_at_most(app, &mut ends, &mut going, concurrency.max(1) - 1).await?;
        let now = app.now();
        // A run another replica started at the same moment ends there: only
        // those driven here are waited for, by their ends this server sees.
        if let Launched::Here(run) =
            start(app, &planned.workflow, &planned.timetable, *tick, now).await?
        {
            going.insert(run);
        }
        started(*tick, run, true);
    }
    if settle {
        until_at_most(app, &mut ends, &mut going, 0).await?;
    }
    Ok(())
}

/// Waits until at most `most` of the runs `going` are unfinished. Ends are
/// heard from the first start on, so only a lag needs the store.
async fn until_at_most(
    app: &AppState,
    ends: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<crate::live::LiveEvent>>,
    going: &mut HashSet<String>,
    most: usize,
) -> Result<(), ScheduleError> {
    while going.len() > most {
        match ends.recv().await {
            Ok(ended) => {
                if matches!(ended.event.event, Event::RunFinished { .. }) {
                    going.remove(&ended.run);
                }
            }
            // Ends were missed: the store says which of ours are over.
            Err(RecvError::Lagged(_)) => forget_finished(app, going).await?,
            Err(RecvError::Closed) => break,
        }
    }
    Ok(())
}

async fn forget_finished(app: &AppState, going: &mut HashSet<String>) -> Result<(), ScheduleError> {
    let mut over = Vec::new();
    for run in going.iter() {
        if app.engine.store().summary(run).await?.status.is_final() {
            over.push(run.clone());
        }
    }
    for run in over {
        going.remove(&run);
    }
    Ok(())
}
