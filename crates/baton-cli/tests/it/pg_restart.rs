//! A PostgreSQL server restarted in the middle of runs: the runs wait for
//! it and go on, and nothing is lost. The server is a private one (its own
//! data directory and port, made with `initdb` and restarted with
//! `pg_ctl restart`), so the tests sharing `BATON_TEST_PG` are not cut off.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{baton, request, serve};

/// A PostgreSQL server of this test's own, stopped when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// None (said loudly) where PostgreSQL's programs are not installed.
    fn start() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .find(|bin| bin.join("pg_ctl").exists());
        let Some(bin) = bin else {
            eprintln!("SKIPPED: no PostgreSQL programs under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut server = PrivatePostgres {
            bin,
            data,
            port: 0,
            _dir: dir,
        };
        // PostgreSQL will not run as root: as root, its own user runs it.
        if is_root() {
            let owned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server._dir.path())
                .status()
                .unwrap();
            assert!(owned.success());
        }
        server.pg(
            "initdb",
            &[
                "-D",
                path(&server.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        // A free port can be taken by another test between being found and
        // being listened on: a start that fails is tried on another.
        for _ in 0..3 {
            server.port = free_port();
            if server.try_ctl("start").status.success() {
                return Some(server);
            }
        }
        let log =
            std::fs::read_to_string(server._dir.path().join("server.log")).unwrap_or_default();
        panic!("PostgreSQL did not start three times; its log:\n{log}");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn ctl(&self, action: &str) {
        let output = self.try_ctl(action);
        assert!(output.status.success(), "pg_ctl {action}: {output:?}");
    }

    fn try_ctl(&self, action: &str) -> std::process::Output {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            path(self._dir.path())
        );
        let log = self._dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                action,
                "-D",
                path(&self.data),
                "-m",
                "fast",
                "-w",
                "-l",
                path(&log),
                "-o",
                &options,
            ],
        )
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let output = self.run(program, args);
        assert!(output.status.success(), "{program} {args:?}: {output:?}");
    }

    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let program = self.bin.join(program);
        if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.ctl("stop"));
    }
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Whether this process runs as root (`/proc/self` belongs to its user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

#[test]
fn runs_wait_out_a_postgres_restart_and_finish_with_nothing_lost() {
    let Some(postgres) = PrivatePostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = postgres.url();
    let output = baton()
        .current_dir(dir.path())
        .args([
            "keys", "create", "--name", "t", "--scope", "execute", "--store", &url,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let (_server, address) = serve(dir.path(), &["--store", &url], &[]);
    let log = dir.path().join("effects.log");
    let step = format!(
        "echo \"$BATON_RUN_ID $BATON_TASK_ID $BATON_ATTEMPT\" >> {}; sleep 0.3",
        log.display()
    );
    let tasks: serde_json::Map<String, Value> = (0..5)
        .map(|index| {
            let mut task = json!({"run": step});
            if index > 0 {
                task["needs"] = json!([format!("t{}", index - 1)]);
            }
            (format!("t{index}"), task)
        })
        .collect();
    let spec = json!({"name": "through-a-restart", "tasks": tasks}).to_string();
    let runs: Vec<String> = (0..10)
        .map(|_| {
            let (status, body) = request(
                &address,
                &key,
                ("POST", "/api/v1/runs"),
                Some(&json!({"spec": spec})),
            );
            assert_eq!(status, 201, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    postgres.ctl("restart");

    let deadline = Instant::now() + Duration::from_secs(120);
    for run in &runs {
        loop {
            let (status, body) = request(
                &address,
                &key,
                ("GET", &format!("/api/v1/runs/{run}")),
                None,
            );
            // While the server was away a read may fail; the run goes on.
            let shown: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && shown["status"] == "succeeded" {
                for task in shown["tasks"].as_array().unwrap() {
                    assert_eq!(task["attempts"], 1, "{run}: a task ran again: {shown}");
                }
                break;
            }
            assert!(
                !matches!(shown["status"].as_str(), Some("failed" | "cancelled")),
                "{shown}"
            );
            assert!(
                Instant::now() < deadline,
                "run {run} never finished: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let verified = baton()
            .current_dir(dir.path())
            .args(["verify", run, "--store", &url])
            .output()
            .unwrap();
        assert!(verified.status.success(), "{verified:?}");
    }
    let effects = std::fs::read_to_string(&log).unwrap();
    assert_eq!(effects.lines().count(), runs.len() * 5, "{effects}");
}
