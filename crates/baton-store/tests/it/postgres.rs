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

/// The worker queue replicas share.
mod queue {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use baton_core::Duration;
    use baton_core::run::Millis;
    use baton_store::{Offer, Owner, Room, RunLog, WorkQueue};
    use serde_json::{Value, json};

    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    async fn offer(
        queue: &dyn WorkQueue,
        owner: &str,
        capability: &str,
        wanted: &BTreeMap<String, String>,
        key: &str,
        task: &str,
    ) -> i64 {
        let item = json!({ "task": task });
        let offer = Offer {
            capability,
            labels: wanted,
            fairness_key: key,
            priority: 0,
            run_id: "run",
            task_id: task,
            item: &item,
        };
        queue.offer(owner, offer, Millis(1)).await.unwrap()
    }

    fn tasks(taken: &[baton_store::Taken]) -> Vec<String> {
        taken
            .iter()
            .map(|taken| taken.item["task"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn an_attempt_goes_to_one_taker_whose_worker_matches_and_its_end_back_to_its_owner() {
        let Some((first, schema)) = store().await else {
            return;
        };
        let second = replica(&schema).await;
        let (owner, taker) = (Owner::this_process(), Owner::this_process());
        first.heartbeat(&owner, Millis(0), TTL).await.unwrap();
        second.heartbeat(&taker, Millis(0), TTL).await.unwrap();
        let (offering, taking) = (first.work_queue().unwrap(), second.work_queue().unwrap());
        let gpu = labels(&[("gpu", "a100")]);
        let ticket = offer(&*offering, &owner.id, "train", &gpu, "", "fit").await;
        assert!(offering.is_waiting(ticket).await.unwrap());

        // A worker without the label, or without the capability, takes nothing.
        let plain = labels(&[("zone", "eu")]);
        for (capabilities, carried) in [(caps(&["train"]), &plain), (caps(&["build"]), &gpu)] {
            let room = Room {
                capabilities: &capabilities,
                labels: carried,
                free: 4,
            };
            assert!(taking.take(&taker.id, room).await.unwrap().is_empty());
        }
        let capabilities = caps(&["build", "train"]);
        let carried = labels(&[("gpu", "a100"), ("zone", "eu")]);
        let room = Room {
            capabilities: &capabilities,
            labels: &carried,
            free: 4,
        };
        let taken = taking.take(&taker.id, room).await.unwrap();
        assert_eq!(tasks(&taken), ["fit"]);
        assert!(!offering.is_waiting(ticket).await.unwrap());
        assert!(taking.take(&taker.id, room).await.unwrap().is_empty());
        assert_eq!(taking.held(&taker.id).await.unwrap(), [ticket]);

        assert!(offering.ended(&owner.id).await.unwrap().is_empty());
        let ended = json!({ "succeeded": { "output": 42 } });
        assert!(taking.finish(ticket, &ended).await.unwrap());
        assert!(taking.held(&taker.id).await.unwrap().is_empty());
        assert_eq!(offering.ended(&owner.id).await.unwrap(), [(ticket, ended)]);
        assert!(
            offering.ended(&owner.id).await.unwrap().is_empty(),
            "read once"
        );
    }

    #[tokio::test]
    async fn takers_at_the_same_moment_never_take_one_attempt_twice() {
        let Some((store, schema)) = store().await else {
            return;
        };
        let owner = Owner::this_process();
        store.heartbeat(&owner, Millis(0), TTL).await.unwrap();
        let queue = store.work_queue().unwrap();
        let none = BTreeMap::new();
        for index in 0..200 {
            offer(&*queue, &owner.id, "cap", &none, "", &format!("t{index}")).await;
        }
        let mut takers = Vec::new();
        for _ in 0..4 {
            let replica = Arc::new(replica(&schema).await);
            takers.push(tokio::spawn(async move {
                let queue = replica.work_queue().unwrap();
                let capabilities = caps(&["cap"]);
                let none = BTreeMap::new();
                let mut mine = Vec::new();
                loop {
                    let room = Room {
                        capabilities: &capabilities,
                        labels: &none,
                        free: 7,
                    };
                    let taken = queue.take("taker", room).await.unwrap();
                    if taken.is_empty() {
                        return mine;
                    }
                    mine.extend(tasks(&taken));
                }
            }));
        }
        let mut all = Vec::new();
        for taker in takers {
            all.extend(taker.await.unwrap());
        }
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!((count, all.len()), (200, 200), "each attempt taken once");
    }

    #[tokio::test]
    async fn fairness_keys_take_turns_and_priority_orders_within_a_key() {
        let Some((store, _schema)) = store().await else {
            return;
        };
        let owner = Owner::this_process();
        store.heartbeat(&owner, Millis(0), TTL).await.unwrap();
        let queue = store.work_queue().unwrap();
        let none = BTreeMap::new();
        for index in 0..20 {
            offer(
                &*queue,
                &owner.id,
                "cap",
                &none,
                "big",
                &format!("big{index}"),
            )
            .await;
        }
        for index in 0..2 {
            offer(
                &*queue,
                &owner.id,
                "cap",
                &none,
                "small",
                &format!("small{index}"),
            )
            .await;
        }
        assert_eq!(queue.reprioritize("run", "big7", 5).await.unwrap(), 1);
        let capabilities = caps(&["cap"]);
        let room = Room {
            capabilities: &capabilities,
            labels: &none,
            free: 4,
        };
        let mut taken = tasks(&queue.take("taker", room).await.unwrap());
        taken.sort();
        assert_eq!(taken, ["big0", "big7", "small0", "small1"]);
    }

    #[tokio::test]
    async fn a_dead_owner_s_attempts_leave_and_a_dead_taker_s_end_as_lost() {
        let Some((store, _schema)) = store().await else {
            return;
        };
        let (alive, dead) = (Owner::this_process(), Owner::this_process());
        store.heartbeat(&alive, Millis(0), TTL).await.unwrap();
        store
            .heartbeat(&dead, Millis(0), Duration::from_secs(1))
            .await
            .unwrap();
        let queue = store.work_queue().unwrap();
        let none = BTreeMap::new();
        let kept = offer(&*queue, &alive.id, "cap", &none, "", "kept").await;
        let orphan = offer(&*queue, &dead.id, "cap", &none, "", "orphan").await;
        let capabilities = caps(&["cap"]);
        let room = Room {
            capabilities: &capabilities,
            labels: &none,
            free: 1,
        };
        // The dead process takes the live one's attempt, then stops.
        let taken = queue.take(&dead.id, room).await.unwrap();
        assert_eq!(tasks(&taken), ["kept"]);
        let lost = json!({ "lost": true });
        queue.sweep(Millis(500), &lost).await.unwrap();
        assert!(
            queue.ended(&alive.id).await.unwrap().is_empty(),
            "still in time"
        );

        queue.sweep(Millis(5_000), &lost).await.unwrap();
        assert!(!queue.withdraw(orphan).await.unwrap(), "its owner is gone");
        let ended: Vec<(i64, Value)> = queue.ended(&alive.id).await.unwrap();
        assert_eq!(ended, [(kept, lost)]);
    }

    #[tokio::test]
    async fn an_attempt_taken_back_cannot_be_finished_and_one_given_back_waits_again() {
        let Some((store, _schema)) = store().await else {
            return;
        };
        let owner = Owner::this_process();
        store.heartbeat(&owner, Millis(0), TTL).await.unwrap();
        let queue = store.work_queue().unwrap();
        let none = BTreeMap::new();
        let capabilities = caps(&["cap"]);
        let room = Room {
            capabilities: &capabilities,
            labels: &none,
            free: 1,
        };
        let ticket = offer(&*queue, &owner.id, "cap", &none, "", "a").await;
        queue.take("taker", room).await.unwrap();
        queue.give_back(ticket).await.unwrap();
        assert!(queue.is_waiting(ticket).await.unwrap());
        assert_eq!(queue.take("taker", room).await.unwrap().len(), 1);
        assert!(queue.withdraw(ticket).await.unwrap());
        assert!(queue.held("taker").await.unwrap().is_empty());
        assert!(!queue.finish(ticket, &json!({})).await.unwrap());
        assert!(queue.ended(&owner.id).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_offer_rings_the_other_replicas() {
        let Some((first, schema)) = store().await else {
            return;
        };
        let second = replica(&schema).await;
        let owner = Owner::this_process();
        first.heartbeat(&owner, Millis(0), TTL).await.unwrap();
        let listening = second.work_queue().unwrap();
        let offering = first.work_queue().unwrap();
        // The listener connects, then rings once for what it may have missed.
        tokio::time::timeout(std::time::Duration::from_secs(10), listening.notified())
            .await
            .unwrap();
        let waiting = tokio::spawn(async move {
            let started = std::time::Instant::now();
            listening.notified().await;
            started.elapsed()
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        offer(&*offering, &owner.id, "cap", &BTreeMap::new(), "", "a").await;
        let waited = waiting.await.unwrap();
        assert!(
            waited < std::time::Duration::from_secs(1),
            "woken by the notification, not the one-second fallback: {waited:?}"
        );
    }
}
