//! Draining: an engine asked to stop lets the attempts in flight finish,
//! starts nothing new, and hands its runs back at a clean point; another
//! engine goes on from there without repeating a finished task. (Attempts
//! cut short at the end of the grace period are tested through the binary:
//! they stop every run of the process.)

use std::time::Duration;

use baton_core::run::{Event, RunStatus};
use baton_engine::{Drained, Engine, Error, RunHandle};

use crate::util::{durable, start, until};

/// Appends one line per task it runs to `ran`, so a repeat shows.
const CHAIN: &str = "name: drained
tasks:
  first:
    run: |
      touch started
      while [ ! -f go ]; do sleep 0.02; done
      echo first >> ran
  second: {needs: [first], run: echo second >> ran}
";

async fn wait_for_file(path: &std::path::Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Starts `spec` on `engine`, waits until its first task has written the
/// file `started` (and so is running), then begins a drain and waits
/// (up to 30 s) until it has begun: the run's handle, its id, the drain.
async fn draining_mid_attempt(
    engine: &Engine,
    dir: &std::path::Path,
    spec: &str,
) -> (RunHandle, String, tokio::task::JoinHandle<Drained>) {
    let mut handle = start(engine, spec).await;
    let run = handle.run_id().to_owned();
    until(&mut handle, |event| {
        matches!(event, Event::TaskStarted { .. })
    })
    .await;
    wait_for_file(&dir.join("started")).await;
    let draining = tokio::spawn({
        let engine = engine.clone();
        async move { engine.drain(Duration::from_secs(60)).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !engine.is_draining() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drain never began"
        );
        tokio::task::yield_now().await;
    }
    (handle, run, draining)
}

/// `run` resumed to its end by another process on the store in `dir`.
async fn resumed_elsewhere(dir: &std::path::Path, run: &str) -> baton_engine::RunReport {
    durable(dir)
        .resume(run, false)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_draining_engine_lets_the_running_attempt_finish_starts_nothing_new_and_hands_the_run_back()
 {
    let dir = tempfile::tempdir().unwrap();
    let engine = durable(dir.path());
    let (handle, run, draining) = draining_mid_attempt(&engine, dir.path(), CHAIN).await;
    // New runs are refused from the moment the drain begins.
    let refused = engine
        .start_recorded(
            std::sync::Arc::new(baton_core::check(crate::util::workflow(CHAIN)).unwrap()),
            baton_engine::RunOptions::default(),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::Draining)),
        "{:?}",
        refused.err()
    );

    std::fs::write(dir.path().join("go"), "").unwrap();
    let stopped = handle.finish().await;
    assert!(
        matches!(stopped, Err(Error::HandedBack(ref handed)) if *handed == run),
        "{stopped:?}"
    );
    let drained = tokio::time::timeout(Duration::from_secs(30), draining)
        .await
        .expect("the drain ends once the run is handed back")
        .unwrap();
    assert!(drained.cut_short.is_empty(), "{drained:?}");
    assert_eq!(
        lines(&dir.path().join("ran")),
        ["first"],
        "the running attempt finished, nothing new started"
    );
    let summary = engine.store().summary(&run).await.unwrap();
    assert_eq!(
        summary.driver, None,
        "the run was let go, not left to its lease"
    );

    // Another process goes on from the events: `first` is not run again.
    let report = resumed_elsewhere(dir.path(), &run).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(lines(&dir.path().join("ran")), ["first", "second"]);
}

#[tokio::test]
async fn a_child_run_handed_back_by_a_drain_is_no_failure_of_its_parent_s_task() {
    let dir = tempfile::tempdir().unwrap();
    let engine = durable(dir.path());
    let spec = "name: parent
tasks:
  research:
    workflow:
      inline:
        name: child
        tasks:
          search:
            run: |
              touch started
              while [ ! -f go ]; do sleep 0.02; done
              echo search >> ran
          sum: {needs: [search], run: echo sum >> ran}
  write: {needs: [research], run: echo write >> ran}
";
    let (handle, run, draining) = draining_mid_attempt(&engine, dir.path(), spec).await;
    std::fs::write(dir.path().join("go"), "").unwrap();
    let stopped = handle.finish().await;
    assert!(matches!(stopped, Err(Error::HandedBack(_))), "{stopped:?}");
    let drained = tokio::time::timeout(Duration::from_secs(30), draining)
        .await
        .expect("the drain ends")
        .unwrap();
    assert!(drained.cut_short.is_empty(), "{drained:?}");
    let events = engine.store().events(&run).await.unwrap();
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, Event::TaskFailed { .. })),
        "the parent's task did not fail: {events:#?}"
    );

    let report = resumed_elsewhere(dir.path(), &run).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(lines(&dir.path().join("ran")), ["search", "sum", "write"]);
}
