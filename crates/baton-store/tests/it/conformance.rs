//! One suite every backend passes: what the engine relies on from a store.

use std::sync::Arc;

use baton_core::run::{
    Artifact, Digest, Failure, FailureKind, Provenance, RunSetup, RunState, TaskStatus,
};
use baton_core::run::{Control, Decision, Event, Millis, RunStatus};
use baton_store::{
    ApiKey, ArtifactRole, ArtifactRow, AttemptRow, AttemptStatus, Batch, Error, MemoryStore,
    RunFilter, RunRecord, Scope, SqliteStore, Store, StoredWorkflow, TaskRow,
};

fn started(at: u64) -> Event {
    Event::RunStarted { at: Millis(at) }
}

pub(crate) fn appended_events_read_back_in_order(store: &dyn Store) {
    let first = [
        started(1),
        Event::TaskStarted {
            at: Millis(2),
            task: 0,
            attempt: 1,
        },
    ];
    store.append("run-a", 0, &first).wait().unwrap();
    let finished = Event::RunFinished {
        at: Millis(3),
        status: RunStatus::Succeeded,
    };
    store
        .append("run-a", 2, std::slice::from_ref(&finished))
        .wait()
        .unwrap();
    let mut expected = first.to_vec();
    expected.push(finished);
    assert_eq!(store.events("run-a").unwrap(), expected);
}

pub(crate) fn an_append_out_of_place_is_refused_and_loses_nothing(store: &dyn Store) {
    store.append("run-b", 0, &[started(1)]).wait().unwrap();
    let error = store.append("run-b", 0, &[started(2)]).wait().unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{error}"
    );
    let error = store.append("run-b", 5, &[started(3)]).wait().unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                expected: 5,
                actual: 1,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(store.events("run-b").unwrap(), [started(1)]);
}

pub(crate) fn runs_are_separate_logs(store: &dyn Store) {
    store.append("run-c", 0, &[started(1)]).wait().unwrap();
    store.append("run-d", 0, &[started(2)]).wait().unwrap();
    assert_eq!(store.events("run-c").unwrap(), [started(1)]);
    assert_eq!(store.events("run-d").unwrap(), [started(2)]);
    assert!(matches!(store.events("run-e"), Err(Error::UnknownRun(_))));
}

pub(crate) fn concurrent_writers_each_get_a_complete_log(store: Arc<dyn Store>) {
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let run = format!("run-w{writer}");
                for batch in 0..50u64 {
                    let events: Vec<Event> = (0..10).map(|i| started(batch * 10 + i)).collect();
                    store.append(&run, batch * 10, &events).wait().unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    for writer in 0..8 {
        let events = store.events(&format!("run-w{writer}")).unwrap();
        assert_eq!(events.len(), 500);
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(at, event)| *event == started(at as u64))
        );
    }
}

fn record(run_id: &str, workflow: &str) -> RunRecord {
    RunRecord {
        run_id: run_id.to_owned(),
        workflow: Arc::new(baton_core::Workflow::new(workflow)),
        inputs: serde_json::Map::from_iter([("n".to_owned(), serde_json::json!(3))]),
        concurrency: Some(2),
        timeout: None,
        on_failure: None,
        reuse: Some(baton_store::Reuse {
            run_id: "earlier".to_owned(),
            tasks: vec!["a".to_owned()],
            fresh: vec!["b".to_owned()],
        }),
        served: true,
        workflow_version: Some(4),
        parent: Some(baton_store::ParentTask {
            run_id: "parent".to_owned(),
            task: "review".to_owned(),
            attempt: 2,
            depth: 1,
            spawn_depth: 1,
            copy: Some("item-2".to_owned()),
        }),
        subworkflows: std::collections::BTreeMap::from([(
            "review@1".to_owned(),
            Arc::new(baton_core::Workflow::new("review")),
        )]),
    }
}

pub(crate) fn runs_are_listed_newest_first_with_their_status(store: &dyn Store) {
    store.create_run(&record("old", "nightly")).wait().unwrap();
    store.create_run(&record("new", "release")).wait().unwrap();
    store.append("old", 0, &[started(10)]).wait().unwrap();
    store.append("new", 0, &[started(20)]).wait().unwrap();
    let finished = Event::RunFinished {
        at: Millis(30),
        status: RunStatus::Failed,
    };
    store.append("old", 1, &[finished]).wait().unwrap();
    let runs = store.runs(&RunFilter::default()).unwrap();
    let shown: Vec<(&str, &str, RunStatus, u64)> = runs
        .iter()
        .map(|run| {
            (
                run.run_id.as_str(),
                run.workflow.as_str(),
                run.status,
                run.events,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("new", "release", RunStatus::Running, 1),
            ("old", "nightly", RunStatus::Failed, 2)
        ]
    );
    assert_eq!(runs[1].finished_at, Some(Millis(30)));
    assert_eq!(store.summary("old").unwrap(), runs[1]);
    assert!(matches!(
        store.summary("missing"),
        Err(Error::UnknownRun(_))
    ));
    let one = RunFilter {
        limit: 1,
        ..RunFilter::default()
    };
    assert_eq!(store.runs(&one).unwrap().len(), 1);
    let failed = RunFilter {
        status: Some(RunStatus::Failed),
        ..RunFilter::default()
    };
    let failed: Vec<String> = store
        .runs(&failed)
        .unwrap()
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    assert_eq!(failed, ["old"]);
    let release = RunFilter {
        workflow: Some("release".to_owned()),
        ..RunFilter::default()
    };
    let release: Vec<String> = store
        .runs(&release)
        .unwrap()
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    assert_eq!(release, ["new"]);
    let page = |after: Option<&str>| -> Vec<String> {
        let filter = RunFilter {
            after: after.map(str::to_owned),
            limit: 1,
            ..RunFilter::default()
        };
        store
            .runs(&filter)
            .unwrap()
            .into_iter()
            .map(|run| run.run_id)
            .collect()
    };
    assert_eq!(page(None), ["new"]);
    assert_eq!(page(Some("new")), ["old"]);
    assert_eq!(page(Some("old")), Vec::<String>::new());
    assert!(matches!(
        store.runs(&RunFilter {
            after: Some("missing".to_owned()),
            ..RunFilter::default()
        }),
        Err(Error::UnknownRun(_))
    ));
    let window = RunFilter {
        started_after: Some(Millis(15)),
        started_before: Some(Millis(25)),
        ..RunFilter::default()
    };
    assert_eq!(store.runs(&window).unwrap()[0].run_id, "new");
    assert_eq!(store.runs(&window).unwrap().len(), 1);
    assert_eq!(store.run("old").unwrap(), record("old", "nightly"));
    assert!(matches!(store.run("missing"), Err(Error::UnknownRun(_))));
}

pub(crate) fn a_run_id_is_taken_once(store: &dyn Store) {
    store.create_run(&record("once", "w")).wait().unwrap();
    let error = store
        .create_run(&record("once", "other"))
        .wait()
        .unwrap_err();
    assert!(matches!(error, Error::RunExists(_)), "{error}");
    assert_eq!(store.run("once").unwrap().workflow.name, "w");
}

fn record_digest(task: &str, output: serde_json::Value) -> Provenance {
    let mut record = Provenance {
        task: task.to_owned(),
        attempt: 2,
        spec: Digest::of_bytes(b"spec"),
        inputs: Digest::of_bytes(b"inputs"),
        output: Digest::of_json(&output),
        artifacts: Digest::of_bytes(b""),
        parents: vec![
            Digest::of_bytes(b"parent"),
            Digest::of_bytes(b"other parent"),
        ],
        digest: Digest::default(),
    };
    record.digest = record.seal();
    record
}

pub(crate) fn read_models_follow_the_events_written_with_them(store: &dyn Store) {
    store.create_run(&record("models", "w")).wait().unwrap();
    let key = Digest::of_bytes(b"cache key");
    let row = |status, finished_at, record: Option<Provenance>| TaskRow {
        task: 0,
        id: "a".to_owned(),
        status,
        attempts: 2,
        started_at: Some(Millis(2)),
        finished_at,
        cache_key: record.is_some().then_some(key),
        record,
    };
    let first = [
        started(1),
        Event::TaskStarted {
            at: Millis(2),
            task: 0,
            attempt: 1,
        },
        Event::TaskFailed {
            at: Millis(3),
            task: 0,
            attempt: 1,
            failure: Box::new(Failure::new(FailureKind::Exit { code: 2 }, "exit 2")),
        },
        Event::TaskStarted {
            at: Millis(4),
            task: 0,
            attempt: 2,
        },
    ];
    let running = [row(TaskStatus::Running, None, None)];
    let failed = AttemptRow {
        task: 0,
        attempt: 1,
        status: AttemptStatus::Failed,
        started_at: Millis(2),
        finished_at: Millis(3),
        error: Some("exit 2".to_owned()),
    };
    let consumed = ArtifactRow {
        task: 0,
        attempt: 1,
        role: ArtifactRole::Consumed,
        artifact: Artifact {
            path: "in/data.csv".to_owned(),
            digest: Digest::of_bytes(b"data"),
            size: 4,
        },
    };
    let batch = Batch {
        events: &first,
        tasks: &running,
        attempts: std::slice::from_ref(&failed),
        artifacts: std::slice::from_ref(&consumed),
    };
    store.write("models", 0, batch).wait().unwrap();
    assert_eq!(store.tasks("models").unwrap(), running);
    assert_eq!(store.provenance("models").unwrap(), []);

    let output = serde_json::json!({"n": 1});
    let second = [Event::TaskSucceeded {
        at: Millis(5),
        task: 0,
        attempt: 2,
        output: Some(Box::new(output.clone())),
    }];
    let provenance = record_digest("a", output.clone());
    let done = [row(
        TaskStatus::Succeeded,
        Some(Millis(5)),
        Some(provenance.clone()),
    )];
    let succeeded = AttemptRow {
        task: 0,
        attempt: 2,
        status: AttemptStatus::Succeeded,
        started_at: Millis(4),
        finished_at: Millis(5),
        error: None,
    };
    let produced = ArtifactRow {
        task: 0,
        attempt: 2,
        role: ArtifactRole::Produced,
        artifact: Artifact {
            path: "out/report.txt".to_owned(),
            digest: Digest::of_bytes(b"report"),
            size: 6,
        },
    };
    let batch = Batch {
        events: &second,
        tasks: &done,
        attempts: std::slice::from_ref(&succeeded),
        artifacts: std::slice::from_ref(&produced),
    };
    store.write("models", 4, batch).wait().unwrap();

    assert_eq!(store.tasks("models").unwrap(), done);
    assert_eq!(store.attempts("models").unwrap(), [failed, succeeded]);
    assert_eq!(store.outputs("models").unwrap(), [(0, output.clone())]);
    assert_eq!(
        store.provenance("models").unwrap(),
        std::slice::from_ref(&provenance)
    );
    assert_eq!(
        store.artifacts("models").unwrap(),
        [consumed, produced.clone()]
    );
    let hit = store.cached(&key).unwrap().expect("a cache hit");
    assert_eq!(hit.run_id, "models");
    assert_eq!(hit.output, Some(output));
    assert_eq!(hit.record, provenance);
    assert_eq!(hit.artifacts, [produced.artifact]);
    assert_eq!(hit.finished_at, Millis(5));
    assert_eq!(store.cached(&Digest::of_bytes(b"other")).unwrap(), None);
    assert!(matches!(store.tasks("missing"), Err(Error::UnknownRun(_))));
}

pub(crate) fn checkpoints_are_kept_by_position_and_listed_newest_first(store: &dyn Store) {
    store.create_run(&record("snap", "w")).wait().unwrap();
    let valid = baton_core::check_source(
        "name: w\ntasks:\n  a: {noop: true}\n",
        baton_core::Format::Yaml,
    )
    .unwrap();
    let mut state = RunState::new(Arc::new(valid), RunSetup::default());
    state.apply(&started(1));
    let early = state.snapshot(1).seal();
    let late = state.snapshot(7).seal();
    store.put_checkpoint("snap", &early).wait().unwrap();
    store.put_checkpoint("snap", &late).wait().unwrap();
    let listed: Vec<u64> = store
        .checkpoints("snap")
        .unwrap()
        .iter()
        .map(|info| info.events)
        .collect();
    assert_eq!(listed, [7, 1]);
    assert_eq!(store.checkpoints("snap").unwrap()[1].digest, early.digest);
    assert_eq!(store.checkpoint("snap", 1).unwrap(), early);
    assert!(matches!(
        store.checkpoint("snap", 3),
        Err(Error::NoCheckpoint { .. })
    ));
    assert!(matches!(
        store.put_checkpoint("nobody", &early).wait(),
        Err(Error::UnknownRun(_))
    ));
}

pub(crate) fn control_requests_are_read_in_order_from_a_position(store: &dyn Store) {
    store.create_run(&record("stop", "w")).wait().unwrap();
    assert!(store.controls("stop", 0).unwrap().is_empty());
    let decide = Control::Decide(Decision {
        task: "gate".to_owned(),
        choice: "approve".to_owned(),
        by: Some("ana".to_owned()),
        comment: Some("looks right".to_owned()),
    });
    for control in [Control::Pause, decide.clone(), Control::Cancel] {
        store.request("stop", &control).wait().unwrap();
    }
    assert_eq!(
        store.controls("stop", 0).unwrap(),
        [Control::Pause, decide, Control::Cancel]
    );
    assert_eq!(store.controls("stop", 2).unwrap(), [Control::Cancel]);
    assert!(store.controls("stop", 3).unwrap().is_empty());
    assert!(matches!(
        store.request("nobody", &Control::Cancel).wait(),
        Err(Error::UnknownRun(_))
    ));
}

fn version(name: &str, version: u32, description: &str) -> StoredWorkflow {
    let mut workflow = baton_core::Workflow::new(name);
    workflow.description = Some(description.to_owned());
    StoredWorkflow {
        name: name.to_owned(),
        version,
        digest: Digest::of_bytes(description.as_bytes()),
        created_at: Millis(u64::from(version)),
        workflow: Arc::new(workflow),
    }
}

pub(crate) fn workflow_versions_are_kept_immutable_and_listed(store: &dyn Store) {
    for stored in [
        version("deploy", 1, "one"),
        version("deploy", 2, "two"),
        version("build", 1, "b"),
    ] {
        store.put_workflow(&stored).wait().unwrap();
    }
    assert!(matches!(
        store.put_workflow(&version("deploy", 2, "again")).wait(),
        Err(Error::VersionExists { version: 2, .. })
    ));
    assert_eq!(
        store.workflow("deploy", None).unwrap(),
        version("deploy", 2, "two")
    );
    assert_eq!(
        store.workflow("deploy", Some(1)).unwrap(),
        version("deploy", 1, "one")
    );
    assert!(matches!(
        store.workflow("deploy", Some(3)),
        Err(Error::UnknownVersion { version: 3, .. })
    ));
    let latest: Vec<(String, u32)> = store
        .workflows()
        .unwrap()
        .into_iter()
        .map(|stored| (stored.name, stored.version))
        .collect();
    assert_eq!(latest, [("build".to_owned(), 1), ("deploy".to_owned(), 2)]);
    assert_eq!(store.workflow_versions("deploy").unwrap().len(), 2);
    store.delete_workflow("deploy").wait().unwrap();
    assert!(matches!(
        store.workflow("deploy", None),
        Err(Error::UnknownWorkflow(_))
    ));
    assert!(matches!(
        store.delete_workflow("deploy").wait(),
        Err(Error::UnknownWorkflow(_))
    ));
}

pub(crate) fn api_keys_are_kept_hashed_and_revoked_once(store: &dyn Store) {
    let key = ApiKey {
        id: "k1".to_owned(),
        name: "ci".to_owned(),
        scope: Scope::Write,
        hash: Digest::of_bytes(b"secret"),
        created_at: Millis(5),
        revoked_at: None,
    };
    store.put_key(&key).wait().unwrap();
    assert!(store.put_key(&key).wait().is_err(), "ids are unique");
    assert_eq!(store.keys().unwrap(), std::slice::from_ref(&key));
    store.revoke_key("k1", Millis(9)).wait().unwrap();
    store.revoke_key("k1", Millis(12)).wait().unwrap();
    assert_eq!(store.keys().unwrap()[0].revoked_at, Some(Millis(9)));
    assert!(matches!(
        store.revoke_key("nope", Millis(1)).wait(),
        Err(Error::UnknownKey(_))
    ));
}

pub(crate) fn the_feed_holds_every_batch_of_every_run_in_append_order(store: &dyn Store) {
    store.append("a", 0, &[started(1)]).wait().unwrap();
    store.append("b", 0, &[started(2)]).wait().unwrap();
    let paused = Event::RunPaused { at: Millis(3) };
    let resumed = Event::RunResumed { at: Millis(4) };
    store
        .append("a", 1, &[paused.clone(), resumed.clone()])
        .wait()
        .unwrap();
    let feed = store.feed(0, 10).unwrap();
    let order: Vec<(&str, u64, usize)> = feed
        .iter()
        .map(|batch| (batch.run_id.as_str(), batch.first_seq, batch.events.len()))
        .collect();
    assert_eq!(order, [("a", 0, 1), ("b", 0, 1), ("a", 1, 2)]);
    assert_eq!(feed[2].events, [paused, resumed]);
    assert!(
        feed.windows(2)
            .all(|pair| pair[0].position < pair[1].position)
    );
    let rest = store.feed(feed[0].position, 1).unwrap();
    assert_eq!(rest, [feed[1].clone()]);
    assert!(store.feed(feed[2].position, 10).unwrap().is_empty());
}

pub(crate) fn a_paused_run_is_listed_paused_until_resumed(store: &dyn Store) {
    store.create_run(&record("p", "w")).wait().unwrap();
    let events = [started(1), Event::RunPaused { at: Millis(2) }];
    store.append("p", 0, &events).wait().unwrap();
    assert_eq!(store.summary("p").unwrap().status, RunStatus::Paused);
    store
        .append("p", 2, &[Event::RunResumed { at: Millis(3) }])
        .wait()
        .unwrap();
    assert_eq!(store.summary("p").unwrap().status, RunStatus::Running);
}

pub(crate) fn events_read_from_a_position(store: &dyn Store) {
    let events: Vec<Event> = (0..5).map(started).collect();
    store.append("tail", 0, &events).wait().unwrap();
    assert_eq!(store.events_from("tail", 3).unwrap(), events[3..]);
    assert_eq!(store.events_from("tail", 9).unwrap(), []);
}

pub(crate) fn a_finished_run_is_deleted_everywhere_and_a_running_one_is_kept(store: &dyn Store) {
    let artifact = |run: &str, bytes: &[u8]| {
        let produced = ArtifactRow {
            task: 0,
            attempt: 1,
            role: ArtifactRole::Produced,
            artifact: Artifact {
                path: format!("{run}.txt"),
                digest: Digest::of_bytes(bytes),
                size: bytes.len() as u64,
            },
        };
        let batch = Batch {
            events: &[started(1)],
            artifacts: std::slice::from_ref(&produced),
            ..Batch::default()
        };
        store.write(run, 0, batch).wait().unwrap();
    };
    for run in ["done", "going"] {
        store.create_run(&record(run, "w")).wait().unwrap();
    }
    artifact("done", b"only done's");
    artifact("going", b"going's");
    let finished = Event::RunFinished {
        at: Millis(50),
        status: RunStatus::Succeeded,
    };
    store.append("done", 1, &[finished]).wait().unwrap();
    let state = baton_core::check_source(
        "name: w\ntasks:\n  a: {noop: true}\n",
        baton_core::Format::Yaml,
    )
    .unwrap();
    let sealed = RunState::new(Arc::new(state), RunSetup::default())
        .snapshot(2)
        .seal();
    store.put_checkpoint("done", &sealed).wait().unwrap();

    let old = |before| RunFilter {
        finished_before: Some(Millis(before)),
        limit: usize::MAX,
        ..RunFilter::default()
    };
    let listed = |filter| -> Vec<String> {
        store
            .runs(&filter)
            .unwrap()
            .into_iter()
            .map(|run| run.run_id)
            .collect()
    };
    assert_eq!(listed(old(50)), Vec::<String>::new());
    assert_eq!(listed(old(51)), ["done"]);
    assert_eq!(
        store.artifact_digests().unwrap().len(),
        2,
        "each digest once"
    );

    assert!(matches!(
        store.delete_run("going").wait(),
        Err(Error::Unfinished(_))
    ));
    store.delete_run("done").wait().unwrap();
    assert!(matches!(store.run("done"), Err(Error::UnknownRun(_))));
    assert!(matches!(store.events("done"), Err(Error::UnknownRun(_))));
    assert!(matches!(store.summary("done"), Err(Error::UnknownRun(_))));
    assert_eq!(
        store.artifact_digests().unwrap(),
        [Digest::of_bytes(b"going's")]
    );
    assert_eq!(store.events("going").unwrap(), [started(1)]);
    assert!(matches!(
        store.delete_run("done").wait(),
        Err(Error::UnknownRun(_))
    ));
    // The id is free again.
    store.create_run(&record("done", "w")).wait().unwrap();
    assert_eq!(store.summary("done").unwrap().events, 0);
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[test]
            fn appended_events_read_back_in_order() {
                let (store, _dir) = $make;
                super::appended_events_read_back_in_order(&store);
            }

            #[test]
            fn an_append_out_of_place_is_refused_and_loses_nothing() {
                let (store, _dir) = $make;
                super::an_append_out_of_place_is_refused_and_loses_nothing(&store);
            }

            #[test]
            fn runs_are_separate_logs() {
                let (store, _dir) = $make;
                super::runs_are_separate_logs(&store);
            }

            #[test]
            fn runs_are_listed_newest_first_with_their_status() {
                let (store, _dir) = $make;
                super::runs_are_listed_newest_first_with_their_status(&store);
            }

            #[test]
            fn a_run_id_is_taken_once() {
                let (store, _dir) = $make;
                super::a_run_id_is_taken_once(&store);
            }

            #[test]
            fn read_models_follow_the_events_written_with_them() {
                let (store, _dir) = $make;
                super::read_models_follow_the_events_written_with_them(&store);
            }

            #[test]
            fn checkpoints_are_kept_by_position_and_listed_newest_first() {
                let (store, _dir) = $make;
                super::checkpoints_are_kept_by_position_and_listed_newest_first(&store);
            }

            #[test]
            fn control_requests_are_read_in_order_from_a_position() {
                let (store, _dir) = $make;
                super::control_requests_are_read_in_order_from_a_position(&store);
            }

            #[test]
            fn workflow_versions_are_kept_immutable_and_listed() {
                let (store, _dir) = $make;
                super::workflow_versions_are_kept_immutable_and_listed(&store);
            }

            #[test]
            fn api_keys_are_kept_hashed_and_revoked_once() {
                let (store, _dir) = $make;
                super::api_keys_are_kept_hashed_and_revoked_once(&store);
            }

            #[test]
            fn the_feed_holds_every_batch_of_every_run_in_append_order() {
                let (store, _dir) = $make;
                super::the_feed_holds_every_batch_of_every_run_in_append_order(&store);
            }

            #[test]
            fn a_paused_run_is_listed_paused_until_resumed() {
                let (store, _dir) = $make;
                super::a_paused_run_is_listed_paused_until_resumed(&store);
            }

            #[test]
            fn a_finished_run_is_deleted_everywhere_and_a_running_one_is_kept() {
                let (store, _dir) = $make;
                super::a_finished_run_is_deleted_everywhere_and_a_running_one_is_kept(&store);
            }

            #[test]
            fn events_read_from_a_position() {
                let (store, _dir) = $make;
                super::events_read_from_a_position(&store);
            }

            #[test]
            fn concurrent_writers_each_get_a_complete_log() {
                let (store, _dir) = $make;
                super::concurrent_writers_each_get_a_complete_log(Arc::new(store));
            }
        }
    };
}

conformance!(memory, (MemoryStore::default(), ()));
conformance!(sqlite, {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open(dir.path().join("baton.db")).unwrap(), dir)
});
