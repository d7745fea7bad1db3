//! Task templates: `uses` tasks expanded from a templates directory when a
//! run starts, their `with` checked against the template's `params`.

use baton_core::run::RunStatus;
use baton_engine::{Engine, EngineConfig, Error, RunOptions};

use crate::util::{config, workflow};

const TEMPLATE: &str = r#"
name: greet
version: 1
description: Greets someone
params:
  who: { type: string }
  times: { type: integer, default: 1 }
task:
  run: |
    for i in $(seq {{ params.times }}); do echo "hello {{ params.who }}" >> greetings.log; done
    printf '{"who": "%s"}' "{{ params.who }}" > "$BATON_OUTPUT"
  env: { FROM_TEMPLATE: "yes", SHARED: template }
"#;

fn engine_with_templates(dir: &std::path::Path, templates: &[(&str, &str)]) -> Engine {
    let library = dir.join("templates");
    std::fs::create_dir_all(&library).unwrap();
    for (name, text) in templates {
        std::fs::write(library.join(name), text).unwrap();
    }
    Engine::new(EngineConfig {
        template_dirs: vec![library],
        ..config(dir)
    })
}

#[tokio::test]
async fn a_uses_task_runs_its_template_with_its_parameters_and_its_own_fields() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_templates(dir.path(), &[("greet@1.yaml", TEMPLATE)]);
    let report = engine
        .run(
            workflow(
                r#"
name: party
tasks:
  host:
    run: |
      echo '{"name": "x; touch pwned"}' > "$BATON_OUTPUT"
  twice:
    uses: greet@1
    with: {who: ada, times: 2}
  guest:
    needs: [host]
    uses: greet@1
    with: {who: "{{ tasks.host.output.name }}"}
    env: {SHARED: task}
  check:
    needs: [twice, guest]
    run: test "$FROM" = ada
    env: {FROM: "{{ tasks.twice.output.who }}"}
"#,
            ),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let log = std::fs::read_to_string(dir.path().join("greetings.log")).unwrap();
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["hello ada", "hello ada", "hello x; touch pwned"]);
    assert!(
        !dir.path().join("pwned").exists(),
        "a parameter is data in a script, never code"
    );
    let recorded = engine.store().run(&report.run_id).await.unwrap().workflow;
    let guest = recorded
        .tasks
        .iter()
        .find(|task| task.id == "guest")
        .unwrap();
    assert!(
        matches!(guest.kind, baton_core::TaskKind::Run(_)),
        "recorded expanded"
    );
    assert_eq!(guest.needs, ["host"]);
    assert_eq!(
        guest.modifiers().description.as_deref(),
        Some("Greets someone")
    );
    assert_eq!(
        guest.modifiers().env["SHARED"].as_str(),
        "task",
        "the task's env wins"
    );
    assert_eq!(guest.modifiers().env["FROM_TEMPLATE"].as_str(), "yes");
    assert_eq!(
        guest.modifiers().params["times"],
        serde_json::json!(1),
        "the default"
    );
    let order: Vec<&str> = recorded.tasks.iter().map(|task| task.id.as_str()).collect();
    assert_eq!(
        order,
        ["host", "twice", "guest", "check"],
        "written order kept"
    );
}

async fn problems(engine: &Engine, spec: &str) -> Vec<String> {
    match engine.start(workflow(spec), RunOptions::default()).await {
        Err(Error::Invalid(problems)) => problems
            .iter()
            .map(|problem| format!("{} {}: {}", problem.code, problem.path, problem.message))
            .collect(),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the run started"),
    }
}

#[tokio::test]
async fn parameters_and_templates_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_templates(
        dir.path(),
        &[
            ("greet@1.yaml", TEMPLATE),
            (
                "placed.yaml",
                "name: placed\ntask:\n  run: echo\n  needs: [elsewhere]\n",
            ),
            (
                "typo.yaml",
                "name: typo\nparams:\n  who: {type: string}\ntask:\n  run: echo {{ params.woh }}\n",
            ),
        ],
    );
    assert_eq!(
        problems(
            &engine,
            "name: p\ntasks:\n  a: {uses: greet@1, with: {times: many, whom: x}}\n  b: {uses: greet@2}\n  c: {uses: placed}\n",
        ).await,
        [
            "invalid-input tasks.a.with.times: parameter `times` of `greet@1` must be of type integer, got \"many\"",
            "missing-input tasks.a.with: `greet@1` needs parameter `who`",
            "invalid-input tasks.a.with.whom: `greet@1` has no parameter `whom`",
            &format!(
                "unknown-workflow tasks.b.uses: no template `greet@2` in {}",
                dir.path().join("templates").display()
            ),
            "unknown-workflow tasks.c.uses: template `placed` sets `needs` in its task; where a task sits and what it needs are the using workflow's",
        ]
    );
    assert_eq!(
        problems(
            &engine,
            "name: p\ntasks:\n  a: {uses: typo, with: {who: x}}\n"
        )
        .await,
        ["unknown-variable tasks.a.run: unknown parameter `woh`"]
    );
}
