//! The schema: migrations (one `.sql` file each, in order) counted by
//! `PRAGMA user_version` and applied on open, and `application_id`, which
//! marks a file as baton's so a foreign file is refused untouched.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::Error;

/// `PRAGMA application_id` of a baton database: "btn1".
pub(crate) const APPLICATION_ID: i32 = 0x6274_6e31;

/// Schema migrations, in order; `user_version` counts those applied.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_runs_and_events.sql"),
    include_str!("migrations/002_run_rows_and_records.sql"),
    include_str!("migrations/003_event_batches_and_read_models.sql"),
    include_str!("migrations/004_provenance_table.sql"),
    include_str!("migrations/005_artifacts.sql"),
    include_str!("migrations/006_controls.sql"),
    include_str!("migrations/007_catalog.sql"),
    include_str!("migrations/008_feed.sql"),
    include_str!("migrations/009_owners.sql"),
    include_str!("migrations/010_run_listing_index.sql"),
    include_str!("migrations/011_schedule_ticks.sql"),
];

/// Applies the migrations this database has not seen, in one transaction;
/// refuses a file that is not baton's or is newer than this build.
pub(crate) fn migrate(
    connection: &mut Connection,
    path: &Path,
    fail: impl Fn(rusqlite::Error) -> Error,
) -> Result<(), Error> {
    let pragma = |connection: &Connection, name: &str| -> Result<i64, Error> {
        connection
            .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .map_err(&fail)
    };
    let application = pragma(connection, "application_id")?;
    let version = pragma(connection, "user_version")?;
    let tables: i64 = connection
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(&fail)?;
    if application != i64::from(APPLICATION_ID) && (application != 0 || tables > 0) {
        return Err(Error::NotBaton(path.to_path_buf()));
    }
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(Error::TooNew {
            place: path.display().to_string(),
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
        .map_err(&fail)?;
    // Another process may have migrated while this one waited for the
    // lock (two `baton` commands opening a new database at once): what to
    // apply is read again under the lock.
    let version = pragma(&transaction, "user_version")?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        transaction.execute_batch(migration).map_err(&fail)?;
        transaction
            .pragma_update(None, "user_version", index as i64 + 1)
            .map_err(&fail)?;
    }
    transaction
        .pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(&fail)?;
    transaction.commit().map_err(&fail)
}
