//! Retention: old finished runs leave with their logs and the artifacts
//! nothing else refers to; outputs too large to keep inline become files.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use baton_core::run::Millis;
use baton_engine::{Engine, EngineConfig};
use baton_store::{MemoryStore, ReadModels, RunLog, Store};

use crate::util::run;

const DAY: u64 = 86_400_000;

fn engine_at(dir: &std::path::Path, store: &Arc<MemoryStore>, start: u64) -> Engine {
    Engine::with_store(
        EngineConfig {
            state_dir: dir.join(".baton"),
            workdir: dir.to_path_buf(),
            start_time: Some(Millis(start)),
            ..EngineConfig::default()
        },
        Arc::clone(store) as Arc<dyn Store>,
    )
}

fn produce(name: &str) -> String {
    format!(
        "name: {name}\ntasks:\n  make:\n    run: echo {name} > {name}.txt\n    artifacts: [{name}.txt]\n"
    )
}

/// Makes every stored object look written at the epoch, as if long ago.
fn age_objects(dir: &std::path::Path) {
    for prefix in fs::read_dir(dir.join(".baton/artifacts/sha256")).unwrap() {
        for object in fs::read_dir(prefix.unwrap().path()).unwrap() {
            let file = fs::File::open(object.unwrap().path()).unwrap();
            file.set_modified(UNIX_EPOCH + Duration::from_secs(1))
                .unwrap();
        }
    }
}

#[tokio::test]
async fn pruning_deletes_old_runs_their_logs_and_the_artifacts_only_they_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::default());
    let old = run(&engine_at(dir.path(), &store, DAY), &produce("old")).await;
    let recent = run(&engine_at(dir.path(), &store, 40 * DAY), &produce("recent")).await;
    assert!(old.succeeded() && recent.succeeded());
    age_objects(dir.path());
    let runs_dir = dir.path().join(".baton/runs");
    assert!(runs_dir.join(&old.run_id).is_dir());

    let engine = engine_at(dir.path(), &store, 0);
    let pruned = engine
        .prune(
            baton_core::Duration::from_millis(30 * DAY),
            Millis(41 * DAY),
        )
        .await
        .unwrap();
    assert_eq!(pruned.runs, std::slice::from_ref(&old.run_id));
    assert_eq!(pruned.objects, 1);
    assert!(pruned.bytes > 0);
    assert!(store.summary(&old.run_id).await.is_err());
    assert!(store.summary(&recent.run_id).await.is_ok());
    assert!(!runs_dir.join(&old.run_id).exists());
    assert!(runs_dir.join(&recent.run_id).is_dir());
    let kept = &recent.task("make").unwrap().artifacts[0];
    let object = dir
        .path()
        .join(".baton/artifacts/sha256")
        .join(&kept.digest.to_string()[..2])
        .join(&kept.digest.to_string()[2..]);
    assert_eq!(fs::read_to_string(object).unwrap(), "recent\n");

    let again = engine
        .prune(
            baton_core::Duration::from_millis(30 * DAY),
            Millis(41 * DAY),
        )
        .await
        .unwrap();
    assert_eq!(again, baton_engine::Pruned::default());
}

#[tokio::test]
async fn an_object_stored_again_is_renewed_and_survives_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::default());
    let first = run(&engine_at(dir.path(), &store, DAY), &produce("same")).await;
    age_objects(dir.path());
    // A later run stores the same content: the object is its too now.
    let second = run(&engine_at(dir.path(), &store, DAY), &produce("same")).await;
    assert_eq!(
        first.task("make").unwrap().artifacts,
        second.task("make").unwrap().artifacts
    );
    store.delete_run(&second.run_id).await.unwrap();
    // Both runs are gone from the store, but the object was written (again)
    // after the cutoff: a run being recorded now may still refer to it.
    let pruned = engine_at(dir.path(), &store, 0)
        .prune(
            baton_core::Duration::from_millis(30 * DAY),
            Millis(40 * DAY),
        )
        .await
        .unwrap();
    assert_eq!(pruned.runs, [first.run_id]);
    assert_eq!(pruned.objects, 0);
}

#[tokio::test]
async fn an_output_over_the_limit_is_stored_as_an_artifact_its_consumers_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig {
        state_dir: dir.path().join(".baton"),
        workdir: dir.path().to_path_buf(),
        max_inline_output: 64,
        ..EngineConfig::default()
    });
    let spec = r#"
name: big
tasks:
  big:
    run: |
      printf '{"rows": [' > "$BATON_OUTPUT"
      seq -s, 1 100 >> "$BATON_OUTPUT"
      printf ']}' >> "$BATON_OUTPUT"
  small:
    run: |
      echo '{"ok": true}' > "$BATON_OUTPUT"
  read:
    needs: [big, small]
    run: |
      grep -q '"rows":\[1,2,3' "{{ tasks.big.output.output_artifact.path }}"
"#;
    let report = run(&engine, spec).await;
    assert!(report.succeeded(), "{report:#?}");
    let big = report.task("big").unwrap();
    let reference = &big.output.as_ref().unwrap()["output_artifact"];
    assert_eq!(reference["path"], ".baton-outputs/big.json");
    assert_eq!(big.artifacts.len(), 1);
    assert_eq!(reference["sha256"], big.artifacts[0].digest.to_string());
    assert_eq!(
        report.task("small").unwrap().output,
        Some(serde_json::json!({"ok": true}))
    );
    let placed_at = dir.path().join(".baton-outputs/big.json");
    let placed = fs::read_to_string(&placed_at).unwrap();
    let value: serde_json::Value = serde_json::from_str(&placed).unwrap();
    assert_eq!(value["rows"].as_array().unwrap().len(), 100);
    // The placement is the stored object itself, read-only: one copy on
    // disk however many tasks read it.
    let object = engine.artifact_file(&big.artifacts[0].digest);
    let (placed_meta, object_meta) = (
        fs::metadata(&placed_at).unwrap(),
        fs::metadata(&object).unwrap(),
    );
    assert_eq!(
        (placed_meta.dev(), placed_meta.ino()),
        (object_meta.dev(), object_meta.ino()),
        "{} is a copy of {}",
        placed_at.display(),
        object.display()
    );
    assert!(placed_meta.permissions().readonly());
    // The file it was handed back in is not kept beside the stored copy.
    let logs = big.logs.as_ref().unwrap();
    assert!(!baton_engine::logs::attempt_file(logs, "output.json").exists());
    let small = report.task("small").unwrap().logs.as_ref().unwrap();
    assert!(baton_engine::logs::attempt_file(small, "output.json").exists());
}

#[tokio::test]
async fn an_output_over_max_output_fails_its_task_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig {
        state_dir: dir.path().join(".baton"),
        workdir: dir.path().to_path_buf(),
        max_output: 1000,
        ..EngineConfig::default()
    });
    let spec = r#"
name: runaway
on_failure: continue
tasks:
  runaway:
    run: |
      printf '{"rows": [' > "$BATON_OUTPUT"
      seq -s, 1 1000 >> "$BATON_OUTPUT"
      printf ']}' >> "$BATON_OUTPUT"
  fits:
    run: |
      echo '{"ok": true}' > "$BATON_OUTPUT"
"#;
    let report = run(&engine, spec).await;
    let runaway = report.task("runaway").unwrap();
    assert_eq!(runaway.status.name(), "failed", "{report:#?}");
    let note = runaway.note.as_deref().unwrap();
    assert!(
        note.starts_with("$BATON_OUTPUT is larger than max_output (1000 bytes)"),
        "{note}"
    );
    assert_eq!(report.task("fits").unwrap().status.name(), "succeeded");
}

#[tokio::test]
async fn two_replicas_pruning_at_once_both_succeed_and_each_run_goes_once() {
    let dir = tempfile::tempdir().unwrap();
    // A store whose writes wait for a writer, so both list before either
    // deletes: what two servers on one database see.
    let store: Arc<dyn Store> =
        Arc::new(baton_store::SqliteStore::open(dir.path().join("baton.db")).unwrap());
    let engine = |start: u64| {
        Engine::with_store(
            EngineConfig {
                state_dir: dir.path().join(".baton"),
                workdir: dir.path().to_path_buf(),
                start_time: Some(Millis(start)),
                ..EngineConfig::default()
            },
            Arc::clone(&store),
        )
    };
    let mut old = Vec::new();
    for name in ["one", "two", "three"] {
        old.push(run(&engine(DAY), &produce(name)).await.run_id);
    }
    let (first, second) = (engine(0), engine(0));
    let older_than = baton_core::Duration::from_millis(30 * DAY);
    let (a, b) = tokio::join!(
        first.prune(older_than, Millis(41 * DAY)),
        second.prune(older_than, Millis(41 * DAY))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut deleted: Vec<String> = a.runs.into_iter().chain(b.runs).collect();
    deleted.sort();
    old.sort();
    assert_eq!(deleted, old, "each run deleted once, by one of them");
}
