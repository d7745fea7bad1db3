//! `mcp` tasks against the reference server, `@modelcontextprotocol/
//! server-everything` from npm (`.ci/run` installs it and names it in
//! `BATON_TEST_MCP_EVERYTHING`).

use baton_core::run::RunStatus;
use serde_json::json;

use crate::util::{engine, run};

/// The reference server's program, or `None` (said loudly) when this
/// machine has not installed it.
fn everything() -> Option<String> {
    match std::env::var("BATON_TEST_MCP_EVERYTHING") {
        Ok(program) if !program.is_empty() => Some(program),
        _ => {
            eprintln!(
                "SKIPPED: BATON_TEST_MCP_EVERYTHING is not set (`.ci/run` installs the MCP reference server and sets it)"
            );
            None
        }
    }
}

#[tokio::test]
async fn a_tool_call_hands_back_its_structured_result_or_its_text() {
    let Some(server) = everything() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        r#"
name: tools
inputs:
  city: {{ type: string, default: Chicago }}
tasks:
  weather:
    mcp:
      server: {{ command: ["{server}"] }}
      tool: get-structured-content
      arguments: {{ location: "{{{{ inputs.city }}}}" }}
  echo:
    needs: [weather]
    mcp:
      server: {{ command: ["{server}"] }}
      tool: echo
      arguments: {{ message: "it is {{{{ tasks.weather.output.conditions }}}}" }}
"#
    );
    let report = run(&engine(dir.path()), &spec).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        report.task("weather").unwrap().output,
        Some(json!({"temperature": 36, "conditions": "Light rain / drizzle", "humidity": 82}))
    );
    let echo = report.task("echo").unwrap().output.clone().unwrap();
    assert_eq!(echo["text"], "Echo: it is Light rain / drizzle");
}

#[tokio::test]
async fn a_tool_error_or_an_unknown_tool_fails_the_attempt_with_the_servers_words() {
    let Some(server) = everything() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        r#"
name: broken
on_failure: continue
tasks:
  unknown:
    mcp:
      server: {{ command: ["{server}"] }}
      tool: no-such-tool
  bad:
    mcp:
      server: {{ command: ["{server}"] }}
      tool: get-structured-content
      arguments: {{ location: Atlantis }}
  missing:
    mcp:
      server: {{ command: ["/nonexistent/mcp-server"] }}
      tool: echo
"#
    );
    let report = run(&engine(dir.path()), &spec).await;
    assert_eq!(report.status, RunStatus::Failed);
    for task in ["unknown", "bad", "missing"] {
        let task = report.task(task).unwrap();
        assert_eq!(task.status.name(), "failed", "{task:#?}");
    }
    let note = |id: &str| report.task(id).unwrap().note.clone().unwrap_or_default();
    assert!(
        note("unknown").contains("no-such-tool"),
        "{}",
        note("unknown")
    );
    assert!(
        note("bad").contains("get-structured-content"),
        "{}",
        note("bad")
    );
    assert!(
        note("missing").contains("cannot start the MCP server"),
        "{}",
        note("missing")
    );
}
