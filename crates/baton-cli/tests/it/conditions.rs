//! Needs with conditions and the verdict task, through the binary: the
//! example as a user runs it, and a crash in the middle of a cleanup.

use std::process::{Command, Stdio};

use crate::util::{baton, lines, report_of, run_in, task, wait_for_file};

#[test]
fn the_cleanup_example_tears_down_notifies_and_lets_its_audit_decide() {
    let dir = tempfile::tempdir().unwrap();
    let report = report_of(dir.path(), &["examples/cleanup-and-audit.yaml", "--json"]);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    assert_eq!(
        report["reason"],
        "task `lint` failed; accepted by the verdict task `audit`"
    );
    assert_eq!(task(&report, "lint")["status"], "failed");
    assert_eq!(task(&report, "notify")["status"], "succeeded");
    assert_eq!(task(&report, "teardown")["status"], "succeeded");
    assert!(!dir.path().join("scratch").exists(), "torn down");

    let output = run_in(
        dir.path(),
        &["examples/cleanup-and-audit.yaml", "--json", "-i", "rows=0"],
    )
    .failure()
    .get_output()
    .stdout
    .clone();
    let vetoed = lines(&output).pop().expect("a report");
    assert_eq!(vetoed["status"], "failed");
    assert_eq!(
        vetoed["reason"],
        "the verdict task `audit` failed; before it, task `lint` failed"
    );
    assert_eq!(task(&vetoed, "load")["status"], "succeeded");
}

const CLEANUP: &str = r#"
name: cleanup
tasks:
  work:
    run: echo ran >> work.effects; exit 3
  cleanup:
    needs: [{task: work, condition: always}]
    run: |
      echo ran >> cleanup.effects
      touch started
      while [ ! -e go ]; do sleep 0.02; done
"#;

#[test]
fn a_cleanup_cut_off_by_a_crash_runs_again_on_resume_and_the_failure_is_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cleanup.yaml"), CLEANUP).unwrap();
    let mut first = Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir.path())
        .args(["run", "cleanup.yaml", "--run-id", "crashed"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&dir.path().join("started"));
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::write(dir.path().join("go"), "").unwrap();

    let output = baton()
        .current_dir(dir.path())
        .args(["resume", "crashed", "--json"])
        .assert()
        .failure()
        .get_output()
        .stdout
        .clone();
    let report = lines(&output).pop().expect("a report");
    assert_eq!(report["status"], "failed", "{report:#}");
    assert_eq!(task(&report, "cleanup")["status"], "succeeded");
    assert_eq!(task(&report, "cleanup")["attempts"], 2);
    let effects = |name: &str| {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(
        effects("work.effects"),
        1,
        "the failed task did not run again"
    );
    assert_eq!(effects("cleanup.effects"), 2);
}
