//! Every endpoint's status codes, problem bodies and shapes.

use axum::body::Body;
use axum::http::{Request, header};
use baton_server::ServerConfig;
use serde_json::{Value, json};

use crate::util::{app, app_with, follow, get, json, post_json, send, start, text};

const HELLO: &str = "name: hello\ntasks:\n  greet:\n    run: |\n      echo hi; echo '{\"n\": 1}' > \"$BATON_OUTPUT\"\n  after: {needs: [greet], run: echo done}\n";

/// Asserts a problem+json response of `status` and kind; its body.
pub(crate) async fn problem(
    response: axum::http::Response<Body>,
    status: u16,
    kind: &str,
) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body = json(response).await;
    assert_eq!(body["type"], format!("/api/v1/problems/{kind}"), "{body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    assert_eq!(
        json(send(&app, get("/healthz")).await).await["status"],
        "ok"
    );
    assert_eq!(
        json(send(&app, get("/readyz")).await).await["status"],
        "ready"
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    problem(send(&app, get("/api/v1/nothing")).await, 404, "not-found").await;
    let delete = Request::delete("/api/v1/runs").body(Body::empty()).unwrap();
    problem(send(&app, delete).await, 405, "method-not-allowed").await;
    problem(
        send(&app, get("/api/v1/runs/missing")).await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn bad_bodies_get_the_status_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        body_limit: 256,
        require_keys: false,
        ..ServerConfig::default()
    };
    let app = app_with(dir.path(), config);
    let malformed = Request::post("/api/v1/runs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"spec\": "))
        .unwrap();
    problem(send(&app, malformed).await, 400, "malformed-request").await;
    let untyped = Request::post("/api/v1/runs")
        .body(Body::from("{}"))
        .unwrap();
    problem(send(&app, untyped).await, 415, "unsupported-media-type").await;
    let unknown = post_json("/api/v1/runs", &json!({"spec": HELLO, "colour": "red"}));
    problem(send(&app, unknown).await, 422, "invalid-request").await;
    let huge = post_json("/api/v1/runs", &json!({"spec": "x".repeat(1000)}));
    problem(send(&app, huge).await, 413, "body-too-large").await;
    let query = get("/api/v1/runs?limit=many");
    problem(send(&app, query).await, 400, "malformed-request").await;
    let cursor = get("/api/v1/runs?cursor=nobody");
    problem(send(&app, cursor).await, 400, "malformed-request").await;
}

#[tokio::test]
async fn an_invalid_spec_gets_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let spec = "name: broken\ntasks:\n  a: {run: x, needs: [nope]}\n  b: {run: y, retry: {max_attempts: 0}}\n";
    let body = problem(
        send(&app, post_json("/api/v1/runs", &json!({"spec": spec}))).await,
        422,
        "invalid-workflow",
    )
    .await;
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{body}");
    assert_eq!(problems[0]["task"], "a");
    assert_eq!(problems[0]["location"]["line"], 3);
    let inputs = json!({"spec": "name: i\ninputs: {n: {type: integer}}\ntasks:\n  a: {run: x}\n"});
    let body = problem(
        send(&app, post_json("/api/v1/runs", &inputs)).await,
        422,
        "invalid-workflow",
    )
    .await;
    assert!(
        body["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("n")
    );
}

#[tokio::test]
async fn a_started_run_is_listed_shown_and_proved() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let response = send(&app, post_json("/api/v1/runs", &json!({"spec": HELLO}))).await;
    assert_eq!(response.status(), 201);
    let run = json(response).await["run_id"].as_str().unwrap().to_owned();
    follow(&app, &run).await;

    let shown = json(send(&app, get(&format!("/api/v1/runs/{run}"))).await).await;
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(shown["tasks"][0]["id"], "greet");
    assert_eq!(shown["tasks"][0]["output"], json!({"n": 1}));
    assert_eq!(shown["tasks"][1]["attempts"], 1);

    let listed = json(send(&app, get("/api/v1/runs?status=succeeded")).await).await;
    assert_eq!(listed["runs"][0]["run_id"], run.as_str());
    assert_eq!(listed["next_cursor"], Value::Null);

    let trace = json(send(&app, get(&format!("/api/v1/runs/{run}/trace"))).await).await;
    assert_eq!(trace["trace"].as_str().unwrap().len(), 64);
    let chain = json(send(&app, get(&format!("/api/v1/runs/{run}/provenance"))).await).await;
    assert_eq!(chain["records"].as_array().unwrap().len(), 2);
    let verified = json(send(&app, get(&format!("/api/v1/runs/{run}/verify"))).await).await;
    assert_eq!(verified["mismatch"], Value::Null);
    assert_eq!(verified["root"], chain["root"]);
    let checkpoints = send(&app, get(&format!("/api/v1/runs/{run}/checkpoints"))).await;
    assert_eq!(checkpoints.status(), 200);
    let artifacts = json(send(&app, get(&format!("/api/v1/runs/{run}/artifacts"))).await).await;
    assert_eq!(artifacts, json!([]));
    let logs = send(&app, get(&format!("/api/v1/runs/{run}/tasks/greet/logs"))).await;
    assert_eq!(text(logs).await, "hi\n");
    let missing = send(
        &app,
        get(&format!("/api/v1/runs/{run}/tasks/greet/logs?attempt=2")),
    )
    .await;
    problem(missing, 404, "not-found").await;
}

#[tokio::test]
async fn runs_are_listed_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let mut started = Vec::new();
    for _ in 0..3 {
        let run = start(&app, "name: tiny\ntasks:\n  a: {noop: true}\n").await;
        follow(&app, &run).await;
        started.push(run);
    }
    let mut seen = Vec::new();
    let mut uri = "/api/v1/runs?limit=2&workflow=tiny".to_owned();
    loop {
        let page = json(send(&app, get(&uri)).await).await;
        for run in page["runs"].as_array().unwrap() {
            seen.push(run["run_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/runs?limit=2&workflow=tiny&cursor={cursor}"),
            None => break,
        }
    }
    started.reverse();
    assert_eq!(seen, started, "newest first, each once");
    // Any cursor of the documented shape is a place to follow on from,
    // even one no page ever gave: here, before the first run ever.
    let before_all = json(send(&app, get("/api/v1/runs?cursor=0.0")).await).await;
    assert_eq!(before_all["runs"], json!([]));
    assert_eq!(before_all["next_cursor"], Value::Null);
}

#[tokio::test]
async fn an_idempotency_key_starts_one_run_however_often_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let request = || {
        Request::post("/api/v1/runs")
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", "deploy-42")
            .body(Body::from(json!({"spec": HELLO}).to_string()))
            .unwrap()
    };
    let first = send(&app, request()).await;
    assert_eq!(first.status(), 201);
    let run = json(first).await["run_id"].clone();
    follow(&app, run.as_str().unwrap()).await;
    let again = send(&app, request()).await;
    assert_eq!(again.status(), 200);
    let body = json(again).await;
    assert_eq!(body["run_id"], run);
    assert_eq!(body["status"], "succeeded");
    let listed = json(send(&app, get("/api/v1/runs")).await).await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_cancelled_run_stops_and_cannot_be_cancelled_twice() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = start(
        &app,
        "name: slow\ntasks:\n  wait: {run: sleep 300}\n  after: {needs: [wait], run: touch ran}\n",
    )
    .await;
    let response = send(
        &app,
        post_json(&format!("/api/v1/runs/{run}/cancel"), &json!({})),
    )
    .await;
    assert_eq!(response.status(), 202);
    let events = follow(&app, &run).await;
    assert_eq!(events.last().unwrap().data["status"], "cancelled");
    let again = send(
        &app,
        post_json(&format!("/api/v1/runs/{run}/cancel"), &json!({})),
    )
    .await;
    problem(again, 409, "conflict").await;
    assert!(!dir.path().join("ran").exists());
}

#[tokio::test]
async fn an_artifact_is_downloaded_by_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = start(
        &app,
        "name: art\ntasks:\n  make:\n    run: echo data > out.txt\n    artifacts: [out.txt]\n",
    )
    .await;
    follow(&app, &run).await;
    let listed = json(send(&app, get(&format!("/api/v1/runs/{run}/artifacts"))).await).await;
    assert_eq!(listed[0]["task"], "make");
    let digest = listed[0]["digest"].as_str().unwrap();
    let bytes = send(&app, get(&format!("/api/v1/artifacts/{digest}"))).await;
    assert_eq!(bytes.status(), 200);
    assert_eq!(text(bytes).await, "data\n");
    problem(
        send(&app, get("/api/v1/artifacts/nothex")).await,
        400,
        "malformed-request",
    )
    .await;
    let absent = format!("/api/v1/artifacts/{}", "0".repeat(64));
    problem(send(&app, get(&absent)).await, 404, "not-found").await;
}

#[tokio::test]
async fn metrics_count_runs_tasks_and_requests_in_the_prometheus_format() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = start(&app, HELLO).await;
    follow(&app, &run).await;
    send(&app, get(&format!("/api/v1/runs/{run}"))).await;
    let response = send(&app, get("/metrics")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let metrics = text(response).await;
    for expected in [
        "baton_runs_started_total",
        "baton_runs_finished_total{status=\"succeeded\"}",
        "baton_tasks_finished_total{status=\"succeeded\",kind=\"run\"}",
        "baton_task_duration_seconds_bucket{kind=\"run\"",
        "baton_task_queue_wait_seconds_bucket",
        "baton_event_append_seconds_bucket",
        "baton_http_request_duration_seconds_bucket{route=\"/api/v1/runs/{id}\",method=\"GET\",status=\"200\"",
        "baton_http_requests_total{route=\"/api/v1/runs\",method=\"POST\",status=\"201\"}",
        "baton_active_runs",
        "baton_running_tasks",
        "baton_approvals_waiting",
    ] {
        assert!(metrics.contains(expected), "no {expected} in:\n{metrics}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_the_reference_page_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let document = json(send(&app, get("/api/v1/openapi.json")).await).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/runs", &["get", "post"][..]),
        ("/api/v1/runs/{id}", &["get"]),
        ("/api/v1/runs/{id}/tasks/{task}/decision", &["post"]),
        ("/api/v1/runs/{id}/events", &["get"]),
        ("/api/v1/workflows", &["get", "post"]),
        ("/api/v1/workflows/{name}", &["get", "delete"]),
        ("/api/v1/keys/{id}", &["delete"]),
        ("/metrics", &["get"]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is not described"
            );
        }
    }
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    // Every reference points at a component the document has, the bodies
    // typed in the engine and the store included.
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target.clone());
                }
                map.values().for_each(|value| references(value, found));
            }
            Value::Array(items) => items.iter().for_each(|value| references(value, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&document, &mut found);
    let components = document["components"]["schemas"].as_object().unwrap();
    for target in &found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or(target);
        assert!(components.contains_key(name), "{target} points at nothing");
    }
    let shown = &paths["/api/v1/runs/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(shown["$ref"], "#/components/schemas/RunShown", "{shown}");
    assert_eq!(
        components["TaskReport"]["properties"]["status"]["$ref"],
        "#/components/schemas/TaskStatus"
    );
    let refused = &paths["/api/v1/runs"]["post"]["responses"]["422"];
    assert_eq!(
        refused["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem",
        "{refused}"
    );
    assert!(
        refused["description"]
            .as_str()
            .unwrap()
            .starts_with("Invalid")
    );
    let start = &document["components"]["schemas"]["StartRun"];
    assert_eq!(start["oneOf"].as_array().unwrap().len(), 2, "{start}");
    // What the document allows is what the server takes: an inline spec
    // object is a workflow (which names itself and has tasks), a run
    // filter is not empty.
    let inline = &start["oneOf"][0]["properties"]["spec"]["oneOf"][1];
    assert_eq!(inline["$ref"], "#/components/schemas/Workflow", "{inline}");
    let workflow = &document["components"]["schemas"]["Workflow"];
    assert_eq!(workflow["required"], json!(["name", "tasks"]), "{workflow}");
    let feed = paths["/api/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "run")
        .unwrap();
    assert_eq!(feed["schema"]["minLength"], 1, "{feed}");
    let page = send(&app, get("/api/v1/docs/")).await;
    assert_eq!(page.status(), 200);
    assert!(text(page).await.contains("swagger"));
    let script = send(&app, get("/api/v1/docs/swagger-ui-bundle.js")).await;
    assert_eq!(script.status(), 200, "the page's files are in the binary");
}

#[tokio::test]
async fn task_logs_follow_an_attempt_as_it_writes_until_it_ends() {
    use http_body_util::BodyExt;
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let spec = "name: talk\ntasks:\n  talk:\n    run: echo first; touch started; while [ ! -f go ]; do sleep 0.02; done; echo second\n";
    let run = start(&app, spec).await;
    while !dir.path().join("started").exists() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let logs = format!("/api/v1/runs/{run}/tasks/talk/logs");
    let response = send(&app, get(&format!("{logs}?follow=true"))).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut text = String::new();
    while !text.contains("first") {
        let frame = body.frame().await.unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap()));
    }
    assert_eq!(text, "first\n", "printed while the task still runs");
    std::fs::write(dir.path().join("go"), "").unwrap();
    while let Some(frame) = body.frame().await {
        text.push_str(&String::from_utf8_lossy(
            &frame.unwrap().into_data().unwrap(),
        ));
    }
    assert_eq!(
        text, "first\nsecond\n",
        "and the answer ends with the attempt"
    );
    let rest = send(&app, get(&format!("{logs}?offset=6"))).await;
    assert_eq!(crate::util::text(rest).await, "second\n");
}

#[tokio::test]
async fn task_logs_stream_as_events_and_resume_after_the_last_byte_offset_seen() {
    use crate::util::parse_sse;
    use http_body_util::BodyExt;
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    // A carriage return and a character of two bytes, which SSE data and
    // byte offsets must both carry whole.
    let spec = "name: talk\ntasks:\n  talk:\n    run: printf 'fïrst\\r\\n'; touch started; while [ ! -f go ]; do sleep 0.02; done; echo second\n";
    let run = start(&app, spec).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !dir.path().join("started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the task never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let logs = format!("/api/v1/runs/{run}/tasks/talk/logs?follow=true");
    let events = |last: Option<u64>| {
        let mut request = Request::get(&logs).header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        request.body(Body::empty()).unwrap()
    };
    let response = send(&app, events(None)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = response.into_body();
    let mut raw = String::new();
    while parse_sse(&raw).is_empty() {
        let frame = tokio::time::timeout_at(deadline.into(), body.frame())
            .await
            .expect("no log event while the task runs")
            .unwrap()
            .unwrap();
        raw.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap()));
    }
    drop(body);
    let first = parse_sse(&raw);
    assert_eq!(first[0].kind, "log");
    assert_eq!(first[0].data["text"], "fïrst\r\n");
    assert_eq!(first[0].data["offset"], 0);
    assert_eq!(first[0].id, "fïrst\r\n".len() as u64);

    std::fs::write(dir.path().join("go"), "").unwrap();
    let rest = send(&app, events(Some(first[0].id))).await;
    let rest = parse_sse(&crate::util::text(rest).await);
    let kinds: Vec<&str> = rest.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(kinds, ["log", "end"], "{rest:?}");
    assert_eq!(rest[0].data["text"], "second\n");
    assert_eq!(rest[0].data["offset"], first[0].id);
    assert_eq!(rest[1].id, "fïrst\r\nsecond\n".len() as u64);
}
