//! The board's protocol steps on an injected clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_core::run::{FailureKind, Route};
use serde_json::json;
use tokio::sync::oneshot;

use super::board::{Board, Caller, Ended, Item, WorkerError};
use super::protocol::{
    End, Held, Lease, LeasedWork, Registration, RemoteFailure, RemoteFailureKind, Report, Taken,
};
use super::settings::WorkerSettings;
use crate::executor::Outcome;
use crate::{AgentHealth, BreakerSettings};

fn settings() -> WorkerSettings {
    WorkerSettings {
        heartbeat: baton_core::Duration::from_secs(1),
        lease: baton_core::Duration::from_secs(5),
        breaker: BreakerSettings {
            failures: 3,
            cool_down: baton_core::Duration::from_secs(10),
            probes: 1,
        },
        ..WorkerSettings::default()
    }
}

fn registration(
    name: &str,
    capability: &str,
    labels: &[(&str, &str)],
    concurrency: u32,
) -> Registration {
    Registration {
        name: name.to_owned(),
        capabilities: vec![capability.to_owned()],
        labels: labels
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        concurrency,
        version: "test".to_owned(),
    }
}

fn item(
    task: &str,
    capability: &str,
    labels: &[(&str, &str)],
    key: Option<&str>,
    now: Instant,
) -> (Item, oneshot::Receiver<Ended>) {
    let (reply, answer) = oneshot::channel();
    let item = Item {
        route: Route {
            capability: capability.to_owned(),
            labels: labels
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            fairness_key: key.map(str::to_owned),
            priority: 0,
        },
        lease: Lease {
            lease_id: String::new(),
            fencing: 0,
            expires_in_ms: 0,
            run_id: "r".to_owned(),
            task_id: task.to_owned(),
            attempt: 1,
            idempotency_key: format!("r:{task}:1"),
            capability: capability.to_owned(),
            work: LeasedWork::Noop,
            env: BTreeMap::new(),
            cwd: None,
            timeout_ms: None,
            grace_ms: 1000,
            inputs: json!({}),
            needs: serde_json::Map::new(),
            files: Vec::new(),
            artifacts: Vec::new(),
        },
        prefix: std::path::PathBuf::from("/nonexistent/t"),
        queued: now,
        timeout: None,
        reply,
    };
    (item, answer)
}

/// A worker as the board knows it: its id and token.
struct Handle {
    id: String,
    token: String,
}

impl Handle {
    fn caller(&self) -> Caller<'_> {
        Caller {
            worker: &self.id,
            key: "key",
            token: &self.token,
        }
    }
}

fn register(board: &mut Board, registration: Registration, now: Instant) -> Handle {
    let (registered, _) = board.register("key", registration, now);
    Handle {
        id: registered.worker_id,
        token: registered.token,
    }
}

fn take(board: &mut Board, worker: &Handle, count: u32, now: Instant) -> Vec<Lease> {
    board
        .poll(worker.caller(), Vec::new(), &[], count, now)
        .unwrap()
        .leases
}

fn report(lease: &Lease, end: End) -> Report {
    Report {
        lease_id: lease.lease_id.clone(),
        fencing: lease.fencing,
        end,
        usage: None,
        artifacts: Vec::new(),
    }
}

fn failed() -> End {
    End::Failed {
        failure: RemoteFailure {
            kind: RemoteFailureKind::Exit,
            message: "exit 1".to_owned(),
            code: Some(1),
            signal: None,
        },
    }
}

#[test]
fn work_goes_only_to_workers_with_the_capability_and_every_label() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let eu = register(
        &mut board,
        registration("eu", "build", &[("region", "eu")], 4),
        now,
    );
    let us = register(
        &mut board,
        registration("us", "build", &[("region", "us")], 4),
        now,
    );
    let other = register(
        &mut board,
        registration("other", "review", &[("region", "eu")], 4),
        now,
    );
    let (to_eu, _a) = item("a", "build", &[("region", "eu")], None, now);
    let (to_any, _b) = item("b", "build", &[], None, now);
    board.submit(to_eu, now);
    board.submit(to_any, now);
    let eu_got: Vec<String> = take(&mut board, &eu, 10, now)
        .into_iter()
        .map(|lease| lease.task_id)
        .collect();
    let us_got: Vec<String> = take(&mut board, &us, 10, now)
        .into_iter()
        .map(|lease| lease.task_id)
        .collect();
    assert_eq!(eu_got, ["a"]);
    assert_eq!(
        us_got,
        ["b"],
        "the less loaded worker takes the unlabelled task"
    );
    assert!(take(&mut board, &other, 10, now).is_empty());
}

#[test]
fn the_least_loaded_worker_gets_work_and_ties_take_turns() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let small = register(&mut board, registration("small", "build", &[], 1), now);
    let big = register(&mut board, registration("big", "build", &[], 4), now);
    let mut answers = Vec::new();
    for task in ["a", "b", "c", "d", "e"] {
        let (item, answer) = item(task, "build", &[], None, now);
        answers.push(answer);
        board.submit(item, now);
    }
    // a: both idle, first registered second-last... then loads 1/1 and x/4.
    let small_got = take(&mut board, &small, 10, now).len();
    let big_got = take(&mut board, &big, 10, now).len();
    assert_eq!(
        (small_got, big_got),
        (1, 4),
        "each up to its concurrency, no more"
    );
    let workers = board.workers(now);
    assert!(
        workers
            .iter()
            .all(|worker| Some(worker.in_flight) == worker.concurrency)
    );
}

#[test]
fn a_report_with_a_stale_fencing_token_is_refused_and_changes_nothing() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let worker = register(&mut board, registration("w", "build", &[], 1), now);
    let (item, mut answer) = item("a", "build", &[], None, now);
    board.submit(item, now);
    let lease = take(&mut board, &worker, 1, now).remove(0);
    let stale = Report {
        fencing: lease.fencing + 1,
        ..report(&lease, End::Succeeded { output: None })
    };
    assert_eq!(
        board.complete(worker.caller(), stale, now),
        Err(WorkerError::StaleLease(lease.lease_id.clone()))
    );
    assert!(answer.try_recv().is_err(), "nothing was applied");
    let good = report(
        &lease,
        End::Succeeded {
            output: Some(json!({"n": 1})),
        },
    );
    board.complete(worker.caller(), good.clone(), now).unwrap();
    assert!(matches!(
        answer.try_recv(),
        Ok(Ended {
            outcome: Outcome::Succeeded(Some(_)),
            ..
        })
    ));
    assert_eq!(
        board.complete(worker.caller(), good, now),
        Err(WorkerError::StaleLease(lease.lease_id)),
        "a second report of the same lease is refused"
    );
}

#[test]
fn a_lease_not_extended_in_time_is_lost_and_its_late_report_refused() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let worker = register(&mut board, registration("w", "build", &[], 1), now);
    let (item, mut answer) = item("a", "build", &[], None, now);
    board.submit(item, now);
    let lease = take(&mut board, &worker, 1, now).remove(0);
    let later = now + Duration::from_secs(4);
    let extended = board
        .poll(
            worker.caller(),
            Vec::new(),
            &[Held {
                lease_id: lease.lease_id.clone(),
                fencing: lease.fencing,
            }],
            0,
            later,
        )
        .unwrap();
    assert!(extended.stop.is_empty());
    board.expire(later + Duration::from_secs(4));
    assert!(answer.try_recv().is_err(), "extended by the poll");
    board.expire(later + Duration::from_secs(5));
    match answer.try_recv() {
        Ok(Ended {
            outcome: Outcome::Failed(failure),
            ..
        }) => {
            assert_eq!(failure.kind, FailureKind::Lost);
            assert!(
                failure.message.contains("did not extend its lease"),
                "{}",
                failure.message
            );
        }
        other => panic!("expected a lost attempt, got {other:?}"),
    }
    let polled = board
        .poll(
            worker.caller(),
            vec![report(&lease, End::Succeeded { output: None })],
            &[],
            0,
            later + Duration::from_secs(6),
        )
        .unwrap();
    assert_eq!(polled.results, [Taken::Stale]);
    assert_eq!(
        polled.stop,
        [lease.lease_id],
        "told to stop what it no longer holds"
    );
}

#[test]
fn a_worker_that_keeps_failing_gets_no_work_until_its_breaker_half_opens() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let bad = register(&mut board, registration("bad", "build", &[], 8), now);
    for task in ["a", "b", "c"] {
        let (item, _) = item(task, "build", &[], None, now);
        board.submit(item, now);
    }
    let leases = take(&mut board, &bad, 8, now);
    let reports = leases.iter().map(|lease| report(lease, failed())).collect();
    board.poll(bad.caller(), reports, &[], 0, now).unwrap();
    let good = register(&mut board, registration("good", "build", &[], 8), now);
    let (item_d, _d) = item("d", "build", &[], None, now);
    board.submit(item_d, now);
    assert!(
        take(&mut board, &bad, 8, now).is_empty(),
        "its breaker is open"
    );
    assert_eq!(take(&mut board, &good, 8, now).len(), 1);
    let status = |board: &Board, at| {
        board
            .workers(at)
            .into_iter()
            .find(|worker| worker.name == "bad")
            .unwrap()
            .status
    };
    assert_eq!(status(&board, now), AgentHealth::Unhealthy);
    let after = now + Duration::from_secs(10);
    board.poll(bad.caller(), Vec::new(), &[], 0, after).unwrap();
    board
        .poll(good.caller(), Vec::new(), &[], 0, after)
        .unwrap();
    for task in ["e", "f"] {
        let (item, _) = item(task, "build", &[], None, after);
        board.submit(item, after);
    }
    let probes = take(&mut board, &bad, 8, after);
    assert_eq!(probes.len(), 1, "half-open: one probe");
    board
        .poll(
            bad.caller(),
            vec![report(&probes[0], End::Succeeded { output: None })],
            &[],
            0,
            after,
        )
        .unwrap();
    assert_eq!(
        status(&board, after),
        AgentHealth::Healthy,
        "the probe closed it"
    );
    let changes: Vec<String> = board
        .workers(after)
        .into_iter()
        .find(|worker| worker.name == "bad")
        .unwrap()
        .breaker_changes
        .into_iter()
        .map(|change| change.to)
        .collect();
    assert_eq!(
        changes,
        ["open", "half_open", "closed"],
        "every move is kept"
    );
}

#[test]
fn fairness_keys_take_turns_so_a_small_backlog_is_not_stuck_behind_a_big_one() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let mut answers = Vec::new();
    for index in 0..100 {
        let (item, answer) = item(&format!("big{index}"), "build", &[], Some("big"), now);
        answers.push(answer);
        board.submit(item, now);
    }
    for index in 0..3 {
        let (item, answer) = item(&format!("small{index}"), "build", &[], Some("small"), now);
        answers.push(answer);
        board.submit(item, now);
    }
    let worker = register(&mut board, registration("w", "build", &[], 6), now);
    let got: Vec<String> = take(&mut board, &worker, 6, now)
        .into_iter()
        .map(|lease| lease.task_id)
        .collect();
    assert_eq!(got, ["big0", "small0", "big1", "small1", "big2", "small2"]);
}

#[test]
fn a_rate_limited_key_starts_no_more_than_its_rate() {
    let settings = WorkerSettings {
        rates: BTreeMap::from([("slow".to_owned(), 5.0)]),
        ..settings()
    };
    let (mut board, start) = (Board::new(settings), Instant::now());
    let worker = register(&mut board, registration("w", "build", &[], 1000), start);
    let mut answers = Vec::new();
    for index in 0..200 {
        let (item, answer) = item(&format!("t{index}"), "build", &[], Some("slow"), start);
        answers.push(answer);
        board.submit(item, start);
    }
    let mut leases = take(&mut board, &worker, 1000, start);
    let mut started = leases.len();
    assert_eq!(started, 5, "a second's worth at once");
    for step in 1..=100 {
        let now = start + Duration::from_millis(100 * step);
        board.expire(now);
        let done = leases
            .drain(..)
            .map(|lease| report(&lease, End::Succeeded { output: None }))
            .collect();
        leases = board
            .poll(worker.caller(), done, &[], 1000, now)
            .unwrap()
            .leases;
        started += leases.len();
    }
    assert_eq!(
        started,
        5 + 50,
        "5 a second over 10 s, after the first second's burst"
    );
}

#[test]
fn a_worker_handing_back_its_work_sends_it_to_another_as_it_is() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let leaving = register(&mut board, registration("leaving", "build", &[], 1), now);
    let (item, mut answer) = item("a", "build", &[], None, now);
    board.submit(item, now);
    let lease = take(&mut board, &leaving, 1, now).remove(0);
    let staying = register(&mut board, registration("staying", "build", &[], 1), now);
    board.drain(leaving.caller()).unwrap();
    board
        .poll(
            leaving.caller(),
            vec![report(&lease, End::Stopped)],
            &[],
            0,
            now,
        )
        .unwrap();
    let again = take(&mut board, &staying, 1, now);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].task_id.as_str(), again[0].attempt), ("a", 1));
    assert_ne!(again[0].fencing, lease.fencing);
    assert!(answer.try_recv().is_err(), "the attempt has not ended");
}

#[test]
fn only_the_registering_key_with_the_token_acts_for_a_worker() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let worker = register(&mut board, registration("w", "build", &[], 1), now);
    let caller = |worker, key, token| Caller { worker, key, token };
    for (who, refusal) in [
        (
            caller(&worker.id, "other key", &worker.token),
            WorkerError::NotYours(worker.id.clone()),
        ),
        (
            caller(&worker.id, "key", "wrong"),
            WorkerError::NotYours(worker.id.clone()),
        ),
        (
            caller("w-nobody", "key", &worker.token),
            WorkerError::Unknown("w-nobody".to_owned()),
        ),
    ] {
        assert_eq!(
            board.poll(who, Vec::new(), &[], 1, now).err(),
            Some(refusal)
        );
    }
}

#[test]
fn a_task_with_no_worker_says_what_it_waits_for() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let (item, _answer) = item("a", "gpu", &[("region", "eu")], None, now);
    board.submit(item, now);
    assert_eq!(
        board.waiting("r", now),
        BTreeMap::from([(
            "a".to_owned(),
            "waiting for a worker with capability `gpu` and labels region=eu".to_owned()
        )])
    );
}

#[test]
fn queued_work_is_leased_by_priority_and_a_new_priority_moves_it() {
    let (mut board, now) = (Board::new(settings()), Instant::now());
    let mut answers = Vec::new();
    for (task, priority) in [("low", 0), ("high", 5), ("later", 0)] {
        let (mut item, answer) = item(task, "build", &[], None, now);
        item.route.priority = priority;
        answers.push(answer);
        board.submit(item, now);
    }
    assert_eq!(board.reprioritize("r", "later", 9), 1);
    assert_eq!(board.reprioritize("r", "nothing", 9), 0);
    let worker = register(&mut board, registration("w", "build", &[], 3), now);
    let order: Vec<String> = take(&mut board, &worker, 3, now)
        .into_iter()
        .map(|lease| lease.task_id)
        .collect();
    assert_eq!(order, ["later", "high", "low"]);
}

#[test]
fn whole_numbers_may_be_written_with_a_zero_fraction_and_nothing_else() {
    let poll: super::protocol::Poll =
        serde_json::from_value(json!({"take": 3.0, "wait_ms": 1000})).unwrap();
    assert_eq!((poll.take, poll.wait_ms), (3, 1000));
    for bad in [
        json!({"take": 3.5}),
        json!({"take": -1}),
        json!({"take": 1e20}),
    ] {
        assert!(
            serde_json::from_value::<super::protocol::Poll>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}
