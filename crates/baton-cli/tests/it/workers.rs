//! `baton serve` with `baton worker` processes, as a user starts them:
//! routing by capability and labels, a worker killed mid-task, breakers,
//! draining on SIGTERM, agent tasks through a worker's command.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{baton, key, stops, task, wait_for_file};

/// Settings that make workers quick to be found dead and leases quick to
/// run out, so the tests do not wait long.
const FAST: &str = "[workers]\nheartbeat = \"200ms\"\nlease = \"1s\"\n[workers.breaker]\nfailures = 3\ncool_down = \"2s\"\nprobes = 1\n";

/// A server in a fresh directory, with an execute key to start runs and a
/// worker key for its workers.
struct Cluster {
    dir: tempfile::TempDir,
    /// Held for its drop, which stops the server after the workers.
    _server: crate::util::Served,
    address: String,
    runner: String,
    worker_key: String,
    workers: Vec<Child>,
}

impl Cluster {
    fn start(settings: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("baton.toml"), settings).unwrap();
        let runner = key(dir.path(), "execute");
        let worker_key = key(dir.path(), "worker");
        let (server, address) = crate::util::serve(dir.path(), &[], &[]);
        Cluster {
            dir,
            _server: server,
            address,
            runner,
            worker_key,
            workers: Vec::new(),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Starts a worker working in its own directory `name/`; its index.
    fn worker(&mut self, name: &str, args: &[&str]) -> usize {
        let workdir = self.dir.path().join(name);
        std::fs::create_dir_all(&workdir).unwrap();
        let child = Command::new(assert_cmd::cargo::cargo_bin("baton"))
            .current_dir(&workdir)
            .args(["worker", "--server", &self.url(), "--key", &self.worker_key])
            .args(["--name", name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.workers.push(child);
        self.wait_for(|agents| {
            agents
                .iter()
                .any(|agent| agent["name"] == name && agent["status"] == "healthy")
        });
        self.workers.len() - 1
    }

    fn workdir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The agent registry.
    fn agents(&self) -> Vec<Value> {
        let output = baton()
            .args([
                "--server",
                &self.url(),
                "--key",
                &self.runner,
                "agents",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn agent(&self, name: &str) -> Value {
        self.agents()
            .into_iter()
            .find(|agent| agent["name"] == name)
            .unwrap_or_else(|| panic!("no agent {name}"))
    }

    /// Waits (up to 30 s) until the registry satisfies `holds`.
    fn wait_for(&self, holds: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let agents = self.agents();
            if holds(&agents) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the registry never got there: {agents:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `spec` on the server (`-i` each of `inputs`, or other
    /// flags as they are); the `baton run` process, which prints the report.
    fn run(&self, spec: &str, inputs: &[&str]) -> Child {
        let path = self.dir.path().join(format!("spec-{}.yaml", rand_suffix()));
        std::fs::write(&path, spec).unwrap();
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("baton"));
        command
            .args([
                "--server",
                &self.url(),
                "--key",
                &self.runner,
                "run",
                "--json",
            ])
            .arg(&path);
        for input in inputs {
            match input.strip_prefix("--label=") {
                Some(label) => command.args(["--label", label]),
                None => command.args(["-i", input]),
            };
        }
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn report(&self, spec: &str, inputs: &[&str]) -> Value {
        report_of(self.run(spec, inputs))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }
}

fn report_of(child: Child) -> Value {
    let output = child.wait_with_output().unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "no report: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A new number each call, for file names.
fn rand_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Where a task ran: its output's `dir`, the worker directory's name.
fn ran_in(report: &Value, id: &str) -> String {
    let dir = task(report, id)["output"]["dir"]
        .as_str()
        .unwrap()
        .to_owned();
    Path::new(&dir)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn work_reaches_only_workers_with_the_capability_and_labels_the_run_asks_for() {
    let mut cluster = Cluster::start(FAST);
    cluster.worker("eu", &["--capability", "build", "--label", "region=eu"]);
    cluster.worker("us", &["--capability", "build", "--label", "region=us"]);
    cluster.worker("tester", &["--capability", "test", "--label", "region=eu"]);
    let dir = r#"echo "{\"dir\": \"$PWD\"}" > "$BATON_OUTPUT""#;
    let mut tasks = serde_json::Map::new();
    for index in 0..6 {
        tasks.insert(
            format!("build{index}"),
            json!({"run": dir, "runs_on": {"capability": "build", "labels": {"region": "{{ inputs.region }}"}}}),
        );
        tasks.insert(
            format!("test{index}"),
            json!({"command": ["sh", "-c", dir], "runs_on": {"capability": "test"}}),
        );
    }
    tasks.insert(
        "local".to_owned(),
        json!({"run": r#"echo '{"dir": "here"}' > "$BATON_OUTPUT""#}),
    );
    let spec = json!({"name": "routed", "inputs": {"region": {"default": "us"}}, "tasks": tasks})
        .to_string();
    let report = cluster.report(&spec, &["region=eu"]);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    for index in 0..6 {
        assert_eq!(
            ran_in(&report, &format!("build{index}")),
            "eu",
            "labels come from the run's inputs"
        );
        assert_eq!(ran_in(&report, &format!("test{index}")), "tester");
    }
    assert_eq!(
        ran_in(&report, "local"),
        "here",
        "a task without runs_on runs where the run is driven"
    );
    assert_eq!(cluster.agent("us")["succeeded"], 0);
    assert_eq!(cluster.agent("eu")["succeeded"], 6);

    // Labels chosen for the whole run when it starts; a task's own wins.
    let tasks = json!({
        "free": {"run": dir, "runs_on": {"capability": "build"}},
        "pinned": {"run": dir, "runs_on": {"capability": "build", "labels": {"region": "eu"}}},
    });
    let spec = json!({"name": "labelled", "tasks": tasks}).to_string();
    let report = cluster.report(&spec, &["--label=region=us"]);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    assert_eq!(ran_in(&report, "free"), "us");
    assert_eq!(ran_in(&report, "pinned"), "eu");
}

#[test]
fn an_attempt_on_a_worker_killed_mid_task_runs_again_on_another_and_the_run_succeeds() {
    let mut cluster = Cluster::start(FAST);
    let first = cluster.worker("one", &["--capability", "build"]);
    let second = cluster.worker("two", &["--capability", "build"]);
    let spec = "name: survive\ntasks:\n  work:\n    run: |\n      echo $$ > started\n      if [ \"$BATON_ATTEMPT\" = 1 ]; then sleep 300; fi\n      echo \"{\\\"dir\\\": \\\"$PWD\\\", \\\"attempt\\\": $BATON_ATTEMPT}\" > \"$BATON_OUTPUT\"\n    runs_on: {capability: build}\n    retry: {max_attempts: 3, on: [lost], initial: 10ms}\n";
    let run = cluster.run(spec, &[]);
    // The task writes its pid to `started` where it runs (read once it is
    // whole: the shell makes the file before it writes to it).
    let pid_in = |worker: &str| -> Option<i32> {
        std::fs::read_to_string(cluster.workdir(worker).join("started"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (victim, survivor, orphan) = loop {
        if let Some(pid) = pid_in("one") {
            break (first, "two", pid);
        }
        if let Some(pid) = pid_in("two") {
            break (second, "one", pid);
        }
        assert!(
            Instant::now() < deadline,
            "the task never started on a worker"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let killed = Instant::now();
    cluster.workers[victim].kill().unwrap();
    let report = report_of(run);
    let took = killed.elapsed();
    // The killed worker's task process is left running, as `kill -9`
    // leaves it; the test does not leave it behind.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(orphan),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(stops(orphan));
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let work = task(&report, "work");
    assert_eq!(work["attempts"], 2);
    assert_eq!(work["output"]["attempt"], 2);
    assert_eq!(ran_in(&report, "work"), survivor);
    assert!(
        took < Duration::from_secs(20),
        "retried within lease and heartbeat timeouts, not after the task's own time: {took:?}"
    );
}

#[test]
fn a_worker_that_fails_every_task_opens_its_breaker_and_half_opens_after_the_cool_down() {
    let mut cluster = Cluster::start(FAST);
    cluster.worker("bad", &["--capability", "check", "--concurrency", "1"]);
    cluster.worker("good", &["--capability", "check", "--concurrency", "1"]);
    std::fs::write(cluster.workdir("good").join("ok"), "").unwrap();
    let mut spec = String::from("name: breaker\ntasks:\n");
    for index in 0..12 {
        spec.push_str(&format!(
            "  t{index}:\n    run: test -f ok\n    runs_on: {{capability: check}}\n    retry: {{max_attempts: 8, initial: 10ms}}\n"
        ));
    }
    let report = cluster.report(&spec, &[]);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let bad = cluster.agent("bad");
    assert_eq!(
        bad["failed"], 3,
        "no work after its breaker opened: {bad:#}"
    );
    assert_eq!(bad["succeeded"], 0);
    assert_eq!(bad["breaker"]["state"], "open", "{bad:#}");
    assert_eq!(bad["status"], "unhealthy");
    assert_eq!(cluster.agent("good")["succeeded"], 12);
    cluster.wait_for(|agents| {
        agents
            .iter()
            .any(|agent| agent["name"] == "bad" && agent["breaker"]["state"] == "half_open")
    });
    // A probe goes through; failing, it opens the breaker again.
    let probe = "name: probe\ntasks:\n  p: {run: test -f ok, runs_on: {capability: check}, retry: {max_attempts: 3, initial: 10ms}}\n";
    let mut probed = false;
    for _ in 0..5 {
        let report = cluster.report(probe, &[]);
        assert_eq!(report["status"], "succeeded");
        if cluster.agent("bad")["failed"] == 4 {
            probed = true;
            break;
        }
    }
    assert!(probed, "the half-open breaker let a probe through");
    assert_eq!(cluster.agent("bad")["breaker"]["state"], "open");
}

#[test]
fn a_worker_asked_to_stop_finishes_what_it_runs_and_leaves() {
    let mut cluster = Cluster::start(FAST);
    let worker = cluster.worker("leaving", &["--capability", "build"]);
    let spec = "name: drain\ntasks:\n  slow:\n    run: touch started && sleep 1 && echo done\n    runs_on: {capability: build}\n";
    let run = cluster.run(spec, &[]);
    wait_for_file(&cluster.workdir("leaving").join("started"));
    let pid = nix::unistd::Pid::from_raw(cluster.workers[worker].id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let report = report_of(run);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let output = cluster.workers.remove(worker).wait_with_output().unwrap();
    assert!(output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("stopped after 1 succeeded, 0 failed, 0 handed back"),
        "{said}"
    );
    cluster.wait_for(|agents| agents.iter().all(|agent| agent["name"] != "leaving"));
    let logs = baton()
        .args(["--server", &cluster.url(), "--key", &cluster.runner, "logs"])
        .arg(report["run_id"].as_str().unwrap())
        .arg("slow")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("done"),
        "the worker uploaded its logs: {}",
        String::from_utf8_lossy(&logs.stdout)
    );
}

#[test]
fn an_agent_task_is_answered_by_a_worker_s_command_and_a_task_with_no_worker_says_it_waits() {
    let mut cluster = Cluster::start(FAST);
    let agent = crate::util::workspace().join("examples/agents/review.py");
    cluster.worker(
        "reviewer",
        &[
            "--capability",
            "review",
            "--",
            "python3",
            agent.to_str().unwrap(),
        ],
    );
    let spec = "name: agent\ntasks:\n  review:\n    agent: {capability: review, prompt: 'Is this fine?', input: {size: 10}}\n";
    let report = cluster.report(spec, &[]);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let review = task(&report, "review");
    assert_eq!(review["output"]["verdict"], "approve");
    assert_eq!(report["metrics"]["usage"]["tokens"], 9, "{report:#}");

    let waits = "name: waits\ntasks:\n  gpu:\n    run: true\n    runs_on: {capability: gpu}\n    timeout: 2s\n";
    let run = cluster.run(waits, &[]);
    let output = run.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("gpu: waiting for a worker with capability `gpu`"),
        "{said}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["status"], "failed", "bounded by the task's timeout");
    assert_eq!(task(&report, "gpu")["status"], "timed_out");
}

/// The whole lines of `path` once it has at least `count` (waiting up to
/// 60 s); a line still being written is not one yet.
fn lines_when(path: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<String> = whole.lines().map(str::to_owned).collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "only {} lines in {}",
            lines.len(),
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_small_fairness_key_makes_progress_beside_a_big_one_from_the_start() {
    let mut cluster = Cluster::start(FAST);
    cluster.worker("one", &["--capability", "queue", "--concurrency", "1"]);
    let order = cluster.dir.path().join("order");
    let mut tasks = serde_json::Map::new();
    for (key, count) in [("big", 1000), ("small", 10)] {
        for index in 0..count {
            tasks.insert(
                format!("{key}{index:04}"),
                json!({
                    "run": "echo \"$BATON_TASK_ID\" >> \"$ORDER\"",
                    "env": {"ORDER": order.to_str().unwrap()},
                    "runs_on": {"capability": "queue", "fairness_key": key},
                }),
            );
        }
    }
    let spec = json!({"name": "fair", "tasks": tasks}).to_string();
    let mut run = cluster.run(&spec, &[]);
    let first = lines_when(&order, 30);
    let smalls: Vec<usize> = first
        .iter()
        .take(30)
        .enumerate()
        .filter(|(_, task)| task.starts_with("small"))
        .map(|(position, _)| position)
        .collect();
    assert_eq!(
        smalls.len(),
        10,
        "every small task ran among the first 30: {first:?}"
    );
    assert!(
        first
            .iter()
            .take(30)
            .filter(|task| task.starts_with("big"))
            .count()
            >= 10
    );
    let _ = run.kill();
    let _ = run.wait();
}

#[test]
fn a_rate_limited_fairness_key_starts_no_more_than_its_rate() {
    let mut cluster = Cluster::start(&format!("{FAST}[workers.rates]\nslow = 5\n"));
    cluster.worker("one", &["--capability", "queue", "--concurrency", "100"]);
    let starts = cluster.dir.path().join("starts");
    let mut tasks = serde_json::Map::new();
    for index in 0..60 {
        tasks.insert(
            format!("t{index:02}"),
            json!({
                "run": "date +%s.%N >> \"$STARTS\"",
                "env": {"STARTS": starts.to_str().unwrap()},
                "runs_on": {"capability": "queue", "fairness_key": "slow"},
            }),
        );
    }
    let report = cluster.report(&json!({"name": "rated", "tasks": tasks}).to_string(), &[]);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let times: Vec<f64> = lines_when(&starts, 60)
        .iter()
        .map(|line| line.parse().unwrap())
        .collect();
    let first = times.iter().copied().fold(f64::INFINITY, f64::min);
    let within = times.iter().filter(|time| **time < first + 10.0).count();
    // A second's worth at once, then 5 a second: at most 5 + 50 in 10 s.
    assert!(within <= 56, "{within} started in the first 10 s");
    assert!(within >= 40, "the rate is the limit, not a stall: {within}");
}

#[test]
fn artifacts_travel_from_a_worker_to_the_tasks_that_need_them() {
    let mut cluster = Cluster::start(FAST);
    cluster.worker("maker", &["--capability", "make"]);
    cluster.worker("user", &["--capability", "use"]);
    let spec = json!({"name": "files", "tasks": {
        "make": {
            "run": "mkdir -p dist && echo 'built on the maker' > dist/app.txt",
            "runs_on": {"capability": "make"},
            "artifacts": ["dist/app.txt"],
        },
        "use": {
            "needs": ["make"],
            "run": "printf '{\"read\": \"%s\", \"dir\": \"%s\"}' \"$(cat dist/app.txt)\" \"$PWD\" > \"$BATON_OUTPUT\"",
            "runs_on": {"capability": "use"},
        },
        "here": {
            "needs": ["make"],
            "run": "printf '{\"read\": \"%s\"}' \"$(cat dist/app.txt)\" > \"$BATON_OUTPUT\"",
        },
    }})
    .to_string();
    let report = cluster.report(&spec, &[]);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    assert_eq!(task(&report, "use")["output"]["read"], "built on the maker");
    assert_eq!(ran_in(&report, "use"), "user");
    assert_eq!(
        task(&report, "here")["output"]["read"],
        "built on the maker"
    );
    let made = &task(&report, "make")["artifacts"][0];
    assert_eq!(made["path"], "dist/app.txt", "{report:#}");
    assert!(
        !cluster
            .workdir("maker")
            .join(".baton/worker")
            .read_dir()
            .unwrap()
            .any(|entry| entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".files")),
        "the worker keeps no copy once uploaded"
    );
}
