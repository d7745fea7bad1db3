//! `hooks:`: actions fired around a run and its tasks, each given the event
//! that fired it as JSON (`$BATON_EVENT` for a process; the body of an HTTP
//! call that has none of its own).
//!
//! Hooks notify; they never steer. They fire once the event that calls for
//! them is persisted, run beside the run (which does not wait for them),
//! are retried by the workflow's default retry policy (three attempts from
//! 1 s when it has none), and a hook that still fails leaves `failed.txt`
//! in its log directory and is dropped: the run's record is the same with
//! or without hooks. The loop waits for hooks in flight before it reports,
//! so `after_run` hooks run even when the process exits right after.

use std::path::PathBuf;
use std::sync::Arc;

use baton_core::Duration;
use baton_core::run::{
    Event, HttpBody, RunState, RunStatus, TaskStatus, Work, retries, retry_delay,
};
use baton_core::spec::{Action, Method, RetryPolicy};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use tokio::sync::Semaphore;

use super::host::Host;
use crate::executor::{Attempt, Executor, Executors, Outcome, TaskContext};
use crate::handle::RunEvent;

/// How long one hook attempt may take when the workflow sets no default
/// timeout.
const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// The hooks of one run and those in flight.
pub(crate) struct Hooks {
    /// Whether the workflow has any hook: most have none and skip the rest.
    any: bool,
    running: JoinSet<()>,
}

/// One hook to run: what, for which event, where its logs go.
struct Job {
    executors: Arc<Executors>,
    /// The engine's global slots: a hook's attempt takes one like a task's,
    /// so a wave of hooks cannot outrun the engine's limit.
    slots: Arc<Semaphore>,
    attempt: Attempt,
    policy: RetryPolicy,
    /// `EVENT[INDEX]`, for the retry jitter's seed.
    name: String,
}

impl Hooks {
    pub(crate) fn new(state: &RunState) -> Hooks {
        let workflow = state.valid().workflow();
        Hooks {
            any: workflow.hooks.is_some()
                || workflow
                    .tasks
                    .iter()
                    .any(|task| task.modifiers().hooks.is_some()),
            running: JoinSet::new(),
        }
    }

    /// Fires what a persisted batch calls for; `state` has the batch
    /// applied and `first_seq` numbers its first event.
    pub(crate) fn fire(&mut self, host: &Host, state: &RunState, events: &[Event], first_seq: u64) {
        if !self.any {
            return;
        }
        for (offset, event) in events.iter().enumerate() {
            for (moment, task) in moments(state, event) {
                let seq = first_seq + offset as u64;
                let mut json = RunEvent {
                    seq,
                    event: event.clone(),
                }
                .json(state.valid());
                json["run_id"] = Value::from(state.run_id());
                for (index, action) in actions(state, moment, task).enumerate() {
                    let dir = hook_dir(&host.config.state_dir, state.run_id(), seq, moment, index);
                    match job(host, state, (moment, index, task), action, (seq, &json)) {
                        Ok(job) => self.running.spawn(job.run(dir)),
                        Err(error) => self.running.spawn(give_up(dir, error)),
                    };
                }
            }
        }
    }

    /// Waits for the hooks still running.
    pub(crate) async fn finish(mut self) {
        while self.running.join_next().await.is_some() {}
    }
}

/// The hook moments an applied event is: `before_run`, `before_task`,
/// `after_task`, `on_failure` (a task's, or the run's), `after_run`.
fn moments(state: &RunState, event: &Event) -> Vec<(&'static str, Option<u32>)> {
    match *event {
        Event::RunStarted { .. } => vec![("before_run", None)],
        Event::TaskStarted { task, .. } => vec![("before_task", Some(task))],
        Event::TaskSucceeded { task, .. }
        | Event::TaskFailed { task, .. }
        | Event::TaskSkipped { task, .. }
        | Event::TaskCancelled { task, .. } => match state.status(task) {
            TaskStatus::Failed | TaskStatus::TimedOut => {
                vec![("after_task", Some(task)), ("on_failure", Some(task))]
            }
            status if status.is_final() => vec![("after_task", Some(task))],
            // A failure it retries is not the task's end.
            _ => Vec::new(),
        },
        Event::RunFinished {
            status: RunStatus::Failed,
            ..
        } => {
            vec![("after_run", None), ("on_failure", None)]
        }
        Event::RunFinished { .. } => vec![("after_run", None)],
        _ => Vec::new(),
    }
}

/// The workflow's actions for `moment`, then the task's own.
fn actions<'a>(
    state: &'a RunState,
    moment: &'static str,
    task: Option<u32>,
) -> impl Iterator<Item = &'a Action> {
    let workflow = state.valid().workflow().hooks.as_ref();
    let own = task.and_then(|task| state.task(task).modifiers().hooks.as_deref());
    workflow
        .into_iter()
        .chain(own)
        .flat_map(move |hooks| hooks.actions().filter(move |(name, _, _)| *name == moment))
        .map(|(_, _, action)| action)
}

/// The hook ready to run, or why it cannot be (its templates do not
/// render).
fn job(
    host: &Host,
    state: &RunState,
    (moment, index, task): (&'static str, usize, Option<u32>),
    action: &Action,
    (seq, event): (u64, &Value),
) -> Result<Job, String> {
    let config = &host.config;
    let workflow = state.valid().workflow();
    let name = format!("{moment}[{index}]");
    let mut resolved = state
        .resolve_hook(task, action, event)
        .map_err(|error| format!("hook {name} does not render: {error}"))?;
    resolved
        .env
        .push(("BATON_EVENT".to_owned(), event.to_string()));
    resolved
        .env
        .push(("BATON_HOOK".to_owned(), moment.to_owned()));
    // An HTTP hook with no body of its own is sent the event.
    if let Work::Http(call) = &mut resolved.work
        && matches!(call.body, HttpBody::Empty)
        && !matches!(call.method, Method::Get | Method::Head)
    {
        call.body = HttpBody::Json(event.clone());
    }
    let timeout = workflow.defaults.timeout;
    let context = TaskContext {
        run_id: state.run_id().to_owned(),
        task_id: task.map_or_else(String::new, |task| state.task(task).id.to_string()),
        attempt: 1,
        idempotency_key: format!("{}:hook:{seq}:{name}", state.run_id()),
        inputs: Value::Null,
        needs: serde_json::Map::new(),
        env: Vec::new(),
    };
    Ok(Job {
        executors: Arc::clone(&host.executors),
        slots: Arc::clone(&host.slots),
        attempt: Attempt {
            context,
            prefix: PathBuf::new(),
            workdir: config.workdir.clone(),
            timeout: Some(timeout.map_or(HOOK_TIMEOUT, |timeout| timeout.after)),
            grace: timeout.map_or(config.kill_grace, |timeout| timeout.grace),
            resolved,
            lineage: None,
            stdin: None,
            carried: None,
        },
        policy: workflow.defaults.retry.clone().unwrap_or_default(),
        name,
    })
}

/// Leaves why a hook did not run where its logs would be.
async fn give_up(dir: PathBuf, why: String) {
    let _ = tokio::fs::create_dir_all(&dir).await;
    let _ = tokio::fs::write(dir.join("failed.txt"), format!("{why}\n")).await;
}

/// `STATE_DIR/runs/RUN/hooks/SEQ-MOMENT-INDEX`: one directory per firing,
/// one per attempt below it.
fn hook_dir(
    state_dir: &std::path::Path,
    run: &str,
    seq: u64,
    moment: &str,
    index: usize,
) -> PathBuf {
    state_dir
        .join("runs")
        .join(run)
        .join("hooks")
        .join(format!("{seq}-{moment}-{index}"))
}

impl Job {
    /// Runs the hook, an attempt's logs under `base/N`, until it succeeds
    /// or its retries run out.
    async fn run(self, base: PathBuf) {
        let Job {
            executors,
            slots,
            mut attempt,
            policy,
            name,
        } = self;
        let mut number = 1;
        loop {
            attempt.prefix = base.join(number.to_string());
            attempt.context.attempt = number;
            let (_keep, never) = oneshot::channel();
            let Ok(permit) = slots.acquire().await else {
                return;
            };
            let outcome = executors.execute(attempt.clone(), never).await;
            drop(permit);
            let failure = match outcome {
                Outcome::Failed(failure) => failure,
                Outcome::Succeeded(_) | Outcome::Cancelled => return,
            };
            if number < policy.max_attempts && retries(&policy, &failure) {
                let delay = retry_delay(&policy, number, &attempt.context.run_id, &name);
                tokio::time::sleep(delay.as_std()).await;
                number += 1;
                continue;
            }
            give_up(
                base,
                format!("hook {name} failed after {number} attempt(s): {failure}"),
            )
            .await;
            return;
        }
    }
}
