//! The writer task: every write waiting when it wakes goes into one
//! transaction (group commit), sent as one pipeline — `BEGIN`, the write
//! lock, one statement per write, a notification, `COMMIT` — so a group
//! costs one round trip and one WAL flush however many writes it holds.
//! Each write is a single statement that checks what could refuse it (a
//! stale fence, a sequence conflict, an unknown or taken run id, a live
//! owner) before it changes anything, so a refused write leaves no trace
//! and does not fail the others in its group.
//!
//! A group that fails because the connection broke or the server is
//! restarting is sent again (on a fresh connection) until it commits or
//! the writer's patience runs out; an append sent again after a commit
//! whose answer was lost is recognised as already there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::types::ToSql;

use super::columns::{self, Param};
use super::connection::{Database, pool_message, request_message, transient};
use super::reads::Reader;
use crate::owner::Fence;
use crate::write::{Write, WriteKind};
use crate::{Error, Result};

/// Writes in one transaction at most, so one group's answer never waits on
/// an unbounded pipeline.
const GROUP: usize = 1024;

/// Takes writes until every sender is gone.
pub(crate) async fn run(
    database: Arc<Database>,
    mut receiver: UnboundedReceiver<Write>,
    patience: Duration,
) {
    while let Some(first) = receiver.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP {
            match receiver.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let answers = commit_patiently(&database, &group, patience).await;
        for (write, answer) in group.into_iter().zip(answers) {
            let _ = write.reply.send(answer);
        }
    }
}

/// What became of one write of a committed group, before a refusal by a
/// live owner is told with who that owner is.
enum Outcome {
    Done(Result<u64>),
    Owned,
}

/// Why a group did not commit.
enum Failed {
    /// No connection could be had.
    Connect(deadpool_postgres::PoolError),
    Request(tokio_postgres::Error),
}

impl Failed {
    fn transient(&self) -> bool {
        match self {
            Failed::Connect(_) => true,
            Failed::Request(error) => transient(error),
        }
    }

    /// What to tell every writer of the group, and why.
    fn told(self) -> (&'static str, Arc<dyn std::error::Error + Send + Sync>) {
        match self {
            Failed::Connect(deadpool_postgres::PoolError::Backend(cause)) => {
                ("cannot connect", Arc::new(cause))
            }
            Failed::Connect(error) => (pool_message(&error), Arc::new(error)),
            Failed::Request(error) => (request_message(&error), Arc::new(error)),
        }
    }
}

async fn commit_patiently(
    database: &Database,
    group: &[Write],
    patience: Duration,
) -> Vec<Result<u64>> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let failed = match commit(database, group).await {
            Ok(outcomes) => return told(database, group, outcomes).await,
            Err(failed) => failed,
        };
        if !failed.transient() || started.elapsed() + pause > patience {
            let (message, source) = failed.told();
            return group
                .iter()
                .map(|_| Err(database.failure(message, Arc::clone(&source))))
                .collect();
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Sends `group` as one transaction; the outcome of each write once it
/// committed.
async fn commit(database: &Database, group: &[Write]) -> Result<Vec<Outcome>, Failed> {
    let client = database.pool.get().await.map_err(Failed::Connect)?;
    let mut statements = Vec::with_capacity(group.len());
    for write in group {
        let statement = client
            .prepare_cached(statement(&write.kind))
            .await
            .map_err(Failed::Request)?;
        statements.push(statement);
    }
    let params: Vec<Vec<Param<'_>>> = group.iter().map(params).collect();
    let notify = group
        .iter()
        .any(|write| matches!(write.kind, WriteKind::Append { .. } | WriteKind::Control(_)));
    // Every request is sent on the first poll, in this order: one pipeline.
    let begin = client.batch_execute("BEGIN; SELECT baton_write_lock()");
    let writes = futures_util::future::join_all(statements.iter().zip(&params).map(
        |(statement, params)| {
            let params: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|param| &**param as &(dyn ToSql + Sync))
                .collect();
            let client = &client;
            async move { client.query(statement, &params).await }
        },
    ));
    let tell = async {
        if notify {
            client
                .batch_execute("SELECT pg_notify('baton_changes', current_schema())")
                .await
        } else {
            Ok(())
        }
    };
    let end = client.batch_execute("COMMIT");
    let (begun, rows, told, ended) = tokio::join!(begin, writes, tell, end);
    begun.map_err(Failed::Request)?;
    let rows = rows
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failed::Request)?;
    told.map_err(Failed::Request)?;
    ended.map_err(Failed::Request)?;
    Ok(group
        .iter()
        .zip(rows)
        .map(|(write, rows)| outcome(write, &rows))
        .collect())
}

/// The answers of a committed group, with who owns the runs a claim was
/// refused.
async fn told(database: &Database, group: &[Write], outcomes: Vec<Outcome>) -> Vec<Result<u64>> {
    let mut answers = Vec::with_capacity(outcomes.len());
    for (write, outcome) in group.iter().zip(outcomes) {
        answers.push(match outcome {
            Outcome::Done(answer) => answer,
            Outcome::Owned => owned(database, &write.subject).await,
        });
    }
    answers
}

async fn owned(database: &Database, run: &str) -> Result<u64> {
    let reader = Reader::of(database).await?;
    let summary = reader.summary(run).await?;
    Err(match summary.driver {
        Some(ownership) => Error::Owned {
            run: run.to_owned(),
            ownership: Box::new(ownership),
        },
        // It was given up since: the caller may claim again.
        None => Error::Fenced {
            run: run.to_owned(),
        },
    })
}

/// Every write's statement answers one row: an outcome and a number.
fn statement(kind: &WriteKind) -> &'static str {
    match kind {
        WriteKind::Heartbeat { .. } => {
            "INSERT INTO owners (id, pid, host, boot, process_start, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at
             RETURNING 'ok'::text, 0::bigint"
        }
        WriteKind::Create { .. } => "SELECT outcome, value FROM baton_create($1, $2, $3, $4, $5)",
        WriteKind::Claim { .. } => "SELECT outcome, value FROM baton_claim($1, $2, $3, $4)",
        WriteKind::Release(_) => {
            "WITH released AS (
                UPDATE runs SET owner = NULL WHERE run_id = $1 AND token = $2 RETURNING 1)
             SELECT 'ok'::text, count(*)::bigint FROM released"
        }
        WriteKind::Append { .. } => {
            "SELECT outcome, value FROM baton_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26,
                $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38)"
        }
        WriteKind::Checkpoint { .. } => {
            "SELECT outcome, value FROM baton_checkpoint($1, $2, $3, $4, $5)"
        }
        WriteKind::Control(_) => "SELECT outcome, value FROM baton_control($1, $2)",
        WriteKind::Delete => "SELECT outcome, value FROM baton_delete($1)",
        WriteKind::PutWorkflow { .. } => {
            "WITH put AS (
                INSERT INTO workflows (name, version, digest, created_at, spec)
                VALUES ($1, $2, $3, $4, $5::text::json) ON CONFLICT DO NOTHING RETURNING 1)
             SELECT CASE WHEN count(*) = 0 THEN 'exists' ELSE 'ok' END, 0::bigint FROM put"
        }
        WriteKind::DeleteWorkflow => {
            "WITH gone AS (DELETE FROM workflows WHERE name = $1 RETURNING 1)
             SELECT CASE WHEN count(*) = 0 THEN 'unknown' ELSE 'ok' END, 0::bigint FROM gone"
        }
        WriteKind::PutKey(_) => {
            "WITH put AS (
                INSERT INTO api_keys (id, name, scope, hash, created_at)
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1)
             SELECT CASE WHEN count(*) = 0 THEN 'exists' ELSE 'ok' END, 0::bigint FROM put"
        }
        WriteKind::PutTick { .. } => {
            "WITH put AS (
                INSERT INTO schedule_ticks (workflow, tick_at, outcome, run_id, recorded_at)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (workflow, tick_at) DO UPDATE SET
                  outcome = excluded.outcome, run_id = excluded.run_id,
                  recorded_at = excluded.recorded_at
                RETURNING 1)
             SELECT 'ok', 0::bigint FROM put"
        }
        WriteKind::RevokeKey { .. } => {
            "WITH revoked AS (
                UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1
                RETURNING 1)
             SELECT CASE WHEN count(*) = 0 THEN 'unknown' ELSE 'ok' END, 0::bigint FROM revoked"
        }
    }
}

fn params(write: &Write) -> Vec<Param<'_>> {
    let subject: Param<'_> = Box::new(write.subject.as_str());
    let big = |value: u64| -> Param<'_> { Box::new(value as i64) };
    match &write.kind {
        WriteKind::Heartbeat { owner, expires_at } => vec![
            Box::new(owner.id.as_str()),
            big(u64::from(owner.pid)),
            Box::new(owner.host.as_str()),
            Box::new(owner.boot.as_str()),
            big(owner.process_start),
            big(*expires_at),
        ],
        WriteKind::Create {
            workflow,
            record,
            owner,
            now,
        } => vec![
            subject,
            Box::new(workflow.as_str()),
            Box::new(record.as_str()),
            Box::new(owner.as_str()),
            big(*now),
        ],
        WriteKind::Claim { owner, now, steal } => vec![
            subject,
            Box::new(owner.as_str()),
            big(*now),
            Box::new(steal.map(|Fence(token)| token as i64)),
        ],
        WriteKind::Release(fence) => vec![subject, big(fence.0)],
        WriteKind::Append {
            first_seq,
            fence,
            events,
            count,
            projection,
            tasks,
            attempts,
            artifacts,
        } => {
            let mut params: Vec<Param<'_>> = vec![
                subject,
                big(*first_seq),
                big(fence.0),
                big(*count),
                Box::new(events.as_str()),
                Box::new(projection.started_at.map(|at| at.0 as i64)),
                Box::new(projection.paused),
                Box::new(projection.finished.map(|(status, _)| status.name())),
                Box::new(projection.finished.map(|(_, at)| at.0 as i64)),
            ];
            params.extend(columns::rows(projection, tasks, attempts, artifacts));
            params
        }
        WriteKind::Checkpoint {
            fence,
            events,
            digest,
            data,
        } => vec![
            subject,
            big(fence.0),
            big(*events),
            Box::new(digest.as_slice()),
            Box::new(data.as_slice()),
        ],
        WriteKind::Control(control) => vec![subject, Box::new(control.as_str())],
        WriteKind::Delete | WriteKind::DeleteWorkflow => vec![subject],
        WriteKind::PutWorkflow {
            version,
            digest,
            created_at,
            spec,
        } => vec![
            subject,
            Box::new(*version as i32),
            Box::new(digest.as_slice()),
            big(*created_at),
            Box::new(spec.as_str()),
        ],
        WriteKind::PutKey(key) => vec![
            Box::new(key.id.as_str()),
            Box::new(key.name.as_str()),
            Box::new(key.scope.name()),
            Box::new(key.hash.0.as_slice()),
            big(key.created_at.0),
        ],
        WriteKind::RevokeKey { at } => vec![subject, big(*at)],
        WriteKind::PutTick {
            at,
            outcome,
            run_id,
            recorded_at,
        } => vec![
            subject,
            big(*at),
            Box::new(*outcome),
            Box::new(run_id.as_deref()),
            big(*recorded_at),
        ],
    }
}

/// A write's answer from its statement's row.
fn outcome(write: &Write, rows: &[tokio_postgres::Row]) -> Outcome {
    let (outcome, value) = match rows.first() {
        // A row that does not read back is answered as what it is below.
        Some(row) => (
            row.try_get::<_, String>(0).unwrap_or_default(),
            row.try_get::<_, i64>(1).unwrap_or_default(),
        ),
        None => (String::new(), 0),
    };
    let subject = || write.subject.clone();
    Outcome::Done(match (outcome.as_str(), &write.kind) {
        ("owned", _) => return Outcome::Owned,
        ("ok", _) => Ok(u64::try_from(value).unwrap_or_default()),
        ("unknown_run", _) => Err(Error::UnknownRun(subject())),
        ("fenced", _) => Err(Error::Fenced { run: subject() }),
        ("conflict", WriteKind::Append { first_seq, .. }) => Err(Error::Conflict {
            run: subject(),
            expected: *first_seq,
            actual: u64::try_from(value).unwrap_or_default(),
        }),
        ("unknown_owner", WriteKind::Create { owner, .. } | WriteKind::Claim { owner, .. }) => {
            Err(Error::UnknownOwner(owner.clone()))
        }
        ("exists", WriteKind::Create { .. }) => Err(Error::RunExists(subject())),
        ("unfinished", _) => Err(Error::Unfinished(subject())),
        ("exists", WriteKind::PutWorkflow { version, .. }) => Err(Error::VersionExists {
            name: subject(),
            version: *version,
        }),
        ("unknown", WriteKind::DeleteWorkflow) => Err(Error::UnknownWorkflow(subject())),
        ("exists", WriteKind::PutKey(key)) => Err(Error::KeyExists(key.id.clone())),
        ("unknown", WriteKind::RevokeKey { .. }) => Err(Error::UnknownKey(subject())),
        (other, _) => Err(Error::Corrupt {
            run: subject(),
            seq: 0,
            message: format!("the database answered a write with `{other}`"),
        }),
    })
}
