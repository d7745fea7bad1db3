//! `baton --server URL run FILE`: the spec goes to a server, which runs
//! it (its `runs_on` and agent tasks on the server's workers); this waits
//! for the run to end and prints what `baton run` prints at the end.

use std::process::ExitCode;
use std::time::Duration;

use baton_engine::RunReport;
use serde_json::{Value, json};

use crate::remote::Remote;
use crate::spec_file::SpecFile;

/// How often the run is looked at while it goes on.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Starts `file` on the server and follows the run to its end.
pub(crate) async fn submit(
    remote: &Remote,
    file: &SpecFile,
    inputs: &[(String, String)],
    labels: &[(String, String)],
    concurrency: Option<u32>,
    timeout: Option<baton_core::Duration>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let inputs: serde_json::Map<String, Value> = inputs
        .iter()
        .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
        .collect();
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
        .collect();
    let mut body = json!({ "spec": file.text.as_str(), "inputs": inputs, "labels": labels });
    if let Some(concurrency) = concurrency {
        body["concurrency"] = json!(concurrency);
    }
    if let Some(timeout) = timeout {
        body["timeout"] = json!(timeout.to_string());
    }
    let started: baton_server::api::Started = match remote.post("/runs", &body).await? {
        Ok(started) => started,
        Err(refused) => {
            eprintln!(
                "error: the server did not start the run ({}): {refused}",
                refused.status
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    eprintln!(
        "run {} started on {} (`baton --server {} show {}`)",
        started.run_id,
        remote.server(),
        remote.server(),
        started.run_id
    );
    let path = format!("/runs/{}", started.run_id);
    let mut said = String::new();
    let report: RunReport = loop {
        let report: RunReport = remote.get(&path, &[]).await?;
        if report.status.is_final() {
            break report;
        }
        // Say once why a task waits for a worker.
        for task in &report.tasks {
            if let Some(waiting) = &task.waiting
                && !said.contains(waiting.as_str())
            {
                eprintln!("{}: {waiting}", task.id);
                said.push_str(waiting);
            }
        }
        tokio::time::sleep(LOOK_EVERY).await;
    };
    if as_json {
        crate::out::json(&report)?;
    } else {
        crate::watch::print_summary(&report);
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
