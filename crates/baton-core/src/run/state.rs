//! [`RunState`]: a run as a pure state machine. `apply` folds events into
//! state; `decide` says what to do next. Neither reads a clock, draws
//! randomness or does I/O, so replaying the same events rebuilds the same
//! state and the same decisions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, OnceLock};

use minijinja::Value;
use rustc_hash::FxHashMap;

use crate::check::{ReadyOrder, Valid, task_references};
use crate::duration::Duration;
use crate::spec::{Action, FailurePolicy, OnTimeout, RetryPolicy, Task, TaskKind, Timeout};

use super::backoff::{retries, retry_delay};
use super::control::{Control, ControlError, Decision, decision_output};
use super::event::{Artifact, Event, Failure, FailureKind, Millis, RunStatus, SkipReason};
use super::resolve::{ChildRun, ChildWorkflow, Resolved, Scope, Work};
use super::templates::{self, TemplateError};

mod snapshot;

pub use snapshot::{Sealed, Snapshot, SnapshotError};

const NONE: u32 = u32::MAX;

/// Where one task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for its needs.
    Pending,
    /// Its needs are done; waiting for a slot.
    Queued,
    Running,
    /// An `approval` task waiting for a decision.
    Waiting,
    /// Failed, and waiting to be tried again.
    RetryWait,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    TimedOut,
    /// Succeeded, and its `compensate` action is running.
    Compensating,
    Compensated,
    /// Succeeded, and its `compensate` action failed.
    CompensationFailed,
}

impl TaskStatus {
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Waiting => "waiting",
            TaskStatus::RetryWait => "retry_wait",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::TimedOut => "timed_out",
            TaskStatus::Compensating => "compensating",
            TaskStatus::Compensated => "compensated",
            TaskStatus::CompensationFailed => "compensation_failed",
        }
    }

    /// Whether the task is done for this run (compensation aside).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            TaskStatus::Pending
                | TaskStatus::Queued
                | TaskStatus::Running
                | TaskStatus::Waiting
                | TaskStatus::RetryWait
        )
    }

    /// Whether the task's work happened and stands (or was undone after).
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded
                | TaskStatus::Compensating
                | TaskStatus::Compensated
                | TaskStatus::CompensationFailed
        )
    }

    fn blocks_dependants(self) -> bool {
        matches!(
            self,
            TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::TimedOut
        )
    }
}

/// What the shell should do next. Every command but `Kill` and `WakeAt`
/// becomes exactly one event (see [`Command::event`]), persisted before
/// the shell acts on it.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Start attempt `attempt` of `task`.
    Dispatch {
        task: u32,
        attempt: u32,
    },
    Skip {
        task: u32,
        reason: SkipReason,
    },
    /// Drop a task that never started.
    Cancel {
        task: u32,
    },
    /// Stop a running attempt; its runner reports `TaskCancelled`.
    Kill {
        task: u32,
    },
    /// The task cannot start: its condition did not evaluate.
    Reject {
        task: u32,
        failure: Box<Failure>,
    },
    /// Run the `compensate` action of a succeeded task.
    Compensate {
        task: u32,
    },
    /// Wait for a decision on an `approval` task.
    Await {
        task: u32,
    },
    /// An approval's timeout passed: take `choice`, its `default` (a valid
    /// workflow gives every approval with a timeout one).
    Expire {
        task: u32,
        choice: Box<str>,
    },
    TimeOutRun,
    Finish {
        status: RunStatus,
    },
    /// Call `decide` again at this time even if nothing happens.
    WakeAt(Millis),
}

impl Command {
    /// The event that records this command, stamped `at`.
    pub fn event(&self, at: Millis) -> Option<Event> {
        Some(match self {
            Command::Dispatch { task, attempt } => Event::TaskStarted {
                at,
                task: *task,
                attempt: *attempt,
            },
            Command::Skip { task, reason } => Event::TaskSkipped {
                at,
                task: *task,
                reason: *reason,
            },
            Command::Cancel { task } => Event::TaskCancelled { at, task: *task },
            Command::Reject { task, failure } => Event::TaskFailed {
                at,
                task: *task,
                attempt: 0,
                failure: failure.clone(),
            },
            Command::Compensate { task } => Event::CompensationStarted { at, task: *task },
            Command::Await { task } => Event::ApprovalRequested { at, task: *task },
            Command::Expire { task, choice } => Event::TaskSucceeded {
                at,
                task: *task,
                attempt: 1,
                output: Some(Box::new(decision_output(choice, None, None, true))),
            },
            Command::TimeOutRun => Event::RunTimedOut { at },
            Command::Finish { status } => Event::RunFinished {
                at,
                status: *status,
            },
            Command::Kill { .. } | Command::WakeAt(_) => return None,
        })
    }
}

/// Where a `repeat` loop stands after an iteration succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Iteration {
    /// `until` holds (or the task does not repeat): the task succeeds.
    Done,
    /// Run it again, with this output as `previous`.
    Again,
}

/// Limits `decide` works within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Dispatches the shell can take now (its global slots).
    pub slots: usize,
    /// Commands per call, so a wide graph is fed in bounded batches.
    pub batch: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            slots: usize::MAX,
            batch: 4096,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    Pending,
    Running,
    /// No new work starts; running tasks are being stopped.
    Ending {
        status: RunStatus,
        compensate: bool,
    },
    Compensating,
    Finished(RunStatus),
}

/// One run of a valid workflow, folded from its events.
pub struct RunState {
    valid: Arc<Valid>,
    run_id: String,
    inputs: Value,
    run_context: Value,
    limit: u32,
    on_failure: FailurePolicy,
    phase: Phase,
    reason: Option<String>,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    run_timeout: Option<Duration>,
    deadline: Option<Millis>,

    status: Vec<TaskStatus>,
    attempts: Vec<u32>,
    /// Needs not yet final.
    unmet: Vec<u32>,
    /// Needs that succeeded.
    live_needs: Vec<u32>,
    /// The first task upstream that failed, was cancelled or timed out.
    blocked_by: Vec<u32>,
    attempt_started: Vec<Millis>,
    first_started: Vec<Millis>,
    finished: Vec<Millis>,
    busy: Vec<u64>,
    outputs: Vec<Option<Value>>,
    failures: FxHashMap<u32, Failure>,
    skip_reasons: FxHashMap<u32, SkipReason>,
    artifacts: FxHashMap<u32, Box<[Artifact]>>,
    /// Tasks whose result came from an earlier run, by that run's id.
    reused: FxHashMap<u32, Box<str>>,
    /// Iterations a `repeat` task has finished without its `until` holding.
    iterations: FxHashMap<u32, u32>,
    /// Per `foreach`/`swarm` task, the items (copies) that succeeded in an
    /// attempt that has not ended the task yet, with their outputs.
    copies: FxHashMap<u32, CopyOutputs>,
    final_count: usize,
    running: u32,
    /// Approval tasks waiting for a decision.
    waiting: u32,
    failed_tasks: u32,
    /// No task starts while set (a pause).
    paused: bool,
    /// Control requests read so far: where a resumed run reads on.
    controls: u64,

    /// Position of each task in (priority desc, id asc) order.
    order: Arc<ReadyOrder>,
    ready: BinaryHeap<Reverse<u32>>,
    /// Tasks whose needs are final but which must be skipped, in order.
    settle: VecDeque<u32>,
    timers: BinaryHeap<Reverse<(Millis, u32)>>,
    key_of: Vec<u32>,
    key_limit: Vec<u32>,
    key_running: Vec<u32>,
    /// Ranks waiting because their key is full, in rank order per key.
    parked: Vec<VecDeque<u32>>,
    /// Whether the running attempts were told to stop; once is enough, as
    /// nothing starts after the run begins to end.
    kills_sent: bool,
    compensation_order: Vec<u32>,
    compensation_cursor: usize,
    compensating: Option<u32>,
    compensation_failed: bool,
    /// Compensations started per task: each is retried by the task's
    /// retry policy.
    compensation_attempts: FxHashMap<u32, u32>,
    /// When a failed compensation is tried again.
    compensation_retry_at: Option<Millis>,
    names: OnceLock<FxHashMap<String, u32>>,
    /// Tasks some `escalate:` names: they run only if a task escalating to
    /// them failed, and count such failures (not successes) as live needs.
    escalation_target: Vec<bool>,
}

/// The items (or swarm copies) of a task that succeeded, by index.
pub type CopyOutputs = std::collections::BTreeMap<u32, Option<serde_json::Value>>;

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
}

impl RunState {
    pub fn new(valid: Arc<Valid>, setup: RunSetup) -> RunState {
        let workflow = valid.workflow();
        let dag = valid.dag();
        let count = workflow.tasks.len();
        let order = valid.ready_order();
        let (key_of, key_limit) = concurrency_keys(&valid, &setup);
        let unmet: Vec<u32> = (0..count as u32)
            .map(|task| dag.needs(task).len() as u32)
            .collect();
        let mut ready = BinaryHeap::new();
        let mut status = vec![TaskStatus::Pending; count];
        for task in 0..count {
            if unmet[task] == 0 {
                ready.push(Reverse(order.rank[task]));
                status[task] = TaskStatus::Queued;
            }
        }
        let mut escalation_target = vec![false; count];
        for task in &workflow.tasks {
            if let Some(target) = &task.escalate
                && let Some(position) = workflow.tasks.iter().position(|other| other.id == *target)
            {
                escalation_target[position] = true;
            }
        }
        let inputs = Value::from(minijinja::value::Serde(&setup.inputs));
        let run_context =
            minijinja::context! { id => setup.run_id.clone(), name => workflow.name.clone() };
        RunState {
            limit: setup.concurrency.or(workflow.concurrency).unwrap_or(NONE),
            deadline: None,
            phase: Phase::Pending,
            reason: None,
            started_at: None,
            finished_at: None,
            status,
            attempts: vec![0; count],
            unmet,
            live_needs: vec![0; count],
            blocked_by: vec![NONE; count],
            attempt_started: vec![Millis(0); count],
            first_started: vec![Millis(0); count],
            finished: vec![Millis(0); count],
            busy: vec![0; count],
            outputs: vec![None; count],
            failures: FxHashMap::default(),
            skip_reasons: FxHashMap::default(),
            artifacts: FxHashMap::default(),
            reused: FxHashMap::default(),
            iterations: FxHashMap::default(),
            copies: FxHashMap::default(),
            final_count: 0,
            running: 0,
            waiting: 0,
            failed_tasks: 0,
            paused: false,
            controls: 0,
            order,
            ready,
            settle: VecDeque::new(),
            timers: BinaryHeap::new(),
            parked: vec![VecDeque::new(); key_limit.len()],
            key_running: vec![0; key_limit.len()],
            key_of,
            key_limit,
            kills_sent: false,
            compensation_order: Vec::new(),
            compensation_cursor: 0,
            compensating: None,
            compensation_failed: false,
            compensation_attempts: FxHashMap::default(),
            compensation_retry_at: None,
            names: OnceLock::new(),
            escalation_target,
            run_timeout: setup.timeout.or(workflow.timeout),
            on_failure: setup.on_failure.unwrap_or(workflow.on_failure),
            run_id: setup.run_id,
            inputs,
            run_context,
            valid,
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
        .all(|task| task.concurrency_key.is_none())
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
            let Some(key) = &task.concurrency_key else {
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
        self.status.len()
    }

    pub fn task(&self, task: u32) -> &Task {
        &self.valid.workflow().tasks[task as usize]
    }

    pub fn status(&self, task: u32) -> TaskStatus {
        self.status[task as usize]
    }

    /// Attempts started so far.
    pub fn attempts(&self, task: u32) -> u32 {
        self.attempts[task as usize]
    }

    pub fn output(&self, task: u32) -> Option<&Value> {
        self.outputs[task as usize].as_ref()
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
        (0..self.status.len() as u32)
            .filter(|&task| {
                matches!(
                    self.status[task as usize],
                    TaskStatus::Running | TaskStatus::Compensating
                )
            })
            .map(|task| (task, self.attempts[task as usize]))
            .collect()
    }

    /// Whether tasks wait for a slot.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Tasks waiting for a slot (a replayed state may count one twice
    /// until it starts).
    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// The last failure of a task (or its compensation).
    pub fn failure(&self, task: u32) -> Option<&Failure> {
        self.failures.get(&task)
    }

    /// The items (or swarm copies) of `task` that already succeeded, by
    /// index, with their outputs: the next attempt takes them as they are.
    pub fn copies_done(&self, task: u32) -> Option<&CopyOutputs> {
        self.copies.get(&task)
    }

    /// The files the task's succeeding attempt stored.
    pub fn artifacts(&self, task: u32) -> &[Artifact] {
        self.artifacts.get(&task).map_or(&[], |artifacts| artifacts)
    }

    /// The run the task's result was reused from, if it did not run.
    pub fn reused_from(&self, task: u32) -> Option<&str> {
        self.reused.get(&task).map(|run| &**run)
    }

    /// The index of the task named `id`.
    pub fn task_index(&self, id: &str) -> Option<u32> {
        self.names().get(id).copied()
    }

    pub fn skip_reason(&self, task: u32) -> Option<SkipReason> {
        self.skip_reasons.get(&task).copied()
    }

    /// When the task's latest attempt started.
    pub fn attempt_started(&self, task: u32) -> Millis {
        self.attempt_started[task as usize]
    }

    /// When the task's first attempt started, and when it ended.
    pub fn times(&self, task: u32) -> (Option<Millis>, Option<Millis>) {
        let index = task as usize;
        let started = (self.attempts[index] > 0).then_some(self.first_started[index]);
        let finished = self.status[index]
            .is_final()
            .then_some(self.finished[index]);
        (started, finished)
    }

    /// From the first attempt's start to the task's end; zero if it never ran.
    pub fn elapsed(&self, task: u32) -> Duration {
        let index = task as usize;
        if self.attempts[index] == 0 {
            return Duration::ZERO;
        }
        self.finished[index].since(self.first_started[index])
    }

    /// The run's status; `Running` while it is ending or compensating.
    pub fn run_status(&self) -> RunStatus {
        match self.phase {
            Phase::Pending => RunStatus::Pending,
            Phase::Running if self.paused => RunStatus::Paused,
            Phase::Finished(status) => status,
            _ => RunStatus::Running,
        }
    }

    /// Control requests the run has read (see [`Event::ControlReceived`]).
    pub fn controls_read(&self) -> u64 {
        self.controls
    }

    /// Approval tasks waiting for a decision.
    pub fn waiting(&self) -> u32 {
        self.waiting
    }

    /// The events that carry out `control` on the run as it stands, or why
    /// it does not apply.
    pub fn control(&self, control: &Control, at: Millis) -> Result<Vec<Event>, ControlError> {
        let running = match self.phase {
            Phase::Finished(_) => return Err(ControlError::Finished),
            Phase::Pending | Phase::Running => true,
            Phase::Ending { .. } | Phase::Compensating => false,
        };
        Ok(match control {
            Control::Cancel if running => vec![Event::CancelRequested { at }],
            Control::Pause if !running => return Err(ControlError::Ending),
            Control::Pause if self.paused => return Err(ControlError::AlreadyPaused),
            Control::Pause => vec![Event::RunPaused { at }],
            Control::Resume if !self.paused || !running => return Err(ControlError::NotPaused),
            Control::Resume => vec![Event::RunResumed { at }],
            Control::Cancel => return Err(ControlError::Ending),
            Control::Decide(decision) => vec![self.decision(decision, at)?],
        })
    }

    /// The success of a waiting approval task with `decision` as output.
    fn decision(&self, decision: &Decision, at: Millis) -> Result<Event, ControlError> {
        let task = self
            .task_index(&decision.task)
            .ok_or_else(|| ControlError::UnknownTask(decision.task.clone()))?;
        let TaskKind::Approval(approval) = &self.task(task).kind else {
            return Err(ControlError::NotApproval(decision.task.clone()));
        };
        let status = self.status[task as usize];
        if status != TaskStatus::Waiting {
            return Err(ControlError::NotWaiting {
                task: decision.task.clone(),
                status: status.name(),
            });
        }
        if !approval.choices.contains(&decision.choice) {
            return Err(ControlError::BadChoice {
                task: decision.task.clone(),
                choice: decision.choice.clone(),
                choices: approval.choices.clone(),
            });
        }
        Ok(Event::TaskSucceeded {
            at,
            task,
            attempt: self.attempts[task as usize],
            output: Some(Box::new(decision_output(
                &decision.choice,
                decision.by.as_deref(),
                decision.comment.as_deref(),
                false,
            ))),
        })
    }

    /// Why the run failed or stopped, when it did.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// Tasks in a final state.
    pub fn final_count(&self) -> usize {
        self.final_count
    }

    /// Attempts in flight.
    pub fn running(&self) -> u32 {
        self.running
    }

    pub fn started_at(&self) -> Option<Millis> {
        self.started_at
    }

    pub fn finished_at(&self) -> Option<Millis> {
        self.finished_at
    }

    /// The retry policy that applies to `task`: its own, the workflow's
    /// default, or a single attempt.
    pub fn retry_policy(&self, task: u32) -> &RetryPolicy {
        static SINGLE: OnceLock<RetryPolicy> = OnceLock::new();
        self.task(task)
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
            .timeout
            .or(self.valid.workflow().defaults.timeout)
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: &Event) {
        match *event {
            Event::RunStarted { at } => {
                self.phase = Phase::Running;
                self.started_at = Some(at);
                self.deadline = self.run_timeout.map(|timeout| at.plus(timeout));
            }
            Event::TaskStarted { at, task, attempt } => {
                let index = task as usize;
                self.status[index] = TaskStatus::Running;
                self.attempts[index] = attempt;
                self.attempt_started[index] = at;
                if attempt == 1 {
                    self.first_started[index] = at;
                }
                self.running += 1;
                if let Some(key) = self.key(task) {
                    self.key_running[key] += 1;
                }
            }
            Event::TaskSucceeded {
                at,
                task,
                ref output,
                ..
            } => {
                self.end_attempt(task, at);
                self.outputs[task as usize] = output
                    .as_deref()
                    .map(|output| Value::from(minijinja::value::Serde(output)));
                self.copies.remove(&task);
                self.finish(task, TaskStatus::Succeeded, at);
            }
            Event::CopySucceeded {
                task,
                copy,
                ref output,
                ..
            } => {
                self.copies
                    .entry(task)
                    .or_default()
                    .insert(copy, output.as_deref().cloned());
            }
            Event::TaskIterated {
                at,
                task,
                ref output,
                ..
            } => {
                self.copies.remove(&task);
                self.end_attempt(task, at);
                let index = task as usize;
                self.outputs[index] = output
                    .as_deref()
                    .map(|output| Value::from(minijinja::value::Serde(output)));
                *self.iterations.entry(task).or_default() += 1;
                self.status[index] = TaskStatus::Queued;
                self.ready.push(Reverse(self.order.rank[index]));
            }
            Event::TaskFailed {
                at,
                task,
                attempt,
                ref failure,
            } => {
                // A swarm's retry votes afresh; a foreach's runs only the
                // items that have not succeeded.
                if self.task(task).swarm.is_some() {
                    self.copies.remove(&task);
                }
                self.fail(task, attempt, failure, at);
            }
            Event::TaskSkipped { at, task, reason } => {
                self.skip_reasons.insert(task, reason);
                self.finish(task, TaskStatus::Skipped, at);
            }
            Event::TaskCancelled { at, task } => {
                if matches!(
                    self.status[task as usize],
                    TaskStatus::Running | TaskStatus::Waiting
                ) {
                    self.end_attempt(task, at);
                }
                self.finish(task, TaskStatus::Cancelled, at);
            }
            Event::CompensationStarted { task, .. } => {
                self.phase = Phase::Compensating;
                self.status[task as usize] = TaskStatus::Compensating;
                self.compensating = Some(task);
                self.compensation_retry_at = None;
                *self.compensation_attempts.entry(task).or_default() += 1;
            }
            Event::CompensationFinished {
                at,
                task,
                ref error,
            } => {
                self.compensating = None;
                self.status[task as usize] = match error {
                    None => TaskStatus::Compensated,
                    Some(error) => self.compensation_error(task, error, at),
                };
            }
            Event::ArtifactsStored {
                task,
                ref artifacts,
                ..
            } => {
                self.artifacts.insert(task, artifacts.clone());
            }
            Event::ResultReused { task, ref run, .. } => {
                self.reused.insert(task, run.clone());
            }
            Event::ArtifactsConsumed { .. } => {}
            Event::AttemptLost { task, .. } => match self.status[task as usize] {
                TaskStatus::Running => {
                    let index = task as usize;
                    self.running -= 1;
                    if let Some(key) = self.key(task) {
                        self.key_running[key] -= 1;
                    }
                    self.status[index] = TaskStatus::Queued;
                    self.ready.push(Reverse(self.order.rank[index]));
                }
                TaskStatus::Compensating => {
                    self.status[task as usize] = TaskStatus::Succeeded;
                    self.compensating = None;
                }
                _ => {}
            },
            Event::ApprovalRequested { at, task } => {
                let index = task as usize;
                self.status[index] = TaskStatus::Waiting;
                self.attempts[index] = 1;
                self.attempt_started[index] = at;
                self.first_started[index] = at;
                self.waiting += 1;
                if let TaskKind::Approval(approval) = &self.task(task).kind
                    && let Some(timeout) = approval.timeout
                {
                    self.timers.push(Reverse((at.plus(timeout), task)));
                }
            }
            Event::ControlReceived { seq, .. } => self.controls = seq + 1,
            Event::RunPaused { .. } => self.paused = true,
            Event::RunResumed { .. } => self.paused = false,
            Event::CancelRequested { .. } => {
                self.end(RunStatus::Cancelled, false, "cancelled".to_owned());
            }
            Event::CompensationRequested { .. } => {
                if self.phase == Phase::Finished(RunStatus::Succeeded) {
                    self.phase = Phase::Ending {
                        status: RunStatus::Failed,
                        compensate: true,
                    };
                    self.reason = Some("its parent run is compensating".to_owned());
                }
            }
            Event::RunTimedOut { .. } => {
                let after = self.run_timeout.unwrap_or(Duration::ZERO);
                let compensate = self.on_failure == FailurePolicy::Compensate;
                self.end(
                    RunStatus::Failed,
                    compensate,
                    format!("the run timed out after {after}"),
                );
            }
            Event::RunFinished { at, status } => {
                self.phase = Phase::Finished(status);
                self.finished_at = Some(at);
            }
        }
    }

    fn key(&self, task: u32) -> Option<usize> {
        match self.key_of.get(task as usize) {
            Some(&key) if key != NONE => Some(key as usize),
            _ => None,
        }
    }

    fn end_attempt(&mut self, task: u32, at: Millis) {
        let index = task as usize;
        if self.status[index] == TaskStatus::Waiting {
            self.waiting -= 1;
            // Its timeout no longer matters, and would hold the run open.
            self.timers.retain(|&Reverse((_, timed))| timed != task);
            return;
        }
        self.running -= 1;
        self.busy[index] += at.since(self.attempt_started[index]).as_millis();
        if let Some(key) = self.key(task) {
            self.key_running[key] -= 1;
            if let Some(rank) = self.parked[key].pop_front() {
                self.ready.push(Reverse(rank));
            }
        }
    }

    fn fail(&mut self, task: u32, attempt: u32, failure: &Failure, at: Millis) {
        let index = task as usize;
        let was_running = self.status[index] == TaskStatus::Running;
        if was_running || self.status[index] == TaskStatus::Waiting {
            self.end_attempt(task, at);
        }
        self.failures.insert(task, failure.clone());
        let policy = self.retry_policy(task);
        if was_running
            && self.phase == Phase::Running
            && attempt < policy.max_attempts
            && retries(policy, failure)
        {
            let delay = retry_delay(policy, attempt, &self.run_id, &self.task(task).id);
            self.status[index] = TaskStatus::RetryWait;
            self.timers.push(Reverse((at.plus(delay), task)));
            return;
        }
        let on_timeout = self.timeout(task).map(|timeout| timeout.on_timeout);
        let mut compensate = self.on_failure == FailurePolicy::Compensate;
        let status = match (failure.kind, on_timeout) {
            (FailureKind::Timeout, Some(OnTimeout::Skip)) => {
                self.skip_reasons.insert(task, SkipReason::TimedOut);
                self.finish(task, TaskStatus::Skipped, at);
                return;
            }
            (FailureKind::Timeout, Some(OnTimeout::Compensate)) => {
                compensate = true;
                TaskStatus::TimedOut
            }
            (FailureKind::Timeout, _) => TaskStatus::TimedOut,
            _ => TaskStatus::Failed,
        };
        self.finish(task, status, at);
        // A failure handed to an `escalate` target is its to handle: the
        // run goes on, and ends as the target does.
        let forced = compensate && self.on_failure != FailurePolicy::Compensate;
        if self.task(task).escalate.is_some() && !forced {
            return;
        }
        self.failed_tasks += 1;
        let id = &self.task(task).id;
        let reason = match status {
            TaskStatus::TimedOut => format!("task `{id}` timed out"),
            _ => format!("task `{id}` failed"),
        };
        if compensate {
            self.end(RunStatus::Failed, true, reason);
        } else if self.on_failure == FailurePolicy::FailFast {
            self.end(RunStatus::Failed, false, reason);
        } else if self.reason.is_none() {
            self.reason = Some(reason);
        }
    }

    /// A compensation failed: it is tried again while the task's retry
    /// policy allows, and otherwise compensation stops there, as undoing
    /// what came before it could depend on it being undone.
    fn compensation_error(&mut self, task: u32, error: &str, at: Millis) -> TaskStatus {
        let failure = Failure::new(FailureKind::Error, error.to_owned());
        let tried = self.compensation_attempts.get(&task).copied().unwrap_or(1);
        let policy = self.retry_policy(task);
        let again = tried < policy.max_attempts && retries(policy, &failure);
        if again {
            let delay = retry_delay(policy, tried, &self.run_id, &self.task(task).id);
            self.compensation_retry_at = Some(at.plus(delay));
            self.compensation_cursor = self.compensation_cursor.saturating_sub(1);
        }
        self.failures.insert(task, failure);
        if again {
            return TaskStatus::Succeeded;
        }
        self.compensation_failed = true;
        let remaining: Vec<String> = self
            .compensation_sequence()
            .into_iter()
            .filter(|&other| other == task || self.status[other as usize] == TaskStatus::Succeeded)
            .map(|other| self.task(other).id.clone())
            .collect();
        let first = self
            .reason
            .take()
            .map_or_else(String::new, |reason| format!("{reason}; "));
        self.reason = Some(format!(
            "{first}compensating `{}` failed after {tried} attempt(s): {error}; not compensated: {}",
            self.task(task).id,
            remaining.join(", ")
        ));
        TaskStatus::CompensationFailed
    }

    /// Stops starting work; the first reason to end a run is the one kept.
    fn end(&mut self, status: RunStatus, compensate: bool, reason: String) {
        if matches!(self.phase, Phase::Pending | Phase::Running) {
            self.phase = Phase::Ending { status, compensate };
            self.reason = Some(reason);
        }
    }

    fn finish(&mut self, task: u32, status: TaskStatus, at: Millis) {
        let index = task as usize;
        self.status[index] = status;
        self.finished[index] = at;
        self.final_count += 1;
        let valid = Arc::clone(&self.valid);
        let escalates_to = valid.workflow().tasks[index].escalate.as_deref();
        for &dependant in valid.dag().dependants(task) {
            let slot = dependant as usize;
            self.unmet[slot] -= 1;
            if escalates_to == Some(valid.workflow().tasks[slot].id.as_str()) {
                // An escalation fires on a failure and is quiet otherwise.
                if status.blocks_dependants() {
                    self.live_needs[slot] += 1;
                }
            } else {
                // A task skipped because something upstream failed passes
                // that failure on, so every task below names the root cause.
                let cause = if status.blocks_dependants() {
                    task
                } else {
                    self.blocked_by[index]
                };
                if status.succeeded() {
                    if !self.escalation_target[slot] {
                        self.live_needs[slot] += 1;
                    }
                } else if cause != NONE && self.blocked_by[slot] == NONE {
                    self.blocked_by[slot] = cause;
                }
            }
            if self.unmet[slot] == 0 {
                if self.blocked_by[slot] != NONE || self.live_needs[slot] == 0 {
                    self.settle.push_back(dependant);
                } else {
                    self.status[slot] = TaskStatus::Queued;
                    self.ready.push(Reverse(self.order.rank[slot]));
                }
            }
        }
    }

    /// Appends what to do next to `out`. The shell must apply the events of
    /// these commands before calling `decide` again.
    pub fn decide(&mut self, now: Millis, budget: Budget, out: &mut Vec<Command>) {
        match self.phase {
            Phase::Pending | Phase::Finished(_) => {}
            Phase::Running => self.decide_running(now, budget, out),
            Phase::Ending { status, compensate } => {
                self.decide_ending(status, compensate, now, budget, out)
            }
            Phase::Compensating => self.decide_compensation(now, out),
        }
    }

    /// Skips the tasks whose needs ended without letting them run. A
    /// replayed state may list tasks whose skip is already recorded.
    fn drain_settle(&mut self, budget: Budget, out: &mut Vec<Command>) {
        while out.len() < budget.batch
            && let Some(task) = self.settle.pop_front()
        {
            if self.status[task as usize] == TaskStatus::Pending {
                out.push(Command::Skip {
                    task,
                    reason: self.settle_reason(task),
                });
            }
        }
    }

    fn settle_reason(&self, task: u32) -> SkipReason {
        match self.blocked_by[task as usize] {
            NONE if self.escalation_target[task as usize] => SkipReason::NotEscalated,
            NONE => SkipReason::NeedsSkipped,
            need => SkipReason::NeedFailed { need },
        }
    }

    fn decide_running(&mut self, now: Millis, budget: Budget, out: &mut Vec<Command>) {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            out.push(Command::TimeOutRun);
            return;
        }
        while let Some(&Reverse((at, task))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match self.status[task as usize] {
                // Only a fired timer makes a waiting retry ready: a replayed
                // state still holds the rank it was first queued with.
                TaskStatus::RetryWait => {
                    self.status[task as usize] = TaskStatus::Queued;
                    self.ready.push(Reverse(self.order.rank[task as usize]));
                }
                TaskStatus::Waiting => {
                    if let TaskKind::Approval(approval) = &self.task(task).kind
                        && let Some(choice) = &approval.default
                    {
                        out.push(Command::Expire {
                            task,
                            choice: choice.as_str().into(),
                        });
                    }
                }
                _ => {}
            }
        }
        self.drain_settle(budget, out);
        let mut started = 0u32;
        let mut slots = budget.slots;
        let mut reserved: Vec<u32> = Vec::new();
        // A replayed state can hold a rank twice (queued at start, queued
        // again after a lost attempt); equal ranks pop one after the other,
        // and a command's event is applied only after this call returns.
        let mut previous = None;
        while !self.paused
            && out.len() < budget.batch
            && self.running + started < self.limit
            && slots > 0
        {
            let Some(Reverse(rank)) = self.ready.pop() else {
                break;
            };
            if previous.replace(rank) == Some(rank) {
                continue;
            }
            let task = self.order.by_rank[rank as usize];
            let index = task as usize;
            if self.status[index] != TaskStatus::Queued {
                continue;
            }
            if let Some(key) = self.key(task) {
                if reserved.len() < self.key_limit.len() {
                    reserved.resize(self.key_limit.len(), 0);
                }
                if self.key_running[key] + reserved[key] >= self.key_limit[key] {
                    self.parked[key].push_back(rank);
                    continue;
                }
            }
            let attempt = self.attempts[index] + 1;
            if attempt == 1
                && let Some(when) = &self.task(task).when
            {
                let scope = Scope::new(self, task, attempt, false);
                match templates::condition(when.as_str(), scope.context(), "when") {
                    Ok(true) => {}
                    Ok(false) => {
                        out.push(Command::Skip {
                            task,
                            reason: SkipReason::Condition,
                        });
                        continue;
                    }
                    Err(error) => {
                        out.push(Command::Reject {
                            task,
                            failure: Box::new(Failure::new(
                                FailureKind::Template,
                                error.to_string(),
                            )),
                        });
                        continue;
                    }
                }
            }
            // An approval only waits: it takes no slot.
            if matches!(self.task(task).kind, TaskKind::Approval(_)) {
                out.push(Command::Await { task });
                continue;
            }
            if let Some(key) = self.key(task) {
                reserved[key] += 1;
            }
            out.push(Command::Dispatch { task, attempt });
            started += 1;
            slots -= 1;
        }
        if out.is_empty()
            && self.running == 0
            && self.waiting == 0
            && self.ready.is_empty()
            && self.timers.is_empty()
            && self.settle.is_empty()
        {
            debug_assert_eq!(self.final_count, self.status.len());
            let status = if self.failed_tasks > 0 {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            };
            out.push(Command::Finish { status });
            return;
        }
        let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
        if let Some(wake) = next_timer.into_iter().chain(self.deadline).min() {
            out.push(Command::WakeAt(wake));
        }
    }

    fn decide_ending(
        &mut self,
        status: RunStatus,
        compensate: bool,
        now: Millis,
        budget: Budget,
        out: &mut Vec<Command>,
    ) {
        let drop_waiting = |task: u32| match status {
            RunStatus::Cancelled => Command::Cancel { task },
            _ => Command::Skip {
                task,
                reason: SkipReason::RunEnding,
            },
        };
        self.drain_settle(budget, out);
        let waiting = self
            .ready
            .drain()
            .map(|Reverse(rank)| self.order.by_rank[rank as usize])
            .chain(self.timers.drain().map(|Reverse((_, task))| task))
            .chain(
                self.parked
                    .iter_mut()
                    .flat_map(|parked| parked.drain(..))
                    .map(|rank| self.order.by_rank[rank as usize]),
            )
            .collect::<Vec<u32>>();
        let mut waiting: Vec<u32> = waiting
            .into_iter()
            .filter(|&task| {
                matches!(
                    self.status[task as usize],
                    TaskStatus::Queued | TaskStatus::RetryWait
                )
            })
            .collect();
        waiting.sort_unstable_by_key(|&task| self.order.rank[task as usize]);
        waiting.dedup();
        out.extend(waiting.into_iter().map(drop_waiting));
        // Approvals no one will decide now are dropped, whatever the end.
        if self.waiting > 0 {
            out.extend(
                (0..self.status.len() as u32)
                    .filter(|&task| self.status[task as usize] == TaskStatus::Waiting)
                    .map(|task| Command::Cancel { task }),
            );
        }
        if self.running > 0 {
            if !self.kills_sent {
                self.kills_sent = true;
                out.extend(
                    (0..self.status.len() as u32)
                        .filter(|&task| self.status[task as usize] == TaskStatus::Running)
                        .map(|task| Command::Kill { task }),
                );
            }
            return;
        }
        if !out.is_empty() {
            return;
        }
        if compensate {
            self.decide_compensation(now, out);
        } else {
            out.push(Command::Finish { status });
        }
    }

    /// Whether `task` has something to undo: its `compensate` action, or,
    /// without one, the child run it made (a sub-workflow's, its spawned
    /// tasks').
    pub fn compensable(&self, task: u32) -> bool {
        self.task(task).compensate.is_some() || self.child_run(task).is_some()
    }

    /// The child run a succeeded task's output names: a `workflow:` task's
    /// `run`, a spawning task's `spawned.run`.
    pub fn child_run(&self, task: u32) -> Option<String> {
        let output = self.outputs[task as usize].as_ref()?;
        let run = match self.task(task).kind {
            TaskKind::Workflow(_) => output.get_attr("run").ok()?,
            _ => output
                .get_attr("spawned")
                .ok()
                .and_then(|spawned| spawned.get_attr("run").ok())?,
        };
        run.as_str().map(str::to_owned)
    }

    /// The tasks with something to undo, the last to finish first.
    fn compensation_sequence(&self) -> Vec<u32> {
        let mut position = vec![0usize; self.status.len()];
        for (at, &task) in self.valid.plan().order.iter().enumerate() {
            position[task as usize] = at;
        }
        let mut order: Vec<u32> = (0..self.status.len() as u32)
            .filter(|&task| self.compensable(task))
            .collect();
        order.sort_unstable_by_key(|&task| {
            Reverse((self.finished[task as usize], position[task as usize]))
        });
        order
    }

    /// Compensates succeeded tasks one at a time, the last to finish first
    /// (ties, within one instant, in reverse plan order), so each undo sees
    /// the world as the tasks after it left it.
    fn decide_compensation(&mut self, now: Millis, out: &mut Vec<Command>) {
        if self.compensating.is_some() {
            return;
        }
        if let Some(at) = self.compensation_retry_at
            && now < at
        {
            out.push(Command::WakeAt(at));
            return;
        }
        if self.compensation_order.is_empty() && self.compensation_cursor == 0 {
            self.compensation_order = self.compensation_sequence();
        }
        while !self.compensation_failed
            && let Some(&task) = self.compensation_order.get(self.compensation_cursor)
        {
            self.compensation_cursor += 1;
            if self.status[task as usize] == TaskStatus::Succeeded {
                out.push(Command::Compensate { task });
                return;
            }
        }
        let status = if self.compensation_failed {
            RunStatus::CompensationFailed
        } else {
            RunStatus::Compensated
        };
        out.push(Command::Finish { status });
    }

    fn names(&self) -> &FxHashMap<String, u32> {
        self.names.get_or_init(|| {
            self.valid
                .workflow()
                .tasks
                .iter()
                .enumerate()
                .map(|(index, task)| (task.id.clone(), index as u32))
                .collect()
        })
    }

    /// The template context of `task`: `inputs`, the tasks it reads,
    /// `run`, `task`, and for compensation its own `output`.
    pub(crate) fn context(&self, task: u32, attempt: u32, compensation: bool) -> Value {
        let names = self.names();
        let tasks: std::collections::BTreeMap<String, Value> = task_references(self.task(task))
            .into_iter()
            .filter_map(|name| {
                let index = *names.get(&name)?;
                let view = minijinja::context! {
                    output => self.outputs[index as usize].clone().unwrap_or(Value::UNDEFINED),
                    status => self.status[index as usize].name(),
                    // What an escalation target is handed: why it failed.
                    failure => self.failures.get(&index).map(|failure| failure.message.clone()),
                };
                Some((name, view))
            })
            .collect();
        // A retry sees why the attempt before it failed (a quality gate's
        // message, an exit code's log tail).
        let failure = (attempt > 1)
            .then(|| self.failures.get(&task))
            .flatten()
            .map(|failure| failure.message.clone());
        let own = minijinja::context! {
            id => self.task(task).id.clone(),
            attempt => attempt,
            failure => failure,
        };
        let output = if compensation {
            self.outputs[task as usize]
                .clone()
                .unwrap_or(Value::UNDEFINED)
        } else {
            Value::UNDEFINED
        };
        // A `repeat` task sees the iteration it is on and the output of the
        // one before (undefined on the first).
        let (previous, iteration) = match self.task(task).repeat {
            Some(_) if !compensation => (
                match self.iterations.get(&task) {
                    Some(_) => self.outputs[task as usize]
                        .clone()
                        .unwrap_or(Value::UNDEFINED),
                    None => Value::UNDEFINED,
                },
                Value::from(self.iteration_number(task)),
            ),
            _ => (Value::UNDEFINED, Value::UNDEFINED),
        };
        let context = minijinja::context! {
            inputs => self.inputs.clone(),
            tasks => Value::from(tasks),
            run => self.run_context.clone(),
            task => own,
            output => output,
            previous => previous,
            iteration => iteration,
        };
        let params = &self.task(task).params;
        if params.is_empty() {
            return context;
        }
        // Parameters are templates over the rest of the context; one that
        // does not render is left undefined, and the field using it fails
        // to render with the reason.
        let params: std::collections::BTreeMap<&str, Value> = params
            .iter()
            .map(|(name, value)| {
                let rendered = templates::render_json(value, &context, "params")
                    .map_or(Value::UNDEFINED, |value| {
                        Value::from(minijinja::value::Serde(value))
                    });
                (name.as_str(), rendered)
            })
            .collect();
        minijinja::context! { params => Value::from(params), ..context }
    }

    /// What attempt `attempt` of `task` runs, with every template evaluated.
    /// Whether an attempt's `output` passes the task's `check`: the first
    /// expression that does not hold fails the attempt with its message (a
    /// `check` failure, which `retry.on: [check]` retries); one that does
    /// not evaluate is a template failure, never retried.
    pub fn check_output(
        &self,
        task: u32,
        attempt: u32,
        output: Option<&serde_json::Value>,
    ) -> Result<(), Failure> {
        let checks = &self.task(task).check;
        if checks.is_empty() {
            return Ok(());
        }
        let output = output.map_or(Value::UNDEFINED, |output| {
            Value::from(minijinja::value::Serde(output))
        });
        let context = minijinja::context! {
            output => output,
            attempt => attempt,
            ..self.context(task, attempt, false)
        };
        for check in checks {
            match templates::condition(check.expr.as_str(), &context, "check") {
                Ok(true) => {}
                Ok(false) => {
                    let message = check.message.clone().unwrap_or_else(|| {
                        format!("check `{}` does not hold", check.expr.as_str())
                    });
                    return Err(Failure::new(FailureKind::Check, message));
                }
                Err(error) => return Err(Failure::new(FailureKind::Template, error.to_string())),
            }
        }
        Ok(())
    }

    /// What an attempt of a `repeat` task that produced `output` means: the
    /// loop is done (`until` holds), goes round again, or has run `max`
    /// iterations (a `repeat` failure, never retried). A task without
    /// `repeat` is always done; an `until` that does not evaluate fails it.
    pub fn iteration(
        &self,
        task: u32,
        attempt: u32,
        output: Option<&serde_json::Value>,
    ) -> Result<Iteration, Failure> {
        let Some(repeat) = &self.task(task).repeat else {
            return Ok(Iteration::Done);
        };
        let context = minijinja::context! {
            output => output.map_or(Value::UNDEFINED, |output| Value::from(minijinja::value::Serde(output))),
            ..self.context(task, attempt, false)
        };
        match templates::condition(repeat.until.as_str(), &context, "repeat.until") {
            Ok(true) => Ok(Iteration::Done),
            Ok(false) if self.iteration_number(task) < repeat.max => Ok(Iteration::Again),
            Ok(false) => Err(Failure::new(
                FailureKind::Repeat,
                format!(
                    "`{}` did not hold after {} iteration(s)",
                    repeat.until.as_str(),
                    repeat.max
                ),
            )),
            Err(error) => Err(Failure::new(FailureKind::Template, error.to_string())),
        }
    }

    /// The iteration a `repeat` task is on, from 1.
    fn iteration_number(&self, task: u32) -> u32 {
        self.iterations.get(&task).copied().unwrap_or(0) + 1
    }

    /// Renders one of `task`'s templates (`what` names it in errors) as it
    /// would render for attempt `attempt` now.
    pub fn render(
        &self,
        task: u32,
        attempt: u32,
        text: &str,
        what: &str,
    ) -> Result<String, TemplateError> {
        Scope::new(self, task, attempt, false).text(text, what)
    }

    pub fn resolve(&self, task: u32, attempt: u32) -> Result<Resolved, TemplateError> {
        self.resolve_in(&Scope::new(self, task, attempt, false), task)
    }

    /// The run's `concurrency`, if it has one.
    pub(crate) fn concurrency_limit(&self) -> Option<u32> {
        (self.limit != NONE).then_some(self.limit)
    }

    /// Item `index` of a `foreach` task's list: its templates also see
    /// `item` and `index`.
    pub fn resolve_item(
        &self,
        task: u32,
        attempt: u32,
        index: usize,
        item: &serde_json::Value,
    ) -> Result<Resolved, TemplateError> {
        let context = minijinja::context! {
            item => Value::from(minijinja::value::Serde(item)),
            index => index,
            ..self.context(task, attempt, false)
        };
        self.resolve_in(&Scope::given(self, context), task)
    }

    /// Copy `index` of a `swarm` task: its templates also see `variant`
    /// (its entry of `variants`, or its index among `count` copies).
    pub fn resolve_variant(
        &self,
        task: u32,
        attempt: u32,
        index: usize,
    ) -> Result<Resolved, TemplateError> {
        let variant = self
            .task(task)
            .swarm
            .as_ref()
            .and_then(|swarm| swarm.variants.get(index))
            .map_or_else(
                || Value::from(index),
                |variant| Value::from(minijinja::value::Serde(variant)),
            );
        let context = minijinja::context! {
            variant => variant,
            ..self.context(task, attempt, false)
        };
        self.resolve_in(&Scope::given(self, context), task)
    }

    fn resolve_in(&self, scope: &Scope<'_>, task: u32) -> Result<Resolved, TemplateError> {
        let definition = self.task(task);
        let work = match &definition.kind {
            TaskKind::Run(script) => Work::Shell(scope.shell(script.as_str())?),
            TaskKind::Command(argv) => Work::Command(
                argv.iter()
                    .map(|argument| scope.text(argument.as_str(), "command"))
                    .collect::<Result<_, _>>()?,
            ),
            TaskKind::Http(http) => Work::Http(Box::new(scope.http(http)?)),
            TaskKind::Noop => Work::Noop,
            TaskKind::Handler(name) => Work::Handler(name.clone()),
            TaskKind::Approval(approval) => Work::Approval {
                prompt: scope.text(approval.prompt.as_str(), "prompt")?,
                choices: approval.choices.clone(),
            },
            TaskKind::Workflow(child) => {
                let inputs = child
                    .inputs
                    .iter()
                    .map(|(name, value)| {
                        let what = format!("workflow.inputs.{name}");
                        Ok((name.clone(), scope.json(value, &what)?))
                    })
                    .collect::<Result<_, TemplateError>>()?;
                let workflow = match (&child.inline, &child.reference) {
                    (Some(inline), _) => ChildWorkflow::Inline(Arc::new(inline.clone())),
                    (None, Some(reference)) => ChildWorkflow::Reference(reference.clone()),
                    (None, None) => unreachable!("a sub-workflow is parsed with a ref or inline"),
                };
                Work::Workflow(Box::new(ChildRun { workflow, inputs }))
            }
            other => {
                return Err(TemplateError {
                    what: other.name().to_owned(),
                    detail: format!("`{}` tasks cannot run in this engine", other.name()),
                });
            }
        };
        scope.finish(definition, work)
    }

    /// The `compensate` action of `task`, with `output` bound to its output.
    pub fn resolve_compensation(&self, task: u32) -> Result<Resolved, TemplateError> {
        let scope = Scope::new(self, task, self.attempts(task), true);
        let definition = self.task(task);
        let Some(action) = definition.compensate.as_deref() else {
            return Err(TemplateError {
                what: "compensate".to_owned(),
                detail: format!("task `{}` has no compensate action", definition.id),
            });
        };
        let work = scope.action(action, "compensate.command")?;
        scope.finish(definition, work)
    }

    /// A hook's action, rendered over `inputs`, `run`, the `event` that
    /// fired it and, for a task's event, `task` (its id and attempt).
    pub fn resolve_hook(
        &self,
        task: Option<u32>,
        action: &Action,
        event: &serde_json::Value,
    ) -> Result<Resolved, TemplateError> {
        let task = task.map(|task| {
            minijinja::context! {
                id => self.task(task).id.clone(),
                attempt => self.attempts(task),
            }
        });
        let context = minijinja::context! {
            inputs => self.inputs.clone(),
            run => self.run_context.clone(),
            event => Value::from(minijinja::value::Serde(event)),
            task => task.unwrap_or(Value::UNDEFINED),
        };
        let scope = Scope::given(self, context);
        Ok(Resolved {
            env: Vec::new(),
            cwd: None,
            work: scope.action(action, "hook.command")?,
        })
    }

    /// Figures for the run so far.
    pub fn metrics(&self) -> RunMetrics {
        let dag = self.valid.dag();
        let count = self.status.len();
        let mut by_level: Vec<u32> = (0..count as u32).collect();
        by_level.sort_by_key(|&task| dag.level(task));
        let mut path = vec![0u64; count];
        let mut critical = 0u64;
        for &task in &by_level {
            let longest_need = dag
                .needs(task)
                .iter()
                .map(|&need| path[need as usize])
                .max()
                .unwrap_or(0);
            path[task as usize] = longest_need + self.elapsed(task).as_millis();
            critical = critical.max(path[task as usize]);
        }
        let mut usage = Usage::default();
        for output in self.outputs.iter().flatten() {
            if let Ok(reported) = output.get_attr("baton") {
                if let Some(tokens) = reported
                    .get_attr("tokens")
                    .ok()
                    .and_then(|tokens| u64::try_from(tokens).ok())
                {
                    usage.tokens += tokens;
                }
                if let Some(cost) = reported
                    .get_attr("cost")
                    .ok()
                    .and_then(|cost| f64::try_from(cost).ok())
                {
                    usage.cost += cost;
                }
            }
        }
        let wall = match (self.started_at, self.finished_at) {
            (Some(start), Some(end)) => end.since(start),
            _ => Duration::ZERO,
        };
        let task_time = Duration::from_millis(self.busy.iter().sum());
        RunMetrics {
            wall,
            task_time,
            speedup: if wall.is_zero() {
                0.0
            } else {
                task_time.as_millis() as f64 / wall.as_millis() as f64
            },
            attempts: self
                .attempts
                .iter()
                .map(|&attempts| u64::from(attempts))
                .sum(),
            critical_path: Duration::from_millis(critical),
            usage,
        }
    }
}

/// Figures of one run, from its events.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunMetrics {
    pub wall: Duration,
    /// Time spent in task attempts, summed.
    pub task_time: Duration,
    /// `task_time / wall`: how much parallelism bought.
    pub speedup: f64,
    pub attempts: u64,
    /// The longest chain of needs, by the time each task took.
    pub critical_path: Duration,
    pub usage: Usage,
}

/// What tasks report under the reserved `baton` key of their output.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub tokens: u64,
    pub cost: f64,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Format, check_source};

    /// Drives a state the way the shell does, with a hand-held clock:
    /// decide, record each command's event, apply it.
    struct Driver {
        state: RunState,
        now: Millis,
        log: Vec<Event>,
        budget: Budget,
    }

    impl Driver {
        fn new(spec: &str) -> Driver {
            let valid = check_source(spec, Format::Yaml).expect("a valid spec");
            let mut driver = Driver {
                state: RunState::new(
                    Arc::new(valid),
                    RunSetup {
                        run_id: "run-1".to_owned(),
                        ..RunSetup::default()
                    },
                ),
                now: Millis(0),
                log: Vec::new(),
                budget: Budget::default(),
            };
            driver.record(Event::RunStarted { at: Millis(0) });
            driver
        }

        /// A fresh state with the log applied, as a resume rebuilds it.
        fn replay(&self) -> RunState {
            let mut state = RunState::new(
                self.state.shared_valid(),
                RunSetup {
                    run_id: "run-1".to_owned(),
                    ..RunSetup::default()
                },
            );
            for event in &self.log {
                state.apply(event);
            }
            state
        }

        fn index(&self, id: &str) -> u32 {
            self.state
                .valid()
                .workflow()
                .tasks
                .iter()
                .position(|task| task.id == id)
                .unwrap() as u32
        }

        fn id(&self, task: u32) -> &str {
            &self.state.task(task).id
        }

        fn record(&mut self, event: Event) {
            self.state.apply(&event);
            self.log.push(event);
        }

        /// One round of decisions, recorded; returns them as readable text.
        fn step(&mut self) -> Vec<String> {
            let mut commands = Vec::new();
            self.state.decide(self.now, self.budget, &mut commands);
            let shown = commands
                .iter()
                .map(|command| match command {
                    Command::Dispatch { task, attempt } => {
                        format!("start {}#{attempt}", self.id(*task))
                    }
                    Command::Skip { task, reason } => format!("skip {} {reason:?}", self.id(*task)),
                    Command::Cancel { task } => format!("cancel {}", self.id(*task)),
                    Command::Kill { task } => format!("kill {}", self.id(*task)),
                    Command::Reject { task, .. } => format!("reject {}", self.id(*task)),
                    Command::Compensate { task } => format!("compensate {}", self.id(*task)),
                    Command::Await { task } => format!("await {}", self.id(*task)),
                    Command::Expire { task, choice } => {
                        format!("expire {} {choice}", self.id(*task))
                    }
                    Command::TimeOutRun => "time out".to_owned(),
                    Command::Finish { status } => format!("finish {status}"),
                    Command::WakeAt(at) => format!("wake {}", at.0),
                })
                .collect();
            for command in &commands {
                if let Some(event) = command.event(self.now) {
                    self.record(event);
                }
            }
            shown
        }

        fn succeed(&mut self, id: &str) {
            let task = self.index(id);
            let attempt = self.state.attempts(task);
            self.record(Event::TaskSucceeded {
                at: self.now,
                task,
                attempt,
                output: Some(Box::new(serde_json::json!({ "from": id }))),
            });
        }

        fn fail(&mut self, id: &str, kind: FailureKind) {
            let task = self.index(id);
            let attempt = self.state.attempts(task);
            self.record(Event::TaskFailed {
                at: self.now,
                task,
                attempt,
                failure: Box::new(Failure::new(kind, "boom")),
            });
        }

        fn cancelled(&mut self, id: &str) {
            let task = self.index(id);
            self.record(Event::TaskCancelled { at: self.now, task });
        }

        fn status(&self, id: &str) -> TaskStatus {
            self.state.status(self.index(id))
        }

        /// Carries out a control the way the shell does, or says why not.
        fn control(&mut self, control: Control) -> Result<(), ControlError> {
            let events = self.state.control(&control, self.now)?;
            for event in events {
                self.record(event);
            }
            Ok(())
        }

        fn decide(&mut self, task: &str, choice: &str) -> Result<(), ControlError> {
            self.control(Control::Decide(Decision {
                task: task.to_owned(),
                choice: choice.to_owned(),
                by: Some("ana".to_owned()),
                comment: None,
            }))
        }
    }

    const APPROVAL: &str = "name: a\ntasks:\n  build: {run: x}\n  gate: {approval: {prompt: ship?, timeout: 1h, default: reject}, needs: [build]}\n  ship: {run: x, needs: [gate], when: \"tasks.gate.output.choice == 'approve'\"}\n";

    #[test]
    fn an_approval_waits_without_a_slot_and_its_decision_feeds_when() {
        let mut run = Driver::new(APPROVAL);
        run.state.limit = 1;
        assert_eq!(run.step(), ["start build#1"]);
        run.succeed("build");
        assert_eq!(run.step(), ["await gate"]);
        assert_eq!(run.status("gate"), TaskStatus::Waiting);
        assert_eq!(run.step(), ["wake 3600000"]);
        assert_eq!(
            run.decide("gate", "maybe"),
            Err(ControlError::BadChoice {
                task: "gate".to_owned(),
                choice: "maybe".to_owned(),
                choices: vec!["approve".to_owned(), "reject".to_owned()],
            })
        );
        assert!(matches!(
            run.decide("build", "approve"),
            Err(ControlError::NotApproval(_))
        ));
        run.decide("gate", "approve").unwrap();
        assert_eq!(
            run.state.output_json(run.index("gate")).unwrap(),
            serde_json::json!({"choice": "approve", "by": "ana", "comment": null, "timed_out": false})
        );
        assert!(matches!(
            run.decide("gate", "reject"),
            Err(ControlError::NotWaiting { .. })
        ));
        assert_eq!(run.step(), ["start ship#1"]);
        run.succeed("ship");
        assert_eq!(run.step(), ["finish succeeded"]);
    }

    #[test]
    fn an_approval_timeout_takes_its_default() {
        let mut run = Driver::new(APPROVAL);
        run.step();
        run.succeed("build");
        run.step();
        run.now = Millis(3_600_000);
        assert_eq!(run.step(), ["expire gate reject"]);
        assert_eq!(run.step(), ["skip ship Condition"]);
        assert_eq!(run.step(), ["finish succeeded"]);
        let output = run.state.output_json(run.index("gate")).unwrap();
        assert_eq!(output["timed_out"], true);
    }

    #[test]
    fn cancelling_drops_a_waiting_approval() {
        let mut run = Driver::new("name: a\ntasks:\n  gate: {approval: {prompt: ok?}}\n");
        assert_eq!(run.step(), ["await gate"]);
        assert!(run.step().is_empty());
        run.control(Control::Cancel).unwrap();
        assert_eq!(run.step(), ["cancel gate"]);
        assert_eq!(run.step(), ["finish cancelled"]);
        assert_eq!(run.control(Control::Cancel), Err(ControlError::Finished));
    }

    #[test]
    fn a_paused_run_lets_running_tasks_finish_and_starts_none_until_resumed() {
        let mut run = Driver::new("name: p\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [a]}\n");
        assert_eq!(run.step(), ["start a#1"]);
        run.control(Control::Pause).unwrap();
        assert_eq!(run.state.run_status(), RunStatus::Paused);
        assert_eq!(
            run.control(Control::Pause),
            Err(ControlError::AlreadyPaused)
        );
        run.succeed("a");
        assert!(run.step().is_empty());
        assert_eq!(run.status("b"), TaskStatus::Queued);
        run.control(Control::Resume).unwrap();
        assert_eq!(run.control(Control::Resume), Err(ControlError::NotPaused));
        assert_eq!(run.state.run_status(), RunStatus::Running);
        assert_eq!(run.step(), ["start b#1"]);
    }

    #[test]
    fn a_repeat_goes_round_until_it_holds_and_replays_and_restores_the_same() {
        let spec = "name: r\ntasks:\n  a: {run: x, repeat: {until: 'output.n >= 2', max: 3}}\n";
        let mut run = Driver::new(spec);
        assert_eq!(run.step(), ["start a#1"]);
        let one = serde_json::json!({"n": 1});
        assert_eq!(run.state.iteration(0, 1, Some(&one)), Ok(Iteration::Again));
        run.record(Event::TaskIterated {
            at: run.now,
            task: 0,
            attempt: 1,
            output: Some(Box::new(one)),
        });
        assert_eq!(run.status("a"), TaskStatus::Queued);
        let snapshot = run.state.snapshot(run.log.len() as u64);
        let restored =
            RunState::restore(run.state.shared_valid(), RunSetup::default(), snapshot).unwrap();
        let context = restored.context(0, 2, false);
        assert_eq!(context.get_attr("iteration").unwrap(), Value::from(2));
        assert_eq!(
            context.get_attr("previous").unwrap().get_attr("n").unwrap(),
            Value::from(1)
        );
        assert_eq!(run.step(), ["start a#2"]);
        let two = serde_json::json!({"n": 2});
        assert_eq!(run.state.iteration(0, 2, Some(&two)), Ok(Iteration::Done));
        run.succeed("a");
        assert_eq!(run.step(), ["finish succeeded"]);

        let mut fresh = RunState::new(
            run.state.shared_valid(),
            RunSetup {
                run_id: "run-1".to_owned(),
                ..RunSetup::default()
            },
        );
        let original = crate::run::Trace::of(&run.log);
        assert_eq!(crate::run::replay(&mut fresh, &run.log), Ok(original));
    }

    #[test]
    fn approvals_and_pauses_survive_a_snapshot() {
        let mut run = Driver::new(APPROVAL);
        run.step();
        run.succeed("build");
        run.step();
        run.control(Control::Pause).unwrap();
        run.record(Event::ControlReceived {
            at: run.now,
            seq: 0,
            control: Box::new(Control::Pause),
        });
        let snapshot = run.state.snapshot(run.log.len() as u64);
        let restored =
            RunState::restore(run.state.shared_valid(), RunSetup::default(), snapshot).unwrap();
        assert_eq!(restored.status(1), TaskStatus::Waiting);
        assert_eq!(restored.waiting(), 1);
        assert_eq!(restored.run_status(), RunStatus::Paused);
        assert_eq!(restored.controls_read(), 1);
    }

    const EXIT_1: FailureKind = FailureKind::Exit { code: 1 };

    #[test]
    fn a_linear_chain_runs_one_task_after_another() {
        let mut run = Driver::new(
            "name: l\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [a]}\n  c: {run: x, needs: [b]}\n",
        );
        assert_eq!(run.step(), ["start a#1"]);
        assert!(run.step().is_empty());
        run.succeed("a");
        assert_eq!(run.step(), ["start b#1"]);
        run.succeed("b");
        assert_eq!(run.step(), ["start c#1"]);
        run.succeed("c");
        assert_eq!(run.step(), ["finish succeeded"]);
        assert_eq!(run.state.run_status(), RunStatus::Succeeded);
    }

    #[test]
    fn a_diamond_joins_after_both_branches() {
        let mut run = Driver::new(
            "name: d\ntasks:\n  a: {run: x}\n  c: {run: x, needs: [a]}\n  b: {run: x, needs: [a]}\n  d: {run: x, needs: [b, c]}\n",
        );
        assert_eq!(run.step(), ["start a#1"]);
        run.succeed("a");
        assert_eq!(run.step(), ["start b#1", "start c#1"]);
        run.succeed("c");
        assert!(run.step().is_empty());
        run.succeed("b");
        assert_eq!(run.step(), ["start d#1"]);
    }

    #[test]
    fn ready_tasks_start_by_priority_then_id_within_the_limit() {
        let mut run = Driver::new(
            "name: w\nconcurrency: 2\ntasks:\n  e: {run: x}\n  d: {run: x}\n  c: {run: x, priority: 5}\n  b: {run: x}\n  a: {run: x}\n",
        );
        assert_eq!(run.step(), ["start c#1", "start a#1"]);
        run.succeed("a");
        assert_eq!(run.step(), ["start b#1"]);
    }

    #[test]
    fn tasks_sharing_a_key_take_turns_within_its_limit() {
        let mut run = Driver::new(
            "name: k\nconcurrency_limits: {gpu: 2}\ntasks:\n  a: {run: x, concurrency_key: db}\n  b: {run: x, concurrency_key: db}\n  c: {run: x, concurrency_key: gpu}\n  d: {run: x, concurrency_key: gpu}\n  e: {run: x, concurrency_key: gpu}\n  f: {run: x}\n",
        );
        assert_eq!(
            run.step(),
            ["start a#1", "start c#1", "start d#1", "start f#1"]
        );
        run.succeed("a");
        run.succeed("c");
        assert_eq!(run.step(), ["start b#1", "start e#1"]);
    }

    #[test]
    fn a_retry_waits_for_its_backoff_on_the_injected_clock() {
        let mut run = Driver::new(
            "name: r\ntasks:\n  a: {run: x, retry: {max_attempts: 3, backoff: linear, initial: 2s}}\n",
        );
        assert_eq!(run.step(), ["start a#1"]);
        run.now = Millis(1_000);
        run.fail("a", EXIT_1);
        assert_eq!(run.status("a"), TaskStatus::RetryWait);
        run.now = Millis(2_999);
        assert_eq!(run.step(), ["wake 3000"]);
        run.now = Millis(3_000);
        assert_eq!(run.step(), ["start a#2"]);
        run.now = Millis(4_000);
        run.fail("a", EXIT_1);
        assert_eq!(run.step(), ["wake 8000"]);
        run.now = Millis(8_000);
        assert_eq!(run.step(), ["start a#3"]);
        run.succeed("a");
        assert_eq!(run.step(), ["finish succeeded"]);
        assert_eq!(run.state.attempts(0), 3);
    }

    #[test]
    fn retries_stop_at_max_attempts_and_skip_unlisted_failures() {
        let mut run = Driver::new(
            "name: r\non_failure: continue\ntasks:\n  a: {run: x, retry: {max_attempts: 2, initial: 1s}}\n  b: {run: x, retry: {max_attempts: 5, initial: 1s, on: ['exit:75']}}\n",
        );
        assert_eq!(run.step(), ["start a#1", "start b#1"]);
        run.fail("a", EXIT_1);
        run.fail("b", EXIT_1);
        assert_eq!(run.status("b"), TaskStatus::Failed);
        run.now = Millis(1_000);
        assert_eq!(run.step(), ["start a#2"]);
        run.fail("a", EXIT_1);
        assert_eq!(run.status("a"), TaskStatus::Failed);
        assert_eq!(run.step(), ["finish failed"]);
    }

    #[test]
    fn fail_fast_kills_running_tasks_and_skips_the_rest() {
        let mut run = Driver::new(
            "name: f\ntasks:\n  a: {run: x}\n  b: {run: x}\n  c: {run: x, needs: [a]}\n  d: {run: x, needs: [b]}\n",
        );
        assert_eq!(run.step(), ["start a#1", "start b#1"]);
        run.fail("a", EXIT_1);
        assert_eq!(run.step(), ["skip c NeedFailed { need: 0 }", "kill b"]);
        assert!(run.step().is_empty());
        run.cancelled("b");
        assert_eq!(run.step(), ["skip d NeedFailed { need: 1 }"]);
        assert_eq!(run.step(), ["finish failed"]);
        assert_eq!(run.state.reason(), Some("task `a` failed"));
    }

    #[test]
    fn continue_lets_independent_branches_finish() {
        let mut run = Driver::new(
            "name: c\non_failure: continue\ntasks:\n  a: {run: x}\n  b: {run: x}\n  c: {run: x, needs: [a]}\n  d: {run: x, needs: [b]}\n",
        );
        assert_eq!(run.step(), ["start a#1", "start b#1"]);
        run.fail("a", EXIT_1);
        assert_eq!(run.step(), ["skip c NeedFailed { need: 0 }"]);
        run.succeed("b");
        assert_eq!(run.step(), ["start d#1"]);
        run.succeed("d");
        assert_eq!(run.step(), ["finish failed"]);
        assert_eq!(run.status("d"), TaskStatus::Succeeded);
    }

    const ESCALATION: &str = "name: s\ntasks:\n  worker: {run: x, escalate: supervisor}\n  supervisor: {run: x}\n  after: {run: x, needs: [worker]}\n  report: {run: x, needs: [supervisor]}\n";

    #[test]
    fn a_failure_escalates_to_its_target_which_decides_the_run() {
        let mut run = Driver::new(ESCALATION);
        assert_eq!(run.step(), ["start worker#1"]);
        run.fail("worker", EXIT_1);
        assert_eq!(
            run.step(),
            ["skip after NeedFailed { need: 0 }", "start supervisor#1"]
        );
        run.succeed("supervisor");
        assert_eq!(run.step(), ["start report#1"]);
        run.succeed("report");
        assert_eq!(run.step(), ["finish succeeded"], "the failure was handled");
        assert_eq!(run.status("worker"), TaskStatus::Failed);
        assert_eq!(run.replay().run_status(), RunStatus::Succeeded);

        let mut run = Driver::new(ESCALATION);
        run.step();
        run.fail("worker", EXIT_1);
        run.step();
        run.fail("supervisor", EXIT_1);
        assert_eq!(run.step(), ["skip report NeedFailed { need: 1 }"]);
        assert_eq!(
            run.step(),
            ["finish failed"],
            "an escalation target's failure is not handled"
        );
    }

    #[test]
    fn a_success_leaves_its_escalation_target_skipped() {
        let mut run = Driver::new(ESCALATION);
        run.step();
        run.succeed("worker");
        assert_eq!(
            run.step(),
            ["skip supervisor NotEscalated", "start after#1"]
        );
        assert_eq!(run.step(), ["skip report NeedsSkipped"]);
        run.succeed("after");
        assert_eq!(run.step(), ["finish succeeded"]);
    }

    #[test]
    fn compensation_goes_last_finished_first_retries_and_stops_where_it_keeps_failing() {
        let mut run = Driver::new(
            "name: s\non_failure: compensate\ntasks:\n  a: {run: x, compensate: {run: undo}}\n  b: {run: x, needs: [a], compensate: {run: undo}, retry: {max_attempts: 2, backoff: constant, initial: 1s}}\n  c: {run: x, needs: [a], compensate: {run: undo}}\n  d: {run: x, needs: [b, c]}\n",
        );
        run.step();
        run.succeed("a");
        assert_eq!(run.step(), ["start b#1", "start c#1"]);
        // b was planned before c but finishes after it: it is undone first.
        run.now = Millis(run.now.0 + 10);
        run.succeed("c");
        run.now = Millis(run.now.0 + 10);
        run.succeed("b");
        assert_eq!(run.step(), ["start d#1"]);
        run.fail("d", EXIT_1);
        assert_eq!(run.step(), ["compensate b"]);
        let boom = |run: &mut Driver| {
            run.record(Event::CompensationFinished {
                at: run.now,
                task: 1,
                error: Some("boom".to_owned()),
            })
        };
        boom(&mut run);
        let retry_at = run.now.0 + 1000;
        assert_eq!(run.step(), [format!("wake {retry_at}")]);
        run.now = Millis(retry_at);
        assert_eq!(run.step(), ["compensate b"], "retried by b's policy");
        boom(&mut run);
        assert_eq!(run.step(), ["finish compensation_failed"]);
        assert_eq!(run.status("b"), TaskStatus::CompensationFailed);
        assert_eq!(run.status("c"), TaskStatus::Succeeded, "not undone");
        assert_eq!(
            run.state.reason(),
            Some(
                "task `d` failed; compensating `b` failed after 2 attempt(s): boom; not compensated: b, c, a"
            )
        );
        let replayed = run.replay();
        assert_eq!(replayed.run_status(), RunStatus::CompensationFailed);
        assert_eq!(replayed.reason(), run.state.reason());
    }

    #[test]
    fn compensation_undoes_succeeded_tasks_in_reverse_order() {
        let mut run = Driver::new(
            "name: s\non_failure: compensate\ntasks:\n  a: {run: x, compensate: {run: undo}}\n  b: {run: x, needs: [a], compensate: {run: undo}}\n  c: {run: x, needs: [b]}\n  d: {run: x, needs: [a]}\n",
        );
        run.step();
        run.succeed("a");
        assert_eq!(run.step(), ["start b#1", "start d#1"]);
        run.succeed("b");
        run.fail("d", EXIT_1);
        assert_eq!(run.step(), ["skip c RunEnding"]);
        assert_eq!(run.step(), ["compensate b"]);
        run.record(Event::CompensationFinished {
            at: run.now,
            task: 1,
            error: None,
        });
        assert_eq!(run.step(), ["compensate a"]);
        run.record(Event::CompensationFinished {
            at: run.now,
            task: 0,
            error: None,
        });
        assert_eq!(run.step(), ["finish compensated"]);
        assert_eq!(run.status("a"), TaskStatus::Compensated);
    }

    #[test]
    fn a_false_condition_skips_the_task_and_tasks_that_need_only_it() {
        let mut run = Driver::new(
            "name: w\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [a], when: \"tasks.a.output.from == 'z'\"}\n  c: {run: x, needs: [b]}\n  d: {run: x, needs: [a, b]}\n",
        );
        run.step();
        run.succeed("a");
        assert_eq!(run.step(), ["skip b Condition"]);
        assert_eq!(run.step(), ["skip c NeedsSkipped", "start d#1"]);
    }

    #[test]
    fn on_timeout_skip_lets_dependants_see_a_skip() {
        let mut run = Driver::new(
            "name: t\ntasks:\n  a: {run: x, timeout: {after: 1s, on_timeout: skip}}\n  b: {run: x, needs: [a]}\n",
        );
        run.step();
        run.fail("a", FailureKind::Timeout);
        assert_eq!(run.status("a"), TaskStatus::Skipped);
        assert_eq!(run.step(), ["skip b NeedsSkipped"]);
        assert_eq!(run.step(), ["finish succeeded"]);
    }

    #[test]
    fn on_timeout_compensate_compensates_whatever_the_policy() {
        let mut run = Driver::new(
            "name: t\non_failure: continue\ntasks:\n  a: {run: x, compensate: {run: undo}}\n  b: {run: x, needs: [a], timeout: {after: 1s, on_timeout: compensate}}\n",
        );
        run.step();
        run.succeed("a");
        run.step();
        run.fail("b", FailureKind::Timeout);
        assert_eq!(run.status("b"), TaskStatus::TimedOut);
        assert_eq!(run.step(), ["compensate a"]);
        run.record(Event::CompensationFinished {
            at: run.now,
            task: 0,
            error: None,
        });
        assert_eq!(run.step(), ["finish compensated"]);
        assert_eq!(run.state.reason(), Some("task `b` timed out"));
    }

    #[test]
    fn a_lost_attempt_runs_again_with_the_next_attempt_number() {
        let mut run =
            Driver::new("name: l\ntasks:\n  a: {run: x}\n  b: {run: x, concurrency_key: k}\n");
        assert_eq!(run.step(), ["start a#1", "start b#1"]);
        assert_eq!(run.state.in_flight(), [(0, 1), (1, 1)]);
        // As after a crash: a fresh state replays the log (its ready heap
        // still holds every root), then loses what was in flight.
        let mut replayed = RunState::new(
            Arc::clone(&run.state.valid),
            RunSetup {
                run_id: "run-1".to_owned(),
                ..RunSetup::default()
            },
        );
        for event in &run.log {
            replayed.apply(event);
        }
        run.state = replayed;
        for (task, attempt) in run.state.in_flight() {
            run.record(Event::AttemptLost {
                at: run.now,
                task,
                attempt,
            });
        }
        assert!(run.state.in_flight().is_empty());
        assert_eq!(run.step(), ["start a#2", "start b#2"]);
        run.succeed("a");
        run.succeed("b");
        assert_eq!(run.step(), ["finish succeeded"]);
    }

    #[test]
    fn a_run_timeout_stops_everything() {
        let mut run = Driver::new(
            "name: t\ntimeout: 10s\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [a]}\n",
        );
        assert_eq!(run.step(), ["start a#1", "wake 10000"]);
        run.now = Millis(10_000);
        assert_eq!(run.step(), ["time out"]);
        assert_eq!(run.step(), ["kill a"]);
        run.cancelled("a");
        assert_eq!(run.step(), ["skip b NeedFailed { need: 0 }"]);
        assert_eq!(run.step(), ["finish failed"]);
        assert_eq!(run.state.reason(), Some("the run timed out after 10s"));
    }

    #[test]
    fn cancelling_kills_running_tasks_and_cancels_waiting_ones() {
        let mut run =
            Driver::new("name: c\nconcurrency: 1\ntasks:\n  a: {run: x}\n  b: {run: x}\n");
        assert_eq!(run.step(), ["start a#1"]);
        run.record(Event::CancelRequested { at: run.now });
        assert_eq!(run.step(), ["cancel b", "kill a"]);
        run.cancelled("a");
        assert_eq!(run.step(), ["finish cancelled"]);
        assert_eq!(run.status("b"), TaskStatus::Cancelled);
    }

    #[test]
    fn templates_resolve_over_inputs_and_upstream_outputs() {
        let mut run = Driver::new(
            "name: t\ninputs: {who: {type: string, default: x}}\ntasks:\n  a: {run: x}\n  b: {needs: [a], command: [echo, '{{ tasks.a.output.from }}'], env: {WHO: '{{ inputs.who }}'}}\n",
        );
        run.step();
        run.succeed("a");
        run.step();
        let resolved = run.state.resolve(1, 1).unwrap();
        assert_eq!(
            resolved.work,
            Work::Command(vec!["echo".into(), "a".into()])
        );
        assert_eq!(resolved.env, [("WHO".to_owned(), String::new())]);
    }

    #[test]
    fn usage_under_the_baton_key_is_totalled() {
        let mut run = Driver::new("name: u\ntasks:\n  a: {run: x}\n  b: {run: x}\n");
        run.step();
        for (task, tokens) in [(0, 100), (1, 23)] {
            run.record(Event::TaskSucceeded {
                at: Millis(5),
                task,
                attempt: 1,
                output: Some(Box::new(
                    serde_json::json!({"baton": {"tokens": tokens, "cost": 0.5}}),
                )),
            });
        }
        let metrics = run.state.metrics();
        assert_eq!(metrics.usage.tokens, 123);
        assert_eq!(metrics.usage.cost, 1.0);
        assert_eq!(metrics.attempts, 2);
        assert_eq!(metrics.task_time, Duration::from_millis(10));
    }

    /// A random DAG spec: task `i` needs a few of the tasks before it.
    fn random_spec(needs: &[Vec<usize>], policy: &str) -> String {
        let mut spec = format!("name: p\non_failure: {policy}\nconcurrency: 3\ntasks:\n");
        for (task, needs) in needs.iter().enumerate() {
            let needs: Vec<String> = needs.iter().map(|need| format!("t{need}")).collect();
            spec.push_str(&format!(
                "  t{task}: {{run: x, needs: [{}], retry: {{max_attempts: 2, initial: 1s}}}}\n",
                needs.join(", ")
            ));
        }
        spec
    }

    fn graphs() -> impl Strategy<Value = Vec<Vec<usize>>> {
        (1usize..25).prop_flat_map(|count| {
            (0..count)
                .map(|task| {
                    proptest::collection::btree_set(0..task.max(1), 0..=task.min(3))
                        .prop_map(move |needs| needs.into_iter().filter(|&n| n < task).collect())
                })
                .collect::<Vec<_>>()
        })
    }

    proptest! {
        #[test]
        fn every_task_ends_once_after_its_needs_and_replay_matches(
            needs in graphs(),
            choices in proptest::collection::vec(any::<u8>(), 200),
            policy in prop_oneof![Just("fail_fast"), Just("continue"), Just("compensate")],
        ) {
            let mut run = Driver::new(&random_spec(&needs, policy));
            let mut running: Vec<u32> = Vec::new();
            let mut choices = choices.into_iter().cycle();
            for _ in 0..1_000 {
                let mut commands = Vec::new();
                run.state.decide(run.now, run.budget, &mut commands);
                for command in &commands {
                    match command {
                        Command::Dispatch { task, .. } => {
                            for &need in run.state.valid().dag().needs(*task) {
                                prop_assert!(run.state.status(need).is_final());
                            }
                            running.push(*task);
                        }
                        Command::Kill { task } => {
                            running.retain(|running| running != task);
                            let id = run.id(*task).to_owned();
                            run.cancelled(&id);
                        }
                        Command::Compensate { task } => {
                            run.record(Event::CompensationStarted { at: run.now, task: *task });
                            run.record(Event::CompensationFinished { at: run.now, task: *task, error: None });
                            continue;
                        }
                        _ => {}
                    }
                    if let Some(event) = command.event(run.now) {
                        run.record(event);
                    }
                }
                if run.state.is_finished() {
                    break;
                }
                run.now = Millis(run.now.0 + 500);
                if choices.next().unwrap() % 13 == 0 {
                    // A crash: a fresh state replays the log and loses what
                    // was in flight, as `baton resume` does.
                    // Every other time from a checkpoint taken part-way.
                    let setup = || RunSetup { run_id: "run-1".to_owned(), ..RunSetup::default() };
                    let mut replayed = RunState::new(Arc::clone(&run.state.valid), setup());
                    for event in &run.log {
                        replayed.apply(event);
                    }
                    let cut = usize::from(choices.next().unwrap()) % (run.log.len() + 1);
                    let mut early = RunState::new(Arc::clone(&run.state.valid), setup());
                    for event in &run.log[..cut] {
                        early.apply(event);
                    }
                    let sealed = early.snapshot(cut as u64).seal();
                    let mut restored = RunState::restore(Arc::clone(&run.state.valid), setup(), sealed.open().unwrap()).unwrap();
                    for event in &run.log[cut..] {
                        restored.apply(event);
                    }
                    let length = run.log.len() as u64;
                    prop_assert_eq!(restored.snapshot(length), replayed.snapshot(length));
                    run.state = if cut.is_multiple_of(2) { restored } else { replayed };
                    for (task, attempt) in run.state.in_flight() {
                        run.record(Event::AttemptLost { at: run.now, task, attempt });
                    }
                    running.clear();
                    continue;
                }
                if !running.is_empty() {
                    let choice = choices.next().unwrap();
                    let task = running.remove(usize::from(choice) % running.len());
                    let id = run.id(task).to_owned();
                    if choice % 4 == 0 { run.fail(&id, EXIT_1) } else { run.succeed(&id) }
                }
            }
            prop_assert!(run.state.is_finished());
            prop_assert_eq!(run.state.final_count(), needs.len());
            let mut ends = vec![0u32; needs.len()];
            for event in &run.log {
                match event {
                    Event::TaskSucceeded { task, .. }
                    | Event::TaskSkipped { task, .. }
                    | Event::TaskCancelled { task, .. } => ends[*task as usize] += 1,
                    _ => {}
                }
            }
            for task in 0..needs.len() as u32 {
                let status = run.state.status(task);
                prop_assert!(status.is_final(), "{} is {:?}", task, status);
                // A failure is final without an ending event of its own.
                let expected = u32::from(status != TaskStatus::Failed);
                prop_assert_eq!(ends[task as usize], expected, "task {}", task);
            }
            let mut replay = RunState::new(Arc::clone(&run.state.valid), RunSetup { run_id: "run-1".to_owned(), ..RunSetup::default() });
            for event in &run.log {
                replay.apply(event);
            }
            for task in 0..needs.len() as u32 {
                prop_assert_eq!(replay.status(task), run.state.status(task));
                prop_assert_eq!(replay.attempts(task), run.state.attempts(task));
            }
            prop_assert_eq!(replay.run_status(), run.state.run_status());
            prop_assert_eq!(replay.metrics(), run.state.metrics());

            let mut redriven = RunState::new(Arc::clone(&run.state.valid), RunSetup { run_id: "run-1".to_owned(), ..RunSetup::default() });
            let digest = crate::run::replay(&mut redriven, &run.log);
            prop_assert_eq!(digest, Ok(crate::run::Trace::of(&run.log)));
        }
    }
}
