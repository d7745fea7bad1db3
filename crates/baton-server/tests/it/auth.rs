//! API keys: who may do what, 401 versus 403, and revocation.

use axum::body::Body;
use axum::http::{Method, Request, header};
use baton_core::run::Millis;
use baton_server::{ServerConfig, issue};
use baton_store::Scope;
use serde_json::json;

use crate::contract::problem;
use crate::util::{app_with, json, send};

const SPEC: &str = "name: hello\ntasks:\n  a: {noop: true}\n";

/// A key of `scope` stored in the app's store; its text.
async fn key(store: &dyn baton_store::Store, scope: Scope) -> String {
    let (key, token) = issue(scope.name(), scope, Millis(1));
    store.put_key(&key).await.unwrap();
    token
}

fn request(
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

#[tokio::test]
async fn each_scope_does_what_it_covers_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(dir.path(), ServerConfig::default());
    let store = std::sync::Arc::clone(app.store());
    let read = key(store.as_ref(), Scope::Read).await;
    let write = key(store.as_ref(), Scope::Write).await;
    let execute = key(store.as_ref(), Scope::Execute).await;
    let admin = key(store.as_ref(), Scope::Admin).await;
    let start = || Some(json!({"spec": SPEC}));

    // Health and the API's description are open; everything else is not.
    assert_eq!(
        send(&app, request(Method::GET, "/healthz", None, None))
            .await
            .status(),
        200
    );
    let missing = send(&app, request(Method::GET, "/api/v1/runs", None, None)).await;
    assert_eq!(
        missing.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"baton\""
    );
    problem(missing, 401, "unauthorized").await;
    let forged = send(
        &app,
        request(Method::GET, "/api/v1/runs", Some("baton_nope_nope"), None),
    )
    .await;
    problem(forged, 401, "unauthorized").await;

    // Read reads, and may not start.
    assert_eq!(
        send(
            &app,
            request(Method::GET, "/api/v1/runs", Some(&read), None)
        )
        .await
        .status(),
        200
    );
    let refused = send(
        &app,
        request(Method::POST, "/api/v1/runs", Some(&read), start()),
    )
    .await;
    let body = problem(refused, 403, "forbidden").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("this needs write"),
        "{body}"
    );

    // Write starts registered workflows and cancels, and may neither run
    // an inline spec (its commands run as the server's user) nor manage
    // keys; execute runs inline specs.
    let inline = send(
        &app,
        request(Method::POST, "/api/v1/runs", Some(&write), start()),
    )
    .await;
    let body = problem(inline, 403, "forbidden").await;
    assert!(
        body["detail"].as_str().unwrap().contains("needs execute"),
        "{body}"
    );
    let inline = send(
        &app,
        request(Method::POST, "/api/v1/runs", Some(&execute), start()),
    )
    .await;
    assert_eq!(inline.status(), 201);
    let registered = send(
        &app,
        Request::post("/api/v1/workflows")
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .header(header::CONTENT_TYPE, "application/yaml")
            .body(Body::from(SPEC))
            .unwrap(),
    )
    .await;
    assert_eq!(registered.status(), 201);
    let started = send(
        &app,
        request(
            Method::POST,
            "/api/v1/runs",
            Some(&write),
            Some(json!({"workflow": "hello"})),
        ),
    )
    .await;
    assert_eq!(started.status(), 201);
    let run = json(started).await["run_id"].as_str().unwrap().to_owned();
    let shown = send(
        &app,
        request(
            Method::GET,
            &format!("/api/v1/runs/{run}"),
            Some(&write),
            None,
        ),
    )
    .await;
    assert_eq!(shown.status(), 200);
    problem(
        send(
            &app,
            request(Method::GET, "/api/v1/keys", Some(&write), None),
        )
        .await,
        403,
        "forbidden",
    )
    .await;

    // Admin manages keys: a new key works until it is revoked.
    let listed = send(
        &app,
        request(Method::GET, "/api/v1/keys", Some(&admin), None),
    )
    .await;
    let listed = json(listed).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 4);
    assert!(
        !listed.to_string().contains(&admin["baton_".len() + 13..]),
        "no secret is listed"
    );
    let created = send(
        &app,
        request(
            Method::POST,
            "/api/v1/keys",
            Some(&admin),
            Some(json!({"name": "ci", "scope": "read"})),
        ),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    let token = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        send(
            &app,
            request(Method::GET, "/api/v1/runs", Some(&token), None)
        )
        .await
        .status(),
        200
    );
    let revoked = send(
        &app,
        request(
            Method::DELETE,
            &format!("/api/v1/keys/{id}"),
            Some(&admin),
            None,
        ),
    )
    .await;
    assert_eq!(revoked.status(), 204);
    problem(
        send(
            &app,
            request(Method::GET, "/api/v1/runs", Some(&token), None),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    problem(
        send(
            &app,
            request(Method::DELETE, "/api/v1/keys/nope", Some(&admin), None),
        )
        .await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn a_decision_records_the_key_that_sent_it_and_keeps_the_body_s_by_as_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(dir.path(), ServerConfig::default());
    let store = std::sync::Arc::clone(app.store());
    let execute = key(store.as_ref(), Scope::Execute).await;
    let (bot, bot_token) = issue("ci-bot", Scope::Write, Millis(1));
    store.put_key(&bot).await.unwrap();
    let spec = "name: gated\ntasks:\n  gate:\n    approval: {prompt: go?, choices: [ship, hold]}\n";
    let started = send(
        &app,
        request(
            Method::POST,
            "/api/v1/runs",
            Some(&execute),
            Some(json!({"spec": spec})),
        ),
    )
    .await;
    let run = json(started).await["run_id"].as_str().unwrap().to_owned();
    let decide = || {
        request(
            Method::POST,
            &format!("/api/v1/runs/{run}/tasks/gate/decision"),
            Some(&bot_token),
            Some(json!({"choice": "ship", "by": "release manager"})),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // 409 until the approval waits.
    while send(&app, decide()).await.status() != 202 {
        assert!(std::time::Instant::now() < deadline, "never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let output = loop {
        let shown = send(
            &app,
            request(
                Method::GET,
                &format!("/api/v1/runs/{run}"),
                Some(&bot_token),
                None,
            ),
        )
        .await;
        let shown = json(shown).await;
        if shown["status"] == "succeeded" {
            break shown["tasks"][0]["output"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{shown}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(output["choice"], "ship");
    assert_eq!(output["by"], "ci-bot", "{output}");
    assert_eq!(output["key_id"], bot.id.as_str());
    assert_eq!(output["note"], "release manager");
}

#[tokio::test]
async fn whoami_names_the_key_and_its_scope_and_needs_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(dir.path(), ServerConfig::default());
    let store = std::sync::Arc::clone(app.store());
    let read = key(store.as_ref(), Scope::Read).await;
    let worker = key(store.as_ref(), Scope::Worker).await;
    let me = send(
        &app,
        request(Method::GET, "/api/v1/whoami", Some(&read), None),
    )
    .await;
    assert_eq!(me.status(), 200);
    let me = json(me).await;
    assert_eq!(
        (me["scope"].as_str(), me["name"].as_str()),
        (Some("read"), Some("read"))
    );
    let anonymous = send(&app, request(Method::GET, "/api/v1/whoami", None, None)).await;
    assert_eq!(anonymous.status(), 401);
    let worker = send(
        &app,
        request(Method::GET, "/api/v1/whoami", Some(&worker), None),
    )
    .await;
    assert_eq!(worker.status(), 403, "a worker key reads nothing");
}

#[tokio::test]
async fn the_dashboard_is_served_without_a_key_and_may_load_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(dir.path(), ServerConfig::default());
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/api.js", "text/javascript"),
        ("/ui/view.js", "text/javascript"),
        ("/ui/graph.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let response = send(&app, request(Method::GET, path, None, None)).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let missing = send(&app, request(Method::GET, "/ui/other.js", None, None)).await;
    assert_eq!(missing.status(), 404);
}

/// The least scope the README's table gives an operation: what this test
/// holds the server to, written apart from the server's own rule.
fn least_scope(method: &str, path: &str) -> Scope {
    let api = path.trim_start_matches("/api/v1");
    if api.starts_with("/workers") {
        Scope::Worker
    } else if api.starts_with("/keys") || (api.starts_with("/agents") && method != "get") {
        Scope::Admin
    } else if method == "get" || api == "/workflows/validate" {
        Scope::Read
    } else if api.starts_with("/workflows") {
        Scope::Admin
    } else {
        Scope::Write
    }
}

#[tokio::test]
async fn every_operation_of_the_openapi_document_refuses_no_key_and_a_key_whose_scope_is_too_small()
{
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(dir.path(), ServerConfig::default());
    let store = std::sync::Arc::clone(app.store());
    let mut keys = Vec::new();
    for scope in [
        Scope::Read,
        Scope::Write,
        Scope::Execute,
        Scope::Admin,
        Scope::Worker,
    ] {
        keys.push((scope, key(store.as_ref(), scope).await));
    }
    let document = json(
        send(
            &app,
            request(Method::GET, "/api/v1/openapi.json", None, None),
        )
        .await,
    )
    .await;
    let mut walked = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let open = operation["security"].as_array().is_some_and(|security| {
                security
                    .iter()
                    .all(|entry| entry.as_object().is_some_and(serde_json::Map::is_empty))
            });
            // Every path parameter filled with a value that names nothing.
            let uri: String = path
                .split('/')
                .map(|part| if part.starts_with('{') { "x" } else { part })
                .collect::<Vec<_>>()
                .join("/");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let anonymous = send(&app, request(method.clone(), &uri, None, None))
                .await
                .status();
            if open {
                assert_ne!(anonymous, 401, "{method} {path} is open");
                continue;
            }
            walked += 1;
            assert_eq!(anonymous, 401, "{method} {path} without a key");
            let least = least_scope(&method.as_str().to_lowercase(), path);
            for (scope, token) in &keys {
                let status = send(&app, request(method.clone(), &uri, Some(token), None))
                    .await
                    .status();
                assert_ne!(status, 401, "{method} {path} with a valid {scope:?} key");
                if scope.covers(least) {
                    assert_ne!(
                        status, 403,
                        "{method} {path} with a {scope:?} key (it needs {least:?})"
                    );
                } else {
                    assert_eq!(
                        status, 403,
                        "{method} {path} with a {scope:?} key (it needs {least:?})"
                    );
                }
            }
        }
    }
    assert!(
        walked > 40,
        "the document's operations were walked: {walked}"
    );
}
