//! Sub-workflows: an attempt of a `workflow:` task is a child run of its
//! own (own id, events, trace and provenance), recorded with the parent
//! task's attempt it belongs to. The child's end is the attempt's end, so
//! the parent task's retry, timeout and failure policy apply to it as to
//! any task.
//!
//! Durability: a child's id is `PARENT.TASK.ATTEMPT`. When a crash cuts a
//! parent off, its next attempt continues the child the lost attempt
//! started (resumed from the store, finished tasks kept) instead of
//! starting the child's work again.
//!
//! References (`workflow: review@2`) are found when the parent starts, in
//! the engine's workflow directories and then the store's registry, and
//! pinned in the parent's record: a resumed run, and every child, runs
//! what was found then.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use baton_core::run::{ChildRun, ChildWorkflow, Failure, FailureKind, TaskStatus};
use baton_core::spec::TaskKind;
use baton_core::{Code, Duration, Format, Path, Problem, Workflow};
use baton_store::ParentTask;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::engine::{Engine, RunOptions};
use crate::reference::{Reference, searched};
use crate::report::RunReport;
use crate::runner::Outcome;

/// How deep sub-workflows may nest: deeper is a workflow that runs itself.
pub(crate) const MAX_DEPTH: u32 = 8;

/// Workflows by the reference that names them.
pub(crate) type Pinned = BTreeMap<String, Arc<Workflow>>;

/// Finds every workflow `workflow` names by reference (and those name in
/// turn) that `pinned` does not hold yet, and adds it; a reference that
/// finds nothing, names an invalid workflow or runs itself is a problem
/// at the task that wrote it.
pub(crate) async fn pin(engine: &Engine, workflow: &Workflow, pinned: &mut Pinned) -> Vec<Problem> {
    let mut problems = Vec::new();
    visit(
        engine,
        workflow,
        &Path::root(),
        pinned,
        &mut Vec::new(),
        &mut problems,
    )
    .await;
    problems
}

/// Pins what `workflow`'s tasks name, depth first (boxed: it recurses
/// into the workflows it finds).
fn visit<'a>(
    engine: &'a Engine,
    workflow: &'a Workflow,
    prefix: &'a Path,
    pinned: &'a mut Pinned,
    chain: &'a mut Vec<String>,
    problems: &'a mut Vec<Problem>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        for task in &workflow.tasks {
            let TaskKind::Workflow(child) = &task.kind else {
                continue;
            };
            let path = prefix.clone().join(&Path::task(&task.id).key("workflow"));
            if let Some(inline) = &child.inline {
                visit(engine, inline, &path.key("inline"), pinned, chain, problems).await;
                continue;
            }
            let Some(reference) = &child.reference else {
                continue;
            };
            let problem = |message: String| {
                Problem::new(Code::UnknownWorkflow, path.clone(), message).with_help("sub-workflows are found as NAME.yaml (or NAME@VERSION.yaml) next to the spec or in its workflows/ directory, then in the server's registry")
            };
            if chain.contains(reference) {
                let cycle = format!("{} -> {reference}", chain.join(" -> "));
                problems.push(problem(format!("`{reference}` runs itself: {cycle}")));
                continue;
            }
            let found = match pinned.get(reference) {
                Some(found) => Arc::clone(found),
                None => match find(engine, reference).await {
                    Ok(found) => {
                        pinned.insert(reference.clone(), Arc::clone(&found));
                        found
                    }
                    Err(why) => {
                        problems.push(problem(why));
                        continue;
                    }
                },
            };
            chain.push(reference.clone());
            visit(engine, &found, &path, pinned, chain, problems).await;
            chain.pop();
        }
    })
}

/// The workflow `reference` (`name` or `name@version`) names.
async fn find(engine: &Engine, reference: &str) -> Result<Arc<Workflow>, String> {
    let parsed = Reference::parse(reference)?;
    for file in parsed.candidates(&engine.config.workflow_dirs) {
        if let Some(found) = read(&file, &parsed)? {
            return Ok(Arc::new(found));
        }
    }
    match engine.store.workflow(parsed.name, parsed.version).await {
        Ok(stored) => Ok(stored.workflow),
        Err(baton_store::Error::UnknownWorkflow(_) | baton_store::Error::UnknownVersion { .. }) => {
            Err(format!(
                "no workflow `{reference}` in {} or the registry",
                searched(&engine.config.workflow_dirs, "workflow directory")
            ))
        }
        Err(error) => Err(format!("cannot look up `{reference}`: {error}")),
    }
}

/// The workflow in `file`, checked, if it exists and is the one asked for.
fn read(file: &std::path::Path, wanted: &Reference<'_>) -> Result<Option<Workflow>, String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(None);
    };
    let format = Format::detect(file.to_str(), &text);
    let valid = baton_core::check_source(&text, format).map_err(|mut problems| {
        baton_core::SourceMap::locate_all(&text, &mut problems);
        let first = problems.first().map_or_else(String::new, |problem| {
            let at = problem.location.as_ref().map_or_else(
                || problem.path.to_string(),
                |at| format!("{}:{}", at.line, at.column),
            );
            format!(" at {at}: {}", problem.message)
        });
        format!(
            "{} is not a valid workflow ({} problem(s), the first{first}); `baton validate` it",
            file.display(),
            problems.len()
        )
    })?;
    let workflow = valid.workflow();
    Ok(wanted
        .matches(file, &workflow.name, workflow.version)?
        .then(|| workflow.clone()))
}

/// Where a sub-workflow task's files are looked for: beside the spec that
/// names it, and in the `workflows/` directory there.
pub fn workflow_dirs(spec_dir: &std::path::Path) -> Vec<PathBuf> {
    vec![spec_dir.to_path_buf(), spec_dir.join("workflows")]
}

/// One attempt of a `workflow:` task, ready to run.
pub(crate) struct Child {
    pub(crate) engine: Engine,
    /// The attempt the child belongs to, and how deep the child nests.
    pub(crate) parent: ParentTask,
    pub(crate) run: ChildRun,
    pub(crate) pinned: Arc<Pinned>,
    pub(crate) timeout: Option<Duration>,
    /// The attempts of the task a crash cut off in this process's resume:
    /// a child they finished is taken as it ended.
    pub(crate) lost: Vec<u32>,
}

impl Child {
    /// Runs (or continues) the child to its end, stopping it if the
    /// parent's attempt is killed or times out.
    pub(crate) async fn run(self, kill: oneshot::Receiver<()>) -> Outcome {
        let handle = match self.start().await {
            Ok(handle) => handle,
            Err(failure) => return Outcome::Failed(failure),
        };
        let run_id = handle.run_id().to_owned();
        match supervise(handle, self.timeout, kill).await {
            Ok(report) => ended(&run_id, report),
            Err(stopped) => stopped,
        }
    }

    /// Continues the child of an earlier attempt that a crash interrupted,
    /// or starts this attempt's.
    async fn start(&self) -> Result<crate::RunHandle, Failure> {
        if let Some(handle) = carried(&self.engine, &self.parent, &self.lost).await? {
            return Ok(handle);
        }
        if self.parent.depth > MAX_DEPTH {
            return Err(Failure::new(
                FailureKind::Template,
                format!("sub-workflows nest more than {MAX_DEPTH} deep"),
            ));
        }
        let workflow = match &self.run.workflow {
            ChildWorkflow::Inline(workflow) => Arc::clone(workflow),
            ChildWorkflow::Reference(reference) => match self.pinned.get(reference) {
                Some(workflow) => Arc::clone(workflow),
                None => {
                    return Err(Failure::new(
                        FailureKind::Template,
                        format!("`{reference}` was not found when the run started"),
                    ));
                }
            },
        };
        let options = RunOptions {
            inputs: self.run.inputs.clone().into_iter().collect(),
            run_id: Some(child_id(&self.parent, self.parent.attempt)),
            parent: Some(self.parent.clone()),
            subworkflows: (*self.pinned).clone(),
            ..RunOptions::default()
        };
        self.engine
            .start(Arc::unwrap_or_clone(workflow), options)
            .await
            .map_err(|why| Failure::new(FailureKind::Template, why.to_string()))
    }
}

/// `PARENT.TASK.ATTEMPT` (`.item-N` or `.copy-N` for one of a foreach's
/// or swarm's children): the child run of one attempt.
pub(crate) fn child_id(parent: &ParentTask, attempt: u32) -> String {
    match &parent.copy {
        Some(copy) => format!("{}.{}.{attempt}.{copy}", parent.run_id, parent.task),
        None => format!("{}.{}.{attempt}", parent.run_id, parent.task),
    }
}

/// The child run of an earlier attempt of the task that a crash cut off:
/// one that never finished, or finished while the attempt was lost. It is
/// resumed (a finished one just reports) instead of its work done again.
pub(crate) async fn carried(
    engine: &Engine,
    parent: &ParentTask,
    lost: &[u32],
) -> Result<Option<crate::RunHandle>, Failure> {
    let error = |message: String| Failure::new(FailureKind::Error, message);
    for earlier in (1..parent.attempt).rev() {
        let id = child_id(parent, earlier);
        match engine.store.summary(&id).await {
            Ok(summary) if !summary.status.is_final() || lost.contains(&earlier) => {
                return engine
                    .resume(&id, false)
                    .await
                    .map(Some)
                    .map_err(|why| error(format!("cannot continue child run {id}: {why}")));
            }
            Ok(_) => return Ok(None),
            Err(baton_store::Error::UnknownRun(_)) => {}
            Err(why) => return Err(error(format!("cannot read child run {id}: {why}"))),
        }
    }
    Ok(None)
}

/// Waits for a child run's end, cancelling it (and waiting for that) if
/// the attempt is killed or its timeout passes; then the attempt's end is
/// the error.
pub(crate) async fn supervise(
    handle: crate::RunHandle,
    timeout: Option<Duration>,
    kill: oneshot::Receiver<()>,
) -> Result<Result<RunReport, crate::Error>, Outcome> {
    let canceller = handle.canceller();
    let mut finish = std::pin::pin!(handle.finish());
    let limit = async {
        match timeout {
            Some(after) => tokio::time::sleep(after.as_std()).await,
            None => std::future::pending().await,
        }
    };
    let stopped = tokio::select! {
        report = &mut finish => return Ok(report),
        () = limit => Outcome::Failed(Failure::new(
            FailureKind::Timeout,
            format!("timed out after {}", timeout.unwrap_or(Duration::ZERO)),
        )),
        Ok(()) = kill => Outcome::Cancelled,
    };
    canceller.cancel();
    let _ = finish.await;
    Err(stopped)
}

/// The attempt's end, from the child's: its outputs by task when it
/// succeeded, why it did not otherwise.
pub(crate) fn ended(run_id: &str, report: Result<RunReport, crate::Error>) -> Outcome {
    let report = match report {
        Ok(report) => report,
        Err(why) => {
            return Outcome::Failed(Failure::new(
                FailureKind::Error,
                format!("child run {run_id} stopped: {why}"),
            ));
        }
    };
    if report.succeeded() {
        let tasks: Map<String, Value> = report
            .tasks
            .into_iter()
            .filter_map(|task| Some((task.id, task.output?)))
            .collect();
        return Outcome::Succeeded(Some(serde_json::json!({
            "run": run_id,
            "tasks": tasks,
        })));
    }
    // The reason names the task that failed; its note says why, so a
    // failure deep in nested runs reaches the top with its root cause.
    let cause = report
        .tasks
        .iter()
        .find(|task| matches!(task.status, TaskStatus::Failed | TaskStatus::TimedOut))
        .and_then(|task| task.note.as_deref())
        .map_or_else(String::new, |note| format!(" ({note})"));
    let why = report
        .reason
        .map_or_else(String::new, |reason| format!(": {reason}{cause}"));
    Outcome::Failed(Failure::new(
        FailureKind::Error,
        format!("child run {run_id} {}{why}", report.status.name()),
    ))
}
