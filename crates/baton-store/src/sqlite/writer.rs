//! The writer thread: every write waiting when it wakes goes into one
//! transaction (group commit). Each write checks what could refuse it (a
//! stale fence, a sequence conflict, an unknown or taken run id, a live
//! owner) before it changes anything, so a refused write leaves no trace
//! and does not fail the others in the batch without the price of a
//! savepoint per write.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::codec::{OWNER_COLUMNS, owner_row};
use super::connection::database_error;
use crate::codec::{named, ownership};
use crate::owner::{Fence, Owner};
use crate::projection::Projection;
use crate::write::{Write, WriteKind};
use crate::{ArtifactRow, AttemptRow, Error, Result, TaskRow};

/// WAL frames (pages) after which the writer checkpoints, SQLite's default.
const CHECKPOINT_FRAMES: i32 = 1000;

/// What the writer needs besides its connection.
pub(crate) struct Writer {
    pub(crate) path: PathBuf,
    pub(crate) busy_timeout: Duration,
    /// Told after every commit, so the change feed looks at once.
    pub(crate) committed: Box<dyn Fn() + Send>,
}

impl Writer {
    /// Takes writes until every sender is gone.
    pub(crate) fn run(
        self,
        mut connection: Connection,
        mut receiver: tokio::sync::mpsc::UnboundedReceiver<Write>,
    ) {
        // SQLite would checkpoint the WAL inside the commit that crosses its
        // threshold, with every caller of that batch waiting; the writer does
        // it itself once they have their answers, while the engine works.
        let frames = std::sync::Arc::new(AtomicI32::new(0));
        let seen = frames.clone();
        // Should the hook not take, SQLite's own checkpoint stays in place.
        let _ = connection.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages| {
            seen.store(pages, Ordering::Relaxed);
            Ok(())
        }));
        while let Some(first) = receiver.blocking_recv() {
            let mut batch = vec![first];
            batch.extend(std::iter::from_fn(|| receiver.try_recv().ok()));
            let mut answers: Vec<Result<u64>> = Vec::with_capacity(batch.len());
            let committed = (|| -> rusqlite::Result<()> {
                // Taking the write lock up front lets SQLite wait out another
                // process's write; a read turned write mid-way fails at once.
                let transaction =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                for write in &batch {
                    answers.push(apply(&transaction, &write.subject, &write.kind)?);
                }
                transaction.commit()
            })();
            match committed {
                Ok(()) => {
                    for (write, answer) in batch.into_iter().zip(answers) {
                        let _ = write.reply.send(answer);
                    }
                    (self.committed)();
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
                        let _ = write.reply.send(Err(database_error(
                            &self.path,
                            self.busy_timeout,
                            &error,
                        )));
                    }
                }
            }
        }
    }
}

/// One write inside the batch's transaction: its answer, or the database
/// error that fails the whole batch.
fn apply(
    connection: &Connection,
    subject: &str,
    kind: &WriteKind,
) -> rusqlite::Result<Result<u64>> {
    Ok(match kind {
        WriteKind::Heartbeat { owner, expires_at } => {
            heartbeat(connection, owner, *expires_at)?;
            Ok(0)
        }
        WriteKind::Create {
            workflow,
            record,
            owner,
            now,
        } => create(connection, subject, workflow, record, owner, *now)?,
        WriteKind::Claim { owner, now, steal } => claim(connection, subject, owner, *now, *steal)?,
        WriteKind::Release(fence) => {
            connection
                .prepare_cached("UPDATE runs SET owner = NULL WHERE run_id = ?1 AND token = ?2")?
                .execute(params![subject, fence.0 as i64])?;
            Ok(0)
        }
        WriteKind::Append {
            first_seq,
            fence,
            events,
            count,
            projection,
            tasks,
            attempts,
            artifacts,
        } => append(
            connection,
            subject,
            (*first_seq, *fence),
            (events, *count),
            projection,
            Rows {
                tasks,
                attempts,
                artifacts,
            },
        )?
        .map(|()| 0),
        WriteKind::Checkpoint {
            fence,
            events,
            digest,
            data,
        } => checkpoint(connection, subject, *fence, *events, digest, data)?.map(|()| 0),
        WriteKind::Control(control) => control_request(connection, subject, control)?,
        WriteKind::Delete => delete(connection, subject)?.map(|()| 0),
        WriteKind::PutWorkflow {
            version,
            digest,
            created_at,
            spec,
        } => {
            let inserted = connection
                .prepare_cached(
                    "INSERT INTO workflows (name, version, digest, created_at, spec)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![subject, version, digest, *created_at as i64, spec])?;
            if inserted == 0 {
                Err(Error::VersionExists {
                    name: subject.to_owned(),
                    version: *version,
                })
            } else {
                Ok(0)
            }
        }
        WriteKind::DeleteWorkflow => {
            let deleted = connection
                .prepare_cached("DELETE FROM workflows WHERE name = ?1")?
                .execute([subject])?;
            if deleted == 0 {
                Err(Error::UnknownWorkflow(subject.to_owned()))
            } else {
                Ok(0)
            }
        }
        WriteKind::PutKey(key) => {
            let inserted = connection
                .prepare_cached(
                    "INSERT INTO api_keys (id, name, scope, hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    key.id,
                    key.name,
                    key.scope.name(),
                    key.hash.0,
                    key.created_at.0 as i64
                ])?;
            if inserted == 0 {
                Err(Error::KeyExists(key.id.clone()))
            } else {
                Ok(0)
            }
        }
        WriteKind::PutTick {
            at,
            outcome,
            run_id,
            recorded_at,
        } => {
            connection
                .prepare_cached(
                    "INSERT INTO schedule_ticks (workflow, tick_at, outcome, run_id, recorded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (workflow, tick_at) DO UPDATE SET
                       outcome = excluded.outcome, run_id = excluded.run_id,
                       recorded_at = excluded.recorded_at",
                )?
                .execute(params![
                    subject,
                    *at as i64,
                    outcome,
                    run_id,
                    *recorded_at as i64
                ])?;
            Ok(0)
        }
        WriteKind::RevokeKey { at } => {
            let revoked = connection
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                )?
                .execute(params![subject, *at as i64])?;
            if revoked == 0 {
                Err(Error::UnknownKey(subject.to_owned()))
            } else {
                Ok(0)
            }
        }
    })
}

fn heartbeat(connection: &Connection, owner: &Owner, expires_at: u64) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO owners (id, pid, host, boot, process_start, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
        )?
        .execute(params![
            owner.id,
            owner.pid,
            owner.host,
            owner.boot,
            owner.process_start as i64,
            expires_at as i64
        ])?;
    Ok(())
}

fn owner_known(connection: &Connection, owner: &str) -> rusqlite::Result<bool> {
    Ok(connection
        .prepare_cached("SELECT 1 FROM owners WHERE id = ?1")?
        .query_row([owner], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Records a new run owned by `owner`, unless its id is taken.
fn create(
    connection: &Connection,
    run: &str,
    workflow: &str,
    record: &str,
    owner: &str,
    now: u64,
) -> rusqlite::Result<Result<u64>> {
    if !owner_known(connection, owner)? {
        return Ok(Err(Error::UnknownOwner(owner.to_owned())));
    }
    let inserted = connection
        .prepare_cached(
            "INSERT INTO runs (run_id, next_seq, workflow, owner, token, claimed_at)
             VALUES (?1, 0, ?2, ?3, 1, ?4)
             ON CONFLICT (run_id) DO NOTHING",
        )?
        .execute(params![run, workflow, owner, now as i64])?;
    if inserted == 0 {
        return Ok(Err(Error::RunExists(run.to_owned())));
    }
    connection
        .prepare_cached("INSERT INTO run_records (run, record) VALUES (?1, ?2)")?
        .execute(params![connection.last_insert_rowid(), record])?;
    Ok(Ok(1))
}

/// Takes `run` for `owner` if nobody live holds it (see
/// [`crate::RunLog::claim`]).
fn claim(
    connection: &Connection,
    run: &str,
    owner: &str,
    now: u64,
    steal: Option<Fence>,
) -> rusqlite::Result<Result<u64>> {
    if !owner_known(connection, owner)? {
        return Ok(Err(Error::UnknownOwner(owner.to_owned())));
    }
    let current = connection
        .prepare_cached(&format!(
            "SELECT {OWNER_COLUMNS} FROM runs LEFT JOIN owners ON owners.id = runs.owner
             WHERE runs.run_id = ?1"
        ))?
        .query_row([run], |row| owner_row(row, 0))
        .optional()?;
    let Some(current) = current else {
        return Ok(Err(Error::UnknownRun(run.to_owned())));
    };
    let token = current.1;
    if let Some(held) = ownership(current)
        && held.owner.id != owner
        && held.expires_at.0 > now
        && steal != Some(held.fence)
    {
        return Ok(Err(Error::Owned {
            run: run.to_owned(),
            ownership: Box::new(held),
        }));
    }
    connection
        .prepare_cached(
            "UPDATE runs SET owner = ?2, token = ?3, claimed_at = ?4 WHERE run_id = ?1",
        )?
        .execute(params![run, owner, token + 1, now as i64])?;
    Ok(Ok(token as u64 + 1))
}

/// The row id of a run, if `fence` is its current one: `Fenced` if it is
/// not, `UnknownRun` if there is no such run.
fn fenced(
    connection: &Connection,
    run: &str,
    fence: Fence,
) -> rusqlite::Result<Result<(i64, u64)>> {
    let found: Option<(i64, i64, Option<String>, i64)> = connection
        .prepare_cached("SELECT id, next_seq, owner, token FROM runs WHERE run_id = ?1")?
        .query_row([run], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    Ok(match found {
        None => Err(Error::UnknownRun(run.to_owned())),
        Some((_, _, None, _)) => Err(Error::Fenced {
            run: run.to_owned(),
        }),
        Some((_, _, _, token)) if token as u64 != fence.0 => Err(Error::Fenced {
            run: run.to_owned(),
        }),
        Some((id, next, _, _)) => Ok((id, next as u64)),
    })
}

fn checkpoint(
    connection: &Connection,
    run_id: &str,
    fence: Fence,
    events: u64,
    digest: &[u8; 32],
    data: &[u8],
) -> rusqlite::Result<Result<()>> {
    let run = match fenced(connection, run_id, fence)? {
        Ok((run, _)) => run,
        Err(error) => return Ok(Err(error)),
    };
    connection
        .prepare_cached(
            "INSERT INTO checkpoints (run, events, digest, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run, events) DO UPDATE SET digest = excluded.digest, data = excluded.data",
        )?
        .execute(params![run, events as i64, digest, data])?;
    Ok(Ok(()))
}

fn control_request(
    connection: &Connection,
    run_id: &str,
    control: &str,
) -> rusqlite::Result<Result<u64>> {
    let run: Option<i64> = connection
        .prepare_cached("SELECT id FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |row| row.get(0))
        .optional()?;
    let Some(run) = run else {
        return Ok(Err(Error::UnknownRun(run_id.to_owned())));
    };
    let seq: i64 = connection
        .prepare_cached("SELECT coalesce(max(seq) + 1, 0) FROM controls WHERE run = ?1")?
        .query_row([run], |row| row.get(0))?;
    connection
        .prepare_cached("INSERT INTO controls (run, seq, control) VALUES (?1, ?2, ?3)")?
        .execute(params![run, seq, control])?;
    Ok(Ok(seq as u64))
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
fn delete(connection: &Connection, run_id: &str) -> rusqlite::Result<Result<()>> {
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

/// The read-model rows of one append.
struct Rows<'a> {
    tasks: &'a [TaskRow],
    attempts: &'a [AttemptRow],
    artifacts: &'a [ArtifactRow],
}

/// Appends one caller's events, unless its fence is stale or the log is not
/// where it expects, and updates the read models in the same transaction.
fn append(
    connection: &Connection,
    run_id: &str,
    (first_seq, fence): (u64, Fence),
    (events, count): (&str, u64),
    projection: &Projection,
    rows: Rows<'_>,
) -> rusqlite::Result<Result<()>> {
    let (run, actual) = match fenced(connection, run_id, fence)? {
        Ok(found) => found,
        Err(error) => return Ok(Err(error)),
    };
    if actual != first_seq {
        return Ok(Err(Error::Conflict {
            run: run_id.to_owned(),
            expected: first_seq,
            actual,
        }));
    }
    if count > 0 {
        connection
            .prepare_cached("UPDATE runs SET next_seq = ?2 WHERE id = ?1")?
            .execute(params![run, (first_seq + count) as i64])?;
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
