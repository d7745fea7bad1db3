//! Every run's events in one stream: SSE resumable by id, and WebSocket.

use std::collections::HashSet;

use axum::body::Body;
use axum::http::Request;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::util::{app, follow, get, send, start};

const HELLO: &str = "name: hello\ntasks:\n  a: {noop: true}\n  b: {run: echo b, needs: [a]}\n";

/// The `(id, data)` of the first `count` events of a global stream.
pub(crate) async fn read(
    app: &baton_server::AppState,
    last_event_id: Option<&str>,
    count: usize,
) -> Vec<(String, Value)> {
    let mut request = Request::get("/api/v1/events");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = send(app, request.body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::to_owned)
            };
            if let (Some(id), Some(data)) = (field("id: "), field("data: ")) {
                events.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

fn position(id: &str) -> (u64, u64) {
    let (position, index) = id.split_once(':').unwrap();
    (position.parse().unwrap(), index.parse().unwrap())
}

#[tokio::test]
async fn every_runs_events_come_once_in_append_order_and_resume_after_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let first = start(&app, HELLO).await;
    let second = start(&app, HELLO).await;
    let total = follow(&app, &first).await.len() + follow(&app, &second).await.len();

    let all = read(&app, None, total).await;
    let ids: Vec<(u64, u64)> = all.iter().map(|(id, _)| position(id)).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let runs: HashSet<&str> = all
        .iter()
        .map(|(_, data)| data["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs, HashSet::from([first.as_str(), second.as_str()]));
    for run in [&first, &second] {
        let seqs: Vec<u64> = all
            .iter()
            .filter(|(_, data)| data["run_id"] == run.as_str())
            .map(|(_, data)| data["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "each event once, in order"
        );
    }

    let resumed = read(&app, Some(&all[2].0), total - 3).await;
    assert_eq!(resumed, all[3..]);
    // An empty id is what a client that saw nothing sends: from the start.
    assert_eq!(read(&app, Some(""), total).await, all);
}

#[tokio::test]
async fn the_websocket_carries_the_same_events_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = start(&app, HELLO).await;
    let total = follow(&app, &run).await.len();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(baton_server::serve(
        listener,
        app.clone(),
        std::future::pending(),
    ));

    let url = format!("ws://{address}/api/v1/events/ws?run={run}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < total {
        let message = socket.next().await.unwrap().unwrap();
        let data: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        assert_eq!(data["run_id"], run.as_str());
        seen.push(data);
    }
    assert_eq!(seen[0]["type"], "run_started");
    assert_eq!(seen[total - 1]["type"], "run_finished");
    socket.close(None).await.unwrap();
    let plain = send(&app, crate::util::get("/api/v1/events/ws")).await;
    crate::contract::problem(plain, 400, "malformed-request").await;

    let after = seen[0]["id"].as_str().unwrap();
    let url = format!("ws://{address}/api/v1/events/ws?after={after}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let next = socket.next().await.unwrap().unwrap();
    let next: Value = serde_json::from_str(next.to_text().unwrap()).unwrap();
    assert_eq!(next, seen[1]);
}

#[tokio::test]
async fn an_empty_run_filter_or_a_malformed_after_is_refused_as_the_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let refused = send(&app, get("/api/v1/events?run=")).await;
    crate::contract::problem(refused, 400, "malformed-request").await;
    // A malformed `after` is refused even beside a header that would win.
    let both = Request::get("/api/v1/events?after=soon")
        .header("last-event-id", "1:0")
        .body(Body::empty())
        .unwrap();
    crate::contract::problem(send(&app, both).await, 400, "malformed-request").await;
}
