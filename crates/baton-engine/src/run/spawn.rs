//! Dynamic spawning: a task whose output holds `"spawn": [task, ...]`
//! (each with its `id`) adds those tasks under itself. They are checked
//! like any spec, then run as a child run of the attempt (`PARENT.TASK.
//! ATTEMPT`, linked to it), so the attempt, and every task that needs the
//! spawning task, ends when they do. The spawning task's output reaches
//! them as `inputs.parent`; its own output keeps everything but `spawn`
//! and gains `spawned: {run, tasks}`.
//!
//! A child run rather than new rows in the parent's state: the parent's
//! state machine stays fixed by its workflow (flat vectors, checkpoints,
//! replay), and the child brings its own durability: after a crash the
//! next attempt continues the spawned run instead of running the spawning
//! process again.

use std::sync::Arc;

use baton_core::run::{Failure, FailureKind};
use baton_core::{Format, Workflow};
use baton_store::ParentTask;
use serde_json::{Map, Value};

use crate::children::Children;
use crate::config::RunOptions;
use crate::executor::{Kill, Outcome, carried, child_id, ended, supervise};
use crate::handle::RunHandle;
use crate::pin::Pinned;

/// Tasks one spawn may add when the workflow does not say (`max_spawn`).
pub(crate) const DEFAULT_MAX_SPAWN: u32 = 100;
/// Levels of spawned tasks spawning in turn (`max_spawn_depth`).
pub(crate) const DEFAULT_MAX_DEPTH: u32 = 3;

/// A spawning task's output object.
type Output = Map<String, Value>;

/// The reserved output key that asks for tasks.
const SPAWN: &str = "spawn";

/// What a task's attempt needs to spawn.
pub(crate) struct Spawner {
    pub(crate) children: Arc<dyn Children>,
    /// The engine's global slots, which the spawning task lends its own to
    /// its spawned tasks while they run.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// The attempt that spawns, and how deep its children nest.
    pub(crate) parent: ParentTask,
    /// Attempts of the task a crash cut off, found by this resume.
    pub(crate) lost: Vec<u32>,
    pub(crate) max_spawn: u32,
    pub(crate) max_depth: u32,
    pub(crate) pinned: Arc<Pinned>,
}

impl Spawner {
    /// Whether `output` asks for tasks.
    pub(crate) fn asks(output: &Value) -> bool {
        output.get(SPAWN).is_some()
    }

    /// Spawned tasks of an earlier attempt that a crash cut off: they go
    /// on (a finished run just reports) with the output their spawning
    /// process gave then, instead of that process running again.
    pub(crate) async fn carried(&self) -> Result<Option<(RunHandle, Output)>, Failure> {
        let Some(handle) = carried(self.children.as_ref(), &self.parent, &self.lost).await? else {
            return Ok(None);
        };
        let output = self
            .children
            .store()
            .run(handle.run_id())
            .await
            .ok()
            .and_then(|record| match record.inputs.get("parent") {
                Some(Value::Object(output)) => Some(output.clone()),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Some((handle, output)))
    }

    /// Starts the tasks `output` asks for and waits for them.
    pub(crate) async fn spawn(&self, output: Value, kill: Kill) -> Outcome {
        let Value::Object(mut output) = output else {
            return Outcome::Succeeded(Some(output));
        };
        let list = output.remove(SPAWN).unwrap_or(Value::Null);
        let workflow = match self.workflow(list) {
            Ok(Some(workflow)) => workflow,
            Ok(None) => return Outcome::Succeeded(Some(Value::Object(output))),
            Err(message) => {
                return Outcome::Failed(Failure::new(
                    FailureKind::Error,
                    format!("cannot spawn: {message}"),
                ));
            }
        };
        let options = RunOptions {
            inputs: [("parent".to_owned(), Value::Object(output.clone()))].into(),
            run_id: Some(child_id(&self.parent, self.parent.attempt)),
            parent: Some(self.parent.clone()),
            subworkflows: (*self.pinned).clone(),
            ..RunOptions::default()
        };
        match self.children.start(workflow, options).await {
            Ok(handle) => self.follow(handle, output, kill).await,
            Err(why) => Outcome::Failed(Failure::new(
                FailureKind::Error,
                format!("cannot spawn: {why}"),
            )),
        }
    }

    /// Waits for spawned tasks; the spawning task's output gains
    /// `spawned: {run, tasks}` when they all succeed. The spawning task
    /// lends its global slot to them meanwhile (a parent holding one could
    /// starve its own children) and takes one back before it ends.
    pub(crate) async fn follow(
        &self,
        handle: RunHandle,
        output: Map<String, Value>,
        kill: Kill,
    ) -> Outcome {
        self.slots.add_permits(1);
        let outcome = spawned(handle, output, kill).await;
        if let Ok(permit) = self.slots.acquire().await {
            permit.forget();
        }
        outcome
    }

    /// The spawned tasks as a workflow of their own, checked; none for an
    /// empty list.
    fn workflow(&self, list: Value) -> Result<Option<Workflow>, String> {
        let Value::Array(list) = list else {
            return Err("`spawn` must be a list of tasks, each with an `id`".to_owned());
        };
        if list.is_empty() {
            return Ok(None);
        }
        if self.parent.spawn_depth > self.max_depth {
            return Err(format!(
                "spawned tasks may spawn only {} level(s) deep (`max_spawn_depth`)",
                self.max_depth
            ));
        }
        if list.len() > self.max_spawn as usize {
            return Err(format!(
                "{} tasks are more than `max_spawn` ({}) allows",
                list.len(),
                self.max_spawn
            ));
        }
        let mut tasks = Map::new();
        for (position, task) in list.into_iter().enumerate() {
            let Value::Object(mut task) = task else {
                return Err(format!("spawn[{position}] is not a task object"));
            };
            let Some(Value::String(id)) = task.remove("id") else {
                return Err(format!("spawn[{position}] has no string `id`"));
            };
            if tasks.contains_key(&id) {
                return Err(format!("spawn lists task `{id}` twice"));
            }
            tasks.insert(id, Value::Object(task));
        }
        let document = serde_json::json!({
            "name": format!("{}-spawned", self.parent.task),
            "max_spawn": self.max_spawn,
            "max_spawn_depth": self.max_depth,
            "inputs": {"parent": {"type": "object"}},
            "tasks": tasks,
        });
        let text = document.to_string();
        baton_core::check_source(&text, Format::Json)
            .map(|valid| Some(valid.into_workflow()))
            .map_err(|problems| {
                problems
                    .iter()
                    .map(|problem| format!("{}: {}", problem.path, problem.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
    }
}

async fn spawned(handle: RunHandle, mut output: Map<String, Value>, kill: Kill) -> Outcome {
    let run_id = handle.run_id().to_owned();
    let report = match supervise(handle, None, kill).await {
        Ok(report) => report,
        Err(stopped) => return stopped,
    };
    match ended(&run_id, report) {
        Outcome::Succeeded(spawned) => {
            output.insert("spawned".to_owned(), spawned.unwrap_or_default());
            Outcome::Succeeded(Some(Value::Object(output)))
        }
        Outcome::Failed(mut failure) => {
            failure.message = format!("spawned tasks: {}", failure.message);
            Outcome::Failed(failure)
        }
        Outcome::Cancelled => Outcome::Cancelled,
    }
}
