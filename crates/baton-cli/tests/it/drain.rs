//! `baton serve` asked to stop (SIGTERM): it answers `/readyz` 503 and
//! starts no run while it lets the attempts in flight finish, hands its runs
//! back, and exits; started again, it goes on with them without repeating a
//! finished task. What is still running when the grace period ends is
//! stopped and runs again after the restart.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::util::{Served, baton, http, key, request, serve, stops, wait_for_file};

/// `first` waits for the file `go`, then each task appends its name to
/// `ran`: a task run twice shows there.
const SPEC: &str = "name: drained
tasks:
  first:
    run: |
      echo $$ > first.pid
      while [ ! -f go ]; do sleep 0.02; done
      echo first >> ran
  second: {needs: [first], run: echo second >> ran}
";

fn start_run(address: &str, key: &str) -> String {
    let (status, body) = request(
        address,
        key,
        ("POST", "/api/v1/runs"),
        Some(&json!({"spec": SPEC})),
    );
    assert_eq!(status, 201, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    run["run_id"].as_str().unwrap().to_owned()
}

fn terminate(server: &Served) {
    let pid = Pid::from_raw(i32::try_from(server.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
}

/// Waits (with a deadline) until `/readyz` answers `status`.
fn wait_for_ready(address: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (answered, body) = http(address, "GET", "/readyz", None);
        if answered == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz answered {answered} {body}, not {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (with a deadline) for `server` to exit; its exit status.
fn exits(server: &mut Served) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The run as the API shows it once it has finished, from `address`.
fn finished(address: &str, key: &str, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = request(address, key, ("GET", &format!("/api/v1/runs/{run}")), None);
        let shown: Value = serde_json::from_str(&body).unwrap();
        if shown["status"] == "succeeded" || shown["status"] == "failed" {
            return shown;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {shown}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ran(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ran"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn sigterm_drains_the_server_and_the_run_goes_on_after_a_restart_without_a_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path(), "execute");
    let (mut server, address) = serve(dir.path(), &[], &[("BATON_SERVER__DRAIN_GRACE", "60s")]);
    let run = start_run(&address, &key);
    wait_for_file(&dir.path().join("first.pid"));
    wait_for_ready(&address, 200);
    let server_url = format!("http://{address}");
    baton()
        .args(["--server", &server_url, "health"])
        .assert()
        .success();

    terminate(&server);
    wait_for_ready(&address, 503);
    let unready = baton()
        .args(["--server", &server_url, "health"])
        .assert()
        .code(1);
    let said = String::from_utf8_lossy(&unready.get_output().stderr).into_owned();
    assert!(said.contains("draining"), "{said}");
    let (status, body) = request(
        &address,
        &key,
        ("POST", "/api/v1/runs"),
        Some(&json!({"spec": SPEC})),
    );
    assert_eq!(status, 503, "no run starts while draining: {body}");
    assert!(body.contains("shutting down"), "{body}");
    // The attempt in flight finishes; the next task does not start here.
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert!(exits(&mut server).success());
    assert_eq!(ran(dir.path()), ["first"]);

    let (mut again, address) = serve(dir.path(), &[], &[]);
    let shown = finished(&address, &key, &run);
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(
        shown["tasks"][0]["attempts"], 1,
        "the finished attempt was kept: {shown}"
    );
    assert_eq!(ran(dir.path()), ["first", "second"]);
    terminate(&again);
    assert!(exits(&mut again).success());
}

#[test]
fn an_attempt_still_running_when_the_grace_period_ends_is_stopped_and_runs_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path(), "execute");
    let (mut server, address) = serve(dir.path(), &[], &[("BATON_SERVER__DRAIN_GRACE", "200ms")]);
    let run = start_run(&address, &key);
    wait_for_file(&dir.path().join("first.pid"));
    let cut: i32 = std::fs::read_to_string(dir.path().join("first.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    terminate(&server);
    assert!(exits(&mut server).success());
    assert!(stops(cut), "the attempt cut short was left running");
    assert!(ran(dir.path()).is_empty());

    std::fs::write(dir.path().join("go"), "").unwrap();
    let (mut again, address) = serve(dir.path(), &[], &[]);
    let shown = finished(&address, &key, &run);
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(
        shown["tasks"][0]["attempts"], 2,
        "the cut attempt ran again: {shown}"
    );
    assert_eq!(ran(dir.path()), ["first", "second"]);
    terminate(&again);
    assert!(exits(&mut again).success());
}
