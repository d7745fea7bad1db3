//! Processes: logs, timeouts, kills, process groups, injection safety.

use std::path::Path;

use baton_core::run::RunStatus;
use baton_engine::RunOptions;

use crate::util::{engine, run, run_with, workflow};

#[tokio::test]
async fn templated_values_reach_the_shell_as_data_not_code() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_with(
        &engine(dir.path()),
        r#"
name: inject
inputs:
  who: {type: string}
tasks:
  greet:
    run: |
      echo "{\"said\": \"$(echo hello {{ inputs.who }})\"}" > "$BATON_OUTPUT"; echo {{ inputs.who }} > said.txt
  quoted:
    run: |
      printf '%s' '{{ inputs.who }}' > quoted.txt
"#,
        &[("who", "x; touch pwned")],
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert!(!dir.path().join("pwned").exists(), "the input ran as code");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("said.txt")).unwrap(),
        "x; touch pwned\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("quoted.txt")).unwrap(),
        "x; touch pwned"
    );
    assert_eq!(
        report.task("greet").unwrap().output,
        Some(serde_json::json!({"said": "hello x; touch pwned"}))
    );
}

#[tokio::test]
async fn stdout_and_stderr_go_to_per_attempt_logs() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        "name: logs\ntasks:\n  talk:\n    run: echo out; echo err >&2; exit $((BATON_ATTEMPT < 2))\n    retry: {max_attempts: 2, initial: 0s}\n",
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let talk = report.task("talk").unwrap();
    assert_eq!(talk.attempts, 2);
    let logs = talk.logs.as_ref().unwrap();
    assert!(logs.ends_with("tasks/talk.2"), "{}", logs.display());
    let read = |prefix: &std::path::Path, file: &str| {
        std::fs::read_to_string(baton_engine::logs::attempt_file(prefix, file)).unwrap()
    };
    assert_eq!(read(logs, "stdout.log"), "out\n");
    assert_eq!(read(logs, "stderr.log"), "err\n");
    let first = logs.with_file_name("talk.1");
    assert_eq!(read(&first, "stderr.log"), "err\n");
}

#[tokio::test]
async fn a_silent_task_makes_no_log_files_and_a_loud_one_logs_everything() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        "name: logs\ntasks:\n  quiet: {command: ['true']}\n  loud: {run: 'seq 1 200000; echo done >&2'}\n",
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let quiet = report.task("quiet").unwrap().logs.clone().unwrap();
    for file in ["stdout.log", "stderr.log"] {
        assert!(
            !baton_engine::logs::attempt_file(&quiet, file).exists(),
            "{file}"
        );
    }
    let loud = report.task("loud").unwrap().logs.clone().unwrap();
    let stdout =
        std::fs::read_to_string(baton_engine::logs::attempt_file(&loud, "stdout.log")).unwrap();
    assert_eq!(stdout.lines().count(), 200_000, "whole when the run ends");
    assert_eq!(stdout.lines().last(), Some("200000"));
    let stderr =
        std::fs::read_to_string(baton_engine::logs::attempt_file(&loud, "stderr.log")).unwrap();
    assert_eq!(stderr, "done\n");
}

#[tokio::test]
async fn a_process_that_left_its_group_with_a_pipe_open_does_not_hold_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        "name: escape\ntasks:\n  leave:\n    run: |\n      echo before\n      setsid sh -c 'echo $$ > escaped.pid; sleep 30' &\n      while [ ! -s escaped.pid ]; do sleep 0.01; done\n",
    )
    .await;
    let escaped: i32 = std::fs::read_to_string(dir.path().join("escaped.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let escaped = nix::unistd::Pid::from_raw(escaped);
    // Still sleeping, its copy of the pipe open: the run did not wait for it.
    let alive = nix::sys::signal::kill(escaped, None).is_ok();
    let _ = nix::sys::signal::kill(escaped, nix::sys::signal::Signal::SIGKILL);
    assert!(alive, "the escaped process ended before the run did");
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let logs = report.task("leave").unwrap().logs.clone().unwrap();
    let stdout =
        std::fs::read_to_string(baton_engine::logs::attempt_file(&logs, "stdout.log")).unwrap();
    assert_eq!(stdout, "before\n");
}

#[tokio::test]
async fn a_task_within_its_timeout_succeeds_and_one_past_it_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        r#"
name: timeouts
on_failure: continue
tasks:
  quick: {run: "true", timeout: 30s}
  stuck: {run: sleep 30, timeout: {after: 200ms, grace: 1s}}
  skippable: {run: sleep 30, timeout: {after: 200ms, on_timeout: skip, grace: 1s}}
"#,
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.task("quick").unwrap().status.name(), "succeeded");
    let stuck = report.task("stuck").unwrap();
    assert_eq!(stuck.status.name(), "timed_out");
    assert_eq!(stuck.note.as_deref(), Some("timed out after 200ms"));
    assert_eq!(report.task("skippable").unwrap().status.name(), "skipped");
}

#[tokio::test]
async fn output_that_is_not_json_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        "name: bad\ntasks:\n  a: {run: 'echo nope > \"$BATON_OUTPUT\"'}\n",
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    let note = report.task("a").unwrap().note.clone().unwrap();
    assert!(
        note.starts_with("$BATON_OUTPUT does not hold JSON"),
        "{note}"
    );
}

#[tokio::test]
async fn a_missing_program_fails_with_what_could_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        "name: missing\ntasks:\n  a: {command: [no-such-program-baton]}\n",
    )
    .await;
    let note = report.task("a").unwrap().note.clone().unwrap();
    assert!(
        note.starts_with("cannot start `no-such-program-baton`"),
        "{note}"
    );
}

/// Whether `pid` still runs (a zombie has stopped running).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

async fn wait_for_file(path: &Path) -> i32 {
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cancelling_stops_the_whole_process_group_and_reaps_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let spec = workflow(
        r#"
name: cancel
tasks:
  tree:
    run: sleep 300 & echo $! > child.pid; echo $$ > leader.pid; wait
  later: {needs: [tree], run: "true"}
  waiting: {run: sleep 300}
"#,
    );
    let handle = engine
        .start(
            spec,
            RunOptions {
                concurrency: Some(1),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    let leader = wait_for_file(&dir.path().join("leader.pid")).await;
    let child = wait_for_file(&dir.path().join("child.pid")).await;
    assert!(alive(leader) && alive(child));
    handle.canceller().cancel();
    let report = handle.finish().await.unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.task("tree").unwrap().status.name(), "cancelled");
    assert_eq!(report.task("waiting").unwrap().status.name(), "cancelled");
    assert_eq!(report.task("later").unwrap().status.name(), "skipped");
    assert!(
        !Path::new(&format!("/proc/{leader}")).exists(),
        "the task's shell was not reaped"
    );
    // The signal is sent before the run reports; the kernel finishes the
    // background child's exit on its own time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alive(child) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(!alive(child), "the task's background child survived");
}

/// Waits (up to 10 s) for `pid` to stop running.
async fn gone(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alive(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    !alive(pid)
}

#[tokio::test]
async fn a_task_stopped_with_sigstop_past_its_timeout_is_killed_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        "name: frozen\ntasks:\n  frozen: {run: 'echo $$ > frozen.pid; kill -STOP $$; echo never', timeout: {after: 300ms, grace: 200ms}}\n",
    )
    .await;
    let frozen = report.task("frozen").unwrap();
    assert_eq!(frozen.status.name(), "timed_out", "{report:#?}");
    let pid: i32 = std::fs::read_to_string(dir.path().join("frozen.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGTERM waits on a stopped process; the SIGKILL after the grace does not.
    assert!(gone(pid).await, "the stopped process was left behind");
}

#[tokio::test]
async fn daemons_a_task_leaves_behind_are_killed_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        &engine(dir.path()),
        "name: daemons\ntasks:\n  forks: {run: 'sleep 300 > /dev/null 2>&1 & echo $! > daemon.pid; exit 0'}\n",
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let daemon: i32 = std::fs::read_to_string(dir.path().join("daemon.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(daemon).await, "the daemon outlived its task");
}
