//! Registered workflows, their versions and schedules through the real
//! binary: `baton workflows register|versions|diff`, `baton backfill`
//! (a run per past tick, each once), and `baton serve` starting runs on
//! the clock.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{baton, key, request, serve};

const NIGHTLY: &str = "name: nightly
inputs:
  tick: {type: string}
schedule:
  cron: '0 2 * * *'
  timezone: Europe/Berlin
tasks:
  report: {run: 'echo \"{{ inputs.tick }}\" >> reports'}
";

fn stdout(dir: &std::path::Path, args: &[&str]) -> String {
    let output = baton().current_dir(dir).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "baton {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_new_version_is_registered_and_its_changes_are_shown_task_by_task() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nightly.yaml"), NIGHTLY).unwrap();
    assert_eq!(
        stdout(dir.path(), &["workflows", "register", "nightly.yaml"]),
        "registered nightly@1\n"
    );
    assert_eq!(
        stdout(dir.path(), &["workflows", "register", "nightly.yaml"]),
        "unchanged: nightly@1\n"
    );
    let changed =
        NIGHTLY.replace("0 2 * * *", "0 3 * * *") + "  notify: {needs: [report], run: 'true'}\n";
    std::fs::write(dir.path().join("nightly.yaml"), changed).unwrap();
    assert_eq!(
        stdout(dir.path(), &["workflows", "register", "nightly.yaml"]),
        "registered nightly@2\n"
    );
    let versions = stdout(dir.path(), &["workflows", "versions", "nightly"]);
    assert_eq!(versions.lines().count(), 3, "{versions}");
    let diff = stdout(dir.path(), &["workflows", "diff", "nightly", "1", "2"]);
    assert!(diff.starts_with("nightly 1 -> 2\n"), "{diff}");
    assert!(diff.contains("~ schedule: "), "{diff}");
    assert!(diff.contains("\"0 3 * * *\""), "{diff}");
    assert!(diff.contains("+ task notify"), "{diff}");
    let json: Value = serde_json::from_str(&stdout(
        dir.path(),
        &["workflows", "diff", "nightly", "1", "2", "--json"],
    ))
    .unwrap();
    assert_eq!(json["added"], serde_json::json!(["notify"]));
    assert_eq!(json["changed"], serde_json::json!([]));
    // An invalid spec is refused with where it is wrong.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\nschedule: {cron: 'soon'}\ntasks:\n  a: {noop: true}\n",
    )
    .unwrap();
    let refused = baton()
        .current_dir(dir.path())
        .args(["workflows", "register", "bad.yaml"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stdout).into_owned()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("2:") && said.contains("invalid-schedule"),
        "{said}"
    );
}

#[test]
fn a_backfill_runs_each_past_tick_once_with_its_time_and_not_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nightly.yaml"), NIGHTLY).unwrap();
    stdout(dir.path(), &["workflows", "register", "nightly.yaml"]);
    let first = stdout(
        dir.path(),
        &[
            "backfill",
            "nightly",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-03",
            "--concurrency",
            "2",
        ],
    );
    assert!(
        first.ends_with("backfill of nightly: 3 run(s), 3 succeeded, 0 did not\n"),
        "{first}"
    );
    assert_eq!(first.matches(" started\n").count(), 3, "{first}");
    let mut reports: Vec<String> = std::fs::read_to_string(dir.path().join("reports"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    reports.sort();
    assert_eq!(
        reports,
        [
            "2026-11-01T02:00:00+01:00",
            "2026-11-02T02:00:00+01:00",
            "2026-11-03T02:00:00+01:00"
        ]
    );
    let again = stdout(
        dir.path(),
        &[
            "backfill",
            "nightly",
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-04",
        ],
    );
    assert_eq!(again.matches(" ran already\n").count(), 2, "{again}");
    assert_eq!(again.matches(" started\n").count(), 1, "{again}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("reports"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    let future = baton()
        .current_dir(dir.path())
        .args([
            "backfill",
            "nightly",
            "--from",
            "2026-11-01",
            "--to",
            "2999-01-01",
        ])
        .output()
        .unwrap();
    assert!(!future.status.success());
    assert!(String::from_utf8_lossy(&future.stderr).contains("in the future"));
}

#[test]
fn the_server_starts_runs_on_the_clock_and_shows_the_next_fire_times() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path(), "admin");
    let spec = "name: ticking\nschedule: {cron: '* * * * * *', catch_up: none}\ntasks:\n  a: {run: 'echo tick >> ticks'}\n";
    std::fs::write(dir.path().join("ticking.yaml"), spec).unwrap();
    let (_server, address) = serve(dir.path(), &[], &[]);
    let server = format!("http://{address}");
    let registered = baton()
        .args(["--server", &server, "--key", &key, "workflows", "register"])
        .arg(dir.path().join("ticking.yaml"))
        .output()
        .unwrap();
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    // Every second a tick: wait (with a deadline) for two runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ticks = std::fs::read_to_string(dir.path().join("ticks")).unwrap_or_default();
        if ticks.lines().count() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule did not fire twice: {ticks:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = request(&address, &key, ("GET", "/api/v1/schedules?next=2"), None);
    assert_eq!(status, 200, "{body}");
    let shown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown[0]["workflow"], "ticking");
    assert_eq!(shown[0]["next"].as_array().unwrap().len(), 2);
    assert_eq!(shown[0]["last"]["outcome"], "started", "{shown}");
    let (status, runs) = request(
        &address,
        &key,
        ("GET", "/api/v1/runs?workflow=ticking"),
        None,
    );
    assert_eq!(status, 200);
    let runs: Value = serde_json::from_str(&runs).unwrap();
    assert!(runs["runs"].as_array().unwrap().len() >= 2, "{runs}");
}
