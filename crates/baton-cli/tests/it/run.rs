//! `baton run`: the examples, JSON lines, stdin and inline tasks, refusals,
//! and Ctrl-C.

use std::process::Stdio;

use serde_json::Value;

use crate::util::{alive, baton, lines, report_of, run_in, stops, task};

#[test]
fn the_build_and_test_example_succeeds_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_in(dir.path(), &["examples/build-and-test.yaml"])
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(output).unwrap();
    assert!(text.contains("| unit-tests | succeeded | 1"), "{text}");
    assert!(text.contains("succeeded in"), "{text}");
    assert!(
        text.contains("in flight on average (task time / wall time); critical path"),
        "{text}"
    );
    assert!(dir.path().join(".baton/work/greet-1.0.0.tar").exists());
}

#[test]
fn the_fan_out_example_merges_every_shard_through_json_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_in(
        dir.path(),
        &["examples/fan-out-fan-in.json", "--json", "-i", "count=1000"],
    )
    .success()
    .get_output()
    .stdout
    .clone();
    let lines = lines(&output);
    let report = lines.last().unwrap();
    assert_eq!(report["type"], "run_report");
    let merged = &task(report, "merge")["output"];
    assert_eq!(merged["count"], 1000);
    assert_eq!(merged["sum"], 500_500);
    assert_eq!(merged["mean"], 500.5);
    let started: Vec<&str> = lines
        .iter()
        .filter(|line| line["type"] == "task_started")
        .map(|line| line["task"].as_str().unwrap())
        .collect();
    assert_eq!(started[0], "split");
    assert_eq!(started.len(), 6);
}

#[test]
fn the_flaky_example_succeeds_on_its_third_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let report = report_of(dir.path(), &["examples/flaky.yaml", "--json"]);
    assert_eq!(task(&report, "wait-for-service")["attempts"], 3);
    assert_eq!(task(&report, "wait-for-service")["status"], "succeeded");
}

#[test]
fn the_sub_workflows_example_runs_its_children_as_linked_runs() {
    let dir = tempfile::tempdir().unwrap();
    let report = report_of(dir.path(), &["examples/sub-workflows.yaml", "--json"]);
    let run = report["run_id"].as_str().unwrap();
    let review = &task(&report, "review")["output"];
    assert_eq!(review["run"], format!("{run}.review.1"));
    assert_eq!(
        review["tasks"]["verdict"],
        serde_json::json!({"approved": true})
    );
    assert_eq!(task(&report, "publish")["status"], "succeeded");
    let runs = crate::util::baton()
        .current_dir(dir.path())
        .args(["runs", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let runs: serde_json::Value = serde_json::from_slice(&runs).unwrap();
    let mut workflows: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["workflow"].as_str().unwrap())
        .collect();
    workflows.sort_unstable();
    assert_eq!(workflows, ["review", "smoke", "sub-workflows"]);
}

#[test]
fn the_escalation_example_hands_the_failure_to_its_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let report = |args: &[&str]| report_of(dir.path(), args);
    let failed = report(&["examples/escalation.yaml", "--json"]);
    assert_eq!(failed["status"], "succeeded");
    assert_eq!(task(&failed, "worker")["status"], "failed");
    assert_eq!(task(&failed, "supervisor")["output"]["by"], "supervisor");
    assert_eq!(task(&failed, "notify")["status"], "skipped");
    let fine = report(&["examples/escalation.yaml", "--json", "-i", "flaky=false"]);
    assert_eq!(task(&fine, "supervisor")["status"], "skipped");
    assert_eq!(task(&fine, "notify")["status"], "succeeded");
}

#[test]
fn the_spawn_example_runs_the_tasks_its_triage_asked_for_before_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = report_of(dir.path(), &["examples/spawn.yaml", "--json"]);
    let triage = &task(&report, "triage")["output"];
    assert_eq!(triage["failing"], serde_json::json!(["auth", "billing"]));
    assert_eq!(triage["spawned"]["tasks"]["retest"]["green"], true);
    assert_eq!(task(&report, "report")["status"], "succeeded");
}

#[test]
fn the_templates_example_expands_each_uses_task() {
    let dir = tempfile::tempdir().unwrap();
    let report = report_of(dir.path(), &["examples/templates.yaml", "--json"]);
    for (id, tool) in [("lint", "ruff"), ("typecheck", "mypy"), ("scan", "trivy")] {
        assert_eq!(task(&report, id)["output"]["tool"], tool);
    }
    assert_eq!(task(&report, "summary")["status"], "succeeded");
}

#[test]
fn fail_fast_and_continue_differ_on_the_independent_branch() {
    let dir = tempfile::tempdir().unwrap();
    let fail_fast = run_in(dir.path(), &["examples/failure-policies.yaml", "--json"])
        .code(1)
        .get_output()
        .stdout
        .clone();
    let report = lines(&fail_fast).pop().unwrap();
    assert_eq!(task(&report, "docs")["status"], "cancelled");
    assert_eq!(task(&report, "publish-docs")["status"], "skipped");
    let go_on = run_in(
        dir.path(),
        &[
            "examples/failure-policies.yaml",
            "--json",
            "--on-failure",
            "continue",
        ],
    )
    .code(1)
    .get_output()
    .stdout
    .clone();
    let report = lines(&go_on).pop().unwrap();
    assert_eq!(task(&report, "publish-docs")["status"], "succeeded");
    assert_eq!(
        task(&report, "load")["note"],
        "upstream task `validate` failed"
    );
}

#[test]
fn a_failed_task_has_its_log_tail_printed() {
    let dir = tempfile::tempdir().unwrap();
    let text = String::from_utf8(
        run_in(dir.path(), &["examples/failure-policies.yaml"])
            .code(1)
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert!(
        text.contains("--- validate (attempt 1) stderr.log"),
        "{text}"
    );
    assert!(text.contains("row 17 has no id"), "{text}");
}

#[test]
fn a_spec_from_stdin_runs() {
    let dir = tempfile::tempdir().unwrap();
    baton()
        .current_dir(dir.path())
        .args(["run", "-", "--json"])
        .write_stdin("name: piped\ntasks:\n  a: {run: 'echo 1 > \"$BATON_OUTPUT\"'}\n")
        .assert()
        .success();
}

#[test]
fn inline_tasks_run_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = baton()
        .current_dir(dir.path())
        .args([
            "run",
            "--tasks",
            r#"[{"id": "a", "run": "echo 2 > \"$BATON_OUTPUT\""}, {"id": "b", "needs": ["a"], "run": "echo $(( A * 21 )) > \"$BATON_OUTPUT\"", "env": {"A": "{{ tasks.a.output }}"}}]"#,
            "--concurrency",
            "4",
            "--timeout",
            "5m",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report = lines(&output).pop().unwrap();
    assert_eq!(task(&report, "b")["output"], 42);
}

#[test]
fn an_input_with_shell_syntax_stays_data() {
    let dir = tempfile::tempdir().unwrap();
    baton()
        .current_dir(dir.path())
        .args(["run", "-", "-i", "name=x; touch pwned"])
        .write_stdin("name: inject\ninputs: {name: {type: string}}\ntasks:\n  a: {run: 'echo hello {{ inputs.name }}'}\n")
        .assert()
        .success();
    assert!(!dir.path().join("pwned").exists());
}

#[test]
fn an_agent_capability_nothing_serves_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let output = baton()
        .current_dir(dir.path())
        .args(["run", "-"])
        .write_stdin("name: later\ntasks:\n  ask:\n    agent: {capability: review}\n")
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(output).unwrap();
    assert!(text.contains("not-runnable"), "{text}");
    assert!(text.contains("[<stdin>:4:25]"), "{text}");
    assert!(
        text.contains("nothing here serves agent capability `review`"),
        "{text}"
    );
    assert!(text.contains("[agents.review]"), "{text}");
}

#[test]
fn a_missing_input_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    baton()
        .current_dir(dir.path())
        .args(["run", "-"])
        .write_stdin(
            "name: needs-input\ninputs: {who: {type: string}}\ntasks:\n  a: {run: 'touch ran'}\n",
        )
        .assert()
        .code(1)
        .stdout(predicates::str::contains("missing-input"));
    assert!(!dir.path().join("ran").exists());
}

/// Starts `baton run` on a task whose shell writes `leader.pid` and whose
/// background child writes `child.pid` (with `prelude` run first); the
/// process and both pids once they are written.
fn run_a_tree(dir: &std::path::Path, prelude: &str) -> (std::process::Child, i32, i32) {
    std::fs::write(
        dir.join("hang.yaml"),
        format!(
            "name: hang\ntasks:\n  tree:\n    timeout: {{after: 1h, grace: 1h}}\n    run: {prelude} sleep 300 & echo $! > child.pid; echo $$ > leader.pid; wait\n  later: {{needs: [tree], run: 'true'}}\n"
        ),
    )
    .unwrap();
    let binary = assert_cmd::cargo::cargo_bin("baton");
    let child = std::process::Command::new(binary)
        .current_dir(dir)
        .args(["run", "hang.yaml"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let read_pid = |name: &str| loop {
        if let Some(pid) = std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "no {name}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let (leader, grandchild) = (read_pid("leader.pid"), read_pid("child.pid"));
    (child, leader, grandchild)
}

fn signal(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

#[test]
fn ctrl_c_sigterm_and_sighup_cancel_the_run_and_leave_no_process_behind() {
    use nix::sys::signal::Signal;
    for sent in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let dir = tempfile::tempdir().unwrap();
        let (child, leader, grandchild) = run_a_tree(dir.path(), "");
        signal(&child, sent);
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(130), "{sent}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("| tree  | cancelled"), "{sent}: {text}");
        assert!(!alive(leader), "{sent}: the task's shell survived");
        assert!(
            stops(grandchild),
            "{sent}: the task's background child survived"
        );
    }
}

#[test]
fn a_second_ctrl_c_kills_the_tasks_at_once_and_leaves_the_run_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    // The task ignores SIGTERM and has an hour's grace: only a kill ends it.
    let (mut child, leader, grandchild) = run_a_tree(dir.path(), "trap '' TERM;");
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("cancelling") {
        assert!(std::time::Instant::now() < deadline, "{said}");
        std::io::BufRead::read_line(&mut reader, &mut said).unwrap();
    }
    assert!(alive(leader), "the task ignores SIGTERM for its grace");
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second Ctrl-C did not end baton"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(130));
    std::io::Read::read_to_string(&mut reader, &mut said).unwrap();
    assert!(said.contains("finishes the run"), "{said}");
    assert!(stops(leader), "the task's shell survived");
    assert!(stops(grandchild), "the task's background child survived");
    let runs = baton()
        .current_dir(dir.path())
        .args(["runs", "--json"])
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["status"], "running", "{runs}");
}

#[test]
fn every_event_of_a_run_is_recorded_in_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_in(dir.path(), &["examples/flaky.yaml", "--json"])
        .success()
        .get_output()
        .stdout
        .clone();
    let lines = lines(&output);
    let report = lines.last().unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    let store = baton_store::SqliteStore::open(dir.path().join(".baton/baton.db")).unwrap();
    let recorded = crate::util::block(baton_store::RunLog::events(&store, run_id)).unwrap();
    assert_eq!(recorded.len(), lines.len() - 1);
    assert!(matches!(
        recorded.last(),
        Some(baton_core::run::Event::RunFinished { .. })
    ));
}

#[test]
fn a_store_that_is_not_batons_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine\n".repeat(300)).unwrap();
    baton()
        .current_dir(dir.path())
        .args([
            "run",
            "--store",
            "notes.txt",
            "--tasks",
            r#"[{"id": "a", "run": "touch ran"}]"#,
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "notes.txt is not a baton database",
        ));
    assert!(!dir.path().join("ran").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "mine\n".repeat(300)
    );
}

#[test]
fn recorded_runs_are_listed_shown_and_replayed_as_events() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_in(dir.path(), &["examples/flaky.yaml", "--json"])
        .success()
        .get_output()
        .stdout
        .clone();
    let streamed = lines(&output);
    let report = streamed.last().unwrap().clone();
    let run_id = report["run_id"].as_str().unwrap();

    let listed = baton()
        .current_dir(dir.path())
        .args(["runs", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listed: Value = serde_json::from_slice(&listed).unwrap();
    assert_eq!(listed[0]["run_id"], run_id);
    assert_eq!(listed[0]["workflow"], "flaky");
    assert_eq!(listed[0]["status"], "succeeded");

    let shown = baton()
        .current_dir(dir.path())
        .args(["show", run_id, "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let mut shown: Value = serde_json::from_slice(&shown).unwrap();
    let mut expected = report.clone();
    for key in ["type", "trace", "provenance_root"] {
        expected.as_object_mut().unwrap().remove(key);
    }
    shown.as_object_mut().unwrap().remove("type");
    assert_eq!(shown, expected);

    let events = baton()
        .current_dir(dir.path())
        .args(["events", run_id])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(lines(&events), streamed[..streamed.len() - 1]);

    baton()
        .current_dir(dir.path())
        .args(["logs", run_id, "wait-for-service", "--attempt", "2"])
        .assert()
        .success()
        .stdout(
            "--- wait-for-service (attempt 2) stderr.log ---\nattempt 2: service unavailable\n",
        );
    baton()
        .current_dir(dir.path())
        .args(["logs", run_id])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "--- use-service (attempt 1) stdout.log ---\nthe service was ready on attempt 3\n",
        ));

    baton()
        .current_dir(dir.path())
        .args(["show", "no-such-run"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no run `no-such-run`"));
}

#[test]
fn a_concurrency_of_zero_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("one.yaml"),
        "name: one\ntasks:\n  a: {run: \"true\"}\n",
    )
    .unwrap();
    baton()
        .current_dir(dir.path())
        .args(["run", "one.yaml", "--concurrency", "0"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("0 is not in 1.."));
    assert!(!dir.path().join(".baton").exists(), "no run was recorded");
}

/// Runs `baton ARGS` in `dir`, reads `keep` bytes of its stdout and closes
/// it; the exit status (within a deadline) and its stderr.
fn closed_early(dir: &std::path::Path, args: &[&str], keep: usize) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0; keep];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{args:?} never ended");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

#[test]
fn a_reader_that_stops_early_stops_the_printing_not_the_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("steps.yaml"),
        "name: steps\ntasks:\n  a: {run: 'sleep 0.2'}\n  b: {needs: [a], run: 'sleep 0.2'}\n",
    )
    .unwrap();
    let (code, stderr) = closed_early(dir.path(), &["run", "steps.yaml", "--json"], 10);
    assert_eq!(code, Some(0), "{stderr}");
    let runs = baton()
        .current_dir(dir.path())
        .args(["runs", "--json"])
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");

    // Output larger than a pipe holds, from every printing command.
    let tasks: String = (0..3000)
        .map(|index| {
            format!(
                "  t{index}: {{noop: true, needs: [t{}]}}\n",
                index.max(1) - 1
            )
        })
        .collect::<String>()
        .replacen("needs: [t0]", "needs: []", 1);
    std::fs::write(
        dir.path().join("wide.yaml"),
        format!("name: wide\ntasks:\n{tasks}"),
    )
    .unwrap();
    for args in [
        &["graph", "wide.yaml"][..],
        &["plan", "wide.yaml"],
        &["plan", "wide.yaml", "--json"],
        &["validate", "wide.yaml", "--json"],
        &["show", runs[0]["run_id"].as_str().unwrap(), "--json"],
    ] {
        let (code, stderr) = closed_early(dir.path(), args, 1);
        assert!(
            !stderr.contains("panicked") && code != Some(101),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn run_reads_the_engine_settings_of_baton_toml_like_serve() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("baton.toml"), "[engine]\nmax_output = 10\n").unwrap();
    std::fs::write(
        dir.path().join("big.yaml"),
        "name: big\ntasks:\n  say:\n    run: |\n      echo '{\"text\": \"more than ten bytes\"}' > \"$BATON_OUTPUT\"\n",
    )
    .unwrap();
    let output = baton()
        .current_dir(dir.path())
        .args(["run", "big.yaml", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = lines(&output.stdout).pop().unwrap();
    let note = report["tasks"][0]["note"].as_str().unwrap();
    assert!(note.contains("larger than max_output (10 bytes)"), "{note}");
}

#[test]
fn show_prints_each_task_s_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("out.yaml"),
        "name: out\ntasks:\n  count:\n    run: |\n      echo '{\"n\": 1}' > \"$BATON_OUTPUT\"\n  quiet: {run: 'true'}\n",
    )
    .unwrap();
    let output = baton()
        .current_dir(dir.path())
        .args(["run", "out.yaml", "--json"])
        .output()
        .unwrap();
    let report = lines(&output.stdout).pop().unwrap();
    let run = report["run_id"].as_str().unwrap();
    baton()
        .current_dir(dir.path())
        .args(["show", run])
        .assert()
        .success()
        .stdout(predicates::str::contains("outputs:\n  count: {\"n\":1}\n"));
}

#[test]
fn an_emptied_record_beside_run_files_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("one.yaml"),
        "name: one\ntasks:\n  a: {run: 'true'}\n",
    )
    .unwrap();
    baton()
        .current_dir(dir.path())
        .args(["run", "one.yaml"])
        .assert()
        .success();
    for file in ["baton.db", "baton.db-wal", "baton.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(".baton").join(file));
    }
    baton()
        .current_dir(dir.path())
        .arg("runs")
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "the record lists no runs, but .baton/runs holds the files of 1 run(s)",
        ));
}

#[test]
fn a_read_only_record_says_nothing_was_recorded_instead_of_advising_resume() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("one.yaml"),
        "name: one\ntasks:\n  a: {run: 'true'}\n",
    )
    .unwrap();
    baton()
        .current_dir(dir.path())
        .args(["run", "one.yaml"])
        .assert()
        .success();
    let database = dir.path().join(".baton/baton.db");
    // Permissions do not stop root, which runs this suite in CI: the
    // immutable attribute does.
    let frozen = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&database)
        .status()
        .is_ok_and(|status| status.success());
    if !frozen {
        eprintln!("SKIPPED: `chattr +i` is not available here, so no read-only database");
        return;
    }
    let output = baton()
        .current_dir(dir.path())
        .args(["run", "one.yaml"])
        .output()
        .unwrap();
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(&database)
        .status();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(
        said.contains("could not start: nothing of it was recorded"),
        "{said}"
    );
    assert!(said.contains("read-only"), "{said}");
    assert!(!said.contains("baton resume"), "{said}");
}

#[test]
fn a_run_id_that_is_no_safe_file_name_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.yaml"),
        "name: x\ntasks:\n  a: {run: touch ran}\n",
    )
    .unwrap();
    for bad in ["../escape", "a b", ".hidden"] {
        baton()
            .current_dir(dir.path())
            .args(["run", "x.yaml", "--run-id", bad])
            .assert()
            .code(2)
            .stderr(predicates::str::contains("is not valid"));
    }
    assert!(!dir.path().join("ran").exists());
    assert!(!dir.path().join(".baton/runs").exists());
}
