//! Sub-workflows: child runs of their own, linked to the task attempt that
//! started them, retried by the parent task's policy, found by reference
//! in workflow directories or the registry, and continued after a crash.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use baton_core::run::{Event, RunStatus, TaskStatus};
use baton_engine::{Engine, Error, Handler, RunOptions};
use baton_store::ParentTask;
use serde_json::json;

use crate::util::{config, engine, run, workflow};

#[tokio::test]
async fn an_inline_child_runs_as_its_own_run_linked_to_the_parent_task() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let report = run(
        &engine,
        r#"
name: parent
tasks:
  plan:
    run: |
      echo '{"topic": "caching"}' > "$BATON_OUTPUT"
  research:
    needs: [plan]
    workflow:
      inline:
        name: research
        inputs: {topic: {type: string}}
        tasks:
          search:
            run: |
              printf '{"hits": ["%s-1", "%s-2"]}' {{ inputs.topic }} {{ inputs.topic }} > "$BATON_OUTPUT"
          summarise:
            needs: [search]
            run: |
              printf '{"count": %s}' {{ tasks.search.output.hits | length }} > "$BATON_OUTPUT"
      inputs: {topic: "{{ tasks.plan.output.topic }}"}
  write:
    needs: [research]
    run: test {{ tasks.research.output.tasks.summarise.count }} = 2
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let child_id = format!("{}.research.1", report.run_id);
    let research = report.task("research").unwrap();
    assert_eq!(
        research.output,
        Some(json!({
            "run": child_id,
            "tasks": {
                "search": {"hits": ["caching-1", "caching-2"]},
                "summarise": {"count": 2},
            },
        }))
    );
    assert_eq!(
        research.note.as_deref(),
        Some(&*format!("child run {child_id}"))
    );

    let child = engine.store().run(&child_id).await.unwrap();
    assert_eq!(
        child.parent,
        Some(ParentTask {
            run_id: report.run_id.clone(),
            task: "research".to_owned(),
            attempt: 1,
            depth: 1,
            spawn_depth: 0,
            copy: None,
        })
    );
    assert_eq!(child.inputs["topic"], json!("caching"));
    let child_report = engine.recorded(&child_id).await.unwrap();
    assert_eq!(child_report.status, RunStatus::Succeeded);
    assert_eq!(child_report.workflow, "research");
}

#[tokio::test]
async fn a_failed_child_is_the_task_failing_and_its_retry_starts_a_new_child() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    engine.register(
        "flaky",
        Handler::blocking(move |_| match counter.fetch_add(1, Ordering::SeqCst) {
            0 => Err("the first try fails".into()),
            _ => Ok(json!({"ok": true})),
        }),
    );
    let report = run(
        &engine,
        r#"
name: parent
tasks:
  delegate:
    workflow:
      inline:
        name: child
        tasks:
          steady: {noop: true}
          flaky: {needs: [steady], handler: flaky}
    retry: {max_attempts: 2, backoff: constant, initial: 10ms}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(report.task("delegate").unwrap().attempts, 2);
    let first = engine
        .recorded(&format!("{}.delegate.1", report.run_id))
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Failed);
    assert_eq!(
        first.task("flaky").unwrap().note.as_deref(),
        Some("the first try fails")
    );
    let second = engine
        .recorded(&format!("{}.delegate.2", report.run_id))
        .await
        .unwrap();
    assert_eq!(second.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_child_that_keeps_failing_fails_the_task_with_the_childs_reason() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: parent
tasks:
  delegate:
    workflow:
      inline:
        name: child
        tasks:
          broken: {run: exit 3}
  after: {needs: [delegate], noop: true}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    let delegate = report.task("delegate").unwrap();
    assert_eq!(delegate.status, TaskStatus::Failed);
    let note = delegate.note.as_deref().unwrap();
    assert!(
        note.starts_with(&format!("child run {}.delegate.1 failed", report.run_id)),
        "{note}"
    );
    assert_eq!(report.task("after").unwrap().status, TaskStatus::Skipped);
}

#[tokio::test]
async fn references_are_found_in_the_workflow_directories_then_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("workflows");
    std::fs::create_dir_all(&library).unwrap();
    std::fs::write(
        library.join("greet.yaml"),
        "name: greet\nversion: 2\ninputs: {who: {type: string}}\ntasks:\n  hello:\n    run: |\n      printf '{\"text\": \"hello %s\"}' {{ inputs.who }} > \"$BATON_OUTPUT\"\n",
    )
    .unwrap();
    let engine = Engine::new(baton_engine::EngineConfig {
        workflow_dirs: vec![library],
        ..config(dir.path())
    });
    let registered = workflow("name: shout\nversion: 1\ntasks:\n  loud: {noop: true}\n");
    engine
        .store()
        .put_workflow(&baton_store::StoredWorkflow {
            name: "shout".to_owned(),
            version: 1,
            digest: baton_core::run::Digest::of_bytes(b"shout"),
            created_at: baton_core::run::Millis(0),
            workflow: Arc::new(registered),
        })
        .await
        .unwrap();
    let report = run(
        &engine,
        r#"
name: parent
tasks:
  greet:
    workflow: {ref: greet@2, inputs: {who: world}}
  shout: {workflow: shout@1}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        report.task("greet").unwrap().output.as_ref().unwrap()["tasks"]["hello"],
        json!({"text": "hello world"})
    );
    let record = engine.store().run(&report.run_id).await.unwrap();
    assert_eq!(
        record.subworkflows.keys().collect::<Vec<_>>(),
        ["greet@2", "shout@1"],
        "what was found is pinned with the run"
    );

    let error = engine
        .start(
            workflow("name: p\ntasks:\n  a: {workflow: greet@3}\n  b: {workflow: nowhere}\n"),
            RunOptions::default(),
        )
        .await
        .err()
        .unwrap();
    let Error::Invalid(problems) = error else {
        panic!("{error}")
    };
    let found: Vec<_> = problems
        .iter()
        .map(|problem| (problem.code.as_str(), problem.path.to_string()))
        .collect();
    assert_eq!(
        found,
        [
            ("unknown-workflow", "tasks.a.workflow".to_owned()),
            ("unknown-workflow", "tasks.b.workflow".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_workflow_that_runs_itself_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ping.yaml"),
        "name: ping\ntasks:\n  again: {workflow: pong}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pong.yaml"),
        "name: pong\ntasks:\n  again: {workflow: ping}\n",
    )
    .unwrap();
    let engine = Engine::new(baton_engine::EngineConfig {
        workflow_dirs: vec![dir.path().to_path_buf()],
        ..config(dir.path())
    });
    let error = engine
        .start(
            workflow("name: top\ntasks:\n  go: {workflow: ping}\n"),
            RunOptions::default(),
        )
        .await
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .contains("`ping` runs itself: ping -> pong -> ping"),
        "{error}"
    );
}

#[test]
fn a_child_cut_off_by_a_dead_process_is_continued_not_started_again() {
    let dir = tempfile::tempdir().unwrap();
    // `first` leaves a mark per run of it; `second` waits for `go`.
    let spec = r#"
name: parent
tasks:
  delegate:
    workflow:
      inline:
        name: child
        tasks:
          first:
            run: echo ran >> first-runs
          second:
            needs: [first]
            run: |
              touch second-started
              while [ ! -f go ]; do sleep 0.02; done
"#;
    let (run_id, report, engine) = crate::util::cut_off_then_resumed(
        dir.path(),
        spec,
        |event| matches!(event, Event::TaskStarted { .. }),
        "second-started",
    );
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let delegate = report.task("delegate").unwrap();
    assert_eq!(delegate.attempts, 2, "attempt 1 was lost with the process");
    let child = format!("{run_id}.delegate.1");
    assert_eq!(delegate.output.as_ref().unwrap()["run"], json!(child));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("first-runs")).unwrap(),
        "ran\n",
        "the child's finished task did not run again"
    );
    let second_child_missing = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(engine.store().run(&format!("{run_id}.delegate.2")))
        .is_err();
    assert!(second_child_missing, "no second child was started");
}

#[tokio::test]
async fn a_failed_child_escalates_to_a_supervisor_that_sees_why() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: delegation
tasks:
  delegate:
    workflow:
      inline:
        name: team
        tasks:
          attempt: {run: exit 7}
    escalate: supervisor
  supervisor:
    run: |
      printf '{"saw": "%s"}' "{{ tasks.delegate.failure }}" > "$BATON_OUTPUT"
  ship: {needs: [delegate], noop: true}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let delegate = report.task("delegate").unwrap();
    assert_eq!(delegate.status, TaskStatus::Failed);
    assert!(
        delegate
            .note
            .as_deref()
            .unwrap()
            .ends_with("; escalated to `supervisor`"),
        "{delegate:?}"
    );
    let saw = report.task("supervisor").unwrap().output.as_ref().unwrap()["saw"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        saw.starts_with(&format!("child run {}.delegate.1 failed", report.run_id)),
        "{saw}"
    );
    assert_eq!(report.task("ship").unwrap().status, TaskStatus::Skipped);
}

#[tokio::test]
async fn a_compensating_parent_undoes_its_children_last_finished_first() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let report = run(
        &engine,
        r#"
name: trip
on_failure: compensate
tasks:
  reserve:
    run: "true"
    compensate: {run: echo release >> undo.log}
  book:
    needs: [reserve]
    workflow:
      inline:
        name: booking
        tasks:
          flight:
            run: "true"
            compensate: {run: echo cancel-flight >> undo.log}
          hotel:
            needs: [flight]
            run: "true"
            compensate: {run: echo cancel-hotel >> undo.log}
  plan:
    needs: [book]
    run: |
      cat > "$BATON_OUTPUT" <<'JSON'
      {"spawn": [{"id": "car", "run": "true", "compensate": {"run": "echo cancel-car >> undo.log"}}]}
      JSON
  pay:
    needs: [plan]
    run: exit 1
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Compensated, "{report:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("undo.log")).unwrap(),
        "cancel-car\ncancel-hotel\ncancel-flight\nrelease\n"
    );
    for child in ["book", "plan"] {
        let child = engine
            .recorded(&format!("{}.{child}.1", report.run_id))
            .await
            .unwrap();
        assert_eq!(child.status, RunStatus::Compensated, "{child:#?}");
    }
    assert_eq!(report.task("book").unwrap().status, TaskStatus::Compensated);
}

#[tokio::test]
async fn a_repeated_sub_workflow_runs_a_child_per_iteration_until_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let report = run(
        &engine,
        r#"
name: until-green
tasks:
  cycle:
    workflow:
      inline:
        name: fix-and-test
        inputs: {round: {type: integer}}
        tasks:
          fix:
            run: echo fixing round {{ inputs.round }}
          test:
            needs: [fix]
            run: |
              if [ {{ inputs.round }} -ge 3 ]; then echo '{"green": true}'; else echo '{"green": false}'; fi > "$BATON_OUTPUT"
      inputs: {round: "{{ iteration }}"}
    repeat: {until: "output.tasks.test.green", max: 5}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let cycle = report.task("cycle").unwrap();
    assert_eq!(cycle.attempts, 3, "three iterations, each an attempt");
    assert_eq!(
        cycle.output.as_ref().unwrap()["run"],
        json!(format!("{}.cycle.3", report.run_id))
    );
    for round in 1..=3 {
        let child = engine
            .recorded(&format!("{}.cycle.{round}", report.run_id))
            .await
            .unwrap();
        assert_eq!(child.status, RunStatus::Succeeded);
    }
}

#[tokio::test]
async fn a_foreach_over_a_sub_workflow_runs_a_child_per_item() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let report = run(
        &engine,
        r#"
name: fan-out
tasks:
  review:
    foreach: {items: "{{ ['api', 'web', 'cli'] }}", concurrency: 2}
    workflow:
      inline:
        name: review-one
        inputs: {part: {type: string}}
        tasks:
          lint:
            run: |
              printf '{"part": "%s"}' {{ inputs.part }} > "$BATON_OUTPUT"
      inputs: {part: "{{ item }}"}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let output = report.task("review").unwrap().output.clone().unwrap();
    let parts: Vec<&str> = output
        .as_array()
        .unwrap()
        .iter()
        .map(|child| child["tasks"]["lint"]["part"].as_str().unwrap())
        .collect();
    assert_eq!(parts, ["api", "web", "cli"], "in item order");
    let second = format!("{}.review.1.item-1", report.run_id);
    assert_eq!(output[1]["run"], json!(second));
    let record = engine.store().run(&second).await.unwrap();
    assert_eq!(record.parent.unwrap().copy.as_deref(), Some("item-1"));
}
