//! `baton bench live`: reading and steering a run that is still going. A
//! workflow of N tasks keeps running at `--approvals` approval tasks (the
//! rest are no-ops that finish at once); the bench serves it (keys off),
//! loads `GET /api/v1/runs/{id}` with wrk, then decides the approvals one
//! at a time and times each decision from the request to the task's
//! success arriving on the run's event stream.

use std::time::{Duration, Instant};

use anyhow::Context;
use baton_server::{AppState, ServerConfig};
use serde_json::{Value, json};

/// A spec of `tasks` tasks: `approvals` approval tasks, each with a no-op
/// after it, and the rest no-ops needing nothing.
fn spec(tasks: usize, approvals: usize) -> Value {
    let mut all = serde_json::Map::new();
    for index in 0..approvals {
        all.insert(
            format!("approve-{index}"),
            json!({"approval": {"prompt": "go?", "choices": ["go", "stop"]}}),
        );
        all.insert(
            format!("after-{index}"),
            json!({"noop": true, "needs": [format!("approve-{index}")]}),
        );
    }
    for index in all.len()..tasks {
        all.insert(format!("task-{index}"), json!({"noop": true}));
    }
    json!({"name": "live", "tasks": all})
}

pub(crate) async fn live(tasks: usize, approvals: usize, wrk_seconds: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = crate::figures::sqlite_engine(dir.path())?;
    let config = ServerConfig {
        require_keys: false,
        body_limit: 512 * 1024 * 1024,
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
    let client = baton_engine::http_client().build()?;
    let body = spec(tasks, approvals).to_string();
    let registered = client
        .post(format!("{base}/workflows"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(
        registered.status().is_success(),
        "cannot register the workflow: {}",
        registered.text().await?
    );
    let started: Value = client
        .post(format!("{base}/runs"))
        .json(&json!({"workflow": "live"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let run = started["run_id"].as_str().context("no run id")?.to_owned();
    // Running once every no-op has finished and every approval waits.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shown: Value = client
            .get(format!("{base}/runs/{run}"))
            .send()
            .await?
            .json()
            .await?;
        let waiting = shown["tasks"].as_array().map_or(0, |tasks| {
            tasks
                .iter()
                .filter(|task| task["status"] == "waiting")
                .count()
        });
        let done = shown["tasks"].as_array().map_or(0, |tasks| {
            tasks
                .iter()
                .filter(|task| task["status"] == "succeeded")
                .count()
        });
        if waiting == approvals && done == tasks - 2 * approvals {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the run never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "a running run of {tasks} tasks ({approvals} approvals waiting, the rest done), served from SQLite:"
    );
    let single = Instant::now();
    let one = client.get(format!("{base}/runs/{run}")).send().await?;
    let size = one.bytes().await?.len();
    println!(
        "  one GET /api/v1/runs/{{id}}: {:.1} ms, {:.1} MiB",
        single.elapsed().as_secs_f64() * 1e3,
        size as f64 / (1024.0 * 1024.0)
    );
    wrk(&format!("{base}/runs/{run}"), wrk_seconds);
    decisions(&client, &base, &run, approvals).await
}

/// Decides each approval in turn; the time from the request to the task's
/// `task_succeeded` on the run's SSE stream.
async fn decisions(
    client: &reqwest::Client,
    base: &str,
    run: &str,
    approvals: usize,
) -> anyhow::Result<()> {
    let mut answered = Vec::with_capacity(approvals);
    let mut applied = Vec::with_capacity(approvals);
    for index in 0..approvals {
        let task = format!("approve-{index}");
        // The run's stream from the end of its log so far: only new events.
        let page: Value = client
            .get(format!("{base}/runs?limit=1"))
            .send()
            .await?
            .json()
            .await?;
        let events = page["runs"][0]["events"]
            .as_u64()
            .context("no event count")?;
        let mut stream = client
            .get(format!("{base}/runs/{run}/events"))
            .header("last-event-id", (events - 1).to_string())
            .send()
            .await?
            .error_for_status()?;
        let sent = Instant::now();
        let response = client
            .post(format!("{base}/runs/{run}/tasks/{task}/decision"))
            .json(&json!({"choice": "go"}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "the decision was refused: {}",
            response.text().await?
        );
        answered.push(sent.elapsed());
        let wanted = format!("\"task\":\"{task}\"");
        let mut seen = String::new();
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(60), stream.chunk())
                .await
                .context("the decision never applied")??
                .context("the event stream ended")?;
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen
                .lines()
                .any(|line| line.contains("\"task_succeeded\"") && line.contains(&wanted))
            {
                break;
            }
        }
        applied.push(sent.elapsed());
    }
    answered.sort_unstable();
    applied.sort_unstable();
    let at = |times: &[Duration], at: f64| crate::figures::quantile(times, at).as_secs_f64() * 1e3;
    println!(
        "  approval, request to 202 over {approvals} decisions: p50 {:.1} ms, p99 {:.1} ms",
        at(&answered, 0.5),
        at(&answered, 0.99)
    );
    println!(
        "  approval, request to the task shown succeeded: p50 {:.1} ms, p99 {:.1} ms",
        at(&applied, 0.5),
        at(&applied, 0.99)
    );
    Ok(())
}

fn wrk(url: &str, seconds: u64) {
    let output = std::process::Command::new("wrk")
        .args([
            "-t2",
            "-c64",
            &format!("-d{seconds}s"),
            "--latency",
            "--timeout",
            "30s",
            url,
        ])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            println!("  GET under load (wrk -t2 -c64 -d{seconds}s, its own process):");
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let line = line.trim();
                if line.starts_with("Requests/sec")
                    || line.starts_with("50%")
                    || line.starts_with("99%")
                    || line.contains("requests in")
                    || line.starts_with("Non-2xx")
                    || line.starts_with("Socket errors")
                {
                    println!("    {line}");
                }
            }
        }
        _ => println!("  GET under load: wrk is not installed (apt-get install wrk), skipped"),
    }
}
