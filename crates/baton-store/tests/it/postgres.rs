//! A PostgreSQL store of its own for each test: a fresh schema in the
//! database `BATON_TEST_PG` names, dropped when the test ends.

use baton_store::{PostgresOptions, PostgresStore};

/// The test server's URL, or none (said loudly).
pub(crate) fn url() -> Option<String> {
    let url = std::env::var("BATON_TEST_PG").ok();
    if url.is_none() {
        eprintln!("SKIPPED: BATON_TEST_PG is not set (`.ci/run` sets it and starts PostgreSQL)");
    }
    url
}

/// Drops its schema when dropped, whatever the test did.
pub(crate) struct Schema {
    pub(crate) url: String,
    pub(crate) name: String,
}

impl Schema {
    /// Options for a store in this schema.
    fn options(&self) -> PostgresOptions {
        PostgresOptions {
            schema: Some(self.name.clone()),
            ..PostgresOptions::default()
        }
    }

    /// Runs `statement` on a connection of its own.
    async fn execute(&self, statement: &str) -> Result<(), tokio_postgres::Error> {
        execute(&self.url, statement).await
    }
}

async fn execute(url: &str, statement: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(statement).await
}

impl Drop for Schema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // A drop cannot await; a thread of its own runs the statement.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = runtime.block_on(execute(&url, &statement));
        })
        .join();
    }
}

/// A store in a new schema.
pub(crate) async fn store() -> Option<(PostgresStore, Schema)> {
    let schema = Schema {
        url: url()?,
        name: format!("t_{}", uuid::Uuid::new_v4().simple()),
    };
    Some((replica(&schema).await, schema))
}

/// A store on the schema of `schema`: another replica.
async fn replica(schema: &Schema) -> PostgresStore {
    PostgresStore::connect_with(&schema.url, schema.options())
        .await
        .unwrap()
}

mod shared {
    use baton_core::Duration;
    use baton_core::run::{Control, Event, Millis};
    use baton_store::{Change, Error, Owner, RunLog, RunRecord};

    use super::*;

    fn started(at: u64) -> Event {
        Event::RunStarted { at: Millis(at) }
    }

    #[tokio::test]
    async fn a_database_with_a_newer_schema_is_refused_untouched() {
        let Some((store, schema)) = store().await else {
            return;
        };
        drop(store);
        schema
            .execute(&format!(
                "UPDATE {}.baton_schema SET version = 99",
                schema.name
            ))
            .await
            .unwrap();
        let error = PostgresStore::connect_with(&schema.url, schema.options())
            .await
            .err()
            .expect("a newer schema is refused");
        assert!(matches!(error, Error::TooNew { found: 99, .. }), "{error}");
        assert!(error.to_string().contains("use a newer baton"), "{error}");
    }

    #[tokio::test]
    async fn one_replica_hears_of_another_s_appends_and_requests() {
        let Some((first, schema)) = store().await else {
            return;
        };
        let second = replica(&schema).await;
        let mut changes = second.changes();
        let owner = Owner::this_process();
        first
            .heartbeat(&owner, Millis(0), Duration::from_secs(30))
            .await
            .unwrap();
        let record = RunRecord::new("elsewhere", baton_core::Workflow::new("w"));
        let fence = first
            .create_run(&record, &owner.id, Millis(0))
            .await
            .unwrap();
        first
            .append("elsewhere", 0, fence, &[started(1)])
            .await
            .unwrap();
        first.request("elsewhere", &Control::Cancel).await.unwrap();
        let deadline = std::time::Duration::from_secs(10);
        let appended = tokio::time::timeout(deadline, changes.recv())
            .await
            .expect("the append within the deadline")
            .unwrap();
        assert!(
            matches!(&appended, Change::Appended { run, events: 1, .. } if &**run == "elsewhere"),
            "{appended:?}"
        );
        let requested = tokio::time::timeout(deadline, changes.recv())
            .await
            .expect("the request within the deadline")
            .unwrap();
        assert!(
            matches!(requested, Change::Requested { .. }),
            "{requested:?}"
        );
        assert_eq!(
            second.controls("elsewhere", 0).await.unwrap(),
            [Control::Cancel]
        );
    }

    #[tokio::test]
    async fn a_replica_that_lost_its_run_is_refused_and_changes_nothing() {
        let Some((first, schema)) = store().await else {
            return;
        };
        let second = replica(&schema).await;
        let (old, new) = (Owner::this_process(), Owner::this_process());
        let lease = Duration::from_secs(10);
        first.heartbeat(&old, Millis(0), lease).await.unwrap();
        second.heartbeat(&new, Millis(0), lease).await.unwrap();
        let record = RunRecord::new("taken", baton_core::Workflow::new("w"));
        let stale = first.create_run(&record, &old.id, Millis(0)).await.unwrap();
        first
            .append("taken", 0, stale, &[started(1)])
            .await
            .unwrap();
        // While the old owner's lease holds, the run is its own.
        assert!(matches!(
            second.claim("taken", &new.id, Millis(5_000), None).await,
            Err(Error::Owned { .. })
        ));
        second.heartbeat(&new, Millis(10_000), lease).await.unwrap();
        let fresh = second
            .claim("taken", &new.id, Millis(10_001), None)
            .await
            .unwrap();
        assert!(fresh > stale);
        let refused = first.append("taken", 1, stale, &[started(2)]).await;
        assert!(matches!(refused, Err(Error::Fenced { .. })), "{refused:?}");
        assert_eq!(second.events("taken").await.unwrap(), [started(1)]);
        second
            .append("taken", 1, fresh, &[started(3)])
            .await
            .unwrap();
        assert_eq!(
            first.events("taken").await.unwrap(),
            [started(1), started(3)]
        );
    }
}

mod damaged {
    use baton_core::Duration;
    use baton_core::run::{Event, Millis, TaskStatus};
    use baton_store::{Batch, Error, Owner, ReadModels, RunLog, RunRecord, TaskRow};

    use super::*;

    #[tokio::test]
    async fn a_column_that_no_longer_reads_back_is_reported_not_a_panic() {
        let Some((store, schema)) = store().await else {
            return;
        };
        let owner = Owner::this_process();
        store
            .heartbeat(&owner, Millis(0), Duration::from_secs(30))
            .await
            .unwrap();
        let record = RunRecord::new("altered", baton_core::Workflow::new("w"));
        let fence = store
            .create_run(&record, &owner.id, Millis(0))
            .await
            .unwrap();
        let row = TaskRow {
            task: 0,
            id: "a".to_owned(),
            status: TaskStatus::Running,
            attempts: 1,
            started_at: Some(Millis(1)),
            finished_at: None,
            record: None,
            cache_key: None,
        };
        let batch = Batch {
            events: &[Event::RunStarted { at: Millis(1) }],
            tasks: std::slice::from_ref(&row),
            ..Batch::default()
        };
        store.write("altered", 0, fence, batch).await.unwrap();
        assert_eq!(store.tasks("altered").await.unwrap(), [row]);
        schema
            .execute(&format!(
                "ALTER TABLE {}.tasks ALTER COLUMN attempts TYPE text",
                schema.name
            ))
            .await
            .unwrap();
        // A connection that prepared the query before answers the server's
        // refusal; a new one reads the altered column, and says so.
        assert!(store.tasks("altered").await.is_err());
        let error = replica(&schema).await.tasks("altered").await.unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("does not read back"), "{error}");
    }
}
