use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, header};
use baton_engine::{Engine, EngineConfig};
use baton_server::{AppState, ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A service over a fresh SQLite store in `dir`, tasks running there.
/// Without API keys: the contract tests are about everything else.
pub(crate) fn app(dir: &std::path::Path) -> AppState {
    app_with(
        dir,
        ServerConfig {
            require_keys: false,
            ..ServerConfig::default()
        },
    )
}

pub(crate) fn app_with(dir: &std::path::Path, config: ServerConfig) -> AppState {
    app_on(dir, engine_config(dir), config)
}

/// The engine settings of a test's server in `dir`: its files there.
pub(crate) fn engine_config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        state_dir: dir.join(".baton"),
        workdir: dir.to_path_buf(),
        ..EngineConfig::default()
    }
}

/// A server over an engine of `engine` settings on the SQLite store in
/// `dir`.
pub(crate) fn app_on(
    dir: &std::path::Path,
    engine: EngineConfig,
    config: ServerConfig,
) -> AppState {
    let store = baton_store::SqliteStore::open(dir.join("baton.db")).unwrap();
    AppState::new(Engine::with_store(engine, Arc::new(store)), config)
}

pub(crate) async fn send(app: &AppState, request: Request<Body>) -> Response<Body> {
    router(app.clone()).oneshot(request).await.unwrap()
}

pub(crate) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub(crate) fn post_json(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub(crate) async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

pub(crate) async fn json(response: Response<Body>) -> Value {
    serde_json::from_str(&text(response).await).unwrap()
}

/// Starts a run of `spec` (YAML text); its id.
pub(crate) async fn start(app: &AppState, spec: &str) -> String {
    let response = send(
        app,
        post_json("/api/v1/runs", &serde_json::json!({"spec": spec})),
    )
    .await;
    assert_eq!(response.status(), 201);
    json(response).await["run_id"].as_str().unwrap().to_owned()
}

/// One server-sent event: its id, type and data.
#[derive(Debug, PartialEq)]
pub(crate) struct Sse {
    pub(crate) id: u64,
    pub(crate) kind: String,
    pub(crate) data: Value,
}

/// The events of a whole SSE body (the stream ends with the run).
pub(crate) fn parse_sse(text: &str) -> Vec<Sse> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut kind = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id: ") {
                    id = value.parse().ok();
                } else if let Some(value) = line.strip_prefix("event: ") {
                    kind = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(value).ok();
                }
            }
            Some(Sse {
                id: id?,
                kind: kind?,
                data: data?,
            })
        })
        .collect()
}

/// Follows a run's events to its end; they come back parsed.
pub(crate) async fn follow(app: &AppState, run: &str) -> Vec<Sse> {
    let response = send(app, get(&format!("/api/v1/runs/{run}/events"))).await;
    assert_eq!(response.status(), 200);
    parse_sse(&text(response).await)
}
