//! OpenTelemetry: with an OTLP endpoint, a run is exported as a trace (the
//! run the root span, each attempt a child), each API request as a server
//! span under the caller's `traceparent`, and a task's `TRACEPARENT` names
//! its attempt's span. The collector here is a small OTLP/HTTP receiver
//! inside the test, decoding what the server sends.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, header};
use baton_core::run::trace_context::{attempt_span_id, hex, run_span_id, trace_id, traceparent};
use baton_engine::EngineConfig;
use baton_server::{AppState, ServerConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::util::{app_on, engine_config, follow, get, json, send};

/// An OTLP/HTTP receiver on a free port: the spans it was sent.
async fn collector() -> (String, Arc<Mutex<Vec<Span>>>) {
    let received: Arc<Mutex<Vec<Span>>> = Arc::default();
    let kept = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut kept = kept.lock().unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        kept.extend(scope.spans);
                    }
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), received)
}

fn attribute(span: &Span, key: &str) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes
        .iter()
        .find(|pair| pair.key == key)
        .and_then(|pair| pair.value.as_ref()?.value.clone())
        .map(|value| match value {
            Value::StringValue(text) => text,
            Value::IntValue(number) => number.to_string(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

/// A server without keys exporting to a collector of its own; the spans
/// the collector received.
async fn traced(dir: &std::path::Path) -> (AppState, Arc<Mutex<Vec<Span>>>) {
    let (endpoint, received) = collector().await;
    let exporter = baton_server::otlp::export(&endpoint, "baton-test");
    let app = app_on(
        dir,
        EngineConfig {
            spans: Some(exporter),
            ..engine_config(dir)
        },
        ServerConfig {
            require_keys: false,
            ..ServerConfig::default()
        },
    );
    (app, received)
}

/// Waits (up to 30 s) until `received` holds `count` spans of `run`'s trace.
async fn spans_of(received: &Mutex<Vec<Span>>, run: &str, count: usize) -> Vec<Span> {
    let trace = trace_id(run).to_vec();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans: Vec<Span> = received.lock().unwrap().clone();
        if spans.iter().filter(|span| span.trace_id == trace).count() >= count {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "the run's spans did not arrive: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_attempt_a_remote_worker_ran_names_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (app, received) = traced(dir.path()).await;
    let registered = send(
        &app,
        crate::util::post_json(
            "/api/v1/workers",
            &serde_json::json!({"name": "w-east", "capabilities": ["build"], "concurrency": 1, "version": "0.0.1"}),
        ),
    )
    .await;
    assert_eq!(registered.status(), 201);
    let registered = json(registered).await;
    let (worker, token) = (
        registered["worker_id"].as_str().unwrap().to_owned(),
        registered["token"].as_str().unwrap().to_owned(),
    );
    let spec = "name: routed\ntasks:\n  build: {run: make, runs_on: {capability: build}}\n";
    let started = send(
        &app,
        crate::util::post_json("/api/v1/runs", &serde_json::json!({"spec": spec})),
    )
    .await;
    let run = json(started).await["run_id"].as_str().unwrap().to_owned();
    let worker_call = |path: String, body: serde_json::Value| {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header("Baton-Worker-Token", &token)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let lease = loop {
        let polled = json(
            send(
                &app,
                worker_call(
                    format!("/api/v1/workers/{worker}/poll"),
                    serde_json::json!({"take": 1, "wait_ms": 500, "running": []}),
                ),
            )
            .await,
        )
        .await;
        if let Some(lease) = polled["leases"].get(0) {
            break lease.clone();
        }
        assert!(Instant::now() < deadline, "no lease came");
    };
    let report = serde_json::json!({"lease_id": lease["lease_id"], "fencing": lease["fencing"], "end": {"status": "succeeded", "output": null}});
    let completed = send(
        &app,
        worker_call(format!("/api/v1/workers/{worker}/complete"), report),
    )
    .await;
    assert_eq!(completed.status(), 204);
    follow(&app, &run).await;
    let spans = spans_of(&received, &run, 2).await;
    let build = spans
        .iter()
        .find(|span| span.trace_id == trace_id(&run).to_vec() && span.name == "build")
        .expect("the attempt's span");
    assert_eq!(attribute(build, "baton.worker"), "w-east");
    assert_eq!(attribute(build, "baton.worker.capability"), "build");
}

#[tokio::test]
async fn a_run_is_exported_as_one_trace_with_a_span_per_attempt_under_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (app, received) = traced(dir.path()).await;

    let caller = ([7; 16], [9; 8]);
    let spec = "name: traced\ntasks:\n  first: {run: 'printf %s \"$TRACEPARENT\" > traceparent'}\n  second: {needs: [first], run: 'true'}\n";
    let start = Request::post("/api/v1/runs")
        .header(header::CONTENT_TYPE, "application/json")
        .header("traceparent", traceparent(caller.0, caller.1))
        .body(Body::from(serde_json::json!({"spec": spec}).to_string()))
        .unwrap();
    let started = send(&app, start).await;
    assert_eq!(started.status(), 201);
    let run = json(started).await["run_id"].as_str().unwrap().to_owned();
    follow(&app, &run).await;
    let shown = json(send(&app, get(&format!("/api/v1/runs/{run}"))).await).await;
    assert_eq!(
        shown["trace_id"],
        hex(&trace_id(&run)),
        "the run links to its trace"
    );

    let trace = trace_id(&run).to_vec();
    let spans = spans_of(&received, &run, 3).await;
    let of_run: Vec<&Span> = spans.iter().filter(|span| span.trace_id == trace).collect();
    let root = of_run
        .iter()
        .find(|span| span.parent_span_id.is_empty())
        .expect("a root span");
    assert_eq!(root.span_id, run_span_id(&run).to_vec());
    assert_eq!(root.name, "run traced");
    assert_eq!(attribute(root, "baton.status"), "succeeded");
    for task in ["first", "second"] {
        let attempt = of_run
            .iter()
            .find(|span| span.name == task)
            .unwrap_or_else(|| panic!("no span of {task}"));
        assert_eq!(
            attempt.parent_span_id, root.span_id,
            "{task} hangs under the run"
        );
        assert_eq!(attempt.span_id, attempt_span_id(&run, task, 1).to_vec());
        assert_eq!(attribute(attempt, "baton.task"), task);
        assert_eq!(attribute(attempt, "baton.task.kind"), "run");
        assert_eq!(attribute(attempt, "baton.attempt"), "1");
        assert_eq!(attribute(attempt, "baton.status"), "succeeded");
        assert_eq!(attribute(attempt, "baton.worker"), "local");
        assert!(attempt.start_time_unix_nano <= attempt.end_time_unix_nano);
        assert!(root.start_time_unix_nano <= attempt.start_time_unix_nano);
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("traceparent")).unwrap(),
        traceparent(trace_id(&run), attempt_span_id(&run, "first", 1)),
        "the task's TRACEPARENT is its attempt's span"
    );
    let request = spans
        .iter()
        .find(|span| span.name == "POST /api/v1/runs")
        .expect("a server span of the start request");
    assert_eq!(request.trace_id, caller.0.to_vec(), "in the caller's trace");
    assert_eq!(
        request.parent_span_id,
        caller.1.to_vec(),
        "under the caller's span"
    );
    assert_eq!(attribute(request, "http.response.status_code"), "201");
}
