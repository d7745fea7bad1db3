//! The embedded store: one SQLite file in WAL mode, one writer thread.
//!
//! Appends from any thread go to the writer over a channel; the writer takes
//! every append waiting at that moment into one transaction (group commit)
//! and answers each caller only after the commit, so no caller is told an
//! event is stored before it is durable (`synchronous = NORMAL` in WAL mode
//! survives a process crash; an OS crash may lose the last commits, never
//! corrupt earlier ones). Readers use their own connection.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use baton_core::run::{Event, Millis};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::{Appended, Error, Projection, Result, RunRecord, RunSummary, Store};

/// `PRAGMA application_id` of a baton database: "btn1".
const APPLICATION_ID: i32 = 0x6274_6e31;

/// Schema migrations, in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        next_seq INTEGER NOT NULL
    );
    CREATE TABLE events (
        run INTEGER NOT NULL REFERENCES runs (id),
        seq INTEGER NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (run, seq)
    ) WITHOUT ROWID;",
    "ALTER TABLE runs ADD COLUMN workflow TEXT;
    ALTER TABLE runs ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
    ALTER TABLE runs ADD COLUMN started_at INTEGER;
    ALTER TABLE runs ADD COLUMN finished_at INTEGER;
    CREATE INDEX runs_by_start ON runs (started_at);
    -- Apart from the row every append updates, so a large spec is written
    -- once, not once per batch of events.
    CREATE TABLE run_records (
        run INTEGER PRIMARY KEY REFERENCES runs (id),
        record TEXT NOT NULL
    );",
];

/// Writes waiting for the writer thread.
struct Write {
    run: String,
    kind: WriteKind,
    reply: tokio::sync::oneshot::Sender<Result<()>>,
}

enum WriteKind {
    Create {
        workflow: String,
        record: String,
    },
    Append {
        first_seq: u64,
        events: Vec<String>,
        projection: Projection,
    },
}

/// A baton database file.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Write>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, upgrading an older
    /// schema; refuses a file that is not baton's or is newer than this build.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let mut writer = connect(&path)?;
        migrate(&mut writer, &path)?;
        let reader = connect(&path)?;
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("baton-sqlite-writer".to_owned())
            .spawn(move || write_loop(writer, receiver))
            .map_err(|error| Error::Database {
                path: path.clone(),
                message: format!("cannot start the writer thread: {error}"),
            })?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            reader: Mutex::new(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn database_error(&self, error: &rusqlite::Error) -> Error {
        database_error(&self.path, error)
    }
}

impl SqliteStore {
    fn send(&self, run: &str, kind: WriteKind) -> Appended {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let Some(sender) = lock(&self.writer).clone() else {
            return Appended::done(Err(Error::WriterStopped));
        };
        let write = Write {
            run: run.to_owned(),
            kind,
            reply,
        };
        if sender.send(write).is_err() {
            return Appended::done(Err(Error::WriterStopped));
        }
        Appended::pending(answer)
    }

    fn encode_error(&self, error: &serde_json::Error) -> Error {
        Error::Database {
            path: self.path.clone(),
            message: format!("cannot encode: {error}"),
        }
    }
}

impl Drop for SqliteStore {
    /// Lets the writer finish what it was given, then joins it.
    fn drop(&mut self) {
        lock(&self.writer).take();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn database_error(path: &Path, error: &rusqlite::Error) -> Error {
    Error::Database {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection =
        Connection::open_with_flags(path, flags).map_err(|error| database_error(path, &error))?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -32768;",
        )
        .map_err(|error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => Error::NotBaton(path.to_path_buf()),
            _ => database_error(path, &error),
        })?;
    Ok(connection)
}

/// Applies the migrations this database has not seen, in one transaction.
fn migrate(connection: &mut Connection, path: &Path) -> Result<()> {
    let fail = |error: rusqlite::Error| database_error(path, &error);
    let pragma = |connection: &Connection, name: &str| -> Result<i64> {
        connection
            .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .map_err(fail)
    };
    let application = pragma(connection, "application_id")?;
    let version = pragma(connection, "user_version")?;
    let tables: i64 = connection
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(fail)?;
    if application != i64::from(APPLICATION_ID) && (application != 0 || tables > 0) {
        return Err(Error::NotBaton(path.to_path_buf()));
    }
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(Error::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: known,
        });
    }
    let transaction = connection.transaction().map_err(fail)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        transaction.execute_batch(migration).map_err(fail)?;
        transaction
            .pragma_update(None, "user_version", index as i64 + 1)
            .map_err(fail)?;
    }
    transaction
        .pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(fail)?;
    transaction.commit().map_err(fail)
}

/// The writer: every append waiting when it wakes goes into one transaction;
/// each append is all-or-nothing on its own (a savepoint), so one caller's
/// conflict does not fail the others in the batch.
fn write_loop(mut connection: Connection, receiver: mpsc::Receiver<Write>) {
    let path = connection.path().map(PathBuf::from).unwrap_or_default();
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter());
        let mut answers: Vec<Result<()>> = Vec::with_capacity(batch.len());
        let committed = (|| -> rusqlite::Result<()> {
            let mut transaction = connection.transaction()?;
            for write in &batch {
                let savepoint = transaction.savepoint()?;
                let answer = match &write.kind {
                    WriteKind::Create { workflow, record } => {
                        create_one(&savepoint, &write.run, workflow, record)?
                    }
                    WriteKind::Append {
                        first_seq,
                        events,
                        projection,
                    } => append_one(&savepoint, &write.run, *first_seq, events, projection)?,
                };
                if answer.is_ok() {
                    savepoint.commit()?;
                }
                answers.push(answer);
            }
            transaction.commit()
        })();
        match committed {
            Ok(()) => {
                for (write, answer) in batch.into_iter().zip(answers) {
                    let _ = write.reply.send(answer);
                }
            }
            // Nothing of the batch is durable: every caller hears so.
            Err(error) => {
                for write in batch {
                    let _ = write.reply.send(Err(database_error(&path, &error)));
                }
            }
        }
    }
}

/// Records a new run, unless its id is taken.
fn create_one(
    connection: &Connection,
    run: &str,
    workflow: &str,
    record: &str,
) -> rusqlite::Result<Result<()>> {
    let inserted = connection
        .prepare_cached(
            "INSERT INTO runs (run_id, next_seq, workflow) VALUES (?1, 0, ?2)
             ON CONFLICT (run_id) DO NOTHING",
        )?
        .execute(params![run, workflow])?;
    if inserted == 0 {
        return Ok(Err(Error::RunExists(run.to_owned())));
    }
    connection
        .prepare_cached("INSERT INTO run_records (run, record) VALUES (?1, ?2)")?
        .execute(params![connection.last_insert_rowid(), record])?;
    Ok(Ok(()))
}

/// Appends one caller's events, unless the log is not where it expects, and
/// updates the run's row from them in the same transaction.
fn append_one(
    connection: &Connection,
    run_id: &str,
    first_seq: u64,
    events: &[String],
    projection: &Projection,
) -> rusqlite::Result<Result<()>> {
    let known: Option<(i64, i64)> = connection
        .prepare_cached("SELECT id, next_seq FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let actual = known.map_or(0, |(_, next)| next as u64);
    if actual != first_seq {
        return Ok(Err(Error::Conflict {
            run: run_id.to_owned(),
            expected: first_seq,
            actual,
        }));
    }
    let next = first_seq as i64 + events.len() as i64;
    let run = match known {
        Some((run, _)) => {
            connection
                .prepare_cached("UPDATE runs SET next_seq = ?2 WHERE id = ?1")?
                .execute(params![run, next])?;
            run
        }
        None => {
            connection
                .prepare_cached("INSERT INTO runs (run_id, next_seq) VALUES (?1, ?2)")?
                .execute(params![run_id, next])?;
            connection.last_insert_rowid()
        }
    };
    let mut insert =
        connection.prepare_cached("INSERT INTO events (run, seq, event) VALUES (?1, ?2, ?3)")?;
    for (offset, event) in events.iter().enumerate() {
        insert.execute(params![run, first_seq as i64 + offset as i64, event])?;
    }
    if let Some(at) = projection.started_at {
        connection
            .prepare_cached("UPDATE runs SET status = 'running', started_at = ?2 WHERE id = ?1")?
            .execute(params![run, at.0 as i64])?;
    }
    if let Some((status, at)) = projection.finished {
        connection
            .prepare_cached("UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1")?
            .execute(params![run, status.name(), at.0 as i64])?;
    }
    Ok(Ok(()))
}

impl Store for SqliteStore {
    fn create_run(&self, record: &RunRecord) -> Appended {
        match serde_json::to_string(record) {
            Ok(text) => self.send(
                &record.run_id,
                WriteKind::Create {
                    workflow: record.workflow.name.clone(),
                    record: text,
                },
            ),
            Err(error) => Appended::done(Err(self.encode_error(&error))),
        }
    }

    fn append(&self, run: &str, first_seq: u64, events: &[Event]) -> Appended {
        let encoded = match events
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(encoded) => encoded,
            Err(error) => return Appended::done(Err(self.encode_error(&error))),
        };
        self.send(
            run,
            WriteKind::Append {
                first_seq,
                events: encoded,
                projection: Projection::of(events),
            },
        )
    }

    fn run(&self, run: &str) -> Result<RunRecord> {
        let reader = lock(&self.reader);
        let text: Option<Option<String>> = reader
            .prepare_cached(
                "SELECT run_records.record FROM runs JOIN run_records ON run_records.run = runs.id
                 WHERE runs.run_id = ?1",
            )
            .and_then(|mut select| select.query_row([run], |row| row.get(0)).optional())
            .map_err(|error| self.database_error(&error))?;
        let text = text
            .flatten()
            .ok_or_else(|| Error::UnknownRun(run.to_owned()))?;
        serde_json::from_str(&text).map_err(|error| Error::Corrupt {
            run: run.to_owned(),
            seq: 0,
            message: format!("its record does not read back: {error}"),
        })
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>> {
        let reader = lock(&self.reader);
        let mut select = reader
            .prepare_cached(
                "SELECT run_id, coalesce(workflow, ''), status, started_at, finished_at, next_seq
                 FROM runs ORDER BY coalesce(started_at, 0) DESC, id DESC LIMIT ?1",
            )
            .map_err(|error| self.database_error(&error))?;
        let rows = select
            .query_map([limit as i64], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(|error| self.database_error(&error))?;
        let mut runs = Vec::new();
        for row in rows {
            let (run_id, workflow, status, started_at, finished_at, events) =
                row.map_err(|error| self.database_error(&error))?;
            let status = serde_json::from_value(serde_json::Value::from(status.as_str())).map_err(
                |error| Error::Corrupt {
                    run: run_id.clone(),
                    seq: 0,
                    message: format!("unknown status `{status}`: {error}"),
                },
            )?;
            runs.push(RunSummary {
                run_id,
                workflow,
                status,
                started_at: started_at.map(|at| Millis(at as u64)),
                finished_at: finished_at.map(|at| Millis(at as u64)),
                events: events as u64,
            });
        }
        Ok(runs)
    }

    fn events(&self, run: &str) -> Result<Vec<Event>> {
        let reader = lock(&self.reader);
        let mut select = reader
            .prepare_cached(
                "SELECT events.seq, events.event FROM events JOIN runs ON runs.id = events.run
                 WHERE runs.run_id = ?1 ORDER BY events.seq",
            )
            .map_err(|error| self.database_error(&error))?;
        let rows = select
            .query_map([run], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(|error| self.database_error(&error))?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, text) = row.map_err(|error| self.database_error(&error))?;
            let event = serde_json::from_str(&text).map_err(|error| Error::Corrupt {
                run: run.to_owned(),
                seq: seq as u64,
                message: error.to_string(),
            })?;
            events.push(event);
        }
        if events.is_empty() {
            return Err(Error::UnknownRun(run.to_owned()));
        }
        Ok(events)
    }
}
