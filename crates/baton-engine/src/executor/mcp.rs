//! `mcp` tasks: one tool call on a Model Context Protocol server, through
//! `rmcp`, the protocol's Rust SDK. A `command` server is started for the
//! call in the task's directory (carrying the attempt's
//! `BATON_IDEMPOTENCY_KEY`, so a resume finds it if this process dies) and
//! stopped after; its stderr goes to the attempt's stderr log. A `url`
//! server is spoken to over Streamable HTTP. The tool's structured result
//! is the output (its text when it has none); a tool error fails the
//! attempt with the tool's message.

use std::process::Stdio;

use async_trait::async_trait;
use baton_core::run::{Failure, FailureKind, McpCall, Work};
use baton_core::spec::McpServer;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};

use super::job::{Attempt, Executor, Kill, Outcome, bounded};
use super::process::copy_log;
use crate::logs::{STDERR_FILE, attempt_file};

/// Runs `mcp` tasks.
#[derive(Clone, Copy)]
pub(crate) struct Mcp;

#[async_trait]
impl Executor for Mcp {
    async fn execute(&self, attempt: Attempt, kill: Kill) -> Outcome {
        let Work::Mcp(call) = &attempt.resolved.work else {
            return Outcome::Failed(error("only `mcp` tasks call MCP tools"));
        };
        bounded(run(&attempt, call), attempt.timeout, kill).await
    }
}

async fn run(attempt: &Attempt, call: &McpCall) -> Outcome {
    match &call.server {
        McpServer::Command { command } => {
            let Some((program, arguments)) = command.split_first() else {
                return Outcome::Failed(error("the MCP server's command is empty"));
            };
            let mut process = tokio::process::Command::new(program);
            process
                .args(arguments)
                .current_dir(attempt.working_dir())
                .envs(
                    attempt
                        .resolved
                        .env
                        .iter()
                        .map(|(name, value)| (name, value)),
                )
                .env("BATON_RUN_ID", &attempt.context.run_id)
                .env("BATON_TASK_ID", &attempt.context.task_id)
                .env("BATON_IDEMPOTENCY_KEY", &attempt.context.idempotency_key)
                .kill_on_drop(true);
            let spawned = TokioChildProcess::builder(process)
                .stderr(Stdio::piped())
                .spawn();
            let (transport, stderr) = match spawned {
                Ok(spawned) => spawned,
                Err(failure) => {
                    return Outcome::Failed(error(format!(
                        "cannot start the MCP server `{program}`: {failure}"
                    )));
                }
            };
            let log = copy_log(stderr, attempt_file(&attempt.prefix, STDERR_FILE));
            let (outcome, ()) = tokio::join!(ask(().serve(transport).await, call), log);
            outcome
        }
        McpServer::Url { url } => {
            let transport = StreamableHttpClientTransport::from_uri(url.as_str());
            ask(().serve(transport).await, call).await
        }
    }
}

/// Calls the tool on a connected server, then closes the connection (which
/// ends a started server).
async fn ask<E: std::fmt::Display>(
    connected: Result<RunningService<rmcp::RoleClient, ()>, E>,
    call: &McpCall,
) -> Outcome {
    let client = match connected {
        Ok(client) => client,
        Err(failure) => {
            return Outcome::Failed(error(format!(
                "the MCP server did not start a session: {failure}"
            )));
        }
    };
    let asked =
        CallToolRequestParams::new(call.tool.clone()).with_arguments(call.arguments.clone());
    let answered = client.call_tool(asked).await;
    let _ = client.cancel().await;
    match answered {
        Ok(result) => outcome(&call.tool, result),
        Err(failure) => Outcome::Failed(error(format!(
            "calling tool `{}` failed: {failure}",
            call.tool
        ))),
    }
}

/// The attempt's end from the tool's result.
fn outcome(tool: &str, result: CallToolResult) -> Outcome {
    let text = result
        .content
        .iter()
        .filter_map(|content| content.as_text())
        .map(|content| content.text.as_str())
        .collect::<Vec<&str>>()
        .join("\n");
    if result.is_error == Some(true) {
        return Outcome::Failed(error(format!("tool `{tool}` failed: {text}")));
    }
    Outcome::Succeeded(Some(match result.structured_content {
        Some(structured) => structured,
        None => json!({
            "text": text,
            "content": serde_json::to_value(&result.content).unwrap_or(Value::Null),
        }),
    }))
}

fn error(message: impl Into<String>) -> Failure {
    Failure::new(FailureKind::Error, message)
}
