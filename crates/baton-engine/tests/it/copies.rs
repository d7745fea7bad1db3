//! `foreach` items and `swarm` copies are recorded as they succeed: a
//! crash does not run them again, a `foreach` retry runs only the items
//! that failed, and a `swarm` retry votes afresh.

use std::sync::Arc;

use baton_core::run::{Event, RunStatus};
use baton_engine::Handler;
use serde_json::json;

use crate::util::{engine, run};

fn runs(dir: &std::path::Path, item: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("ran-{item}")))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_foreach_retry_runs_only_the_items_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: items
tasks:
  each:
    foreach: "{{ ['a', 'b', 'c'] }}"
    run: |
      echo ran >> "ran-$ITEM"
      if [ "$ITEM" = b ] && [ ! -f b-fixed ]; then touch b-fixed; exit 1; fi
      printf '"%s"' "$ITEM" > "$BATON_OUTPUT"
    env: {ITEM: "{{ item }}"}
    retry: {max_attempts: 2, backoff: constant, initial: 10ms}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let each = report.task("each").unwrap();
    assert_eq!(each.attempts, 2);
    assert_eq!(each.output, Some(json!(["a", "b", "c"])), "in list order");
    let counts: Vec<usize> = ["a", "b", "c"]
        .iter()
        .map(|item| runs(dir.path(), item))
        .collect();
    assert_eq!(counts, [1, 2, 1], "only b ran again");
}

#[test]
fn foreach_items_that_finished_before_a_crash_are_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
name: items
tasks:
  each:
    foreach: {items: "{{ [1, 2, 3, 4] }}", concurrency: 1}
    run: |
      echo ran >> "ran-$ITEM"
      if [ "$ITEM" = 3 ]; then touch waiting; while [ ! -f go ]; do sleep 0.02; done; fi
      echo "$ITEM" > "$BATON_OUTPUT"
    env: {ITEM: "{{ item }}"}
"#;
    let (_, report, _) = crate::util::cut_off_then_resumed(
        dir.path(),
        spec,
        |event| matches!(event, Event::CopySucceeded { copy: 1, .. }),
        "waiting",
    );
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        report.task("each").unwrap().output,
        Some(json!([1, 2, 3, 4]))
    );
    let counts: Vec<usize> = ["1", "2", "3", "4"]
        .iter()
        .map(|item| runs(dir.path(), item))
        .collect();
    assert_eq!(counts, [1, 1, 2, 1], "only the item in flight ran again");
}

#[tokio::test]
async fn a_swarm_retry_votes_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    // The first round of three votes ties 1-1 with one failure; the second
    // agrees.
    engine.register(
        "voter",
        Handler::blocking(move |_| {
            let call = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match call {
                0 => Ok(json!("yes")),
                1 => Ok(json!("no")),
                2 => Err("abstains".into()),
                _ => Ok(json!("yes")),
            }
        }),
    );
    let report = run(
        &engine,
        r#"
name: vote
concurrency: 1
tasks:
  decide:
    handler: voter
    swarm: {count: 3, reduce: majority}
    retry: {max_attempts: 2, backoff: constant, initial: 10ms}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(report.task("decide").unwrap().output, Some(json!("yes")));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        6,
        "the retry ran all three copies"
    );
}
