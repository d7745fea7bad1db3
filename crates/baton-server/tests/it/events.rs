//! Event streams: complete, in order, and resumable with `Last-Event-ID`.

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;

use crate::util::{app, follow, parse_sse, send, start};

const CHAIN: &str = "name: chain\ntasks:\n  a: {run: echo a}\n  b: {needs: [a], run: echo b}\n  c: {needs: [b], run: echo c}\n";

#[tokio::test]
async fn a_run_streams_every_event_in_order_and_ends_with_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = start(&app, CHAIN).await;
    let events = follow(&app, &run).await;
    let ids: Vec<u64> = events.iter().map(|event| event.id).collect();
    assert_eq!(ids, (0..events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[0].kind, "run_started");
    assert_eq!(events[1].data["task"], "a");
    let last = events.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), &last.data["status"]),
        ("run_finished", &serde_json::json!("succeeded"))
    );
    let recorded = baton_store::SqliteStore::open(dir.path().join("baton.db")).unwrap();
    assert_eq!(
        baton_store::RunLog::events(&recorded, &run)
            .await
            .unwrap()
            .len(),
        events.len()
    );
}

#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_gets_each_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = start(&app, "name: gate\ntasks:\n  a: {run: echo a}\n  wait:\n    needs: [a]\n    run: while [ ! -f go ]; do sleep 0.02; done\n  c: {needs: [wait], run: echo c}\n").await;

    // Read until `wait` has started, then hang up mid-run.
    let response = send(
        &app,
        Request::get(format!("/api/v1/runs/{run}/events"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let mut body = response.into_body();
    let mut first = String::new();
    while !parse_sse(&first)
        .iter()
        .any(|event| event.kind == "task_started" && event.data["task"] == "wait")
    {
        let frame = body.frame().await.unwrap().unwrap();
        first.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    drop(body);
    let before = parse_sse(&first);
    let last = before.last().unwrap().id;

    std::fs::write(dir.path().join("go"), "").unwrap();
    let resumed = send(
        &app,
        Request::get(format!("/api/v1/runs/{run}/events"))
            .header("last-event-id", last.to_string())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let after = parse_sse(&crate::util::text(resumed).await);
    assert_eq!(after[0].id, last + 1, "nothing repeated");
    let ids: Vec<u64> = before.iter().chain(&after).map(|event| event.id).collect();
    assert_eq!(
        ids,
        (0..ids.len() as u64).collect::<Vec<_>>(),
        "nothing missed"
    );
    assert_eq!(after.last().unwrap().kind, "run_finished");

    let bad = Request::get(format!("/api/v1/runs/{run}/events"))
        .header("last-event-id", "soon")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, bad).await.status(), 400);
    // The largest id there is: nothing after it, and no overflow.
    let beyond = Request::get(format!("/api/v1/runs/{run}/events"))
        .header("last-event-id", u64::MAX.to_string())
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, beyond).await.status(), 200);
    let empty = Request::get(format!("/api/v1/runs/{run}/events"))
        .header("last-event-id", "")
        .body(Body::empty())
        .unwrap();
    let from_start = parse_sse(&crate::util::text(send(&app, empty).await).await);
    assert_eq!(from_start.len(), ids.len(), "an empty id resumes nothing");
}
