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
    url: String,
    pub(crate) name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // A drop cannot await; a thread of its own runs the statement.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A store in a new schema, with `options` otherwise.
pub(crate) async fn store_with(options: PostgresOptions) -> Option<(PostgresStore, Schema)> {
    let url = url()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let schema = Schema {
        url: url.clone(),
        name: name.clone(),
    };
    let options = PostgresOptions {
        schema: Some(name),
        ..options
    };
    let store = PostgresStore::connect_with(&url, options).await.unwrap();
    Some((store, schema))
}

pub(crate) async fn store() -> Option<(PostgresStore, Schema)> {
    store_with(PostgresOptions::default()).await
}
