//! One owner per run, through the real binary: a second process asked to
//! drive a run that a live one drives refuses and says who does; a server
//! leaves another live server's runs alone and takes them over once that
//! one is gone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{baton, stops, wait_for_file};

const WAITS: &str = "name: waits
tasks:
  wait:
    run: |
      echo \"$BATON_ATTEMPT\" >> attempts
      touch started
      while [ ! -f go ]; do sleep 0.02; done
  after: {needs: [wait], run: echo after}
";

#[test]
fn a_resume_while_another_process_drives_the_run_is_refused_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("waits.yaml"), WAITS).unwrap();
    let mut first = Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir.path())
        .args(["run", "waits.yaml", "--run-id", "held"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&dir.path().join("started"));

    let pid = first.id();
    baton()
        .current_dir(dir.path())
        .args(["resume", "held"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(format!(
            "run held is driven by PID {pid} on "
        )))
        .stderr(predicates::str::contains("was not resumed"));
    baton()
        .current_dir(dir.path())
        .args(["run", "waits.yaml", "--run-id", "held"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(format!("driven by PID {pid}")));
    let listed = baton()
        .current_dir(dir.path())
        .args(["runs", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["driven"], "live", "{listed}");
    assert_eq!(listed[0]["driver"]["owner"]["pid"], pid, "{listed}");

    std::fs::write(dir.path().join("go"), "").unwrap();
    assert!(
        first.wait().unwrap().success(),
        "the live run was not disturbed"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("attempts")).unwrap(),
        "1\n",
        "its task ran once"
    );
}

#[test]
fn a_run_whose_process_died_is_listed_orphaned_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("waits.yaml"), WAITS).unwrap();
    let mut first = Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir.path())
        .args(["run", "waits.yaml", "--run-id", "dropped"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&dir.path().join("started"));
    first.kill().unwrap();
    first.wait().unwrap();
    baton()
        .current_dir(dir.path())
        .arg("runs")
        .assert()
        .success()
        .stdout(predicates::str::contains("orphaned"));
    // A pause asked of it says nobody acts on it until it is resumed.
    baton()
        .current_dir(dir.path())
        .args(["pause", "dropped"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "no process drives it (the one that did is gone): `baton resume dropped` takes it up",
        ));
    baton()
        .current_dir(dir.path())
        .args(["unpause", "dropped"])
        .assert()
        .success();
    std::fs::write(dir.path().join("go"), "").unwrap();
    baton()
        .current_dir(dir.path())
        .args(["resume", "dropped"])
        .assert()
        .success();
}

/// `baton serve` on a free port in `dir` with a short lease; the process
/// and its address.
fn serve(dir: &std::path::Path) -> (crate::util::Served, String) {
    crate::util::serve(
        dir,
        &["--insecure-no-auth"],
        &[("BATON_ENGINE__LEASE", "1s")],
    )
}

fn shown(address: &str, run: &str) -> serde_json::Value {
    crate::util::http(address, "GET", &format!("/api/v1/runs/{run}"), None).1
}

#[test]
fn a_second_server_leaves_a_live_server_s_runs_alone_and_takes_them_over_when_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, address) = serve(dir.path());
    let spec = "name: durable\ntasks:\n  hang:\n    run: |\n      echo \"$BATON_ATTEMPT\" >> attempts\n      if [ \"$BATON_ATTEMPT\" = 1 ]; then echo $$ > first.pid; sleep 300; fi\n  after: {needs: [hang], run: echo after}\n";
    let (status, started) = crate::util::http(
        &address,
        "POST",
        "/api/v1/runs",
        Some(&serde_json::json!({"spec": spec})),
    );
    assert_eq!(status, 201, "{started}");
    let run = started["run_id"].as_str().unwrap().to_owned();
    wait_for_file(&dir.path().join("first.pid"));

    // A second server on the same store: the run is the first's.
    let (mut second, other) = serve(dir.path());
    let listed = crate::util::http(&other, "GET", "/api/v1/runs", None).1;
    assert_eq!(listed["runs"][0]["driven"], "live", "{listed}");
    assert_eq!(listed["runs"][0]["driver"]["owner"]["pid"], first.id());
    assert_eq!(shown(&other, &run)["tasks"][0]["attempts"], 1);

    let orphan: i32 = std::fs::read_to_string(dir.path().join("first.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let shown = shown(&other, &run);
        if shown["status"] == "succeeded" {
            break shown;
        }
        assert!(Instant::now() < deadline, "never taken over: {shown}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(finished["tasks"][0]["attempts"], 2);
    assert_eq!(finished["tasks"][1]["attempts"], 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("attempts")).unwrap(),
        "1\n2\n"
    );
    assert!(stops(orphan), "the dead server's attempt was left running");
    second.kill().unwrap();
    second.wait().unwrap();
}
