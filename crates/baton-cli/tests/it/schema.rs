use crate::util::{baton, workspace};

#[test]
fn the_committed_schema_matches_the_types() {
    let output = baton().arg("schema").output().unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(workspace().join("schema/workflow.schema.json"))
        .unwrap_or_default();
    assert!(
        generated == committed,
        "schema/workflow.schema.json is stale: run `cargo run -- schema > schema/workflow.schema.json`"
    );
}

#[test]
fn the_example_conforms_to_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_slice(&baton().arg("schema").output().unwrap().stdout).unwrap();
    assert_eq!(schema["title"], "Workflow");
    let properties = schema["properties"].as_object().unwrap();
    for field in [
        "name",
        "inputs",
        "defaults",
        "concurrency",
        "on_failure",
        "tasks",
    ] {
        assert!(properties.contains_key(field), "{field}");
    }
    let task = &schema["$defs"]["TaskDoc"]["properties"];
    for field in [
        "run",
        "command",
        "http",
        "agent",
        "approval",
        "workflow",
        "noop",
        "needs",
        "when",
        "retry",
        "timeout",
        "foreach",
        "repeat",
        "check",
        "compensate",
        "cache",
        "priority",
        "concurrency_key",
    ] {
        assert!(task.get(field).is_some(), "task field {field}");
    }
}
