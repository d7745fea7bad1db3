//! Three `baton serve` replicas on one PostgreSQL database, as a user runs
//! them: one is killed with SIGKILL in the middle of fifty runs, and the
//! others carry its runs through without running a finished task again or
//! two copies of one attempt side by side.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{PgSchema, Served, baton, request, serve, stops};

/// An execute key made with `baton keys create` against the store at `url`.
fn key(dir: &Path, url: &str) -> String {
    scoped_key(dir, url, "execute")
}

fn scoped_key(dir: &Path, url: &str, scope: &str) -> String {
    let output = baton()
        .current_dir(dir)
        .args(["keys", "create", "--name", "replicas", "--scope", scope])
        .args(["--store", url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// One line a task wrote: `began|ended RUN TASK ATTEMPT PID PPID NANOS`:
/// the parent is the replica that launched it.
struct Effect {
    ended: bool,
    run: String,
    task: String,
    attempt: u32,
    pid: i32,
    replica: u32,
    at: u128,
}

fn effects(path: &Path) -> Vec<Effect> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Effect {
                ended: fields[0] == "ended",
                run: fields[1].to_owned(),
                task: fields[2].to_owned(),
                attempt: fields[3].parse().unwrap(),
                pid: fields[4].parse().unwrap(),
                replica: fields[5].parse().unwrap(),
                at: fields[6].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn a_killed_replica_s_runs_finish_on_the_others_and_no_finished_task_runs_again() {
    let Some(schema) = PgSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = schema.url();
    let key = key(dir.path(), &url);
    let env = [("BATON_STORE__URL", url.as_str())];
    let mut replicas: Vec<(Served, String)> =
        (0..3).map(|_| serve(dir.path(), &[], &env)).collect();
    let log = dir.path().join("effects.log");
    let step = |task: &str| {
        format!(
            "echo \"began $BATON_RUN_ID {task} $BATON_ATTEMPT $$ $PPID $(date +%s%N)\" >> {log}; \
             sleep 0.4; \
             echo \"ended $BATON_RUN_ID {task} $BATON_ATTEMPT $$ $PPID $(date +%s%N)\" >> {log}",
            log = log.display()
        )
    };
    let spec = json!({
        "name": "effects",
        "tasks": {
            "first": {"run": step("first")},
            "second": {"needs": ["first"], "run": step("second")},
            "third": {"needs": ["second"], "run": step("third")},
        }
    });
    let mut runs = Vec::new();
    for index in 0..50 {
        let address = &replicas[index % 3].1;
        let (status, body) = request(
            address,
            &key,
            ("POST", "/api/v1/runs"),
            Some(&json!({"spec": spec.to_string()})),
        );
        assert_eq!(status, 201, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        runs.push(body["run_id"].as_str().unwrap().to_owned());
    }
    // Let the first replica's runs get under way, then kill it.
    std::thread::sleep(Duration::from_millis(600));
    let (mut killed, _) = replicas.remove(0);
    let killed_pid = killed.id();
    killed.kill().unwrap();
    killed.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    for (index, run) in runs.iter().enumerate() {
        let address = &replicas[index % 2].1;
        loop {
            let (status, body) =
                request(address, &key, ("GET", &format!("/api/v1/runs/{run}")), None);
            assert_eq!(status, 200, "{body}");
            let shown: Value = serde_json::from_str(&body).unwrap();
            if shown["status"] == "succeeded" {
                break;
            }
            assert!(
                !matches!(shown["status"].as_str(), Some("failed" | "cancelled")),
                "{shown}"
            );
            assert!(
                Instant::now() < deadline,
                "run {run} never finished: {shown}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let effects = effects(&log);
    let mut began = BTreeSet::new();
    let mut ended: BTreeMap<(String, String), Vec<&Effect>> = BTreeMap::new();
    for effect in &effects {
        let attempt = (effect.run.clone(), effect.task.clone(), effect.attempt);
        if effect.ended {
            ended
                .entry((effect.run.clone(), effect.task.clone()))
                .or_default()
                .push(effect);
        } else {
            assert!(
                began.insert(attempt.clone()),
                "an attempt began twice: {attempt:?}"
            );
        }
    }
    // Every task finished in the attempt the run recorded, once; another
    // attempt may have finished too only if it was under way when its
    // replica was killed, so its end was never recorded (at least once).
    assert_eq!(ended.len(), runs.len() * 3);
    let mut unrecorded = 0;
    let address = &replicas[0].1;
    for run in &runs {
        let (_, body) = request(address, &key, ("GET", &format!("/api/v1/runs/{run}")), None);
        let shown: Value = serde_json::from_str(&body).unwrap();
        for task in shown["tasks"].as_array().unwrap() {
            let id = task["id"].as_str().unwrap().to_owned();
            let recorded = task["attempts"].as_u64().unwrap();
            let finished = &ended[&(run.clone(), id.clone())];
            let (this, others): (Vec<&&Effect>, Vec<&&Effect>) = finished
                .iter()
                .partition(|effect| u64::from(effect.attempt) == recorded);
            assert_eq!(
                this.len(),
                1,
                "{run} {id}: the recorded attempt ended {} times",
                this.len()
            );
            for other in others {
                assert!(
                    u64::from(other.attempt) < recorded,
                    "{run} {id} ran after it finished"
                );
                let began = effects.iter().find(|effect| {
                    !effect.ended
                        && effect.run == other.run
                        && effect.task == other.task
                        && effect.attempt == other.attempt
                });
                assert!(
                    began.is_some_and(|began| began.replica == killed_pid),
                    "{run} {id} attempt {} ended unrecorded but was not the killed replica's",
                    other.attempt
                );
                unrecorded += 1;
            }
        }
    }
    // No two attempts of a task overlapped: each began after the one
    // before it ended, or after the one before it was stopped for good.
    for effect in effects
        .iter()
        .filter(|effect| !effect.ended && effect.attempt > 1)
    {
        let before: Vec<&Effect> = effects
            .iter()
            .filter(|other| {
                other.run == effect.run
                    && other.task == effect.task
                    && other.attempt < effect.attempt
            })
            .collect();
        for other in before.iter().filter(|other| other.ended) {
            assert!(
                other.at < effect.at,
                "attempts of {} {} overlapped",
                effect.run,
                effect.task
            );
        }
        for other in before.iter().filter(|other| !other.ended) {
            let finished = before
                .iter()
                .any(|done| done.ended && done.attempt == other.attempt);
            if !finished {
                assert!(stops(other.pid), "a killed replica's task still runs");
            }
        }
    }
    let retried = effects
        .iter()
        .filter(|effect| !effect.ended && effect.attempt > 1)
        .count();
    eprintln!(
        "{} runs, {retried} attempts ran again after the kill, {unrecorded} of those in flight \
         at the kill had ended unrecorded",
        runs.len()
    );
}

#[test]
fn migrate_copies_a_laptop_s_runs_and_keys_up_to_postgres_and_verifies_them() {
    let Some(schema) = PgSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report =
        crate::util::report_of(dir.path(), &["examples/artifacts-and-cache.yaml", "--json"]);
    let run = report["run_id"].as_str().unwrap().to_owned();
    crate::util::report_of(dir.path(), &["examples/foreach.yaml", "--json"]);
    crate::util::key(dir.path(), "read");
    let url = schema.url();
    let migrate = |expected: &str| {
        baton()
            .current_dir(dir.path())
            .args(["migrate", "--from", ".baton/baton.db", "--to", &url])
            .assert()
            .success()
            .stdout(predicates::str::contains(expected.to_owned()))
            .stdout(predicates::str::contains("every provenance root matches"));
    };
    migrate("copied 2 run(s)");
    // A second migration finds everything there and copies nothing twice.
    migrate("2 run(s) were there already");
    let output = baton()
        .current_dir(dir.path())
        .args(["verify", &run, "--store", &url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains(report["provenance_root"].as_str().unwrap_or("ok")),
        "{shown}"
    );
    let keys = baton()
        .current_dir(dir.path())
        .args(["keys", "list", "--store", &url])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&keys.stdout).contains("test"),
        "{keys:?}"
    );
}

#[test]
fn a_postgres_store_that_cannot_be_reached_is_named_with_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = baton()
        .current_dir(dir.path())
        .args([
            "runs",
            "--store",
            "postgres://baton:secret@127.0.0.1:1/baton",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("PostgreSQL at 127.0.0.1:1/baton: cannot connect"),
        "{error}"
    );
    assert!(error.contains("Connection refused"), "{error}");
    assert!(
        !error.contains("secret"),
        "the password is never shown: {error}"
    );
    assert_eq!(
        error.matches("error connecting to server").count(),
        1,
        "{error}"
    );
}

/// The run's shown state from `address`, once `holds` says so (30 s at most).
fn run_when(address: &str, key: &str, run: &str, holds: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = request(address, key, ("GET", &format!("/api/v1/runs/{run}")), None);
        assert_eq!(status, 200, "{body}");
        let shown: Value = serde_json::from_str(&body).unwrap();
        if holds(&shown) {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} never got there: {shown:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two replicas on one schema, each in a directory of its own, with quick
/// worker leases: `offering` drives the runs, workers may register with
/// `taking`.
struct TwoReplicas {
    _schema: PgSchema,
    offering: tempfile::TempDir,
    taking: tempfile::TempDir,
    runner: String,
    worker_key: String,
    a: (Served, String),
    b: (Served, String),
}

impl TwoReplicas {
    fn start() -> Option<TwoReplicas> {
        let schema = PgSchema::new()?;
        let url = schema.url();
        let (offering, taking) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&offering, &taking] {
            std::fs::write(
                dir.path().join("baton.toml"),
                "[workers]\nheartbeat = \"200ms\"\nlease = \"2s\"\n",
            )
            .unwrap();
        }
        let runner = key(offering.path(), &url);
        let worker_key = scoped_key(offering.path(), &url, "worker");
        let env = [("BATON_STORE__URL", url.as_str())];
        let a = serve(offering.path(), &[], &env);
        let b = serve(taking.path(), &[], &env);
        Some(TwoReplicas {
            _schema: schema,
            offering,
            taking,
            runner,
            worker_key,
            a,
            b,
        })
    }

    /// Starts `spec` on the offering replica; the run's id.
    fn start_run(&self, spec: &Value) -> String {
        let (status, body) = request(
            &self.a.1,
            &self.runner,
            ("POST", "/api/v1/runs"),
            Some(&json!({"spec": spec.to_string()})),
        );
        assert_eq!(status, 201, "{body}");
        let run: Value = serde_json::from_str(&body).unwrap();
        run["run_id"].as_str().unwrap().to_owned()
    }

    /// The run as the offering replica shows it once it succeeded; fails
    /// at once if it fails.
    fn succeeded(&self, run: &str) -> Value {
        run_when(&self.a.1, &self.runner, run, |shown| {
            assert!(
                !matches!(shown["status"].as_str(), Some("failed" | "cancelled")),
                "{shown:#}"
            );
            shown["status"] == "succeeded"
        })
    }
}

/// Starts `baton worker` in `dir` against `address`.
fn worker(dir: &Path, address: &str, key: &str, name: &str) -> std::process::Child {
    std::fs::create_dir_all(dir).unwrap();
    std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir)
        .args([
            "worker",
            "--server",
            &format!("http://{address}"),
            "--key",
            key,
        ])
        .args(["--name", name, "--capability", "gpu"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_worker_of_one_replica_runs_what_another_replica_s_run_routes_to_its_capability() {
    let Some(replicas) = TwoReplicas::start() else {
        return;
    };
    let (a, b, runner) = (&replicas.a.1, &replicas.b.1, &replicas.runner);

    let wrote = r#"echo "{\"dir\": \"$PWD\"}" > "$BATON_OUTPUT"; echo "on the worker""#;
    let spec = json!({
        "name": "routed",
        "tasks": {
            "gpu": {"run": wrote, "runs_on": {"capability": "gpu"}, "timeout": "60s"},
            "after": {"needs": ["gpu"], "run": "echo '{\"here\": true}' > \"$BATON_OUTPUT\""},
        }
    });
    let run = replicas.start_run(&spec);

    // No worker anywhere yet: the attempt waits in the shared queue, and
    // the replica driving the run says so.
    let gpu = |shown: &Value| -> Value {
        let tasks = shown["tasks"].as_array().unwrap();
        tasks
            .iter()
            .find(|task| task["id"] == "gpu")
            .unwrap()
            .clone()
    };
    let shown = run_when(a, runner, &run, |shown| gpu(shown)["waiting"].is_string());
    let why = gpu(&shown)["waiting"].as_str().unwrap().to_owned();
    assert!(
        why.contains("offered to the workers of every replica"),
        "{why}"
    );

    // A worker registers with the other replica only, and takes it.
    let workdir = replicas.taking.path().join("worker");
    let mut taker = worker(&workdir, b, &replicas.worker_key, "gpu-box");
    let shown = replicas.succeeded(&run);
    let _ = taker.kill();
    let _ = taker.wait();
    assert_eq!(gpu(&shown)["attempts"], 1, "{shown:#}");
    let (status, body) = request(a, runner, ("GET", &format!("/api/v1/runs/{run}")), None);
    assert_eq!(status, 200);
    assert!(
        body.contains(&workdir.display().to_string()),
        "ran on the worker: {body}"
    );
    // Its log was uploaded to the replica that leased it.
    let (status, log) = request(
        b,
        runner,
        (
            "GET",
            &format!("/api/v1/runs/{run}/tasks/gpu/logs?stream=stdout"),
        ),
        None,
    );
    assert_eq!((status, log.trim()), (200, "on the worker"));
}

#[test]
fn an_attempt_taken_by_a_replica_that_is_killed_is_lost_and_runs_again_elsewhere() {
    let Some(mut replicas) = TwoReplicas::start() else {
        return;
    };
    let (a, b) = (replicas.a.1.clone(), replicas.b.1.clone());
    let worker_key = replicas.worker_key.clone();
    let mut first = worker(&replicas.taking.path().join("w1"), &b, &worker_key, "first");

    let marker = replicas.offering.path().join("began");
    let spec = json!({
        "name": "lost",
        "tasks": {"gpu": {
            "run": format!(
                "echo \"$BATON_ATTEMPT\" >> {}; if [ \"$BATON_ATTEMPT\" = 1 ]; then sleep 30; fi",
                marker.display()
            ),
            "runs_on": {"capability": "gpu"},
            "retry": {"max_attempts": 2, "backoff": "constant", "initial": "10ms"},
        }}
    });
    let run = replicas.start_run(&spec);
    crate::util::wait_for_file(&marker);

    // The replica that leased attempt 1 to its worker dies with it.
    replicas.b.0.kill().unwrap();
    replicas.b.0.wait().unwrap();
    let _ = first.kill();
    let _ = first.wait();
    let mut second = worker(
        &replicas.offering.path().join("w2"),
        &a,
        &worker_key,
        "second",
    );
    let shown = replicas.succeeded(&run);
    let _ = second.kill();
    let _ = second.wait();
    let (status, events) = request(
        &a,
        &replicas.runner,
        ("GET", &format!("/api/v1/runs/{run}/events")),
        None,
    );
    assert_eq!(status, 200);
    assert!(
        events.contains("the server replica that leased it to a worker stopped"),
        "attempt 1 ends as lost: {events}"
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "1\n2\n",
        "{shown:#}"
    );
}
