//! Watching and steering a run that another `baton` process drives:
//! `baton logs --follow` and `baton cancel`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::util::{baton, wait_for_file};

/// `baton run` in the background in `dir`, with a chosen run id.
fn start(dir: &std::path::Path, run_id: &str, tasks: &str) -> Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir)
        .args(["run", "--run-id", run_id, "--tasks", tasks])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The lines a child prints, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if send.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    receive
}

#[test]
fn logs_follow_prints_output_as_it_is_written_and_ends_with_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = r#"[{"id": "talk", "run": "echo first; touch started; while [ ! -f go ]; do sleep 0.02; done; echo second"}]"#;
    let mut run = start(dir.path(), "followed", tasks);
    wait_for_file(&dir.path().join("started"));

    let mut follower = std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir.path())
        .args(["logs", "followed", "talk", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut follower);
    let next = || lines.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(next(), "--- talk (attempt 1) stdout.log ---");
    // Printed while the task still waits: it is followed, not read after.
    assert_eq!(next(), "first");
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(next(), "second");
    assert!(follower.wait().unwrap().success());
    assert!(lines.recv().is_err(), "nothing after the run ended");
    assert!(run.wait().unwrap().success());
}

#[test]
fn cancel_from_another_process_stops_the_run_and_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = r#"[{"id": "wait", "run": "touch started; sleep 300"}, {"id": "after", "needs": ["wait"], "run": "touch ran"}]"#;
    let run = start(dir.path(), "stopped", tasks);
    wait_for_file(&dir.path().join("started"));

    baton()
        .current_dir(dir.path())
        .args(["cancel", "stopped"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "cancel requested for run stopped",
        ));
    let output = run.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("| wait  | cancelled"), "{summary}");
    assert!(!dir.path().join("ran").exists());

    baton()
        .current_dir(dir.path())
        .args(["cancel", "stopped"])
        .assert()
        .code(1)
        .stdout(predicates::str::contains("already ended: cancelled"));
    baton()
        .current_dir(dir.path())
        .args(["cancel", "nope"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no run `nope`"));
}
