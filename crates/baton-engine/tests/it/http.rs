//! `http` tasks against a small HTTP/1.1 server on a local port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use baton_core::run::RunStatus;
use serde_json::json;

use crate::util::{engine, run};

/// Serves `/echo` (the request as JSON), `/flaky` (503 twice, then 200),
/// `/big` (a 100 KB JSON array), `/to-metadata` (a redirect to the cloud
/// metadata address) and anything else as 404, one connection at a time, until the test ends.
pub(crate) fn serve() -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let flaky = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&flaky);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0;
            let mut token = String::new();
            let mut traceparent = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "x-token" => token = value.trim().to_owned(),
                    "traceparent" => traceparent = value.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
            if path == "/to-metadata" {
                let _ = write!(
                    stream,
                    "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                continue;
            }
            let (status, reply) = match path {
                "/echo" => (
                    200,
                    json!({
                        "method": method,
                        "token": token,
                        "traceparent": traceparent,
                        "body": serde_json::from_slice::<serde_json::Value>(&body).ok(),
                    })
                    .to_string(),
                ),
                "/flaky" if counter.fetch_add(1, Ordering::SeqCst) < 2 => (503, "busy".to_owned()),
                "/flaky" => (200, "{\"ok\": true}".to_owned()),
                "/big" => (200, format!("[{}1]", "1,".repeat(50_000))),
                _ => (404, "no such page".to_owned()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (address, flaky)
}

#[tokio::test]
async fn a_response_becomes_the_output_and_request_fields_are_templates() {
    let dir = tempfile::tempdir().unwrap();
    let (address, _) = serve();
    let spec = format!(
        r#"
name: http
tasks:
  id:
    run: |
      echo '{{"sha": "abc", "n": 2}}' > "$BATON_OUTPUT"
  post:
    needs: [id]
    http:
      method: POST
      url: "{address}/echo"
      headers: {{X-Token: "t-{{{{ tasks.id.output.sha }}}}"}}
      json: {{sha: "{{{{ tasks.id.output.sha }}}}", n: "{{{{ tasks.id.output.n }}}}"}}
"#
    );
    let report = run(&engine(dir.path()), &spec).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let output = report.task("post").unwrap().output.clone().unwrap();
    assert_eq!(output["status"], 200);
    assert_eq!(output["headers"]["content-type"], "application/json");
    use baton_core::run::trace_context::{attempt_span_id, trace_id, traceparent};
    let run = &report.run_id;
    assert_eq!(
        output["json"],
        json!({
            "method": "POST",
            "token": "t-abc",
            // The request carries the attempt's span as its parent.
            "traceparent": traceparent(trace_id(run), attempt_span_id(run, "post", 1)),
            "body": {"sha": "abc", "n": 2}
        })
    );
}

#[tokio::test]
async fn server_errors_are_retried_when_the_policy_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let (address, calls) = serve();
    let spec = format!(
        "name: h\non_failure: continue\ntasks:\n  flaky:\n    http: {{url: \"{address}/flaky\"}}\n    retry: {{max_attempts: 3, initial: 0s, on: ['http:5xx']}}\n  missing:\n    http: {{url: \"{address}/nope\"}}\n    retry: {{max_attempts: 3, initial: 0s, on: ['http:5xx']}}\n"
    );
    let report = run(&engine(dir.path()), &spec).await;
    let flaky = report.task("flaky").unwrap();
    assert_eq!((flaky.status.name(), flaky.attempts), ("succeeded", 3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let missing = report.task("missing").unwrap();
    assert_eq!((missing.status.name(), missing.attempts), ("failed", 1));
    assert!(
        missing
            .note
            .as_deref()
            .unwrap()
            .ends_with("answered HTTP 404")
    );
}

#[tokio::test]
async fn a_response_body_over_max_output_fails_the_task_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let (address, _) = serve();
    let engine = baton_engine::Engine::new(baton_engine::EngineConfig {
        max_output: 10_000,
        ..crate::util::config(dir.path())
    });
    let report = run(
        &engine,
        &format!(
            r#"
name: big-answer
tasks:
  fetch:
    http: {{url: "{address}/big"}}
"#
        ),
    )
    .await;
    let fetch = report.task("fetch").unwrap();
    assert_eq!(fetch.status.name(), "failed", "{report:#?}");
    let note = fetch.note.as_deref().unwrap();
    assert!(
        note.starts_with(&format!(
            "the response body of {address}/big is larger than max_output (10000 bytes)"
        )),
        "{note}"
    );
}

#[tokio::test]
async fn a_host_that_keeps_failing_opens_its_breaker_and_later_calls_are_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let (address, calls) = serve();
    let engine = baton_engine::Engine::new(baton_engine::EngineConfig {
        breaker: baton_engine::BreakerSettings {
            failures: 2,
            cool_down: baton_core::Duration::from_secs(3600),
            probes: 1,
        },
        ..crate::util::config(dir.path())
    });
    let spec = format!(
        r#"
name: breaker
on_failure: continue
tasks:
  first: {{http: {{url: "{address}/flaky"}}}}
  second: {{http: {{url: "{address}/flaky"}}, needs: [{{task: first, condition: always}}]}}
  third: {{http: {{url: "{address}/flaky"}}, needs: [{{task: second, condition: always}}]}}
"#
    );
    let report = run(&engine, &spec).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the third call was not made"
    );
    let third = report.task("third").unwrap();
    assert_eq!(third.status.name(), "failed");
    let note = third.note.clone().unwrap_or_default();
    assert!(
        note.contains("circuit breaker for http://127.0.0.1:")
            && note.contains("the call was not made"),
        "{note}"
    );
}

#[tokio::test]
async fn cloud_metadata_addresses_are_refused_written_in_the_url_or_reached_by_a_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let (address, _) = serve();
    let spec = format!(
        "name: ssrf\non_failure: continue\ntasks:\n  direct: {{http: {{url: 'http://169.254.169.254/latest/meta-data/'}}}}\n  bounced: {{http: {{url: '{address}/to-metadata'}}}}\n  allowed: {{http: {{url: '{address}/echo'}}}}\n"
    );
    let report = run(&engine(dir.path()), &spec).await;
    for task in ["direct", "bounced"] {
        let failure = report.task(task).unwrap().note.clone().unwrap_or_default();
        assert!(
            failure.contains("link-local or cloud metadata address"),
            "{task}: {}",
            failure
        );
    }
    assert_eq!(
        report.task("allowed").unwrap().status,
        baton_core::run::TaskStatus::Succeeded,
        "other addresses, loopback included, are reached"
    );
}

#[tokio::test]
async fn allow_link_local_lets_tasks_ask_metadata_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let engine = baton_engine::Engine::new(baton_engine::EngineConfig {
        allow_link_local: true,
        ..crate::util::config(dir.path())
    });
    // Nothing answers there on this machine: the request is made and
    // times out, instead of being refused.
    let spec =
        "name: allowed\ntasks:\n  direct: {http: {url: 'http://169.254.169.254/'}, timeout: 1s}\n";
    let report = run(&engine, spec).await;
    let failure = report
        .task("direct")
        .unwrap()
        .note
        .clone()
        .unwrap_or_default();
    assert!(!failure.contains("metadata address"), "{}", failure);
}
