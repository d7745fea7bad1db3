//! One suite every backend passes: what the engine relies on from a store.

use std::sync::Arc;

use baton_core::run::{Event, Millis, RunStatus};
use baton_store::{Error, MemoryStore, RunRecord, SqliteStore, Store};

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
    let runs = store.runs(10).unwrap();
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
    assert_eq!(store.runs(1).unwrap().len(), 1);
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
