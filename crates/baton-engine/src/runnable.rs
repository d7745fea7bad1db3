//! What this engine can run today. A spec may use kinds and modifiers that
//! later versions run (agents);
//! refusing them up front, with the place they are written, beats a run that
//! silently does less than the spec says.

use baton_core::spec::TaskKind;
use baton_core::{Code, Path, Problem, Workflow};

use crate::executor::Handlers;

/// Every task kind or modifier of `workflow` this engine cannot run.
pub(crate) fn problems(workflow: &Workflow, handlers: &Handlers) -> Vec<Problem> {
    let mut problems = Vec::new();
    let not_yet = |path: Path, what: &str| {
        Problem::new(
            Code::NotRunnable,
            path,
            format!("{what} cannot run in this version of baton yet"),
        )
        .at_key()
        .with_help("`baton validate` accepts it; remove it to run the workflow here")
    };
    for task in &workflow.tasks {
        let path = || Path::task(&task.id);
        match &task.kind {
            TaskKind::Agent(_) => problems.push(
                not_yet(path().key("agent"), "an `agent` task")
                    .with_help("agent tasks need remote workers, which arrive with `baton serve`"),
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
