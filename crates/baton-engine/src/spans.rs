//! Spans: what a tracing backend is told of runs. A run is a trace (its id
//! derived from the run's, see [`baton_core::run::trace_context`]); the run
//! is its root span and each task attempt a child span, with the task, its
//! kind, the attempt and how it ended. They are made from the events a run
//! persists, once each attempt (or the run) has ended, so a run that
//! crossed processes still reads as one trace. Where they go is the
//! [`SpanSink`] the engine is given (`baton serve` exports over OTLP).

use std::sync::Arc;

use baton_core::run::trace_context::{attempt_span_id, run_span_id, trace_id};
use baton_core::run::{Event, Millis, RunState};
use rustc_hash::FxHashMap;

/// A span that has ended.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start: Millis,
    pub end: Millis,
    pub attributes: Vec<(&'static str, SpanValue)>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// A run, an attempt.
    Internal,
    /// A request the API served.
    Server,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SpanValue {
    Text(String),
    Number(i64),
}

/// Where finished spans go; it must not block (spans are handed over from
/// the runs' loops).
pub trait SpanSink: Send + Sync + std::fmt::Debug {
    fn finished(&self, span: FinishedSpan);
}

/// The spans `events`, just persisted and applied to `state`, end;
/// `ran_by` names the remote workers that ran attempts (taken as used).
pub(crate) fn report(
    sink: &Arc<dyn SpanSink>,
    state: &RunState,
    events: &[Event],
    ran_by: &mut FxHashMap<(u32, u32), String>,
) {
    for event in events {
        let span = match event {
            Event::TaskSucceeded {
                at, task, attempt, ..
            } => Some(attempt_span(
                state,
                (*task, *attempt),
                *at,
                ("succeeded", None),
                ran_by.remove(&(*task, *attempt)),
            )),
            Event::TaskFailed {
                at,
                task,
                attempt,
                failure,
            } if *attempt > 0 => Some(attempt_span(
                state,
                (*task, *attempt),
                *at,
                ("failed", Some(failure.message.clone())),
                ran_by.remove(&(*task, *attempt)),
            )),
            Event::AttemptLost { at, task, attempt } => Some(attempt_span(
                state,
                (*task, *attempt),
                *at,
                ("lost", Some("the process that ran it stopped".to_owned())),
                ran_by.remove(&(*task, *attempt)),
            )),
            Event::RunFinished { at, status } => {
                let run = state.run_id();
                let failed = !matches!(status, baton_core::run::RunStatus::Succeeded);
                Some(FinishedSpan {
                    trace_id: trace_id(run),
                    span_id: run_span_id(run),
                    parent: None,
                    name: format!("run {}", state.valid().workflow().name),
                    kind: SpanKind::Internal,
                    start: state.started_at().unwrap_or(*at),
                    end: *at,
                    attributes: vec![
                        ("baton.run_id", SpanValue::Text(run.to_owned())),
                        (
                            "baton.workflow",
                            SpanValue::Text(state.valid().workflow().name.clone()),
                        ),
                        ("baton.status", SpanValue::Text(status.name().to_owned())),
                    ],
                    error: failed.then(|| format!("the run ended {}", status.name())),
                })
            }
            _ => None,
        };
        if let Some(span) = span {
            sink.finished(span);
        }
    }
}

/// The span of `(task, attempt)`, ended at `end` as `(status, error)`, run
/// here or by `worker`.
fn attempt_span(
    state: &RunState,
    (task, attempt): (u32, u32),
    end: Millis,
    (status, error): (&str, Option<String>),
    worker: Option<String>,
) -> FinishedSpan {
    let run = state.run_id();
    let spec = state.task(task);
    let mut attributes = vec![
        ("baton.run_id", SpanValue::Text(run.to_owned())),
        ("baton.task", SpanValue::Text(spec.id.to_string())),
        (
            "baton.task.kind",
            SpanValue::Text(spec.kind.name().to_owned()),
        ),
        ("baton.attempt", SpanValue::Number(i64::from(attempt))),
        ("baton.status", SpanValue::Text(status.to_owned())),
    ];
    if let Some(runs_on) = &spec.modifiers().runs_on {
        attributes.push((
            "baton.worker.capability",
            SpanValue::Text(runs_on.capability.clone()),
        ));
    }
    // Where it ran: a remote worker by name, else the process that drives
    // the run.
    let worker = worker.unwrap_or_else(|| "local".to_owned());
    attributes.push(("baton.worker", SpanValue::Text(worker)));
    FinishedSpan {
        trace_id: trace_id(run),
        span_id: attempt_span_id(run, &spec.id, attempt),
        parent: Some(run_span_id(run)),
        name: spec.id.to_string(),
        kind: SpanKind::Internal,
        start: state.attempt_started(task).min(end),
        end,
        attributes,
        error,
    }
}
