//! Engine benchmarks: overhead per task on no-ops, parallel sleeps against
//! the ideal, and shell tasks against a bare spawn loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::{Task, TaskKind, Workflow};
use baton_engine::{Engine, EngineConfig, Handler, RunOptions};

use crate::figures::{median, peak_memory, show};
use crate::source::GraphArgs;

fn engine_at(state_dir: &std::path::Path) -> Engine {
    Engine::new(EngineConfig {
        state_dir: state_dir.to_path_buf(),
        ..EngineConfig::default()
    })
}

/// Where `bench engine` records its runs.
pub(crate) enum BenchStore {
    /// Events only: the engine's own cost.
    LogOnly,
    /// Events and read models, in memory.
    Memory,
    Sqlite,
    /// A fresh schema of the PostgreSQL database at `url`, shared by
    /// `replicas` engines that each run the graph at once.
    Postgres {
        url: String,
        replicas: usize,
    },
}

pub(crate) async fn engine(
    graph: &GraphArgs,
    wide: bool,
    store: BenchStore,
    samples: usize,
) -> anyhow::Result<()> {
    let (label, mut workflow) = graph.workflow()?;
    if wide {
        for task in &mut workflow.tasks {
            task.needs.clear();
        }
    }
    let edges: usize = workflow.tasks.iter().map(|task| task.needs.len()).sum();
    let nodes = workflow.tasks.len();
    println!(
        "graph: {label}: {nodes} tasks, {edges} edges{}",
        if wide { ", all ready at once" } else { "" },
    );
    let valid = Arc::new(
        baton_core::check(workflow)
            .map_err(|problems| anyhow::anyhow!("invalid: {}", problems[0]))?,
    );
    let dir = tempfile::tempdir()?;
    let config = EngineConfig {
        state_dir: dir.path().to_owned(),
        ..EngineConfig::default()
    };
    let mut scratch = None;
    let (engines, store): (Vec<Engine>, &str) = match store {
        BenchStore::Postgres { url, replicas } => {
            let schema = format!("bench_{}", std::process::id());
            let mut engines = Vec::new();
            for _ in 0..replicas.max(1) {
                let options = baton_store::PostgresOptions {
                    schema: Some(schema.clone()),
                    ..baton_store::PostgresOptions::default()
                };
                let store = baton_store::PostgresStore::connect_with(&url, options).await?;
                engines.push(Engine::with_store(config.clone(), Arc::new(store)));
            }
            scratch = Some((url, schema));
            (
                engines,
                "PostgreSQL store (group commit as one pipelined transaction, read models, provenance)",
            )
        }
        BenchStore::Sqlite => {
            let path = dir.path().join("engine.db");
            let _ = std::fs::remove_file(&path);
            let store = baton_store::SqliteStore::open(&path)?;
            (
                vec![Engine::with_store(config, Arc::new(store))],
                "SQLite store (WAL, synchronous=NORMAL, group commit, read models, provenance)",
            )
        }
        BenchStore::Memory => (
            vec![Engine::with_store(
                config,
                Arc::new(baton_store::MemoryStore::default()),
            )],
            "in-memory store with read models and provenance",
        ),
        BenchStore::LogOnly => (
            vec![Engine::with_store(
                config,
                Arc::new(baton_store::MemoryStore::log_only()),
            )],
            "in-memory store (event log only)",
        ),
    };
    if engines.len() > 1 {
        println!(
            "{} engines on one database, each running the graph at once",
            engines.len()
        );
    }
    let nodes = nodes * engines.len();
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let mut runs = tokio::task::JoinSet::new();
        for engine in &engines {
            let (engine, valid) = (engine.clone(), Arc::clone(&valid));
            runs.spawn(async move {
                engine
                    .start_valid(valid, RunOptions::default())
                    .await?
                    .finish()
                    .await
            });
        }
        while let Some(report) = runs.join_next().await {
            let report = report??;
            anyhow::ensure!(report.succeeded(), "the run failed: {:?}", report.reason);
        }
        times.push(started.elapsed());
    }
    println!(
        "first run (also orders tasks by priority and id, once per workflow): {} ({:.0} tasks/s)",
        show(times[0]),
        nodes as f64 / times[0].as_secs_f64()
    );
    let (median, min, max) = median(times);
    println!(
        "run to the end, {store}: median {} ({:.0} tasks/s, {:.0} ns/task), min {}, max {} over {samples} samples",
        show(median),
        nodes as f64 / median.as_secs_f64(),
        median.as_nanos() as f64 / nodes as f64,
        show(min),
        show(max)
    );
    if let Some(peak) = peak_memory() {
        println!(
            "peak memory (VmHWM, whole process): {:.0} MiB",
            peak as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((url, schema)) = scratch {
        drop(engines);
        crate::figures::drop_schema(&url, &schema).await?;
    }
    Ok(())
}

fn independent(name: &str, count: usize, kind: impl Fn() -> TaskKind) -> Workflow {
    let mut workflow = Workflow::new(name);
    workflow.tasks = (0..count)
        .map(|index| Task::new(format!("t{index:05}"), kind()))
        .collect();
    workflow
}

pub(crate) async fn sleep(
    tasks: usize,
    millis: u64,
    concurrency: u32,
    samples: usize,
) -> anyhow::Result<()> {
    let ideal = Duration::from_millis(millis) * tasks.div_ceil(concurrency as usize) as u32;
    println!(
        "{tasks} independent tasks sleeping {millis} ms, concurrency {concurrency}: ideal {}",
        show(ideal)
    );
    let dir = tempfile::tempdir()?;
    let engine = engine_at(dir.path());
    let pause = Duration::from_millis(millis);
    engine.register(
        "sleep",
        Handler::asynchronous(move |_| async move {
            tokio::time::sleep(pause).await;
            Ok(serde_json::Value::Null)
        }),
    );
    let kinds: [(&str, Workflow); 2] = [
        (
            "in-process handler (tokio sleep)",
            independent("sleep", tasks, || TaskKind::Handler("sleep".into())),
        ),
        (
            "shell task (`sleep`)",
            independent("sleep", tasks, || {
                TaskKind::run(format!("sleep {}", millis as f64 / 1000.0))
            }),
        ),
    ];
    for (label, workflow) in kinds {
        let (median, min, max) = median(time_runs(&engine, workflow, concurrency, samples).await?);
        println!(
            "{label}: median {} = {:.3}x ideal ({:+.1}%), min {}, max {} over {samples} samples",
            show(median),
            median.as_secs_f64() / ideal.as_secs_f64(),
            (median.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0,
            show(min),
            show(max)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub(crate) async fn shell(tasks: usize, concurrency: u32, samples: usize) -> anyhow::Result<()> {
    println!("{tasks} independent `true` tasks, concurrency {concurrency}");
    let dir = tempfile::tempdir()?;
    let engine = engine_at(dir.path());
    let mut bare = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        bare_spawn_loop(tasks, concurrency as usize).await?;
        bare.push(started.elapsed());
    }
    let (bare, _, _) = median(bare);
    println!(
        "bare spawn loop (tokio::process, {concurrency} at a time, no logs): {} ({:.0} processes/s)",
        show(bare),
        tasks as f64 / bare.as_secs_f64()
    );
    for (label, workflow) in [
        (
            "command: [true]",
            independent("shell", tasks, || TaskKind::Command(vec!["true".into()])),
        ),
        (
            "run: \"true\" (sh -c)",
            independent("shell", tasks, || TaskKind::run("true")),
        ),
    ] {
        let (median, _, _) = median(time_runs(&engine, workflow, concurrency, samples).await?);
        println!(
            "engine, {label}: {} ({:.0} tasks/s), overhead over the bare loop {:.0} µs/task",
            show(median),
            tasks as f64 / median.as_secs_f64(),
            (median.as_secs_f64() - bare.as_secs_f64()) * 1e6 / tasks as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Checks `workflow`, then times `samples` runs of it to the end.
async fn time_runs(
    engine: &Engine,
    workflow: Workflow,
    concurrency: u32,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let valid = Arc::new(
        baton_core::check(workflow)
            .map_err(|problems| anyhow::anyhow!("invalid: {}", problems[0]))?,
    );
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let options = RunOptions {
            concurrency: Some(concurrency),
            ..RunOptions::default()
        };
        let started = Instant::now();
        let report = engine
            .start_valid(Arc::clone(&valid), options)
            .await?
            .finish()
            .await?;
        times.push(started.elapsed());
        anyhow::ensure!(report.succeeded(), "the run failed: {:?}", report.reason);
    }
    Ok(times)
}

/// `true` spawned `tasks` times, `concurrency` at a time: the floor any
/// process runner stands on.
async fn bare_spawn_loop(tasks: usize, concurrency: usize) -> anyhow::Result<()> {
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        if running.len() >= concurrency
            && let Some(done) = running.join_next().await
        {
            done??;
        }
        running.spawn(async {
            tokio::process::Command::new("true")
                .status()
                .await
                .map(|_| ())
        });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(())
}

pub(crate) async fn store(events: u64, batch: u64, writers: u64) -> anyhow::Result<()> {
    use baton_core::run::{Event, Millis};
    use baton_store::{Owner, RunLog, RunRecord, SqliteStore};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let _ = std::fs::remove_file(&path);
    let store = Arc::new(SqliteStore::open(&path)?);
    let per_writer = events / writers;
    println!(
        "{} events into SQLite (WAL, synchronous=NORMAL), {writers} writer(s), {batch} events per append",
        per_writer * writers
    );
    let owner = Owner::this_process();
    store
        .heartbeat(&owner, Millis(0), baton_core::Duration::from_secs(3600))
        .await?;
    let mut fences = Vec::new();
    for writer in 0..writers {
        let record = RunRecord::new(
            format!("bench-{writer}"),
            baton_core::Workflow::new("bench"),
        );
        fences.push(store.create_run(&record, &owner.id, Millis(0)).await?);
    }
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for (writer, fence) in fences.into_iter().enumerate() {
        let store = Arc::clone(&store);
        running.spawn(async move {
            let run = format!("bench-{writer}");
            let mut seq = 0;
            while seq < per_writer {
                let count = batch.min(per_writer - seq);
                let events: Vec<Event> = (seq..seq + count)
                    .map(|at| Event::TaskStarted {
                        at: Millis(1_800_000_000_000 + at),
                        task: at as u32,
                        attempt: 1,
                    })
                    .collect();
                store.append(&run, seq, fence, &events).await?;
                seq += count;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    println!(
        "appended in {} ({:.0} events/s)",
        show(elapsed),
        (per_writer * writers) as f64 / elapsed.as_secs_f64()
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A `foreach` over `items` no-op items, in memory and on SQLite: the time
/// from the run's start to its end, the list rendered, every item run and
/// their outputs collected.
pub(crate) async fn foreach(items: usize, samples: usize) -> anyhow::Result<()> {
    let spec = format!(
        "name: foreach\ntasks:\n  each:\n    foreach: {{items: \"{{{{ range({items}) | list }}}}\", concurrency: 1024}}\n    noop: true\n"
    );
    let valid = Arc::new(
        baton_core::check_source(&spec, baton_core::Format::Yaml)
            .map_err(|problems| anyhow::anyhow!("the bench spec is invalid: {problems:?}"))?,
    );
    let dir = tempfile::tempdir()?;
    let stores: [(&str, Arc<dyn baton_store::Store>); 2] = [
        (
            "in-memory store",
            Arc::new(baton_store::MemoryStore::default()),
        ),
        (
            "SQLite store",
            Arc::new(baton_store::SqliteStore::open(
                dir.path().join("foreach.db"),
            )?),
        ),
    ];
    for (label, store) in stores {
        let engine = Engine::with_store(
            EngineConfig {
                state_dir: dir.path().to_owned(),
                ..EngineConfig::default()
            },
            store,
        );
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            let report = engine
                .start_valid(Arc::clone(&valid), RunOptions::default())
                .await?
                .finish()
                .await?;
            times.push(started.elapsed());
            let collected = report.tasks[0]
                .output
                .as_ref()
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len);
            anyhow::ensure!(
                report.succeeded() && collected == items,
                "the foreach did not collect {items} outputs: {:?}",
                report.status
            );
        }
        let (median, min, max) = median(times);
        println!(
            "foreach over {items} no-op items, {label}: median {} ({:.0} items/s), min {}, max {} over {samples} samples",
            show(median),
            items as f64 / median.as_secs_f64(),
            show(min),
            show(max),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
