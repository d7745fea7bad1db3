//! Artifacts and cached results, through real processes and files.

use std::fs;

use baton_core::run::Event;
use baton_engine::{Reuse, RunOptions};
use baton_store::ArtifactRole;

use crate::util::{engine, run, workflow};

const BUILD: &str = "
name: build
tasks:
  compile:
    cwd: producer
    run: mkdir -p out && echo built >> ../compiles.log && printf app > out/app.bin
    artifacts: [out/*.bin]
  package:
    cwd: consumer
    needs: [compile]
    run: test -f out/app.bin && cp out/app.bin package.bin
";

fn prepare(dir: &std::path::Path) {
    fs::create_dir_all(dir.join("producer")).unwrap();
    fs::create_dir_all(dir.join("consumer")).unwrap();
}

#[tokio::test]
async fn artifacts_are_stored_by_content_and_placed_where_consumers_run() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let engine = engine(dir.path());
    let report = run(&engine, BUILD).await;
    assert!(report.succeeded(), "{report:#?}");

    let compile = report.task("compile").unwrap();
    assert_eq!(compile.artifacts.len(), 1);
    let stored = &compile.artifacts[0];
    assert_eq!((stored.path.as_str(), stored.size), ("out/app.bin", 3));
    let object = dir
        .path()
        .join(".baton/artifacts/sha256")
        .join(&stored.digest.to_string()[..2])
        .join(&stored.digest.to_string()[2..]);
    assert_eq!(fs::read(object).unwrap(), b"app");
    assert_eq!(
        fs::read(dir.path().join("consumer/package.bin")).unwrap(),
        b"app"
    );

    let rows = engine.store().artifacts(&report.run_id).await.unwrap();
    let roles: Vec<(u32, ArtifactRole, &str)> = rows
        .iter()
        .map(|row| (row.task, row.role, row.artifact.path.as_str()))
        .collect();
    assert_eq!(
        roles,
        [
            (0, ArtifactRole::Produced, "out/app.bin"),
            (1, ArtifactRole::Consumed, "out/app.bin")
        ]
    );
}

#[tokio::test]
async fn an_artifact_that_leads_out_of_the_task_directory_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "s").unwrap();
    let report = run(
        &engine(dir.path()),
        &format!(
            "name: leak\ntasks:\n  link:\n    run: ln -sf {}/secret leak\n    artifacts: [leak]\n",
            outside.path().display()
        ),
    )
    .await;
    let link = report.task("link").unwrap();
    assert_eq!(link.status.name(), "failed");
    let note = link.note.as_deref().unwrap();
    assert!(
        note.contains("artifact `leak` matches") && note.contains("outside the task's directory"),
        "{note}"
    );
}

#[tokio::test]
async fn a_cached_task_is_not_run_again_and_its_files_come_back() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let engine = engine(dir.path());
    let cached = BUILD.replace(
        "    artifacts: [out/*.bin]\n",
        "    artifacts: [out/*.bin]\n    cache: true\n",
    );
    let first = run(&engine, &cached).await;
    assert!(first.succeeded(), "{first:#?}");
    assert_eq!(first.task("compile").unwrap().reused_from, None);

    fs::remove_dir_all(dir.path().join("producer/out")).unwrap();
    fs::remove_file(dir.path().join("consumer/package.bin")).unwrap();
    let second = run(&engine, &cached).await;
    assert!(second.succeeded(), "{second:#?}");
    let compile = second.task("compile").unwrap();
    assert_eq!(compile.reused_from.as_deref(), Some(first.run_id.as_str()));
    assert_eq!(compile.artifacts, first.task("compile").unwrap().artifacts);
    // The side effect happened once; the file is back for the consumer.
    assert_eq!(
        fs::read_to_string(dir.path().join("compiles.log")).unwrap(),
        "built\n"
    );
    assert_eq!(
        fs::read(dir.path().join("producer/out/app.bin")).unwrap(),
        b"app"
    );
    assert_eq!(
        fs::read(dir.path().join("consumer/package.bin")).unwrap(),
        b"app"
    );
    let events = engine.store().events(&second.run_id).await.unwrap();
    assert!(events.iter().any(|event| matches!(
        event,
        Event::ResultReused { run, .. } if **run == *first.run_id
    )));

    // A different spec is a different key: it runs.
    let changed = cached.replace("printf app", "printf app2");
    let third = run(&engine, &changed).await;
    assert_eq!(third.task("compile").unwrap().reused_from, None);
    assert_eq!(
        fs::read_to_string(dir.path().join("compiles.log")).unwrap(),
        "built\nbuilt\n"
    );
}

#[tokio::test]
async fn a_cache_key_template_decides_what_counts_as_the_same_work() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let spec = "
name: keyed
inputs:
  version: {type: string}
  note: {type: string}
tasks:
  fetch:
    run: echo {{ inputs.note }} >> fetched.log
    cache: {key: 'v{{ inputs.version }}'}
";
    let with = |version: &str, note: &str| RunOptions {
        inputs: [
            ("version".to_owned(), version.into()),
            ("note".to_owned(), note.into()),
        ]
        .into(),
        ..RunOptions::default()
    };
    let start = async |options| {
        engine
            .start(workflow(spec), options)
            .await
            .unwrap()
            .finish()
            .await
    };
    let first = start(with("1", "a")).await.unwrap();
    // Another note, the same version: the key says it is the same work.
    let second = start(with("1", "b")).await.unwrap();
    let third = start(with("2", "c")).await.unwrap();
    assert_eq!(first.task("fetch").unwrap().reused_from, None);
    assert_eq!(
        second.task("fetch").unwrap().reused_from.as_deref(),
        Some(first.run_id.as_str())
    );
    assert_eq!(third.task("fetch").unwrap().reused_from, None);
    assert_eq!(
        fs::read_to_string(dir.path().join("fetched.log")).unwrap(),
        "a\nc\n"
    );
}

#[tokio::test]
async fn a_rerun_from_a_task_runs_it_and_its_dependants_and_reuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let engine = engine(dir.path());
    let first = run(&engine, BUILD).await;
    assert!(first.succeeded());
    fs::remove_dir_all(dir.path().join("producer/out")).unwrap();
    fs::remove_file(dir.path().join("consumer/package.bin")).unwrap();

    let rerun = engine
        .rerun(&first.run_id, Some("package"), false)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert!(rerun.succeeded(), "{rerun:#?}");
    assert_ne!(rerun.run_id, first.run_id);
    assert_eq!(
        rerun.task("compile").unwrap().reused_from.as_deref(),
        Some(first.run_id.as_str())
    );
    assert_eq!(rerun.task("package").unwrap().reused_from, None);
    assert_eq!(
        fs::read_to_string(dir.path().join("compiles.log")).unwrap(),
        "built\n"
    );
    // The reused producer's files are placed again for the consumer.
    assert_eq!(
        fs::read(dir.path().join("consumer/package.bin")).unwrap(),
        b"app"
    );

    let from_the_root = engine
        .rerun(&rerun.run_id, Some("compile"), false)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert!(
        from_the_root
            .tasks
            .iter()
            .all(|task| task.reused_from.is_none())
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("compiles.log")).unwrap(),
        "built\nbuilt\n"
    );

    let error = engine
        .rerun(&first.run_id, Some("nope"), false)
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        format!("run `{}` has no task `nope`", first.run_id)
    );
}

#[tokio::test]
async fn a_rerun_without_a_task_runs_only_what_did_not_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let spec = "
name: flaky
tasks:
  setup:
    run: echo once >> setup.log
  check:
    needs: [setup]
    run: test -f fixed
";
    let first = run(&engine, spec).await;
    assert!(!first.succeeded());
    fs::write(dir.path().join("fixed"), "").unwrap();
    let second = engine
        .rerun(&first.run_id, None, false)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert!(second.succeeded(), "{second:#?}");
    assert_eq!(
        second.task("setup").unwrap().reused_from.as_deref(),
        Some(first.run_id.as_str())
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("setup.log")).unwrap(),
        "once\n"
    );
}

#[tokio::test]
async fn reusing_a_task_that_did_not_succeed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let engine = engine(dir.path());
    let first = run(&engine, BUILD).await;
    let options = RunOptions {
        reuse: Some(Reuse {
            run_id: first.run_id.clone(),
            tasks: vec!["nope".to_owned()],
            fresh: Vec::new(),
        }),
        ..RunOptions::default()
    };
    let error = engine.start(workflow(BUILD), options).await.err().unwrap();
    assert!(
        error
            .to_string()
            .contains("task `nope` did not succeed in run"),
        "{error}"
    );
}
