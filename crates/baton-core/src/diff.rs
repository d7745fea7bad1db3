//! What changed between two versions of a workflow: its settings and its
//! tasks, field by field, compared as the JSON they are stored as. What
//! `baton workflows diff NAME 3 4` prints.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::Workflow;

/// The changes from one version to another.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WorkflowDiff {
    /// Workflow-level fields (inputs, schedule, concurrency, ...) that
    /// changed.
    pub settings: Vec<FieldChange>,
    /// Tasks only the newer version has, in its order.
    pub added: Vec<String>,
    /// Tasks only the older version has, in its order.
    pub removed: Vec<String>,
    /// Tasks both have that differ, in the newer version's order.
    pub changed: Vec<TaskChange>,
}

/// A task both versions have, and what changed in it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskChange {
    pub task: String,
    pub fields: Vec<FieldChange>,
}

/// A field that changed: absent on one side when it was added or removed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl WorkflowDiff {
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
    }
}

/// The changes from `before` to `after`.
pub fn diff(older: &Workflow, newer: &Workflow) -> WorkflowDiff {
    let (mut before, mut after) = (object(older), object(newer));
    let old_tasks = tasks(&mut before);
    let new_tasks = tasks(&mut after);
    // The version always differs; it is no change of what runs.
    before.remove("version");
    after.remove("version");
    let mut changes = WorkflowDiff {
        settings: fields(&before, &after),
        ..WorkflowDiff::default()
    };
    for task in &newer.tasks {
        let id = task.id.as_str();
        match (old_tasks.get(id), new_tasks.get(id)) {
            (None, _) => changes.added.push(id.to_owned()),
            (Some(old), Some(new)) => {
                let fields = fields(&as_object(old), &as_object(new));
                if !fields.is_empty() {
                    changes.changed.push(TaskChange {
                        task: id.to_owned(),
                        fields,
                    });
                }
            }
            (Some(_), None) => {}
        }
    }
    changes.removed = older
        .tasks
        .iter()
        .filter(|task| newer.task(&task.id).is_none())
        .map(|task| task.id.to_string())
        .collect();
    changes
}

/// The tasks of a workflow's JSON, by id in spec order, taken out of it.
fn tasks(workflow: &mut Map<String, Value>) -> Map<String, Value> {
    match workflow.remove("tasks") {
        Some(Value::Object(tasks)) => tasks,
        _ => Map::new(),
    }
}

fn as_object(value: &Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn object(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    }
}

/// The fields that differ between two objects, by name: those `after`
/// has, then those only `before` has.
fn fields(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<FieldChange> {
    let mut changes: Vec<FieldChange> = after
        .iter()
        .filter(|(field, value)| before.get(*field) != Some(value))
        .map(|(field, value)| FieldChange {
            field: field.clone(),
            before: before.get(field).cloned(),
            after: Some(value.clone()),
        })
        .collect();
    changes.extend(
        before
            .iter()
            .filter(|(field, _)| !after.contains_key(*field))
            .map(|(field, value)| FieldChange {
                field: field.clone(),
                before: Some(value.clone()),
                after: None,
            }),
    );
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(yaml: &str) -> Workflow {
        crate::check_source(yaml, crate::Format::Yaml)
            .unwrap()
            .into_workflow()
    }

    #[test]
    fn tasks_added_removed_and_changed_are_named_with_their_fields() {
        let three = workflow(
            "name: ci\nversion: 3\ntasks:\n  build: {run: make}\n  lint: {run: clippy}\n  old: {noop: true}\n",
        );
        let four = workflow(
            "name: ci\nversion: 4\nschedule: {cron: '0 2 * * *'}\ntasks:\n  build: {run: make all, retry: {max_attempts: 3}}\n  lint: {run: clippy}\n  deploy: {needs: [build], run: ship}\n",
        );
        let changes = diff(&three, &four);
        assert_eq!(changes.added, ["deploy"]);
        assert_eq!(changes.removed, ["old"]);
        assert_eq!(changes.changed.len(), 1, "lint is unchanged");
        let build = &changes.changed[0];
        assert_eq!(build.task, "build");
        let fields: Vec<&str> = build
            .fields
            .iter()
            .map(|field| field.field.as_str())
            .collect();
        assert_eq!(fields, ["retry", "run"]);
        assert_eq!(build.fields[0].before, None, "retry is new");
        assert_eq!(build.fields[1].before, Some(Value::from("make")));
        assert_eq!(build.fields[1].after, Some(Value::from("make all")));
        let settings: Vec<&str> = changes
            .settings
            .iter()
            .map(|field| field.field.as_str())
            .collect();
        assert_eq!(settings, ["schedule"], "the version itself is no change");
    }

    #[test]
    fn a_version_diffed_with_itself_has_no_changes() {
        let one = workflow("name: ci\ntasks:\n  build: {run: make}\n");
        assert!(diff(&one, &one).is_empty());
    }
}
