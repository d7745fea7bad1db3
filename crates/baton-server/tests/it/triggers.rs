//! Triggers: a delivery signed with the trigger's secret starts its
//! workflow with the body mapped to inputs; a wrong or missing signature
//! starts nothing; the same delivery sent again names the run it started.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, header};
use baton_server::{ServerConfig, Trigger, sign_delivery};
use serde_json::{Value, json};

use crate::util::{app_with, json, send};

/// Waits (with a deadline) until `run` has finished.
async fn finished(app: &baton_server::AppState, run: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !app.store().summary(run).await.unwrap().status.is_final() {
        assert!(
            std::time::Instant::now() < deadline,
            "run {run} did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

const SECRET: &str = "the deploy hook's secret";

fn deploy_trigger() -> Trigger {
    serde_json::from_value(json!({
        "workflow": "deploy",
        "secret": SECRET,
        "inputs": {
            "branch": "{{ body.ref | replace('refs/heads/', '') }}",
            "commits": "{{ body.commits | length }}",
        },
        "signature_header": "X-Hub-Signature-256",
        "delivery_header": "X-GitHub-Delivery",
    }))
    .unwrap()
}

fn delivery(body: &Value, signature: Option<&str>, id: Option<&str>) -> Request<Body> {
    let body = body.to_string();
    let mut request =
        Request::post("/api/v1/triggers/deploy").header(header::CONTENT_TYPE, "application/json");
    if let Some(signature) = signature {
        request = request.header("X-Hub-Signature-256", signature);
    }
    if let Some(id) = id {
        request = request.header("X-GitHub-Delivery", id);
    }
    request.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn a_signed_delivery_starts_its_workflow_once_with_the_body_as_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(
        dir.path(),
        ServerConfig {
            // Keys are required: the trigger is let in by its signature.
            require_keys: true,
            triggers: BTreeMap::from([("deploy".to_owned(), deploy_trigger())]),
            ..ServerConfig::default()
        },
    );
    let spec = "name: deploy\ninputs:\n  branch: {type: string}\n  commits: {type: integer}\ntasks:\n  ship: {run: 'echo {{ inputs.branch }} {{ inputs.commits }} >> shipped'}\n";
    let workflow = baton_core::check_source(spec, baton_core::Format::Yaml).unwrap();
    baton_server::register_workflow(app.store().as_ref(), workflow, baton_core::run::Millis(1))
        .await
        .unwrap();

    let body = json!({"ref": "refs/heads/main", "commits": [{"id": "a"}, {"id": "b"}]});
    let signature = sign_delivery(SECRET, body.to_string().as_bytes());

    let unsigned = send(&app, delivery(&body, None, Some("d-1"))).await;
    assert_eq!(unsigned.status(), 401);
    let forged = sign_delivery("not the secret at all", body.to_string().as_bytes());
    let forged = send(&app, delivery(&body, Some(&forged), Some("d-1"))).await;
    assert_eq!(forged.status(), 401);
    assert_eq!(
        forged.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let tampered = json!({"ref": "refs/heads/evil", "commits": []});
    let tampered = send(&app, delivery(&tampered, Some(&signature), Some("d-1"))).await;
    assert_eq!(tampered.status(), 401, "the signature is of another body");
    let anonymous = send(&app, delivery(&body, Some(&signature), None)).await;
    assert_eq!(anonymous.status(), 400, "a delivery needs its id");
    assert!(
        !dir.path().join("shipped").exists(),
        "nothing refused started a run"
    );

    let first = send(&app, delivery(&body, Some(&signature), Some("d-1"))).await;
    assert_eq!(first.status(), 201);
    let run = json(first).await["run_id"].as_str().unwrap().to_owned();
    let replayed = send(&app, delivery(&body, Some(&signature), Some("d-1"))).await;
    assert_eq!(replayed.status(), 200, "the same delivery again");
    assert_eq!(json(replayed).await["run_id"], run.as_str());
    finished(&app, &run).await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shipped")).unwrap(),
        "main 2\n"
    );
    let recorded = app.store().run(&run).await.unwrap();
    assert_eq!(
        recorded.inputs["commits"], 2,
        "a whole expression keeps its type"
    );

    let second = send(&app, delivery(&body, Some(&signature), Some("d-2"))).await;
    assert_eq!(second.status(), 201, "another delivery is another run");
    let unknown = Request::post("/api/v1/triggers/nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, unknown).await.status(), 404);
}
