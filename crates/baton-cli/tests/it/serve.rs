//! `baton serve` as a user runs it: started, killed with SIGKILL, started
//! again, with the runs it drove carried through.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::util::{stops, wait_for_file};

/// `baton serve` on a free port in `dir`; the process and its address.
fn serve(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("baton serving on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (child, address)
}

/// One HTTP/1.1 exchange; the status and body.
fn request(address: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

#[test]
fn runs_started_through_the_api_survive_a_killed_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, address) = serve(dir.path());
    // The first attempt leaves its pid and hangs; the second finishes.
    let spec = "name: durable\ntasks:\n  hang:\n    run: |\n      if [ \"$BATON_ATTEMPT\" = 1 ]; then echo $$ > first.pid; sleep 300; fi\n  after: {needs: [hang], run: echo after}\n";
    let (status, body) = request(
        &address,
        "POST",
        "/api/v1/runs",
        Some(&json!({"spec": spec})),
    );
    assert_eq!(status, 201, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    let run = run["run_id"].as_str().unwrap().to_owned();
    wait_for_file(&dir.path().join("first.pid"));
    let orphan: i32 = std::fs::read_to_string(dir.path().join("first.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    first.kill().unwrap();
    first.wait().unwrap();
    let (mut second, address) = serve(dir.path());
    // The event stream ends with the run; it is read from the store.
    let (status, events) = request(&address, "GET", &format!("/api/v1/runs/{run}/events"), None);
    assert_eq!(status, 200);
    assert!(events.contains("event: run_finished"), "{events}");
    let (_, shown) = request(&address, "GET", &format!("/api/v1/runs/{run}"), None);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["tasks"][0]["attempts"], 2);
    assert_eq!(shown["tasks"][1]["attempts"], 1);
    assert!(stops(orphan), "the dead server's attempt was left running");
    second.kill().unwrap();
    second.wait().unwrap();
}
