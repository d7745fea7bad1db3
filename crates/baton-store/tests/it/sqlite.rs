//! What only a file-backed store can show: durability across reopening,
//! schema versions, and refusing files that are not baton's.

use baton_core::run::{Event, Millis};
use baton_store::{Error, SqliteStore, Store};

#[test]
fn events_survive_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let event = Event::RunStarted { at: Millis(7) };
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .append("run", 0, std::slice::from_ref(&event))
            .wait()
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.events("run").unwrap(), std::slice::from_ref(&event));
    store.append("run", 1, &[event]).wait().unwrap();
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

#[test]
fn a_database_of_the_first_schema_is_upgraded_on_open() {
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
    assert_eq!(store.events("r").unwrap(), std::slice::from_ref(&event));
    assert_eq!(
        store.runs(&baton_store::RunFilter::default()).unwrap()[0].events,
        1
    );
    store.append("r", 1, &[event]).wait().unwrap();
}

#[test]
fn a_database_locked_by_another_process_fails_the_write_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let store = SqliteStore::open(&path).unwrap();
    let first = Event::RunStarted { at: Millis(1) };
    store
        .append("run", 0, std::slice::from_ref(&first))
        .wait()
        .unwrap();

    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("BEGIN EXCLUSIVE; DELETE FROM controls;")
        .unwrap();
    let second = Event::RunStarted { at: Millis(2) };
    let error = store
        .append("run", 1, std::slice::from_ref(&second))
        .wait()
        .unwrap_err();
    assert!(
        error.to_string().contains("held the database locked"),
        "{error}"
    );
    // Reading goes on meanwhile, and opening the file to read does too.
    assert_eq!(store.events("run").unwrap(), std::slice::from_ref(&first));
    let reader = SqliteStore::open(&path).unwrap();
    assert_eq!(reader.events("run").unwrap(), std::slice::from_ref(&first));

    other.execute_batch("ROLLBACK").unwrap();
    store
        .append("run", 1, std::slice::from_ref(&second))
        .wait()
        .unwrap();
    assert_eq!(store.events("run").unwrap(), [first, second]);
}

#[test]
fn processes_opening_a_new_database_at_once_all_get_it() {
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
    assert!(
        SqliteStore::open(&path)
            .unwrap()
            .runs(&Default::default())
            .unwrap()
            .is_empty()
    );
}
