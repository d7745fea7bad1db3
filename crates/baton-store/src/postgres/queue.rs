//! The shared worker queue on PostgreSQL: the `work` table. Every call is
//! one statement outside the writer's group commit: the queue is a
//! hand-off between replicas, not a record of the run (the run's events
//! say what ran), so it need not wait for a group. Takers lock with
//! `FOR UPDATE SKIP LOCKED`, so replicas taking at once never block on or
//! take one another's rows. Offers and ends notify `baton_changes` with
//! `SCHEMA work`, which wakes the other replicas' dispatchers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use baton_core::run::Millis;
use serde_json::Value;
use tokio::sync::Notify;

use super::connection::Database;
use super::reads::{Column, Reader};
use crate::Result;
use crate::queue::{Offer, Room, Taken, WorkQueue};

/// The payload suffix of a notification about the queue.
pub(crate) const WORK_NOTE: &str = " work";

const NOTE: &str = "pg_notify('baton_changes', current_schema() || ' work')";

/// The `work` table of one database.
pub(crate) struct Queue {
    pub(crate) database: Arc<Database>,
    /// Rung by the change feed's listener at each notification about the
    /// queue.
    pub(crate) bell: Arc<Notify>,
    /// The longest [`WorkQueue::notified`] waits without a notification.
    pub(crate) interval: Duration,
}

impl Queue {
    async fn reader(&self) -> Result<Reader<'_>> {
        Reader::of(&self.database).await
    }
}

fn as_millis(now: Millis) -> i64 {
    i64::try_from(now.0).unwrap_or(i64::MAX)
}

fn labels_json(labels: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect(),
    )
}

#[async_trait]
impl WorkQueue for Queue {
    async fn offer(&self, owner: &str, offer: Offer<'_>, now: Millis) -> Result<i64> {
        let labels = labels_json(offer.labels);
        let rows = self
            .reader()
            .await?
            .query(
                &format!(
                    "WITH added AS (
                        INSERT INTO work (owner, capability, labels, fairness_key, priority,
                                          run_id, task_id, item, queued_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ticket)
                     SELECT ticket, {NOTE}::text FROM added"
                ),
                &[
                    &owner,
                    &offer.capability,
                    &labels,
                    &offer.fairness_key,
                    &offer.priority,
                    &offer.run_id,
                    &offer.task_id,
                    offer.item,
                    &as_millis(now),
                ],
            )
            .await?;
        let row = rows.first().ok_or_else(|| {
            self.database
                .failure_message("an offered attempt was not kept")
        })?;
        row.at(0)
    }

    async fn withdraw(&self, ticket: i64) -> Result<bool> {
        let deleted = self
            .reader()
            .await?
            .execute("DELETE FROM work WHERE ticket = $1", &[&ticket])
            .await?;
        Ok(deleted > 0)
    }

    async fn is_waiting(&self, ticket: i64) -> Result<bool> {
        let rows = self
            .reader()
            .await?
            .query(
                "SELECT 1 FROM work WHERE ticket = $1 AND taken_by IS NULL",
                &[&ticket],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn take(&self, taker: &str, room: Room<'_>) -> Result<Vec<Taken>> {
        if room.free == 0 || room.capabilities.is_empty() {
            return Ok(Vec::new());
        }
        let labels = labels_json(room.labels);
        // Keys take turns: each key's first waiting attempt comes before
        // any key's second.
        let rows = self
            .reader()
            .await?
            .query(
                "WITH candidates AS (
                    SELECT ticket, row_number() OVER (
                        PARTITION BY fairness_key ORDER BY priority DESC, ticket) AS turn
                    FROM work
                    WHERE taken_by IS NULL AND capability = ANY($2) AND labels <@ $3),
                 chosen AS (
                    SELECT work.ticket FROM work JOIN candidates USING (ticket)
                    WHERE work.taken_by IS NULL
                    ORDER BY candidates.turn, work.priority DESC, work.ticket
                    LIMIT $4
                    FOR UPDATE OF work SKIP LOCKED)
                 UPDATE work SET taken_by = $1 FROM chosen WHERE work.ticket = chosen.ticket
                 RETURNING work.ticket, work.item, work.queued_at",
                &[&taker, &room.capabilities, &labels, &i64::from(room.free)],
            )
            .await?;
        let mut taken = rows
            .iter()
            .map(|row| {
                Ok(Taken {
                    ticket: row.at(0)?,
                    item: row.at(1)?,
                    queued_at: Millis(u64::try_from(row.at::<i64>(2)?).unwrap_or_default()),
                })
            })
            .collect::<Result<Vec<Taken>>>()?;
        taken.sort_by_key(|taken| taken.ticket);
        Ok(taken)
    }

    async fn give_back(&self, ticket: i64) -> Result<()> {
        self.reader()
            .await?
            .query(
                &format!(
                    "UPDATE work SET taken_by = NULL WHERE ticket = $1 AND ended IS NULL
                     RETURNING {NOTE}::text"
                ),
                &[&ticket],
            )
            .await?;
        Ok(())
    }

    async fn finish(&self, ticket: i64, ended: &Value) -> Result<bool> {
        let rows = self
            .reader()
            .await?
            .query(
                &format!(
                    "UPDATE work SET ended = $2 WHERE ticket = $1 AND ended IS NULL
                     RETURNING {NOTE}::text"
                ),
                &[&ticket, ended],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn ended(&self, owner: &str) -> Result<Vec<(i64, Value)>> {
        let rows = self
            .reader()
            .await?
            .query(
                "DELETE FROM work WHERE owner = $1 AND ended IS NOT NULL RETURNING ticket, ended",
                &[&owner],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.at(0)?, row.at(1)?)))
            .collect()
    }

    async fn held(&self, taker: &str) -> Result<Vec<i64>> {
        let rows = self
            .reader()
            .await?
            .query(
                "SELECT ticket FROM work WHERE taken_by = $1 AND ended IS NULL",
                &[&taker],
            )
            .await?;
        rows.iter().map(|row| row.at(0)).collect()
    }

    async fn sweep(&self, now: Millis, lost: &Value) -> Result<()> {
        let reader = self.reader().await?;
        let now = as_millis(now);
        reader
            .execute(
                "DELETE FROM work WHERE NOT EXISTS (
                    SELECT 1 FROM owners WHERE owners.id = work.owner AND owners.expires_at >= $1)",
                &[&now],
            )
            .await?;
        reader
            .query(
                &format!(
                    "UPDATE work SET ended = $2
                     WHERE taken_by IS NOT NULL AND ended IS NULL AND NOT EXISTS (
                        SELECT 1 FROM owners WHERE owners.id = work.taken_by
                                               AND owners.expires_at >= $1)
                     RETURNING {NOTE}::text"
                ),
                &[&now, lost],
            )
            .await?;
        Ok(())
    }

    async fn reprioritize(&self, run_id: &str, task_id: &str, priority: i32) -> Result<usize> {
        let changed = self
            .reader()
            .await?
            .execute(
                "UPDATE work SET priority = $3
                 WHERE run_id = $1 AND task_id = $2 AND taken_by IS NULL",
                &[&run_id, &task_id, &priority],
            )
            .await?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    async fn notified(&self) {
        let _ = tokio::time::timeout(self.interval, self.bell.notified()).await;
    }
}
