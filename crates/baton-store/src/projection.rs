//! What a batch of events changes in the read models a store derives from
//! events alone: the run's row and task outputs. Every backend applies the
//! same projection, so their read models agree.

use baton_core::run::{Event, Millis, RunStatus};

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Projection {
    pub(crate) started_at: Option<Millis>,
    /// Whether the run ended the batch paused (`Some(true)`) or resumed.
    pub(crate) paused: Option<bool>,
    pub(crate) finished: Option<(RunStatus, Millis)>,
    /// Outputs of tasks that succeeded, encoded as JSON.
    pub(crate) outputs: Vec<(u32, String)>,
}

impl Projection {
    pub(crate) fn of(events: &[Event], outputs: bool) -> Projection {
        let mut projection = Projection::default();
        for event in events {
            match event {
                Event::RunStarted { at } => projection.started_at = Some(*at),
                Event::RunPaused { .. } => projection.paused = Some(true),
                Event::RunResumed { .. } => projection.paused = Some(false),
                Event::RunFinished { at, status } => projection.finished = Some((*status, *at)),
                Event::TaskSucceeded {
                    task,
                    output: Some(output),
                    ..
                } if outputs => projection
                    .outputs
                    .push((*task, serde_json::to_string(output).unwrap_or_default())),
                _ => {}
            }
        }
        projection
    }
}
