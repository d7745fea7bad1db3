//! The schema: migrations (one `.sql` file each, in order) counted in the
//! `baton_schema` table and applied when a store connects, under a lock so
//! replicas starting together apply each once.

use super::connection::Database;
use crate::Error;

/// Schema migrations, in order; `baton_schema.version` counts those applied.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_baton.sql"),
    include_str!("migrations/002_work.sql"),
    include_str!("migrations/003_schedule_ticks.sql"),
];

/// Applies the migrations the database has not seen, in one transaction
/// (creating `schema` first when one is named); refuses a database newer
/// than this build.
pub(crate) async fn migrate(database: &Database, schema: Option<&str>) -> Result<(), Error> {
    let mut client = database.client().await?;
    let fail = |error| database.error(error);
    if let Some(schema) = schema {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .or_else(|error| match error.code() {
                // Another connection created it at the same moment.
                Some(code) if code.code() == "23505" || code.code() == "42P06" => Ok(()),
                _ => Err(error),
            })
            .map_err(fail)?;
    }
    let transaction = client.transaction().await.map_err(fail)?;
    transaction
        .batch_execute(
            "SELECT pg_advisory_xact_lock(hashtext('baton-migrate:' || current_schema()));
             CREATE TABLE IF NOT EXISTS baton_schema (version integer NOT NULL);",
        )
        .await
        .map_err(fail)?;
    // Read as text, so a foreign `baton_schema` table is refused, not a panic.
    let found: i32 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0)::text FROM baton_schema",
            &[],
        )
        .await
        .map_err(fail)?
        .try_get::<_, String>(0)
        .ok()
        .and_then(|version| version.parse().ok())
        .ok_or_else(|| database.failure_message("its `baton_schema` table is not baton's"))?;
    let known = MIGRATIONS.len() as i32;
    if found > known {
        // Let go of the locks now, not whenever the connection is next used.
        transaction.rollback().await.map_err(fail)?;
        return Err(Error::TooNew {
            place: database.place.clone(),
            found: i64::from(found),
            supported: i64::from(known),
        });
    }
    if found == known {
        return transaction.commit().await.map_err(fail);
    }
    for migration in &MIGRATIONS[found as usize..] {
        transaction.batch_execute(migration).await.map_err(fail)?;
    }
    transaction
        .execute("DELETE FROM baton_schema", &[])
        .await
        .map_err(fail)?;
    transaction
        .execute("INSERT INTO baton_schema (version) VALUES ($1)", &[&known])
        .await
        .map_err(fail)?;
    transaction.commit().await.map_err(fail)
}
