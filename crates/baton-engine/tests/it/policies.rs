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
async fn compensation_runs_last_finished_first_with_each_output() {
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

/// A saga whose `charge` refund fails once, then succeeds on its retry.
const SAGA: &str = r#"
name: saga
on_failure: compensate
tasks:
  reserve:
    run: "true"
    compensate: {run: echo released >> undo.log}
  charge:
    needs: [reserve]
    run: "true"
    retry: {max_attempts: 3, backoff: constant, initial: 2s}
    compensate:
      run: |
        echo try >> refund.log
        [ "$(wc -l < refund.log)" -ge 2 ]
"#;

#[tokio::test(start_paused = true)]
async fn a_failing_compensation_is_retried_then_leaves_the_run_compensation_failed() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        &format!(
            "{SAGA}  notify:\n    needs: [charge]\n    run: \"true\"\n    compensate: {{run: exit 4}}\n  ship:\n    needs: [notify]\n    run: exit 1\n"
        ),
    )
    .await;
    // notify's undo fails once (no retry policy): compensation stops there.
    assert_eq!(report.status, RunStatus::CompensationFailed, "{report:#?}");
    assert_eq!(
        report.reason.as_deref(),
        Some(
            "task `ship` failed; compensating `notify` failed after 1 attempt(s): exited with code 4; not compensated: notify, charge, reserve"
        )
    );
    assert!(!dir.path().join("refund.log").exists());
    assert_eq!(
        report.task("notify").unwrap().status.name(),
        "compensation_failed"
    );
    assert_eq!(report.task("charge").unwrap().status.name(), "succeeded");

    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        &format!("{SAGA}  ship:\n    needs: [charge]\n    run: exit 1\n"),
    )
    .await;
    assert_eq!(report.status, RunStatus::Compensated, "{report:#?}");
    let tries = std::fs::read_to_string(dir.path().join("refund.log")).unwrap();
    assert_eq!(tries, "try\ntry\n", "the refund was retried once");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("undo.log")).unwrap(),
        "released\n"
    );
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

#[tokio::test]
async fn a_failed_check_retries_with_its_message_and_fails_the_task_once_attempts_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: gate
on_failure: continue
tasks:
  score:
    run: |
      printf '{"score": %s, "told": "%s"}' "$BATON_ATTEMPT" "$TOLD" > "$BATON_OUTPUT"
    env: {TOLD: "{{ task.failure }}"}
    check:
      - {expr: "output.score >= 2", message: "score too low"}
    retry: {max_attempts: 3, initial: 10ms, on: [check]}
  strict:
    run: |
      echo '{"score": 1}' > "$BATON_OUTPUT"
    check: "output.score > 5"
"#,
    )
    .await;
    let score = report.task("score").unwrap();
    assert_eq!(score.status.name(), "succeeded", "{report:#?}");
    assert_eq!(score.attempts, 2);
    assert_eq!(
        score.output,
        Some(serde_json::json!({"score": 2, "told": "score too low"}))
    );
    let strict = report.task("strict").unwrap();
    assert_eq!(strict.status.name(), "failed");
    assert_eq!(
        strict.note.as_deref(),
        Some("check `output.score > 5` does not hold")
    );
    assert_eq!(report.status, RunStatus::Failed);
}

#[tokio::test]
async fn a_repeat_loop_runs_until_its_condition_holds_seeing_the_previous_output() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: loop
on_failure: continue
tasks:
  converge:
    run: |
      printf '{"n": %s, "before": %s}' "$N" "$BEFORE" > "$BATON_OUTPUT"
    env:
      N: "{{ iteration * 10 }}"
      BEFORE: "{{ previous.n if previous else 0 }}"
    repeat: {until: "output.n >= 30", max: 5}
  after:
    needs: [converge]
    run: |
      echo '{"saw": {{ tasks.converge.output.n }}}' > "$BATON_OUTPUT"
  never:
    run: |
      echo '{"n": 1}' > "$BATON_OUTPUT"
    repeat: {until: "output.n > 1", max: 2}
    retry: {max_attempts: 3, initial: 10ms}
"#,
    )
    .await;
    let converge = report.task("converge").unwrap();
    assert_eq!(converge.status.name(), "succeeded", "{report:#?}");
    assert_eq!(converge.attempts, 3, "each iteration is an attempt");
    assert_eq!(
        converge.output,
        Some(serde_json::json!({"n": 30, "before": 20}))
    );
    assert_eq!(
        report.task("after").unwrap().output,
        Some(serde_json::json!({"saw": 30}))
    );
    let never = report.task("never").unwrap();
    assert_eq!(never.status.name(), "failed");
    assert_eq!(never.attempts, 2, "a loop that ran out is not retried");
    assert_eq!(
        never.note.as_deref(),
        Some("`output.n > 1` did not hold after 2 iteration(s)")
    );
}

#[tokio::test]
async fn a_swarm_runs_its_copies_side_by_side_and_reduces_their_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: swarm
on_failure: continue
tasks:
  vote:
    run: |
      echo "\"$ANSWER\"" > "$BATON_OUTPUT"
    env: {ANSWER: "{{ variant.answer }}"}
    swarm:
      variants: [{answer: yes}, {answer: no}, {answer: yes}]
      reduce: majority
  race:
    run: |
      if [ "$COPY" != 1 ]; then sleep 30; touch "late-$COPY"; fi
      echo "$COPY" > "$BATON_OUTPUT"
    env: {COPY: "{{ variant }}"}
    swarm: {count: 3, reduce: first_success}
  gather:
    run: |
      echo "$COPY" > "$BATON_OUTPUT"
    env: {COPY: "{{ variant }}"}
    swarm: {count: 3, reduce: all}
  split:
    run: |
      echo "$COPY" > "$BATON_OUTPUT"
    env: {COPY: "{{ variant }}"}
    swarm: {count: 3, reduce: {quorum: 2}}
"#,
    )
    .await;
    let output = |id: &str| report.task(id).unwrap().output.clone();
    assert_eq!(
        output("vote"),
        Some(serde_json::json!("yes")),
        "{report:#?}"
    );
    assert_eq!(output("race"), Some(serde_json::json!(1)));
    for copy in [0, 2] {
        let late = dir.path().join(format!("late-{copy}"));
        assert!(
            !late.exists(),
            "copy {copy} was stopped, not left to finish"
        );
    }
    assert_eq!(output("gather"), Some(serde_json::json!([0, 1, 2])));
    let split = report.task("split").unwrap();
    assert_eq!(split.status.name(), "failed");
    assert_eq!(
        split.note.as_deref(),
        Some("no output reached the quorum of 2: at most 1 copies agree")
    );
}

#[tokio::test]
async fn foreach_runs_once_per_item_within_its_cap_and_collects_outputs_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: fan
on_failure: continue
tasks:
  list:
    run: |
      echo '{"files": ["a.txt", "b.txt", "c.txt", "d.txt"]}' > "$BATON_OUTPUT"
  each:
    needs: [list]
    foreach: {items: "{{ tasks.list.output.files }}", concurrency: 2}
    run: |
      n=$(ls running.* 2>/dev/null | wc -l); echo "$n" >> widths
      touch "running.$INDEX"; sleep 0.05; rm "running.$INDEX"
      printf '{"file": "%s", "index": %s}' "$FILE" "$INDEX" > "$BATON_OUTPUT"
    env: {FILE: "{{ item }}", INDEX: "{{ index }}"}
  count:
    needs: [each]
    run: |
      echo "{{ tasks.each.output | length }}" > "$BATON_OUTPUT"
  broken:
    foreach: "{{ [1, 2, 3] }}"
    run: |
      test "$ITEM" != 2
    env: {ITEM: "{{ item }}"}
  empty:
    foreach: "{{ [] }}"
    run: exit 1
"#,
    )
    .await;
    let each = report.task("each").unwrap();
    assert_eq!(each.status.name(), "succeeded", "{report:#?}");
    let outputs = each.output.clone().unwrap();
    let files: Vec<&str> = outputs
        .as_array()
        .unwrap()
        .iter()
        .map(|output| output["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["a.txt", "b.txt", "c.txt", "d.txt"]);
    let widths = std::fs::read_to_string(dir.path().join("widths")).unwrap();
    assert!(
        widths
            .lines()
            .all(|seen| seen.trim().parse::<u32>().unwrap() < 2),
        "at most two items at once: {widths}"
    );
    assert_eq!(
        report.task("count").unwrap().output,
        Some(serde_json::json!(4))
    );
    let broken = report.task("broken").unwrap();
    assert_eq!(broken.status.name(), "failed");
    assert!(
        broken.note.as_deref().unwrap().starts_with("item 1 failed"),
        "{broken:?}"
    );
    assert_eq!(
        report.task("empty").unwrap().output,
        Some(serde_json::json!([]))
    );
}

#[tokio::test]
async fn a_run_id_that_could_leave_the_runs_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let valid = baton_core::check(crate::util::workflow(
        "name: x\ntasks:\n  a: {noop: true}\n",
    ))
    .unwrap();
    let refused = engine(dir.path())
        .start_recorded(
            std::sync::Arc::new(valid),
            baton_engine::RunOptions {
                run_id: Some("../../outside".to_owned()),
                ..baton_engine::RunOptions::default()
            },
        )
        .await
        .err()
        .expect("refused");
    assert!(
        refused
            .to_string()
            .contains("run id `../../outside` is not valid"),
        "{refused}"
    );
}
