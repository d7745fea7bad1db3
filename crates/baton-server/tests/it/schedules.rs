//! Schedules under an injected clock: each look is given its `now`, so the
//! tests say exactly when it is. Ticks fire once, in the schedule's zone;
//! after downtime each catch-up policy starts what it says; a tick that
//! comes while the previous run goes on is skipped, queued or started beside
//! it.

use std::sync::Arc;

use baton_core::run::{Digest, Millis};
use baton_core::timetable::parse_time;
use baton_server::AppState;
use baton_server::schedules::{look, tick_run_id};
use baton_store::{StoredWorkflow, TickOutcome};

use crate::util::{app, follow};

fn at(text: &str) -> Millis {
    parse_time(text, None, false).unwrap()
}

/// Registers `spec` as version 1 at `registered`.
async fn register(app: &AppState, spec: &str, registered: &str) -> String {
    let workflow = baton_core::check_source(spec, baton_core::Format::Yaml)
        .unwrap()
        .into_workflow();
    let name = workflow.name.clone();
    app.store()
        .put_workflow(&StoredWorkflow {
            name: name.clone(),
            version: 1,
            digest: Digest::of_bytes(spec.as_bytes()),
            created_at: at(registered),
            workflow: Arc::new(workflow),
        })
        .await
        .unwrap();
    name
}

/// `(tick, outcome)` of every recorded tick, oldest first.
async fn ticks(app: &AppState, name: &str) -> Vec<(Millis, &'static str)> {
    let mut ticks: Vec<_> = app
        .store()
        .ticks(name, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|tick| (tick.at, tick.outcome.name()))
        .collect();
    ticks.reverse();
    ticks
}

const HOURLY: &str = "name: hourly
inputs:
  tick: {type: string}
schedule:
  cron: '0 * * * *'
  timezone: Europe/Berlin
tasks:
  a: {run: 'echo \"{{ inputs.tick }}\" >> ticks'}
";

#[tokio::test]
async fn a_schedule_starts_one_run_per_tick_with_the_tick_s_time_as_input() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let name = register(&app, HOURLY, "2026-11-01T00:30:00Z").await;

    let early = look(&app, at("2026-11-01T00:59:59Z")).await.unwrap();
    assert!(early.started.is_empty(), "{early:?}");
    let first = look(&app, at("2026-11-01T01:00:02Z")).await.unwrap();
    let tick = at("2026-11-01T01:00:00Z");
    assert_eq!(
        first.started,
        [(name.clone(), tick, tick_run_id(&name, tick))]
    );
    // Looking again (this replica or another) starts nothing more.
    let again = look(&app, at("2026-11-01T01:00:03Z")).await.unwrap();
    assert!(again.started.is_empty(), "{again:?}");
    follow(&app, &first.started[0].2).await;
    let second = look(&app, at("2026-11-01T02:00:01Z")).await.unwrap();
    assert_eq!(second.started.len(), 1);
    follow(&app, &second.started[0].2).await;

    assert_eq!(
        ticks(&app, &name).await,
        [(tick, "started"), (at("2026-11-01T02:00:00Z"), "started")]
    );
    let written = std::fs::read_to_string(dir.path().join("ticks")).unwrap();
    assert_eq!(
        written, "2026-11-01T02:00:00+01:00\n2026-11-01T03:00:00+01:00\n",
        "each run got its tick, in the schedule's zone"
    );
}

/// The hourly schedule with `catch_up` set, down from 00:30 to `now`.
async fn after_downtime(catch_up: &str, now: &str) -> (Vec<Millis>, Vec<(Millis, &'static str)>) {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let spec = format!(
        "name: caught\nschedule: {{cron: '0 * * * *', catch_up: {catch_up}, overlap: allow}}\ntasks:\n  a: {{noop: true}}\n"
    );
    let name = register(&app, &spec, "2026-11-01T00:30:00Z").await;
    let looked = look(&app, at(now)).await.unwrap();
    for (_, _, run) in &looked.started {
        follow(&app, run).await;
    }
    let started = looked.started.iter().map(|(_, tick, _)| *tick).collect();
    (started, ticks(&app, &name).await)
}

#[tokio::test]
async fn after_downtime_each_catch_up_policy_starts_what_it_says() {
    let (one, two, three) = (
        at("2026-11-01T01:00:00Z"),
        at("2026-11-01T02:00:00Z"),
        at("2026-11-01T03:00:00Z"),
    );
    let (started, recorded) = after_downtime("all", "2026-11-01T03:00:20Z").await;
    assert_eq!(started, [one, two, three]);
    assert_eq!(
        recorded,
        [(one, "started"), (two, "started"), (three, "started")]
    );

    let (started, recorded) = after_downtime("latest", "2026-11-01T03:00:20Z").await;
    assert_eq!(started, [three]);
    assert_eq!(
        recorded,
        [(one, "missed"), (two, "missed"), (three, "started")]
    );

    let (started, recorded) = after_downtime("none", "2026-11-01T03:00:20Z").await;
    assert_eq!(started, [three], "03:00 is on time");
    assert_eq!(
        recorded,
        [(one, "missed"), (two, "missed"), (three, "started")]
    );

    let (started, recorded) = after_downtime("none", "2026-11-01T03:30:00Z").await;
    assert!(
        started.is_empty(),
        "every tick is half an hour late or more"
    );
    assert_eq!(
        recorded,
        [(one, "missed"), (two, "missed"), (three, "missed")]
    );
}

/// A schedule every hour whose run waits for the file `go`.
fn waiting(overlap: &str) -> String {
    format!(
        "name: slow\nschedule: {{cron: '0 * * * *', overlap: {overlap}}}\ntasks:\n  a: {{run: 'while [ ! -f go ]; do sleep 0.02; done'}}\n"
    )
}

#[tokio::test]
async fn a_tick_during_the_previous_run_is_skipped_queued_or_started_beside_it() {
    for overlap in ["skip", "queue", "allow"] {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let name = register(&app, &waiting(overlap), "2026-11-01T00:30:00Z").await;
        let first = look(&app, at("2026-11-01T01:00:01Z")).await.unwrap();
        assert_eq!(first.started.len(), 1, "{overlap}");
        let second = look(&app, at("2026-11-01T02:00:01Z")).await.unwrap();
        let (one, two) = (at("2026-11-01T01:00:00Z"), at("2026-11-01T02:00:00Z"));
        match overlap {
            "skip" => {
                assert!(second.started.is_empty());
                assert_eq!(
                    ticks(&app, &name).await,
                    [(one, "started"), (two, "skipped")]
                );
            }
            "queue" => {
                assert!(second.started.is_empty());
                assert_eq!(
                    ticks(&app, &name).await,
                    [(one, "started"), (two, "queued")]
                );
            }
            _ => {
                assert_eq!(second.started.len(), 1, "two runs at once");
                assert_eq!(
                    ticks(&app, &name).await,
                    [(one, "started"), (two, "started")]
                );
            }
        }
        std::fs::write(dir.path().join("go"), "").unwrap();
        follow(&app, &first.started[0].2).await;
        // The previous run is over: a queued tick starts at the next look.
        let later = look(&app, at("2026-11-01T02:00:30Z")).await.unwrap();
        if overlap == "queue" {
            assert_eq!(
                later.started,
                [(name.clone(), two, tick_run_id(&name, two))]
            );
            follow(&app, &later.started[0].2).await;
            let recorded = app.store().ticks(&name, 1).await.unwrap();
            assert_eq!(
                recorded[0].outcome,
                TickOutcome::Started {
                    run_id: tick_run_id(&name, two)
                }
            );
        } else {
            assert!(later.started.is_empty(), "{overlap}: {later:?}");
        }
    }
}

#[tokio::test]
async fn two_servers_on_one_store_looking_at_once_start_a_tick_once() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (app(dir.path()), app(dir.path()));
    let spec = "name: shared\nschedule: {cron: '0 * * * *', overlap: allow}\ntasks:\n  a: {run: 'echo ran >> ran'}\n";
    let name = register(&one, spec, "2026-11-01T00:30:00Z").await;
    let now = at("2026-11-01T01:00:01Z");
    let (first, second) = tokio::join!(look(&one, now), look(&two, now));
    let (first, second) = (first.unwrap(), second.unwrap());
    let run = tick_run_id(&name, at("2026-11-01T01:00:00Z"));
    // Whichever started it, or both (the second finding the store refuse
    // the run id as taken), it is the tick's one run; a look after the
    // tick was recorded finds nothing due.
    let started: Vec<&String> = first
        .started
        .iter()
        .chain(&second.started)
        .map(|(_, _, run)| run)
        .collect();
    assert!(!started.is_empty());
    assert!(
        started.iter().all(|started| **started == run),
        "{started:?}"
    );
    follow(&one, &run).await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ran")).unwrap(),
        "ran\n"
    );
    assert_eq!(ticks(&one, &name).await.len(), 1);
}
