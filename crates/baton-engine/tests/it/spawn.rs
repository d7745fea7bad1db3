//! Dynamic spawning: tasks a task's output asks for run under it, are
//! checked like any spec, hold back what needs the spawning task, and are
//! continued rather than spawned again after a crash.

use baton_core::run::{Event, RunStatus, TaskStatus};
use baton_engine::Handler;
use serde_json::json;

use crate::util::{engine, run};

#[tokio::test]
async fn spawned_tasks_run_under_their_parent_and_hold_back_its_dependants() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.register(
        "planner",
        Handler::blocking(|_| {
            Ok(json!({
                "plan": "fix then retest",
                "spawn": [
                    {"id": "fix", "run": "echo fixed >> order.log"},
                    {
                        "id": "retest",
                        "needs": ["fix"],
                        "run": "echo retested >> order.log; echo '{\"green\": true}' > \"$BATON_OUTPUT\"",
                    },
                ],
            }))
        }),
    );
    let report = run(
        &engine,
        r#"
name: triage
tasks:
  test: {handler: planner}
  release:
    needs: [test]
    run: |
      echo released >> order.log
      test "{{ tasks.test.output.spawned.tasks.retest.green }}" = true
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("order.log")).unwrap(),
        "fixed\nretested\nreleased\n",
        "release waited for the spawned tasks"
    );
    let output = report.task("test").unwrap().output.clone().unwrap();
    let child = format!("{}.test.1", report.run_id);
    assert_eq!(
        output,
        json!({
            "plan": "fix then retest",
            "spawned": {"run": child, "tasks": {"retest": {"green": true}}},
        })
    );
    let record = engine.store().run(&child).await.unwrap();
    assert_eq!(record.parent.as_ref().unwrap().task, "test");
    assert_eq!(record.parent.as_ref().unwrap().spawn_depth, 1);
    assert_eq!(record.inputs["parent"], json!({"plan": "fix then retest"}));
}

async fn spawning(spec: &str, spawn: serde_json::Value) -> (RunStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.register(
        "spawner",
        Handler::blocking(move |_| Ok(json!({"spawn": spawn.clone()}))),
    );
    let report = run(&engine, spec).await;
    let note = report
        .task("work")
        .unwrap()
        .note
        .clone()
        .unwrap_or_default();
    (report.status, note)
}

#[tokio::test]
async fn a_spawn_that_is_not_a_dag_or_over_its_limits_fails_the_spawning_task() {
    let spec = "name: s\nmax_spawn: 2\ntasks:\n  work: {handler: spawner}\n";
    let cycle = json!([
        {"id": "a", "needs": ["b"], "noop": true},
        {"id": "b", "needs": ["a"], "noop": true},
    ]);
    let (status, note) = spawning(spec, cycle).await;
    assert_eq!(status, RunStatus::Failed);
    assert!(note.starts_with("cannot spawn: "), "{note}");
    assert!(note.contains("cycle"), "{note}");

    let three = json!([
        {"id": "a", "noop": true},
        {"id": "b", "noop": true},
        {"id": "c", "noop": true},
    ]);
    let (_, note) = spawning(spec, three).await;
    assert_eq!(
        note,
        "cannot spawn: 3 tasks are more than `max_spawn` (2) allows"
    );

    let outside = json!([{"id": "a", "needs": ["work"], "noop": true}]);
    let (_, note) = spawning(spec, outside).await;
    assert!(
        note.contains("tasks.a.needs[0]: task `a` needs `work`, which does not exist"),
        "{note}"
    );

    let (status, note) = spawning(spec, json!("not a list")).await;
    assert_eq!(status, RunStatus::Failed);
    assert_eq!(
        note,
        "cannot spawn: `spawn` must be a list of tasks, each with an `id`"
    );
}

#[tokio::test]
async fn spawned_tasks_may_spawn_in_turn_only_as_deep_as_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    // Every `grow` task spawns another `grow`, for ever.
    engine.register(
        "grow",
        Handler::blocking(|_| Ok(json!({"spawn": [{"id": "grow", "handler": "grow"}]}))),
    );
    let report = run(
        &engine,
        "name: s\nmax_spawn_depth: 2\ntasks:\n  grow: {handler: grow}\n",
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    let note = report.task("grow").unwrap().note.clone().unwrap();
    assert!(
        note.contains("spawned tasks may spawn only 2 level(s) deep (`max_spawn_depth`)"),
        "{note}"
    );
    let deepest = engine
        .recorded(&format!("{}.grow.1.grow.1", report.run_id))
        .await
        .unwrap();
    assert_eq!(deepest.status, RunStatus::Failed, "level 2 tried a third");
}

#[test]
fn spawned_tasks_cut_off_by_a_dead_process_go_on_without_spawning_again() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
name: parent
tasks:
  plan:
    run: |
      echo planned >> plans.log
      cat > "$BATON_OUTPUT" <<'JSON'
      {"topic": "flaky test", "spawn": [
        {"id": "first", "run": "echo ran >> first.log"},
        {"id": "second", "needs": ["first"], "run": "touch second-started; while [ ! -f go ]; do sleep 0.02; done"}
      ]}
      JSON
"#;
    let (run_id, report, _) = crate::util::cut_off_then_resumed(
        dir.path(),
        spec,
        |event| matches!(event, Event::TaskStarted { .. }),
        "second-started",
    );
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let plan = report.task("plan").unwrap();
    assert_eq!(plan.status, TaskStatus::Succeeded);
    assert_eq!(plan.output.as_ref().unwrap()["topic"], json!("flaky test"));
    assert_eq!(
        plan.output.as_ref().unwrap()["spawned"]["run"],
        json!(format!("{run_id}.plan.1"))
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(
        read("plans.log"),
        "planned\n",
        "the spawning process ran once"
    );
    assert_eq!(read("first.log"), "ran\n", "a finished spawned task kept");
}
