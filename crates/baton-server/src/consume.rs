//! A consumer group member on the published event stream (`baton events
//! --follow --group NAME`): at-least-once delivery with de-duplication by
//! the events' feed ids. Each round it moves entries delivered too often
//! to a dead-letter stream (`PREFIX:events:dead`), takes over entries a
//! dead member left pending past `claim_after` (XAUTOCLAIM), then reads
//! new ones (XREADGROUP); an entry is acknowledged once its handler took
//! it. Started again under the same name, a member first re-reads what it
//! had been given and not acknowledged.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};

use crate::streams::RedisEvents;

/// Who reads, and when an entry is given up on or taken over.
#[derive(Clone, Debug)]
pub struct Consumer {
    pub group: String,
    /// This member's name in the group; the same name resumes its pending
    /// entries.
    pub name: String,
    /// Deliveries after which an entry goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// An entry pending with a member for this long is taken over.
    pub claim_after: Duration,
}

/// What a handler did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Taken: acknowledge it and go on.
    Next,
    /// Taken: acknowledge it and stop.
    Last,
    /// Not taken (its output went nowhere): leave it pending, to be
    /// delivered again, and stop.
    Refused,
}

/// One entry as a member gets it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    /// The event's feed id (`POSITION:INDEX`): the same on a redelivery.
    pub id: String,
    pub run: String,
    pub kind: String,
    /// The event as JSON.
    pub event: String,
}

/// Entries read or claimed at a time.
const COUNT: usize = 100;

/// How long a read waits for new events, in milliseconds.
const BLOCK_MS: u64 = 1000;

/// Feed ids remembered to drop redeliveries of what was handled.
const REMEMBERED: usize = 100_000;

impl RedisEvents {
    /// Where entries delivered too often go.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}:events:dead", self.prefix)
    }
}

/// Reads the global stream as `consumer` until `handle` asks to stop or
/// Redis fails; `handle` gets each event once (a redelivery of one it took
/// is dropped by id), and an entry is acknowledged only once `handle` took
/// it.
pub async fn consume<F, Fut>(
    settings: &RedisEvents,
    consumer: &Consumer,
    mut handle: F,
) -> redis::RedisResult<()>
where
    F: FnMut(Delivered) -> Fut,
    Fut: Future<Output = Handled>,
{
    let client = redis::Client::open(settings.url.as_str())?;
    // A blocking read waits up to `BLOCK`: the answer may take that long.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_millis(BLOCK_MS + 10_000)));
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let stream = settings.global_stream();
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(&consumer.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut connection)
        .await;
    if let Err(error) = created
        && error.code() != Some("BUSYGROUP")
    {
        return Err(error);
    }
    let mut seen = Seen::default();
    // What this member was given before and did not acknowledge.
    let mut from = "0".to_owned();
    loop {
        dead_letters(&mut connection, settings, consumer).await?;
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(&consumer.group)
            .arg(&consumer.name)
            .arg(consumer.claim_after.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(COUNT)
            .query_async(&mut connection)
            .await?;
        let read: StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&consumer.group)
            .arg(&consumer.name)
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&stream)
            .arg(&from)
            .query_async(&mut connection)
            .await?;
        let fresh: Vec<StreamId> = read.keys.into_iter().flat_map(|key| key.ids).collect();
        if from == "0" && fresh.is_empty() {
            from = ">".to_owned();
        }
        for entry in claimed.claimed.into_iter().chain(fresh) {
            let delivered = Delivered {
                id: entry.get("id").unwrap_or_default(),
                run: entry.get("run").unwrap_or_default(),
                kind: entry.get("type").unwrap_or_default(),
                event: entry.get("event").unwrap_or_default(),
            };
            let id = delivered.id.clone();
            let handled = if seen.knows(&id) {
                Handled::Next
            } else {
                handle(delivered).await
            };
            if handled == Handled::Refused {
                return Ok(());
            }
            seen.remember(id);
            let _: i64 = redis::cmd("XACK")
                .arg(&stream)
                .arg(&consumer.group)
                .arg(&entry.id)
                .query_async(&mut connection)
                .await?;
            if handled == Handled::Last {
                return Ok(());
            }
        }
    }
}

/// Moves entries delivered `max_deliveries` times or more to the
/// dead-letter stream, acknowledging them in the group.
async fn dead_letters(
    connection: &mut MultiplexedConnection,
    settings: &RedisEvents,
    consumer: &Consumer,
) -> redis::RedisResult<()> {
    let stream = settings.global_stream();
    let pending: StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(&stream)
        .arg(&consumer.group)
        .arg("-")
        .arg("+")
        .arg(COUNT)
        .query_async(connection)
        .await?;
    for stuck in pending
        .ids
        .into_iter()
        .filter(|pending| pending.times_delivered as u64 >= consumer.max_deliveries)
    {
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(&stuck.id)
            .arg(&stuck.id)
            .query_async(connection)
            .await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(entry) = entries.ids.first() {
            let mut add = redis::cmd("XADD");
            add.arg(settings.dead_letter_stream())
                .arg("MAXLEN")
                .arg("~")
                .arg(settings.max_len)
                .arg("*");
            for field in ["id", "run", "type", "event"] {
                add.arg(field)
                    .arg(entry.get::<String>(field).unwrap_or_default());
            }
            add.arg("group")
                .arg(&consumer.group)
                .arg("deliveries")
                .arg(stuck.times_delivered);
            pipe.add_command(add).ignore();
        }
        pipe.cmd("XACK")
            .arg(&stream)
            .arg(&consumer.group)
            .arg(&stuck.id)
            .ignore();
        pipe.query_async::<()>(connection).await?;
    }
    Ok(())
}

/// The feed ids handled lately, oldest forgotten first.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    fn knows(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn remember(&mut self, id: String) {
        if self.order.len() == REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.ids.insert(id.clone());
        self.order.push_back(id);
    }
}
