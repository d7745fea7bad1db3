//! What this engine can run: an `agent` task whose capability it does not
//! serve, a task for remote workers where no server hands work to them, or
//! a handler no one registered, is refused up front, with the place it is
//! written, rather than failing mid-run.

use baton_core::spec::TaskKind;
use baton_core::{Code, Path, Problem, Workflow};

use crate::executor::Handlers;

/// Every task kind or modifier of `workflow` this engine cannot run.
pub(crate) fn problems(
    workflow: &Workflow,
    handlers: &Handlers,
    serves: impl Fn(&str) -> bool,
    workers: bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for task in &workflow.tasks {
        let path = || Path::task(&task.id);
        if task.modifiers().runs_on.is_some() && !workers {
            problems.push(
                Problem::new(
                    Code::NotRunnable,
                    path().key("runs_on"),
                    "the task runs on a remote worker, and this process hands no work to workers",
                )
                .at_key()
                .with_help("start the run on a server that workers connect to: `baton serve`, then `baton worker --server URL ...` and `baton --server URL run FILE`"),
            );
        }
        match &task.kind {
            TaskKind::Agent(agent) if !workers && !serves(&agent.capability) => {
                problems.push(
                Problem::new(
                    Code::NotRunnable,
                    path().key("agent").key("capability"),
                    format!("nothing here serves agent capability `{}`", agent.capability),
                )
                .with_help(format!(
                    "serve it with an OpenAI-compatible endpoint (`[agents.{}]` with `base_url` and `model` in baton.toml), or run it on a server (`baton serve`) where a worker offers it",
                    agent.capability
                )),
            )
            }
            TaskKind::Handler(name) if !handlers.contains_key(name) => problems.push(
                Problem::new(
                    Code::NotRunnable,
                    path().key("handler"),
                    format!("no handler named `{name}` is registered"),
                )
                .with_help("handler tasks run in programs that embed baton and register them with `Engine::register`"),
            ),
            _ => {}
        }
    }
    problems
}
