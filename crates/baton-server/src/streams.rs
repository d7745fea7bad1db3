//! Events on Redis Streams (`[events] redis = "redis://..."`): every event
//! the store appends is published, in feed order, to a global stream
//! (`PREFIX:events`) and to its run's (`PREFIX:run:RUN`), each entry
//! carrying the event's feed id (`POSITION:INDEX`, what the SSE feed calls
//! it), its run, its type and the event as JSON, so consumers can drop
//! what they saw twice by id. Streams are trimmed to about `max_len`.
//!
//! Each page of entries is written with the position it reaches in one
//! MULTI/EXEC (`PREFIX:events:position`), so the streams and the position
//! move together: when Redis is away the publisher falls behind, and when
//! it is back the publisher goes on from the position Redis holds, with no
//! gap and no entry twice. Redis being down never stops a run: runs write
//! to the store, and this only reads it.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::AppState;
use crate::following::{Cursor, Item, follow};

/// Where events are published.
#[derive(Clone, Debug)]
pub struct RedisEvents {
    /// `redis://HOST:PORT[/DB]`.
    pub url: String,
    /// The streams' names start with it: `PREFIX:events`, `PREFIX:run:RUN`.
    pub prefix: String,
    /// Entries a stream keeps, about (`MAXLEN ~`).
    pub max_len: usize,
}

impl RedisEvents {
    pub fn global_stream(&self) -> String {
        format!("{}:events", self.prefix)
    }

    pub fn run_stream(&self, run: &str) -> String {
        format!("{}:run:{run}", self.prefix)
    }

    fn position_key(&self) -> String {
        format!("{}:events:position", self.prefix)
    }
}

/// Entries written in one transaction at most.
const PAGE: usize = 4096;

/// Milliseconds a publisher waits after another replica moved the position.
const OVERTAKEN_PAUSE: u64 = 50;

/// Waits between tries to reach Redis.
const BACKOFF: [u64; 5] = [100, 500, 1000, 2000, 5000];

/// Publishes the store's events to Redis for as long as the runtime runs.
/// The server's global event stream reads from Redis from then on.
pub fn publish(app: AppState, settings: RedisEvents) {
    let _ = app.redis.set(settings.clone());
    tokio::spawn(async move {
        let client = match redis::Client::open(settings.url.as_str()) {
            Ok(client) => client,
            Err(error) => {
                eprintln!(
                    "events: `{}` is not a Redis URL ({error}); nothing is published",
                    settings.url
                );
                return;
            }
        };
        let mut tries = 0usize;
        loop {
            match publish_from_position(&app, &client, &settings).await {
                Ok(Stopped::FeedEnded) => return,
                Ok(Stopped::Overtaken) => {
                    // Another replica leads for now: follow on a moment
                    // later rather than race it for every page.
                    tries = 0;
                    tokio::time::sleep(Duration::from_millis(OVERTAKEN_PAUSE)).await;
                }
                Err(error) => {
                    if tries == 0 {
                        eprintln!(
                            "events: Redis at {} is not reachable ({error}); publishing resumes when it is",
                            settings.url
                        );
                    }
                    let wait = BACKOFF[tries.min(BACKOFF.len() - 1)];
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
    });
}

/// Why publishing from a position stopped, when Redis did not fail.
enum Stopped {
    FeedEnded,
    /// Another publisher (another replica) moved the position: go on from
    /// where it is now.
    Overtaken,
}

/// Publishes from the position Redis holds until Redis fails (an error:
/// reconnect and go on from its position), another publisher moves the
/// position, or the feed ends. Each page goes in one MULTI/EXEC with the
/// new position, under WATCH of that position, so of the replicas that
/// publish to one Redis, one writes each page and the others follow on:
/// every event is in the streams once.
async fn publish_from_position(
    app: &AppState,
    client: &redis::Client,
    settings: &RedisEvents,
) -> redis::RedisResult<Stopped> {
    // A connection of its own: WATCH holds for the connection.
    let mut connection = client.get_multiplexed_async_connection().await?;
    let mut position: Option<String> = redis::cmd("GET")
        .arg(settings.position_key())
        .query_async(&mut connection)
        .await?;
    let cursor = position
        .as_deref()
        .and_then(|id| Cursor::parse(id).ok())
        .unwrap_or_default();
    let mut items = follow(app.clone(), cursor, None);
    while let Some(page) = next_page(&mut items).await {
        let _: () = redis::cmd("WATCH")
            .arg(settings.position_key())
            .query_async(&mut connection)
            .await?;
        let now: Option<String> = redis::cmd("GET")
            .arg(settings.position_key())
            .query_async(&mut connection)
            .await?;
        if now != position {
            let _: () = redis::cmd("UNWATCH").query_async(&mut connection).await?;
            return Ok(Stopped::Overtaken);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for item in &page {
            let run = item.data["run_id"].as_str().unwrap_or_default();
            let event = item.data.to_string();
            for stream in [settings.global_stream(), settings.run_stream(run)] {
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(settings.max_len)
                    .arg("*")
                    .arg("id")
                    .arg(&item.id)
                    .arg("run")
                    .arg(run)
                    .arg("type")
                    .arg(&item.kind)
                    .arg("event")
                    .arg(&event)
                    .ignore();
            }
        }
        let last = page.last().map(|item| item.id.clone()).unwrap_or_default();
        pipe.cmd("SET").arg(settings.position_key()).arg(&last);
        // Nil when the position moved since WATCH: nothing was written.
        let written: Option<Vec<String>> = pipe.query_async(&mut connection).await?;
        if written.is_none() {
            return Ok(Stopped::Overtaken);
        }
        position = Some(last);
        metrics::counter!("baton_redis_events_published_total").increment(page.len() as u64);
    }
    Ok(Stopped::FeedEnded)
}

/// The next events, as many as are there up to [`PAGE`], waiting for one.
async fn next_page(items: &mut mpsc::Receiver<Item>) -> Option<Vec<Item>> {
    let first = items.recv().await?;
    let mut page = vec![first];
    while page.len() < PAGE {
        match items.try_recv() {
            Ok(item) => page.push(item),
            Err(_) => break,
        }
    }
    Some(page)
}
