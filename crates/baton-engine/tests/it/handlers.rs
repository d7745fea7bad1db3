//! In-process handlers, retries and run timeouts on tokio's paused clock:
//! hours of backoff take no real time, and every timestamp is exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use baton_core::run::{Event, RunStatus};
use baton_engine::{Handler, RunOptions};
use serde_json::json;

use crate::util::{engine, run, workflow};

/// When each attempt of a watched run started, in ms, until the run ends.
async fn start_times(handle: &mut baton_engine::RunHandle) -> Vec<u64> {
    let mut starts = Vec::new();
    while let Some(event) = handle.events().unwrap().recv().await {
        if let Event::TaskStarted { at, .. } = event.event {
            starts.push(at.0);
        }
    }
    starts
}

#[tokio::test(start_paused = true)]
async fn a_flaky_handler_succeeds_on_its_third_attempt_after_exact_backoffs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    engine.register(
        "flaky",
        Handler::asynchronous(move |task| {
            let counter = Arc::clone(&counter);
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(format!("attempt {} failed", task.attempt).into());
                }
                Ok(json!({"attempt": task.attempt}))
            }
        }),
    );
    let mut handle = engine
        .start(
            workflow("name: f\ntasks:\n  a:\n    handler: flaky\n    retry: {max_attempts: 5, backoff: exponential, initial: 10s}\n"),
            RunOptions {
                watch: true,
                ..RunOptions::default()
            },
        ).await
        .unwrap();
    let starts = start_times(&mut handle).await;
    let report = handle.finish().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(
        report.task("a").unwrap().output,
        Some(json!({"attempt": 3}))
    );
    assert_eq!(starts, [1_000_000, 1_010_000, 1_030_000]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn each_backoff_spaces_attempts_as_named() {
    for (backoff, gaps) in [
        ("constant", [2_000, 2_000, 2_000, 2_000]),
        ("linear", [2_000, 4_000, 6_000, 8_000]),
        ("exponential", [2_000, 4_000, 8_000, 16_000]),
        ("fibonacci", [2_000, 4_000, 6_000, 10_000]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        engine.register("fail", Handler::blocking(|_| Err("no".into())));
        let spec = format!(
            "name: b\ntasks:\n  a:\n    handler: fail\n    retry: {{max_attempts: 5, backoff: {backoff}, initial: 2s}}\n"
        );
        let mut handle = engine
            .start(
                workflow(&spec),
                RunOptions {
                    watch: true,
                    ..RunOptions::default()
                },
            )
            .await
            .unwrap();
        let starts = start_times(&mut handle).await;
        let seen: Vec<u64> = starts.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert_eq!(seen, gaps, "{backoff}");
        assert_eq!(handle.finish().await.unwrap().status, RunStatus::Failed);
    }
}

#[tokio::test(start_paused = true)]
async fn handlers_see_inputs_and_the_outputs_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.register("source", Handler::blocking(|_| Ok(json!({"words": 3}))));
    engine.register(
        "sink",
        Handler::asynchronous(|task| async move {
            Ok(json!({
                "words": task.needs["source"]["words"],
                "topic": task.inputs["topic"],
                "key": task.idempotency_key.ends_with(":sink:1"),
            }))
        }),
    );
    let report = run(
        &engine,
        "name: h\ninputs: {topic: {type: string, default: rust}}\ntasks:\n  source: {handler: source}\n  sink: {handler: sink, needs: [source]}\n",
    )
    .await;
    assert_eq!(
        report.task("sink").unwrap().output,
        Some(json!({"words": 3, "topic": "rust", "key": true}))
    );
}

/// Registers `work`, a handler that takes one second, and returns counters
/// of how many run now and the most that ever ran at once.
fn register_counted_work(engine: &baton_engine::Engine) -> (Arc<AtomicU32>, Arc<AtomicU32>) {
    let now = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (now_in, peak_in) = (Arc::clone(&now), Arc::clone(&peak));
    engine.register(
        "work",
        Handler::asynchronous(move |_| {
            let (now, peak) = (Arc::clone(&now_in), Arc::clone(&peak_in));
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(serde_json::Value::Null)
            }
        }),
    );
    (now, peak)
}

#[tokio::test(start_paused = true)]
async fn at_most_concurrency_tasks_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let (_, peak) = register_counted_work(&engine);
    let mut spec = String::from("name: c\nconcurrency: 3\ntasks:\n");
    for task in 0..12 {
        spec.push_str(&format!("  t{task}: {{handler: work}}\n"));
    }
    let report = run(&engine, &spec).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(report.metrics.wall.as_millis(), 4_000);
    assert_eq!(report.metrics.task_time.as_millis(), 12_000);
    assert_eq!(report.metrics.critical_path.as_millis(), 1_000);
}

#[tokio::test(start_paused = true)]
async fn a_run_timeout_cancels_what_runs_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.register(
        "forever",
        Handler::asynchronous(|_| async {
            tokio::time::sleep(std::time::Duration::from_secs(3_600)).await;
            Ok(serde_json::Value::Null)
        }),
    );
    let report = run(
        &engine,
        "name: t\ntimeout: 10s\ntasks:\n  a: {handler: forever}\n  b: {handler: forever, needs: [a]}\n",
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        report.reason.as_deref(),
        Some("the run timed out after 10s")
    );
    assert_eq!(report.task("a").unwrap().status.name(), "cancelled");
    assert_eq!(report.metrics.wall.as_millis(), 10_000);
}

#[tokio::test]
async fn kinds_this_engine_cannot_run_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let error = engine(dir.path())
        .start(
            workflow(
                "name: n\ntasks:\n  ask: {agent: {capability: review}}\n  h: {handler: nobody}\n",
            ),
            RunOptions::default(),
        )
        .await
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(
        message
            .contains("tasks.ask.agent.capability: nothing here serves agent capability `review`"),
        "{message}"
    );
    assert!(
        message.contains("tasks.h.handler: no handler named `nobody` is registered"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn usage_reported_under_the_baton_key_is_totalled() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.register(
        "agent",
        Handler::blocking(|_| Ok(json!({"answer": 42, "baton": {"tokens": 1200, "cost": 0.25}}))),
    );
    let report = run(
        &engine,
        "name: u\ntasks:\n  a: {handler: agent}\n  b: {handler: agent}\n",
    )
    .await;
    assert_eq!(report.metrics.usage.tokens, 2400);
    assert_eq!(report.metrics.usage.cost, 0.5);
}

#[tokio::test(start_paused = true)]
async fn runs_of_one_engine_share_its_global_limit_and_killed_tasks_give_their_slot_back() {
    let dir = tempfile::tempdir().unwrap();
    let engine = baton_engine::Engine::new(baton_engine::EngineConfig {
        state_dir: dir.path().join(".baton"),
        max_concurrency: 2,
        start_time: Some(baton_core::run::Millis(0)),
        ..baton_engine::EngineConfig::default()
    });
    let (now, peak) = register_counted_work(&engine);
    engine.register("fail", Handler::blocking(|_| Err("no".into())));
    let failing = run(
        &engine,
        "name: f\ntasks:\n  slow: {handler: work}\n  broken: {handler: fail}\n",
    )
    .await;
    assert_eq!(failing.task("slow").unwrap().status.name(), "cancelled");
    // The killed handler was dropped mid-sleep and never counted itself out.
    now.store(0, Ordering::SeqCst);
    peak.store(0, Ordering::SeqCst);
    let mut spec = String::from("name: c\ntasks:\n");
    for task in 0..6 {
        spec.push_str(&format!("  t{task}: {{handler: work}}\n"));
    }
    let (first, second) = tokio::join!(run(&engine, &spec), run(&engine, &spec));
    assert!(first.succeeded() && second.succeeded());
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(
        first
            .metrics
            .wall
            .as_millis()
            .max(second.metrics.wall.as_millis()),
        6_000
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_run_is_rebuilt_from_its_record_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.register("answer", Handler::blocking(|_| Ok(json!({"n": 42}))));
    engine.register("fail", Handler::blocking(|_| Err("no".into())));
    let report = run(
        &engine,
        "name: r\non_failure: continue\ntasks:\n  a: {handler: answer}\n  b: {handler: fail, needs: [a]}\n  c: {handler: answer, needs: [b]}\n",
    )
    .await;
    let rebuilt = engine.recorded(&report.run_id).await.unwrap();
    assert_eq!(rebuilt.status, report.status);
    assert_eq!(rebuilt.reason, report.reason);
    assert_eq!(rebuilt.metrics, report.metrics);
    let summary = |report: &baton_engine::RunReport| {
        report
            .tasks
            .iter()
            .map(|task| {
                (
                    task.id.clone(),
                    task.status,
                    task.attempts,
                    task.output.clone(),
                    task.note.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(&rebuilt), summary(&report));
    assert_eq!(
        engine
            .store()
            .runs(&baton_store::RunFilter::default())
            .await
            .unwrap()[0]
            .run_id,
        report.run_id
    );
}
