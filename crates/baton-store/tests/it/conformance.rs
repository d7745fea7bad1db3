//! One suite every backend passes: what the engine relies on from a store.

use std::sync::Arc;

use baton_core::Duration;
use baton_core::run::{
    Artifact, Digest, Failure, FailureKind, Provenance, RunSetup, RunState, TaskStatus,
};
use baton_core::run::{Control, Decision, Event, Millis, RunStatus};
use baton_store::{
    ApiKey, ArtifactRole, ArtifactRow, AttemptRow, AttemptStatus, Batch, Change, Error, Fence,
    MemoryStore, Owner, RunCursor, RunFilter, RunRecord, Scope, SqliteStore, Store, StoredWorkflow,
    TaskRow,
};

/// The lease owners take in these tests, from time 0.
const TTL: Duration = Duration::from_secs(30);

fn started(at: u64) -> Event {
    Event::RunStarted { at: Millis(at) }
}

/// A new owner, announced at time 0.
async fn owner(store: &dyn Store) -> Owner {
    let owner = Owner::this_process();
    store.heartbeat(&owner, Millis(0), TTL).await.unwrap();
    owner
}

/// Records `record` under a new owner; the fence to write it with.
async fn create(store: &dyn Store, record: &RunRecord) -> Fence {
    let owner = owner(store).await;
    store
        .create_run(record, &owner.id, Millis(0))
        .await
        .unwrap()
}

/// Records a run of workflow `w` with id `run`.
async fn begin(store: &dyn Store, run: &str) -> Fence {
    create(store, &RunRecord::new(run, baton_core::Workflow::new("w"))).await
}

pub(crate) async fn appended_events_read_back_in_order(store: &dyn Store) {
    let fence = begin(store, "run-a").await;
    let first = [
        started(1),
        Event::TaskStarted {
            at: Millis(2),
            task: 0,
            attempt: 1,
        },
    ];
    store.append("run-a", 0, fence, &first).await.unwrap();
    let finished = Event::RunFinished {
        at: Millis(3),
        status: RunStatus::Succeeded,
    };
    store
        .append("run-a", 2, fence, std::slice::from_ref(&finished))
        .await
        .unwrap();
    let mut expected = first.to_vec();
    expected.push(finished);
    assert_eq!(store.events("run-a").await.unwrap(), expected);
}

pub(crate) async fn an_append_out_of_place_is_refused_and_loses_nothing(store: &dyn Store) {
    let fence = begin(store, "run-b").await;
    store
        .append("run-b", 0, fence, &[started(1)])
        .await
        .unwrap();
    let error = store
        .append("run-b", 0, fence, &[started(2)])
        .await
        .unwrap_err();
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
    let error = store
        .append("run-b", 5, fence, &[started(3)])
        .await
        .unwrap_err();
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
    assert_eq!(store.events("run-b").await.unwrap(), [started(1)]);
}

pub(crate) async fn runs_are_separate_logs(store: &dyn Store) {
    let c = begin(store, "run-c").await;
    let d = begin(store, "run-d").await;
    store.append("run-c", 0, c, &[started(1)]).await.unwrap();
    store.append("run-d", 0, d, &[started(2)]).await.unwrap();
    assert_eq!(store.events("run-c").await.unwrap(), [started(1)]);
    assert_eq!(store.events("run-d").await.unwrap(), [started(2)]);
    assert!(matches!(
        store.events("run-e").await,
        Err(Error::UnknownRun(_))
    ));
    assert!(matches!(
        store.append("run-e", 0, c, &[started(1)]).await,
        Err(Error::UnknownRun(_))
    ));
}

pub(crate) async fn a_recorded_run_without_events_has_an_empty_log(store: &dyn Store) {
    begin(store, "quiet").await;
    assert_eq!(store.events("quiet").await.unwrap(), []);
    assert_eq!(store.summary("quiet").await.unwrap().events, 0);
}

pub(crate) async fn concurrent_writers_each_get_a_complete_log(store: Arc<dyn Store>) {
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            let run = format!("run-w{writer}");
            let fence = begin(store.as_ref(), &run).await;
            for batch in 0..50u64 {
                let events: Vec<Event> = (0..10).map(|i| started(batch * 10 + i)).collect();
                store
                    .append(&run, batch * 10, fence, &events)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    for writer in 0..8 {
        let events = store.events(&format!("run-w{writer}")).await.unwrap();
        assert_eq!(events.len(), 500);
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(at, event)| *event == started(at as u64))
        );
    }
}

/// Reads racing appends see a whole prefix of the log each time, never
/// a count from before an append beside batches from after it.
pub(crate) async fn a_log_read_while_it_grows_is_never_torn(store: Arc<dyn Store>) {
    let fence = begin(store.as_ref(), "growing").await;
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for batch in 0..200u64 {
                let events = [started(batch * 2), started(batch * 2 + 1)];
                store
                    .append("growing", batch * 2, fence, &events)
                    .await
                    .unwrap();
            }
        })
    };
    while !writer.is_finished() {
        let events = store.events("growing").await.unwrap();
        assert_eq!(events.len() % 2, 0);
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(at, event)| *event == started(at as u64))
        );
    }
    writer.await.unwrap();
    assert_eq!(store.events("growing").await.unwrap().len(), 400);
}

fn record(run_id: &str, workflow: &str) -> RunRecord {
    RunRecord {
        inputs: serde_json::Map::from_iter([("n".to_owned(), serde_json::json!(3))]),
        concurrency: Some(2),
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
        ..RunRecord::new(run_id, baton_core::Workflow::new(workflow))
    }
}

/// The ids of the runs `filter` lists.
async fn listed(store: &dyn Store, filter: &RunFilter) -> Vec<String> {
    store
        .runs(filter)
        .await
        .unwrap()
        .into_iter()
        .map(|run| run.run_id)
        .collect()
}

pub(crate) async fn runs_are_listed_newest_first_with_their_status(store: &dyn Store) {
    let old = create(store, &record("old", "nightly")).await;
    let new = create(store, &record("new", "release")).await;
    store.append("old", 0, old, &[started(10)]).await.unwrap();
    store.append("new", 0, new, &[started(20)]).await.unwrap();
    let finished = Event::RunFinished {
        at: Millis(30),
        status: RunStatus::Failed,
    };
    store.append("old", 1, old, &[finished]).await.unwrap();
    let runs = store.runs(&RunFilter::default()).await.unwrap();
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
    assert_eq!(store.summary("old").await.unwrap(), runs[1]);
    assert!(matches!(
        store.summary("missing").await,
        Err(Error::UnknownRun(_))
    ));
    let one = RunFilter {
        limit: 1,
        ..RunFilter::default()
    };
    assert_eq!(store.runs(&one).await.unwrap().len(), 1);
    let failed = RunFilter {
        status: Some(RunStatus::Failed),
        ..RunFilter::default()
    };
    assert_eq!(listed(store, &failed).await, ["old"]);
    let release = RunFilter {
        workflow: Some("release".to_owned()),
        ..RunFilter::default()
    };
    assert_eq!(listed(store, &release).await, ["new"]);
    let page = |after: Option<RunCursor>| RunFilter {
        after,
        limit: 1,
        ..RunFilter::default()
    };
    let first = store.runs(&page(None)).await.unwrap();
    assert_eq!(first[0].run_id, "new");
    let cursor = RunCursor::after(&first[0]);
    assert_eq!(cursor.to_string(), "20.new");
    assert_eq!(listed(store, &page(Some(cursor.clone()))).await, ["old"]);
    let last = RunCursor {
        started_at: Millis(10),
        run_id: "old".to_owned(),
    };
    assert_eq!(listed(store, &page(Some(last))).await, Vec::<String>::new());
    // A cursor names a place: the page after a run deleted since, or after
    // a place no run ever had, still follows on from there.
    let between = RunCursor {
        started_at: Millis(15),
        run_id: "gone".to_owned(),
    };
    assert_eq!(listed(store, &page(Some(between))).await, ["old"]);
    let tie = RunCursor {
        started_at: Millis(20),
        run_id: "newer".to_owned(),
    };
    assert_eq!(
        listed(store, &page(Some(tie))).await,
        ["new"],
        "runs started in one millisecond go by id, descending"
    );
    let window = RunFilter {
        started_after: Some(Millis(15)),
        started_before: Some(Millis(25)),
        ..RunFilter::default()
    };
    assert_eq!(listed(store, &window).await, ["new"]);
    assert_eq!(store.run("old").await.unwrap(), record("old", "nightly"));
    assert!(matches!(
        store.run("missing").await,
        Err(Error::UnknownRun(_))
    ));
}

pub(crate) async fn a_run_id_is_taken_once(store: &dyn Store) {
    create(store, &record("once", "w")).await;
    let owner = owner(store).await;
    let error = store
        .create_run(&record("once", "other"), &owner.id, Millis(0))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RunExists(_)), "{error}");
    assert_eq!(store.run("once").await.unwrap().workflow.name, "w");
    let stranger = store
        .create_run(&record("fresh", "w"), "nobody", Millis(0))
        .await
        .unwrap_err();
    assert!(matches!(stranger, Error::UnknownOwner(_)), "{stranger}");
}

pub(crate) async fn a_live_owner_keeps_its_run_and_one_whose_lease_ran_out_loses_it(
    store: &dyn Store,
) {
    let first = Owner::this_process();
    store.heartbeat(&first, Millis(0), TTL).await.unwrap();
    let run = record("owned", "w");
    let fence = store.create_run(&run, &first.id, Millis(0)).await.unwrap();
    store
        .append("owned", 0, fence, &[started(1)])
        .await
        .unwrap();
    let driver = store.summary("owned").await.unwrap().driver.unwrap();
    assert_eq!((driver.owner.clone(), driver.fence), (first.clone(), fence));
    assert_eq!(driver.expires_at, Millis(TTL.as_millis()));

    let second = Owner::this_process();
    store.heartbeat(&second, Millis(1_000), TTL).await.unwrap();
    let refused = store
        .claim("owned", &second.id, Millis(1_000), None)
        .await
        .unwrap_err();
    let Error::Owned { ownership, .. } = &refused else {
        panic!("expected the live owner to keep the run, got {refused}");
    };
    assert_eq!(ownership.owner, first);
    assert!(
        refused
            .to_string()
            .contains(&format!("driven by PID {}", first.pid)),
        "{refused}"
    );

    // The first owner stops renewing; once its lease has run out the run
    // is the second's, under a higher fence.
    let later = Millis(TTL.as_millis() + 1);
    store.heartbeat(&second, later, TTL).await.unwrap();
    let taken = store.claim("owned", &second.id, later, None).await.unwrap();
    assert!(taken > fence);
    let stale = store
        .append("owned", 1, fence, &[started(2)])
        .await
        .unwrap_err();
    assert!(matches!(stale, Error::Fenced { .. }), "{stale}");
    let stale = state_snapshot(1);
    assert!(matches!(
        store.put_checkpoint("owned", fence, &stale).await,
        Err(Error::Fenced { .. })
    ));
    assert_eq!(store.events("owned").await.unwrap(), [started(1)]);
    store
        .append("owned", 1, taken, &[started(3)])
        .await
        .unwrap();

    // One that proves the owner dead takes the run at once.
    let third = Owner::this_process();
    store.heartbeat(&third, later, TTL).await.unwrap();
    assert!(matches!(
        store.claim("owned", &third.id, later, None).await,
        Err(Error::Owned { .. })
    ));
    let stolen = store
        .claim("owned", &third.id, later, Some(taken))
        .await
        .unwrap();
    assert!(stolen > taken);
    assert!(matches!(
        store.append("owned", 2, taken, &[started(4)]).await,
        Err(Error::Fenced { .. })
    ));

    // A released run has no driver, and anyone may claim it.
    store.release("owned", taken).await.unwrap();
    assert!(store.summary("owned").await.unwrap().driver.is_some());
    store.release("owned", stolen).await.unwrap();
    assert_eq!(store.summary("owned").await.unwrap().driver, None);
    assert!(matches!(
        store.append("owned", 2, stolen, &[started(4)]).await,
        Err(Error::Fenced { .. })
    ));
    let again = store.claim("owned", &second.id, later, None).await.unwrap();
    assert!(again > stolen);
    assert!(matches!(
        store.claim("missing", &second.id, later, None).await,
        Err(Error::UnknownRun(_))
    ));
}

pub(crate) async fn runs_nobody_live_drives_are_listed_as_orphans(store: &dyn Store) {
    let live = Owner::this_process();
    store.heartbeat(&live, Millis(0), TTL).await.unwrap();
    let dying = Owner::this_process();
    store
        .heartbeat(&dying, Millis(0), Duration::from_secs(1))
        .await
        .unwrap();
    let mut fences = Vec::new();
    for (run, owner) in [("kept", &live), ("lost", &dying), ("done", &dying)] {
        let fence = store
            .create_run(&record(run, "w"), &owner.id, Millis(0))
            .await
            .unwrap();
        store.append(run, 0, fence, &[started(1)]).await.unwrap();
        fences.push(fence);
    }
    let finished = Event::RunFinished {
        at: Millis(2),
        status: RunStatus::Succeeded,
    };
    store
        .append("done", 1, fences[2], &[finished])
        .await
        .unwrap();
    let orphans = |at: u64| RunFilter {
        orphaned_at: Some(Millis(at)),
        ..RunFilter::default()
    };
    assert_eq!(listed(store, &orphans(500)).await, Vec::<String>::new());
    assert_eq!(listed(store, &orphans(1_000)).await, ["lost"]);
    let unfinished = RunFilter {
        unfinished: true,
        ..RunFilter::default()
    };
    let mut going = listed(store, &unfinished).await;
    going.sort();
    assert_eq!(going, ["kept", "lost"]);
    store.release("kept", fences[0]).await.unwrap();
    let mut both = listed(store, &orphans(1_000)).await;
    both.sort();
    assert_eq!(both, ["kept", "lost"]);
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

pub(crate) async fn read_models_follow_the_events_written_with_them(store: &dyn Store) {
    let fence = create(store, &record("models", "w")).await;
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
    store.write("models", 0, fence, batch).await.unwrap();
    assert_eq!(store.tasks("models").await.unwrap(), running);
    assert_eq!(
        store.task("models", 0).await.unwrap().as_ref(),
        running.first()
    );
    assert_eq!(store.task("models", 1).await.unwrap(), None);
    assert_eq!(store.provenance("models").await.unwrap(), []);

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
    store.write("models", 4, fence, batch).await.unwrap();

    assert_eq!(store.tasks("models").await.unwrap(), done);
    assert_eq!(store.attempts("models").await.unwrap(), [failed, succeeded]);
    assert_eq!(
        store.outputs("models").await.unwrap(),
        [(0, output.clone())]
    );
    assert_eq!(
        store.provenance("models").await.unwrap(),
        std::slice::from_ref(&provenance)
    );
    assert_eq!(
        store.artifacts("models").await.unwrap(),
        [consumed, produced.clone()]
    );
    let hit = store.cached(&key).await.unwrap().expect("a cache hit");
    assert_eq!(hit.run_id, "models");
    assert_eq!(hit.output, Some(output));
    assert_eq!(hit.record, provenance);
    assert_eq!(hit.artifacts, [produced.artifact]);
    assert_eq!(hit.finished_at, Millis(5));
    assert_eq!(
        store.cached(&Digest::of_bytes(b"other")).await.unwrap(),
        None
    );
    assert!(matches!(
        store.tasks("missing").await,
        Err(Error::UnknownRun(_))
    ));
}

/// A sealed snapshot of a one-task run after `events` events.
fn state_snapshot(events: u64) -> baton_core::run::Sealed {
    let valid = baton_core::check_source(
        "name: w\ntasks:\n  a: {noop: true}\n",
        baton_core::Format::Yaml,
    )
    .unwrap();
    let mut state = RunState::new(Arc::new(valid), RunSetup::default());
    state.apply(&started(1)).unwrap();
    state.snapshot(events).seal()
}

pub(crate) async fn checkpoints_are_kept_by_position_and_listed_newest_first(store: &dyn Store) {
    let fence = create(store, &record("snap", "w")).await;
    let early = state_snapshot(1);
    let late = state_snapshot(7);
    store.put_checkpoint("snap", fence, &early).await.unwrap();
    store.put_checkpoint("snap", fence, &late).await.unwrap();
    let listed: Vec<u64> = store
        .checkpoints("snap")
        .await
        .unwrap()
        .iter()
        .map(|info| info.events)
        .collect();
    assert_eq!(listed, [7, 1]);
    assert_eq!(
        store.checkpoints("snap").await.unwrap()[1].digest,
        early.digest
    );
    assert_eq!(store.checkpoint("snap", 1).await.unwrap(), early);
    assert!(matches!(
        store.checkpoint("snap", 3).await,
        Err(Error::NoCheckpoint { .. })
    ));
    assert!(matches!(
        store.put_checkpoint("nobody", fence, &early).await,
        Err(Error::UnknownRun(_))
    ));
}

pub(crate) async fn control_requests_are_read_in_order_from_a_position(store: &dyn Store) {
    create(store, &record("stop", "w")).await;
    assert!(store.controls("stop", 0).await.unwrap().is_empty());
    let decide = Control::Decide(Decision {
        task: "gate".to_owned(),
        choice: "approve".to_owned(),
        by: Some("ana".to_owned()),
        key_id: None,
        note: None,
        comment: Some("looks right".to_owned()),
    });
    let mut numbers = Vec::new();
    for control in [Control::Pause, decide.clone(), Control::Cancel] {
        numbers.push(store.request("stop", &control).await.unwrap());
    }
    assert_eq!(numbers, [0, 1, 2]);
    assert_eq!(
        store.controls("stop", 0).await.unwrap(),
        [Control::Pause, decide, Control::Cancel]
    );
    assert_eq!(store.controls("stop", 2).await.unwrap(), [Control::Cancel]);
    assert!(store.controls("stop", 3).await.unwrap().is_empty());
    assert!(matches!(
        store.request("nobody", &Control::Cancel).await,
        Err(Error::UnknownRun(_))
    ));
}

pub(crate) async fn the_change_feed_tells_of_appends_and_requests(store: &dyn Store) {
    let mut changes = store.changes();
    let fence = begin(store, "watched").await;
    store
        .append("watched", 0, fence, &[started(1), started(2)])
        .await
        .unwrap();
    store.request("watched", &Control::Pause).await.unwrap();
    let deadline = std::time::Duration::from_secs(10);
    let appended = tokio::time::timeout(deadline, changes.recv())
        .await
        .expect("a change within the deadline")
        .unwrap();
    let Change::Appended { run, events, .. } = appended else {
        panic!("expected an append first, got {appended:?}");
    };
    assert_eq!((&*run, events), ("watched", 2));
    let requested = tokio::time::timeout(deadline, changes.recv())
        .await
        .expect("a change within the deadline")
        .unwrap();
    assert_eq!(requested.run(), "watched");
    assert!(matches!(requested, Change::Requested { .. }));
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

pub(crate) async fn workflow_versions_are_kept_immutable_and_listed(store: &dyn Store) {
    for stored in [
        version("deploy", 1, "one"),
        version("deploy", 2, "two"),
        version("build", 1, "b"),
    ] {
        store.put_workflow(&stored).await.unwrap();
    }
    assert!(matches!(
        store.put_workflow(&version("deploy", 2, "again")).await,
        Err(Error::VersionExists { version: 2, .. })
    ));
    assert_eq!(
        store.workflow("deploy", None).await.unwrap(),
        version("deploy", 2, "two")
    );
    assert_eq!(
        store.workflow("deploy", Some(1)).await.unwrap(),
        version("deploy", 1, "one")
    );
    assert!(matches!(
        store.workflow("deploy", Some(3)).await,
        Err(Error::UnknownVersion { version: 3, .. })
    ));
    let latest: Vec<(String, u32)> = store
        .workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|stored| (stored.name, stored.version))
        .collect();
    assert_eq!(latest, [("build".to_owned(), 1), ("deploy".to_owned(), 2)]);
    assert_eq!(store.workflow_versions("deploy").await.unwrap().len(), 2);
    store.delete_workflow("deploy").await.unwrap();
    assert!(matches!(
        store.workflow("deploy", None).await,
        Err(Error::UnknownWorkflow(_))
    ));
    assert!(matches!(
        store.delete_workflow("deploy").await,
        Err(Error::UnknownWorkflow(_))
    ));
}

pub(crate) async fn api_keys_are_kept_hashed_found_by_id_and_revoked_once(store: &dyn Store) {
    let key = ApiKey {
        id: "k1".to_owned(),
        name: "ci".to_owned(),
        scope: Scope::Write,
        hash: Digest::of_bytes(b"secret"),
        created_at: Millis(5),
        revoked_at: None,
    };
    store.put_key(&key).await.unwrap();
    assert!(matches!(
        store.put_key(&key).await,
        Err(Error::KeyExists(_))
    ));
    assert_eq!(store.keys().await.unwrap(), std::slice::from_ref(&key));
    assert_eq!(store.key("k1").await.unwrap(), Some(key.clone()));
    assert_eq!(store.key("k2").await.unwrap(), None);
    store.revoke_key("k1", Millis(9)).await.unwrap();
    store.revoke_key("k1", Millis(12)).await.unwrap();
    assert_eq!(store.keys().await.unwrap()[0].revoked_at, Some(Millis(9)));
    assert!(matches!(
        store.revoke_key("nope", Millis(1)).await,
        Err(Error::UnknownKey(_))
    ));
}

pub(crate) async fn schedule_ticks_are_kept_per_workflow_newest_first_and_replaced_by_tick(
    store: &dyn Store,
) {
    let tick = |workflow: &str, at: u64, outcome: baton_store::TickOutcome| baton_store::Tick {
        workflow: workflow.to_owned(),
        at: Millis(at),
        outcome,
        recorded_at: Millis(at + 1),
    };
    use baton_store::TickOutcome::{Missed, Queued, Skipped, Started};
    let started = |run: &str| Started {
        run_id: run.to_owned(),
    };
    store
        .put_tick(&tick("nightly", 100, started("n-100")))
        .await
        .unwrap();
    store
        .put_tick(&tick("nightly", 200, Skipped))
        .await
        .unwrap();
    store.put_tick(&tick("nightly", 300, Queued)).await.unwrap();
    store.put_tick(&tick("nightly", 50, Missed)).await.unwrap();
    store
        .put_tick(&tick("hourly", 250, started("h-250")))
        .await
        .unwrap();
    let newest: Vec<(u64, String)> = store
        .ticks("nightly", 10)
        .await
        .unwrap()
        .iter()
        .map(|tick| (tick.at.0, tick.outcome.name().to_owned()))
        .collect();
    assert_eq!(
        newest,
        [
            (300, "queued".to_owned()),
            (200, "skipped".to_owned()),
            (100, "started".to_owned()),
            (50, "missed".to_owned())
        ]
    );
    // The queued tick starts: its record is replaced, not added to.
    store
        .put_tick(&tick("nightly", 300, started("n-300")))
        .await
        .unwrap();
    let latest = store.ticks("nightly", 1).await.unwrap();
    assert_eq!(latest, [tick("nightly", 300, started("n-300"))]);
    assert_eq!(store.ticks("nightly", 10).await.unwrap().len(), 4);
    assert_eq!(
        store.ticks("hourly", 10).await.unwrap()[0].outcome.run_id(),
        Some("h-250")
    );
    assert!(store.ticks("never", 10).await.unwrap().is_empty());
}

pub(crate) async fn the_feed_holds_every_batch_of_every_run_in_append_order(store: &dyn Store) {
    let a = begin(store, "a").await;
    let b = begin(store, "b").await;
    store.append("a", 0, a, &[started(1)]).await.unwrap();
    store.append("b", 0, b, &[started(2)]).await.unwrap();
    let paused = Event::RunPaused { at: Millis(3) };
    let resumed = Event::RunResumed { at: Millis(4) };
    store
        .append("a", 1, a, &[paused.clone(), resumed.clone()])
        .await
        .unwrap();
    let feed = store.feed(0, 10).await.unwrap();
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
    let rest = store.feed(feed[0].position, 1).await.unwrap();
    assert_eq!(rest, [feed[1].clone()]);
    assert!(store.feed(feed[2].position, 10).await.unwrap().is_empty());
}

pub(crate) async fn a_paused_run_is_listed_paused_until_resumed(store: &dyn Store) {
    let fence = create(store, &record("p", "w")).await;
    let events = [started(1), Event::RunPaused { at: Millis(2) }];
    store.append("p", 0, fence, &events).await.unwrap();
    assert_eq!(store.summary("p").await.unwrap().status, RunStatus::Paused);
    store
        .append("p", 2, fence, &[Event::RunResumed { at: Millis(3) }])
        .await
        .unwrap();
    assert_eq!(store.summary("p").await.unwrap().status, RunStatus::Running);
}

pub(crate) async fn events_read_from_a_position(store: &dyn Store) {
    let fence = begin(store, "tail").await;
    let events: Vec<Event> = (0..5).map(started).collect();
    store.append("tail", 0, fence, &events[..2]).await.unwrap();
    store.append("tail", 2, fence, &events[2..]).await.unwrap();
    assert_eq!(store.events_from("tail", 3).await.unwrap(), events[3..]);
    assert_eq!(store.events_from("tail", 2).await.unwrap(), events[2..]);
    assert_eq!(store.events_from("tail", 5).await.unwrap(), []);
    assert_eq!(store.events_from("tail", 9).await.unwrap(), []);
}

pub(crate) async fn a_finished_run_is_deleted_everywhere_and_a_running_one_is_kept(
    store: &dyn Store,
) {
    let done = create(store, &record("done", "w")).await;
    let going = create(store, &record("going", "w")).await;
    for (run, fence, bytes) in [
        ("done", done, b"only done's".as_slice()),
        ("going", going, b"going's".as_slice()),
    ] {
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
        store.write(run, 0, fence, batch).await.unwrap();
    }
    let finished = Event::RunFinished {
        at: Millis(50),
        status: RunStatus::Succeeded,
    };
    store.append("done", 1, done, &[finished]).await.unwrap();
    store
        .put_checkpoint("done", done, &state_snapshot(2))
        .await
        .unwrap();

    let old = |before| RunFilter {
        finished_before: Some(Millis(before)),
        limit: usize::MAX,
        ..RunFilter::default()
    };
    assert_eq!(listed(store, &old(50)).await, Vec::<String>::new());
    assert_eq!(listed(store, &old(51)).await, ["done"]);
    assert_eq!(
        store.artifact_digests().await.unwrap().len(),
        2,
        "each digest once"
    );

    assert!(matches!(
        store.delete_run("going").await,
        Err(Error::Unfinished(_))
    ));
    store.delete_run("done").await.unwrap();
    assert!(matches!(store.run("done").await, Err(Error::UnknownRun(_))));
    assert!(matches!(
        store.events("done").await,
        Err(Error::UnknownRun(_))
    ));
    assert!(matches!(
        store.summary("done").await,
        Err(Error::UnknownRun(_))
    ));
    assert_eq!(
        store.artifact_digests().await.unwrap(),
        [Digest::of_bytes(b"going's")]
    );
    assert_eq!(store.events("going").await.unwrap(), [started(1)]);
    assert!(matches!(
        store.delete_run("done").await,
        Err(Error::UnknownRun(_))
    ));
    // The id is free again.
    create(store, &record("done", "w")).await;
    assert_eq!(store.summary("done").await.unwrap().events, 0);
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let Some((store, _dir)) = ($make) else { return };
                        super::$name(&store).await;
                    }
                };
            }

            case!(appended_events_read_back_in_order);
            case!(an_append_out_of_place_is_refused_and_loses_nothing);
            case!(runs_are_separate_logs);
            case!(a_recorded_run_without_events_has_an_empty_log);
            case!(runs_are_listed_newest_first_with_their_status);
            case!(a_run_id_is_taken_once);
            case!(a_live_owner_keeps_its_run_and_one_whose_lease_ran_out_loses_it);
            case!(runs_nobody_live_drives_are_listed_as_orphans);
            case!(read_models_follow_the_events_written_with_them);
            case!(checkpoints_are_kept_by_position_and_listed_newest_first);
            case!(control_requests_are_read_in_order_from_a_position);
            case!(the_change_feed_tells_of_appends_and_requests);
            case!(workflow_versions_are_kept_immutable_and_listed);
            case!(api_keys_are_kept_hashed_found_by_id_and_revoked_once);
            case!(schedule_ticks_are_kept_per_workflow_newest_first_and_replaced_by_tick);
            case!(the_feed_holds_every_batch_of_every_run_in_append_order);
            case!(a_paused_run_is_listed_paused_until_resumed);
            case!(a_finished_run_is_deleted_everywhere_and_a_running_one_is_kept);
            case!(events_read_from_a_position);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_log_read_while_it_grows_is_never_torn() {
                let Some((store, _dir)) = ($make) else { return };
                super::a_log_read_while_it_grows_is_never_torn(Arc::new(store)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers_each_get_a_complete_log() {
                let Some((store, _dir)) = ($make) else { return };
                super::concurrent_writers_each_get_a_complete_log(Arc::new(store)).await;
            }
        }
    };
}

conformance!(memory, Some((MemoryStore::default(), ())));
conformance!(sqlite, {
    let dir = tempfile::tempdir().unwrap();
    Some((SqliteStore::open(dir.path().join("baton.db")).unwrap(), dir))
});
conformance!(postgres, crate::postgres::store().await);
