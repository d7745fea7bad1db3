//! `agent` tasks served by an OpenAI-compatible chat endpoint named in
//! baton.toml, against a small server in the test that speaks that API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::util::{baton, lines, task};

/// Each request's body, `Authorization` header and arrival, in order.
type Requests = Arc<Mutex<Vec<(Value, String, std::time::Instant)>>>;

/// Serves `POST /v1/chat/completions`, keeping each request's body and
/// bearer key: a reply saying how long the user's message was, or, when a
/// schema is asked for, that as JSON in a code fence. 1,000 prompt and 200
/// completion tokens each.
fn chat_server() -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let (mut length, mut key) = (0, String::new());
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "authorization" => key = value.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request: Value = serde_json::from_slice(&body).unwrap();
            let said = request["messages"][0]["content"]
                .as_str()
                .unwrap_or("")
                .len();
            let content = if request.get("response_format").is_some() {
                format!("```json\n{{\"length\": {said}}}\n```")
            } else {
                format!("a message of {said} bytes")
            };
            kept.lock()
                .unwrap()
                .push((request, key, std::time::Instant::now()));
            let answer = json!({
                "model": "test-model-1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200},
            })
            .to_string();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
        }
    });
    (address, seen)
}

const SPEC: &str = r#"
name: review
inputs:
  text: { type: string }
tasks:
  summarize:
    agent:
      capability: summarize
      prompt: "Summarize this in one line."
      input: { text: "{{ inputs.text }}" }
  measure:
    needs: [summarize]
    agent:
      capability: summarize
      prompt: "How long was the summary: {{ tasks.summarize.output.reply }}"
      schema: { type: object, properties: { length: { type: integer } }, required: [length] }
"#;

#[test]
fn agent_tasks_ask_the_configured_endpoint_and_their_usage_is_totalled() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, seen) = chat_server();
    std::fs::write(
        dir.path().join("baton.toml"),
        format!(
            "[agents.summarize]\nbase_url = \"{endpoint}\"\nmodel = \"small\"\napi_key_env = \"TEST_AGENT_KEY\"\nprompt_cost_per_million = 1.0\ncompletion_cost_per_million = 5.0\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("review.yaml"), SPEC).unwrap();
    let output = baton()
        .current_dir(dir.path())
        .env("TEST_AGENT_KEY", "sk-test")
        .args([
            "run",
            "review.yaml",
            "-i",
            "text=the quick brown fox",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report = lines(&output).pop().unwrap();
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let summary = &task(&report, "summarize")["output"];
    let asked = "Summarize this in one line.\n\nInput (JSON):\n{\"text\":\"the quick brown fox\"}";
    assert_eq!(
        summary["reply"],
        format!("a message of {} bytes", asked.len())
    );
    assert_eq!(summary["model"], "test-model-1");
    let second_prompt = format!(
        "How long was the summary: {}",
        summary["reply"].as_str().unwrap()
    );
    assert_eq!(
        task(&report, "measure")["output"]["reply"]["length"],
        second_prompt.len(),
        "the schema's reply, read as JSON out of its code fence"
    );
    assert_eq!(report["metrics"]["usage"]["tokens"], 2400);
    assert_eq!(report["metrics"]["usage"]["cost"], 0.004);

    let requests = seen.lock().unwrap();
    assert_eq!(requests.len(), 2);
    let (first, key, _) = &requests[0];
    assert_eq!(key, "Bearer sk-test");
    assert_eq!(first["model"], "small");
    assert_eq!(first["messages"][0]["content"], asked);
    let (second, _, _) = &requests[1];
    assert_eq!(
        second["response_format"]["json_schema"]["schema"]["required"],
        json!(["length"])
    );
}

#[test]
fn an_unset_api_key_variable_fails_the_task_saying_which() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, seen) = chat_server();
    std::fs::write(
        dir.path().join("baton.toml"),
        format!(
            "[agents.summarize]\nbase_url = \"{endpoint}\"\nmodel = \"small\"\napi_key_env = \"TEST_AGENT_KEY_UNSET\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("review.yaml"), SPEC).unwrap();
    let output = baton()
        .current_dir(dir.path())
        .env_remove("TEST_AGENT_KEY_UNSET")
        .args(["run", "review.yaml", "-i", "text=x", "--json"])
        .assert()
        .failure()
        .get_output()
        .stdout
        .clone();
    let report = lines(&output).pop().unwrap();
    let note = task(&report, "summarize")["note"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        note.contains("$TEST_AGENT_KEY_UNSET, which is not set"),
        "{note}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing was sent without the key"
    );
}

#[test]
fn baton_agents_lists_what_the_settings_serve() {
    let dir = tempfile::tempdir().unwrap();
    let listed = |dir: &std::path::Path| {
        let output = baton()
            .current_dir(dir)
            .args(["agents", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice::<Value>(&output).unwrap()
    };
    assert_eq!(listed(dir.path()), json!([]));
    std::fs::write(
        dir.path().join("baton.toml"),
        "[agents.review]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n",
    )
    .unwrap();
    let agents = listed(dir.path());
    assert_eq!(agents[0]["id"], "chat:review");
    assert_eq!(agents[0]["capabilities"], json!(["review"]));
    assert_eq!(
        agents[0]["breaker"],
        json!({"state": "closed", "failing": 0})
    );
}

#[test]
fn an_endpoint_s_rate_limit_spaces_the_calls_of_parallel_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, seen) = chat_server();
    std::fs::write(
        dir.path().join("baton.toml"),
        format!(
            "[agents.summarize]\nbase_url = \"{endpoint}\"\nmodel = \"m\"\nrate_per_second = 10\n"
        ),
    )
    .unwrap();
    let mut spec = String::from("name: many\ntasks:\n");
    for task in 0..6 {
        spec.push_str(&format!(
            "  t{task}: {{agent: {{capability: summarize, prompt: p{task}}}}}\n"
        ));
    }
    std::fs::write(dir.path().join("many.yaml"), spec).unwrap();
    baton()
        .current_dir(dir.path())
        .args(["run", "many.yaml"])
        .assert()
        .success();
    let requests = seen.lock().unwrap();
    assert_eq!(requests.len(), 6);
    // At 10 per second the second to the sixth call leave 0.4 s apart;
    // unlimited, they would arrive within milliseconds. The bound is a
    // floor a slow machine only raises; its margin is for connection times
    // that differ between calls.
    let span = requests[5].2 - requests[1].2;
    assert!(span >= std::time::Duration::from_millis(250), "{span:?}");
}
