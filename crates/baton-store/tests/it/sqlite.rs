//! What only a file-backed store can show: durability across reopening,
//! schema versions, refusing files that are not baton's, other processes'
//! writes reaching the change feed, damage reported as damage.

use baton_core::Duration;
use baton_core::run::{Control, Event, Millis};
use baton_store::{
    Change, Error, Fence, Owner, ReadModels, RunLog, RunRecord, SqliteOptions, SqliteStore, Store,
};

/// A new owner of `store`, announced at time 0 for a minute.
async fn owner(store: &dyn Store) -> Owner {
    let owner = Owner::this_process();
    store
        .heartbeat(&owner, Millis(0), Duration::from_secs(60))
        .await
        .unwrap();
    owner
}

async fn begin(store: &dyn Store, run: &str) -> Fence {
    let owner = owner(store).await;
    let record = RunRecord::new(run, baton_core::Workflow::new("w"));
    store
        .create_run(&record, &owner.id, Millis(0))
        .await
        .unwrap()
}

#[tokio::test]
async fn events_survive_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let event = Event::RunStarted { at: Millis(7) };
    {
        let store = SqliteStore::open(&path).unwrap();
        let fence = begin(&store, "run").await;
        store
            .append("run", 0, fence, std::slice::from_ref(&event))
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.events("run").await.unwrap(),
        std::slice::from_ref(&event)
    );
    // The process that wrote it is gone with its store; another claims it.
    let next = owner(&store).await;
    let fence = store.claim("run", &next.id, Millis(0), None).await;
    let fence = match fence {
        Ok(fence) => fence,
        Err(Error::Owned { ownership, .. }) => store
            .claim("run", &next.id, Millis(0), Some(ownership.fence))
            .await
            .unwrap(),
        Err(error) => panic!("{error}"),
    };
    store.append("run", 1, fence, &[event]).await.unwrap();
}

#[test]
fn a_file_that_is_not_a_baton_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "my notes, not a database\n".repeat(200)).unwrap();
    let error = SqliteStore::open(&text).err().unwrap();
    assert!(matches!(error, Error::NotBaton(_)), "{error}");
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "my notes, not a database\n".repeat(200)
    );

    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE mine (x INTEGER)")
        .unwrap();
    let error = SqliteStore::open(&other).err().unwrap();
    assert!(matches!(error, Error::NotBaton(_)), "{error}");
}

#[test]
fn a_database_from_a_newer_baton_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = SqliteStore::open(&path).err().unwrap();
    assert!(matches!(error, Error::TooNew { found: 99, .. }), "{error}");
    assert!(error.to_string().contains("use a newer baton"), "{error}");
}

#[tokio::test]
async fn a_database_of_the_first_schema_is_upgraded_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let event = Event::RunStarted { at: Millis(5) };
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, next_seq INTEGER NOT NULL);
             CREATE TABLE events (run INTEGER NOT NULL REFERENCES runs (id), seq INTEGER NOT NULL,
                 event TEXT NOT NULL, PRIMARY KEY (run, seq)) WITHOUT ROWID;
             PRAGMA user_version = 1; PRAGMA application_id = 1651797553;
             INSERT INTO runs (run_id, next_seq) VALUES ('r', 1);",
        )
        .unwrap();
        old.execute(
            "INSERT INTO events (run, seq, event) VALUES (1, 0, ?1)",
            [serde_json::to_string(&event).unwrap()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.events("r").await.unwrap(),
        std::slice::from_ref(&event)
    );
    let listed = store
        .runs(&baton_store::RunFilter::default())
        .await
        .unwrap();
    assert_eq!((listed[0].events, &listed[0].driver), (1, &None));
    // Nobody drove runs before owners were recorded: anyone may claim one.
    let owner = owner(&store).await;
    let fence = store.claim("r", &owner.id, Millis(1), None).await.unwrap();
    store.append("r", 1, fence, &[event]).await.unwrap();
}

#[tokio::test]
async fn a_database_locked_by_another_process_fails_the_write_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let options = SqliteOptions {
        busy_timeout: std::time::Duration::from_millis(50),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options.clone()).unwrap();
    let fence = begin(&store, "run").await;
    let first = Event::RunStarted { at: Millis(1) };
    store
        .append("run", 0, fence, std::slice::from_ref(&first))
        .await
        .unwrap();

    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("BEGIN EXCLUSIVE; DELETE FROM controls;")
        .unwrap();
    let second = Event::RunStarted { at: Millis(2) };
    let error = store
        .append("run", 1, fence, std::slice::from_ref(&second))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("held the database locked"),
        "{error}"
    );
    // Reading goes on meanwhile, and opening the file to read does too.
    assert_eq!(
        store.events("run").await.unwrap(),
        std::slice::from_ref(&first)
    );
    let reader = SqliteStore::open_with(&path, options).unwrap();
    assert_eq!(
        reader.events("run").await.unwrap(),
        std::slice::from_ref(&first)
    );

    other.execute_batch("ROLLBACK").unwrap();
    store
        .append("run", 1, fence, std::slice::from_ref(&second))
        .await
        .unwrap();
    assert_eq!(store.events("run").await.unwrap(), [first, second]);
}

#[tokio::test]
async fn processes_opening_a_new_database_at_once_all_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                barrier.wait();
                SqliteStore::open(&path).expect("every opener gets a migrated database");
            });
        }
    });
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.runs(&Default::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn another_process_s_appends_and_requests_reach_the_change_feed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let watching = SqliteStore::open(&path).unwrap();
    let mut changes = watching.changes();
    // Another process, as far as SQLite can tell: its own connections.
    let other = SqliteStore::open(&path).unwrap();
    let fence = begin(&other, "elsewhere").await;
    let events = [Event::RunStarted { at: Millis(1) }];
    other.append("elsewhere", 0, fence, &events).await.unwrap();
    other.request("elsewhere", &Control::Cancel).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let change = tokio::time::timeout(std::time::Duration::from_secs(10), changes.recv())
            .await
            .expect("the other process's commits are seen within the deadline")
            .unwrap();
        seen.push(change);
    }
    assert!(matches!(
        &seen[0],
        Change::Appended { run, events: 1, .. } if &**run == "elsewhere"
    ));
    assert!(matches!(&seen[1], Change::Requested { run } if &**run == "elsewhere"));
}

#[tokio::test]
async fn a_log_with_a_missing_batch_is_reported_as_corrupt_not_shorter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let store = SqliteStore::open(&path).unwrap();
    let fence = begin(&store, "holed").await;
    for at in 0..3 {
        let events = [
            Event::RunStarted { at: Millis(at) },
            Event::RunPaused { at: Millis(at) },
        ];
        store.append("holed", at * 2, fence, &events).await.unwrap();
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM event_batches WHERE first_seq = 2", [])
        .unwrap();
    let error = store.events("holed").await.unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { run, seq: 2, .. } if run == "holed"),
        "{error}"
    );
    assert!(
        error.to_string().contains("events 2 to 3 are missing"),
        "{error}"
    );
    assert_eq!(store.events_from("holed", 4).await.unwrap().len(), 2);

    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM event_batches WHERE first_seq = 4", [])
        .unwrap();
    let error = store.events_from("holed", 0).await.unwrap_err();
    assert!(matches!(error, Error::Corrupt { seq: 2, .. }), "{error}");
    let error = store.events_from("holed", 4).await.unwrap_err();
    assert!(
        error.to_string().contains("6 events were recorded"),
        "{error}"
    );
}
