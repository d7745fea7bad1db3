use std::collections::BTreeMap;
use std::path::Path;

use baton_core::run::Millis;
use baton_core::{Format, Workflow};
use std::sync::Arc;

use baton_core::run::Event;
use baton_engine::{Engine, EngineConfig, RunHandle, RunOptions, RunReport};
use serde_json::Value;

pub(crate) fn workflow(yaml: &str) -> Workflow {
    match baton_core::check_source(yaml, Format::Yaml) {
        Ok(valid) => valid.into_workflow(),
        Err(problems) => panic!("test spec is invalid: {problems:#?}"),
    }
}

/// An engine whose files and working directory are `dir`, its clock
/// starting at a fixed instant.
pub(crate) fn engine(dir: &Path) -> Engine {
    Engine::new(config(dir))
}

pub(crate) fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        state_dir: dir.join(".baton"),
        workdir: dir.to_path_buf(),
        start_time: Some(Millis(1_000_000)),
        ..EngineConfig::default()
    }
}

pub(crate) async fn run(engine: &Engine, yaml: &str) -> RunReport {
    run_with(engine, yaml, &[]).await
}

pub(crate) async fn run_with(engine: &Engine, yaml: &str, inputs: &[(&str, &str)]) -> RunReport {
    let inputs: BTreeMap<String, Value> = inputs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), Value::from(*value)))
        .collect();
    engine.run(workflow(yaml), inputs).await.expect("the run")
}

/// `(task, status)` for every task, in spec order.
pub(crate) fn statuses(report: &RunReport) -> Vec<(String, &'static str)> {
    report
        .tasks
        .iter()
        .map(|task| (task.id.clone(), task.status.name()))
        .collect()
}

/// Reads the run's events until one matches, returning the seq it had.
pub(crate) async fn until(handle: &mut RunHandle, matches: impl Fn(&Event) -> bool) -> u64 {
    let events = handle.events().expect("a watched run");
    while let Some(event) = events.recv().await {
        if matches(&event.event) {
            return event.seq;
        }
    }
    panic!("the run ended first");
}

pub(crate) async fn start(engine: &Engine, yaml: &str) -> RunHandle {
    let valid = baton_core::check(workflow(yaml)).unwrap();
    engine
        .start_recorded(
            Arc::new(valid),
            RunOptions {
                watch: true,
                ..RunOptions::default()
            },
        )
        .await
        .unwrap()
}

/// An engine on the SQLite store in `dir`, as a fresh process would open it.
pub(crate) fn durable(dir: &Path) -> Engine {
    let store: Arc<dyn baton_store::Store> =
        Arc::new(baton_store::SqliteStore::open(dir.join("baton.db")).unwrap());
    Engine::with_store(config(dir), store)
}

/// Runs `spec` in a process of its own (a runtime) until an event matches
/// `reached` and a task has created the file `marker`, then lets that
/// process die as if killed; creates `go` (which the waiting task polls
/// for) and resumes the run from the store in a second one. The run's id,
/// its report, and the engine that resumed it.
pub(crate) fn cut_off_then_resumed(
    dir: &Path,
    spec: &str,
    reached: impl Fn(&Event) -> bool,
    marker: &str,
) -> (String, RunReport, Engine) {
    let first = tokio::runtime::Runtime::new().unwrap();
    let run_id = first.block_on(async {
        let mut handle = start(&durable(dir), spec).await;
        until(&mut handle, reached).await;
        while !dir.join(marker).exists() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        handle.run_id().to_owned()
    });
    // Dropping the runtime drops its tasks, and with them the engine's
    // presence: to the store, that process is gone.
    first.shutdown_timeout(std::time::Duration::from_secs(10));

    std::fs::write(dir.join("go"), "").unwrap();
    let engine = durable(dir);
    let second = tokio::runtime::Runtime::new().unwrap();
    let report = second.block_on(async {
        engine
            .resume(&run_id, false)
            .await
            .unwrap()
            .finish()
            .await
            .unwrap()
    });
    (run_id, report, engine)
}
