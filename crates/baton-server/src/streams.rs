//! Events on Redis Streams (`[events] redis = "redis://..."`): every event
//! the store appends is published, in feed order, to a global stream
//! (`PREFIX:events`) and to its run's (`PREFIX:run:RUN`), each entry
//! carrying the event's feed id (`POSITION:INDEX`, what the SSE feed calls
//! it), its run, its type and the event as JSON, so consumers can drop
//! what they saw twice by id. Streams are trimmed to about `max_len`.
//!
//! An entry's stream id is its feed id too (`POSITION-INDEX`), so Redis
//! refuses an entry twice: when Redis is away the publisher falls behind,
//! and when it is back the publisher goes on from the newest entry of the
//! global stream, with no gap and no entry twice. Redis being down never
//! stops a run: runs write to the store, and this only reads it.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::AppState;
use crate::following::{Cursor, Item, follow_buffered};

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
}

/// Entries written in one transaction at most.
const PAGE: usize = 4096;

/// Milliseconds a publisher waits after finding another replica ahead.
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
                tracing::warn!(
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
                        tracing::warn!(
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

/// Why publishing stopped, when Redis did not fail.
enum Stopped {
    FeedEnded,
    /// Another publisher (another replica) had written a whole page
    /// already: go on from where the streams are now.
    Overtaken,
}

/// Publishes from where the global stream stands until Redis fails (an
/// error: reconnect and go on from there), another publisher is found
/// ahead, or the feed ends. Every entry's stream id is its event's feed
/// id (`POSITION-INDEX`), so Redis itself refuses an entry a stream
/// already has: of the replicas that publish to one Redis, each event
/// lands once in each stream, without a transaction. Entries are written
/// in feed order, the global stream's before its run's, so after a broken
/// connection at most the newest global entry lacks its run's copy: the
/// publisher starts again at that entry. While Redis takes a page, the
/// next one is read and encoded.
async fn publish_from_position(
    app: &AppState,
    client: &redis::Client,
    settings: &RedisEvents,
) -> redis::RedisResult<Stopped> {
    let mut connection = client.get_multiplexed_async_connection().await?;
    let cursor = match newest(&mut connection, &settings.global_stream()).await? {
        None => Cursor::default(),
        Some((position, 0)) => Cursor::after_batch(position.saturating_sub(1)),
        Some((position, index)) => {
            Cursor::parse(&format!("{position}:{}", index - 1)).unwrap_or_default()
        }
    };
    let mut items = follow_buffered(app.clone(), cursor, None, PAGE);
    let mut next = next_page(&mut items)
        .await
        .map(|page| encoded(settings, &page));
    while let Some((pipe, last)) = next {
        // One page in flight at a time keeps them in feed order (an entry
        // written after a later one would be refused). The next page is
        // read while Redis takes this one, but only while it does: a write
        // that fails must be answered at once, not when the next event
        // comes, which in a quiet system may be never.
        let mut upcoming = None;
        let written = {
            let write = pipe.query_async::<Vec<redis::RedisResult<redis::Value>>>(&mut connection);
            tokio::pin!(write);
            loop {
                tokio::select! {
                    written = &mut write => break written,
                    // `recv` gives up nothing when dropped, so the page
                    // is either whole here or still in the channel.
                    page = next_page(&mut items), if upcoming.is_none() => {
                        upcoming = Some(page.map(|page| encoded(settings, &page)));
                    }
                }
            }
        };
        let (added, refused) = tally(written?)?;
        if added == 0 && refused > 0 {
            // Another publisher wrote all of it. Follow on from where it
            // is if it is further on; this page may just be the entry
            // this one started again at.
            let ahead = newest(&mut connection, &settings.global_stream()).await?;
            if ahead > place(&last) {
                return Ok(Stopped::Overtaken);
            }
        }
        next = match upcoming {
            Some(page) => page,
            None => next_page(&mut items)
                .await
                .map(|page| encoded(settings, &page)),
        };
    }
    Ok(Stopped::FeedEnded)
}

/// How many events a page added and how many entries were refused as
/// already there; an error if Redis failed an entry for another reason.
fn tally(written: Vec<redis::RedisResult<redis::Value>>) -> redis::RedisResult<(u64, u64)> {
    let mut added = 0u64;
    let mut refused = 0u64;
    // Two entries per event: the global stream's, then its run's.
    for (index, result) in written.into_iter().enumerate() {
        match result {
            Ok(_) if index % 2 == 0 => added += 1,
            Ok(_) => {}
            Err(error) if already_there(&error) => refused += 1,
            Err(error) => return Err(error),
        }
    }
    metrics::counter!("baton_redis_events_published_total").increment(added);
    Ok((added, refused))
}

/// Whether Redis refused an entry because its stream holds that id or a
/// later one: another publisher wrote it.
fn already_there(error: &redis::RedisError) -> bool {
    error.to_string().contains("equal or smaller")
}

/// A page as one pipeline: each event to the global stream, then to its
/// run's, under its feed id; with the feed id of its last event.
fn encoded(settings: &RedisEvents, page: &[Item]) -> (redis::Pipeline, String) {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let global = settings.global_stream();
    for item in page {
        let run = item.data["run_id"].as_str().unwrap_or_default();
        let event = item.data.to_string();
        let id = item.id.replacen(':', "-", 1);
        for stream in [global.as_str(), settings.run_stream(run).as_str()] {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(settings.max_len)
                .arg(&id)
                .arg("id")
                .arg(&item.id)
                .arg("run")
                .arg(run)
                .arg("type")
                .arg(&item.kind)
                .arg("event")
                .arg(&event);
        }
    }
    let last = page.last().map(|item| item.id.clone()).unwrap_or_default();
    (pipe, last)
}

/// A feed id, `POSITION:INDEX`, as a pair that orders like the feed.
pub(crate) fn place(id: &str) -> Option<(u64, u64)> {
    let (position, index) = id.split_once(':')?;
    Some((position.parse().ok()?, index.parse().ok()?))
}

/// The feed id of the newest entry of `stream`; none when it is empty.
pub(crate) async fn newest(
    connection: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> redis::RedisResult<Option<(u64, u64)>> {
    use redis::AsyncCommands;
    let reply: redis::streams::StreamRangeReply =
        connection.xrevrange_count(stream, "+", "-", 1).await?;
    Ok(reply
        .ids
        .into_iter()
        .next()
        .and_then(|entry| place(&entry.get::<String>("id")?)))
}

/// The next events, as many as are there up to [`PAGE`], waiting for one.
async fn next_page(items: &mut mpsc::Receiver<Item>) -> Option<Vec<Item>> {
    let first = items.recv().await?;
    Some(rest_of_page(first, items))
}

/// A page starting with `first`, with what else is there up to [`PAGE`].
fn rest_of_page(first: Item, items: &mut mpsc::Receiver<Item>) -> Vec<Item> {
    let mut page = vec![first];
    while page.len() < PAGE {
        match items.try_recv() {
            Ok(item) => page.push(item),
            Err(_) => break,
        }
    }
    page
}
