//! `baton bench resume`: how long a crashed run takes to come back. A
//! generated graph of tasks that fail `attempts - 1` times before they
//! succeed (two events per attempt) runs on a fresh SQLite store until it
//! has recorded the asked number of events, then its runtime is dropped
//! mid-flight (to the store, a crash); a fresh store on the same file then
//! rebuilds the run's state as `baton resume` does before it dispatches
//! anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::generate::{Shape, generate};
use baton_core::spec::RetryPolicy;
use baton_core::{TaskKind, Valid};
use baton_engine::{Engine, EngineConfig, Handler, RunOptions, TaskContext};
use baton_store::SqliteStore;

use crate::figures::{peak_memory, show};

pub(crate) async fn resume(
    shape: Shape,
    attempts: u32,
    events: u64,
    checkpoints: bool,
    samples: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("resume.db");
    let _ = std::fs::remove_file(&path);
    let mut config = EngineConfig {
        state_dir: dir.path().to_owned(),
        ..EngineConfig::default()
    };
    if !checkpoints {
        config.checkpoint_every = u64::MAX;
    }
    println!(
        "graph: {} tasks (baton bench gen --nodes {} --seed {}), each failing until attempt {attempts}, run on SQLite until {events} events are recorded, then dropped",
        shape.nodes, shape.nodes, shape.seed
    );
    let started = Instant::now();
    // The crashing process is a runtime of its own, on a thread of its own.
    let crashed = {
        let (config, path) = (config.clone(), path.clone());
        let valid = flaky(shape, attempts)?;
        std::thread::spawn(move || crash_after(&config, &path, valid, events))
    };
    let run_id = crashed
        .join()
        .map_err(|_| anyhow::anyhow!("the crashing run panicked"))??;
    println!("recorded and crashed in {}", show(started.elapsed()));

    let engine = Engine::with_store(config, Arc::new(SqliteStore::open(&path)?));
    let mut times = Vec::with_capacity(samples);
    let mut recovery = None;
    for _ in 0..samples {
        let started = Instant::now();
        let (state, rebuilt) = engine.rebuild(&run_id).await?;
        times.push(started.elapsed());
        anyhow::ensure!(
            !state.is_finished(),
            "the run finished before the crash; ask for fewer events"
        );
        recovery = Some(rebuilt);
    }
    let recovery = recovery.expect("at least one sample");
    let started = Instant::now();
    let record = engine.store().run(&run_id).await?;
    let loaded = started.elapsed();
    baton_core::check(Arc::unwrap_or_clone(record.workflow))
        .map_err(|problems| anyhow::anyhow!("invalid: {}", problems[0]))?;
    let checked = started.elapsed() - loaded;

    times.sort();
    let median = times[times.len() / 2];
    println!(
        "state rebuilt from {} events: checkpoint at event {}, {} events replayed after it",
        recovery.events(),
        recovery
            .checkpoint
            .map_or_else(|| "none".to_owned(), |at| at.to_string()),
        recovery.replayed
    );
    println!(
        "rebuild: median {} (min {}, max {}) over {samples} samples; of which loading the spec {} and checking it {}",
        show(median),
        show(times[0]),
        show(times[times.len() - 1]),
        show(loaded),
        show(checked),
    );
    if let Some(peak) = peak_memory() {
        println!(
            "peak memory (VmHWM, whole process): {:.0} MiB",
            peak as f64 / 1024.0
        );
    }
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The generated graph with every task a handler that fails until its last
/// allowed attempt, retried without delay.
fn flaky(shape: Shape, attempts: u32) -> anyhow::Result<Arc<Valid>> {
    let mut workflow = generate(&shape);
    for task in &mut workflow.tasks {
        task.kind = TaskKind::Handler(FLAKY.to_owned());
        task.modifiers_mut().retry = Some(Box::new(RetryPolicy {
            max_attempts: attempts.max(1),
            initial: baton_core::Duration::ZERO,
            ..RetryPolicy::default()
        }));
    }
    Ok(Arc::new(baton_core::check(workflow).map_err(
        |problems| anyhow::anyhow!("invalid: {}", problems[0]),
    )?))
}

const FLAKY: &str = "flaky";

/// Runs `valid` until `events` are recorded and drops it there; returns the
/// run id.
fn crash_after(
    config: &EngineConfig,
    path: &std::path::Path,
    valid: Arc<Valid>,
    events: u64,
) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let engine = Engine::with_store(config.clone(), Arc::new(SqliteStore::open(path)?));
    let last = valid
        .workflow()
        .tasks
        .first()
        .and_then(|task| task.modifiers().retry.as_ref())
        .map_or(1, |retry| retry.max_attempts);
    engine.register(
        FLAKY,
        Handler::asynchronous(move |context: TaskContext| async move {
            if context.attempt < last {
                Err(format!("attempt {} fails on purpose", context.attempt).into())
            } else {
                Ok(serde_json::Value::Null)
            }
        }),
    );
    let run_id = runtime.block_on(async {
        let options = RunOptions {
            watch: true,
            ..RunOptions::default()
        };
        let mut handle = engine.start_valid(valid, options).await?;
        let run_id = handle.run_id().to_owned();
        let stream = handle.events().expect("watched");
        while let Some(event) = stream.recv().await {
            if event.seq + 1 >= events {
                return Ok(run_id);
            }
        }
        anyhow::bail!("the run ended before {events} events; give it more tasks")
    })?;
    runtime.shutdown_timeout(Duration::ZERO);
    // The store's writer finishes what it was given before the file is
    // opened again, as it would be after a real crash.
    drop(engine);
    Ok(run_id)
}
