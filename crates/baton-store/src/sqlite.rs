//! The embedded store: one SQLite file in WAL mode, one writer thread.
//!
//! Appends from any thread go to the writer over a channel; the writer takes
//! every append waiting at that moment into one transaction (group commit)
//! and answers each caller only after the commit, so no caller is told an
//! event is stored before it is durable (`synchronous = NORMAL` in WAL mode
//! survives a process crash; an OS crash may lose the last commits, never
//! corrupt earlier ones). Readers use their own connection.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use baton_core::run::{Artifact, Control, Digest, Event, Millis, Provenance, Sealed};
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::{
    ApiKey, Appended, ArtifactRow, AttemptRow, Batch, CacheHit, CheckpointInfo, Error, FeedBatch,
    Projection, Result, RunFilter, RunRecord, RunSummary, Store, StoredWorkflow, TaskRow,
};

/// `PRAGMA application_id` of a baton database: "btn1".
const APPLICATION_ID: i32 = 0x6274_6e31;

/// How long a write waits for another process's lock before it fails.
const BUSY_TIMEOUT_MS: u32 = 5000;

/// WAL frames (pages) after which the writer checkpoints, SQLite's default.
const CHECKPOINT_FRAMES: i32 = 1000;

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
    // Events move to one row per appended batch (a JSON array): a commit
    // then writes one row, however many events it holds.
    "CREATE TABLE event_batches (
        run INTEGER NOT NULL REFERENCES runs (id),
        first_seq INTEGER NOT NULL,
        count INTEGER NOT NULL,
        events TEXT NOT NULL,
        PRIMARY KEY (run, first_seq)
    ) WITHOUT ROWID;
    INSERT INTO event_batches (run, first_seq, count, events)
        SELECT run, seq, 1, '[' || event || ']' FROM events;
    DROP TABLE events;
    -- A task's row carries its provenance once it succeeded; digests are
    -- 32-byte blobs, and only cacheable results are indexed by key.
    CREATE TABLE tasks (
        run INTEGER NOT NULL REFERENCES runs (id),
        task INTEGER NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        cacheable INTEGER NOT NULL,
        attempt INTEGER,
        spec BLOB,
        inputs BLOB,
        output BLOB,
        artifacts BLOB,
        parents BLOB,
        digest BLOB,
        cache_key BLOB,
        PRIMARY KEY (run, task)
    ) WITHOUT ROWID;
    CREATE INDEX tasks_by_cache_key ON tasks (cache_key) WHERE cache_key IS NOT NULL;
    CREATE TABLE attempts (
        run INTEGER NOT NULL REFERENCES runs (id),
        task INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        status TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        error TEXT,
        PRIMARY KEY (run, task, attempt)
    ) WITHOUT ROWID;
    CREATE TABLE outputs (
        run INTEGER NOT NULL REFERENCES runs (id),
        task INTEGER NOT NULL,
        output TEXT NOT NULL,
        PRIMARY KEY (run, task)
    ) WITHOUT ROWID;
    CREATE TABLE checkpoints (
        run INTEGER NOT NULL REFERENCES runs (id),
        events INTEGER NOT NULL,
        digest BLOB NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (run, events)
    );
    CREATE TABLE cancel_requests (
        run INTEGER PRIMARY KEY REFERENCES runs (id)
    );",
    // Provenance leaves the task rows for a table of its own: a record is
    // written once, so inserting it is cheaper than growing a row that was
    // written when its task started (twice the durable throughput's worth of
    // B-tree work), and the cache index only holds cacheable tasks.
    "CREATE TABLE provenance (
        run INTEGER NOT NULL REFERENCES runs (id),
        task INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        spec BLOB NOT NULL,
        inputs BLOB NOT NULL,
        output BLOB NOT NULL,
        artifacts BLOB NOT NULL,
        parents BLOB NOT NULL,
        digest BLOB NOT NULL,
        PRIMARY KEY (run, task)
    ) WITHOUT ROWID;
    INSERT INTO provenance
        SELECT run, task, attempt, spec, inputs, output, artifacts, parents, digest
        FROM tasks WHERE digest IS NOT NULL;
    CREATE TABLE cache_keys (
        key BLOB NOT NULL,
        run INTEGER NOT NULL REFERENCES runs (id),
        task INTEGER NOT NULL,
        PRIMARY KEY (key, run, task)
    ) WITHOUT ROWID;
    INSERT INTO cache_keys SELECT cache_key, run, task FROM tasks WHERE cache_key IS NOT NULL;
    DROP INDEX tasks_by_cache_key;
    ALTER TABLE tasks DROP COLUMN attempt;
    ALTER TABLE tasks DROP COLUMN spec;
    ALTER TABLE tasks DROP COLUMN inputs;
    ALTER TABLE tasks DROP COLUMN output;
    ALTER TABLE tasks DROP COLUMN artifacts;
    ALTER TABLE tasks DROP COLUMN parents;
    ALTER TABLE tasks DROP COLUMN digest;
    ALTER TABLE tasks DROP COLUMN cache_key;",
    // Artifacts produced and consumed; by digest too, so retention finds
    // the stored files some run still refers to. A task row no longer says
    // whether it is cacheable: `cache_keys` does, once it succeeded.
    "CREATE TABLE artifacts (
        run INTEGER NOT NULL REFERENCES runs (id),
        task INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        role TEXT NOT NULL,
        path TEXT NOT NULL,
        digest BLOB NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (run, task, attempt, role, path)
    ) WITHOUT ROWID;
    CREATE INDEX artifacts_by_digest ON artifacts (digest);
    ALTER TABLE tasks DROP COLUMN cacheable;",
    // Cancel requests become one kind of control request, kept in the
    // order they were asked.
    "CREATE TABLE controls (
        run INTEGER NOT NULL REFERENCES runs (id),
        seq INTEGER NOT NULL,
        control TEXT NOT NULL,
        PRIMARY KEY (run, seq)
    ) WITHOUT ROWID;
    INSERT INTO controls (run, seq, control)
        SELECT run, 0, '{\"type\":\"cancel\"}' FROM cancel_requests;
    DROP TABLE cancel_requests;",
    // The server's catalog: registered workflow versions and API keys.
    "CREATE TABLE workflows (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        digest BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        spec TEXT NOT NULL,
        PRIMARY KEY (name, version)
    ) WITHOUT ROWID;
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) WITHOUT ROWID;",
    // Every batch appended, in the order the store took them: one feed of
    // all runs' events that a reader can resume by position.
    "CREATE TABLE feed (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        run INTEGER NOT NULL REFERENCES runs (id),
        first_seq INTEGER NOT NULL
    );
    CREATE INDEX feed_by_run ON feed (run);
    INSERT INTO feed (run, first_seq)
        SELECT event_batches.run, first_seq FROM event_batches
        JOIN runs ON runs.id = event_batches.run ORDER BY runs.started_at, first_seq;",
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
        /// The batch's events as one JSON array.
        events: String,
        count: u64,
        projection: Projection,
        tasks: Vec<TaskRow>,
        attempts: Vec<AttemptRow>,
        artifacts: Vec<ArtifactRow>,
    },
    Checkpoint {
        events: u64,
        digest: [u8; 32],
        data: Vec<u8>,
    },
    Control(String),
    Delete,
    /// The run field holds the workflow's name.
    PutWorkflow {
        version: u32,
        digest: [u8; 32],
        created_at: u64,
        spec: String,
    },
    DeleteWorkflow,
    PutKey(ApiKey),
    /// The run field holds the key's id.
    RevokeKey {
        at: u64,
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
        // Processes opening a new file at once can be refused the lock at
        // once (SQLite does not wait where waiting could deadlock): they
        // try again, for as long as a write would wait.
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into());
        let (writer, reader) = loop {
            let opened = connect(&path).and_then(|mut writer| {
                migrate(&mut writer, &path)?;
                Ok((writer, connect(&path)?))
            });
            match opened {
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other?,
            }
        };
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
    let message = match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            return Error::Locked {
                path: path.to_path_buf(),
                seconds: BUSY_TIMEOUT_MS / 1000,
            };
        }
        Some(rusqlite::ErrorCode::DiskFull) => {
            "the disk is full; nothing of the failed write was kept (free space and try again)"
                .to_owned()
        }
        _ => error.to_string(),
    };
    Error::Database {
        path: path.to_path_buf(),
        message,
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection =
        Connection::open_with_flags(path, flags).map_err(|error| database_error(path, &error))?;
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA cache_size = -32768;"
        ))
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
    // An up-to-date database is not written to: opening one to read must
    // not wait for another process's writes.
    if version == known && application == i64::from(APPLICATION_ID) {
        return Ok(());
    }
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    // Another process may have migrated while this one waited for the
    // lock (two `baton` commands opening a new database at once): what to
    // apply is read again under the lock.
    let version = pragma(&transaction, "user_version")?;
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

/// The writer: every append waiting when it wakes goes into one transaction.
/// Each write checks what could refuse it (a sequence conflict, an unknown or
/// taken run id) before it changes anything, so a refused write leaves no
/// trace and does not fail the others in the batch without the price of a
/// savepoint per write.
fn write_loop(mut connection: Connection, receiver: mpsc::Receiver<Write>) {
    let path = connection.path().map(PathBuf::from).unwrap_or_default();
    // SQLite would checkpoint the WAL inside the commit that crosses its
    // threshold, with every caller of that batch waiting; the writer does it
    // itself once they have their answers, while the engine works.
    let frames = std::sync::Arc::new(AtomicI32::new(0));
    let seen = frames.clone();
    // Should the hook not take, SQLite's own checkpoint stays in place.
    let _ = connection.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages| {
        seen.store(pages, Ordering::Relaxed);
        Ok(())
    }));
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter());
        let mut answers: Vec<Result<()>> = Vec::with_capacity(batch.len());
        let committed = (|| -> rusqlite::Result<()> {
            // Taking the write lock up front lets SQLite wait out another
            // process's write; a read turned write mid-way fails at once.
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for write in &batch {
                let answer = match &write.kind {
                    WriteKind::Create { workflow, record } => {
                        create_one(&transaction, &write.run, workflow, record)?
                    }
                    WriteKind::Append {
                        first_seq,
                        events,
                        count,
                        projection,
                        tasks,
                        attempts,
                        artifacts,
                    } => append_one(
                        &transaction,
                        &write.run,
                        *first_seq,
                        (events, *count),
                        projection,
                        Rows {
                            tasks,
                            attempts,
                            artifacts,
                        },
                    )?,
                    WriteKind::Checkpoint {
                        events,
                        digest,
                        data,
                    } => checkpoint_one(&transaction, &write.run, *events, digest, data)?,
                    WriteKind::Control(control) => control_one(&transaction, &write.run, control)?,
                    WriteKind::Delete => delete_one(&transaction, &write.run)?,
                    WriteKind::PutWorkflow {
                        version,
                        digest,
                        created_at,
                        spec,
                    } => {
                        let inserted = transaction
                            .prepare_cached(
                                "INSERT INTO workflows (name, version, digest, created_at, spec)
                                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                            )?
                            .execute(params![
                                write.run,
                                version,
                                digest,
                                *created_at as i64,
                                spec
                            ])?;
                        if inserted == 0 {
                            Err(Error::VersionExists {
                                name: write.run.clone(),
                                version: *version,
                            })
                        } else {
                            Ok(())
                        }
                    }
                    WriteKind::DeleteWorkflow => {
                        let deleted = transaction
                            .prepare_cached("DELETE FROM workflows WHERE name = ?1")?
                            .execute([&write.run])?;
                        if deleted == 0 {
                            Err(Error::UnknownWorkflow(write.run.clone()))
                        } else {
                            Ok(())
                        }
                    }
                    WriteKind::PutKey(key) => {
                        transaction
                            .prepare_cached(
                                "INSERT INTO api_keys (id, name, scope, hash, created_at)
                                 VALUES (?1, ?2, ?3, ?4, ?5)",
                            )?
                            .execute(params![
                                key.id,
                                key.name,
                                key.scope.name(),
                                key.hash.0,
                                key.created_at.0 as i64
                            ])?;
                        Ok(())
                    }
                    WriteKind::RevokeKey { at } => {
                        let revoked = transaction
                            .prepare_cached(
                                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2)
                                 WHERE id = ?1",
                            )?
                            .execute(params![write.run, *at as i64])?;
                        if revoked == 0 {
                            Err(Error::UnknownKey(write.run.clone()))
                        } else {
                            Ok(())
                        }
                    }
                };
                answers.push(answer);
            }
            transaction.commit()
        })();
        match committed {
            Ok(()) => {
                for (write, answer) in batch.into_iter().zip(answers) {
                    let _ = write.reply.send(answer);
                }
                if frames.load(Ordering::Relaxed) >= CHECKPOINT_FRAMES {
                    // A failed checkpoint loses nothing: the frames stay in
                    // the WAL and the next one tries again.
                    let _ = connection.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE);
                    frames.store(0, Ordering::Relaxed);
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

/// The row id of a run, if it is known.
fn run_row(connection: &Connection, run_id: &str) -> rusqlite::Result<Option<i64>> {
    connection
        .prepare_cached("SELECT id FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |row| row.get(0))
        .optional()
}

fn checkpoint_one(
    connection: &Connection,
    run_id: &str,
    events: u64,
    digest: &[u8; 32],
    data: &[u8],
) -> rusqlite::Result<Result<()>> {
    let Some(run) = run_row(connection, run_id)? else {
        return Ok(Err(Error::UnknownRun(run_id.to_owned())));
    };
    connection
        .prepare_cached(
            "INSERT INTO checkpoints (run, events, digest, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run, events) DO UPDATE SET digest = excluded.digest, data = excluded.data",
        )?
        .execute(params![run, events as i64, digest, data])?;
    Ok(Ok(()))
}

fn control_one(
    connection: &Connection,
    run_id: &str,
    control: &str,
) -> rusqlite::Result<Result<()>> {
    let Some(run) = run_row(connection, run_id)? else {
        return Ok(Err(Error::UnknownRun(run_id.to_owned())));
    };
    connection
        .prepare_cached(
            "INSERT INTO controls (run, seq, control)
             SELECT ?1, coalesce(max(seq) + 1, 0), ?2 FROM controls WHERE run = ?1",
        )?
        .execute(params![run, control])?;
    Ok(Ok(()))
}

/// The tables holding a run's rows, apart from `runs` itself.
const RUN_TABLES: &[&str] = &[
    "run_records",
    "event_batches",
    "tasks",
    "attempts",
    "outputs",
    "checkpoints",
    "controls",
    "feed",
    "provenance",
    "cache_keys",
    "artifacts",
];

/// Deletes a finished run's rows from every table.
fn delete_one(connection: &Connection, run_id: &str) -> rusqlite::Result<Result<()>> {
    let found: Option<(i64, String)> = connection
        .prepare_cached("SELECT id, status FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((run, status)) = found else {
        return Ok(Err(Error::UnknownRun(run_id.to_owned())));
    };
    let finished =
        named::<baton_core::run::RunStatus>(run_id, &status).is_ok_and(|status| status.is_final());
    if !finished {
        return Ok(Err(Error::Unfinished(run_id.to_owned())));
    }
    for table in RUN_TABLES {
        connection
            .prepare_cached(&format!("DELETE FROM {table} WHERE run = ?1"))?
            .execute([run])?;
    }
    connection
        .prepare_cached("DELETE FROM runs WHERE id = ?1")?
        .execute([run])?;
    Ok(Ok(()))
}

/// Appends one caller's events, unless the log is not where it expects, and
/// updates the read models in the same transaction.
fn append_one(
    connection: &Connection,
    run_id: &str,
    first_seq: u64,
    (events, count): (&str, u64),
    projection: &Projection,
    rows: Rows<'_>,
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
    let next = (first_seq + count) as i64;
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
    if count > 0 {
        connection
            .prepare_cached(
                "INSERT INTO event_batches (run, first_seq, count, events) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![run, first_seq as i64, count as i64, events])?;
        connection
            .prepare_cached("INSERT INTO feed (run, first_seq) VALUES (?1, ?2)")?
            .execute(params![run, first_seq as i64])?;
    }
    if let Some(at) = projection.started_at {
        connection
            .prepare_cached("UPDATE runs SET status = 'running', started_at = ?2 WHERE id = ?1")?
            .execute(params![run, at.0 as i64])?;
    }
    if let Some(paused) = projection.paused {
        let status = if paused { "paused" } else { "running" };
        connection
            .prepare_cached("UPDATE runs SET status = ?2 WHERE id = ?1")?
            .execute(params![run, status])?;
    }
    if let Some((status, at)) = projection.finished {
        connection
            .prepare_cached("UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1")?
            .execute(params![run, status.name(), at.0 as i64])?;
    }
    for (task, output) in &projection.outputs {
        connection
            .prepare_cached(
                "INSERT INTO outputs (run, task, output) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run, task) DO UPDATE SET output = excluded.output",
            )?
            .execute(params![run, task, output])?;
    }
    write_tasks(connection, run, rows.tasks)?;
    write_artifacts(connection, run, rows.artifacts)?;
    let mut insert = connection.prepare_cached(
        "INSERT INTO attempts (run, task, attempt, status, started_at, finished_at, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (run, task, attempt) DO NOTHING",
    )?;
    for row in rows.attempts {
        insert.execute(params![
            run,
            row.task,
            row.attempt,
            row.status.name(),
            row.started_at.0 as i64,
            row.finished_at.0 as i64,
            row.error,
        ])?;
    }
    Ok(Ok(()))
}

/// The read-model rows of one append.
struct Rows<'a> {
    tasks: &'a [TaskRow],
    attempts: &'a [AttemptRow],
    artifacts: &'a [ArtifactRow],
}

fn write_artifacts(
    connection: &Connection,
    run: i64,
    artifacts: &[ArtifactRow],
) -> rusqlite::Result<()> {
    let mut insert = connection.prepare_cached(
        "INSERT INTO artifacts (run, task, attempt, role, path, digest, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT DO NOTHING",
    )?;
    for row in artifacts {
        insert.execute(params![
            run,
            row.task,
            row.attempt,
            row.role.name(),
            row.artifact.path,
            row.artifact.digest.0,
            row.artifact.size as i64,
        ])?;
    }
    Ok(())
}

/// Upserts task rows and inserts the provenance of the tasks that succeeded.
fn write_tasks(connection: &Connection, run: i64, tasks: &[TaskRow]) -> rusqlite::Result<()> {
    let mut upsert = connection.prepare_cached(
        "INSERT INTO tasks (run, task, name, status, attempts, started_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (run, task) DO UPDATE SET status = excluded.status,
            attempts = excluded.attempts, started_at = excluded.started_at,
            finished_at = excluded.finished_at",
    )?;
    for row in tasks {
        upsert.execute(params![
            run,
            row.task,
            row.id,
            row.status.name(),
            row.attempts,
            row.started_at.map(|at| at.0 as i64),
            row.finished_at.map(|at| at.0 as i64),
        ])?;
    }
    let mut record = connection.prepare_cached(
        "INSERT INTO provenance (run, task, attempt, spec, inputs, output, artifacts, parents, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (row, provenance) in tasks
        .iter()
        .filter_map(|row| Some((row, row.record.as_ref()?)))
    {
        let parents: Vec<u8> = provenance
            .parents
            .iter()
            .flat_map(|parent| parent.0)
            .collect();
        record.execute(params![
            run,
            row.task,
            provenance.attempt,
            provenance.spec.0,
            provenance.inputs.0,
            provenance.output.0,
            provenance.artifacts.0,
            parents,
            provenance.digest.0,
        ])?;
        if let Some(key) = &row.cache_key {
            connection
                .prepare_cached("INSERT INTO cache_keys (key, run, task) VALUES (?1, ?2, ?3)")?
                .execute(params![key.0, run, row.task])?;
        }
    }
    Ok(())
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

    fn write(&self, run: &str, first_seq: u64, batch: Batch<'_>) -> Appended {
        let events = match serde_json::to_string(batch.events) {
            Ok(events) => events,
            Err(error) => return Appended::done(Err(self.encode_error(&error))),
        };
        self.send(
            run,
            WriteKind::Append {
                first_seq,
                events,
                count: batch.events.len() as u64,
                projection: Projection::of(batch.events, true),
                tasks: batch.tasks.to_vec(),
                attempts: batch.attempts.to_vec(),
                artifacts: batch.artifacts.to_vec(),
            },
        )
    }

    fn put_checkpoint(&self, run: &str, sealed: &Sealed) -> Appended {
        self.send(
            run,
            WriteKind::Checkpoint {
                events: sealed.events,
                digest: sealed.digest.0,
                data: sealed.data.clone(),
            },
        )
    }

    fn request(&self, run: &str, control: &Control) -> Appended {
        match serde_json::to_string(control) {
            Ok(control) => self.send(run, WriteKind::Control(control)),
            Err(error) => Appended::done(Err(self.encode_error(&error))),
        }
    }

    fn delete_run(&self, run: &str) -> Appended {
        self.send(run, WriteKind::Delete)
    }

    fn put_workflow(&self, workflow: &StoredWorkflow) -> Appended {
        match serde_json::to_string(&workflow.workflow) {
            Ok(spec) => self.send(
                &workflow.name,
                WriteKind::PutWorkflow {
                    version: workflow.version,
                    digest: workflow.digest.0,
                    created_at: workflow.created_at.0,
                    spec,
                },
            ),
            Err(error) => Appended::done(Err(self.encode_error(&error))),
        }
    }

    fn workflow(&self, name: &str, version: Option<u32>) -> Result<StoredWorkflow> {
        let found = match version {
            Some(version) => self.query(
                "SELECT name, version, digest, created_at, spec FROM workflows
                 WHERE name = ?1 AND version = ?2",
                params![name, version],
                workflow_row,
            )?,
            None => self.query(
                "SELECT name, version, digest, created_at, spec FROM workflows
                 WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                params![name],
                workflow_row,
            )?,
        };
        match found.into_iter().next() {
            Some(row) => stored_workflow(row),
            None => Err(match version {
                Some(version) => Error::UnknownVersion {
                    name: name.to_owned(),
                    version,
                },
                None => Error::UnknownWorkflow(name.to_owned()),
            }),
        }
    }

    fn workflows(&self) -> Result<Vec<StoredWorkflow>> {
        self.query(
            "SELECT name, max(version), digest, created_at, spec FROM workflows
             GROUP BY name ORDER BY name",
            [],
            workflow_row,
        )?
        .into_iter()
        .map(stored_workflow)
        .collect()
    }

    fn workflow_versions(&self, name: &str) -> Result<Vec<StoredWorkflow>> {
        let versions: Vec<StoredWorkflow> = self
            .query(
                "SELECT name, version, digest, created_at, spec FROM workflows
                 WHERE name = ?1 ORDER BY version",
                [name],
                workflow_row,
            )?
            .into_iter()
            .map(stored_workflow)
            .collect::<Result<_>>()?;
        if versions.is_empty() {
            return Err(Error::UnknownWorkflow(name.to_owned()));
        }
        Ok(versions)
    }

    fn delete_workflow(&self, name: &str) -> Appended {
        self.send(name, WriteKind::DeleteWorkflow)
    }

    fn put_key(&self, key: &ApiKey) -> Appended {
        self.send(&key.id, WriteKind::PutKey(key.clone()))
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        let rows = self.query(
            "SELECT id, name, scope, hash, created_at, revoked_at FROM api_keys ORDER BY id",
            [],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(id, name, scope, hash, created_at, revoked_at)| {
                Ok(ApiKey {
                    scope: scope
                        .parse()
                        .map_err(|message| corrupt("(api keys)", message))?,
                    hash: digest_of("(api keys)", &hash)?,
                    id,
                    name,
                    created_at: Millis(created_at as u64),
                    revoked_at: revoked_at.map(|at| Millis(at as u64)),
                })
            })
            .collect()
    }

    fn revoke_key(&self, id: &str, at: Millis) -> Appended {
        self.send(id, WriteKind::RevokeKey { at: at.0 })
    }

    fn artifact_digests(&self) -> Result<Vec<Digest>> {
        let blobs = self.query(
            "SELECT DISTINCT digest FROM artifacts ORDER BY digest",
            [],
            |row| row.get::<_, Vec<u8>>(0),
        )?;
        blobs
            .iter()
            .map(|blob| digest_of("(artifacts)", blob))
            .collect()
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

    fn summary(&self, run: &str) -> Result<RunSummary> {
        self.summaries("WHERE run_id = ?1", params![run])?
            .pop()
            .ok_or_else(|| Error::UnknownRun(run.to_owned()))
    }

    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        if let Some(after) = &filter.after
            && self.known(after)?.is_none()
        {
            return Err(Error::UnknownRun(after.clone()));
        }
        self.summaries(
            "WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR workflow = ?2)
                AND (?4 IS NULL OR finished_at < ?4)
                AND (?5 IS NULL OR started_at >= ?5) AND (?6 IS NULL OR started_at < ?6)
                AND (?7 IS NULL OR (coalesce(started_at, 0), id) <
                    (SELECT coalesce(started_at, 0), id FROM runs WHERE run_id = ?7))
             ORDER BY coalesce(started_at, 0) DESC, id DESC LIMIT ?3",
            params![
                filter.status.map(|status| status.name()),
                filter.workflow,
                filter.limit.min(i64::MAX as usize) as i64,
                filter.finished_before.map(|at| at.0 as i64),
                filter.started_after.map(|at| at.0 as i64),
                filter.started_before.map(|at| at.0 as i64),
                filter.after
            ],
        )
    }

    fn events_from(&self, run: &str, from: u64) -> Result<Vec<Event>> {
        let Some(id) = self.known(run)? else {
            return Err(Error::UnknownRun(run.to_owned()));
        };
        // The batch holding `from`, and every batch after it.
        let rows = self.query(
            "SELECT first_seq, events FROM event_batches WHERE run = ?1 AND first_seq >= coalesce(
                (SELECT max(first_seq) FROM event_batches WHERE run = ?1 AND first_seq <= ?2), 0)
             ORDER BY first_seq",
            params![id, from as i64],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
        )?;
        if rows.is_empty() && from == 0 {
            return Err(Error::UnknownRun(run.to_owned()));
        }
        let mut events = Vec::new();
        for (first, text) in rows {
            let batch: Vec<Event> =
                serde_json::from_str(&text).map_err(|error| Error::Corrupt {
                    run: run.to_owned(),
                    seq: first as u64,
                    message: format!("the batch of events from here: {error}"),
                })?;
            let skip = from.saturating_sub(first as u64) as usize;
            events.extend(batch.into_iter().skip(skip));
        }
        Ok(events)
    }

    fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedBatch>> {
        let rows = self.query(
            "SELECT feed.position, runs.run_id, feed.first_seq, event_batches.events
             FROM feed JOIN runs ON runs.id = feed.run
             JOIN event_batches ON event_batches.run = feed.run
                AND event_batches.first_seq = feed.first_seq
             WHERE feed.position > ?1 ORDER BY feed.position LIMIT ?2",
            params![after as i64, limit.min(i64::MAX as usize) as i64],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(position, run_id, first_seq, text)| {
                let events = serde_json::from_str(&text).map_err(|error| Error::Corrupt {
                    run: run_id.clone(),
                    seq: first_seq as u64,
                    message: format!("the batch of events from here: {error}"),
                })?;
                Ok(FeedBatch {
                    position: position as u64,
                    run_id,
                    first_seq: first_seq as u64,
                    events,
                })
            })
            .collect()
    }

    fn tasks(&self, run: &str) -> Result<Vec<TaskRow>> {
        let id = self.require(run)?;
        let rows = self.query(
            &format!(
                "SELECT tasks.task, name, status, attempts, started_at, finished_at,
                    cache_keys.key, provenance.digest IS NOT NULL, {PROVENANCE_COLUMNS}
                 FROM tasks LEFT JOIN provenance USING (run, task)
                 LEFT JOIN cache_keys USING (run, task)
                 WHERE run = ?1 ORDER BY tasks.task"
            ),
            [id],
            |row| {
                let recorded: bool = row.get(7)?;
                Ok((
                    row.get::<_, u32>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, u32>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                    row.get::<_, Option<Vec<u8>>>(6)?,
                    if recorded {
                        Some(provenance_row(row, 8)?)
                    } else {
                        None
                    },
                ))
            },
        )?;
        rows.into_iter()
            .map(
                |(task, id, status, attempts, started_at, finished_at, cache_key, record)| {
                    Ok(TaskRow {
                        task,
                        id,
                        status: named(run, &status)?,
                        attempts,
                        started_at: started_at.map(millis),
                        finished_at: finished_at.map(millis),
                        record: record.map(|row| provenance_of(run, row)).transpose()?,
                        cache_key: cache_key.map(|key| digest_of(run, &key)).transpose()?,
                    })
                },
            )
            .collect()
    }

    fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>> {
        let id = self.require(run)?;
        let rows = self.query(
            "SELECT task, attempt, status, started_at, finished_at, error FROM attempts
             WHERE run = ?1 ORDER BY task, attempt",
            [id],
            |row| {
                Ok((
                    row.get::<_, u32>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<String>>(5)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(task, attempt, status, started_at, finished_at, error)| {
                Ok(AttemptRow {
                    task,
                    attempt,
                    status: named(run, &status)?,
                    started_at: millis(started_at),
                    finished_at: millis(finished_at),
                    error,
                })
            })
            .collect()
    }

    fn outputs(&self, run: &str) -> Result<Vec<(u32, serde_json::Value)>> {
        let id = self.require(run)?;
        let rows = self.query(
            "SELECT task, output FROM outputs WHERE run = ?1 ORDER BY task",
            [id],
            |row| Ok((row.get::<_, u32>(0)?, row.get::<_, String>(1)?)),
        )?;
        rows.into_iter()
            .map(|(task, text)| Ok((task, decode(run, &text)?)))
            .collect()
    }

    fn provenance(&self, run: &str) -> Result<Vec<Provenance>> {
        let id = self.require(run)?;
        let rows = self.query(
            &format!(
                "SELECT {PROVENANCE_COLUMNS} FROM provenance JOIN tasks USING (run, task)
                 WHERE run = ?1 ORDER BY task"
            ),
            [id],
            |row| provenance_row(row, 0),
        )?;
        rows.into_iter()
            .map(|row| provenance_of(run, row))
            .collect()
    }

    fn cached(&self, key: &Digest) -> Result<Option<CacheHit>> {
        let rows = self.query(
            &format!(
                "SELECT runs.run_id, outputs.output, tasks.finished_at, run, task,
                    {PROVENANCE_COLUMNS}
                 FROM cache_keys JOIN runs ON runs.id = cache_keys.run
                 JOIN tasks USING (run, task) JOIN provenance USING (run, task)
                 LEFT JOIN outputs USING (run, task)
                 WHERE cache_keys.key = ?1 ORDER BY cache_keys.run DESC, cache_keys.task DESC
                 LIMIT 1"
            ),
            [key.0],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    (row.get::<_, i64>(3)?, row.get::<_, u32>(4)?),
                    provenance_row(row, 5)?,
                ))
            },
        )?;
        let Some((run_id, output, finished_at, (run, task), record)) = rows.into_iter().next()
        else {
            return Ok(None);
        };
        let record = provenance_of(&run_id, record)?;
        let artifacts = self
            .artifact_rows(
                &run_id,
                "WHERE run = ?1 AND task = ?2 AND attempt = ?3 AND role = 'produced'",
                params![run, task, record.attempt],
            )?
            .into_iter()
            .map(|row| row.artifact)
            .collect();
        Ok(Some(CacheHit {
            output: output.map(|text| decode(&run_id, &text)).transpose()?,
            finished_at: millis(finished_at.unwrap_or_default()),
            artifacts,
            record,
            run_id,
        }))
    }

    fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>> {
        let id = self.require(run)?;
        self.artifact_rows(run, "WHERE run = ?1", [id])
    }

    fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        let id = self.require(run)?;
        let rows = self.query(
            "SELECT events, digest, length(data) FROM checkpoints WHERE run = ?1
             ORDER BY events DESC",
            [id],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(events, digest, size)| {
                Ok(CheckpointInfo {
                    events: events as u64,
                    digest: digest_of(run, &digest)?,
                    size: size as u64,
                })
            })
            .collect()
    }

    fn checkpoint(&self, run: &str, events: u64) -> Result<Sealed> {
        let id = self.require(run)?;
        let rows = self.query(
            "SELECT digest, data FROM checkpoints WHERE run = ?1 AND events = ?2",
            params![id, events as i64],
            |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )?;
        let Some((digest, data)) = rows.into_iter().next() else {
            return Err(Error::NoCheckpoint {
                run: run.to_owned(),
                events,
            });
        };
        Ok(Sealed {
            events,
            digest: digest_of(run, &digest)?,
            data,
        })
    }

    fn controls(&self, run: &str, from: u64) -> Result<Vec<Control>> {
        let id = self.require(run)?;
        let rows = self.query(
            "SELECT seq, control FROM controls WHERE run = ?1 AND seq >= ?2 ORDER BY seq",
            params![id, from as i64],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
        )?;
        rows.into_iter()
            .map(|(seq, control)| {
                serde_json::from_str(&control).map_err(|error| Error::Corrupt {
                    run: run.to_owned(),
                    seq: seq as u64,
                    message: format!("control request: {error}"),
                })
            })
            .collect()
    }
}

/// Columns of a provenance record, in the order `provenance_row` reads.
const PROVENANCE_COLUMNS: &str = "tasks.name, provenance.attempt, provenance.spec,
    provenance.inputs, provenance.output, provenance.artifacts, provenance.digest,
    provenance.parents";

/// A provenance row as stored: the task, its attempt, five digests and the
/// parents' digests end to end.
type ProvenanceRow = (String, u32, [Vec<u8>; 5], Vec<u8>);

fn provenance_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<ProvenanceRow> {
    let blob = |index: usize| row.get::<_, Vec<u8>>(first + index);
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        [blob(2)?, blob(3)?, blob(4)?, blob(5)?, blob(6)?],
        blob(7)?,
    ))
}

fn provenance_of(
    run: &str,
    (task, attempt, digests, parents): ProvenanceRow,
) -> Result<Provenance> {
    let [spec, inputs, output, artifacts, digest] = digests;
    if parents.len() % 32 != 0 {
        return Err(corrupt(
            run,
            format!("task `{task}` has a torn list of parents"),
        ));
    }
    Ok(Provenance {
        spec: digest_of(run, &spec)?,
        inputs: digest_of(run, &inputs)?,
        output: digest_of(run, &output)?,
        artifacts: digest_of(run, &artifacts)?,
        parents: parents
            .chunks(32)
            .map(|parent| digest_of(run, parent))
            .collect::<Result<_>>()?,
        digest: digest_of(run, &digest)?,
        task,
        attempt,
    })
}

fn corrupt(run: &str, message: String) -> Error {
    Error::Corrupt {
        run: run.to_owned(),
        seq: 0,
        message,
    }
}

/// A `workflows` row: name, version, digest, created_at, spec.
type WorkflowRow = (String, u32, Vec<u8>, i64, String);

fn workflow_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WorkflowRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn stored_workflow(
    (name, version, digest, created_at, spec): WorkflowRow,
) -> Result<StoredWorkflow> {
    let workflow = serde_json::from_str(&spec)
        .map_err(|error| corrupt(&name, format!("a registered workflow: {error}")))?;
    Ok(StoredWorkflow {
        digest: digest_of(&name, &digest)?,
        version,
        created_at: Millis(created_at as u64),
        workflow: std::sync::Arc::new(workflow),
        name,
    })
}

fn digest_of(run: &str, bytes: &[u8]) -> Result<Digest> {
    bytes
        .try_into()
        .map(Digest)
        .map_err(|_| corrupt(run, format!("a digest of {} bytes", bytes.len())))
}

fn decode(run: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|error| corrupt(run, format!("an output: {error}")))
}

/// A status stored by its name.
fn named<T: serde::de::DeserializeOwned>(run: &str, name: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::from(name))
        .map_err(|error| corrupt(run, format!("unknown status `{name}`: {error}")))
}

fn millis(at: i64) -> Millis {
    Millis(at as u64)
}

impl SqliteStore {
    /// Run rows selected by `rest` (a WHERE clause and ordering).
    /// Artifact rows of `run` that pass `filter`, in key order.
    fn artifact_rows<P: rusqlite::Params>(
        &self,
        run: &str,
        filter: &str,
        params: P,
    ) -> Result<Vec<ArtifactRow>> {
        let rows = self.query(
            &format!(
                "SELECT task, attempt, role, path, digest, size FROM artifacts {filter}
                 ORDER BY task, attempt, role DESC, path"
            ),
            params,
            |row| {
                Ok((
                    row.get::<_, u32>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Vec<u8>>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(task, attempt, role, path, digest, size)| {
                Ok(ArtifactRow {
                    task,
                    attempt,
                    role: named(run, &role)?,
                    artifact: Artifact {
                        path,
                        digest: digest_of(run, &digest)?,
                        size: size as u64,
                    },
                })
            })
            .collect()
    }

    fn summaries<P: rusqlite::Params>(&self, rest: &str, params: P) -> Result<Vec<RunSummary>> {
        let rows = self.query(
            &format!(
                "SELECT run_id, coalesce(workflow, ''), status, started_at, finished_at, next_seq
                 FROM runs {rest}"
            ),
            params,
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(
                |(run_id, workflow, status, started_at, finished_at, events)| {
                    Ok(RunSummary {
                        status: named(&run_id, &status)?,
                        run_id,
                        workflow,
                        started_at: started_at.map(millis),
                        finished_at: finished_at.map(millis),
                        events: events as u64,
                    })
                },
            )
            .collect()
    }

    fn query<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let reader = lock(&self.reader);
        let mut select = reader
            .prepare_cached(sql)
            .map_err(|error| self.database_error(&error))?;
        select
            .query_map(params, row)
            .and_then(|rows| rows.collect())
            .map_err(|error| self.database_error(&error))
    }

    fn known(&self, run: &str) -> Result<Option<i64>> {
        let reader = lock(&self.reader);
        run_row(&reader, run).map_err(|error| self.database_error(&error))
    }

    fn require(&self, run: &str) -> Result<i64> {
        self.known(run)?
            .ok_or_else(|| Error::UnknownRun(run.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written by the schema before provenance had its own table.
    fn third_schema(path: &Path) -> Connection {
        let connection = Connection::open(path).unwrap();
        for migration in &MIGRATIONS[..3] {
            connection.execute_batch(migration).unwrap();
        }
        connection
            .execute_batch(&format!(
                "PRAGMA user_version = 3; PRAGMA application_id = {APPLICATION_ID};
                 INSERT INTO runs (run_id, next_seq, workflow) VALUES ('old', 0, 'w');"
            ))
            .unwrap();
        connection
    }

    #[test]
    fn upgrading_keeps_the_provenance_and_cache_keys_of_recorded_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton.db");
        let digest = |byte: u8| [byte; 32];
        let key = baton_core::run::cache_key(&Digest(digest(1)), &Digest(digest(2)));
        third_schema(&path)
            .execute(
                "INSERT INTO tasks (run, task, name, status, attempts, cacheable, attempt, spec,
                    inputs, output, artifacts, parents, digest, cache_key)
                 VALUES (1, 0, 'a', 'succeeded', 2, 1, 2, ?1, ?2, ?3, ?4, ?5, ?6, ?7),
                        (1, 1, 'b', 'running', 1, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
                params![
                    digest(1),
                    digest(2),
                    digest(3),
                    digest(4),
                    [digest(5), digest(6)].concat(),
                    digest(7),
                    key.0
                ],
            )
            .unwrap();

        let store = SqliteStore::open(&path).unwrap();
        let records = store.provenance("old").unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].task, "a");
        assert_eq!(records[0].attempt, 2);
        assert_eq!(records[0].parents, [Digest(digest(5)), Digest(digest(6))]);
        assert_eq!(records[0].digest, Digest(digest(7)));
        let tasks = store.tasks("old").unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].record.as_ref(), Some(&records[0]));
        assert_eq!(tasks[1].record, None);
        let hit = store.cached(&key).unwrap().expect("the old cache key");
        assert_eq!(
            (hit.run_id.as_str(), hit.record),
            ("old", records[0].clone())
        );
    }
}
