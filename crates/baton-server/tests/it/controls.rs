//! Steering runs through the API: approvals' decisions, pause and resume,
//! retrying a failed task.

use serde_json::{Value, json};

use crate::contract::problem;
use crate::util::{app, follow, get, json, post_json, send, start};

const GATED: &str = r#"
name: gated
tasks:
  gate:
    approval: {prompt: "go?", choices: [go, stop]}
  after:
    needs: [gate]
    when: "tasks.gate.output.choice == 'go'"
    noop: true
"#;

/// Reads the run until `task` is `status`; the run as shown then.
async fn until_task(app: &baton_server::AppState, run: &str, task: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown = json(send(app, get(&format!("/api/v1/runs/{run}"))).await).await;
        let found = shown["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["id"] == task && row["status"] == status);
        if found {
            return shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{task} never became {status}: {shown}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_decision_is_checked_recorded_and_feeds_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = start(&app, GATED).await;
    let shown = until_task(&app, &run, "gate", "waiting").await;
    assert_eq!(shown["tasks"][0]["approval"]["prompt"], "go?");
    let decide = |task: &str, body: Value| {
        post_json(&format!("/api/v1/runs/{run}/tasks/{task}/decision"), &body)
    };

    let wrong = send(&app, decide("gate", json!({"choice": "maybe"}))).await;
    let body = problem(wrong, 422, "invalid-request").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("choices: go, stop")
    );
    problem(
        send(&app, decide("nope", json!({"choice": "go"}))).await,
        404,
        "not-found",
    )
    .await;
    problem(
        send(&app, decide("gate", json!({"chose": "go"}))).await,
        422,
        "invalid-request",
    )
    .await;

    let body = json!({"choice": "go", "by": "ana", "comment": "fine"});
    let accepted = send(&app, decide("gate", body)).await;
    assert_eq!(accepted.status(), 202);
    assert_eq!(json(accepted).await["accepted"]["type"], "decide");
    let events = follow(&app, &run).await;
    assert_eq!(events.last().unwrap().data["status"], "succeeded");
    let shown = json(send(&app, get(&format!("/api/v1/runs/{run}"))).await).await;
    assert_eq!(shown["tasks"][0]["output"]["by"], "ana");
    assert_eq!(shown["tasks"][1]["status"], "succeeded");
    problem(
        send(&app, decide("gate", json!({"choice": "stop"}))).await,
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn pause_and_resume_are_accepted_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = start(&app, GATED).await;
    until_task(&app, &run, "gate", "waiting").await;
    let post = |what: &str| post_json(&format!("/api/v1/runs/{run}/{what}"), &json!({}));

    assert_eq!(send(&app, post("pause")).await.status(), 202);
    loop {
        let shown = json(send(&app, get(&format!("/api/v1/runs/{run}"))).await).await;
        if shown["status"] == "paused" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let listed = json(send(&app, get("/api/v1/runs?status=paused")).await).await;
    assert_eq!(listed["runs"][0]["run_id"], run.as_str());
    problem(send(&app, post("pause")).await, 409, "conflict").await;
    assert_eq!(send(&app, post("resume")).await.status(), 202);
    assert_eq!(send(&app, post("cancel")).await.status(), 202);
    let events = follow(&app, &run).await;
    assert_eq!(events.last().unwrap().data["status"], "cancelled");
    problem(send(&app, post("resume")).await, 409, "conflict").await;
    problem(
        send(&app, post_json("/api/v1/runs/nope/pause", &json!({}))).await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn retrying_a_failed_task_starts_a_run_that_reuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let spec = "name: flaky\ntasks:\n  first: {run: 'echo 1 > \"$BATON_OUTPUT\"'}\n  second: {needs: [first], run: 'test -f fixed'}\n";
    let run = start(&app, spec).await;
    let events = follow(&app, &run).await;
    assert_eq!(events.last().unwrap().data["status"], "failed");
    let retry = |task: &str| {
        post_json(
            &format!("/api/v1/runs/{run}/tasks/{task}/retry"),
            &json!({}),
        )
    };
    problem(send(&app, retry("first")).await, 409, "conflict").await;
    problem(send(&app, retry("nope")).await, 404, "not-found").await;

    std::fs::write(dir.path().join("fixed"), "").unwrap();
    let created = send(&app, retry("second")).await;
    assert_eq!(created.status(), 201);
    let again = json(created).await["run_id"].as_str().unwrap().to_owned();
    assert_ne!(again, run);
    let events = follow(&app, &again).await;
    assert_eq!(events.last().unwrap().data["status"], "succeeded");
    let shown = json(send(&app, get(&format!("/api/v1/runs/{again}"))).await).await;
    assert_eq!(shown["tasks"][0]["reused_from"], run.as_str());
    assert_eq!(shown["tasks"][1]["attempts"], 1);
}

#[tokio::test]
async fn beyond_max_active_runs_a_start_is_told_to_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let app = crate::util::app_with(
        dir.path(),
        baton_server::ServerConfig {
            require_keys: false,
            max_active_runs: Some(1),
            ..baton_server::ServerConfig::default()
        },
    );
    let body = json!({"spec": GATED, "idempotency_key": "first"});
    let first = send(&app, post_json("/api/v1/runs", &body)).await;
    assert_eq!(first.status(), 201);
    let run = json(first).await["run_id"].as_str().unwrap().to_owned();
    let refused = send(&app, post_json("/api/v1/runs", &json!({"spec": GATED}))).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    problem(refused, 429, "too-many-requests").await;
    // The same request again is the run it started, not a new one.
    let again = send(&app, post_json("/api/v1/runs", &body)).await;
    assert_eq!(again.status(), 200);
    assert_eq!(json(again).await["run_id"], run.as_str());
    // Once it ends, there is room.
    let cancel = post_json(&format!("/api/v1/runs/{run}/cancel"), &json!({}));
    assert_eq!(send(&app, cancel).await.status(), 202);
    follow(&app, &run).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let started = send(&app, post_json("/api/v1/runs", &json!({"spec": GATED}))).await;
        if started.status() == 201 {
            break;
        }
        assert_eq!(started.status(), 429);
        assert!(
            std::time::Instant::now() < deadline,
            "no room after the run ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
