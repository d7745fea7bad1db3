//! The change feed of a database: a task that wakes when a writer of any
//! replica commits (`LISTEN baton_changes`: every group that appends or
//! leaves a request notifies it with its schema's name) or, should
//! notifications be lost with a broken connection, at the latest every
//! interval; it then reads what the `feed` and `controls` tables gained
//! since it last looked, and publishes it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::connection::Database;
use super::queue::WORK_NOTE;
use super::reads::Reader;
use crate::{CHANGE_BACKLOG, Change, Result};

/// Rows read per look, so a long absence catches up in bounded steps.
const PAGE: i64 = 10_000;

/// A running watcher and its subscribers; both tasks stop with it.
pub(crate) struct Watch {
    pub(crate) changes: broadcast::Sender<Change>,
    tasks: [JoinHandle<()>; 2],
}

impl Watch {
    /// Starts watching after the feed and control positions `since`: what
    /// is committed after them is published.
    /// Notifications about the shared worker queue ring `work`.
    pub(crate) fn start(
        database: Arc<Database>,
        interval: Duration,
        since: (u64, u64),
        work: Arc<Notify>,
    ) -> Watch {
        let (changes, _) = broadcast::channel(CHANGE_BACKLOG);
        let woken = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(Arc::clone(&database), Arc::clone(&woken), work));
        let watcher = Watcher {
            database,
            changes: changes.clone(),
            positions: since,
        };
        let looker = tokio::spawn(watcher.watch(woken, interval));
        Watch {
            changes,
            tasks: [listener, looker],
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Keeps a connection listening, wakes the watcher at each notification
/// for this schema (and rings `work` at each about its worker queue), and
/// connects again (with a pause) whenever it breaks.
async fn listen(database: Arc<Database>, woken: Arc<Notify>, work: Arc<Notify>) {
    loop {
        if let Ok((client, mut connection)) = database.config.connect(tokio_postgres::NoTls).await {
            let (sender, mut notes) = tokio::sync::mpsc::unbounded_channel();
            let pump = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if let AsyncMessage::Notification(note) = message {
                        let _ = sender.send(note.payload().to_owned());
                    }
                }
            });
            let schema = client
                .query_one("SELECT current_schema()", &[])
                .await
                .ok()
                .and_then(|row| row.try_get::<_, Option<String>>(0).ok().flatten());
            if let (Some(schema), Ok(())) =
                (schema, client.batch_execute("LISTEN baton_changes").await)
            {
                // Whatever was committed while this connection was away is
                // looked at now.
                woken.notify_one();
                work.notify_one();
                while let Some(payload) = notes.recv().await {
                    if payload == schema {
                        woken.notify_one();
                    } else if payload.strip_prefix(schema.as_str()) == Some(WORK_NOTE) {
                        work.notify_one();
                    }
                }
            }
            pump.abort();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct Watcher {
    database: Arc<Database>,
    changes: broadcast::Sender<Change>,
    /// The last feed and control positions published.
    positions: (u64, u64),
}

impl Watcher {
    async fn watch(mut self, woken: Arc<Notify>, interval: Duration) {
        loop {
            // A look that fails is tried again at the next wake or tick.
            let _ = self.look().await;
            tokio::select! {
                () = woken.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn look(&mut self) -> Result<()> {
        let reader = Reader::of(&self.database).await?;
        let (mut feed, mut controls) = self.positions;
        loop {
            let (appended, requested) = reader.changes_after(feed, controls, PAGE).await?;
            let full = appended.len() as i64 == PAGE || requested.len() as i64 == PAGE;
            for (position, run, events) in appended {
                feed = position;
                let _ = self.changes.send(Change::Appended {
                    position,
                    run: Arc::from(run),
                    events,
                });
            }
            for (position, run) in requested {
                controls = position;
                let _ = self.changes.send(Change::Requested {
                    run: Arc::from(run),
                });
            }
            self.positions = (feed, controls);
            if !full {
                return Ok(());
            }
        }
    }
}
