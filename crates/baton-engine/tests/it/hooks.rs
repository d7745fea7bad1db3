//! `hooks:`: fired once their events are recorded, given the event as
//! JSON, retried, and never changing the run.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use baton_core::run::RunStatus;
use serde_json::Value;

use crate::http::serve;
use crate::util::{engine, run};

#[tokio::test]
async fn hooks_fire_around_the_run_and_its_tasks_and_a_failing_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (address, calls) = serve();
    let log = r#"{run: 'printf "%s %s\n" "$BATON_HOOK" "$BATON_EVENT" >> hooks.log'}"#;
    let spec = format!(
        r#"
name: hooked
on_failure: continue
defaults:
  retry: {{max_attempts: 3, initial: 0s}}
hooks:
  before_run: [{log}]
  before_task: [{log}]
  after_task: [{log}]
  on_failure: [{log}]
  after_run:
    - {log}
    - {{run: "exit 1"}}
    - {{http: {{method: POST, url: "{address}/flaky"}}}}
tasks:
  a:
    noop: true
    hooks:
      after_task: [{{run: 'echo "own {{{{ task.id }}}}" >> hooks.log'}}]
  b:
    run: exit 3
    retry: {{max_attempts: 1}}
"#
    );
    let report = run(&engine(dir.path()), &spec).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:#?}");
    assert_eq!(report.task("a").unwrap().status.name(), "succeeded");

    // Every hook has run by the time the run reports.
    let text = std::fs::read_to_string(dir.path().join("hooks.log")).unwrap();
    let mut fired = BTreeSet::new();
    for line in text.lines() {
        if let Some(own) = line.strip_prefix("own ") {
            fired.insert(("own".to_owned(), own.to_owned(), String::new()));
            continue;
        }
        let (moment, event) = line.split_once(' ').unwrap();
        let event: Value = serde_json::from_str(event).unwrap();
        assert_eq!(event["run_id"], report.run_id.as_str());
        let task = event["task"].as_str().unwrap_or_default().to_owned();
        fired.insert((
            moment.to_owned(),
            event["type"].as_str().unwrap().to_owned(),
            task,
        ));
    }
    let expected: BTreeSet<(String, String, String)> = [
        ("before_run", "run_started", ""),
        ("before_task", "task_started", "a"),
        ("after_task", "task_succeeded", "a"),
        ("own", "a", ""),
        ("before_task", "task_started", "b"),
        ("after_task", "task_failed", "b"),
        ("on_failure", "task_failed", "b"),
        ("after_run", "run_finished", ""),
        ("on_failure", "run_finished", ""),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(fired, expected);

    // The HTTP hook was retried past two 503s; the failing one gave up
    // after three attempts and said so where its logs are.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let hooks = dir
        .path()
        .join(".baton/runs")
        .join(&report.run_id)
        .join("hooks");
    let failed: Vec<String> = std::fs::read_dir(&hooks)
        .unwrap()
        .filter_map(|entry| std::fs::read_to_string(entry.unwrap().path().join("failed.txt")).ok())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("hook after_run[1] failed after 3 attempt(s)"),
        "{failed:?}"
    );
}
