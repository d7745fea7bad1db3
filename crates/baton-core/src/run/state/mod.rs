//! [`RunState`]: a run as a pure state machine. `apply` folds events into
//! state; `decide` says what to do next. Neither reads a clock, draws
//! randomness or does I/O, so replaying the same events rebuilds the same
//! state and the same decisions.
//!
//! The state is what the run's setup fixes (the checked workflow, the run's
//! id and inputs, its limits and concurrency keys) and its [`Progress`],
//! everything events change. The rest is split by what it does with them:
//! `fold` applies events, `decide` chooses commands, `work` evaluates a
//! task's templates into what an attempt runs, `control` carries out
//! requests, `metrics` reads figures off the state, `snapshot` encodes and
//! restores the progress.

use std::cmp::Reverse;
use std::sync::{Arc, OnceLock};

use minijinja::Value;
use rustc_hash::FxHashMap;

use crate::check::{ReadyOrder, Valid};
use crate::duration::Duration;
use crate::spec::{FailurePolicy, RetryPolicy, Task, Timeout};

use super::event::{Artifact, Failure, Millis, RunStatus, SkipReason};
use super::templates;

mod control;
mod decide;
mod fold;
mod metrics;
mod progress;
mod snapshot;
mod status;
mod work;

#[cfg(test)]
mod tests;

pub use decide::{Budget, Command};
pub use fold::Inadmissible;
pub use metrics::{RunMetrics, Usage};
pub use progress::CopyOutputs;
pub use snapshot::{Sealed, Snapshot, SnapshotError};
pub use status::TaskStatus;
pub use work::Iteration;

use progress::{Phase, Progress};

/// No task: what `blocked_by` and a key index hold when there is none.
const NONE: u32 = u32::MAX;

/// One run of a valid workflow, folded from its events.
#[derive(Clone)]
pub struct RunState {
    valid: Arc<Valid>,
    run_id: String,
    inputs: Value,
    run_context: Value,
    /// The run's `concurrency`, or [`NONE`].
    limit: u32,
    on_failure: FailurePolicy,
    run_timeout: Option<Duration>,
    /// Position of each task in (priority desc, id asc) order.
    order: Arc<ReadyOrder>,
    /// Each task's concurrency key (an index into `key_limit`), or [`NONE`].
    key_of: Vec<u32>,
    key_limit: Vec<u32>,
    /// Tasks some `escalate:` names: they run only if a task escalating to
    /// them failed, and count such failures (not successes) as live needs.
    escalation_target: Vec<bool>,
    /// The task whose result is the run's (`verdict: true`), or [`NONE`].
    verdict: u32,
    /// Labels every task for remote workers requires, unless it names the
    /// label itself: where the run chose, when it started, to run.
    labels: Arc<std::collections::BTreeMap<String, String>>,
    progress: Progress,
}

/// How a run is set up: its identity and resolved inputs.
#[derive(Clone, Debug, Default)]
pub struct RunSetup {
    pub run_id: String,
    pub inputs: serde_json::Map<String, serde_json::Value>,
    /// Overrides the workflow's `concurrency`.
    pub concurrency: Option<u32>,
    /// Overrides the workflow's `timeout`.
    pub timeout: Option<Duration>,
    /// Overrides the workflow's `on_failure`.
    pub on_failure: Option<FailurePolicy>,
    /// Labels the run's tasks for remote workers require (a task's own
    /// value for a label wins).
    pub labels: std::collections::BTreeMap<String, String>,
}

impl RunState {
    /// The labels the run chose for its tasks on remote workers.
    pub fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        &self.labels
    }

    pub fn new(valid: Arc<Valid>, setup: RunSetup) -> RunState {
        let workflow = valid.workflow();
        let dag = valid.dag();
        let count = workflow.tasks.len();
        let order = valid.ready_order();
        let (key_of, key_limit) = concurrency_keys(&valid, &setup);
        let mut progress = Progress::new(count, key_limit.len());
        for task in 0..count {
            let needs = dag.needs(task as u32).len() as u32;
            progress.unmet[task] = needs;
            if needs == 0 {
                progress.ready.0.push(Reverse(order.rank[task]));
                progress.status[task] = TaskStatus::Queued;
            }
        }
        let mut escalation_target = vec![false; count];
        for task in &workflow.tasks {
            if let Some(target) = &task.modifiers().escalate
                && let Some(position) = workflow.tasks.iter().position(|other| other.id == *target)
            {
                escalation_target[position] = true;
            }
        }
        let verdict = workflow
            .tasks
            .iter()
            .position(|task| task.modifiers().verdict)
            .map_or(NONE, |position| position as u32);
        let inputs = Value::from(minijinja::value::Serde(&setup.inputs));
        let run_context =
            minijinja::context! { id => setup.run_id.clone(), name => workflow.name.clone() };
        RunState {
            limit: setup.concurrency.or(workflow.concurrency).unwrap_or(NONE),
            run_timeout: setup.timeout.or(workflow.timeout),
            on_failure: setup.on_failure.unwrap_or(workflow.on_failure),
            order,
            key_of,
            key_limit,
            escalation_target,
            verdict,
            labels: Arc::new(setup.labels),
            run_id: setup.run_id,
            inputs,
            run_context,
            valid,
            progress,
        }
    }
}

/// Interns each task's `concurrency_key` (rendered over the run's inputs, as
/// keys are fixed when the run starts) and looks up its limit.
fn concurrency_keys(valid: &Valid, setup: &RunSetup) -> (Vec<u32>, Vec<u32>) {
    let workflow = valid.workflow();
    if workflow
        .tasks
        .iter()
        .all(|task| task.modifiers().concurrency_key.is_none())
    {
        return (Vec::new(), Vec::new());
    }
    let context =
        minijinja::context! { inputs => Value::from(minijinja::value::Serde(&setup.inputs)) };
    let mut interned: FxHashMap<String, u32> = FxHashMap::default();
    let mut limits = Vec::new();
    let key_of = workflow
        .tasks
        .iter()
        .map(|task| {
            let Some(key) = &task.modifiers().concurrency_key else {
                return NONE;
            };
            let key = templates::render(key.as_str(), &context, "concurrency_key")
                .unwrap_or_else(|_| key.as_str().to_owned());
            let next = interned.len() as u32;
            *interned.entry(key.clone()).or_insert_with(|| {
                limits.push(workflow.concurrency_limits.get(&key).copied().unwrap_or(1));
                next
            })
        })
        .collect();
    (key_of, limits)
}

impl RunState {
    pub fn valid(&self) -> &Valid {
        &self.valid
    }

    /// The checked workflow, shared.
    pub fn shared_valid(&self) -> Arc<Valid> {
        Arc::clone(&self.valid)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn task_count(&self) -> usize {
        self.progress.status.len()
    }

    pub fn task(&self, task: u32) -> &Task {
        &self.valid.workflow().tasks[task as usize]
    }

    pub fn status(&self, task: u32) -> TaskStatus {
        self.progress.status[task as usize]
    }

    /// Attempts started so far.
    pub fn attempts(&self, task: u32) -> u32 {
        self.progress.attempts[task as usize]
    }

    pub fn output(&self, task: u32) -> Option<&Value> {
        self.progress.outputs[task as usize].as_ref()
    }

    /// A task's output as JSON.
    pub fn output_json(&self, task: u32) -> Option<serde_json::Value> {
        self.output(task)
            .and_then(|output| serde_json::to_value(output).ok())
    }

    /// The run's inputs as JSON.
    pub fn inputs_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.inputs).unwrap_or_default()
    }

    /// Attempts (and compensations) in flight: after a replay, those the
    /// dead process was running.
    pub fn in_flight(&self) -> Vec<(u32, u32)> {
        (0..self.progress.status.len() as u32)
            .filter(|&task| {
                matches!(
                    self.progress.status[task as usize],
                    TaskStatus::Running | TaskStatus::Compensating
                )
            })
            .map(|task| (task, self.progress.attempts[task as usize]))
            .collect()
    }

    /// Whether tasks wait for a slot.
    pub fn has_ready(&self) -> bool {
        !self.progress.ready.is_empty()
    }

    /// Tasks waiting for a slot (a replayed state may count one twice
    /// until it starts).
    pub fn ready_count(&self) -> usize {
        self.progress.ready.len()
    }

    /// The last failure of a task (or its compensation).
    pub fn failure(&self, task: u32) -> Option<&Failure> {
        self.progress.failures.get(&task)
    }

    /// The items (or swarm copies) of `task` that already succeeded, by
    /// index, with their outputs: the next attempt takes them as they are.
    pub fn copies_done(&self, task: u32) -> Option<&CopyOutputs> {
        self.progress.copies.get(&task)
    }

    /// The files the task's succeeding attempt stored.
    pub fn artifacts(&self, task: u32) -> &[Artifact] {
        self.progress
            .artifacts
            .get(&task)
            .map_or(&[], |artifacts| artifacts)
    }

    /// The run the task's result was reused from, if it did not run.
    pub fn reused_from(&self, task: u32) -> Option<&str> {
        self.progress.reused.get(&task).map(|run| &**run)
    }

    /// The index of the task named `id`.
    pub fn task_index(&self, id: &str) -> Option<u32> {
        self.valid.task_index(id)
    }

    pub fn skip_reason(&self, task: u32) -> Option<SkipReason> {
        self.progress.skip_reasons.get(&task).copied()
    }

    /// When the task's latest attempt started.
    pub fn attempt_started(&self, task: u32) -> Millis {
        self.progress.attempt_started[task as usize]
    }

    /// When the task's first attempt started, and when it ended.
    pub fn times(&self, task: u32) -> (Option<Millis>, Option<Millis>) {
        let index = task as usize;
        let started =
            (self.progress.attempts[index] > 0).then_some(self.progress.first_started[index]);
        let finished = self.progress.status[index]
            .is_final()
            .then_some(self.progress.finished[index]);
        (started, finished)
    }

    /// From the first attempt's start to the task's end; zero if it never ran.
    pub fn elapsed(&self, task: u32) -> Duration {
        let index = task as usize;
        if self.progress.attempts[index] == 0 {
            return Duration::ZERO;
        }
        self.progress.finished[index].since(self.progress.first_started[index])
    }

    /// The run's status; `Running` while it is ending or compensating.
    pub fn run_status(&self) -> RunStatus {
        match self.progress.phase {
            Phase::Pending => RunStatus::Pending,
            Phase::Running if self.progress.paused => RunStatus::Paused,
            Phase::Finished(status) => status,
            _ => RunStatus::Running,
        }
    }

    /// Control requests the run has read (see [`Event::ControlReceived`](crate::run::Event::ControlReceived)).
    pub fn controls_read(&self) -> u64 {
        self.progress.controls
    }

    /// Approval tasks waiting for a decision.
    pub fn waiting(&self) -> u32 {
        self.progress.waiting
    }

    /// Why the run failed or stopped, when it did.
    pub fn reason(&self) -> Option<&str> {
        self.progress.reason.as_deref()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.progress.phase, Phase::Finished(_))
    }

    /// Tasks in a final state.
    pub fn final_count(&self) -> usize {
        self.progress.final_count
    }

    /// Attempts in flight.
    pub fn running(&self) -> u32 {
        self.progress.running
    }

    pub fn started_at(&self) -> Option<Millis> {
        self.progress.started_at
    }

    pub fn finished_at(&self) -> Option<Millis> {
        self.progress.finished_at
    }

    /// The retry policy that applies to `task`: its own, the workflow's
    /// default, or a single attempt.
    pub fn retry_policy(&self, task: u32) -> &RetryPolicy {
        static SINGLE: OnceLock<RetryPolicy> = OnceLock::new();
        self.task(task)
            .modifiers()
            .retry
            .as_deref()
            .or(self.valid.workflow().defaults.retry.as_ref())
            .unwrap_or_else(|| {
                SINGLE.get_or_init(|| RetryPolicy {
                    max_attempts: 1,
                    ..RetryPolicy::default()
                })
            })
    }

    /// The timeout that applies to `task`, if any.
    pub fn timeout(&self, task: u32) -> Option<Timeout> {
        self.task(task)
            .modifiers()
            .timeout
            .or(self.valid.workflow().defaults.timeout)
    }

    /// Whether `task` waits on a need for its failure or whatever its end:
    /// such a task still starts (and retries) while a run ends after a
    /// failure, as it is there to handle one.
    fn handles_failure(&self, task: u32) -> bool {
        !self.task(task).modifiers().need_conditions.is_empty()
    }

    /// Whether `task` may start an attempt in the run's phase.
    fn may_start(&self, task: u32) -> bool {
        match self.progress.phase {
            Phase::Running => true,
            Phase::Ending { status, .. } => {
                status != RunStatus::Cancelled && self.handles_failure(task)
            }
            _ => false,
        }
    }

    /// How the run ends, given `otherwise` from its tasks: as its verdict
    /// task ended, when it has one that ran and the run did not time out.
    fn verdict_status(&self, otherwise: RunStatus) -> RunStatus {
        if self.verdict == NONE || self.progress.timed_out {
            return otherwise;
        }
        match self.progress.status[self.verdict as usize] {
            TaskStatus::Succeeded => RunStatus::Succeeded,
            TaskStatus::Failed | TaskStatus::TimedOut => RunStatus::Failed,
            _ => otherwise,
        }
    }

    fn key(&self, task: u32) -> Option<usize> {
        match self.key_of.get(task as usize) {
            Some(&key) if key != NONE => Some(key as usize),
            _ => None,
        }
    }
}
