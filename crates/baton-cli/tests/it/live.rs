//! Watching and steering a run that another `baton` process drives:
//! `baton logs --follow`, `baton cancel` and `baton approve`.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::util::{baton, lines_of, wait_for_file};

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

/// `baton show RUN --json` until `task` is `status`.
fn wait_for_task(dir: &std::path::Path, run: &str, task: &str, status: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let output = baton()
            .current_dir(dir)
            .args(["show", run, "--json"])
            .output()
            .unwrap();
        if let Ok(report) = serde_json::from_slice::<serde_json::Value>(&output.stdout) {
            let found = crate::util::task(&report, task).clone();
            if found["status"] == status {
                return found;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{task} never {status}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn approve_from_another_process_decides_the_waiting_task() {
    let dir = tempfile::tempdir().unwrap();
    let spec = crate::util::workspace().join("examples/approval.yaml");
    let run = std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir.path())
        .args(["run", "--run-id", "gated"])
        .arg(&spec)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let gate = wait_for_task(dir.path(), "gated", "approve", "waiting");
    assert_eq!(
        gate["approval"]["prompt"],
        "Ship app-1.0.0.tar.gz to production?"
    );

    baton()
        .current_dir(dir.path())
        .args(["approve", "gated", "approve", "maybe"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "`maybe` is not a choice of task `approve` (choices: ship, hold)",
        ));
    baton()
        .current_dir(dir.path())
        .args(["approve", "gated", "approve", "ship", "--by", "ana"])
        .args(["--comment", "notes checked"])
        .assert()
        .success()
        .stdout("ship chosen for task approve of run gated\n");

    let output = run.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{summary}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("approve waits for a decision: baton approve gated approve <ship|hold>"),
        "{said}"
    );
    let shipped = wait_for_task(dir.path(), "gated", "ship", "succeeded");
    assert_eq!(shipped["attempts"], 1);
    let decided = wait_for_task(dir.path(), "gated", "approve", "succeeded");
    assert_eq!(
        decided["output"],
        serde_json::json!({"choice": "ship", "by": "ana", "comment": "notes checked", "timed_out": false})
    );
    baton()
        .current_dir(dir.path())
        .args(["approve", "gated", "approve", "hold"])
        .assert()
        .code(1)
        .stdout(predicates::str::contains("already ended: succeeded"));
}
