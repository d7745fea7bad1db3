//! The workflow registry: versions, validation, graphs, export and import,
//! and runs started by name.

use axum::body::Body;
use axum::http::{Request, header};
use serde_json::{Value, json};

use crate::contract::problem;
use crate::util::{app, follow, get, json, post_json, send, text};

fn yaml(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

const V1: &str = "name: deploy\ntasks:\n  build: {noop: true}\n";
const V2: &str =
    "name: deploy\ntasks:\n  build: {noop: true}\n  ship: {noop: true, needs: [build]}\n";

#[tokio::test]
async fn every_change_is_a_new_version_and_an_unchanged_spec_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let first = send(&app, yaml("/api/v1/workflows", V1)).await;
    assert_eq!(first.status(), 201);
    assert_eq!(
        first.headers()[header::LOCATION],
        "/api/v1/workflows/deploy/versions/1"
    );
    let again = send(&app, yaml("/api/v1/workflows", V1)).await;
    assert_eq!(again.status(), 200);
    assert_eq!(json(again).await["version"], 1);
    let second = send(&app, yaml("/api/v1/workflows", V2)).await;
    assert_eq!(json(second).await["version"], 2);

    let listed = json(send(&app, get("/api/v1/workflows")).await).await;
    assert_eq!(listed["workflows"][0]["version"], 2);
    assert_eq!(listed["workflows"][0]["tasks"], 2);
    let versions = json(send(&app, get("/api/v1/workflows/deploy/versions")).await).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    let old = json(send(&app, get("/api/v1/workflows/deploy/versions/1")).await).await;
    assert_eq!(old["spec"]["tasks"].as_object().unwrap().len(), 1);
    let latest = json(send(&app, get("/api/v1/workflows/deploy")).await).await;
    assert_eq!(latest["version"], 2);
    problem(
        send(&app, get("/api/v1/workflows/deploy/versions/9")).await,
        404,
        "not-found",
    )
    .await;
    problem(
        send(&app, get("/api/v1/workflows/nope")).await,
        404,
        "not-found",
    )
    .await;

    let graph = send(&app, get("/api/v1/workflows/deploy/graph?format=dot")).await;
    assert!(text(graph).await.contains("t0 -> t1;"));
    let drawn = json(send(&app, get("/api/v1/workflows/deploy/graph?format=layout")).await).await;
    let nodes = drawn["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(
        (nodes[0]["id"].as_str(), nodes[0]["level"].as_u64()),
        (Some("build"), Some(0))
    );
    assert_eq!(nodes[1]["level"], 1);
    assert!(nodes[1]["x"].as_f64().unwrap() > nodes[0]["x"].as_f64().unwrap());
    assert_eq!(drawn["edges"], json!([{"from": "build", "to": "ship"}]));
    problem(
        send(&app, get("/api/v1/workflows/deploy/graph?format=png")).await,
        400,
        "malformed-request",
    )
    .await;
}

#[tokio::test]
async fn an_invalid_spec_is_refused_with_every_problem_and_validate_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let broken = "name: broken\ntasks:\n  a: {noop: true, needs: [nope]}\n  b: {run: x, retry: {max_attempts: 0}}\n";
    let refused = problem(
        send(&app, yaml("/api/v1/workflows", broken)).await,
        422,
        "invalid-workflow",
    )
    .await;
    let problems = refused["problems"].as_array().unwrap();
    assert!(problems.len() >= 2, "{refused}");
    assert!(
        problems
            .iter()
            .all(|problem| problem["location"]["line"].is_number()),
        "{refused}"
    );

    let checked = send(&app, yaml("/api/v1/workflows/validate", broken)).await;
    let checked = problem(checked, 422, "invalid-workflow").await;
    assert_eq!(checked["problems"], refused["problems"]);
    let checked = json(send(&app, yaml("/api/v1/workflows/validate", V1)).await).await;
    assert_eq!(checked["valid"], true);
    let listed = json(send(&app, get("/api/v1/workflows")).await).await;
    assert!(listed["workflows"].as_array().unwrap().is_empty());
    let wrong_type = Request::post("/api/v1/workflows")
        .header(header::CONTENT_TYPE, "image/png")
        .body(Body::from("x"))
        .unwrap();
    problem(send(&app, wrong_type).await, 415, "unsupported-media-type").await;
}

#[tokio::test]
async fn a_run_by_name_pins_its_version_and_blocks_deletion_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    send(&app, yaml("/api/v1/workflows", V1)).await;
    send(&app, yaml("/api/v1/workflows", V2)).await;
    let gated = "name: deploy\ntasks:\n  gate: {approval: {prompt: go?}}\n";
    send(&app, yaml("/api/v1/workflows", gated)).await;

    let pinned = send(
        &app,
        post_json("/api/v1/runs", &json!({"workflow": "deploy@1"})),
    )
    .await;
    assert_eq!(pinned.status(), 201);
    let pinned = json(pinned).await["run_id"].as_str().unwrap().to_owned();
    follow(&app, &pinned).await;
    let shown = json(send(&app, get(&format!("/api/v1/runs/{pinned}"))).await).await;
    assert_eq!(shown["workflow_version"], 1);
    assert_eq!(shown["tasks"].as_array().unwrap().len(), 1);

    let waiting = send(
        &app,
        post_json("/api/v1/runs", &json!({"workflow": "deploy"})),
    )
    .await;
    let waiting = json(waiting).await["run_id"].as_str().unwrap().to_owned();
    let delete = || {
        Request::delete("/api/v1/workflows/deploy")
            .body(Body::empty())
            .unwrap()
    };
    problem(send(&app, delete()).await, 409, "conflict").await;
    send(
        &app,
        post_json(&format!("/api/v1/runs/{waiting}/cancel"), &json!({})),
    )
    .await;
    follow(&app, &waiting).await;
    assert_eq!(send(&app, delete()).await.status(), 204);
    problem(send(&app, delete()).await, 404, "not-found").await;

    for body in [
        json!({"workflow": "deploy"}),
        json!({"workflow": "x@y"}),
        json!({}),
    ] {
        problem(
            send(&app, post_json("/api/v1/runs", &body)).await,
            422,
            "invalid-request",
        )
        .await;
    }
}

#[tokio::test]
async fn an_export_imports_into_another_registry() {
    let from = tempfile::tempdir().unwrap();
    let source = app(from.path());
    send(&source, yaml("/api/v1/workflows", V1)).await;
    send(&source, yaml("/api/v1/workflows", V2)).await;
    let bundle = json(send(&source, get("/api/v1/workflows/export")).await).await;
    assert_eq!(bundle["workflows"].as_array().unwrap().len(), 2);

    let to = tempfile::tempdir().unwrap();
    let target = app(to.path());
    let imported = json(send(&target, post_json("/api/v1/workflows/import", &bundle)).await).await;
    assert_eq!(imported["imported"][1]["version"], 2);
    let again = json(send(&target, post_json("/api/v1/workflows/import", &bundle)).await).await;
    assert_eq!(again["imported"][1]["new"], false);

    let broken = json!({"workflows": [{"spec": {"name": "x", "tasks": {"a": {"needs": ["b"]}}}}]});
    problem(
        send(&target, post_json("/api/v1/workflows/import", &broken)).await,
        422,
        "invalid-workflow",
    )
    .await;
}

#[tokio::test]
async fn a_sub_workflow_reference_is_found_in_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    send(
        &app,
        yaml(
            "/api/v1/workflows",
            "name: review\ntasks:\n  approve: {noop: true}\n",
        ),
    )
    .await;
    let run = crate::util::start(
        &app,
        "name: release\ntasks:\n  review: {workflow: review@1}\n",
    )
    .await;
    follow(&app, &run).await;
    let shown = json(send(&app, get(&format!("/api/v1/runs/{run}"))).await).await;
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(
        shown["tasks"][0]["output"]["run"],
        format!("{run}.review.1")
    );
    let child = json(send(&app, get(&format!("/api/v1/runs/{run}.review.1"))).await).await;
    assert_eq!(child["workflow"], "review");

    let unknown = send(
        &app,
        post_json(
            "/api/v1/runs",
            &json!({"spec": "name: release\ntasks:\n  review: {workflow: nobody@1}\n"}),
        ),
    )
    .await;
    let body = problem(unknown, 422, "invalid-workflow").await;
    assert_eq!(body["problems"][0]["code"], "unknown-workflow", "{body}");
}

/// On a runtime with one thread, a check done on the async thread would
/// hold every other request until it ended.
#[tokio::test(flavor = "current_thread")]
async fn health_answers_while_a_big_spec_is_being_validated() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let tasks: serde_json::Map<String, Value> = (0..2_000)
        .map(|index| {
            let needs = json!({"run": "true", "needs": [format!("missing{index}")]});
            (format!("t{index}"), needs)
        })
        .collect();
    let spec = json!({"name": "big", "tasks": tasks});
    let validating = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("/api/v1/workflows/validate", &spec)).await }
    });
    tokio::task::yield_now().await;
    let health = send(&app, get("/healthz")).await;
    assert_eq!(health.status(), 200);
    assert!(
        !validating.is_finished(),
        "/healthz waited for the validation to end"
    );
    let refused = json(validating.await.unwrap()).await;
    assert_eq!(refused["problems"].as_array().unwrap().len(), 2_000);
}

/// With `--insecure-no-auth` a web page the user visits can post to the
/// server; what it can post without a CORS preflight is refused.
#[tokio::test]
async fn a_cross_site_post_cannot_register_a_workflow_or_reach_a_rebound_host() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    for kind in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = Request::post("/api/v1/workflows");
        if let Some(kind) = kind {
            request = request.header(header::CONTENT_TYPE, kind);
        }
        let refused = send(&app, request.body(Body::from(V1)).unwrap()).await;
        problem(refused, 415, "unsupported-media-type").await;
    }
    let listed = json(send(&app, get("/api/v1/workflows")).await).await;
    assert_eq!(listed["workflows"], json!([]), "nothing was registered");

    let rebound = Request::get("/api/v1/runs")
        .header(header::HOST, "evil.example:8080")
        .body(Body::empty())
        .unwrap();
    let body = problem(send(&app, rebound).await, 400, "malformed-request").await;
    assert!(
        body["detail"].as_str().unwrap().contains("allowed_hosts"),
        "{body}"
    );
    let local = Request::get("/api/v1/runs")
        .header(header::HOST, "localhost:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, local).await.status(), 200);
}

#[tokio::test]
async fn a_runs_graph_is_placed_for_drawing_from_the_workflow_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = crate::util::start(&app, V2).await;
    let drawn = json(send(&app, get(&format!("/api/v1/runs/{run}/graph"))).await).await;
    let ids: Vec<&str> = drawn["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["build", "ship"]);
    assert_eq!(drawn["edges"], json!([{"from": "build", "to": "ship"}]));
    assert_eq!(drawn["crossings"], 0);
    problem(
        send(&app, get("/api/v1/runs/nope/graph")).await,
        404,
        "not-found",
    )
    .await;
}
