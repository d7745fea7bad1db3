use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

pub(crate) fn baton() -> Command {
    let mut command = Command::cargo_bin("baton").expect("the baton binary is built");
    command.env("NO_COLOR", "1");
    command
}

/// The workspace root, where `examples/` and `schema/` live.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Whether `pid` still runs (a zombie has stopped running).
pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Whether `pid` stops running within a few seconds: a signalled process
/// that is not ours to reap finishes exiting on the kernel's time.
pub(crate) fn stops(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alive(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

pub(crate) fn specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs")
}

/// Waits until `path` exists: a task's way of saying it got somewhere.
pub(crate) fn wait_for_file(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `baton run` in a fresh directory holding a copy of `examples/`.
pub(crate) fn run_in(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    let examples = dir.join("examples");
    if !examples.exists() {
        copy_dir(&workspace().join("examples"), &examples);
    }
    baton().current_dir(dir).arg("run").args(args).assert()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, target).unwrap();
        }
    }
}

/// The report of a `baton run ... --json` in `dir` (see [`run_in`]) that
/// must succeed.
pub(crate) fn report_of(dir: &Path, args: &[&str]) -> Value {
    let output = run_in(dir, args).success().get_output().stdout.clone();
    lines(&output).pop().expect("a report line")
}

/// The JSON lines of a `--json` run; the last is the report.
pub(crate) fn lines(output: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

pub(crate) fn task<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|task| task["id"] == id)
        .unwrap()
}

/// Waits for `future` on a runtime of its own: how these tests, which drive
/// the real binary, read the store it left.
pub(crate) fn block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// One HTTP/1.1 exchange with a server on `address` (no key); the status
/// and the body as JSON (`null` when it is not JSON).
pub(crate) fn http(address: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, body) = exchange(address, None, (method, path), body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// One HTTP/1.1 exchange with `key`; the status and body.
pub(crate) fn request(
    address: &str,
    key: &str,
    (method, path): (&str, &str),
    body: Option<&Value>,
) -> (u16, String) {
    exchange(address, Some(key), (method, path), body)
}

fn exchange(
    address: &str,
    key: Option<&str>,
    (method, path): (&str, &str),
    body: Option<&Value>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let authorization = key
        .map(|key| format!("Authorization: Bearer {key}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The lines a child prints, as they come.
pub(crate) fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            if send.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    receive
}

/// A `baton serve` process, killed when dropped: a failing test leaves no
/// server behind.
pub(crate) struct Served(pub(crate) std::process::Child);

impl std::ops::Deref for Served {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `baton serve` on a free port in `dir` with `args` and `env` added; the
/// process and its address (`127.0.0.1:PORT`).
pub(crate) fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Served, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("baton serving on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (Served(child), address)
}

/// An API key of `scope` made with `baton keys create` in `dir`.
pub(crate) fn key(dir: &Path, scope: &str) -> String {
    let output = baton()
        .current_dir(dir)
        .args(["keys", "create", "--name", "test", "--scope", scope])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A schema of its own in the PostgreSQL database `BATON_TEST_PG` names,
/// dropped with this value; none (said loudly) without one.
pub(crate) struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    pub(crate) fn new() -> Option<PgSchema> {
        let Ok(base) = std::env::var("BATON_TEST_PG") else {
            eprintln!(
                "SKIPPED: BATON_TEST_PG is not set (`.ci/run` sets it and starts PostgreSQL)"
            );
            return None;
        };
        let schema = PgSchema {
            name: format!("t_{}", std::process::id()) + &nanos(),
            base,
        };
        schema.execute(&format!("CREATE SCHEMA {}", schema.name));
        Some(schema)
    }

    /// The URL a `baton` process records into this schema with.
    pub(crate) fn url(&self) -> String {
        format!("{}?options=-c%20search_path%3D{}", self.base, self.name)
    }

    fn execute(&self, statement: &str) {
        block(async {
            let (client, connection) = tokio_postgres::connect(&self.base, tokio_postgres::NoTls)
                .await
                .expect("BATON_TEST_PG accepts connections");
            tokio::spawn(connection);
            client.batch_execute(statement).await.unwrap();
        });
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        self.execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

fn nanos() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("_{}", now.as_nanos())
}
