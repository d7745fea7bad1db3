//! `baton bench sse`: how long an event takes from the replica that drives
//! a run to a client of another replica's event stream. Two replicas of
//! this binary share a fresh PostgreSQL schema; a client follows
//! `/api/v1/events` on the second while runs of chained no-op tasks run
//! on the first. An event's latency is the client's clock when the event
//! arrives less the event's own `at`, which the engine stamps before it
//! appends it: it covers the append's commit, the notification, the
//! second replica's read of the feed and the stream, in whole
//! milliseconds (both clocks are this machine's). With `--redis`, both
//! replicas publish to Redis Streams and the second's stream reads from
//! there.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Value, json};

use crate::figures::{create_schema, drop_schema, quantile};
use crate::replicas::replica;

pub(crate) async fn sse(
    url: &str,
    redis: Option<&str>,
    runs: usize,
    tasks: usize,
) -> anyhow::Result<()> {
    let http = baton_engine::http_client().build()?;
    let schema = format!("sse_{}", std::process::id());
    let store = format!("{url}?options=-c%20search_path%3D{schema}");
    create_schema(url, &schema).await?;
    let dir = tempfile::tempdir()?;
    let prefix = format!("bench-sse-{}", std::process::id());
    let env: Vec<(&str, &str)> = match redis {
        Some(redis) => vec![
            ("BATON_EVENTS__REDIS", redis),
            ("BATON_EVENTS__PREFIX", &prefix),
        ],
        None => Vec::new(),
    };
    let (driver, watched) = (
        replica(&store, dir.path(), false, &env)?,
        replica(&store, dir.path(), false, &env)?,
    );
    let mut stream = http
        .get(format!("http://{}/api/v1/events", watched.address))
        .send()
        .await?
        .error_for_status()?;
    let chain: serde_json::Map<String, Value> = (0..tasks)
        .map(|index| {
            let mut task = json!({"noop": true});
            if index > 0 {
                task["needs"] = json!([format!("t{:04}", index - 1)]);
            }
            (format!("t{index:04}"), task)
        })
        .collect();
    let spec = json!({"name": "watched", "tasks": chain}).to_string();
    let starter = {
        let (http, address) = (http.clone(), driver.address.clone());
        tokio::spawn(async move {
            for _ in 0..runs {
                http.post(format!("http://{address}/api/v1/runs"))
                    .json(&json!({"spec": spec}))
                    .send()
                    .await?
                    .error_for_status()?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut text, mut latencies, mut finished) = (String::new(), Vec::new(), 0);
    while finished < runs {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {finished} of {runs} runs seen to finish"
        );
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.chunk())
            .await
            .context("the stream went quiet")??
            .context("the stream ended")?;
        let arrived = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            let Some(data) = message.lines().find_map(|line| line.strip_prefix("data:")) else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if let Some(at) = event["at"].as_i64() {
                latencies.push(arrived - at);
            }
            if event["type"] == "run_finished" {
                finished += 1;
            }
        }
    }
    starter.await??;
    drop((driver, watched));
    drop_schema(url, &schema).await?;
    if let Some(redis) = redis {
        forget(redis, &prefix).await?;
    }
    latencies.sort_unstable();
    println!(
        "append to an SSE client of another replica{}, {} events of {runs} runs of {tasks} chained \
         no-op tasks: p50 {} ms, p99 {} ms, max {} ms",
        match redis {
            Some(_) => " (both publishing to Redis Streams, the stream read from there)",
            None => " (the stream fed by PostgreSQL's change feed)",
        },
        latencies.len(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    Ok(())
}

/// Deletes the streams the replicas published under `prefix`.
async fn forget(redis: &str, prefix: &str) -> anyhow::Result<()> {
    let mut connection = redis::Client::open(redis)?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut connection)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await?;
    }
    Ok(())
}
