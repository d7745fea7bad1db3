//! [`RunState::apply`]: folding one event into the state.

use std::cmp::Reverse;
use std::sync::Arc;

use minijinja::Value;

use crate::duration::Duration;
use crate::spec::{FailurePolicy, NeedCondition, OnTimeout, TaskKind};

use super::super::backoff::{retries, retry_delay};
use super::super::event::{Event, Failure, FailureKind, Millis, RunStatus, SkipReason};
use super::progress::Phase;
use super::{NONE, RunState, TaskStatus};

/// Why an event cannot follow the state it was applied to: the log it came
/// from is not this run's, or it is damaged. The state is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Inadmissible(String);

impl RunState {
    /// Folds one event into the state, if it can follow it: an event about
    /// a task the workflow does not have, or one no run could record in
    /// the state it is in (a task succeeding that never started, an attempt
    /// out of turn), is refused and changes nothing.
    pub fn apply(&mut self, event: &Event) -> Result<(), Inadmissible> {
        self.admit(event)?;
        self.fold(event);
        Ok(())
    }

    /// Whether `event` can follow the state as it stands.
    pub fn admit(&self, event: &Event) -> Result<(), Inadmissible> {
        let refuse = |why: String| Err(Inadmissible(why));
        if let Some(task) = event.task()
            && task as usize >= self.task_count()
        {
            return refuse(format!(
                "it names task {task}, but the workflow has {} tasks",
                self.task_count()
            ));
        }
        if let Event::TaskSkipped {
            reason: SkipReason::NeedFailed { need } | SkipReason::NeedDidNotFail { need },
            ..
        } = *event
            && need as usize >= self.task_count()
        {
            return refuse(format!(
                "it names task {need} as a need, which the workflow lacks"
            ));
        }
        let finished = matches!(self.progress.phase, Phase::Finished(_));
        let Some(task) = event.task() else {
            return match *event {
                Event::RunStarted { .. } if self.progress.phase != Phase::Pending => {
                    refuse("the run started twice".to_owned())
                }
                Event::ControlReceived { seq, .. } if seq != self.progress.controls => {
                    refuse(format!(
                        "it reads control request {seq}, but {} were read before it",
                        self.progress.controls
                    ))
                }
                Event::RunFinished { .. }
                | Event::RunPaused { .. }
                | Event::RunResumed { .. }
                | Event::CancelRequested { .. }
                | Event::RunTimedOut { .. }
                    if finished =>
                {
                    refuse("the run had already finished".to_owned())
                }
                _ => Ok(()),
            };
        };
        let index = task as usize;
        let status = self.progress.status[index];
        let attempts = self.progress.attempts[index];
        let id = &self.task(task).id;
        let in_turn = |attempt: u32, statuses: &[TaskStatus]| {
            if !statuses.contains(&status) {
                return refuse(format!("task `{id}` is {}", status.name()));
            }
            if attempt != attempts {
                return refuse(format!(
                    "it is about attempt {attempt} of task `{id}`, which is on attempt {attempts}"
                ));
            }
            Ok(())
        };
        use TaskStatus::{Compensating, Pending, Queued, RetryWait, Running, Succeeded, Waiting};
        match *event {
            Event::TaskStarted { attempt, .. } => {
                // A retry's timer makes it ready inside `decide`, which a
                // replay does not run: its start follows `retry_wait`.
                if !matches!(status, Queued | RetryWait) {
                    return refuse(format!("task `{id}` starts while {}", status.name()));
                }
                if attempt != attempts + 1 {
                    return refuse(format!(
                        "task `{id}` starts attempt {attempt} after attempt {attempts}"
                    ));
                }
                Ok(())
            }
            Event::TaskSucceeded { attempt, .. } => in_turn(attempt, &[Running, Waiting]),
            Event::TaskFailed { attempt: 0, .. } if status == Queued => Ok(()),
            Event::TaskFailed { attempt, .. } => in_turn(attempt, &[Running, Waiting]),
            Event::TaskIterated { attempt, .. }
            | Event::CopySucceeded { attempt, .. }
            | Event::ArtifactsStored { attempt, .. }
            | Event::ArtifactsConsumed { attempt, .. }
            | Event::ResultReused { attempt, .. } => in_turn(attempt, &[Running]),
            Event::TaskSkipped { .. } if matches!(status, Pending | Queued | RetryWait) => Ok(()),
            Event::TaskCancelled { .. }
                if matches!(status, Queued | RetryWait | Waiting | Running) =>
            {
                Ok(())
            }
            Event::CompensationStarted { .. } if status == Succeeded => Ok(()),
            Event::CompensationFinished { .. } if status == Compensating => Ok(()),
            Event::AttemptLost { .. } if matches!(status, Running | Compensating) => Ok(()),
            Event::ApprovalRequested { .. } if status == Queued => Ok(()),
            _ => refuse(format!(
                "task `{id}` is {}, which this event cannot follow",
                status.name()
            )),
        }
    }

    /// Folds an admitted event into the state.
    pub(crate) fn fold(&mut self, event: &Event) {
        match *event {
            Event::RunStarted { at } => {
                self.progress.phase = Phase::Running;
                self.progress.started_at = Some(at);
                self.progress.deadline = self.run_timeout.map(|timeout| at.plus(timeout));
            }
            Event::TaskStarted { at, task, attempt } => {
                let index = task as usize;
                self.progress.status[index] = TaskStatus::Running;
                self.progress.attempts[index] = attempt;
                self.progress.attempt_started[index] = at;
                if attempt == 1 {
                    self.progress.first_started[index] = at;
                }
                self.progress.running += 1;
                if let Some(key) = self.key(task) {
                    self.progress.key_running[key] += 1;
                }
            }
            Event::TaskSucceeded {
                at,
                task,
                ref output,
                ..
            } => {
                self.end_attempt(task, at);
                self.progress.outputs[task as usize] = output
                    .as_deref()
                    .map(|output| Value::from(minijinja::value::Serde(output)));
                self.progress.copies.remove(&task);
                self.finish(task, TaskStatus::Succeeded, at);
            }
            Event::CopySucceeded {
                task,
                copy,
                ref output,
                ..
            } => {
                self.progress
                    .copies
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
                self.progress.copies.remove(&task);
                self.end_attempt(task, at);
                let index = task as usize;
                self.progress.outputs[index] = output
                    .as_deref()
                    .map(|output| Value::from(minijinja::value::Serde(output)));
                *self.progress.iterations.entry(task).or_default() += 1;
                self.progress.status[index] = TaskStatus::Queued;
                self.progress.ready.push(Reverse(self.order.rank[index]));
            }
            Event::TaskFailed {
                at,
                task,
                attempt,
                ref failure,
            } => {
                // A swarm's retry votes afresh; a foreach's runs only the
                // items that have not succeeded.
                if self.task(task).modifiers().swarm.is_some() {
                    self.progress.copies.remove(&task);
                }
                self.fail(task, attempt, failure, at);
            }
            Event::TaskSkipped { at, task, reason } => {
                self.progress.skip_reasons.insert(task, reason);
                self.finish(task, TaskStatus::Skipped, at);
            }
            Event::TaskCancelled { at, task } => {
                if matches!(
                    self.progress.status[task as usize],
                    TaskStatus::Running | TaskStatus::Waiting
                ) {
                    self.end_attempt(task, at);
                }
                self.finish(task, TaskStatus::Cancelled, at);
            }
            Event::CompensationStarted { task, .. } => {
                self.progress.phase = Phase::Compensating;
                self.progress.status[task as usize] = TaskStatus::Compensating;
                self.progress.compensating = Some(task);
                self.progress.compensation_retry_at = None;
                *self.progress.compensation_attempts.entry(task).or_default() += 1;
            }
            Event::CompensationFinished {
                at,
                task,
                ref error,
            } => {
                self.progress.compensating = None;
                self.progress.status[task as usize] = match error {
                    None => TaskStatus::Compensated,
                    Some(error) => self.compensation_error(task, error, at),
                };
            }
            Event::ArtifactsStored {
                task,
                ref artifacts,
                ..
            } => {
                self.progress.artifacts.insert(task, artifacts.clone());
            }
            Event::ResultReused { task, ref run, .. } => {
                self.progress.reused.insert(task, run.clone());
            }
            Event::ArtifactsConsumed { .. } => {}
            Event::AttemptLost { task, .. } => match self.progress.status[task as usize] {
                TaskStatus::Running => {
                    let index = task as usize;
                    self.progress.running -= 1;
                    if let Some(key) = self.key(task) {
                        self.progress.key_running[key] -= 1;
                    }
                    self.progress.status[index] = TaskStatus::Queued;
                    self.progress.ready.push(Reverse(self.order.rank[index]));
                }
                TaskStatus::Compensating => {
                    self.progress.status[task as usize] = TaskStatus::Succeeded;
                    self.progress.compensating = None;
                }
                _ => {}
            },
            Event::ApprovalRequested { at, task } => {
                let index = task as usize;
                self.progress.status[index] = TaskStatus::Waiting;
                self.progress.attempts[index] = 1;
                self.progress.attempt_started[index] = at;
                self.progress.first_started[index] = at;
                self.progress.waiting += 1;
                if let TaskKind::Approval(approval) = &self.task(task).kind
                    && let Some(timeout) = approval.timeout
                {
                    self.progress.timers.push(Reverse((at.plus(timeout), task)));
                }
            }
            Event::ControlReceived { seq, .. } => self.progress.controls = seq + 1,
            Event::RunPaused { .. } => self.progress.paused = true,
            Event::RunResumed { .. } => self.progress.paused = false,
            Event::CancelRequested { .. } => match self.progress.phase {
                // A run ending after a failure may be running the tasks
                // that wait for failures; a cancel stops those too.
                Phase::Ending {
                    status: RunStatus::Failed,
                    compensate: false,
                } => {
                    self.progress.phase = Phase::Ending {
                        status: RunStatus::Cancelled,
                        compensate: false,
                    };
                    self.progress.kills_sent = false;
                    if let Some(reason) = &mut self.progress.reason {
                        reason.push_str("; then cancelled");
                    }
                }
                _ => self.end(RunStatus::Cancelled, false, "cancelled".to_owned()),
            },
            Event::CompensationRequested { .. } => {
                if self.progress.phase == Phase::Finished(RunStatus::Succeeded) {
                    self.progress.phase = Phase::Ending {
                        status: RunStatus::Failed,
                        compensate: true,
                    };
                    self.progress.reason = Some("its parent run is compensating".to_owned());
                }
            }
            Event::RunTimedOut { .. } => {
                self.progress.timed_out = true;
                let after = self.run_timeout.unwrap_or(Duration::ZERO);
                let compensate = self.on_failure == FailurePolicy::Compensate;
                self.end(
                    RunStatus::Failed,
                    compensate,
                    format!("the run timed out after {after}"),
                );
            }
            Event::RunFinished { at, status } => {
                if self.verdict != NONE {
                    self.explain_verdict(status);
                }
                self.progress.phase = Phase::Finished(status);
                self.progress.finished_at = Some(at);
            }
        }
    }

    fn end_attempt(&mut self, task: u32, at: Millis) {
        let index = task as usize;
        if self.progress.status[index] == TaskStatus::Waiting {
            self.progress.waiting -= 1;
            // Its timeout no longer matters, and would hold the run open.
            self.progress
                .timers
                .retain(|&Reverse((_, timed))| timed != task);
            return;
        }
        self.progress.running -= 1;
        self.progress.busy[index] += at.since(self.progress.attempt_started[index]).as_millis();
        if let Some(key) = self.key(task) {
            self.progress.key_running[key] -= 1;
            if let Some(rank) = self.progress.parked[key].pop_front() {
                self.progress.ready.push(Reverse(rank));
            }
        }
    }

    fn fail(&mut self, task: u32, attempt: u32, failure: &Failure, at: Millis) {
        let index = task as usize;
        let was_running = self.progress.status[index] == TaskStatus::Running;
        if was_running || self.progress.status[index] == TaskStatus::Waiting {
            self.end_attempt(task, at);
        }
        self.progress.failures.insert(task, failure.clone());
        let policy = self.retry_policy(task);
        if was_running
            && self.may_start(task)
            && attempt < policy.max_attempts
            && retries(policy, failure)
        {
            let delay = retry_delay(policy, attempt, &self.run_id, &self.task(task).id);
            self.progress.status[index] = TaskStatus::RetryWait;
            self.progress.timers.push(Reverse((at.plus(delay), task)));
            return;
        }
        let on_timeout = self.timeout(task).map(|timeout| timeout.on_timeout);
        let mut compensate = self.on_failure == FailurePolicy::Compensate;
        let status = match (failure.kind, on_timeout) {
            (FailureKind::Timeout, Some(OnTimeout::Skip)) => {
                self.progress
                    .skip_reasons
                    .insert(task, SkipReason::TimedOut);
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
        if self.task(task).modifiers().escalate.is_some() && !forced {
            return;
        }
        self.progress.failed_tasks += 1;
        let id = &self.task(task).id;
        let reason = match status {
            TaskStatus::TimedOut => format!("task `{id}` timed out"),
            _ => format!("task `{id}` failed"),
        };
        if compensate {
            self.end(RunStatus::Failed, true, reason);
        } else if self.on_failure == FailurePolicy::FailFast {
            self.end(RunStatus::Failed, false, reason);
        } else if self.progress.reason.is_none() {
            self.progress.reason = Some(reason);
        }
    }

    /// A compensation failed: it is tried again while the task's retry
    /// policy allows, and otherwise compensation stops there, as undoing
    /// what came before it could depend on it being undone.
    fn compensation_error(&mut self, task: u32, error: &str, at: Millis) -> TaskStatus {
        let failure = Failure::new(FailureKind::Error, error.to_owned());
        let tried = self
            .progress
            .compensation_attempts
            .get(&task)
            .copied()
            .unwrap_or(1);
        let policy = self.retry_policy(task);
        let again = tried < policy.max_attempts && retries(policy, &failure);
        if again {
            let delay = retry_delay(policy, tried, &self.run_id, &self.task(task).id);
            self.progress.compensation_retry_at = Some(at.plus(delay));
            self.progress.compensation_cursor = self.progress.compensation_cursor.saturating_sub(1);
        }
        self.progress.failures.insert(task, failure);
        if again {
            return TaskStatus::Succeeded;
        }
        self.progress.compensation_failed = true;
        let remaining: Vec<String> = self
            .compensation_sequence()
            .into_iter()
            .filter(|&other| {
                other == task || self.progress.status[other as usize] == TaskStatus::Succeeded
            })
            .map(|other| self.task(other).id.to_string())
            .collect();
        let first = self
            .progress
            .reason
            .take()
            .map_or_else(String::new, |reason| format!("{reason}; "));
        self.progress.reason = Some(format!(
            "{first}compensating `{}` failed after {tried} attempt(s): {error}; not compensated: {}",
            self.task(task).id,
            remaining.join(", ")
        ));
        TaskStatus::CompensationFailed
    }

    /// Stops starting work; the first reason to end a run is the one kept.
    fn end(&mut self, status: RunStatus, compensate: bool, reason: String) {
        if matches!(self.progress.phase, Phase::Pending | Phase::Running) {
            self.progress.phase = Phase::Ending { status, compensate };
            self.progress.reason = Some(reason);
        }
    }

    fn finish(&mut self, task: u32, status: TaskStatus, at: Millis) {
        let index = task as usize;
        self.progress.status[index] = status;
        self.progress.finished[index] = at;
        self.progress.final_count += 1;
        let valid = Arc::clone(&self.valid);
        let escalates_to = valid.workflow().tasks[index]
            .modifiers()
            .escalate
            .as_deref();
        for &dependant in valid.dag().dependants(task) {
            let slot = dependant as usize;
            self.progress.unmet[slot] -= 1;
            if escalates_to == Some(valid.workflow().tasks[slot].id.as_str()) {
                // An escalation fires on a failure and is quiet otherwise.
                if status.blocks_dependants() {
                    self.progress.live_needs[slot] += 1;
                }
            } else {
                let condition =
                    valid.workflow().tasks[slot].need_condition(&valid.workflow().tasks[index].id);
                self.pass_on(task, status, slot, condition);
            }
            if self.progress.unmet[slot] == 0 {
                if self.progress.blocked_by[slot] != NONE
                    || self.progress.live_needs[slot] == 0
                    || self.progress.declined.contains_key(&dependant)
                {
                    self.progress.settle.push_back(dependant);
                } else {
                    self.progress.status[slot] = TaskStatus::Queued;
                    self.progress.ready.push(Reverse(self.order.rank[slot]));
                }
            }
        }
    }

    /// Says in the run's reason that its verdict task decided it.
    fn explain_verdict(&mut self, status: RunStatus) {
        let id = &self.valid.workflow().tasks[self.verdict as usize].id;
        let verdict = self.progress.status[self.verdict as usize];
        let reason = &mut self.progress.reason;
        match (status, verdict) {
            (RunStatus::Succeeded, _) => {
                if let Some(reason) = reason {
                    reason.push_str(&format!("; accepted by the verdict task `{id}`"));
                }
            }
            (RunStatus::Failed, TaskStatus::Failed | TaskStatus::TimedOut) => {
                let vetoed = format!("the verdict task `{id}` {}", verdict.name());
                *reason = Some(match reason.take() {
                    Some(before) if !before.starts_with(&format!("task `{id}` ")) => {
                        format!("{vetoed}; before it, {before}")
                    }
                    _ => vetoed,
                });
            }
            _ => {}
        }
    }

    /// What `need` ending as `status` means for `dependant`, which waits
    /// on it for `condition`: a live need, a failure passed on, or a
    /// condition that did not hold.
    fn pass_on(
        &mut self,
        need: u32,
        status: TaskStatus,
        dependant: usize,
        condition: NeedCondition,
    ) {
        // A task skipped because something upstream failed passes that
        // failure on, so every task below names the root cause.
        let cause = if status.blocks_dependants() {
            need
        } else {
            self.progress.blocked_by[need as usize]
        };
        match condition {
            NeedCondition::OnSuccess => {
                if status.succeeded() {
                    if !self.escalation_target[dependant] {
                        self.progress.live_needs[dependant] += 1;
                    }
                } else if cause != NONE && self.progress.blocked_by[dependant] == NONE {
                    self.progress.blocked_by[dependant] = cause;
                }
            }
            NeedCondition::Always => self.progress.live_needs[dependant] += 1,
            NeedCondition::OnFailure if cause != NONE => self.progress.live_needs[dependant] += 1,
            NeedCondition::OnFailure => {
                self.progress
                    .declined
                    .entry(dependant as u32)
                    .or_insert(need);
            }
        }
    }
}
