//! `/api/v1/events` fed from Redis Streams, when this server publishes
//! there: a subscriber costs the database nothing once it has caught up.
//! A stream starts from the store (the backlog after the client's
//! `Last-Event-ID`, which Redis may have trimmed), then reads the global
//! stream after the entry of the last event it sent, skipping what it has
//! seen: no gap and nothing twice, by the events' feed ids. When Redis
//! cannot be reached, or fails later, the stream goes on from the store.

use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::AppState;
use crate::following::{Cursor, Item, follow};
use crate::streams::{RedisEvents, newest, place};

/// How long the backlog from the store may be quiet before the stream
/// moves to Redis.
const QUIET: Duration = Duration::from_millis(200);

/// Entries read per request, and pages looked back for the hand-over.
const COUNT: usize = 512;
const PAGES_BACK: usize = 8;

/// Every event after `cursor` (of `run`, or of every run), as [`follow`]
/// gives them, mostly from Redis.
pub(crate) fn follow_relayed(
    app: AppState,
    settings: RedisEvents,
    cursor: Cursor,
    run: Option<String>,
) -> mpsc::Receiver<Item> {
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(relay(app, settings, cursor, run, sender));
    receiver
}

async fn relay(
    app: AppState,
    settings: RedisEvents,
    cursor: Cursor,
    run: Option<String>,
    sender: mpsc::Sender<Item>,
) {
    let connection = async {
        let client = redis::Client::open(settings.url.as_str())?;
        client.get_multiplexed_async_connection().await
    };
    let Ok(Ok(mut connection)) = tokio::time::timeout(Duration::from_secs(2), connection).await
    else {
        return forward(follow(app, cursor, run), &sender).await;
    };
    let stream = settings.global_stream();
    // Where the publisher is: the backlog from the store goes at least
    // that far before the stream moves to Redis.
    let published = newest(&mut connection, &stream).await.ok().flatten();
    let mut backlog = follow(app.clone(), cursor, run.clone());
    let mut seen = cursor.last_seen();
    loop {
        match tokio::time::timeout(QUIET, backlog.recv()).await {
            Ok(Some(item)) => {
                let reached = published.is_some_and(|at| place(&item.id) >= Some(at));
                seen = place(&item.id).unwrap_or(seen);
                if sender.send(item).await.is_err() {
                    return;
                }
                if reached {
                    break;
                }
            }
            Ok(None) => return,
            Err(_) => break,
        }
    }
    drop(backlog);
    let Some(mut from) = hand_over(&mut connection, &stream, seen).await else {
        return forward(follow(app, resume(seen), run), &sender).await;
    };
    let options = StreamReadOptions::default().block(5_000).count(COUNT);
    loop {
        let read: redis::RedisResult<StreamReadReply> = connection
            .xread_options(&[&stream], &[&from], &options)
            .await;
        let Ok(read) = read else {
            return forward(follow(app, resume(seen), run), &sender).await;
        };
        for entry in read.keys.into_iter().flat_map(|key| key.ids) {
            from = entry.id.clone();
            let (Some(id), Some(kind), Some(event)) = (
                entry.get::<String>("id"),
                entry.get::<String>("type"),
                entry.get::<String>("event"),
            ) else {
                continue;
            };
            let Some(at) = place(&id) else { continue };
            if at <= seen {
                continue;
            }
            seen = at;
            if run
                .as_deref()
                .is_some_and(|run| entry.get::<String>("run").as_deref() != Some(run))
            {
                continue;
            }
            let data = serde_json::from_str(&event).unwrap_or(Value::Null);
            if sender.send(Item { id, kind, data }).await.is_err() {
                return;
            }
        }
        if sender.is_closed() {
            return;
        }
    }
}

/// Where to resume from the store after the event at `seen`.
fn resume(seen: (u64, u64)) -> Cursor {
    match seen {
        (position, u64::MAX) => Cursor::after_batch(position),
        (position, index) => Cursor::parse(&format!("{position}:{index}")).unwrap_or_default(),
    }
}

/// The Redis id to read after: that of the newest entry at or before the
/// event `seen` (the start of the stream when none is), looking back a
/// few pages at most; none when it is further back than that or Redis
/// fails.
async fn hand_over(
    connection: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    seen: (u64, u64),
) -> Option<String> {
    let mut end = "+".to_owned();
    for _ in 0..PAGES_BACK {
        let reply: StreamRangeReply = connection
            .xrevrange_count(stream, &end, "-", COUNT)
            .await
            .ok()?;
        let Some(oldest) = reply.ids.last().map(|entry| entry.id.clone()) else {
            return Some("0-0".to_owned());
        };
        for entry in &reply.ids {
            if entry
                .get::<String>("id")
                .and_then(|id| place(&id))
                .is_some_and(|at| at <= seen)
            {
                return Some(entry.id.clone());
            }
        }
        if reply.ids.len() < COUNT {
            return Some("0-0".to_owned());
        }
        end = format!("({oldest}");
    }
    None
}

async fn forward(mut items: mpsc::Receiver<Item>, sender: &mpsc::Sender<Item>) {
    while let Some(item) = items.recv().await {
        if sender.send(item).await.is_err() {
            return;
        }
    }
}
