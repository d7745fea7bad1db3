//! Control requests through the engine's API: approvals decided while the
//! run waits, pauses that hold back new tasks, and requests that outlive
//! the process driving the run.

use std::sync::Arc;

use baton_core::run::{Control, ControlError, Decision, Event, RunStatus, TaskStatus};
use baton_engine::{Engine, Error, Handler};
use baton_store::{SqliteStore, Store};
use serde_json::json;
use tokio::sync::Notify;

use crate::util::{engine, start, until};

const APPROVAL: &str = r#"
name: release
tasks:
  build: {noop: true}
  gate:
    needs: [build]
    approval:
      prompt: "ship {{ run.name }}?"
      choices: [approve, reject]
  ship:
    needs: [gate]
    when: "tasks.gate.output.choice == 'approve'"
    noop: true
"#;

fn decide(task: &str, choice: &str) -> Control {
    Control::Decide(Decision {
        task: task.to_owned(),
        choice: choice.to_owned(),
        by: Some("ana".to_owned()),
        key_id: None,
        note: None,
        comment: Some("checked the notes".to_owned()),
    })
}

#[tokio::test]
async fn a_decision_finishes_the_waiting_approval_and_feeds_its_dependants() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let mut handle = start(&engine, APPROVAL).await;
    let run = handle.run_id().to_owned();
    until(&mut handle, |event| {
        matches!(event, Event::ApprovalRequested { .. })
    })
    .await;
    let waiting = engine.recorded(&run).await.unwrap();
    let gate = waiting.task("gate").unwrap();
    assert_eq!(gate.status, TaskStatus::Waiting);
    assert_eq!(
        gate.approval.as_ref().unwrap().prompt,
        "ship release?",
        "{gate:#?}"
    );

    let refused = engine.control(&run, decide("gate", "maybe")).await;
    assert!(matches!(
        refused,
        Err(Error::Control(ControlError::BadChoice { .. }))
    ));
    engine
        .control(&run, decide("gate", "approve"))
        .await
        .unwrap();
    let report = handle.finish().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        report.task("gate").unwrap().output,
        Some(
            json!({"choice": "approve", "by": "ana", "comment": "checked the notes", "timed_out": false})
        )
    );
    assert_eq!(report.task("ship").unwrap().status, TaskStatus::Succeeded);
    let late = engine.control(&run, decide("gate", "reject")).await;
    assert!(matches!(late, Err(Error::Control(ControlError::Finished))));
}

#[tokio::test]
async fn a_paused_run_starts_nothing_until_it_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let release = Arc::new(Notify::new());
    let held = Arc::clone(&release);
    engine.register(
        "held",
        Handler::asynchronous(move |_| {
            let held = Arc::clone(&held);
            async move {
                held.notified().await;
                Ok(json!(null))
            }
        }),
    );
    let mut handle = start(
        &engine,
        "name: p\ntasks:\n  a: {handler: held}\n  b: {noop: true, needs: [a]}\n",
    )
    .await;
    let run = handle.run_id().to_owned();
    until(&mut handle, |event| {
        matches!(event, Event::TaskStarted { .. })
    })
    .await;
    engine.control(&run, Control::Pause).await.unwrap();
    until(&mut handle, |event| {
        matches!(event, Event::RunPaused { .. })
    })
    .await;
    assert_eq!(
        engine.store().summary(&run).await.unwrap().status,
        RunStatus::Paused
    );
    release.notify_one();
    until(&mut handle, |event| {
        matches!(event, Event::TaskSucceeded { task: 0, .. })
    })
    .await;
    let paused = engine.recorded(&run).await.unwrap();
    assert_eq!(paused.status, RunStatus::Paused);
    assert_eq!(paused.task("b").unwrap().status, TaskStatus::Queued);

    engine.control(&run, Control::Resume).await.unwrap();
    let report = handle.finish().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let events = engine.store().events(&run).await.unwrap();
    let position = |wanted: fn(&Event) -> bool| events.iter().position(wanted).unwrap();
    assert!(
        position(|event| matches!(event, Event::RunResumed { .. }))
            < position(|event| matches!(event, Event::TaskStarted { task: 1, .. }))
    );
}

#[test]
fn a_decision_left_while_no_process_drove_the_run_is_taken_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let open = || -> Engine {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        Engine::with_store(crate::util::config(dir.path()), store)
    };
    // The first process: its runtime, and with it the run's loop, goes
    // away while the approval waits, as if it were killed.
    let first = tokio::runtime::Runtime::new().unwrap();
    let run = first.block_on(async {
        let mut handle = start(&open(), APPROVAL).await;
        until(&mut handle, |event| {
            matches!(event, Event::ApprovalRequested { .. })
        })
        .await;
        handle.run_id().to_owned()
    });
    first.shutdown_background();

    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let engine = open();
        engine
            .control(&run, decide("gate", "reject"))
            .await
            .unwrap();
        let report = engine
            .resume(&run, false)
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
        assert_eq!(report.task("gate").unwrap().attempts, 1);
        assert_eq!(report.task("ship").unwrap().status, TaskStatus::Skipped);
        let received = engine
            .store()
            .events(&run)
            .await
            .unwrap()
            .into_iter()
            .filter(|event| matches!(event, Event::ControlReceived { .. }))
            .count();
        assert_eq!(received, 1, "the request is read once");
    });
}

#[test]
fn a_repeat_loop_cut_off_by_a_dead_process_goes_on_from_its_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
name: loop
tasks:
  grow:
    run: |
      touch "started-$ROUND"
      if [ "$ROUND" = 2 ]; then while [ ! -f go ]; do sleep 0.02; done; fi
      printf '{"n": %s}' "$ROUND" > "$BATON_OUTPUT"
    env: {ROUND: "{{ iteration }}"}
    repeat: {until: "output.n >= 3", max: 5}
"#;
    let (_, report, _) = crate::util::cut_off_then_resumed(
        dir.path(),
        spec,
        |event| matches!(event, Event::TaskIterated { .. }),
        "started-2",
    );
    let grow = report.task("grow").unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        grow.output,
        Some(json!({"n": 3})),
        "the loop went on from iteration 2"
    );
    assert_eq!(
        grow.attempts, 4,
        "iteration 1, iteration 2 lost, then 2 and 3 again"
    );
}

/// A pause and an unpause asked one right after the other: the unpause is
/// checked against the pause it follows (not yet read by the run), and the
/// two apply in the order asked, so the run goes on.
#[tokio::test]
async fn an_unpause_right_after_a_pause_is_taken_and_applied_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let gate = Arc::new(Notify::new());
    let opened = Arc::clone(&gate);
    engine.register(
        "wait",
        Handler::asynchronous(move |_| {
            let opened = Arc::clone(&opened);
            async move {
                opened.notified().await;
                Ok(json!(null))
            }
        }),
    );
    let spec = "name: p\ntasks:\n  a: {handler: wait}\n  b: {noop: true, needs: [a]}\n";
    let mut handle = start(&engine, spec).await;
    let run = handle.run_id().to_owned();
    until(&mut handle, |event| {
        matches!(event, Event::TaskStarted { .. })
    })
    .await;
    engine.control(&run, Control::Pause).await.unwrap();
    engine.control(&run, Control::Resume).await.unwrap();
    // A second unpause has nothing to undo: both requests are ahead of it.
    assert!(matches!(
        engine.control(&run, Control::Resume).await,
        Err(Error::Control(ControlError::NotPaused))
    ));
    // Requests the loop has not read when the run ends change nothing:
    // the gate opens once both are applied.
    until(&mut handle, |event| {
        matches!(event, Event::RunResumed { .. })
    })
    .await;
    gate.notify_one();
    let report = handle.finish().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let kinds: Vec<&str> = engine
        .store()
        .events(&run)
        .await
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            Event::RunPaused { .. } => Some("paused"),
            Event::RunResumed { .. } => Some("resumed"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["paused", "resumed"]);
}
