//! Task templates: `uses: name@version` with `with:` parameters. A template
//! is a file in a templates directory (`NAME@VERSION.yaml` or `NAME.yaml`,
//! `.yml`, `.json`):
//!
//! ```yaml
//! name: pytest
//! version: 1
//! params:
//!   path: { type: string }
//!   workers: { type: integer, default: 4 }
//! task:
//!   command: [pytest, "{{ params.path }}", -n, "{{ params.workers }}"]
//!   retry: { max_attempts: 2 }
//! ```
//!
//! When a run starts, each `uses` task becomes the template's task with the
//! using task's own fields (needs, when, env, ...) laid over it and its
//! `with:` checked against `params` (unknown, missing and ill-typed ones are
//! problems at the task) and kept as the task's `params`, which its
//! templates read at run time like any value: shell-safe, and able to name
//! upstream outputs. The expanded workflow is what the run records, so a
//! resume needs no template files.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use baton_core::spec::{InputSpec, TaskKind, UsesTemplate};
use baton_core::{Code, Format, Path, Problem, Valid, Workflow};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::reference::{Reference, searched};

/// A template file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    name: String,
    #[serde(default)]
    version: Option<u32>,
    /// The expanded task's, unless the using task has its own.
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, InputSpec>,
    /// The task, without `id` or `needs`: where it sits is the user's.
    task: Map<String, Value>,
}

/// Whether `workflow` has a task to expand.
pub fn has_uses(workflow: &Workflow) -> bool {
    workflow
        .tasks
        .iter()
        .any(|task| matches!(task.kind, TaskKind::Uses(_)))
}

/// Where a spec's `uses` tasks find their templates: `templates/` beside it.
pub fn template_dirs(spec_dir: &FsPath) -> Vec<PathBuf> {
    vec![spec_dir.join("templates")]
}

/// `workflow` with every `uses` task replaced by its template's task,
/// checked.
pub fn expand_templates(workflow: &Workflow, dirs: &[PathBuf]) -> Result<Valid, Vec<Problem>> {
    let invalid = |error: serde_json::Error| {
        vec![Problem::new(
            Code::InvalidValue,
            Path::root(),
            error.to_string(),
        )]
    };
    let mut document = serde_json::to_value(workflow).map_err(invalid)?;
    let Some(Value::Object(mut tasks)) = document
        .as_object_mut()
        .and_then(|document| document.remove("tasks"))
    else {
        return Err(vec![Problem::new(
            Code::InvalidValue,
            Path::root(),
            "a workflow without a task map",
        )]);
    };
    // The tasks keep the order they were written in: JSON maps here are
    // sorted, so the document is written out task by task.
    let mut problems = Vec::new();
    let mut entries = Vec::with_capacity(workflow.tasks.len());
    for task in &workflow.tasks {
        let mut entry = tasks.remove(task.id.as_str()).unwrap_or_default();
        if let TaskKind::Uses(uses) = &task.kind {
            match expand_task(&entry, uses, &task.id, dirs) {
                Ok(expanded) => entry = Value::Object(expanded),
                Err(mut found) => problems.append(&mut found),
            }
        }
        entries.push(format!(
            "{}:{}",
            serde_json::to_string(&task.id).map_err(invalid)?,
            serde_json::to_string(&entry).map_err(invalid)?
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut text = document.to_string();
    text.pop();
    if text.len() > 1 {
        text.push(',');
    }
    text.push_str(&format!("\"tasks\":{{{}}}}}", entries.join(",")));
    baton_core::check_source(&text, Format::Json)
}

/// The template's task with the using task's fields over it.
fn expand_task(
    using: &Value,
    uses: &UsesTemplate,
    id: &str,
    dirs: &[PathBuf],
) -> Result<Map<String, Value>, Vec<Problem>> {
    let at = |key: &str| Path::task(id).key(key);
    let problem = |message: String| Problem::new(Code::UnknownWorkflow, at("uses"), message);
    let template = find(&uses.reference, dirs).map_err(|why| vec![problem(why)])?;
    for key in ["needs", "uses", "with", "id"] {
        if template.task.contains_key(key) {
            return Err(vec![problem(format!(
                "template `{}` sets `{key}` in its task; where a task sits and what it needs are the using workflow's",
                uses.reference
            ))]);
        }
    }
    let params = params(&template, uses, id)?;
    let mut expanded = template.task;
    if let Some(description) = template.description {
        expanded.insert("description".to_owned(), Value::String(description));
    }
    if let Value::Object(own) = using {
        for (key, value) in own {
            match (key.as_str(), value) {
                ("uses" | "with", _) => {}
                // Environments add up; the using task's entries win.
                ("env", Value::Object(env)) => {
                    let merged = expanded
                        .entry("env")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(merged) = merged {
                        merged.extend(env.clone());
                    }
                }
                _ => {
                    expanded.insert(key.clone(), value.clone());
                }
            }
        }
    }
    expanded.insert("params".to_owned(), Value::Object(params));
    Ok(expanded)
}

/// `with:` checked against the template's `params`, defaults filled in. A
/// value that is a template is checked when it renders.
fn params(
    template: &TemplateFile,
    uses: &UsesTemplate,
    id: &str,
) -> Result<Map<String, Value>, Vec<Problem>> {
    let with_path = || Path::task(id).key("with");
    let mut problems = Vec::new();
    let mut params = Map::new();
    for (name, spec) in &template.params {
        match (uses.with.get(name), &spec.default) {
            (Some(value), _) => {
                let templated = value.as_str().is_some_and(|text| text.contains("{{"));
                if !templated && !spec.kind.accepts(value) {
                    problems.push(Problem::new(
                        Code::InvalidInput,
                        with_path().key(name.clone()),
                        format!(
                            "parameter `{name}` of `{}` must be of type {}, got {value}",
                            uses.reference,
                            spec.kind.name()
                        ),
                    ));
                }
                params.insert(name.clone(), value.clone());
            }
            (None, Some(default)) => {
                params.insert(name.clone(), default.clone());
            }
            (None, None) => problems.push(
                Problem::new(
                    Code::MissingInput,
                    with_path(),
                    format!("`{}` needs parameter `{name}`", uses.reference),
                )
                .at_key(),
            ),
        }
    }
    for name in uses.with.keys() {
        if !template.params.contains_key(name) {
            let known: Vec<&str> = template.params.keys().map(String::as_str).collect();
            problems.push(
                Problem::new(
                    Code::InvalidInput,
                    with_path().key(name.clone()),
                    format!("`{}` has no parameter `{name}`", uses.reference),
                )
                .at_key()
                .with_help(if known.is_empty() {
                    "it takes none".to_owned()
                } else {
                    format!("it takes: {}", known.join(", "))
                }),
            );
        }
    }
    if problems.is_empty() {
        Ok(params)
    } else {
        Err(problems)
    }
}

/// The template `reference` (`name` or `name@version`) names.
fn find(reference: &str, dirs: &[PathBuf]) -> Result<TemplateFile, String> {
    let parsed = Reference::parse(reference)?;
    for file in parsed.candidates(dirs) {
        if let Some(template) = read(&file, &parsed)? {
            return Ok(template);
        }
    }
    Err(format!(
        "no template `{reference}` in {}",
        searched(dirs, "templates directory")
    ))
}

/// The template in `file`, if it exists and is the one asked for.
fn read(file: &FsPath, wanted: &Reference<'_>) -> Result<Option<TemplateFile>, String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(None);
    };
    let shown = file.display();
    let template: TemplateFile = match Format::detect(file.to_str(), &text) {
        Format::Json => serde_json::from_str(&text).map_err(|error| format!("{shown}: {error}"))?,
        Format::Yaml => {
            serde_saphyr::from_str(&text).map_err(|error| format!("{shown}: {error}"))?
        }
    };
    Ok(wanted
        .matches(file, &template.name, template.version)?
        .then_some(template))
}
