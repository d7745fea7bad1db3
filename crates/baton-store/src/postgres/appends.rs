//! The appends of one group, of different runs, as one call of
//! `baton_append_all`: each table is written once for all of them, so the
//! database's cost per append is its rows, not a handful of statements.
//! Arguments are columns (one element per append); read-model rows carry
//! their append's place, `i`, counted from 1.

use serde::Serialize;
use tokio_postgres::types::{Json, ToSql};

use crate::write::{Write, WriteKind};
use crate::{ArtifactRow, AttemptRow, TaskRow};

pub(crate) const STATEMENT: &str = "SELECT outcome, value FROM baton_append_all($1, $2, $3, $4,
    $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Which writes of `group` go into the one call: its appends, the first of
/// each run (a second append of a run in the same group, which the engine
/// does not send, follows on its own).
pub(crate) fn together(group: &[Write]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    group
        .iter()
        .enumerate()
        .filter(|(_, write)| {
            matches!(write.kind, WriteKind::Append { .. }) && seen.insert(write.subject.as_str())
        })
        .map(|(index, _)| index)
        .collect()
}

/// A read-model row with the place of its append.
#[derive(Debug, Serialize)]
struct Placed<'a, T> {
    i: i32,
    #[serde(flatten)]
    row: &'a T,
}

/// Columns of the appends, in `together`'s order.
#[derive(Default)]
struct Columns<'a> {
    runs: Vec<&'a str>,
    first: Vec<i64>,
    token: Vec<i64>,
    count: Vec<i64>,
    events: Vec<&'a str>,
    started: Vec<Option<i64>>,
    paused: Vec<Option<bool>>,
    status: Vec<Option<&'static str>>,
    finished: Vec<Option<i64>>,
    output_appends: Vec<i32>,
    output_tasks: Vec<i32>,
    outputs: Vec<&'a str>,
    tasks: Vec<Placed<'a, TaskRow>>,
    records: Vec<Placed<'a, TaskRow>>,
    attempts: Vec<Placed<'a, AttemptRow>>,
    artifacts: Vec<Placed<'a, ArtifactRow>>,
}

/// The call's arguments for the writes of `group` at `together`.
pub(crate) fn params<'a>(
    group: &'a [Write],
    together: &[usize],
) -> Vec<Box<dyn ToSql + Sync + Send + 'a>> {
    let mut columns = Columns::default();
    for (place, &index) in together.iter().enumerate() {
        let write = &group[index];
        let WriteKind::Append {
            first_seq,
            fence,
            events,
            count,
            projection,
            tasks,
            attempts,
            artifacts,
        } = &write.kind
        else {
            continue;
        };
        let i = place as i32 + 1;
        columns.runs.push(&write.subject);
        columns.first.push(*first_seq as i64);
        columns.token.push(fence.0 as i64);
        columns.count.push(*count as i64);
        columns.events.push(events);
        columns.started.push(projection.started_at.map(|at| at.0 as i64));
        columns.paused.push(projection.paused);
        columns
            .status
            .push(projection.finished.map(|(status, _)| status.name()));
        columns
            .finished
            .push(projection.finished.map(|(_, at)| at.0 as i64));
        for (task, output) in &projection.outputs {
            columns.output_appends.push(i);
            columns.output_tasks.push(*task as i32);
            columns.outputs.push(output);
        }
        for row in tasks {
            columns.tasks.push(Placed { i, row });
            if row.record.is_some() {
                columns.records.push(Placed { i, row });
            }
        }
        columns
            .attempts
            .extend(attempts.iter().map(|row| Placed { i, row }));
        columns
            .artifacts
            .extend(artifacts.iter().map(|row| Placed { i, row }));
    }
    let rows = |rows: Vec<Placed<'a, _>>| (!rows.is_empty()).then_some(Json(rows));
    vec![
        Box::new(columns.runs),
        Box::new(columns.first),
        Box::new(columns.token),
        Box::new(columns.count),
        Box::new(columns.events),
        Box::new(columns.started),
        Box::new(columns.paused),
        Box::new(columns.status),
        Box::new(columns.finished),
        Box::new(columns.output_appends),
        Box::new(columns.output_tasks),
        Box::new(columns.outputs),
        Box::new(rows(columns.tasks)),
        Box::new(rows(columns.records)),
        Box::new((!columns.attempts.is_empty()).then_some(Json(columns.attempts))),
        Box::new((!columns.artifacts.is_empty()).then_some(Json(columns.artifacts))),
    ]
}
