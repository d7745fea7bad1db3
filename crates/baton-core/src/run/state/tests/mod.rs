mod conditions;

use proptest::prelude::*;

use super::*;
use crate::run::{Control, ControlError, Decision, Event, Failure, FailureKind, Work};
use crate::{Format, check_source};

/// Drives a state the way the shell does, with a hand-held clock:
/// decide, record each command's event, apply it.
struct Driver {
    state: RunState,
    now: Millis,
    log: Vec<Event>,
    budget: Budget,
}

impl Driver {
    fn new(spec: &str) -> Driver {
        let valid = check_source(spec, Format::Yaml).expect("a valid spec");
        let mut driver = Driver {
            state: RunState::new(
                Arc::new(valid),
                RunSetup {
                    run_id: "run-1".to_owned(),
                    ..RunSetup::default()
                },
            ),
            now: Millis(0),
            log: Vec::new(),
            budget: Budget::default(),
        };
        driver.record(Event::RunStarted { at: Millis(0) });
        driver
    }

    /// A fresh state with the log applied, as a resume rebuilds it.
    fn replay(&self) -> RunState {
        let mut state = RunState::new(
            self.state.shared_valid(),
            RunSetup {
                run_id: "run-1".to_owned(),
                ..RunSetup::default()
            },
        );
        for event in &self.log {
            state.apply(event).unwrap();
        }
        state
    }

    fn index(&self, id: &str) -> u32 {
        self.state
            .valid()
            .workflow()
            .tasks
            .iter()
            .position(|task| task.id == id)
            .unwrap() as u32
    }

    fn id(&self, task: u32) -> &str {
        &self.state.task(task).id
    }

    fn record(&mut self, event: Event) {
        self.state.apply(&event).unwrap();
        self.log.push(event);
    }

    /// One round of decisions, recorded; returns them as readable text.
    fn step(&mut self) -> Vec<String> {
        let mut commands = Vec::new();
        self.state.decide(self.now, self.budget, &mut commands);
        let shown = commands
            .iter()
            .map(|command| match command {
                Command::Dispatch { task, attempt } => {
                    format!("start {}#{attempt}", self.id(*task))
                }
                Command::Skip { task, reason } => format!("skip {} {reason:?}", self.id(*task)),
                Command::Cancel { task } => format!("cancel {}", self.id(*task)),
                Command::Kill { task } => format!("kill {}", self.id(*task)),
                Command::Reject { task, .. } => format!("reject {}", self.id(*task)),
                Command::Compensate { task } => format!("compensate {}", self.id(*task)),
                Command::Await { task } => format!("await {}", self.id(*task)),
                Command::Expire { task, choice } => {
                    format!("expire {} {choice}", self.id(*task))
                }
                Command::TimeOutRun => "time out".to_owned(),
                Command::Finish { status } => format!("finish {status}"),
                Command::WakeAt(at) => format!("wake {}", at.0),
            })
            .collect();
        for command in &commands {
            if let Some(event) = command.event(self.now) {
                self.record(event);
            }
        }
        shown
    }

    fn succeed(&mut self, id: &str) {
        let task = self.index(id);
        let attempt = self.state.attempts(task);
        self.record(Event::TaskSucceeded {
            at: self.now,
            task,
            attempt,
            output: Some(Box::new(serde_json::json!({ "from": id }))),
        });
    }

    fn fail(&mut self, id: &str, kind: FailureKind) {
        let task = self.index(id);
        let attempt = self.state.attempts(task);
        self.record(Event::TaskFailed {
            at: self.now,
            task,
            attempt,
            failure: Box::new(Failure::new(kind, "boom")),
        });
    }

    fn cancelled(&mut self, id: &str) {
        let task = self.index(id);
        self.record(Event::TaskCancelled { at: self.now, task });
    }

    fn status(&self, id: &str) -> TaskStatus {
        self.state.status(self.index(id))
    }

    /// Carries out a control the way the shell does, or says why not.
    fn control(&mut self, control: Control) -> Result<(), ControlError> {
        let events = self.state.control(&control, self.now)?;
        for event in events {
            self.record(event);
        }
        Ok(())
    }

    fn decide(&mut self, task: &str, choice: &str) -> Result<(), ControlError> {
        self.control(Control::Decide(Decision {
            task: task.to_owned(),
            choice: choice.to_owned(),
            by: Some("ana".to_owned()),
            key_id: None,
            note: None,
            comment: None,
        }))
    }
}

const APPROVAL: &str = "name: a\ntasks:\n  build: {run: x}\n  gate: {approval: {prompt: ship?, timeout: 1h, default: reject}, needs: [build]}\n  ship: {run: x, needs: [gate], when: \"tasks.gate.output.choice == 'approve'\"}\n";

#[test]
fn an_approval_waits_without_a_slot_and_its_decision_feeds_when() {
    let mut run = Driver::new(APPROVAL);
    run.state.limit = 1;
    assert_eq!(run.step(), ["start build#1"]);
    run.succeed("build");
    assert_eq!(run.step(), ["await gate"]);
    assert_eq!(run.status("gate"), TaskStatus::Waiting);
    assert_eq!(run.step(), ["wake 3600000"]);
    assert_eq!(
        run.decide("gate", "maybe"),
        Err(ControlError::BadChoice {
            task: "gate".to_owned(),
            choice: "maybe".to_owned(),
            choices: vec!["approve".to_owned(), "reject".to_owned()],
        })
    );
    assert!(matches!(
        run.decide("build", "approve"),
        Err(ControlError::NotApproval(_))
    ));
    run.decide("gate", "approve").unwrap();
    assert_eq!(
        run.state.output_json(run.index("gate")).unwrap(),
        serde_json::json!({"choice": "approve", "by": "ana", "comment": null, "timed_out": false})
    );
    assert!(matches!(
        run.decide("gate", "reject"),
        Err(ControlError::NotWaiting { .. })
    ));
    assert_eq!(run.step(), ["start ship#1"]);
    run.succeed("ship");
    assert_eq!(run.step(), ["finish succeeded"]);
}

#[test]
fn an_approval_timeout_takes_its_default() {
    let mut run = Driver::new(APPROVAL);
    run.step();
    run.succeed("build");
    run.step();
    run.now = Millis(3_600_000);
    assert_eq!(run.step(), ["expire gate reject"]);
    assert_eq!(run.step(), ["skip ship Condition"]);
    assert_eq!(run.step(), ["finish succeeded"]);
    let output = run.state.output_json(run.index("gate")).unwrap();
    assert_eq!(output["timed_out"], true);
}

#[test]
fn cancelling_drops_a_waiting_approval() {
    let mut run = Driver::new("name: a\ntasks:\n  gate: {approval: {prompt: ok?}}\n");
    assert_eq!(run.step(), ["await gate"]);
    assert!(run.step().is_empty());
    run.control(Control::Cancel).unwrap();
    assert_eq!(run.step(), ["cancel gate"]);
    assert_eq!(run.step(), ["finish cancelled"]);
    assert_eq!(run.control(Control::Cancel), Err(ControlError::Finished));
}

#[test]
fn a_paused_run_lets_running_tasks_finish_and_starts_none_until_resumed() {
    let mut run = Driver::new("name: p\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [a]}\n");
    assert_eq!(run.step(), ["start a#1"]);
    run.control(Control::Pause).unwrap();
    assert_eq!(run.state.run_status(), RunStatus::Paused);
    assert_eq!(
        run.control(Control::Pause),
        Err(ControlError::AlreadyPaused)
    );
    run.succeed("a");
    assert!(run.step().is_empty());
    assert_eq!(run.status("b"), TaskStatus::Queued);
    run.control(Control::Resume).unwrap();
    assert_eq!(run.control(Control::Resume), Err(ControlError::NotPaused));
    assert_eq!(run.state.run_status(), RunStatus::Running);
    assert_eq!(run.step(), ["start b#1"]);
}

#[test]
fn a_repeat_goes_round_until_it_holds_and_replays_and_restores_the_same() {
    let spec = "name: r\ntasks:\n  a: {run: x, repeat: {until: 'output.n >= 2', max: 3}}\n";
    let mut run = Driver::new(spec);
    assert_eq!(run.step(), ["start a#1"]);
    let one = serde_json::json!({"n": 1});
    assert_eq!(run.state.iteration(0, 1, Some(&one)), Ok(Iteration::Again));
    run.record(Event::TaskIterated {
        at: run.now,
        task: 0,
        attempt: 1,
        output: Some(Box::new(one)),
    });
    assert_eq!(run.status("a"), TaskStatus::Queued);
    let snapshot = run.state.snapshot(run.log.len() as u64);
    let restored =
        RunState::restore(run.state.shared_valid(), RunSetup::default(), snapshot).unwrap();
    let context = restored.context(0, 2, false);
    assert_eq!(context.get_attr("iteration").unwrap(), Value::from(2));
    assert_eq!(
        context.get_attr("previous").unwrap().get_attr("n").unwrap(),
        Value::from(1)
    );
    assert_eq!(run.step(), ["start a#2"]);
    let two = serde_json::json!({"n": 2});
    assert_eq!(run.state.iteration(0, 2, Some(&two)), Ok(Iteration::Done));
    run.succeed("a");
    assert_eq!(run.step(), ["finish succeeded"]);

    let mut fresh = RunState::new(
        run.state.shared_valid(),
        RunSetup {
            run_id: "run-1".to_owned(),
            ..RunSetup::default()
        },
    );
    let original = crate::run::Trace::of(&run.log);
    assert_eq!(crate::run::replay(&mut fresh, &run.log), Ok(original));
}

#[test]
fn approvals_and_pauses_survive_a_snapshot() {
    let mut run = Driver::new(APPROVAL);
    run.step();
    run.succeed("build");
    run.step();
    run.control(Control::Pause).unwrap();
    run.record(Event::ControlReceived {
        at: run.now,
        seq: 0,
        control: Box::new(Control::Pause),
    });
    let snapshot = run.state.snapshot(run.log.len() as u64);
    let restored =
        RunState::restore(run.state.shared_valid(), RunSetup::default(), snapshot).unwrap();
    assert_eq!(restored.status(1), TaskStatus::Waiting);
    assert_eq!(restored.waiting(), 1);
    assert_eq!(restored.run_status(), RunStatus::Paused);
    assert_eq!(restored.controls_read(), 1);
}

const EXIT_1: FailureKind = FailureKind::Exit { code: 1 };

#[test]
fn a_linear_chain_runs_one_task_after_another() {
    let mut run = Driver::new(
        "name: l\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [a]}\n  c: {run: x, needs: [b]}\n",
    );
    assert_eq!(run.step(), ["start a#1"]);
    assert!(run.step().is_empty());
    run.succeed("a");
    assert_eq!(run.step(), ["start b#1"]);
    run.succeed("b");
    assert_eq!(run.step(), ["start c#1"]);
    run.succeed("c");
    assert_eq!(run.step(), ["finish succeeded"]);
    assert_eq!(run.state.run_status(), RunStatus::Succeeded);
}

#[test]
fn a_diamond_joins_after_both_branches() {
    let mut run = Driver::new(
        "name: d\ntasks:\n  a: {run: x}\n  c: {run: x, needs: [a]}\n  b: {run: x, needs: [a]}\n  d: {run: x, needs: [b, c]}\n",
    );
    assert_eq!(run.step(), ["start a#1"]);
    run.succeed("a");
    assert_eq!(run.step(), ["start b#1", "start c#1"]);
    run.succeed("c");
    assert!(run.step().is_empty());
    run.succeed("b");
    assert_eq!(run.step(), ["start d#1"]);
}

#[test]
fn ready_tasks_start_by_priority_then_id_within_the_limit() {
    let mut run = Driver::new(
        "name: w\nconcurrency: 2\ntasks:\n  e: {run: x}\n  d: {run: x}\n  c: {run: x, priority: 5}\n  b: {run: x}\n  a: {run: x}\n",
    );
    assert_eq!(run.step(), ["start c#1", "start a#1"]);
    run.succeed("a");
    assert_eq!(run.step(), ["start b#1"]);
}

#[test]
fn no_op_tasks_start_without_taking_a_slot_of_the_limit() {
    let mut run = Driver::new(
        "name: w\nconcurrency: 1\ntasks:\n  a: {run: x}\n  j1: {noop: true}\n  j2: {noop: true}\n  j3: {noop: true}\n  z: {run: x}\n",
    );
    assert_eq!(
        run.step(),
        ["start a#1", "start j1#1", "start j2#1", "start j3#1"]
    );
    for join in ["j1", "j2", "j3"] {
        run.succeed(join);
    }
    assert_eq!(run.step(), Vec::<String>::new(), "z waits for a's slot");
    run.succeed("a");
    assert_eq!(run.step(), ["start z#1"]);
}

#[test]
fn tasks_sharing_a_key_take_turns_within_its_limit() {
    let mut run = Driver::new(
        "name: k\nconcurrency_limits: {gpu: 2}\ntasks:\n  a: {run: x, concurrency_key: db}\n  b: {run: x, concurrency_key: db}\n  c: {run: x, concurrency_key: gpu}\n  d: {run: x, concurrency_key: gpu}\n  e: {run: x, concurrency_key: gpu}\n  f: {run: x}\n",
    );
    assert_eq!(
        run.step(),
        ["start a#1", "start c#1", "start d#1", "start f#1"]
    );
    run.succeed("a");
    run.succeed("c");
    assert_eq!(run.step(), ["start b#1", "start e#1"]);
}

#[test]
fn a_retry_waits_for_its_backoff_on_the_injected_clock() {
    let mut run = Driver::new(
        "name: r\ntasks:\n  a: {run: x, retry: {max_attempts: 3, backoff: linear, initial: 2s}}\n",
    );
    assert_eq!(run.step(), ["start a#1"]);
    run.now = Millis(1_000);
    run.fail("a", EXIT_1);
    assert_eq!(run.status("a"), TaskStatus::RetryWait);
    run.now = Millis(2_999);
    assert_eq!(run.step(), ["wake 3000"]);
    run.now = Millis(3_000);
    assert_eq!(run.step(), ["start a#2"]);
    run.now = Millis(4_000);
    run.fail("a", EXIT_1);
    assert_eq!(run.step(), ["wake 8000"]);
    run.now = Millis(8_000);
    assert_eq!(run.step(), ["start a#3"]);
    run.succeed("a");
    assert_eq!(run.step(), ["finish succeeded"]);
    assert_eq!(run.state.attempts(0), 3);
}

#[test]
fn retries_stop_at_max_attempts_and_skip_unlisted_failures() {
    let mut run = Driver::new(
        "name: r\non_failure: continue\ntasks:\n  a: {run: x, retry: {max_attempts: 2, initial: 1s}}\n  b: {run: x, retry: {max_attempts: 5, initial: 1s, on: ['exit:75']}}\n",
    );
    assert_eq!(run.step(), ["start a#1", "start b#1"]);
    run.fail("a", EXIT_1);
    run.fail("b", EXIT_1);
    assert_eq!(run.status("b"), TaskStatus::Failed);
    run.now = Millis(1_000);
    assert_eq!(run.step(), ["start a#2"]);
    run.fail("a", EXIT_1);
    assert_eq!(run.status("a"), TaskStatus::Failed);
    assert_eq!(run.step(), ["finish failed"]);
}

#[test]
fn fail_fast_kills_running_tasks_and_skips_the_rest() {
    let mut run = Driver::new(
        "name: f\ntasks:\n  a: {run: x}\n  b: {run: x}\n  c: {run: x, needs: [a]}\n  d: {run: x, needs: [b]}\n",
    );
    assert_eq!(run.step(), ["start a#1", "start b#1"]);
    run.fail("a", EXIT_1);
    assert_eq!(run.step(), ["skip c NeedFailed { need: 0 }", "kill b"]);
    assert!(run.step().is_empty());
    run.cancelled("b");
    assert_eq!(run.step(), ["skip d NeedFailed { need: 1 }"]);
    assert_eq!(run.step(), ["finish failed"]);
    assert_eq!(run.state.reason(), Some("task `a` failed"));
}

#[test]
fn continue_lets_independent_branches_finish() {
    let mut run = Driver::new(
        "name: c\non_failure: continue\ntasks:\n  a: {run: x}\n  b: {run: x}\n  c: {run: x, needs: [a]}\n  d: {run: x, needs: [b]}\n",
    );
    assert_eq!(run.step(), ["start a#1", "start b#1"]);
    run.fail("a", EXIT_1);
    assert_eq!(run.step(), ["skip c NeedFailed { need: 0 }"]);
    run.succeed("b");
    assert_eq!(run.step(), ["start d#1"]);
    run.succeed("d");
    assert_eq!(run.step(), ["finish failed"]);
    assert_eq!(run.status("d"), TaskStatus::Succeeded);
}

const ESCALATION: &str = "name: s\ntasks:\n  worker: {run: x, escalate: supervisor}\n  supervisor: {run: x}\n  after: {run: x, needs: [worker]}\n  report: {run: x, needs: [supervisor]}\n";

#[test]
fn a_failure_escalates_to_its_target_which_decides_the_run() {
    let mut run = Driver::new(ESCALATION);
    assert_eq!(run.step(), ["start worker#1"]);
    run.fail("worker", EXIT_1);
    assert_eq!(
        run.step(),
        ["skip after NeedFailed { need: 0 }", "start supervisor#1"]
    );
    run.succeed("supervisor");
    assert_eq!(run.step(), ["start report#1"]);
    run.succeed("report");
    assert_eq!(run.step(), ["finish succeeded"], "the failure was handled");
    assert_eq!(run.status("worker"), TaskStatus::Failed);
    assert_eq!(run.replay().run_status(), RunStatus::Succeeded);

    let mut run = Driver::new(ESCALATION);
    run.step();
    run.fail("worker", EXIT_1);
    run.step();
    run.fail("supervisor", EXIT_1);
    assert_eq!(run.step(), ["skip report NeedFailed { need: 1 }"]);
    assert_eq!(
        run.step(),
        ["finish failed"],
        "an escalation target's failure is not handled"
    );
}

#[test]
fn a_success_leaves_its_escalation_target_skipped() {
    let mut run = Driver::new(ESCALATION);
    run.step();
    run.succeed("worker");
    assert_eq!(
        run.step(),
        ["skip supervisor NotEscalated", "start after#1"]
    );
    assert_eq!(run.step(), ["skip report NeedsSkipped"]);
    run.succeed("after");
    assert_eq!(run.step(), ["finish succeeded"]);
}

#[test]
fn compensation_goes_last_finished_first_retries_and_stops_where_it_keeps_failing() {
    let mut run = Driver::new(
        "name: s\non_failure: compensate\ntasks:\n  a: {run: x, compensate: {run: undo}}\n  b: {run: x, needs: [a], compensate: {run: undo}, retry: {max_attempts: 2, backoff: constant, initial: 1s}}\n  c: {run: x, needs: [a], compensate: {run: undo}}\n  d: {run: x, needs: [b, c]}\n",
    );
    run.step();
    run.succeed("a");
    assert_eq!(run.step(), ["start b#1", "start c#1"]);
    // b was planned before c but finishes after it: it is undone first.
    run.now = Millis(run.now.0 + 10);
    run.succeed("c");
    run.now = Millis(run.now.0 + 10);
    run.succeed("b");
    assert_eq!(run.step(), ["start d#1"]);
    run.fail("d", EXIT_1);
    assert_eq!(run.step(), ["compensate b"]);
    let boom = |run: &mut Driver| {
        run.record(Event::CompensationFinished {
            at: run.now,
            task: 1,
            error: Some("boom".to_owned()),
        })
    };
    boom(&mut run);
    let retry_at = run.now.0 + 1000;
    assert_eq!(run.step(), [format!("wake {retry_at}")]);
    run.now = Millis(retry_at);
    assert_eq!(run.step(), ["compensate b"], "retried by b's policy");
    boom(&mut run);
    assert_eq!(run.step(), ["finish compensation_failed"]);
    assert_eq!(run.status("b"), TaskStatus::CompensationFailed);
    assert_eq!(run.status("c"), TaskStatus::Succeeded, "not undone");
    assert_eq!(
        run.state.reason(),
        Some(
            "task `d` failed; compensating `b` failed after 2 attempt(s): boom; not compensated: b, c, a"
        )
    );
    let replayed = run.replay();
    assert_eq!(replayed.run_status(), RunStatus::CompensationFailed);
    assert_eq!(replayed.reason(), run.state.reason());
}

#[test]
fn compensation_undoes_succeeded_tasks_in_reverse_order() {
    let mut run = Driver::new(
        "name: s\non_failure: compensate\ntasks:\n  a: {run: x, compensate: {run: undo}}\n  b: {run: x, needs: [a], compensate: {run: undo}}\n  c: {run: x, needs: [b]}\n  d: {run: x, needs: [a]}\n",
    );
    run.step();
    run.succeed("a");
    assert_eq!(run.step(), ["start b#1", "start d#1"]);
    run.succeed("b");
    run.fail("d", EXIT_1);
    assert_eq!(run.step(), ["skip c RunEnding"]);
    assert_eq!(run.step(), ["compensate b"]);
    run.record(Event::CompensationFinished {
        at: run.now,
        task: 1,
        error: None,
    });
    assert_eq!(run.step(), ["compensate a"]);
    run.record(Event::CompensationFinished {
        at: run.now,
        task: 0,
        error: None,
    });
    assert_eq!(run.step(), ["finish compensated"]);
    assert_eq!(run.status("a"), TaskStatus::Compensated);
}

#[test]
fn a_false_condition_skips_the_task_and_tasks_that_need_only_it() {
    let mut run = Driver::new(
        "name: w\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [a], when: \"tasks.a.output.from == 'z'\"}\n  c: {run: x, needs: [b]}\n  d: {run: x, needs: [a, b]}\n",
    );
    run.step();
    run.succeed("a");
    assert_eq!(run.step(), ["skip b Condition"]);
    assert_eq!(run.step(), ["skip c NeedsSkipped", "start d#1"]);
}

#[test]
fn on_timeout_skip_lets_dependants_see_a_skip() {
    let mut run = Driver::new(
        "name: t\ntasks:\n  a: {run: x, timeout: {after: 1s, on_timeout: skip}}\n  b: {run: x, needs: [a]}\n",
    );
    run.step();
    run.fail("a", FailureKind::Timeout);
    assert_eq!(run.status("a"), TaskStatus::Skipped);
    assert_eq!(run.step(), ["skip b NeedsSkipped"]);
    assert_eq!(run.step(), ["finish succeeded"]);
}

#[test]
fn on_timeout_compensate_compensates_whatever_the_policy() {
    let mut run = Driver::new(
        "name: t\non_failure: continue\ntasks:\n  a: {run: x, compensate: {run: undo}}\n  b: {run: x, needs: [a], timeout: {after: 1s, on_timeout: compensate}}\n",
    );
    run.step();
    run.succeed("a");
    run.step();
    run.fail("b", FailureKind::Timeout);
    assert_eq!(run.status("b"), TaskStatus::TimedOut);
    assert_eq!(run.step(), ["compensate a"]);
    run.record(Event::CompensationFinished {
        at: run.now,
        task: 0,
        error: None,
    });
    assert_eq!(run.step(), ["finish compensated"]);
    assert_eq!(run.state.reason(), Some("task `b` timed out"));
}

#[test]
fn a_lost_attempt_runs_again_with_the_next_attempt_number() {
    let mut run =
        Driver::new("name: l\ntasks:\n  a: {run: x}\n  b: {run: x, concurrency_key: k}\n");
    assert_eq!(run.step(), ["start a#1", "start b#1"]);
    assert_eq!(run.state.in_flight(), [(0, 1), (1, 1)]);
    // As after a crash: a fresh state replays the log (its ready heap
    // still holds every root), then loses what was in flight.
    let mut replayed = RunState::new(
        Arc::clone(&run.state.valid),
        RunSetup {
            run_id: "run-1".to_owned(),
            ..RunSetup::default()
        },
    );
    for event in &run.log {
        replayed.apply(event).unwrap();
    }
    run.state = replayed;
    for (task, attempt) in run.state.in_flight() {
        run.record(Event::AttemptLost {
            at: run.now,
            task,
            attempt,
        });
    }
    assert!(run.state.in_flight().is_empty());
    assert_eq!(run.step(), ["start a#2", "start b#2"]);
    run.succeed("a");
    run.succeed("b");
    assert_eq!(run.step(), ["finish succeeded"]);
}

#[test]
fn a_run_timeout_stops_everything() {
    let mut run =
        Driver::new("name: t\ntimeout: 10s\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [a]}\n");
    assert_eq!(run.step(), ["start a#1", "wake 10000"]);
    run.now = Millis(10_000);
    assert_eq!(run.step(), ["time out"]);
    assert_eq!(run.step(), ["kill a"]);
    run.cancelled("a");
    assert_eq!(run.step(), ["skip b NeedFailed { need: 0 }"]);
    assert_eq!(run.step(), ["finish failed"]);
    assert_eq!(run.state.reason(), Some("the run timed out after 10s"));
}

#[test]
fn cancelling_kills_running_tasks_and_cancels_waiting_ones() {
    let mut run = Driver::new("name: c\nconcurrency: 1\ntasks:\n  a: {run: x}\n  b: {run: x}\n");
    assert_eq!(run.step(), ["start a#1"]);
    run.record(Event::CancelRequested { at: run.now });
    assert_eq!(run.step(), ["cancel b", "kill a"]);
    run.cancelled("a");
    assert_eq!(run.step(), ["finish cancelled"]);
    assert_eq!(run.status("b"), TaskStatus::Cancelled);
}

#[test]
fn templates_resolve_over_inputs_and_upstream_outputs() {
    let mut run = Driver::new(
        "name: t\ninputs: {who: {type: string, default: x}}\ntasks:\n  a: {run: x}\n  b: {needs: [a], command: [echo, '{{ tasks.a.output.from }}'], env: {WHO: '{{ inputs.who }}'}}\n",
    );
    run.step();
    run.succeed("a");
    run.step();
    let resolved = run.state.resolve(1, 1).unwrap();
    assert_eq!(
        resolved.work,
        Work::Command(vec!["echo".into(), "a".into()])
    );
    assert_eq!(resolved.env, [("WHO".to_owned(), String::new())]);
}

#[test]
fn usage_under_the_baton_key_is_totalled() {
    let mut run = Driver::new("name: u\ntasks:\n  a: {run: x}\n  b: {run: x}\n");
    run.step();
    for (task, tokens) in [(0, 100), (1, 23)] {
        run.record(Event::TaskSucceeded {
            at: Millis(5),
            task,
            attempt: 1,
            output: Some(Box::new(
                serde_json::json!({"baton": {"tokens": tokens, "cost": 0.5}}),
            )),
        });
    }
    let metrics = run.state.metrics();
    assert_eq!(metrics.usage.tokens, 123);
    assert_eq!(metrics.usage.cost, 1.0);
    assert_eq!(metrics.attempts, 2);
    assert_eq!(metrics.task_time, Duration::from_millis(10));
}

/// A random DAG spec: task `i` needs a few of the tasks before it.
fn random_spec(needs: &[Vec<usize>], policy: &str) -> String {
    let mut spec = format!("name: p\non_failure: {policy}\nconcurrency: 3\ntasks:\n");
    for (task, needs) in needs.iter().enumerate() {
        let needs: Vec<String> = needs.iter().map(|need| format!("t{need}")).collect();
        spec.push_str(&format!(
            "  t{task}: {{run: x, needs: [{}], retry: {{max_attempts: 2, initial: 1s}}}}\n",
            needs.join(", ")
        ));
    }
    spec
}

fn graphs() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..25).prop_flat_map(|count| {
        (0..count)
            .map(|task| {
                proptest::collection::btree_set(0..task.max(1), 0..=task.min(3))
                    .prop_map(move |needs| needs.into_iter().filter(|&n| n < task).collect())
            })
            .collect::<Vec<_>>()
    })
}

proptest! {
    #[test]
    fn every_task_ends_once_after_its_needs_and_replay_matches(
        needs in graphs(),
        choices in proptest::collection::vec(any::<u8>(), 200),
        policy in prop_oneof![Just("fail_fast"), Just("continue"), Just("compensate")],
    ) {
        let mut run = Driver::new(&random_spec(&needs, policy));
        let mut running: Vec<u32> = Vec::new();
        let mut choices = choices.into_iter().cycle();
        for _ in 0..1_000 {
            let mut commands = Vec::new();
            run.state.decide(run.now, run.budget, &mut commands);
            for command in &commands {
                match command {
                    Command::Dispatch { task, .. } => {
                        for &need in run.state.valid().dag().needs(*task) {
                            prop_assert!(run.state.status(need).is_final());
                        }
                        running.push(*task);
                    }
                    Command::Kill { task } => {
                        running.retain(|running| running != task);
                        let id = run.id(*task).to_owned();
                        run.cancelled(&id);
                    }
                    Command::Compensate { task } => {
                        run.record(Event::CompensationStarted { at: run.now, task: *task });
                        run.record(Event::CompensationFinished { at: run.now, task: *task, error: None });
                        continue;
                    }
                    _ => {}
                }
                if let Some(event) = command.event(run.now) {
                    run.record(event);
                }
            }
            if run.state.is_finished() {
                break;
            }
            run.now = Millis(run.now.0 + 500);
            if choices.next().unwrap() % 13 == 0 {
                // A crash: a fresh state replays the log and loses what
                // was in flight, as `baton resume` does.
                // Every other time from a checkpoint taken part-way.
                let setup = || RunSetup { run_id: "run-1".to_owned(), ..RunSetup::default() };
                let mut replayed = RunState::new(Arc::clone(&run.state.valid), setup());
                for event in &run.log {
                    replayed.apply(event).unwrap();
                }
                let cut = usize::from(choices.next().unwrap()) % (run.log.len() + 1);
                let mut early = RunState::new(Arc::clone(&run.state.valid), setup());
                for event in &run.log[..cut] {
                    early.apply(event).unwrap();
                }
                let sealed = early.snapshot(cut as u64).seal();
                let mut restored = RunState::restore(Arc::clone(&run.state.valid), setup(), sealed.open().unwrap()).unwrap();
                for event in &run.log[cut..] {
                    restored.apply(event).unwrap();
                }
                let length = run.log.len() as u64;
                prop_assert_eq!(restored.snapshot(length), replayed.snapshot(length));
                run.state = if cut.is_multiple_of(2) { restored } else { replayed };
                for (task, attempt) in run.state.in_flight() {
                    run.record(Event::AttemptLost { at: run.now, task, attempt });
                }
                running.clear();
                continue;
            }
            if !running.is_empty() {
                let choice = choices.next().unwrap();
                let task = running.remove(usize::from(choice) % running.len());
                let id = run.id(task).to_owned();
                if choice % 4 == 0 { run.fail(&id, EXIT_1) } else { run.succeed(&id) }
            }
        }
        prop_assert!(run.state.is_finished());
        prop_assert_eq!(run.state.final_count(), needs.len());
        let mut ends = vec![0u32; needs.len()];
        for event in &run.log {
            match event {
                Event::TaskSucceeded { task, .. }
                | Event::TaskSkipped { task, .. }
                | Event::TaskCancelled { task, .. } => ends[*task as usize] += 1,
                _ => {}
            }
        }
        for task in 0..needs.len() as u32 {
            let status = run.state.status(task);
            prop_assert!(status.is_final(), "{} is {:?}", task, status);
            // A failure is final without an ending event of its own.
            let expected = u32::from(status != TaskStatus::Failed);
            prop_assert_eq!(ends[task as usize], expected, "task {}", task);
        }
        let mut replay = RunState::new(Arc::clone(&run.state.valid), RunSetup { run_id: "run-1".to_owned(), ..RunSetup::default() });
        for event in &run.log {
            replay.apply(event).unwrap();
        }
        for task in 0..needs.len() as u32 {
            prop_assert_eq!(replay.status(task), run.state.status(task));
            prop_assert_eq!(replay.attempts(task), run.state.attempts(task));
        }
        prop_assert_eq!(replay.run_status(), run.state.run_status());
        prop_assert_eq!(replay.metrics(), run.state.metrics());

        let mut redriven = RunState::new(Arc::clone(&run.state.valid), RunSetup { run_id: "run-1".to_owned(), ..RunSetup::default() });
        let digest = crate::run::replay(&mut redriven, &run.log);
        prop_assert_eq!(digest, Ok(crate::run::Trace::of(&run.log)));
    }
}
