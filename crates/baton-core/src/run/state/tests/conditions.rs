//! Needs with conditions (`on_failure`, `always`) and the verdict task.

use super::*;

const EXIT_1: FailureKind = FailureKind::Exit { code: 1 };

const CLEANUP: &str = "name: c
tasks:
  setup: {run: x}
  work: {run: x, needs: [setup]}
  other: {run: x}
  cleanup: {run: x, needs: [{task: work, condition: always}]}
  after: {run: x, needs: [work]}
";

#[test]
fn a_cleanup_that_needs_always_runs_after_a_failure_under_fail_fast() {
    let mut run = Driver::new(CLEANUP);
    assert_eq!(run.step(), ["start other#1", "start setup#1"]);
    run.succeed("setup");
    assert_eq!(run.step(), ["start work#1"]);
    run.fail("work", EXIT_1);
    assert_eq!(
        run.step(),
        [
            "skip after NeedFailed { need: 1 }",
            "kill other",
            "start cleanup#1"
        ],
        "the failure stops other work, not the cleanup that waits for it"
    );
    run.cancelled("other");
    assert_eq!(run.step(), Vec::<String>::new());
    run.succeed("cleanup");
    assert_eq!(run.step(), ["finish failed"]);
    assert_eq!(run.state.reason(), Some("task `work` failed"));
    assert_eq!(run.replay().run_status(), RunStatus::Failed);
}

#[test]
fn a_cleanup_that_needs_always_runs_after_a_success_too() {
    let mut run = Driver::new(CLEANUP);
    run.step();
    run.succeed("setup");
    run.succeed("other");
    run.step();
    run.succeed("work");
    assert_eq!(run.step(), ["start after#1", "start cleanup#1"]);
    run.succeed("after");
    run.succeed("cleanup");
    assert_eq!(run.step(), ["finish succeeded"]);
}

#[test]
fn a_running_cleanup_is_not_killed_by_another_task_failing() {
    let mut run = Driver::new(
        "name: c\ntasks:\n  a: {run: x}\n  b: {run: x}\n  cleanup: {run: x, needs: [{task: a, condition: always}]}\n",
    );
    assert_eq!(run.step(), ["start a#1", "start b#1"]);
    run.succeed("a");
    assert_eq!(run.step(), ["start cleanup#1"]);
    run.fail("b", EXIT_1);
    assert_eq!(run.step(), Vec::<String>::new(), "no kill for the cleanup");
    run.succeed("cleanup");
    assert_eq!(run.step(), ["finish failed"]);
}

const NOTIFY: &str = "name: n
on_failure: continue
tasks:
  build: {run: x}
  test: {run: x, needs: [build]}
  notify: {run: x, needs: [{task: test, condition: on_failure}]}
";

#[test]
fn an_on_failure_need_skips_its_task_when_the_need_succeeds() {
    let mut run = Driver::new(NOTIFY);
    run.step();
    run.succeed("build");
    run.step();
    run.succeed("test");
    assert_eq!(run.step(), ["skip notify NeedDidNotFail { need: 1 }"]);
    assert_eq!(run.step(), ["finish succeeded"]);
}

#[test]
fn an_on_failure_need_runs_its_task_when_the_need_or_something_above_it_fails() {
    let mut run = Driver::new(NOTIFY);
    run.step();
    run.succeed("build");
    run.step();
    run.fail("test", EXIT_1);
    assert_eq!(run.step(), ["start notify#1"]);
    run.succeed("notify");
    assert_eq!(run.step(), ["finish failed"], "handling is not forgiving");

    let mut run = Driver::new(NOTIFY);
    run.step();
    run.fail("build", EXIT_1);
    assert_eq!(run.step(), ["skip test NeedFailed { need: 0 }"]);
    assert_eq!(
        run.step(),
        ["start notify#1"],
        "test was skipped for build's failure"
    );
}

#[test]
fn an_always_need_runs_its_task_after_a_skip() {
    let mut run = Driver::new(
        "name: s\ntasks:\n  a: {run: x, when: 'false'}\n  b: {run: x, needs: [{task: a, condition: always}]}\n",
    );
    assert_eq!(run.step(), ["skip a Condition"]);
    assert_eq!(run.step(), ["start b#1"]);
}

#[test]
fn a_cleanup_is_retried_while_the_run_ends() {
    let mut run = Driver::new(
        "name: r\ntasks:\n  a: {run: x}\n  cleanup: {run: x, needs: [{task: a, condition: always}], retry: {max_attempts: 2, backoff: constant, initial: 1s}}\n",
    );
    run.step();
    run.fail("a", EXIT_1);
    assert_eq!(run.step(), ["start cleanup#1"]);
    run.fail("cleanup", EXIT_1);
    assert_eq!(run.step(), ["wake 1000"]);
    run.now = Millis(1000);
    assert_eq!(run.step(), ["start cleanup#2"]);
    run.succeed("cleanup");
    assert_eq!(run.step(), ["finish failed"]);
}

#[test]
fn a_cancel_stops_the_cleanups_of_an_ending_run_and_starts_none() {
    let mut run = Driver::new(
        "name: c\ntasks:\n  a: {run: x}\n  b: {run: x}\n  cleanup: {run: x, needs: [{task: a, condition: always}]}\n  late: {run: x, needs: [{task: b, condition: always}]}\n",
    );
    run.step();
    run.fail("a", EXIT_1);
    assert_eq!(run.step(), ["kill b", "start cleanup#1"]);
    run.record(Event::CancelRequested { at: run.now });
    // `b` was told to stop already; the shell sends each attempt one kill.
    assert_eq!(run.step(), ["kill b", "kill cleanup"]);
    run.cancelled("b");
    run.cancelled("cleanup");
    assert_eq!(run.step(), ["cancel late"]);
    assert_eq!(run.step(), ["finish cancelled"]);
    assert_eq!(run.state.reason(), Some("task `a` failed; then cancelled"));
    assert_eq!(run.replay().run_status(), RunStatus::Cancelled);
}

const AUDIT: &str = "name: a
on_failure: continue
tasks:
  a: {run: x}
  b: {run: x}
  audit: {run: x, verdict: true, needs: [{task: a, condition: always}, {task: b, condition: always}]}
";

#[test]
fn a_verdict_task_that_succeeds_accepts_the_failures_before_it() {
    let mut run = Driver::new(AUDIT);
    run.step();
    run.fail("a", EXIT_1);
    run.succeed("b");
    assert_eq!(run.step(), ["start audit#1"]);
    run.succeed("audit");
    assert_eq!(run.step(), ["finish succeeded"]);
    let accepted = "task `a` failed; accepted by the verdict task `audit`";
    assert_eq!(run.state.reason(), Some(accepted));
    let replayed = run.replay();
    assert_eq!(replayed.run_status(), RunStatus::Succeeded);
    assert_eq!(replayed.reason(), Some(accepted));
}

#[test]
fn a_verdict_task_that_fails_vetoes_a_run_whose_tasks_succeeded() {
    let mut run = Driver::new(AUDIT);
    run.step();
    run.succeed("a");
    run.succeed("b");
    run.step();
    run.fail("audit", EXIT_1);
    assert_eq!(run.step(), ["finish failed"]);
    assert_eq!(run.state.reason(), Some("the verdict task `audit` failed"));
}

#[test]
fn a_verdict_decides_a_fail_fast_run_before_its_compensation() {
    let spec = "name: a\non_failure: compensate\ntasks:\n  a: {run: x, compensate: {run: undo}}\n  b: {run: x, needs: [a]}\n  audit: {run: x, verdict: true, needs: [{task: b, condition: always}]}\n";
    let mut run = Driver::new(spec);
    run.step();
    run.succeed("a");
    run.step();
    run.fail("b", EXIT_1);
    assert_eq!(run.step(), ["start audit#1"]);
    run.succeed("audit");
    assert_eq!(run.step(), ["finish succeeded"], "accepted: nothing undone");

    let mut run = Driver::new(spec);
    run.step();
    run.succeed("a");
    run.step();
    run.fail("b", EXIT_1);
    run.step();
    run.fail("audit", EXIT_1);
    assert_eq!(run.step(), ["compensate a"]);
}

#[test]
fn a_timed_out_run_stays_failed_whatever_its_verdict() {
    let mut run = Driver::new(&format!("{AUDIT}timeout: 1s\n"));
    run.step();
    run.now = Millis(1000);
    assert_eq!(run.step(), ["time out"]);
    assert_eq!(run.step(), ["kill a", "kill b"]);
    run.cancelled("a");
    run.cancelled("b");
    assert_eq!(run.step(), ["start audit#1"]);
    run.succeed("audit");
    assert_eq!(run.step(), ["finish failed"]);
}
