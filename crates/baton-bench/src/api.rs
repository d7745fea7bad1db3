//! `baton bench api`: the server under load from HTTP clients on loopback.
//! It serves a fresh SQLite store (as `baton serve` does, keys off) and
//! measures three things:
//!
//! - many runs at once: `--runs` runs of a 10-task workflow started through
//!   the API together; runs/s to the last finish, and task latency (from a
//!   task's needs ending, or its run starting, to its own end);
//! - start to first task: a run whose first task is an HTTP call back to
//!   the bench, started one at a time; the time from sending `POST
//!   /api/v1/runs` to that call arriving;
//! - `GET /api/v1/runs/{id}` under load, with `wrk` in its own process when
//!   it is installed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Path, State};
use baton_server::{AppState, ServerConfig};
use baton_store::Store;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// One start task, eight in parallel, one join.
const TEN_TASKS: &str = "name: ten
tasks:
  start: {noop: true}
  a: {noop: true, needs: [start]}
  b: {noop: true, needs: [start]}
  c: {noop: true, needs: [start]}
  d: {noop: true, needs: [start]}
  e: {noop: true, needs: [start]}
  f: {noop: true, needs: [start]}
  g: {noop: true, needs: [start]}
  h: {noop: true, needs: [start]}
  join: {noop: true, needs: [a, b, c, d, e, f, g, h]}
";

/// When each run's first task called back, by run id.
#[derive(Clone, Default)]
struct Hits {
    at: Arc<Mutex<HashMap<String, Instant>>>,
    arrived: Arc<Notify>,
}

pub(crate) async fn api(runs: usize, samples: usize, wrk_seconds: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = crate::figures::sqlite_engine(dir.path())?;
    let config = ServerConfig {
        require_keys: false,
        ..ServerConfig::default()
    };
    let app = AppState::new(engine, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/api/v1", listener.local_addr()?);
    tokio::spawn(baton_server::serve(
        listener,
        app.clone(),
        std::future::pending(),
    ));
    let client = baton_engine::http_client()
        .pool_max_idle_per_host(runs)
        .build()?;

    let started = concurrent_runs(&app, &client, &base, runs).await?;
    task_latencies(app.store().as_ref(), &started).await?;
    first_task(&client, &base, samples).await?;
    get_under_load(&base, &started[0], wrk_seconds)?;
    Ok(())
}

/// Starts `runs` runs of the ten-task workflow at once and waits for all.
async fn concurrent_runs(
    app: &AppState,
    client: &reqwest::Client,
    base: &str,
    runs: usize,
) -> anyhow::Result<Vec<String>> {
    let registered = client
        .post(format!("{base}/workflows"))
        .header("content-type", "application/yaml")
        .body(TEN_TASKS)
        .send()
        .await?;
    anyhow::ensure!(
        registered.status().is_success(),
        "cannot register the workflow"
    );
    let clock = Instant::now();
    let posts: Vec<_> = (0..runs)
        .map(|_| {
            let client = client.clone();
            let url = format!("{base}/runs");
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&json!({"workflow": "ten"}))
                    .send()
                    .await?;
                let body: Value = response.error_for_status()?.json().await?;
                anyhow::Ok(body["run_id"].as_str().unwrap_or_default().to_owned())
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(runs);
    for post in posts {
        ids.push(post.await??);
    }
    let accepted = clock.elapsed();
    while app.active_runs() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all = clock.elapsed();
    let store = app.store();
    let mut succeeded = 0;
    for id in &ids {
        if store
            .summary(id)
            .await
            .is_ok_and(|run| run.status == baton_core::run::RunStatus::Succeeded)
        {
            succeeded += 1;
        }
    }
    println!(
        "{runs} concurrent runs x 10 tasks through the API: all accepted in {:.1} ms, all finished in {:.1} ms: {:.0} runs/s, {:.0} tasks/s ({succeeded} succeeded)",
        accepted.as_secs_f64() * 1e3,
        all.as_secs_f64() * 1e3,
        runs as f64 / all.as_secs_f64(),
        (runs * 10) as f64 / all.as_secs_f64(),
    );
    Ok(ids)
}

/// Task latency from the records: a task's end less the moment it could
/// start (its needs' last end, or its run's start). Millisecond stamps.
async fn task_latencies(store: &dyn Store, runs: &[String]) -> anyhow::Result<()> {
    let needs: HashMap<&str, Vec<&str>> = HashMap::from([
        ("start", vec![]),
        ("join", vec!["a", "b", "c", "d", "e", "f", "g", "h"]),
    ]);
    let mut latencies = Vec::new();
    for run in runs {
        let started = store.summary(run).await?.started_at.unwrap_or_default();
        let rows = store.tasks(run).await?;
        let ended: HashMap<&str, u64> = rows
            .iter()
            .filter_map(|row| Some((row.id.as_str(), row.finished_at?.0)))
            .collect();
        for row in &rows {
            let ready = match needs.get(row.id.as_str()) {
                Some(needs) if needs.is_empty() => started.0,
                Some(needs) => needs
                    .iter()
                    .filter_map(|need| ended.get(need))
                    .copied()
                    .max()
                    .unwrap_or(started.0),
                None => ended.get("start").copied().unwrap_or(started.0),
            };
            if let Some(end) = row.finished_at {
                latencies.push(end.0.saturating_sub(ready));
            }
        }
    }
    latencies.sort_unstable();
    let at = |at: f64| crate::figures::quantile(&latencies, at);
    println!(
        "task latency, ready to done, over {} tasks: p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    Ok(())
}

/// Runs started one at a time whose first task calls back; the time from
/// sending the start request to the call arriving.
async fn first_task(client: &reqwest::Client, base: &str, samples: usize) -> anyhow::Result<()> {
    let hits = Hits::default();
    let callback = axum::Router::new()
        .route("/hit/{run}", axum::routing::post(hit))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let target = format!("http://{}/hit/{{{{ run.id }}}}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, callback).await });
    let spec =
        format!("name: first\ntasks:\n  call: {{http: {{url: \"{target}\", method: POST}}}}\n");
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let arrived = hits.arrived.notified();
        let sent = Instant::now();
        let response = client
            .post(format!("{base}/runs"))
            .json(&json!({"spec": spec}))
            .send()
            .await?;
        let body: Value = response.error_for_status()?.json().await?;
        let run = body["run_id"].as_str().unwrap_or_default().to_owned();
        tokio::time::timeout(Duration::from_secs(10), arrived)
            .await
            .context("the first task never called back")?;
        let hit = hits
            .at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&run);
        if let Some(hit) = hit {
            latencies.push(hit.duration_since(sent));
        }
    }
    latencies.sort_unstable();
    let at = |at: f64| crate::figures::quantile(&latencies, at);
    println!(
        "start to first task through the API, {} runs one at a time: p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}

async fn hit(State(hits): State<Hits>, Path(run): Path<String>) -> &'static str {
    hits.at
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(run, Instant::now());
    hits.arrived.notify_one();
    "ok"
}

/// `GET /api/v1/runs/{id}` for `seconds` with wrk (2 threads, 64
/// connections), in its own process.
fn get_under_load(base: &str, run: &str, seconds: u64) -> anyhow::Result<()> {
    let url = format!("{base}/runs/{run}");
    let output = std::process::Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{seconds}s"), "--latency", &url])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            println!(
                "GET /api/v1/runs/{{id}} under load (wrk -t2 -c64 -d{seconds}s, its own process):"
            );
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let line = line.trim();
                if line.starts_with("Requests/sec")
                    || line.starts_with("50%")
                    || line.starts_with("99%")
                    || line.contains("requests in")
                    || line.starts_with("Non-2xx")
                {
                    println!("  {line}");
                }
            }
        }
        _ => println!("GET under load: wrk is not installed (apt-get install wrk), skipped"),
    }
    Ok(())
}
