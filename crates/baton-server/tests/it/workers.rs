//! The worker protocol as a worker in another language would speak it:
//! plain JSON requests written from the OpenAPI document, the routes and
//! schemas it names, stale fencing tokens refused, and a worker key that
//! acts only for its own workers.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, header};
use baton_core::run::Millis;
use baton_engine::{EngineConfig, WorkerSettings};
use baton_server::{AppState, ServerConfig, issue};
use baton_store::Scope;
use serde_json::{Value, json};

use crate::contract::problem;
use crate::util::{Sse, json, parse_sse, send, text};

/// A service with keys on and quick leases; its keys by scope.
async fn service(dir: &std::path::Path) -> (AppState, Keys) {
    let app = crate::util::app_on(
        dir,
        EngineConfig {
            workers: WorkerSettings {
                heartbeat: baton_core::Duration::from_millis(100),
                lease: baton_core::Duration::from_millis(300),
                ..WorkerSettings::default()
            },
            ..crate::util::engine_config(dir)
        },
        ServerConfig::default(),
    );
    let mut keys = Keys::default();
    for (scope, slot) in [
        (Scope::Read, &mut keys.read),
        (Scope::Execute, &mut keys.execute),
        (Scope::Worker, &mut keys.worker),
        (Scope::Worker, &mut keys.other_worker),
    ] {
        let (key, token) = issue(scope.name(), scope, Millis(1));
        app.store().put_key(&key).await.unwrap();
        *slot = token;
    }
    (app, keys)
}

#[derive(Default)]
struct Keys {
    read: String,
    execute: String,
    worker: String,
    other_worker: String,
}

fn call(
    method: Method,
    uri: &str,
    key: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    if let Some(token) = token {
        builder = builder.header("Baton-Worker-Token", token);
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// A registered worker: its id and token.
async fn register(app: &AppState, key: &str, capability: &str) -> (String, String) {
    let body = json!({"name": "polyglot", "capabilities": [capability], "labels": {"zone": "a"}, "concurrency": 2, "version": "0.0.1"});
    let response = send(
        app,
        call(Method::POST, "/api/v1/workers", key, None, Some(&body)),
    )
    .await;
    assert_eq!(response.status(), 201);
    let registered = json(response).await;
    assert!(registered["heartbeat_ms"].as_u64().unwrap() > 0);
    assert!(registered["lease_ms"].as_u64().unwrap() > 0);
    (
        registered["worker_id"].as_str().unwrap().to_owned(),
        registered["token"].as_str().unwrap().to_owned(),
    )
}

async fn start(app: &AppState, key: &str, spec: &str) -> String {
    let response = send(
        app,
        call(
            Method::POST,
            "/api/v1/runs",
            key,
            None,
            Some(&json!({"spec": spec})),
        ),
    )
    .await;
    assert_eq!(response.status(), 201, "{}", text(response).await);
    json(response).await["run_id"].as_str().unwrap().to_owned()
}

/// Polls until a lease comes (up to 10 s); the answer that held it.
async fn lease(app: &AppState, key: &str, (id, token): (&str, &str), held: &[Value]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = json!({"take": 1, "wait_ms": 1000, "running": held});
        let response = send(
            app,
            call(
                Method::POST,
                &format!("/api/v1/workers/{id}/poll"),
                key,
                Some(token),
                Some(&body),
            ),
        )
        .await;
        assert_eq!(response.status(), 200);
        let polled = json(response).await;
        if !polled["leases"].as_array().unwrap().is_empty() {
            return polled;
        }
        assert!(Instant::now() < deadline, "no lease came");
    }
}

async fn complete(app: &AppState, key: &str, (id, token): (&str, &str), report: &Value) -> u16 {
    send(
        app,
        call(
            Method::POST,
            &format!("/api/v1/workers/{id}/complete"),
            key,
            Some(token),
            Some(report),
        ),
    )
    .await
    .status()
    .as_u16()
}

/// Follows a run's events to its end with `key`.
async fn follow(app: &AppState, key: &str, run: &str) -> Vec<Sse> {
    let response = send(
        app,
        call(
            Method::GET,
            &format!("/api/v1/runs/{run}/events"),
            key,
            None,
            None,
        ),
    )
    .await;
    assert_eq!(response.status(), 200);
    parse_sse(&text(response).await)
}

#[tokio::test]
async fn the_openapi_document_describes_every_call_of_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = service(dir.path()).await;
    let document = json(
        send(
            &app,
            call(Method::GET, "/api/v1/openapi.json", &keys.read, None, None),
        )
        .await,
    )
    .await;
    for (path, method) in [
        ("/api/v1/workers", "post"),
        ("/api/v1/workers/{id}/poll", "post"),
        ("/api/v1/workers/{id}/complete", "post"),
        ("/api/v1/workers/{id}/leases/{lease}/logs", "post"),
        ("/api/v1/workers/{id}/drain", "post"),
        ("/api/v1/workers/{id}", "delete"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path}"
        );
    }
    let schemas = &document["components"]["schemas"];
    for name in [
        "Registration",
        "Registered",
        "Poll",
        "Polled",
        "Lease",
        "LeasedWork",
        "Report",
        "End",
        "Held",
        "Taken",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
    // What a lease carries, as the document says.
    let lease = &schemas["Lease"]["properties"];
    for field in [
        "lease_id",
        "fencing",
        "expires_in_ms",
        "run_id",
        "task_id",
        "attempt",
        "work",
        "env",
        "inputs",
        "needs",
    ] {
        assert!(lease[field].is_object(), "Lease.{field}");
    }
}

#[tokio::test]
async fn a_worker_leases_runs_and_reports_and_a_stale_fencing_token_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = service(dir.path()).await;
    let (id, token) = register(&app, &keys.worker, "build").await;
    let me = (id.as_str(), token.as_str());
    let run = start(
        &app,
        &keys.execute,
        "name: remote\ninputs: {zone: {default: a}}\ntasks:\n  build:\n    run: make {{ inputs.zone }}\n    env: {TARGET: release}\n    runs_on: {capability: build, labels: {zone: '{{ inputs.zone }}'}}\n  after: {needs: [build], noop: true}\n",
    )
    .await;
    let polled = lease(&app, &keys.worker, me, &[]).await;
    let lease = &polled["leases"][0];
    assert_eq!(lease["run_id"], run);
    assert_eq!(lease["task_id"], "build");
    assert_eq!(lease["attempt"], 1);
    assert_eq!(lease["capability"], "build");
    assert_eq!(lease["work"]["kind"], "shell");
    assert_eq!(lease["env"]["TARGET"], "release");
    let lease_id = lease["lease_id"].as_str().unwrap();
    let fencing = lease["fencing"].as_u64().unwrap();

    let logs = Request::post(format!(
        "/api/v1/workers/{id}/leases/{lease_id}/logs?stream=stdout"
    ))
    .header(header::AUTHORIZATION, format!("Bearer {}", keys.worker))
    .header("Baton-Worker-Token", &token)
    .header(header::CONTENT_TYPE, "application/octet-stream")
    .body(Body::from("made it\n"))
    .unwrap();
    assert_eq!(send(&app, logs).await.status(), 204);

    let stale = json!({"lease_id": lease_id, "fencing": fencing + 1, "end": {"status": "succeeded", "output": {"n": 2}}});
    assert_eq!(complete(&app, &keys.worker, me, &stale).await, 409);
    let good = json!({"lease_id": lease_id, "fencing": fencing, "end": {"status": "succeeded", "output": {"n": 1}}, "usage": {"tokens": 7}});
    assert_eq!(complete(&app, &keys.worker, me, &good).await, 204);
    let again = send(
        &app,
        call(
            Method::POST,
            &format!("/api/v1/workers/{id}/complete"),
            &keys.worker,
            Some(&token),
            Some(&good),
        ),
    )
    .await;
    problem(again, 409, "conflict").await;

    let events = follow(&app, &keys.read, &run).await;
    let succeeded: Vec<&Value> = events
        .iter()
        .filter(|event| event.kind == "task_succeeded" && event.data["task"] == "build")
        .map(|event| &event.data)
        .collect();
    assert_eq!(succeeded.len(), 1, "{events:#?}");
    let shown = json(
        send(
            &app,
            call(
                Method::GET,
                &format!("/api/v1/runs/{run}"),
                &keys.read,
                None,
                None,
            ),
        )
        .await,
    )
    .await;
    assert_eq!(shown["status"], "succeeded", "{shown:#}");
    let build = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|task| task["id"] == "build")
        .unwrap();
    assert_eq!(build["output"], json!({"n": 1, "baton": {"tokens": 7}}));
    assert_eq!(shown["metrics"]["usage"]["tokens"], 7);
    let log = text(
        send(
            &app,
            call(
                Method::GET,
                &format!("/api/v1/runs/{run}/tasks/build/logs"),
                &keys.read,
                None,
                None,
            ),
        )
        .await,
    )
    .await;
    assert!(log.contains("made it"), "{log}");
}

#[tokio::test]
async fn an_expired_lease_is_lost_retried_and_its_late_report_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = service(dir.path()).await;
    let (id, token) = register(&app, &keys.worker, "build").await;
    let me = (id.as_str(), token.as_str());
    let run = start(
        &app,
        &keys.execute,
        "name: lost\ntasks:\n  build:\n    run: make\n    runs_on: {capability: build}\n    retry: {max_attempts: 2, on: [lost], initial: 10ms}\n",
    )
    .await;
    let first = lease(&app, &keys.worker, me, &[]).await["leases"][0].clone();
    // Not extended, the first lease runs out; the retry comes as a new one.
    let polled = lease(&app, &keys.worker, me, &[]).await;
    let second = &polled["leases"][0];
    assert_eq!(second["attempt"], 2);
    let late = json!({"lease_id": first["lease_id"], "fencing": first["fencing"], "end": {"status": "succeeded"}});
    assert_eq!(complete(&app, &keys.worker, me, &late).await, 409);
    let good = json!({"lease_id": second["lease_id"], "fencing": second["fencing"], "end": {"status": "succeeded"}});
    assert_eq!(complete(&app, &keys.worker, me, &good).await, 204);
    let events = follow(&app, &keys.read, &run).await;
    let kinds: Vec<&str> = events
        .iter()
        .filter(|event| event.data["task"] == "build")
        .map(|event| event.kind.as_str())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "task_succeeded")
            .count(),
        1,
        "{kinds:?}"
    );
    let failed = events
        .iter()
        .find(|event| event.kind == "task_failed")
        .expect("the lost attempt failed");
    assert_eq!(failed.data["failure"]["kind"], "lost", "{:#}", failed.data);
}

#[tokio::test]
async fn a_worker_key_acts_only_for_its_own_workers_and_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = service(dir.path()).await;
    let (id, token) = register(&app, &keys.worker, "build").await;
    for (method, uri) in [
        (Method::GET, "/api/v1/runs"),
        (Method::GET, "/api/v1/agents"),
    ] {
        let refused = send(&app, call(method, uri, &keys.worker, None, None)).await;
        problem(refused, 403, "forbidden").await;
    }
    let refused = send(
        &app,
        call(
            Method::POST,
            "/api/v1/runs",
            &keys.worker,
            None,
            Some(&json!({"spec": "name: x\ntasks:\n  a: {run: id}\n"})),
        ),
    )
    .await;
    problem(refused, 403, "forbidden").await;
    let body = json!({"name": "n", "capabilities": ["build"], "concurrency": 1});
    let refused = send(
        &app,
        call(
            Method::POST,
            "/api/v1/workers",
            &keys.read,
            None,
            Some(&body),
        ),
    )
    .await;
    problem(refused, 403, "forbidden").await;

    let poll = json!({"take": 0});
    let uri = format!("/api/v1/workers/{id}/poll");
    let theirs = send(
        &app,
        call(
            Method::POST,
            &uri,
            &keys.other_worker,
            Some(&token),
            Some(&poll),
        ),
    )
    .await;
    problem(theirs, 403, "forbidden").await;
    let forged = send(
        &app,
        call(
            Method::POST,
            &uri,
            &keys.worker,
            Some("forged"),
            Some(&poll),
        ),
    )
    .await;
    problem(forged, 403, "forbidden").await;
    let unknown = send(
        &app,
        call(
            Method::POST,
            "/api/v1/workers/w-gone/poll",
            &keys.worker,
            Some(&token),
            Some(&poll),
        ),
    )
    .await;
    problem(unknown, 404, "not-found").await;
    let bad = json!({"name": "", "capabilities": [], "concurrency": 0});
    let refused = send(
        &app,
        call(
            Method::POST,
            "/api/v1/workers",
            &keys.worker,
            None,
            Some(&bad),
        ),
    )
    .await;
    problem(refused, 422, "invalid-request").await;

    let leave = send(
        &app,
        call(
            Method::DELETE,
            &format!("/api/v1/workers/{id}"),
            &keys.worker,
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(leave.status(), 204);
    let gone = send(
        &app,
        call(Method::POST, &uri, &keys.worker, Some(&token), Some(&poll)),
    )
    .await;
    problem(gone, 404, "not-found").await;
}

#[tokio::test]
async fn queued_work_can_be_given_a_new_priority_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = service(dir.path()).await;
    let run = start(
        &app,
        &keys.execute,
        "name: queued\ntasks:\n  render:\n    run: make\n    runs_on: {capability: gpu}\n",
    )
    .await;
    let uri = format!("/api/v1/runs/{run}/tasks/render/priority");
    let body = json!({"priority": 10});
    let deadline = Instant::now() + Duration::from_secs(10);
    let moved = loop {
        let response = send(
            &app,
            call(Method::POST, &uri, &keys.execute, None, Some(&body)),
        )
        .await;
        if response.status() == 200 {
            break json(response).await;
        }
        // Until the run's loop has queued the attempt, there is nothing to move.
        problem(response, 404, "not-found").await;
        assert!(Instant::now() < deadline, "the attempt was never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        moved,
        json!({"run_id": run, "task": "render", "priority": 10, "queued": 1})
    );
    let refused = send(
        &app,
        call(Method::POST, &uri, &keys.read, None, Some(&body)),
    )
    .await;
    problem(refused, 403, "forbidden").await;
    let shown = json(
        send(
            &app,
            call(
                Method::GET,
                &format!("/api/v1/runs/{run}"),
                &keys.read,
                None,
                None,
            ),
        )
        .await,
    )
    .await;
    let render = &shown["tasks"][0];
    assert_eq!(
        render["waiting"], "waiting for a worker with capability `gpu`",
        "{shown:#}"
    );
    let cancelled = send(
        &app,
        call(
            Method::POST,
            &format!("/api/v1/runs/{run}/cancel"),
            &keys.execute,
            None,
            None,
        ),
    )
    .await;
    assert_eq!(cancelled.status(), 202);
}

#[tokio::test]
async fn files_go_to_a_worker_and_come_back_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = service(dir.path()).await;
    let (id, token) = register(&app, &keys.worker, "build").await;
    let me = (id.as_str(), token.as_str());
    let run = start(
        &app,
        &keys.execute,
        "name: files\ntasks:\n  build:\n    run: make\n    runs_on: {capability: build}\n    artifacts: [dist/app.txt]\n  ship:\n    needs: [build]\n    run: cat dist/app.txt\n    runs_on: {capability: build}\n",
    )
    .await;
    let polled = lease(&app, &keys.worker, me, &[]).await;
    let build = &polled["leases"][0];
    assert_eq!(build["artifacts"], json!(["dist/app.txt"]));
    let lease_id = build["lease_id"].as_str().unwrap();
    let bytes = b"app 1.0\n".to_vec();
    let sha256 = baton_core::run::Digest::of_bytes(&bytes).to_string();
    let files = format!("/api/v1/workers/{id}/leases/{lease_id}/files");
    let put = |sha: &str, body: Vec<u8>| {
        Request::put(format!("{files}/{sha}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", keys.worker))
            .header("Baton-Worker-Token", &token)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(body))
            .unwrap()
    };
    let wrong = send(&app, put(&sha256, b"something else".to_vec())).await;
    problem(wrong, 422, "invalid-request").await;
    assert_eq!(send(&app, put(&sha256, bytes.clone())).await.status(), 204);
    let report = json!({"lease_id": lease_id, "fencing": build["fencing"], "end": {"status": "succeeded"},
        "artifacts": [{"path": "dist/app.txt", "sha256": sha256, "size": bytes.len()}]});
    assert_eq!(complete(&app, &keys.worker, me, &report).await, 204);

    let polled = lease(&app, &keys.worker, me, &[]).await;
    let ship = &polled["leases"][0];
    assert_eq!(ship["task_id"], "ship");
    assert_eq!(
        ship["files"],
        json!([{"path": "dist/app.txt", "sha256": sha256, "size": bytes.len()}])
    );
    let ship_id = ship["lease_id"].as_str().unwrap();
    let got = send(
        &app,
        call(
            Method::GET,
            &format!("/api/v1/workers/{id}/leases/{ship_id}/files/{sha256}"),
            &keys.worker,
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(got.status(), 200);
    assert_eq!(text(got).await.as_bytes(), bytes.as_slice());
    let other = "0".repeat(64);
    let refused = send(
        &app,
        call(
            Method::GET,
            &format!("/api/v1/workers/{id}/leases/{ship_id}/files/{other}"),
            &keys.worker,
            Some(&token),
            None,
        ),
    )
    .await;
    problem(refused, 422, "invalid-request").await;
    let done =
        json!({"lease_id": ship_id, "fencing": ship["fencing"], "end": {"status": "succeeded"}});
    assert_eq!(complete(&app, &keys.worker, me, &done).await, 204);

    let shown = json(
        send(
            &app,
            call(
                Method::GET,
                &format!("/api/v1/runs/{run}"),
                &keys.read,
                None,
                None,
            ),
        )
        .await,
    )
    .await;
    assert_eq!(shown["status"], "succeeded", "{shown:#}");
    let artifacts = json(
        send(
            &app,
            call(
                Method::GET,
                &format!("/api/v1/runs/{run}/artifacts"),
                &keys.read,
                None,
                None,
            ),
        )
        .await,
    )
    .await;
    let listed = artifacts.to_string();
    assert!(
        listed.contains("dist/app.txt") && listed.contains(&sha256),
        "{artifacts:#}"
    );
}
