//! Snapshots of a run's state: taken as the run goes, used to rebuild it,
//! and passed over (with the reason) when they no longer match their digest.

use std::sync::Arc;

use baton_core::run::{Millis, Sealed};
use baton_engine::{Engine, EngineConfig};
use baton_store::{MemoryStore, Owner, RunLog};

use crate::util::workflow;

const CHAIN: &str = "name: chain
tasks:
  a: {noop: true}
  b: {noop: true, needs: [a]}
  c: {noop: true, needs: [b]}
";

fn engine(dir: &std::path::Path, store: Arc<MemoryStore>) -> Engine {
    Engine::with_store(
        EngineConfig {
            state_dir: dir.to_path_buf(),
            start_time: Some(Millis(1_000)),
            // At least twice the tasks: every 6 events here.
            checkpoint_every: 1,
            ..EngineConfig::default()
        },
        store,
    )
}

#[tokio::test]
async fn a_resume_starts_from_the_newest_sound_checkpoint_and_skips_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::default());
    let engine = engine(dir.path(), Arc::clone(&store));
    let report = engine
        .run(workflow(CHAIN), Default::default())
        .await
        .unwrap();
    assert!(report.succeeded());
    let run = report.run_id.as_str();
    let checkpoints = store.checkpoints(run).await.unwrap();
    assert_eq!(
        checkpoints
            .iter()
            .map(|info| info.events)
            .collect::<Vec<_>>(),
        [6]
    );

    let handle = engine.resume(run, false).await.unwrap();
    let recovery = handle.recovery().unwrap().clone();
    assert_eq!(recovery.checkpoint, Some(6));
    assert!(recovery.rejected.is_empty());
    let resumed = handle.finish().await.unwrap();
    assert_eq!(resumed.status, report.status);

    let sound = store.checkpoint(run, 6).await.unwrap();
    let mut data = sound.data.clone();
    let middle = data.len() / 2;
    data[middle] ^= 0x20;
    let corrupt = Sealed { data, ..sound };
    // Written as a process that took the finished run over would.
    let other = Owner::this_process();
    store
        .heartbeat(&other, Millis(0), baton_core::Duration::from_secs(60))
        .await
        .unwrap();
    let fence = store.claim(run, &other.id, Millis(0), None).await.unwrap();
    store.put_checkpoint(run, fence, &corrupt).await.unwrap();

    let handle = engine.resume(run, false).await.unwrap();
    let recovery = handle.recovery().unwrap().clone();
    assert_eq!(recovery.checkpoint, None, "rebuilt from events");
    assert_eq!(
        recovery.replayed,
        store.events(run).await.unwrap().len() as u64
    );
    assert_eq!(recovery.rejected.len(), 1);
    assert!(
        recovery.rejected[0].contains("SHA-256"),
        "{:?}",
        recovery.rejected
    );
    let rebuilt = handle.finish().await.unwrap();
    assert_eq!(rebuilt.status, report.status);
    assert_eq!(
        engine.recorded(run).await.unwrap().tasks.len(),
        report.tasks.len()
    );
}
