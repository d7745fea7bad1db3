//! Following the store's feed of every run's events: from a place in it
//! ([`Cursor`], read from an event id `POSITION:INDEX`), then each batch
//! as it is appended, woken by the store's change feed. What the event
//! streams and the Redis publisher send.

use std::collections::HashMap;
use std::sync::Arc;

use baton_core::Valid;
use baton_engine::RunEvent;
use baton_store::{Change, FeedBatch};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use crate::AppState;
use crate::checking;
use crate::problem::ApiError;

/// Batches read from the store at a time.
const PAGE: usize = 256;

/// Where a stream starts: after event `index` of the batch at `position`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Cursor {
    position: u64,
    /// Events of that batch already seen; `None` once it is all seen.
    seen: Option<u32>,
}

impl Cursor {
    /// The place after the whole batch at `position`.
    pub(crate) fn after_batch(position: u64) -> Cursor {
        Cursor {
            position,
            seen: None,
        }
    }

    /// The place `(POSITION, INDEX)` of the last event it has seen (any
    /// index at a position whose batch it has seen whole).
    pub(crate) fn last_seen(&self) -> (u64, u64) {
        match self.seen {
            Some(seen) => (self.position, u64::from(seen).saturating_sub(1)),
            None => (self.position, u64::MAX),
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Cursor, ApiError> {
        let malformed = || {
            ApiError::BadRequest(format!(
                "`{text}` is not an event id: ids read POSITION:INDEX"
            ))
        };
        let (position, index) = text.trim().split_once(':').ok_or_else(malformed)?;
        let position: u64 = position.parse().map_err(|_| malformed())?;
        let index: u32 = index.parse().map_err(|_| malformed())?;
        Ok(Cursor {
            position,
            seen: Some(index.saturating_add(1)),
        })
    }
}

/// One event for a client: its id, its type, and the event as JSON.
pub(crate) struct Item {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) data: Value,
}

/// Every event after `cursor` (of `run`, or of every run), in feed order,
/// and those appended later, for as long as the receiver is held.
pub(crate) fn follow(app: AppState, cursor: Cursor, run: Option<String>) -> mpsc::Receiver<Item> {
    follow_buffered(app, cursor, run, 256)
}

/// [`follow`], with up to `buffered` items read ahead of the receiver: a
/// reader that takes them in large pages gets large pages.
pub(crate) fn follow_buffered(
    app: AppState,
    cursor: Cursor,
    run: Option<String>,
    buffered: usize,
) -> mpsc::Receiver<Item> {
    let (sender, receiver) = mpsc::channel(buffered);
    let changes = app.engine.store().changes();
    let follower = Follower {
        app,
        cursor,
        run,
        valids: HashMap::new(),
        sender,
    };
    tokio::spawn(follower.run(changes));
    receiver
}

struct Follower {
    app: AppState,
    cursor: Cursor,
    run: Option<String>,
    /// Checked workflows of the runs seen, to name tasks by id.
    valids: HashMap<String, Option<Arc<Valid>>>,
    sender: mpsc::Sender<Item>,
}

impl Follower {
    /// Reads the feed after the cursor whenever the store says a batch
    /// past it was appended, by this process or another.
    async fn run(mut self, mut changes: broadcast::Receiver<Change>) {
        loop {
            loop {
                // The batch the cursor is inside comes again, its seen
                // events skipped.
                let after = match self.cursor.seen {
                    Some(_) => self.cursor.position.saturating_sub(1),
                    None => self.cursor.position,
                };
                let Ok(batches) = self.app.engine.store().feed(after, PAGE).await else {
                    break;
                };
                let full = batches.len() == PAGE;
                for batch in batches {
                    if !self.send(batch).await {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
            loop {
                tokio::select! {
                    changed = changes.recv() => match changed {
                        Ok(Change::Appended { position, .. }) if position >= self.cursor.position => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = self.sender.closed() => return,
                }
            }
        }
    }

    /// Sends a batch's events past the cursor; false once the client left.
    async fn send(&mut self, batch: FeedBatch) -> bool {
        let skip = match self.cursor.seen {
            Some(seen) if batch.position == self.cursor.position => seen as usize,
            _ => 0,
        };
        self.cursor = Cursor {
            position: batch.position,
            seen: None,
        };
        if self.run.as_ref().is_some_and(|run| *run != batch.run_id) {
            return true;
        }
        let valid = self.valid(&batch.run_id).await;
        for (index, event) in batch.events.into_iter().enumerate().skip(skip) {
            let run_event = RunEvent {
                seq: batch.first_seq + index as u64,
                event,
            };
            let mut data = match &valid {
                Some(valid) => run_event.json(valid),
                None => serde_json::to_value(&run_event.event).unwrap_or_default(),
            };
            data["run_id"] = Value::from(batch.run_id.as_str());
            let item = Item {
                id: format!("{}:{index}", batch.position),
                kind: data["type"].as_str().unwrap_or("event").to_owned(),
                data,
            };
            if self.sender.send(item).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn valid(&mut self, run: &str) -> Option<Arc<Valid>> {
        if self.valids.len() > 4096 {
            self.valids.clear();
        }
        if let Some(valid) = self.valids.get(run) {
            return valid.clone();
        }
        let checked = match self.app.engine.store().run(run).await {
            Ok(record) => checking::workflow(Arc::unwrap_or_clone(record.workflow))
                .await
                .ok()
                .and_then(Result::ok)
                .map(Arc::new),
            Err(_) => None,
        };
        self.valids.insert(run.to_owned(), checked.clone());
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_reads_back_as_the_place_after_it() {
        assert_eq!(
            Cursor::parse("12:3").unwrap(),
            Cursor {
                position: 12,
                seen: Some(4)
            }
        );
        assert!(Cursor::parse("12").is_err());
        assert!(Cursor::parse("a:1").is_err());
    }
}
