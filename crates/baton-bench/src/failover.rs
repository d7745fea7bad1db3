//! `baton bench failover`: the time from `kill -9` of a `baton serve`
//! replica to its run making progress on another replica of the same
//! PostgreSQL database, over many trials. Each trial starts two replicas
//! of this very binary on a fresh schema, starts a long chain of short
//! tasks on the first, kills it once the run is under way, and watches the
//! run through the second until one more task has finished.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::figures::{create_schema, drop_schema, quantile, show};
use crate::replicas::{Replica, replica};

/// Tasks of `run` that have succeeded, as `replica` shows them.
async fn succeeded(http: &reqwest::Client, replica: &Replica, run: &str) -> anyhow::Result<usize> {
    let shown: Value = http
        .get(format!("http://{}/api/v1/runs/{run}", replica.address))
        .send()
        .await?
        .json()
        .await?;
    Ok(shown["tasks"].as_array().map_or(0, |tasks| {
        tasks
            .iter()
            .filter(|task| task["status"] == "succeeded")
            .count()
    }))
}

pub(crate) async fn failover(url: &str, trials: usize, elsewhere: bool) -> anyhow::Result<()> {
    let http = baton_engine::http_client().build()?;
    let tasks: serde_json::Map<String, Value> = (0..400)
        .map(|index| {
            let mut task = json!({"run": "sleep 0.05"});
            if index > 0 {
                task["needs"] = json!([format!("t{:03}", index - 1)]);
            }
            (format!("t{index:03}"), task)
        })
        .collect();
    let spec = json!({"name": "failover", "tasks": tasks}).to_string();
    let mut times = Vec::with_capacity(trials);
    for trial in 0..trials {
        let schema = format!("failover_{}_{trial}", std::process::id());
        let store = format!("{url}?options=-c%20search_path%3D{schema}");
        create_schema(url, &schema).await?;
        let dir = tempfile::tempdir()?;
        let first = replica(&store, dir.path(), elsewhere, &[])?;
        let second = replica(&store, dir.path(), false, &[])?;
        let started: Value = http
            .post(format!("http://{}/api/v1/runs", first.address))
            .json(&json!({"spec": spec}))
            .send()
            .await?
            .json()
            .await?;
        let run = started["run_id"].as_str().context("no run id")?.to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        while succeeded(&http, &second, &run).await? < 3 {
            anyhow::ensure!(Instant::now() < deadline, "the run never got under way");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = succeeded(&http, &second, &run).await?;
        let killed = Instant::now();
        drop(first);
        loop {
            if succeeded(&http, &second, &run).await? > before + 1 {
                break;
            }
            anyhow::ensure!(
                killed.elapsed() < Duration::from_secs(60),
                "trial {trial}: the run made no progress within 60 s of the kill"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = killed.elapsed();
        println!("trial {trial}: progress {} after the kill", show(took));
        times.push(took);
        drop(second);
        drop_schema(url, &schema).await?;
    }
    times.sort();
    println!(
        "failover over {trials} trials (kill -9 of the owning replica to one more task finished on \
         another, {}, default lease): p50 {}, p99 {}, max {}",
        match elsewhere {
            true => "the dead replica under another host name (its lease must run out)",
            false => "same machine (its death is seen at once)",
        },
        show(quantile(&times, 0.5)),
        show(quantile(&times, 0.99)),
        show(times[times.len() - 1])
    );
    Ok(())
}
