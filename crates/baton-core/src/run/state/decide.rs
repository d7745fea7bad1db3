//! [`RunState::decide`]: what the shell should do next, from the state
//! and the time alone.

use std::cmp::Reverse;

use crate::spec::TaskKind;

use super::super::control::default_output;
use super::super::event::{Event, Failure, FailureKind, Millis, RunStatus, SkipReason};
use super::super::templates;
use super::progress::Phase;
use super::work::Scope;
use super::{NONE, RunState, TaskStatus};

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
                output: Some(Box::new(default_output(choice))),
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

impl RunState {
    /// Appends what to do next to `out`. The shell must apply the events of
    /// these commands before calling `decide` again.
    pub fn decide(&mut self, now: Millis, budget: Budget, out: &mut Vec<Command>) {
        match self.progress.phase {
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
            && let Some(task) = self.progress.settle.pop_front()
        {
            if self.progress.status[task as usize] == TaskStatus::Pending {
                out.push(Command::Skip {
                    task,
                    reason: self.settle_reason(task),
                });
            }
        }
    }

    fn settle_reason(&self, task: u32) -> SkipReason {
        match self.progress.blocked_by[task as usize] {
            NONE if self.escalation_target[task as usize] => SkipReason::NotEscalated,
            NONE => match self.progress.declined.get(&task) {
                Some(&need) => SkipReason::NeedDidNotFail { need },
                None => SkipReason::NeedsSkipped,
            },
            need => SkipReason::NeedFailed { need },
        }
    }

    fn decide_running(&mut self, now: Millis, budget: Budget, out: &mut Vec<Command>) {
        if self
            .progress
            .deadline
            .is_some_and(|deadline| now >= deadline)
        {
            out.push(Command::TimeOutRun);
            return;
        }
        self.fire_timers(now, out);
        self.drain_settle(budget, out);
        self.dispatch_ready(budget, out);
        if out.is_empty()
            && self.progress.running == 0
            && self.progress.waiting == 0
            && self.progress.ready.is_empty()
            && self.progress.timers.is_empty()
            && self.progress.settle.is_empty()
        {
            debug_assert_eq!(self.progress.final_count, self.progress.status.len());
            let status = if self.progress.failed_tasks > 0 {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            };
            out.push(Command::Finish {
                status: self.verdict_status(status),
            });
            return;
        }
        self.wake_at_next(self.progress.deadline, out);
    }

    /// Asks to be called again at the next timer, or at `deadline` if
    /// sooner.
    fn wake_at_next(&self, deadline: Option<Millis>, out: &mut Vec<Command>) {
        let next_timer = self.progress.timers.peek().map(|Reverse((at, _))| *at);
        if let Some(wake) = next_timer.into_iter().chain(deadline).min() {
            out.push(Command::WakeAt(wake));
        }
    }

    /// Makes the retries and approval timeouts due by `now` happen.
    fn fire_timers(&mut self, now: Millis, out: &mut Vec<Command>) {
        while let Some(&Reverse((at, task))) = self.progress.timers.peek() {
            if at > now {
                break;
            }
            self.progress.timers.pop();
            match self.progress.status[task as usize] {
                // Only a fired timer makes a waiting retry ready: a replayed
                // state still holds the rank it was first queued with.
                TaskStatus::RetryWait => {
                    self.progress.status[task as usize] = TaskStatus::Queued;
                    self.progress
                        .ready
                        .push(Reverse(self.order.rank[task as usize]));
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
    }

    /// Starts ready tasks, in rank order, while the limits allow.
    fn dispatch_ready(&mut self, budget: Budget, out: &mut Vec<Command>) {
        let mut started = 0u32;
        let mut slots = budget.slots;
        let mut reserved: Vec<u32> = Vec::new();
        // A replayed state can hold a rank twice (queued at start, queued
        // again after a lost attempt); equal ranks pop one after the other,
        // and a command's event is applied only after this call returns.
        let mut previous = None;
        while !self.progress.paused && out.len() < budget.batch {
            let Some(&Reverse(rank)) = self.progress.ready.peek() else {
                break;
            };
            let task = self.order.by_rank[rank as usize];
            // No-ops take no slot, so they go on past a full limit, until
            // the first task that needs one.
            let full = self.progress.running + started >= self.limit || slots == 0;
            if full && self.task(task).takes_slot() {
                break;
            }
            self.progress.ready.pop();
            if previous.replace(rank) == Some(rank) {
                continue;
            }
            let index = task as usize;
            if self.progress.status[index] != TaskStatus::Queued {
                continue;
            }
            if let Some(key) = self.key(task) {
                if reserved.len() < self.key_limit.len() {
                    reserved.resize(self.key_limit.len(), 0);
                }
                if self.progress.key_running[key] + reserved[key] >= self.key_limit[key] {
                    self.progress.parked[key].push_back(rank);
                    continue;
                }
            }
            let attempt = self.progress.attempts[index] + 1;
            if attempt == 1
                && let Some(when) = &self.task(task).modifiers().when
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
            out.push(Command::Dispatch { task, attempt });
            if self.task(task).takes_slot() {
                if let Some(key) = self.key(task) {
                    reserved[key] += 1;
                }
                started += 1;
                slots -= 1;
            }
        }
    }

    /// Stops what the run will not need now it ends, lets the tasks that
    /// handle failures run (unless it was cancelled), then finishes or
    /// compensates.
    fn decide_ending(
        &mut self,
        status: RunStatus,
        compensate: bool,
        now: Millis,
        budget: Budget,
        out: &mut Vec<Command>,
    ) {
        let handlers = status != RunStatus::Cancelled;
        let drop_waiting = |task: u32| match status {
            RunStatus::Cancelled => Command::Cancel { task },
            _ => Command::Skip {
                task,
                reason: SkipReason::RunEnding,
            },
        };
        self.drain_settle(budget, out);
        let keep = |state: &RunState, task: u32| handlers && state.handles_failure(task);
        let ranks: Vec<u32> = self
            .progress
            .ready
            .drain()
            .map(|Reverse(rank)| rank)
            .collect();
        let timers: Vec<(Millis, u32)> = self
            .progress
            .timers
            .drain()
            .map(|Reverse(timer)| timer)
            .collect();
        let parked: Vec<Vec<u32>> = self
            .progress
            .parked
            .iter_mut()
            .map(|parked| parked.drain(..).collect())
            .collect();
        let mut waiting = Vec::new();
        for rank in ranks {
            let task = self.order.by_rank[rank as usize];
            if keep(self, task) {
                self.progress.ready.push(Reverse(rank));
            } else {
                waiting.push(task);
            }
        }
        for (at, task) in timers {
            if keep(self, task) {
                self.progress.timers.push(Reverse((at, task)));
            } else {
                waiting.push(task);
            }
        }
        for (key, ranks) in parked.into_iter().enumerate() {
            for rank in ranks {
                let task = self.order.by_rank[rank as usize];
                if keep(self, task) {
                    self.progress.parked[key].push_back(rank);
                } else {
                    waiting.push(task);
                }
            }
        }
        waiting.retain(|&task| {
            matches!(
                self.progress.status[task as usize],
                TaskStatus::Queued | TaskStatus::RetryWait
            )
        });
        waiting.sort_unstable_by_key(|&task| self.order.rank[task as usize]);
        waiting.dedup();
        out.extend(waiting.into_iter().map(drop_waiting));
        // Approvals no one will decide now are dropped, whatever the end.
        if self.progress.waiting > 0 {
            out.extend(
                (0..self.progress.status.len() as u32)
                    .filter(|&task| self.progress.status[task as usize] == TaskStatus::Waiting)
                    .map(|task| Command::Cancel { task }),
            );
        }
        if self.progress.running > 0 && !self.progress.kills_sent {
            self.progress.kills_sent = true;
            out.extend(
                (0..self.progress.status.len() as u32)
                    .filter(|&task| {
                        self.progress.status[task as usize] == TaskStatus::Running
                            && !keep(self, task)
                    })
                    .map(|task| Command::Kill { task }),
            );
        }
        if handlers {
            self.fire_timers(now, out);
            self.dispatch_ready(budget, out);
        }
        if self.progress.running > 0
            || !out.is_empty()
            || !self.progress.ready.is_empty()
            || !self.progress.timers.is_empty()
        {
            self.wake_at_next(None, out);
            return;
        }
        let status = self.verdict_status(status);
        if compensate && status != RunStatus::Succeeded {
            self.decide_compensation(now, out);
        } else {
            out.push(Command::Finish { status });
        }
    }

    /// Whether `task` has something to undo: its `compensate` action, or,
    /// without one, the child run it made (a sub-workflow's, its spawned
    /// tasks').
    pub fn compensable(&self, task: u32) -> bool {
        self.task(task).modifiers().compensate.is_some() || self.child_run(task).is_some()
    }

    /// The child run a succeeded task's output names: a `workflow:` task's
    /// `run`, a spawning task's `spawned.run`.
    pub fn child_run(&self, task: u32) -> Option<String> {
        let output = self.progress.outputs[task as usize].as_ref()?;
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
    pub(super) fn compensation_sequence(&self) -> Vec<u32> {
        let mut position = vec![0usize; self.progress.status.len()];
        for (at, &task) in self.valid.plan().order.iter().enumerate() {
            position[task as usize] = at;
        }
        let mut order: Vec<u32> = (0..self.progress.status.len() as u32)
            .filter(|&task| self.compensable(task))
            .collect();
        order.sort_unstable_by_key(|&task| {
            Reverse((
                self.progress.finished[task as usize],
                position[task as usize],
            ))
        });
        order
    }

    /// Compensates succeeded tasks one at a time, the last to finish first
    /// (ties, within one instant, in reverse plan order), so each undo sees
    /// the world as the tasks after it left it.
    fn decide_compensation(&mut self, now: Millis, out: &mut Vec<Command>) {
        if self.progress.compensating.is_some() {
            return;
        }
        if let Some(at) = self.progress.compensation_retry_at
            && now < at
        {
            out.push(Command::WakeAt(at));
            return;
        }
        if self.progress.compensation_order.is_empty() && self.progress.compensation_cursor == 0 {
            self.progress.compensation_order = self.compensation_sequence();
        }
        while !self.progress.compensation_failed
            && let Some(&task) = self
                .progress
                .compensation_order
                .get(self.progress.compensation_cursor)
        {
            self.progress.compensation_cursor += 1;
            if self.progress.status[task as usize] == TaskStatus::Succeeded {
                out.push(Command::Compensate { task });
                return;
            }
        }
        let status = if self.progress.compensation_failed {
            RunStatus::CompensationFailed
        } else {
            RunStatus::Compensated
        };
        out.push(Command::Finish { status });
    }
}
