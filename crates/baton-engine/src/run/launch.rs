//! Starting an attempt: its templates resolved into what an executor
//! runs (the task, a swarm's copies, a foreach's items, a child run), its
//! context and files, then handed off to run beside the loop.

use std::sync::Arc;

use baton_core::run::{Chain, Event, Failure, FailureKind, Millis, Resolved, RunState, Work};
use baton_store::ParentTask;
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::attempt::{AttemptFiles, Plan, Source};
use super::host::Host;
use super::report::{Done, Files, Ran};
use super::reuse::Reused;
use super::spawn::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_SPAWN, Spawner};
use crate::artifacts::Cas;
use crate::executor::{Attempt, Finished, Lineage, Outcome, TaskContext};
use crate::logs::{attempt_file, attempt_prefix};
use crate::pin::Pinned;

/// Where a run sits among sub-workflows and spawned tasks: what its
/// `workflow:` tasks and spawning tasks need.
pub(crate) struct Family {
    /// How deep it is nested: 0 for a run started on its own.
    depth: u32,
    /// How many spawns deep its tasks are.
    spawn_depth: u32,
    max_spawn: u32,
    max_spawn_depth: u32,
    pinned: Arc<Pinned>,
}

impl Family {
    pub(crate) fn of(record: &baton_store::RunRecord) -> Family {
        Family {
            depth: record.parent.as_ref().map_or(0, |parent| parent.depth),
            spawn_depth: record
                .parent
                .as_ref()
                .map_or(0, |parent| parent.spawn_depth),
            max_spawn: record.workflow.max_spawn.unwrap_or(DEFAULT_MAX_SPAWN),
            max_spawn_depth: record.workflow.max_spawn_depth.unwrap_or(DEFAULT_MAX_DEPTH),
            pinned: Arc::new(record.subworkflows.clone()),
        }
    }
}

/// Work whose output is the task's own, which may ask for tasks.
fn can_spawn(work: &Work) -> bool {
    matches!(
        work,
        Work::Shell(_) | Work::Command(_) | Work::Http(_) | Work::Handler(_)
    )
}

/// A `workflow:` task gives its global slot back while its child runs:
/// the child's tasks take slots of their own, and a parent holding one
/// could starve them.
pub(crate) fn holds_slot(state: &RunState, task: u32) -> bool {
    let task = state.task(task);
    task.takes_slot() && !matches!(task.kind, baton_core::TaskKind::Workflow(_))
}

/// What launching an attempt needs from the loop.
pub(crate) struct Launcher<'a> {
    pub(crate) host: &'a Host,
    pub(crate) cas: &'a Cas,
    pub(crate) state: &'a RunState,
    pub(crate) chain: &'a Chain,
    pub(crate) reused: &'a Reused,
    pub(crate) family: &'a Family,
    /// Attempts a crash cut off, found when this process resumed the run.
    pub(crate) lost: &'a [(u32, u32)],
    pub(crate) done: &'a mpsc::UnboundedSender<Done>,
}

impl Launcher<'_> {
    /// Where the child run of attempt `attempt` of sub-workflow task `task`
    /// (or one item or copy of it) belongs.
    fn lineage(&self, task: u32, attempt: u32, copy: Option<String>) -> Arc<Lineage> {
        Arc::new(Lineage {
            parent: self.parent(task, attempt, 0, copy),
            pinned: Arc::clone(&self.family.pinned),
            lost: self.lost_attempts(task),
            labels: self.state.labels().clone(),
        })
    }

    /// Attempt `attempt` of `task` as the parent of a child run nested one
    /// deeper, `spawn_depth` spawns deep.
    fn parent(
        &self,
        task: u32,
        attempt: u32,
        spawn_depth: u32,
        copy: Option<String>,
    ) -> ParentTask {
        ParentTask {
            run_id: self.state.run_id().to_owned(),
            task: self.state.task(task).id.to_string(),
            attempt,
            depth: self.family.depth + 1,
            spawn_depth,
            copy,
        }
    }

    /// The attempts of `task` a crash cut off, as this resume found them.
    fn lost_attempts(&self, task: u32) -> Vec<u32> {
        self.lost
            .iter()
            .filter(|&&(lost, _)| lost == task)
            .map(|&(_, attempt)| attempt)
            .collect()
    }

    /// Starts attempt `attempt` of `task`, or returns the event it ended
    /// with at once (a no-op, a spec that does not evaluate).
    pub(crate) fn launch(
        &self,
        task: u32,
        attempt: u32,
        kills: &mut FxHashMap<u32, Option<oneshot::Sender<()>>>,
        at: Millis,
    ) -> Option<Event> {
        let (state, definition) = (self.state, self.state.task(task));
        let modifiers = definition.modifiers();
        let plain = modifiers.cache.is_none()
            && modifiers.artifacts.is_empty()
            && modifiers.check.is_empty()
            && modifiers.repeat.is_none()
            && modifiers.swarm.is_none()
            && modifiers.foreach.is_none()
            && modifiers.runs_on.is_none()
            && !self.reused.results.contains_key(&task);
        if plain && matches!(definition.kind, baton_core::TaskKind::Noop) {
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
        let config = &self.host.config;
        let timeout = state.timeout(task);
        let id = &definition.id;
        let lineage =
            matches!(resolved.work, Work::Workflow(_)).then(|| self.lineage(task, attempt, None));
        let run = Attempt {
            context: task_context(state, task, attempt, &resolved),
            prefix: attempt_prefix(&config.state_dir, state.run_id(), id, attempt),
            workdir: config.workdir.clone(),
            timeout: timeout.map(|timeout| timeout.after),
            grace: timeout.map_or(config.kill_grace, |timeout| timeout.grace),
            resolved,
            lineage,
            stdin: None,
            carried: None,
        };
        let plan = match state.reduction(task, attempt) {
            None => Plan::One(Box::new(run)),
            Some(reduction) => {
                // Each copy logs and writes its output under its own name
                // after the attempt's (`item-N` or `copy-N`), and a
                // copy that is a child run is named for it too.
                let copy = |name: String, resolved: Resolved| Attempt {
                    context: task_context(state, task, attempt, &resolved),
                    prefix: attempt_file(&run.prefix, &name),
                    lineage: matches!(resolved.work, Work::Workflow(_))
                        .then(|| self.lineage(task, attempt, Some(name))),
                    resolved,
                    ..run.clone()
                };
                let copies = match state.foreach_items(task, attempt) {
                    Ok(Some(items)) => items
                        .iter()
                        .enumerate()
                        .map(|(index, item)| {
                            state
                                .resolve_item(task, attempt, index, item)
                                .map(|resolved| copy(format!("item-{index}"), resolved))
                        })
                        .collect::<Result<Vec<_>, _>>(),
                    Ok(None) => (0..state.copies(task))
                        .map(|index| {
                            state
                                .resolve_variant(task, attempt, index)
                                .map(|resolved| copy(format!("copy-{index}"), resolved))
                        })
                        .collect(),
                    Err(error) => Err(error),
                };
                let report = self.done.clone();
                let finished = Finished {
                    outputs: state.copies_done(task).cloned().unwrap_or_default(),
                    report: Box::new(move |copy, output| {
                        let _ = report.send(Done {
                            task,
                            attempt,
                            ran: Ran::Copy(copy),
                            outcome: Outcome::Succeeded(output.clone()),
                            files: Files::default(),
                        });
                    }),
                };
                match copies {
                    Ok(copies) => Plan::Copies {
                        base: Box::new(run),
                        copies,
                        reduction,
                        finished,
                    },
                    Err(error) => {
                        return Some(Event::TaskFailed {
                            at,
                            task,
                            attempt,
                            failure: Box::new(Failure::new(
                                FailureKind::Template,
                                error.to_string(),
                            )),
                        });
                    }
                }
            }
        };
        let spawner = match &plan {
            Plan::One(run) if can_spawn(&run.resolved.work) => Some(Spawner {
                children: Arc::clone(&self.host.children),
                slots: Arc::clone(&self.host.slots),
                parent: self.parent(task, attempt, self.family.spawn_depth + 1, None),
                lost: self.lost_attempts(task),
                max_spawn: self.family.max_spawn,
                max_depth: self.family.max_spawn_depth,
                pinned: Arc::clone(&self.family.pinned),
            }),
            _ => None,
        };
        let files = AttemptFiles {
            spawner,
            cas: self.cas.clone(),
            store: Arc::clone(&self.host.store),
            source: match self.reused.results.get(&task) {
                Some(reusable) => Source::Rerun(reusable.clone()),
                None if self.reused.fresh.contains(&task) => Source::None,
                None => match self.chain.cache_key(state, task, attempt) {
                    Some(Ok(key)) => Source::Cache {
                        key,
                        fresh_after: definition
                            .modifiers()
                            .cache
                            .as_ref()
                            .and_then(|policy| policy.ttl)
                            .map(|ttl| Millis(at.0.saturating_sub(ttl.as_millis()))),
                    },
                    _ => Source::None,
                },
            },
            needs: state
                .valid()
                .dag()
                .needs(task)
                .iter()
                .flat_map(|&need| state.artifacts(need).iter().cloned())
                .collect(),
            declared: definition.modifiers().artifacts.clone(),
            max_inline_output: config.max_inline_output,
        };
        let (kill, killed) = oneshot::channel();
        kills.insert(task, Some(kill));
        let executors = Arc::clone(&self.host.executors);
        let done = self.done.clone();
        tokio::spawn(async move {
            let (outcome, files) = files.attempt(executors, plan, killed).await;
            let _ = done.send(Done {
                task,
                attempt,
                ran: Ran::Attempt,
                outcome,
                files,
            });
        });
        None
    }
}

/// What the attempt, its copies and its hooks are given.
pub(crate) fn task_context(
    state: &RunState,
    task: u32,
    attempt: u32,
    resolved: &Resolved,
) -> TaskContext {
    let id = state.task(task).id.to_string();
    let in_process = matches!(resolved.work, Work::Handler(_));
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
                .filter_map(|&need| {
                    Some((state.task(need).id.to_string(), state.output_json(need)?))
                })
                .collect()
        } else {
            serde_json::Map::new()
        },
        env: resolved.env.clone(),
        task_id: id,
    }
}

/// `RUN:TASK:ATTEMPT`: names one attempt, in its environment and logs.
pub(crate) fn idempotency_key(state: &RunState, task: u32, attempt: u32) -> String {
    format!("{}:{}:{attempt}", state.run_id(), state.task(task).id)
}
