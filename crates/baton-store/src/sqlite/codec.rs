//! Reading SQLite rows into the plain tuples `crate::codec` decodes.

use crate::codec::{OwnerRow, ProvenanceRow, WorkflowRow};

/// Columns of a provenance record, in the order `provenance_row` reads.
pub(crate) const PROVENANCE_COLUMNS: &str = "tasks.name, provenance.attempt, provenance.spec,
    provenance.inputs, provenance.output, provenance.artifacts, provenance.digest,
    provenance.parents";

pub(crate) fn provenance_row(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<ProvenanceRow> {
    let blob = |index: usize| row.get::<_, Vec<u8>>(first + index);
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        [blob(2)?, blob(3)?, blob(4)?, blob(5)?, blob(6)?],
        blob(7)?,
    ))
}

pub(crate) fn workflow_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WorkflowRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

/// The owner columns a run's row joins in, in `ownership_row`'s order.
pub(crate) const OWNER_COLUMNS: &str = "runs.owner, runs.token, runs.claimed_at, owners.pid,
    owners.host, owners.boot, owners.process_start, owners.expires_at";

pub(crate) fn owner_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<OwnerRow> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
        row.get(first + 4)?,
        row.get(first + 5)?,
        row.get(first + 6)?,
        row.get(first + 7)?,
    ))
}
