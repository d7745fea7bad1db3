//! Queries, each over one reader connection. Every row read back is
//! decoded by `codec`, so damage is reported where it is found.

use baton_core::run::{Control, Digest, Event, Provenance, Sealed};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{OWNER_COLUMNS, PROVENANCE_COLUMNS, owner_row, provenance_row, workflow_row};
use super::readers::Reading;
use crate::codec::{
    corrupt, digest_of, events as decode_events, log, millis, named, output, ownership,
    provenance_of, stored_workflow,
};
use crate::{
    ApiKey, ArtifactRow, AttemptRow, CacheHit, CheckpointInfo, Error, FeedBatch, Result, RunFilter,
    RunRecord, RunSummary, StoredWorkflow, TaskRow,
};

/// The row id of a run and how many events it has recorded.
fn known(connection: &Connection, reading: &Reading, run: &str) -> Result<Option<(i64, u64)>> {
    connection
        .prepare_cached("SELECT id, next_seq FROM runs WHERE run_id = ?1")
        .and_then(|mut select| {
            select
                .query_row([run], |row| Ok((row.get(0)?, row.get::<_, i64>(1)?)))
                .optional()
        })
        .map(|found| found.map(|(id, next)| (id, u64::try_from(next).unwrap_or_default())))
        .map_err(|error| reading.error(&error))
}

fn require(connection: &Connection, reading: &Reading, run: &str) -> Result<i64> {
    known(connection, reading, run)?
        .map(|(id, _)| id)
        .ok_or_else(|| Error::UnknownRun(run.to_owned()))
}

pub(crate) fn record(connection: &Connection, reading: &Reading, run: &str) -> Result<RunRecord> {
    let id = require(connection, reading, run)?;
    let text: Option<String> = connection
        .prepare_cached("SELECT record FROM run_records WHERE run = ?1")
        .and_then(|mut select| select.query_row([id], |row| row.get(0)).optional())
        .map_err(|error| reading.error(&error))?;
    let text = text.ok_or_else(|| corrupt(run, 0, "its record is missing".to_owned()))?;
    serde_json::from_str(&text)
        .map_err(|error| corrupt(run, 0, format!("its record does not read back: {error}")))
}

/// The log of `run` from `from` on, checked to be dense and complete: the
/// batches must follow one another and end at the run's recorded count.
pub(crate) fn events_from(
    connection: &Connection,
    reading: &Reading,
    run: &str,
    from: u64,
) -> Result<Vec<Event>> {
    let (id, recorded) =
        known(connection, reading, run)?.ok_or_else(|| Error::UnknownRun(run.to_owned()))?;
    // The batch holding `from`, and every batch after it.
    let rows = reading.query(
        connection,
        "SELECT first_seq, count, events FROM event_batches WHERE run = ?1 AND first_seq >= coalesce(
            (SELECT max(first_seq) FROM event_batches WHERE run = ?1 AND first_seq <= ?2), 0)
         ORDER BY first_seq",
        params![id, from as i64],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        },
    )?;
    let batches = rows
        .into_iter()
        .map(|(first, count, text)| (first as u64, u64::try_from(count).unwrap_or_default(), text));
    log(run, from, recorded, batches)
}

pub(crate) fn feed(
    connection: &Connection,
    reading: &Reading,
    after: u64,
    limit: usize,
) -> Result<Vec<FeedBatch>> {
    let rows = reading.query(
        connection,
        "SELECT feed.position, runs.run_id, feed.first_seq, event_batches.count,
            event_batches.events
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
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
            ))
        },
    )?;
    rows.into_iter()
        .map(|(position, run_id, first_seq, count, text)| {
            let first_seq = first_seq as u64;
            let events = decode_events(&run_id, first_seq, count as u64, &text)?;
            Ok(FeedBatch {
                position: position as u64,
                run_id,
                first_seq,
                events,
            })
        })
        .collect()
}

/// Run rows selected by `rest` (a WHERE clause and ordering).
fn summaries<P: rusqlite::Params>(
    connection: &Connection,
    reading: &Reading,
    rest: &str,
    params: P,
) -> Result<Vec<RunSummary>> {
    let rows = reading.query(
        connection,
        &format!(
            "SELECT run_id, coalesce(workflow, ''), status, started_at, finished_at, next_seq,
                {OWNER_COLUMNS}
             FROM runs LEFT JOIN owners ON owners.id = runs.owner {rest}"
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
                owner_row(row, 6)?,
            ))
        },
    )?;
    rows.into_iter()
        .map(
            |(run_id, workflow, status, started_at, finished_at, events, owner)| {
                Ok(RunSummary {
                    status: named(&run_id, &status)?,
                    run_id,
                    workflow,
                    started_at: started_at.map(millis),
                    finished_at: finished_at.map(millis),
                    events: u64::try_from(events).unwrap_or_default(),
                    driver: ownership(owner),
                    driven: None,
                })
            },
        )
        .collect()
}

pub(crate) fn summary(connection: &Connection, reading: &Reading, run: &str) -> Result<RunSummary> {
    summaries(connection, reading, "WHERE run_id = ?1", params![run])?
        .pop()
        .ok_or_else(|| Error::UnknownRun(run.to_owned()))
}

pub(crate) fn runs(
    connection: &Connection,
    reading: &Reading,
    filter: &RunFilter,
) -> Result<Vec<RunSummary>> {
    summaries(
        connection,
        reading,
        "WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR workflow = ?2)
            AND (?4 IS NULL OR finished_at < ?4)
            AND (?5 IS NULL OR started_at >= ?5) AND (?6 IS NULL OR started_at < ?6)
            AND (?7 IS NULL OR (coalesce(started_at, 0), run_id) < (?7, ?9))
            AND (?8 IS NULL OR (status IN ('pending', 'running', 'paused')
                AND (runs.owner IS NULL OR owners.expires_at IS NULL OR owners.expires_at <= ?8)))
            AND (?10 = 0 OR status IN ('pending', 'running', 'paused'))
         ORDER BY coalesce(started_at, 0) DESC, run_id DESC LIMIT ?3",
        params![
            filter.status.map(|status| status.name()),
            filter.workflow,
            filter.limit.min(i64::MAX as usize) as i64,
            filter.finished_before.map(|at| at.0 as i64),
            filter.started_after.map(|at| at.0 as i64),
            filter.started_before.map(|at| at.0 as i64),
            filter
                .after
                .as_ref()
                .map(|after| i64::try_from(after.started_at.0).unwrap_or(i64::MAX)),
            filter.orphaned_at.map(|at| at.0 as i64),
            filter.after.as_ref().map(|after| after.run_id.as_str()),
            filter.unfinished,
        ],
    )
}

/// Task rows of `run` selected by `rest` (more conditions on the task).
fn task_rows<P: rusqlite::Params>(
    connection: &Connection,
    reading: &Reading,
    run: &str,
    rest: &str,
    params: P,
) -> Result<Vec<TaskRow>> {
    let rows = reading.query(
        connection,
        &format!(
            "SELECT tasks.task, name, status, attempts, started_at, finished_at,
                cache_keys.key, provenance.digest IS NOT NULL, {PROVENANCE_COLUMNS}
             FROM tasks LEFT JOIN provenance USING (run, task)
             LEFT JOIN cache_keys USING (run, task)
             WHERE run = ?1 {rest} ORDER BY tasks.task"
        ),
        params,
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

pub(crate) fn tasks(connection: &Connection, reading: &Reading, run: &str) -> Result<Vec<TaskRow>> {
    let id = require(connection, reading, run)?;
    task_rows(connection, reading, run, "", [id])
}

pub(crate) fn task(
    connection: &Connection,
    reading: &Reading,
    run: &str,
    task: u32,
) -> Result<Option<TaskRow>> {
    let id = require(connection, reading, run)?;
    Ok(task_rows(
        connection,
        reading,
        run,
        "AND tasks.task = ?2",
        params![id, task],
    )?
    .pop())
}

pub(crate) fn attempts(
    connection: &Connection,
    reading: &Reading,
    run: &str,
) -> Result<Vec<AttemptRow>> {
    let id = require(connection, reading, run)?;
    let rows = reading.query(
        connection,
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

pub(crate) fn outputs(
    connection: &Connection,
    reading: &Reading,
    run: &str,
) -> Result<Vec<(u32, serde_json::Value)>> {
    let id = require(connection, reading, run)?;
    let rows = reading.query(
        connection,
        "SELECT task, output FROM outputs WHERE run = ?1 ORDER BY task",
        [id],
        |row| Ok((row.get::<_, u32>(0)?, row.get::<_, String>(1)?)),
    )?;
    rows.into_iter()
        .map(|(task, text)| Ok((task, output(run, task, &text)?)))
        .collect()
}

pub(crate) fn provenance(
    connection: &Connection,
    reading: &Reading,
    run: &str,
) -> Result<Vec<Provenance>> {
    let id = require(connection, reading, run)?;
    let rows = reading.query(
        connection,
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

pub(crate) fn cached(
    connection: &Connection,
    reading: &Reading,
    key: &Digest,
) -> Result<Option<CacheHit>> {
    let rows = reading.query(
        connection,
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
    let Some((run_id, text, finished_at, (run, task), record)) = rows.into_iter().next() else {
        return Ok(None);
    };
    let record = provenance_of(&run_id, record)?;
    let artifacts = artifact_rows(
        connection,
        reading,
        &run_id,
        "WHERE run = ?1 AND task = ?2 AND attempt = ?3 AND role = 'produced'",
        params![run, task, record.attempt],
    )?
    .into_iter()
    .map(|row| row.artifact)
    .collect();
    Ok(Some(CacheHit {
        output: text.map(|text| output(&run_id, task, &text)).transpose()?,
        finished_at: millis(finished_at.unwrap_or_default()),
        artifacts,
        record,
        run_id,
    }))
}

/// Artifact rows of `run` that pass `filter`, in key order.
fn artifact_rows<P: rusqlite::Params>(
    connection: &Connection,
    reading: &Reading,
    run: &str,
    filter: &str,
    params: P,
) -> Result<Vec<ArtifactRow>> {
    let rows = reading.query(
        connection,
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
                artifact: baton_core::run::Artifact {
                    path,
                    digest: digest_of(run, &digest)?,
                    size: u64::try_from(size).unwrap_or_default(),
                },
            })
        })
        .collect()
}

pub(crate) fn artifacts(
    connection: &Connection,
    reading: &Reading,
    run: &str,
) -> Result<Vec<ArtifactRow>> {
    let id = require(connection, reading, run)?;
    artifact_rows(connection, reading, run, "WHERE run = ?1", [id])
}

pub(crate) fn artifact_digests(connection: &Connection, reading: &Reading) -> Result<Vec<Digest>> {
    let blobs = reading.query(
        connection,
        "SELECT DISTINCT digest FROM artifacts ORDER BY digest",
        [],
        |row| row.get::<_, Vec<u8>>(0),
    )?;
    blobs
        .iter()
        .map(|blob| digest_of("(artifacts)", blob))
        .collect()
}

pub(crate) fn checkpoints(
    connection: &Connection,
    reading: &Reading,
    run: &str,
) -> Result<Vec<CheckpointInfo>> {
    let id = require(connection, reading, run)?;
    let rows = reading.query(
        connection,
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

pub(crate) fn checkpoint(
    connection: &Connection,
    reading: &Reading,
    run: &str,
    events: u64,
) -> Result<Sealed> {
    let id = require(connection, reading, run)?;
    let rows = reading.query(
        connection,
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

pub(crate) fn controls(
    connection: &Connection,
    reading: &Reading,
    run: &str,
    from: u64,
) -> Result<Vec<Control>> {
    let id = require(connection, reading, run)?;
    let rows = reading.query(
        connection,
        "SELECT seq, control FROM controls WHERE run = ?1 AND seq >= ?2 ORDER BY seq",
        params![id, from as i64],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
    )?;
    let mut expected = from;
    rows.into_iter()
        .map(|(seq, control)| {
            let seq = seq as u64;
            if seq != expected {
                return Err(corrupt(
                    run,
                    0,
                    format!("control request {expected} is missing"),
                ));
            }
            expected += 1;
            serde_json::from_str(&control)
                .map_err(|error| corrupt(run, 0, format!("control request {seq}: {error}")))
        })
        .collect()
}

const WORKFLOW_COLUMNS: &str = "name, version, digest, created_at, spec";

pub(crate) fn workflow(
    connection: &Connection,
    reading: &Reading,
    name: &str,
    version: Option<u32>,
) -> Result<StoredWorkflow> {
    let found = match version {
        Some(version) => reading.query(
            connection,
            &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE name = ?1 AND version = ?2"),
            params![name, version],
            workflow_row,
        )?,
        None => reading.query(
            connection,
            &format!(
                "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE name = ?1
                 ORDER BY version DESC LIMIT 1"
            ),
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

pub(crate) fn workflows(connection: &Connection, reading: &Reading) -> Result<Vec<StoredWorkflow>> {
    reading
        .query(
            connection,
            "SELECT name, max(version), digest, created_at, spec FROM workflows
             GROUP BY name ORDER BY name",
            [],
            workflow_row,
        )?
        .into_iter()
        .map(stored_workflow)
        .collect()
}

pub(crate) fn workflow_versions(
    connection: &Connection,
    reading: &Reading,
    name: &str,
) -> Result<Vec<StoredWorkflow>> {
    let versions: Vec<StoredWorkflow> = reading
        .query(
            connection,
            &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE name = ?1 ORDER BY version"),
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

/// The newest `limit` ticks of `name`'s schedule, newest first.
pub(crate) fn ticks(
    connection: &Connection,
    reading: &Reading,
    name: &str,
    limit: usize,
) -> Result<Vec<crate::Tick>> {
    let rows = reading.query(
        connection,
        "SELECT tick_at, outcome, run_id, recorded_at FROM schedule_ticks
         WHERE workflow = ?1 ORDER BY tick_at DESC LIMIT ?2",
        rusqlite::params![name, i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, i64>(3)?,
            ))
        },
    )?;
    rows.into_iter()
        .map(|(at, outcome, run_id, recorded_at)| {
            Ok(crate::Tick {
                workflow: name.to_owned(),
                at: millis(at),
                outcome: crate::TickOutcome::from_parts(&outcome, run_id).ok_or_else(|| {
                    corrupt(
                        &format!("(schedule of {name})"),
                        0,
                        format!("a tick recorded as `{outcome}`"),
                    )
                })?,
                recorded_at: millis(recorded_at),
            })
        })
        .collect()
}

/// API keys selected by `rest`.
pub(crate) fn keys<P: rusqlite::Params>(
    connection: &Connection,
    reading: &Reading,
    rest: &str,
    params: P,
) -> Result<Vec<ApiKey>> {
    let rows = reading.query(
        connection,
        &format!(
            "SELECT id, name, scope, hash, created_at, revoked_at FROM api_keys {rest} ORDER BY id"
        ),
        params,
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
                    .map_err(|message| corrupt("(api keys)", 0, message))?,
                hash: digest_of("(api keys)", &hash)?,
                id,
                name,
                created_at: millis(created_at),
                revoked_at: revoked_at.map(millis),
            })
        })
        .collect()
}
