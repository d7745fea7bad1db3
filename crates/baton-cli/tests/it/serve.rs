//! `baton serve` as a user runs it: started, killed with SIGKILL, started
//! again, with the runs it drove carried through.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::util::{stops, wait_for_file};

/// `baton serve` on a free port in `dir`; the process and its address.
fn serve(dir: &std::path::Path) -> (crate::util::Served, String) {
    crate::util::serve(dir, &[], &[])
}

use crate::util::{key, request};

#[test]
fn runs_started_through_the_api_survive_a_killed_server() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path(), "execute");
    let (mut first, address) = serve(dir.path());
    // The first attempt leaves its pid and hangs; the second finishes.
    let spec = "name: durable\ntasks:\n  hang:\n    run: |\n      if [ \"$BATON_ATTEMPT\" = 1 ]; then echo $$ > first.pid; sleep 300; fi\n  after: {needs: [hang], run: echo after}\n";
    let start = ("POST", "/api/v1/runs");
    let (status, _) = request(&address, "nope", start, Some(&json!({"spec": spec})));
    assert_eq!(status, 401);
    let (status, body) = request(&address, &key, start, Some(&json!({"spec": spec})));
    assert_eq!(status, 201, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    let run = run["run_id"].as_str().unwrap().to_owned();
    wait_for_file(&dir.path().join("first.pid"));
    let orphan: i32 = std::fs::read_to_string(dir.path().join("first.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    first.kill().unwrap();
    first.wait().unwrap();
    let (mut second, address) = serve(dir.path());
    // The event stream ends with the run; it is read from the store.
    let events = format!("/api/v1/runs/{run}/events");
    let (status, events) = request(&address, &key, ("GET", &events), None);
    assert_eq!(status, 200);
    assert!(events.contains("event: run_finished"), "{events}");
    let shown = format!("/api/v1/runs/{run}");
    let (_, shown) = request(&address, &key, ("GET", &shown), None);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["tasks"][0]["attempts"], 2);
    assert_eq!(shown["tasks"][1]["attempts"], 1);
    assert!(stops(orphan), "the dead server's attempt was left running");
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn settings_come_from_the_file_then_the_environment_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("baton.toml"),
        "[server]\nbind = \"127.0.0.1:9999\"\n[engine]\nmax_concurrency = 8\n[retention]\nolder_than = \"30d\"\n",
    )
    .unwrap();
    let shown = crate::util::baton()
        .current_dir(dir.path())
        .env("BATON_ENGINE__MAX_CONCURRENCY", "64")
        .env("BATON_TEST_SOMETHING", "not a setting")
        .arg("config")
        .output()
        .unwrap();
    assert!(shown.status.success());
    let shown = String::from_utf8(shown.stdout).unwrap();
    for line in [
        "bind = \"127.0.0.1:9999\"",
        "max_concurrency = 64",
        "older_than = \"30d\"",
        "every = \"1h\"",
    ] {
        assert!(shown.contains(line), "{line} not in:\n{shown}");
    }

    std::fs::write(dir.path().join("bad.toml"), "[server]\nbnd = 1\n").unwrap();
    crate::util::baton()
        .current_dir(dir.path())
        .args(["config", "--config", "bad.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "unknown field `bnd`, expected one of `bind`",
        ));
}

#[test]
fn the_cli_talks_to_a_server_and_prints_what_it_prints_locally() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path(), "execute");
    let (mut server, address) = serve(dir.path());
    let url = format!("http://{address}");
    let spec =
        std::fs::read_to_string(crate::util::workspace().join("examples/approval.yaml")).unwrap();
    let (status, body) = request(
        &address,
        &key,
        ("POST", "/api/v1/runs"),
        Some(&json!({"spec": spec})),
    );
    assert_eq!(status, 201, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    let run = run["run_id"].as_str().unwrap().to_owned();
    let remote = |args: &[&str]| {
        let mut command = crate::util::baton();
        command
            .current_dir(dir.path())
            .args(["--server", &url, "--key", &key])
            .args(args);
        command
    };
    let local = |args: &[&str]| {
        let mut command = crate::util::baton();
        command.current_dir(dir.path()).args(args);
        command.output().unwrap()
    };

    // The approval waits; deciding it through the server finishes the run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown = remote(&["show", &run, "--json"]).output().unwrap();
        let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
        if shown["tasks"][1]["status"] == "waiting" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{shown}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    remote(&["approve", &run, "approve", "maybe"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("`maybe` is not a choice"));
    remote(&["approve", &run, "approve", "ship", "--by", "ana"])
        .assert()
        .success()
        .stdout(format!("ship chosen for task approve of run {run}\n"));
    remote(&["logs", &run, "ship", "--follow"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "shipping app-1.0.0.tar.gz, approved by test",
        ));

    for args in [
        vec!["show", run.as_str()],
        vec!["show", run.as_str(), "--json"],
        vec!["runs", "--json"],
        vec!["logs", run.as_str()],
    ] {
        let here = local(&args);
        let there = remote(&args).output().unwrap();
        assert!(here.status.success() && there.status.success(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&there.stdout),
            String::from_utf8_lossy(&here.stdout),
            "baton {args:?}"
        );
    }
    remote(&["cancel", &run])
        .assert()
        .code(1)
        .stdout(format!("run {run} already ended: succeeded\n"));
    remote(&["validate", "x.yaml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--server applies to run, runs"));
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn remote_logs_follow_prints_output_while_the_task_runs_and_ends_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path(), "execute");
    let (mut server, address) = serve(dir.path());
    let spec = "name: talk\ntasks:\n  talk:\n    run: echo first; touch started; while [ ! -f go ]; do sleep 0.02; done; echo second\n";
    let (status, body) = request(
        &address,
        &key,
        ("POST", "/api/v1/runs"),
        Some(&json!({"spec": spec})),
    );
    assert_eq!(status, 201, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    let run = run["run_id"].as_str().unwrap().to_owned();
    wait_for_file(&dir.path().join("started"));

    let mut follower = Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir.path())
        .args(["--server", &format!("http://{address}"), "--key", &key])
        .args(["logs", &run, "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = crate::util::lines_of(&mut follower);
    let next = || {
        lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap()
    };
    assert_eq!(next(), "--- talk (attempt 1) stdout.log ---");
    assert_eq!(next(), "first", "printed while the task still waits");
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(next(), "second");
    assert!(follower.wait().unwrap().success());
    assert!(lines.recv().is_err(), "nothing after the run ended");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn key_names_a_terminal_would_act_on_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, problem) in [
        ("", "a key needs a name"),
        ("  ", "a key needs a name"),
        ("ci\u{1b}[31m", "may not hold control characters"),
        ("ci\nroot", "may not hold control characters"),
    ] {
        crate::util::baton()
            .current_dir(dir.path())
            .args(["keys", "create", "--name", name, "--scope", "read"])
            .assert()
            .code(2)
            .stderr(predicates::str::contains(problem));
    }
}

#[test]
fn an_address_that_keeps_sending_bad_keys_is_slowed_but_its_real_key_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let real = key(dir.path(), "read");
    let (mut server, address) = serve(dir.path());
    let runs = ("GET", "/api/v1/runs");
    assert_eq!(request(&address, &real, runs, None).0, 200);
    let made_up = "baton_000000000000_0000";
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(request(&address, made_up, runs, None).0);
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(
        statuses.last(),
        Some(&429),
        "made-up keys stop reaching the store: {statuses:?}"
    );
    assert_eq!(
        request(&address, "", runs, None).0,
        401,
        "no key costs nothing to refuse"
    );
    assert_eq!(
        request(&address, &real, runs, None).0,
        200,
        "a key the server knows is still checked"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn with_log_format_json_every_line_the_server_logs_is_a_json_object_with_a_level() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir.path())
        .args([
            "--log-format",
            "json",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--insecure-no-auth",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("baton serving on"), "{line}");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let logged = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<Value> = logged
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(lines.len() >= 3, "{logged}");
    assert_eq!(lines[0]["level"], "WARN");
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("--insecure-no-auth")
    );
    assert!(lines.iter().all(|line| line["timestamp"].is_string()));
    assert!(
        lines
            .iter()
            .any(|line| line["message"].as_str().unwrap().starts_with("drained:"))
    );
}
