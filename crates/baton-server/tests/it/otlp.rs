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
use baton_engine::{Engine, EngineConfig};
use baton_server::{AppState, ServerConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::util::{follow, get, json, send};

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

#[tokio::test]
async fn a_run_is_exported_as_one_trace_with_a_span_per_attempt_under_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, received) = collector().await;
    let exporter = baton_server::otlp::export(&endpoint, "baton-test");
    let store = baton_store::SqliteStore::open(dir.path().join("baton.db")).unwrap();
    let engine = Engine::with_store(
        EngineConfig {
            state_dir: dir.path().join(".baton"),
            workdir: dir.path().to_path_buf(),
            spans: Some(exporter),
            ..EngineConfig::default()
        },
        Arc::new(store),
    );
    let app = AppState::new(
        engine,
        ServerConfig {
            require_keys: false,
            ..ServerConfig::default()
        },
    );

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
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans: Vec<Span> = loop {
        let spans: Vec<Span> = received.lock().unwrap().clone();
        if spans.iter().filter(|span| span.trace_id == trace).count() >= 3 {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "the run's spans did not arrive: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
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
