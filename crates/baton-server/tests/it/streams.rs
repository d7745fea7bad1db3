//! Events on Redis Streams, against a real `redis-server` this test starts
//! (and kills mid-way): every event published once, in feed order, runs
//! finishing while Redis is down, the publisher catching up without a gap
//! or a duplicate when it is back.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_server::{RedisEvents, publish_to_redis};

use crate::util::{app, follow, start};

/// A `redis-server` of this test's own, keeping its data across a restart.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start(port: u16, dir: &std::path::Path) -> Option<Redis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Redis {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The `id` field of every entry of `stream`, in order.
async fn ids(url: &str, stream: &str) -> Vec<String> {
    let mut connection = connection(url).await;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    entries
        .ids
        .iter()
        .map(|entry| entry.get::<String>("id").unwrap())
        .collect()
}

/// Waits (up to 30 s) until `stream` holds `count` entries.
async fn wait_for(url: &str, stream: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = ids(url, stream).await;
        if ids.len() >= count {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "{stream} holds {} of {count} entries",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const SPEC: &str = "name: published\ntasks:\n  a: {noop: true}\n  b: {run: 'true', needs: [a]}\n  c: {run: 'true', needs: [a]}\n";

#[tokio::test]
async fn every_event_reaches_redis_once_even_across_a_redis_outage() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: redis-server is not installed here (`.ci/run` installs and starts it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut redis = Redis::start(port, data.path()).unwrap();
    let url = redis.url();
    let app = app(dir.path());
    let settings = RedisEvents {
        url: url.clone(),
        prefix: format!("test{port}"),
        max_len: 100_000,
    };
    publish_to_redis(app.clone(), settings.clone());

    let first = start(&app, SPEC).await;
    let first_events = follow(&app, &first).await.len();
    let global = settings.global_stream();
    wait_for(&url, &global, first_events).await;

    redis.kill();
    let second = start(&app, SPEC).await;
    let second_events = follow(&app, &second).await;
    assert_eq!(
        second_events.last().unwrap().kind,
        "run_finished",
        "a run finishes while Redis is down"
    );

    let redis = Redis::start(port, &redis.dir.clone()).unwrap();
    let all = wait_for(&url, &global, first_events + second_events.len()).await;
    // Nothing more arrives: no entry twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all_again = ids(&url, &global).await;
    assert_eq!(all_again.len(), all.len(), "no event published twice");
    let unique: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "ids are unique");
    let positions: Vec<(u64, u32)> = all
        .iter()
        .map(|id| {
            let (position, index) = id.split_once(':').unwrap();
            (position.parse().unwrap(), index.parse().unwrap())
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "in feed order"
    );
    let per_run = ids(&url, &settings.run_stream(&second)).await;
    assert_eq!(per_run.len(), second_events.len());

    // A consumer group reads each event once, by its id.
    let mut connection = connection(&redis.url()).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&global)
        .arg("readers")
        .arg("0")
        .query_async(&mut connection)
        .await
        .unwrap();
    let mut read = Vec::new();
    loop {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("readers")
            .arg("one")
            .arg("COUNT")
            .arg(7)
            .arg("STREAMS")
            .arg(&global)
            .arg(">")
            .query_async(&mut connection)
            .await
            .unwrap();
        let entries: Vec<_> = reply.keys.into_iter().flat_map(|key| key.ids).collect();
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            read.push(entry.get::<String>("id").unwrap());
            let _: i64 = redis::cmd("XACK")
                .arg(&global)
                .arg("readers")
                .arg(&entry.id)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    }
    assert_eq!(read, all, "every event once, in order");
}

/// A key prefix of its own on the shared Redis, whose keys are deleted
/// when it is dropped, whatever the test did.
struct Prefix {
    settings: RedisEvents,
}

impl Prefix {
    fn new(url: &str) -> Prefix {
        Prefix {
            settings: RedisEvents {
                url: url.to_owned(),
                prefix: format!("test-streams-{}", uuid::Uuid::new_v4().simple()),
                max_len: 100_000,
            },
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let url = self.settings.url.clone();
        let pattern = format!("{}:*", self.settings.prefix);
        // A drop cannot await; a thread of its own deletes the keys.
        let _ = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(url) else {
                return;
            };
            let Ok(mut connection) = client.get_connection() else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut connection)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut connection);
            }
        })
        .join();
    }
}

/// The shared Redis of the test run (`BATON_TEST_REDIS`), or none.
fn shared_redis() -> Option<String> {
    let url = std::env::var("BATON_TEST_REDIS").ok();
    if url.is_none() {
        eprintln!("SKIPPED: BATON_TEST_REDIS is not set (`.ci/run` sets it and starts Redis)");
    }
    url
}

#[tokio::test]
async fn a_group_member_takes_over_a_dead_member_s_events_and_gives_up_on_stuck_ones() {
    let Some(url) = shared_redis() else { return };
    let prefix = Prefix::new(&url);
    let settings = prefix.settings.clone();
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    publish_to_redis(app.clone(), settings.clone());
    let run = start(&app, SPEC).await;
    let count = follow(&app, &run).await.len();
    let global = settings.global_stream();
    let all = wait_for(&url, &global, count).await;

    // A member that read two events and died before acknowledging them.
    let mut connection = connection(&url).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&global)
        .arg("hooks")
        .arg("0")
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("hooks")
        .arg("dead")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg(&global)
        .arg(">")
        .query_async(&mut connection)
        .await
        .unwrap();
    let member = baton_server::Consumer {
        group: "hooks".to_owned(),
        name: "alive".to_owned(),
        max_deliveries: 5,
        claim_after: Duration::from_millis(10),
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut got = Vec::new();
    let reading = baton_server::consume_events(&settings, &member, |delivered| {
        got.push(delivered.id);
        let next = if got.len() < count {
            baton_server::Handled::Next
        } else {
            baton_server::Handled::Last
        };
        async move { next }
    });
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("every event came")
        .unwrap();
    let mut sorted = got.clone();
    sorted.sort_by_key(|id| {
        let (position, index) = id.split_once(':').unwrap();
        (
            position.parse::<u64>().unwrap(),
            index.parse::<u32>().unwrap(),
        )
    });
    assert_eq!(sorted, all, "each event once, the dead member's included");

    // An event delivered again and again goes to the dead-letter stream.
    let again = start(&app, "name: stuck\ntasks:\n  a: {noop: true}\n").await;
    let more = follow(&app, &again).await.len();
    let everything = wait_for(&url, &global, count + more).await;
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("hooks")
        .arg("flaky")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&global)
        .arg(">")
        .query_async(&mut connection)
        .await
        .unwrap();
    let stuck = read.keys[0].ids[0].clone();
    for _ in 0..3 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&global)
            .arg("hooks")
            .arg("flaky")
            .arg(0)
            .arg(&stuck.id)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let strict = baton_server::Consumer {
        max_deliveries: 3,
        ..member
    };
    let mut later = Vec::new();
    let reading = baton_server::consume_events(&settings, &strict, |delivered| {
        later.push(delivered.id);
        let next = if later.len() < more - 1 {
            baton_server::Handled::Next
        } else {
            baton_server::Handled::Last
        };
        async move { next }
    });
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("the other events came")
        .unwrap();
    let stuck_id: String = stuck.get("id").unwrap();
    assert!(!later.contains(&stuck_id), "the stuck event is not handled");
    assert_eq!(later.len(), more - 1);
    let dead = ids(&url, &settings.dead_letter_stream()).await;
    assert_eq!(dead, [stuck_id]);
    assert_eq!(everything.len(), count + more);
}

#[tokio::test]
async fn the_event_stream_reads_from_redis_once_the_server_publishes_there() {
    let Some(url) = shared_redis() else { return };
    let prefix = Prefix::new(&url);
    let settings = prefix.settings.clone();
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    publish_to_redis(app.clone(), settings.clone());
    let run = start(&app, SPEC).await;
    let events = follow(&app, &run).await.len();
    let published = wait_for(&url, &settings.global_stream(), events).await;
    // An entry only Redis holds: if the stream shows it, the stream reads
    // from Redis.
    let mut connection = connection(&url).await;
    let marker = serde_json::json!({"type": "marker", "run_id": run}).to_string();
    let _: String = redis::cmd("XADD")
        .arg(settings.global_stream())
        .arg("*")
        .arg("id")
        .arg("999999999:0")
        .arg("run")
        .arg(&run)
        .arg("type")
        .arg("marker")
        .arg("event")
        .arg(&marker)
        .query_async(&mut connection)
        .await
        .unwrap();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        crate::feed::read(&app, None, events + 1),
    )
    .await
    .expect("every event and the marker within the deadline");
    let ids: Vec<&str> = read.iter().map(|(id, _)| id.as_str()).collect();
    let mut expected: Vec<&str> = published.iter().map(String::as_str).collect();
    expected.push("999999999:0");
    assert_eq!(ids, expected, "the store's events once each, then Redis's");
    assert_eq!(read[events].1["type"], "marker");
    // A client resuming after the run's last event gets only the marker.
    let resumed = tokio::time::timeout(
        Duration::from_secs(30),
        crate::feed::read(&app, Some(published.last().unwrap()), 1),
    )
    .await
    .expect("the marker within the deadline");
    assert_eq!(resumed[0].0, "999999999:0");
}

#[tokio::test]
async fn the_event_stream_goes_on_from_the_store_when_redis_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let settings = RedisEvents {
        url: format!("redis://127.0.0.1:{}", free_port()),
        prefix: "unreachable".to_owned(),
        max_len: 1_000,
    };
    publish_to_redis(app.clone(), settings);
    let run = start(&app, SPEC).await;
    let events = follow(&app, &run).await.len();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        crate::feed::read(&app, None, events),
    )
    .await
    .expect("the run's events within the deadline");
    assert_eq!(read.last().unwrap().1["type"], "run_finished");
}

#[tokio::test]
async fn two_replicas_publishing_to_one_redis_write_each_event_once() {
    let Some(url) = shared_redis() else { return };
    let prefix = Prefix::new(&url);
    let settings = prefix.settings.clone();
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    // Two publishers on one store and one prefix: what two replicas of one
    // database configured alike run.
    publish_to_redis(app.clone(), settings.clone());
    publish_to_redis(app.clone(), settings.clone());
    let mut events = 0;
    for _ in 0..5 {
        let run = start(&app, SPEC).await;
        events += follow(&app, &run).await.len();
    }
    let published = wait_for(&url, &settings.global_stream(), events).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = ids(&url, &settings.global_stream()).await;
    assert_eq!(again.len(), events, "each event once: {again:?}");
    let unique: std::collections::BTreeSet<&String> = again.iter().collect();
    assert_eq!(unique.len(), events);
    assert_eq!(again, published);
}
