//! Shapes and failure policies, end to end with real shell tasks.

use baton_core::run::RunStatus;

use crate::util::{engine, run, statuses};

#[tokio::test]
async fn a_linear_chain_passes_each_output_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: chain
tasks:
  one:
    run: |
      echo '{"n": 1}' > "$BATON_OUTPUT"
  two:
    needs: [one]
    run: |
      echo "{\"n\": $(( N + 1 ))}" > "$BATON_OUTPUT"
    env: {N: "{{ tasks.one.output.n }}"}
  three:
    needs: [two]
    command: [sh, -c, 'echo "{\"n\": $(( $0 * 10 ))}" > "$BATON_OUTPUT"', "{{ tasks.two.output.n }}"]
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        report.task("three").unwrap().output,
        Some(serde_json::json!({"n": 20}))
    );
}

#[tokio::test]
async fn a_diamond_and_a_wide_fan_out_join_with_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec =
        String::from("name: fan\ntasks:\n  split: {run: 'echo [1,2,3] > \"$BATON_OUTPUT\"'}\n");
    for part in 0..20 {
        spec.push_str(&format!(
            "  part{part}: {{needs: [split], run: 'echo {part} > \"$BATON_OUTPUT\"'}}\n"
        ));
    }
    let parts: Vec<String> = (0..20).map(|part| format!("part{part}")).collect();
    let sum: Vec<String> = (0..20)
        .map(|part| format!("tasks.part{part}.output"))
        .collect();
    spec.push_str(&format!(
        "  join:\n    needs: [{}]\n    run: echo {{{{ {} }}}} > \"$BATON_OUTPUT\"\n",
        parts.join(", "),
        sum.join(" + ")
    ));
    let report = run(&engine(dir.path()), &spec).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        report.task("join").unwrap().output,
        Some(serde_json::json!(190))
    );
}

#[tokio::test]
async fn fail_fast_stops_the_other_branch_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: ff
tasks:
  broken: {run: exit 4}
  slow: {run: sleep 30}
  after-slow: {needs: [slow], run: "true"}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        statuses(&report),
        [
            ("broken".to_owned(), "failed"),
            ("slow".to_owned(), "cancelled"),
            ("after-slow".to_owned(), "skipped"),
        ]
    );
    assert_eq!(report.task("broken").unwrap().exit_code, Some(4));
    assert_eq!(report.reason.as_deref(), Some("task `broken` failed"));
}

#[tokio::test]
async fn continue_finishes_independent_branches_and_says_why_the_rest_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: go-on
on_failure: continue
tasks:
  broken: {run: exit 1}
  after-broken: {needs: [broken], run: "true"}
  fine: {run: "true"}
  after-fine: {needs: [fine], run: "true"}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        statuses(&report),
        [
            ("broken".to_owned(), "failed"),
            ("after-broken".to_owned(), "skipped"),
            ("fine".to_owned(), "succeeded"),
            ("after-fine".to_owned(), "succeeded"),
        ]
    );
    assert_eq!(
        report.task("after-broken").unwrap().note.as_deref(),
        Some("upstream task `broken` failed")
    );
}

#[tokio::test]
async fn compensation_runs_in_reverse_topological_order_with_each_output() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: saga
on_failure: compensate
tasks:
  reserve:
    run: |
      echo '{"id": "r-1"}' > "$BATON_OUTPUT"
    compensate: {run: 'echo "release {{ output.id }}" >> undo.log'}
  charge:
    needs: [reserve]
    run: |
      echo '{"id": "c-7"}' > "$BATON_OUTPUT"
    compensate: {run: 'echo "refund {{ output.id }}" >> undo.log'}
  ship:
    needs: [charge]
    run: exit 1
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Compensated, "{report:#?}");
    let undo = std::fs::read_to_string(dir.path().join("undo.log")).unwrap();
    assert_eq!(undo, "refund c-7\nrelease r-1\n");
    assert_eq!(report.task("charge").unwrap().status.name(), "compensated");
}

#[tokio::test]
async fn conditions_skip_a_task_and_what_needs_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: when
inputs:
  deploy: {type: boolean, default: false}
tasks:
  build: {run: "true"}
  deploy: {needs: [build], when: "inputs.deploy", run: "true"}
  announce: {needs: [deploy], run: "true"}
  report: {needs: [build, deploy], run: "true"}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(
        statuses(&report),
        [
            ("build".to_owned(), "succeeded"),
            ("deploy".to_owned(), "skipped"),
            ("announce".to_owned(), "skipped"),
            ("report".to_owned(), "succeeded"),
        ]
    );
}
