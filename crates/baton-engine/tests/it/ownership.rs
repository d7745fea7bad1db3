//! A run has one owner: an engine whose lease another process took over
//! finds its next write refused and stops driving, leaving the run to the
//! new owner.

use baton_core::run::Millis;
use baton_engine::Error;
use baton_store::Owner;

use crate::util::{durable, start, until};

#[tokio::test]
async fn an_engine_that_lost_its_run_is_refused_its_next_write_and_stops_driving() {
    let dir = tempfile::tempdir().unwrap();
    let engine = durable(dir.path());
    let spec = "name: lost
tasks:
  first:
    run: |
      touch started
      while [ ! -f go ]; do sleep 0.02; done
  second: {needs: [first], run: touch second-ran}
";
    let mut handle = start(&engine, spec).await;
    let run = handle.run_id().to_owned();
    until(&mut handle, |event| {
        matches!(event, baton_core::run::Event::TaskStarted { .. })
    })
    .await;
    while !dir.path().join("started").exists() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Another process, long after this engine's lease ran out (the store
    // takes the time from its callers), claims the run.
    let store = engine.store();
    let other = Owner::this_process();
    let later = Millis(u64::MAX / 2);
    store
        .heartbeat(&other, later, baton_core::Duration::from_secs(60))
        .await
        .unwrap();
    store.claim(&run, &other.id, later, None).await.unwrap();
    let before = store.events(&run).await.unwrap().len();

    std::fs::write(dir.path().join("go"), "").unwrap();
    let stopped = handle.finish().await;
    assert!(
        matches!(
            stopped,
            Err(Error::Store(baton_store::Error::Fenced { run: ref fenced })) if *fenced == run
        ),
        "{stopped:?}"
    );
    assert_eq!(
        store.events(&run).await.unwrap().len(),
        before,
        "nothing of the stale owner's was written"
    );
    assert!(!dir.path().join("second-ran").exists());
}
