//! `baton bench workers`: remote dispatch through the worker protocol on
//! loopback. A server (in this process, SQLite store, keys off) and real
//! `baton worker` processes:
//!
//! - throughput: `--workers` workers, `--tasks` independent no-op tasks
//!   routed to them (`runs_on`); tasks/s from the run's start to its end,
//!   every lease and report over HTTP;
//! - lease latency: with work queued, one client's `poll` round trips
//!   (report the last lease, take the next), p50 and p99;
//! - a sequential chain on one worker, ms per task, beside the same chain
//!   run locally;
//! - routing alone: the dispatcher's decision (breakers, match, least
//!   loaded) per attempt with `--registered` workers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use baton_engine::Engine;
use baton_server::{AppState, ServerConfig};
use serde_json::{Value, json};

use crate::figures::show;

pub(crate) async fn workers(
    workers: usize,
    tasks: usize,
    chain: usize,
    registered: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = crate::figures::sqlite_engine(dir.path())?;
    let app = AppState::new(
        engine.clone(),
        ServerConfig {
            require_keys: false,
            ..ServerConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = format!("http://{}", listener.local_addr()?);
    tokio::spawn(baton_server::serve(listener, app, std::future::pending()));

    let pool = Pool::start(&server, dir.path(), "noop", workers, 256)?;
    pool.wait_registered(&engine, workers).await?;
    throughput(&engine, tasks, workers).await?;
    drop(pool);

    lease_latency(&engine, &server, 2000).await?;

    let one = Pool::start(&server, dir.path(), "chain", 1, 1)?;
    one.wait_registered(&engine, 1).await?;
    sequential(&engine, chain).await?;
    drop(one);

    let per_attempt = baton_engine::remote::routing_cost(registered, 100_000);
    println!(
        "routing: {} per attempt with {registered} workers registered (match, breakers, least loaded; 100,000 attempts)",
        show(per_attempt)
    );
    Ok(())
}

/// `baton worker` processes of this same binary.
struct Pool {
    children: Vec<Child>,
}

impl Pool {
    fn start(
        server: &str,
        dir: &std::path::Path,
        capability: &str,
        count: usize,
        concurrency: u32,
    ) -> anyhow::Result<Pool> {
        let program = std::env::current_exe()?;
        let children = (0..count)
            .map(|index| {
                let workdir = dir.join(format!("{capability}-{index}"));
                std::fs::create_dir_all(&workdir)?;
                Command::new(&program)
                    .current_dir(&workdir)
                    .args(["worker", "--server", server, "--capability", capability])
                    .args(["--concurrency", &concurrency.to_string()])
                    .args(["--name", &format!("{capability}-{index}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("cannot start `baton worker`")
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Pool { children })
    }

    async fn wait_registered(&self, engine: &Engine, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while engine.dispatcher().workers().len() < count {
            anyhow::ensure!(Instant::now() < deadline, "the workers did not register");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spec(tasks: serde_json::Map<String, Value>) -> anyhow::Result<baton_core::Workflow> {
    let text = json!({"name": "dispatch", "tasks": tasks}).to_string();
    baton_core::load(&text, baton_core::Format::Json)
        .workflow
        .context("the generated spec loads")
}

async fn run_to_end(engine: &Engine, workflow: baton_core::Workflow) -> anyhow::Result<Duration> {
    let clock = Instant::now();
    let report = engine.run(workflow, Default::default()).await?;
    let took = clock.elapsed();
    anyhow::ensure!(
        report.succeeded(),
        "the run did not succeed: {:?}",
        report.reason
    );
    Ok(took)
}

async fn throughput(engine: &Engine, tasks: usize, workers: usize) -> anyhow::Result<()> {
    let routed = (0..tasks)
        .map(|index| {
            (
                format!("t{index}"),
                json!({"noop": true, "runs_on": {"capability": "noop"}}),
            )
        })
        .collect();
    let took = run_to_end(engine, spec(routed)?).await?;
    println!(
        "dispatch: {tasks} no-op tasks on {workers} workers in {} = {:.0} tasks/s (every lease and report over HTTP, durable on SQLite)",
        show(took),
        tasks as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// One client polling for work that is already queued: each poll reports
/// the lease before and takes the next.
async fn lease_latency(engine: &Engine, server: &str, samples: usize) -> anyhow::Result<()> {
    let routed = (0..samples)
        .map(|index| {
            (
                format!("t{index}"),
                json!({"noop": true, "runs_on": {"capability": "probe"}}),
            )
        })
        .collect();
    let workflow = spec(routed)?;
    let running = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run(workflow, Default::default()).await })
    };
    let client = baton_engine::http_client().build()?;
    let base = format!("{server}/api/v1/workers");
    let registered: Value = client
        .post(&base)
        .json(&json!({"name": "probe", "capabilities": ["probe"], "concurrency": 1}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = registered["worker_id"].as_str().unwrap_or_default();
    let token = registered["token"].as_str().unwrap_or_default();
    let mut times = Vec::with_capacity(samples);
    let mut results: Vec<Value> = Vec::new();
    while times.len() < samples {
        let clock = Instant::now();
        let polled: Value = client
            .post(format!("{base}/{id}/poll"))
            .header("Baton-Worker-Token", token)
            .json(&json!({"results": results, "take": 1, "wait_ms": 5000}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let took = clock.elapsed();
        results = polled["leases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|lease| json!({"lease_id": lease["lease_id"], "fencing": lease["fencing"], "end": {"status": "succeeded"}}))
            .collect();
        if !results.is_empty() {
            times.push(took);
        }
    }
    client
        .post(format!("{base}/{id}/poll"))
        .header("Baton-Worker-Token", token)
        .json(&json!({"results": results}))
        .send()
        .await?
        .error_for_status()?;
    running.await??;
    times.sort();
    let at = |at: f64| crate::figures::quantile(&times, at);
    println!(
        "lease: p50 {} p99 {} per poll that reports one lease and takes the next ({samples} polls, work queued)",
        show(at(0.5)),
        show(at(0.99))
    );
    Ok(())
}

async fn sequential(engine: &Engine, length: usize) -> anyhow::Result<()> {
    let chain = |remote: bool| {
        (0..length)
            .map(|index| {
                let mut task = json!({"noop": true});
                if remote {
                    task["runs_on"] = json!({"capability": "chain"});
                }
                if index > 0 {
                    task["needs"] = json!([format!("t{}", index - 1)]);
                }
                (format!("t{index}"), task)
            })
            .collect()
    };
    let remote = run_to_end(engine, spec(chain(true))?).await?;
    let local = run_to_end(engine, spec(chain(false))?).await?;
    println!(
        "chain: {length} tasks one after another on one worker {:.2} ms/task; the same chain run here {:.3} ms/task",
        remote.as_secs_f64() * 1000.0 / length as f64,
        local.as_secs_f64() * 1000.0 / length as f64,
    );
    Ok(())
}
