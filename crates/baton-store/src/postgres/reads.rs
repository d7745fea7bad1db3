//! Queries, each on a connection of the pool. Every row read back is
//! decoded by `crate::codec`, so damage is reported where it is found.

use baton_core::run::{Artifact, Control, Digest, Event, Provenance, Sealed};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use super::connection::Database;
use crate::codec::{
    OwnerRow, ProvenanceRow, WorkflowRow, corrupt, digest_of, events as decode_events, log, millis,
    named, ownership, provenance_of, stored_workflow,
};
use crate::{
    ApiKey, ArtifactRow, AttemptRow, CacheHit, CheckpointInfo, Error, FeedBatch, Result, RunFilter,
    RunRecord, RunSummary, StoredWorkflow, TaskRow,
};

/// Reading a column where a value that does not read back is
/// [`Error::Corrupt`] rather than a panic: the database is baton's, but
/// a damaged or hand-altered one must be reported like a damaged file.
pub(crate) trait Column {
    fn at<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T>;
}

impl Column for Row {
    fn at<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T> {
        self.try_get(index).map_err(|error| {
            corrupt(
                "(a row)",
                0,
                format!("column {index} does not read back: {error}"),
            )
        })
    }
}

/// A connection of the pool, lent to the queries of one read.
pub(crate) struct Reader<'a> {
    pub(crate) database: &'a Database,
    pub(crate) client: deadpool_postgres::Object,
}

pub(crate) type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<'a> Reader<'a> {
    /// A connection of `database`'s pool, for the queries of one read.
    pub(crate) async fn of(database: &'a Database) -> Result<Reader<'a>> {
        Ok(Reader {
            database,
            client: database.client().await?,
        })
    }

    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        self.client
            .prepare_cached(sql)
            .await
            .map_err(|error| self.database.error(error))
    }

    pub(crate) async fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let statement = self.prepare(sql).await?;
        self.client
            .query(&statement, params)
            .await
            .map_err(|error| self.database.error(error))
    }

    /// How many rows a statement changed.
    pub(crate) async fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64> {
        let statement = self.prepare(sql).await?;
        self.client
            .execute(&statement, params)
            .await
            .map_err(|error| self.database.error(error))
    }

    /// The row id of a run and how many events it has recorded.
    async fn known(&self, run: &str) -> Result<Option<(i64, u64)>> {
        let rows = self
            .query("SELECT id, next_seq FROM runs WHERE run_id = $1", &[&run])
            .await?;
        rows.first()
            .map(|row| {
                Ok((
                    row.at(0)?,
                    u64::try_from(row.at::<i64>(1)?).unwrap_or_default(),
                ))
            })
            .transpose()
    }

    async fn require(&self, run: &str) -> Result<i64> {
        self.known(run)
            .await?
            .map(|(id, _)| id)
            .ok_or_else(|| Error::UnknownRun(run.to_owned()))
    }

    pub(crate) async fn record(&self, run: &str) -> Result<RunRecord> {
        let id = self.require(run).await?;
        let rows = self
            .query(
                "SELECT record::text FROM run_records WHERE run = $1",
                &[&id],
            )
            .await?;
        let text: String = rows
            .first()
            .ok_or_else(|| corrupt(run, 0, "its record is missing".to_owned()))?
            .at(0)?;
        serde_json::from_str(&text)
            .map_err(|error| corrupt(run, 0, format!("its record does not read back: {error}")))
    }

    /// The log of `run` from `from` on, checked to be dense and complete.
    /// The count and the batches are read by one statement, so in one
    /// snapshot: an append committed meanwhile is wholly in or wholly out.
    pub(crate) async fn events_from(&self, run: &str, from: u64) -> Result<Vec<Event>> {
        let rows = self
            .query(
                "SELECT runs.next_seq, batch.first_seq, batch.count, batch.events
                 FROM runs LEFT JOIN LATERAL (
                    SELECT first_seq, count, events FROM event_batches
                    WHERE run = runs.id AND first_seq >= coalesce(
                        (SELECT max(first_seq) FROM event_batches
                         WHERE run = runs.id AND first_seq <= $2), 0)
                 ) AS batch ON true
                 WHERE runs.run_id = $1 ORDER BY batch.first_seq",
                &[&run, &(from as i64)],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Err(Error::UnknownRun(run.to_owned()));
        };
        let recorded = u64::try_from(first.at::<i64>(0)?).unwrap_or_default();
        // A run without batches has one row, its batch columns NULL.
        let mut batches = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(first) = row.at::<Option<i64>>(1)? {
                let count = u64::try_from(row.at::<i64>(2)?).unwrap_or_default();
                batches.push((first as u64, count, row.at::<&str>(3)?));
            }
        }
        log(run, from, recorded, batches)
    }

    pub(crate) async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedBatch>> {
        let rows = self
            .query(
                "SELECT feed.position, runs.run_id, feed.first_seq, event_batches.count,
                    event_batches.events
                 FROM feed JOIN runs ON runs.id = feed.run
                 JOIN event_batches ON event_batches.run = feed.run
                    AND event_batches.first_seq = feed.first_seq
                 WHERE feed.position > $1 ORDER BY feed.position LIMIT $2",
                &[&(after as i64), &(limit.min(i64::MAX as usize) as i64)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let run_id: String = row.at(1)?;
                let first_seq = row.at::<i64>(2)? as u64;
                let events =
                    decode_events(&run_id, first_seq, row.at::<i64>(3)? as u64, row.at(4)?)?;
                Ok(FeedBatch {
                    position: row.at::<i64>(0)? as u64,
                    run_id,
                    first_seq,
                    events,
                })
            })
            .collect()
    }

    /// The batches appended and the control requests left after the given
    /// positions, `(position, run, events)` and `(position, run)`, read in
    /// one snapshot so a request left after an append never comes first.
    pub(crate) async fn changes_after(
        &self,
        feed: u64,
        controls: u64,
        limit: i64,
    ) -> Result<(Vec<(u64, String, u64)>, Vec<(u64, String)>)> {
        let rows = self
            .query(
                "(SELECT true, feed.position, runs.run_id, feed.first_seq + event_batches.count
                  FROM feed JOIN runs ON runs.id = feed.run
                  JOIN event_batches ON event_batches.run = feed.run
                     AND event_batches.first_seq = feed.first_seq
                  WHERE feed.position > $1 ORDER BY feed.position LIMIT $3)
                 UNION ALL
                 (SELECT false, controls.position, runs.run_id, 0::bigint FROM controls
                  JOIN runs ON runs.id = controls.run
                  WHERE controls.position > $2 ORDER BY controls.position LIMIT $3)",
                &[&(feed as i64), &(controls as i64), &limit],
            )
            .await?;
        let mut appended = Vec::new();
        let mut requested = Vec::new();
        for row in &rows {
            let position = row.at::<i64>(1)? as u64;
            match row.at::<bool>(0)? {
                true => appended.push((position, row.at(2)?, row.at::<i64>(3)? as u64)),
                false => requested.push((position, row.at(2)?)),
            }
        }
        appended.sort_unstable_by_key(|(position, ..)| *position);
        requested.sort_unstable_by_key(|(position, _)| *position);
        Ok((appended, requested))
    }

    /// The highest feed and control positions so far.
    pub(crate) async fn positions(&self) -> Result<(u64, u64)> {
        let rows = self
            .query(
                "SELECT (SELECT coalesce(max(position), 0) FROM feed),
                        (SELECT coalesce(max(position), 0) FROM controls)",
                &[],
            )
            .await?;
        match rows.first() {
            Some(row) => Ok((row.at::<i64>(0)? as u64, row.at::<i64>(1)? as u64)),
            None => Ok((0, 0)),
        }
    }

    /// Run rows selected by `rest` (a WHERE clause and ordering).
    async fn summaries(&self, rest: &str, params: &Params<'_>) -> Result<Vec<RunSummary>> {
        let rows = self
            .query(
                &format!(
                    "SELECT run_id, workflow, status, started_at, finished_at, next_seq,
                        {OWNER_COLUMNS}
                     FROM runs LEFT JOIN owners ON owners.id = runs.owner {rest}"
                ),
                params,
            )
            .await?;
        rows.iter()
            .map(|row| {
                let run_id: String = row.at(0)?;
                Ok(RunSummary {
                    status: named(&run_id, row.at(2)?)?,
                    workflow: row.at(1)?,
                    started_at: row.at::<Option<i64>>(3)?.map(millis),
                    finished_at: row.at::<Option<i64>>(4)?.map(millis),
                    events: u64::try_from(row.at::<i64>(5)?).unwrap_or_default(),
                    driver: ownership(owner_row(row, 6)?),
                    driven: None,
                    run_id,
                })
            })
            .collect()
    }

    pub(crate) async fn summary(&self, run: &str) -> Result<RunSummary> {
        self.summaries("WHERE run_id = $1", &[&run])
            .await?
            .pop()
            .ok_or_else(|| Error::UnknownRun(run.to_owned()))
    }

    pub(crate) async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let at = |at: Option<baton_core::run::Millis>| at.map(|at| at.0 as i64);
        self.summaries(
            "WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR workflow = $2)
                AND ($4::bigint IS NULL OR finished_at < $4)
                AND ($5::bigint IS NULL OR started_at >= $5)
                AND ($6::bigint IS NULL OR started_at < $6)
                AND ($7::bigint IS NULL OR (coalesce(started_at, 0), run_id) < ($7, $9::text))
                AND ($8::bigint IS NULL OR (status IN ('pending', 'running', 'paused')
                    AND (runs.owner IS NULL OR owners.expires_at IS NULL
                        OR owners.expires_at <= $8)))
                AND (NOT $10 OR status IN ('pending', 'running', 'paused'))
             ORDER BY coalesce(started_at, 0) DESC, run_id DESC LIMIT $3",
            &[
                &filter.status.map(|status| status.name()),
                &filter.workflow,
                &(filter.limit.min(i64::MAX as usize) as i64),
                &at(filter.finished_before),
                &at(filter.started_after),
                &at(filter.started_before),
                &filter
                    .after
                    .as_ref()
                    .map(|after| i64::try_from(after.started_at.0).unwrap_or(i64::MAX)),
                &at(filter.orphaned_at),
                &filter.after.as_ref().map(|after| after.run_id.as_str()),
                &filter.unfinished,
            ],
        )
        .await
    }

    /// Task rows of `run` (row id `id`) selected by `rest`.
    async fn task_rows(&self, run: &str, rest: &str, params: &Params<'_>) -> Result<Vec<TaskRow>> {
        let rows = self
            .query(
                &format!(
                    "SELECT tasks.task, tasks.name, tasks.status, tasks.attempts,
                        tasks.started_at, tasks.finished_at, cache_keys.key,
                        provenance.digest IS NOT NULL, {PROVENANCE_COLUMNS}
                     FROM tasks LEFT JOIN provenance USING (run, task)
                     LEFT JOIN cache_keys USING (run, task)
                     WHERE tasks.run = $1 {rest} ORDER BY tasks.task"
                ),
                params,
            )
            .await?;
        rows.iter()
            .map(|row| {
                let recorded: bool = row.at(7)?;
                Ok(TaskRow {
                    task: row.at::<i32>(0)? as u32,
                    id: row.at(1)?,
                    status: named(run, row.at(2)?)?,
                    attempts: row.at::<i32>(3)? as u32,
                    started_at: row.at::<Option<i64>>(4)?.map(millis),
                    finished_at: row.at::<Option<i64>>(5)?.map(millis),
                    cache_key: row
                        .at::<Option<&[u8]>>(6)?
                        .map(|key| digest_of(run, key))
                        .transpose()?,
                    record: match recorded {
                        true => Some(provenance_of(run, provenance_row(row, 8)?)?),
                        false => None,
                    },
                })
            })
            .collect()
    }

    pub(crate) async fn tasks(&self, run: &str) -> Result<Vec<TaskRow>> {
        let id = self.require(run).await?;
        self.task_rows(run, "", &[&id]).await
    }

    pub(crate) async fn task(&self, run: &str, task: u32) -> Result<Option<TaskRow>> {
        let id = self.require(run).await?;
        Ok(self
            .task_rows(run, "AND tasks.task = $2", &[&id, &(task as i32)])
            .await?
            .pop())
    }

    pub(crate) async fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>> {
        let id = self.require(run).await?;
        let rows = self
            .query(
                "SELECT task, attempt, status, started_at, finished_at, error FROM attempts
                 WHERE run = $1 ORDER BY task, attempt",
                &[&id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AttemptRow {
                    task: row.at::<i32>(0)? as u32,
                    attempt: row.at::<i32>(1)? as u32,
                    status: named(run, row.at(2)?)?,
                    started_at: millis(row.at(3)?),
                    finished_at: millis(row.at(4)?),
                    error: row.at(5)?,
                })
            })
            .collect()
    }

    pub(crate) async fn outputs(&self, run: &str) -> Result<Vec<(u32, serde_json::Value)>> {
        let id = self.require(run).await?;
        let rows = self
            .query(
                "SELECT task, output::text FROM outputs WHERE run = $1 ORDER BY task",
                &[&id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let task = row.at::<i32>(0)? as u32;
                Ok((task, crate::codec::output(run, task, row.at(1)?)?))
            })
            .collect()
    }

    pub(crate) async fn provenance(&self, run: &str) -> Result<Vec<Provenance>> {
        let id = self.require(run).await?;
        let rows = self
            .query(
                &format!(
                    "SELECT {PROVENANCE_COLUMNS} FROM provenance JOIN tasks USING (run, task)
                     WHERE provenance.run = $1 ORDER BY provenance.task"
                ),
                &[&id],
            )
            .await?;
        rows.iter()
            .map(|row| provenance_of(run, provenance_row(row, 0)?))
            .collect()
    }

    pub(crate) async fn cached(&self, key: &Digest) -> Result<Option<CacheHit>> {
        let rows = self
            .query(
                &format!(
                    "SELECT runs.run_id, outputs.output::text, tasks.finished_at,
                        cache_keys.run, cache_keys.task, {PROVENANCE_COLUMNS}
                     FROM cache_keys JOIN runs ON runs.id = cache_keys.run
                     JOIN tasks USING (run, task) JOIN provenance USING (run, task)
                     LEFT JOIN outputs USING (run, task)
                     WHERE cache_keys.key = $1
                     ORDER BY cache_keys.run DESC, cache_keys.task DESC LIMIT 1"
                ),
                &[&key.0.as_slice()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let run_id: String = row.at(0)?;
        let (run, task): (i64, i32) = (row.at(3)?, row.at(4)?);
        let record = provenance_of(&run_id, provenance_row(row, 5)?)?;
        let artifacts = self
            .artifact_rows(
                &run_id,
                "WHERE run = $1 AND task = $2 AND attempt = $3 AND role = 'produced'",
                &[&run, &task, &(record.attempt as i32)],
            )
            .await?
            .into_iter()
            .map(|row| row.artifact)
            .collect();
        Ok(Some(CacheHit {
            output: row
                .at::<Option<&str>>(1)?
                .map(|text| crate::codec::output(&run_id, task as u32, text))
                .transpose()?,
            finished_at: millis(row.at::<Option<i64>>(2)?.unwrap_or_default()),
            artifacts,
            record,
            run_id,
        }))
    }

    async fn artifact_rows(
        &self,
        run: &str,
        filter: &str,
        params: &Params<'_>,
    ) -> Result<Vec<ArtifactRow>> {
        let rows = self
            .query(
                &format!(
                    "SELECT task, attempt, role, path, digest, size FROM artifacts {filter}
                     ORDER BY task, attempt, role DESC, path"
                ),
                params,
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ArtifactRow {
                    task: row.at::<i32>(0)? as u32,
                    attempt: row.at::<i32>(1)? as u32,
                    role: named(run, row.at(2)?)?,
                    artifact: Artifact {
                        path: row.at(3)?,
                        digest: digest_of(run, row.at(4)?)?,
                        size: u64::try_from(row.at::<i64>(5)?).unwrap_or_default(),
                    },
                })
            })
            .collect()
    }

    pub(crate) async fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>> {
        let id = self.require(run).await?;
        self.artifact_rows(run, "WHERE run = $1", &[&id]).await
    }

    pub(crate) async fn artifact_digests(&self) -> Result<Vec<Digest>> {
        self.query("SELECT DISTINCT digest FROM artifacts ORDER BY digest", &[])
            .await?
            .iter()
            .map(|row| digest_of("(artifacts)", row.at(0)?))
            .collect()
    }

    pub(crate) async fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        let id = self.require(run).await?;
        let rows = self
            .query(
                "SELECT events, digest, length(data) FROM checkpoints WHERE run = $1
                 ORDER BY events DESC",
                &[&id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(CheckpointInfo {
                    events: row.at::<i64>(0)? as u64,
                    digest: digest_of(run, row.at(1)?)?,
                    size: row.at::<i32>(2)? as u64,
                })
            })
            .collect()
    }

    pub(crate) async fn checkpoint(&self, run: &str, events: u64) -> Result<Sealed> {
        let id = self.require(run).await?;
        let rows = self
            .query(
                "SELECT digest, data FROM checkpoints WHERE run = $1 AND events = $2",
                &[&id, &(events as i64)],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Err(Error::NoCheckpoint {
                run: run.to_owned(),
                events,
            });
        };
        Ok(Sealed {
            events,
            digest: digest_of(run, row.at(0)?)?,
            data: row.at(1)?,
        })
    }

    pub(crate) async fn controls(&self, run: &str, from: u64) -> Result<Vec<Control>> {
        let id = self.require(run).await?;
        let rows = self
            .query(
                "SELECT seq, control::text FROM controls WHERE run = $1 AND seq >= $2
                 ORDER BY seq",
                &[&id, &(from as i64)],
            )
            .await?;
        let mut expected = from;
        rows.iter()
            .map(|row| {
                let seq = row.at::<i64>(0)? as u64;
                if seq != expected {
                    return Err(corrupt(
                        run,
                        0,
                        format!("control request {expected} is missing"),
                    ));
                }
                expected += 1;
                serde_json::from_str(row.at(1)?)
                    .map_err(|error| corrupt(run, 0, format!("control request {seq}: {error}")))
            })
            .collect()
    }

    async fn workflow_rows(&self, rest: &str, params: &Params<'_>) -> Result<Vec<StoredWorkflow>> {
        self.query(
            &format!("SELECT name, version, digest, created_at, spec::text FROM workflows {rest}"),
            params,
        )
        .await?
        .iter()
        .map(|row| stored_workflow(workflow_row(row)?))
        .collect()
    }

    pub(crate) async fn workflow(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<StoredWorkflow> {
        let found = match version {
            Some(version) => {
                self.workflow_rows(
                    "WHERE name = $1 AND version = $2",
                    &[&name, &(version as i32)],
                )
                .await?
            }
            None => {
                self.workflow_rows("WHERE name = $1 ORDER BY version DESC LIMIT 1", &[&name])
                    .await?
            }
        };
        found.into_iter().next().ok_or_else(|| match version {
            Some(version) => Error::UnknownVersion {
                name: name.to_owned(),
                version,
            },
            None => Error::UnknownWorkflow(name.to_owned()),
        })
    }

    pub(crate) async fn workflows(&self) -> Result<Vec<StoredWorkflow>> {
        self.workflow_rows(
            "WHERE (name, version) IN (SELECT name, max(version) FROM workflows GROUP BY name)
             ORDER BY name",
            &[],
        )
        .await
    }

    pub(crate) async fn workflow_versions(&self, name: &str) -> Result<Vec<StoredWorkflow>> {
        let versions = self
            .workflow_rows("WHERE name = $1 ORDER BY version", &[&name])
            .await?;
        if versions.is_empty() {
            return Err(Error::UnknownWorkflow(name.to_owned()));
        }
        Ok(versions)
    }

    /// API keys selected by `rest`.
    /// The newest `limit` ticks of `name`'s schedule, newest first.
    pub(crate) async fn ticks(&self, name: &str, limit: usize) -> Result<Vec<crate::Tick>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT tick_at, outcome, run_id, recorded_at FROM schedule_ticks
                 WHERE workflow = $1 ORDER BY tick_at DESC LIMIT $2",
                &[&name, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let outcome: String = row.at(1)?;
                Ok(crate::Tick {
                    workflow: name.to_owned(),
                    at: millis(row.at(0)?),
                    outcome: crate::TickOutcome::from_parts(&outcome, row.at(2)?).ok_or_else(
                        || {
                            corrupt(
                                &format!("(schedule of {name})"),
                                0,
                                format!("a tick recorded as `{outcome}`"),
                            )
                        },
                    )?,
                    recorded_at: millis(row.at(3)?),
                })
            })
            .collect()
    }

    pub(crate) async fn keys(&self, rest: &str, params: &Params<'_>) -> Result<Vec<ApiKey>> {
        let rows = self
            .query(
                &format!(
                    "SELECT id, name, scope, hash, created_at, revoked_at FROM api_keys {rest}
                     ORDER BY id"
                ),
                params,
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKey {
                    scope: row
                        .at::<&str>(2)?
                        .parse()
                        .map_err(|message| corrupt("(api keys)", 0, message))?,
                    hash: digest_of("(api keys)", row.at(3)?)?,
                    id: row.at(0)?,
                    name: row.at(1)?,
                    created_at: millis(row.at(4)?),
                    revoked_at: row.at::<Option<i64>>(5)?.map(millis),
                })
            })
            .collect()
    }
}

/// Columns of a provenance record, in the order `provenance_row` reads.
const PROVENANCE_COLUMNS: &str = "tasks.name, provenance.attempt, provenance.spec,
    provenance.inputs, provenance.output, provenance.artifacts, provenance.digest,
    provenance.parents";

fn provenance_row(row: &Row, first: usize) -> Result<ProvenanceRow> {
    let blob = |index: usize| row.at::<Vec<u8>>(first + index);
    Ok((
        row.at(first)?,
        row.at::<i32>(first + 1)? as u32,
        [blob(2)?, blob(3)?, blob(4)?, blob(5)?, blob(6)?],
        blob(7)?,
    ))
}

fn workflow_row(row: &Row) -> Result<WorkflowRow> {
    Ok((
        row.at(0)?,
        row.at::<i32>(1)? as u32,
        row.at(2)?,
        row.at(3)?,
        row.at(4)?,
    ))
}

/// The owner columns a run's row joins in, in `owner_row`'s order.
const OWNER_COLUMNS: &str = "runs.owner, runs.token, runs.claimed_at, owners.pid,
    owners.host, owners.boot, owners.process_start, owners.expires_at";

fn owner_row(row: &Row, first: usize) -> Result<OwnerRow> {
    Ok((
        row.at(first)?,
        row.at(first + 1)?,
        row.at(first + 2)?,
        row.at(first + 3)?,
        row.at(first + 4)?,
        row.at(first + 5)?,
        row.at(first + 6)?,
        row.at(first + 7)?,
    ))
}
