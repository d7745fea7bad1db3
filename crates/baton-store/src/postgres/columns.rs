//! An append's arguments for `baton_append`: the read-model rows as typed
//! columns (one array per field, sent in binary), or NULL when there are
//! none, because parsing them from JSON was the largest part of what an
//! append cost the database (BENCHMARKS.md).

use tokio_postgres::types::ToSql;

use crate::projection::Projection;
use crate::{ArtifactRow, AttemptRow, TaskRow};

/// One argument, borrowed from the write.
pub(crate) type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// `values` as an array argument, NULL when empty.
fn column<'a, T: ToSql + Sync + Send + 'a>(values: Vec<T>) -> Param<'a> {
    Box::new((!values.is_empty()).then_some(values))
}

fn millis(at: Option<baton_core::run::Millis>) -> Option<i64> {
    at.map(|at| at.0 as i64)
}

/// The arguments after the run, its place, fence, events and projection.
pub(crate) fn rows<'a>(
    projection: &'a Projection,
    tasks: &'a [TaskRow],
    attempts: &'a [AttemptRow],
    artifacts: &'a [ArtifactRow],
) -> Vec<Param<'a>> {
    let outputs = &projection.outputs;
    let recorded: Vec<(&TaskRow, &baton_core::run::Provenance)> = tasks
        .iter()
        .filter_map(|row| Some((row, row.record.as_ref()?)))
        .collect();
    vec![
        column(outputs.iter().map(|(task, _)| *task as i32).collect()),
        column(outputs.iter().map(|(_, output)| output.as_str()).collect()),
        column(tasks.iter().map(|row| row.task as i32).collect()),
        column(tasks.iter().map(|row| row.id.as_str()).collect()),
        column(tasks.iter().map(|row| row.status.name()).collect()),
        column(tasks.iter().map(|row| row.attempts as i32).collect()),
        column(tasks.iter().map(|row| millis(row.started_at)).collect()),
        column(tasks.iter().map(|row| millis(row.finished_at)).collect()),
        column(recorded.iter().map(|(row, _)| row.task as i32).collect()),
        column(
            recorded
                .iter()
                .map(|(_, record)| record.attempt as i32)
                .collect(),
        ),
        column(
            recorded
                .iter()
                .map(|(_, record)| &record.spec.0[..])
                .collect(),
        ),
        column(
            recorded
                .iter()
                .map(|(_, record)| &record.inputs.0[..])
                .collect(),
        ),
        column(
            recorded
                .iter()
                .map(|(_, record)| &record.output.0[..])
                .collect(),
        ),
        column(
            recorded
                .iter()
                .map(|(_, record)| &record.artifacts.0[..])
                .collect(),
        ),
        column(
            recorded
                .iter()
                .map(|(_, record)| {
                    record
                        .parents
                        .iter()
                        .flat_map(|parent| parent.0)
                        .collect::<Vec<u8>>()
                })
                .collect(),
        ),
        column(
            recorded
                .iter()
                .map(|(_, record)| &record.digest.0[..])
                .collect(),
        ),
        column(
            recorded
                .iter()
                .map(|(row, _)| row.cache_key.as_ref().map(|key| &key.0[..]))
                .collect(),
        ),
        column(attempts.iter().map(|row| row.task as i32).collect()),
        column(attempts.iter().map(|row| row.attempt as i32).collect()),
        column(attempts.iter().map(|row| row.status.name()).collect()),
        column(attempts.iter().map(|row| row.started_at.0 as i64).collect()),
        column(
            attempts
                .iter()
                .map(|row| row.finished_at.0 as i64)
                .collect(),
        ),
        column(attempts.iter().map(|row| row.error.as_deref()).collect()),
        column(artifacts.iter().map(|row| row.task as i32).collect()),
        column(artifacts.iter().map(|row| row.attempt as i32).collect()),
        column(artifacts.iter().map(|row| row.role.name()).collect()),
        column(
            artifacts
                .iter()
                .map(|row| row.artifact.path.as_str())
                .collect(),
        ),
        column(
            artifacts
                .iter()
                .map(|row| &row.artifact.digest.0[..])
                .collect(),
        ),
        column(
            artifacts
                .iter()
                .map(|row| row.artifact.size as i64)
                .collect(),
        ),
    ]
}
