//! A run whose log is damaged is answered with a problem (500) naming the
//! run and the event, and the service goes on serving everything else.

use crate::util::{app, follow, get, json, send, start};

#[tokio::test]
async fn a_corrupt_run_is_a_problem_and_the_service_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let run = start(
        &app,
        "name: two\ntasks:\n  a: {run: 'true'}\n  b: {run: 'true', needs: [a]}\n",
    )
    .await;
    follow(&app, &run).await;
    rusqlite::Connection::open(dir.path().join("baton.db"))
        .unwrap()
        .execute(
            "UPDATE event_batches SET events = replace(events, '\"task\":1,', '\"task\":77,')",
            [],
        )
        .unwrap();
    // A fresh service, as after a restart: nothing of the run is cached.
    let app = crate::util::app(dir.path());
    for path in [
        format!("/api/v1/runs/{run}"),
        format!("/api/v1/runs/{run}/verify"),
        format!("/api/v1/runs/{run}/trace"),
    ] {
        let response = send(&app, get(&path)).await;
        let status = response.status().as_u16();
        let body = json(response).await;
        if path.ends_with("verify") {
            assert_eq!(status, 200, "{body}");
            assert!(
                body["damage"][0]
                    .as_str()
                    .is_some_and(|damage| damage.contains("it names task 77")),
                "{body}"
            );
            continue;
        }
        assert_eq!(status, 500, "{path}: {body}");
        assert_eq!(body["type"], "/api/v1/problems/internal");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(&format!("run `{run}` is corrupt at event"))),
            "{body}"
        );
    }
    assert_eq!(send(&app, get("/healthz")).await.status(), 200);
    assert_eq!(send(&app, get("/api/v1/runs")).await.status(), 200);
}
