//! The agent registry: what serves each capability, its calls, its breaker.

use std::sync::Arc;

use baton_engine::{AgentProvider, BreakerSettings, Engine, EngineConfig};
use baton_server::{AppState, ServerConfig};
use serde_json::json;

use crate::util::{follow, get, json, send, start};

#[tokio::test]
async fn agents_are_listed_with_their_calls_and_a_failing_endpoint_s_open_breaker() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the discard port: every call is refused.
    let unreachable = AgentProvider {
        base_url: "http://127.0.0.1:9/v1".to_owned(),
        model: "small".to_owned(),
        ..AgentProvider::default()
    };
    let app = crate::util::app_on(
        dir.path(),
        EngineConfig {
            agents: [("summarize".to_owned(), unreachable)].into(),
            breaker: BreakerSettings {
                failures: 2,
                cool_down: baton_core::Duration::from_secs(3600),
                probes: 1,
            },
            ..crate::util::engine_config(dir.path())
        },
        ServerConfig {
            require_keys: false,
            ..ServerConfig::default()
        },
    );
    let listed = json(send(&app, get("/api/v1/agents")).await).await;
    assert_eq!(
        listed,
        json!({"agents": [{
            "id": "chat:summarize",
            "kind": "chat_endpoint",
            "name": "summarize",
            "capabilities": ["summarize"],
            "endpoint": "http://127.0.0.1:9/v1",
            "model": "small",
            "status": "healthy",
            "breaker": {"state": "closed", "failing": 0},
            "in_flight": 0,
            "succeeded": 0,
            "failed": 0,
        }]})
    );
    let run = start(
        &app,
        "name: ask\non_failure: continue\ntasks:\n  a: {agent: {capability: summarize, prompt: hi}}\n  b: {agent: {capability: summarize, prompt: hi}, needs: [{task: a, condition: always}]}\n  c: {agent: {capability: summarize, prompt: hi}, needs: [{task: b, condition: always}]}\n",
    )
    .await;
    follow(&app, &run).await;
    let agent = &json(send(&app, get("/api/v1/agents")).await).await["agents"][0];
    assert_eq!(agent["status"], "unhealthy", "{agent}");
    assert_eq!(agent["breaker"]["state"], "open", "{agent}");
    assert_eq!(
        agent["failed"], 3,
        "two refused calls and one not made: {agent}"
    );
    assert_eq!(agent["in_flight"], 0);
    let one = json(send(&app, get("/api/v1/agents/chat:summarize/health")).await).await;
    assert_eq!(one["id"], "chat:summarize");
    assert_eq!(one["breaker"]["state"], "open", "{one}");
    assert_eq!(one["failed"], 3);
    let missing = send(&app, get("/api/v1/agents/chat:nobody/health")).await;
    crate::contract::problem(missing, 404, "not-found").await;
}

/// A health URL that answers 200 until `down` is set, then 503.
async fn health_endpoint(down: Arc<std::sync::atomic::AtomicBool>) -> String {
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let down = Arc::clone(&down);
            async move {
                if down.load(std::sync::atomic::Ordering::SeqCst) {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/health")
}

#[tokio::test]
async fn an_endpoint_registered_through_the_api_serves_its_capability_and_shows_its_health() {
    let dir = tempfile::tempdir().unwrap();
    let store = baton_store::SqliteStore::open(dir.path().join("baton.db")).unwrap();
    let configured = AgentProvider {
        base_url: "http://127.0.0.1:9/v1".to_owned(),
        model: "small".to_owned(),
        ..AgentProvider::default()
    };
    let engine = Engine::with_store(
        EngineConfig {
            state_dir: dir.path().join(".baton"),
            workdir: dir.path().to_path_buf(),
            agents: [("summarize".to_owned(), configured)].into(),
            ..EngineConfig::default()
        },
        Arc::new(store),
    );
    let app = AppState::new(
        engine,
        ServerConfig {
            require_keys: false,
            agent_health_every: std::time::Duration::from_millis(50),
            ..ServerConfig::default()
        },
    );
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = health_endpoint(Arc::clone(&down)).await;
    let body = json!({"capability": "review", "base_url": "http://127.0.0.1:9/v1", "model": "m", "health_url": health});
    let response = send(&app, crate::util::post_json("/api/v1/agents", &body)).await;
    assert_eq!(response.status(), 201);
    let agent = json(response).await;
    assert_eq!(agent["id"], "chat:review");
    assert_eq!(agent["capabilities"], json!(["review"]));
    let again = send(&app, crate::util::post_json("/api/v1/agents", &body)).await;
    crate::contract::problem(again, 409, "conflict").await;

    let status = |app: AppState| async move {
        json(send(&app, get("/api/v1/agents/chat:review/health")).await).await["status"].clone()
    };
    assert_eq!(status(app.clone()).await, "healthy");
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while status(app.clone()).await != "unhealthy" {
        assert!(
            std::time::Instant::now() < deadline,
            "the failing health URL was never noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let delete = |id: &str| {
        axum::http::Request::delete(format!("/api/v1/agents/{id}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    crate::contract::problem(send(&app, delete("chat:summarize")).await, 409, "conflict").await;
    assert_eq!(send(&app, delete("chat:review")).await.status(), 204);
    crate::contract::problem(send(&app, delete("chat:review")).await, 404, "not-found").await;
}
