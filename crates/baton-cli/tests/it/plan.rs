use crate::util::{baton, workspace};

#[test]
fn plan_prints_levels_and_the_critical_path() {
    let output = baton()
        .arg("plan")
        .arg(workspace().join("examples/release.yaml"))
        .output()
        .unwrap();
    assert!(output.status.success());
    expect_test::expect![[r#"
        workflow release: 6 tasks, 6 edges, 5 levels, max width 2
        critical path (5m22s): checkout -> build -> test -> approve -> publish
        one at a time: 6m2s

        level 1  checkout
        level 2  build, lint
        level 3  test
        level 4  approve
        level 5  publish
    "#]]
    .assert_eq(&String::from_utf8(output.stdout).unwrap());
}

#[test]
fn plan_json_is_data() {
    let output = baton()
        .args(["plan", "--json"])
        .arg(workspace().join("examples/release.yaml"))
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["levels"][1], serde_json::json!(["build", "lint"]));
    assert_eq!(plan["max_width"], 2);
    assert_eq!(plan["critical_path_estimate"], "5m22s");
}

#[test]
fn graph_prints_mermaid_and_dot() {
    let spec = workspace().join("examples/release.yaml");
    let mermaid = baton().arg("graph").arg(&spec).output().unwrap();
    let mermaid = String::from_utf8(mermaid.stdout).unwrap();
    assert!(mermaid.starts_with("flowchart TD\n"));
    assert!(
        mermaid.contains("when: tasks.approve.output.choice == 'publish'"),
        "{mermaid}"
    );
    let dot = baton()
        .args(["graph", "--format", "dot"])
        .arg(&spec)
        .output()
        .unwrap();
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(dot.starts_with("digraph \"release\" {"), "{dot}");
    assert!(dot.contains("shape=hexagon"), "{dot}");
}

#[test]
fn plan_refuses_an_invalid_spec() {
    baton()
        .args(["plan", "-"])
        .write_stdin("name: w\ntasks:\n  a: {needs: [a], noop: true}\n")
        .assert()
        .code(1);
}

#[test]
fn generated_benchmark_specs_are_valid() {
    let generated = baton()
        .args(["bench", "gen", "--nodes", "300", "--seed", "3"])
        .output()
        .unwrap();
    assert!(generated.status.success());
    let again = baton()
        .args(["bench", "gen", "--nodes", "300", "--seed", "3"])
        .output()
        .unwrap();
    assert_eq!(generated.stdout, again.stdout, "same seed, same spec");
    baton()
        .args(["plan", "-"])
        .write_stdin(generated.stdout)
        .assert()
        .success();
}
