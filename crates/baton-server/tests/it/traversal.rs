//! No path parameter reaches the filesystem: hostile run ids, task ids,
//! digests, workflow names and file names (`..`, encoded slashes, absolute
//! paths, NUL) are refused or name nothing, and never read a file outside
//! the state directory.

use crate::util::{app, get, send, start, text};

/// Values a path parameter may carry to climb out of where files are kept.
const HOSTILE: &[&str] = &[
    "..",
    "..%2F..%2F..%2Fsecret.txt",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "..%5C..%5Csecret.txt",
    "%2Ftmp%2Fsecret.txt",
    "secret.txt%00",
    "....%2F%2F....%2F%2Fsecret.txt",
];

#[tokio::test]
async fn hostile_path_parameters_are_refused_and_read_no_file_outside_the_state_directory() {
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    // A file a climb out of the state directory would reach.
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").unwrap();
    let app = app(&dir);
    let run = start(&app, "name: t\ntasks:\n  a: {run: 'echo hi'}\n").await;
    crate::util::follow(&app, &run).await;
    let mut asked = 0;
    for hostile in HOSTILE {
        for uri in [
            format!("/api/v1/runs/{hostile}"),
            format!("/api/v1/runs/{hostile}/events"),
            format!("/api/v1/runs/{hostile}/tasks/a/logs"),
            format!("/api/v1/runs/{run}/tasks/{hostile}/logs"),
            format!("/api/v1/runs/{run}/tasks/{hostile}/logs?stream=stderr"),
            format!("/api/v1/runs/{hostile}/artifacts"),
            format!("/api/v1/artifacts/{hostile}"),
            format!("/api/v1/workflows/{hostile}"),
            format!("/api/v1/workflows/{hostile}/versions"),
            format!("/ui/{hostile}"),
        ] {
            asked += 1;
            let response = send(&app, get(&uri)).await;
            let status = response.status().as_u16();
            let body = text(response).await;
            assert!(
                (400..500).contains(&status),
                "GET {uri} answered {status}: {body}"
            );
            assert!(
                !body.contains("TOP SECRET"),
                "GET {uri} read the file outside"
            );
        }
    }
    assert!(asked >= 70);
}
