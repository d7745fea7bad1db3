//! A run in progress, seen from outside: its events as they are persisted,
//! a way to cancel it, and its report when it ends.

use std::sync::Arc;

use baton_core::Valid;
use baton_core::run::Event;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::report::RunReport;

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
    /// A task the workflow does not have (a damaged log's) keeps its
    /// number.
    pub fn json(&self, valid: &Valid) -> Value {
        let tasks = &valid.workflow().tasks;
        let name = |task: u64| {
            usize::try_from(task)
                .ok()
                .and_then(|task| tasks.get(task))
                .map_or_else(|| Value::from(task), |task| Value::from(task.id.as_str()))
        };
        let mut line = serde_json::to_value(&self.event).unwrap_or_default();
        line["seq"] = Value::from(self.seq);
        if let Some(task) = self.event.task() {
            line["task"] = name(u64::from(task));
        }
        if let Some(need) = line
            .get("reason")
            .and_then(|reason| reason.get("need"))
            .and_then(Value::as_u64)
        {
            line["reason"]["need"] = name(need);
        }
        line
    }
}

/// A run in progress.
pub struct RunHandle {
    run_id: String,
    valid: Arc<Valid>,
    ended: usize,
    events: Option<mpsc::Receiver<RunEvent>>,
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
    pub(crate) fn new(
        run_id: String,
        valid: Arc<Valid>,
        ended: usize,
        events: Option<mpsc::Receiver<RunEvent>>,
        cancel: Canceller,
        join: JoinHandle<Result<RunReport, Error>>,
    ) -> RunHandle {
        RunHandle {
            run_id,
            valid,
            ended,
            events,
            cancel,
            join,
            recovery: None,
        }
    }

    /// The handle of a resumed run, with how its state was rebuilt.
    pub(crate) fn with_recovery(self, recovery: Recovery) -> RunHandle {
        RunHandle {
            recovery: Some(recovery),
            ..self
        }
    }

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
    /// [`RunOptions::watch`](crate::RunOptions::watch); the stream ends
    /// with the run. It holds [`EngineConfig::event_buffer`](crate::EngineConfig::event_buffer)
    /// events: past that the run waits for the reader, so memory stays
    /// bounded however slow it is.
    pub fn events(&mut self) -> Option<&mut mpsc::Receiver<RunEvent>> {
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

    /// Waits for the run to end. Events not yet read are let go, so the
    /// run never waits for a reader that is no longer there.
    pub async fn finish(self) -> Result<RunReport, Error> {
        drop(self.events);
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
    pub(crate) fn new(sender: watch::Sender<bool>) -> Canceller {
        Canceller(Arc::new(sender))
    }

    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}
