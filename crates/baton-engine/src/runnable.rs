//! What this engine can run: an `agent` task whose capability it does not
//! serve, or a handler no one registered, is refused up front, with the
//! place it is written, rather than failing mid-run.

use std::collections::BTreeMap;

use baton_core::spec::TaskKind;
use baton_core::{Code, Path, Problem, Workflow};

use crate::config::AgentProvider;
use crate::executor::Handlers;

/// Every task kind or modifier of `workflow` this engine cannot run.
pub(crate) fn problems(
    workflow: &Workflow,
    handlers: &Handlers,
    agents: &BTreeMap<String, AgentProvider>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for task in &workflow.tasks {
        let path = || Path::task(&task.id);
        match &task.kind {
            TaskKind::Agent(agent) if !agents.contains_key(&agent.capability) => problems.push(
                Problem::new(
                    Code::NotRunnable,
                    path().key("agent").key("capability"),
                    format!("nothing here serves agent capability `{}`", agent.capability),
                )
                .with_help(format!(
                    "serve it with an OpenAI-compatible endpoint: `[agents.{}]` with `base_url` and `model` in baton.toml",
                    agent.capability
                )),
            ),
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
