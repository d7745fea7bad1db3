//! `baton bench redis`: how fast the store's events reach Redis Streams.
//! A run of `--tasks` no-op tasks is recorded on SQLite first; then the
//! publisher starts from the beginning of the feed and the time until the
//! global stream holds every event is the catch-up rate (each event also
//! goes to its run's stream, so twice the entries are written).

use std::time::{Duration, Instant};

use anyhow::Context;
use baton_server::{AppState, RedisEvents, ServerConfig};
use serde_json::json;

use crate::figures::show;

pub(crate) async fn redis(url: &str, tasks: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = crate::figures::sqlite_engine(dir.path())?;
    let spec = json!({"name": "published", "tasks": (0..tasks)
        .map(|index| (format!("t{index}"), json!({"noop": true})))
        .collect::<serde_json::Map<_, _>>()})
    .to_string();
    let workflow = baton_core::load(&spec, baton_core::Format::Json)
        .workflow
        .context("the generated spec loads")?;
    let report = engine.run(workflow, Default::default()).await?;
    anyhow::ensure!(report.succeeded(), "the run did not succeed");
    let events = engine.events(&report.run_id).await?.len();

    let settings = RedisEvents {
        url: url.to_owned(),
        prefix: format!("bench-{}", unique_suffix()),
        max_len: events * 2,
    };
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let app = AppState::new(
        engine,
        ServerConfig {
            require_keys: false,
            ..ServerConfig::default()
        },
    );
    let clock = Instant::now();
    baton_server::publish_to_redis(app, settings.clone());
    let deadline = clock + Duration::from_secs(600);
    loop {
        let length: usize = redis::cmd("XLEN")
            .arg(settings.global_stream())
            .query_async(&mut connection)
            .await?;
        if length >= events {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {length} of {events} published"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = clock.elapsed();
    println!(
        "redis: {events} events of a {tasks}-task run published in {} = {:.0} events/s (each to the global and its run's stream, each entry under its feed id)",
        show(took),
        events as f64 / took.as_secs_f64()
    );
    let keys = [
        settings.global_stream(),
        settings.run_stream(&report.run_id),
    ];
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut connection)
        .await?;
    Ok(())
}

/// A suffix that keeps concurrent benchmarks' keys apart.
fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}
