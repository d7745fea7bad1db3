//! Sub-workflow references (`workflow: review@2`), found when a run
//! starts, in the engine's workflow directories and then the store's
//! registry, and pinned in the run's record: a resumed run, and every
//! child, runs what was found then.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use baton_core::spec::TaskKind;
use baton_core::{Code, Format, Path, Problem, Workflow};
use baton_store::Catalog;

use crate::reference::{Reference, searched};

/// How deep sub-workflows may nest: deeper is a workflow that runs itself.
pub(crate) const MAX_DEPTH: u32 = 8;

/// Where references are looked for: directories first, then the registry.
pub(crate) struct Place<'a> {
    pub(crate) dirs: &'a [PathBuf],
    pub(crate) registry: &'a dyn Catalog,
}

/// Workflows by the reference that names them.
pub(crate) type Pinned = BTreeMap<String, Arc<Workflow>>;

/// Finds every workflow `workflow` names by reference (and those name in
/// turn) that `pinned` does not hold yet, and adds it; a reference that
/// finds nothing, names an invalid workflow or runs itself is a problem
/// at the task that wrote it.
pub(crate) async fn pin(
    place: &Place<'_>,
    workflow: &Workflow,
    pinned: &mut Pinned,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    visit(
        place,
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
    place: &'a Place<'a>,
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
                visit(place, inline, &path.key("inline"), pinned, chain, problems).await;
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
                None => match find(place, reference).await {
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
            visit(place, &found, &path, pinned, chain, problems).await;
            chain.pop();
        }
    })
}

/// The workflow `reference` (`name` or `name@version`) names.
async fn find(place: &Place<'_>, reference: &str) -> Result<Arc<Workflow>, String> {
    let parsed = Reference::parse(reference)?;
    for file in parsed.candidates(place.dirs) {
        if let Some(found) = read(&file, &parsed)? {
            return Ok(Arc::new(found));
        }
    }
    match place.registry.workflow(parsed.name, parsed.version).await {
        Ok(stored) => Ok(stored.workflow),
        Err(baton_store::Error::UnknownWorkflow(_) | baton_store::Error::UnknownVersion { .. }) => {
            Err(format!(
                "no workflow `{reference}` in {} or the registry",
                searched(place.dirs, "workflow directory")
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
