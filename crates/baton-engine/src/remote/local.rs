//! The worker's side of a lease: a leased attempt run on the worker's
//! machine by the same process executor as a local task (own process
//! group, timeout with SIGTERM then SIGKILL, `$BATON_OUTPUT`, logs to
//! files), so a task behaves the same wherever it runs. An agent lease
//! runs the worker's agent command with the task as JSON on its stdin.

use std::path::{Path, PathBuf};

use baton_core::Duration;
use baton_core::run::{Digest, Failure, FailureKind, Resolved, ShellScript, Work};
use serde_json::json;
use tokio::sync::oneshot;

use super::protocol::{End, Lease, LeasedFile, LeasedWork};
use crate::artifacts::Cas;
use crate::executor::{Attempt, Executor, Outcome, Processes, TaskContext};
use crate::logs::{STDOUT_FILE, attempt_file};

/// Where a worker runs its leases.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// Where processes start; a task's `cwd` is relative to it.
    pub workdir: PathBuf,
    /// Where each attempt's logs and output file go.
    pub state_dir: PathBuf,
    /// Bytes of output read at most.
    pub max_output: u64,
    /// The program (and arguments) that answers agent leases, reading the
    /// task as JSON on stdin; without one, agent leases fail.
    pub agent_command: Vec<String>,
}

impl Workspace {
    /// The prefix of `lease`'s log and output files: one per lease, so a
    /// retried attempt does not mix with the last one.
    pub fn prefix(&self, lease: &Lease) -> PathBuf {
        self.state_dir.join(&lease.lease_id)
    }

    /// Runs `lease` to its end; `stop` firing stops it (SIGTERM to its
    /// group, SIGKILL after its grace) and it ends `stopped`.
    pub async fn run(&self, lease: &Lease, stop: oneshot::Receiver<()>) -> End {
        let prefix = self.prefix(lease);
        let (work, stdin) = match &lease.work {
            LeasedWork::Shell { script, values } => (
                Work::Shell(ShellScript {
                    script: script.clone(),
                    values: values.clone().into_iter().collect(),
                }),
                None,
            ),
            LeasedWork::Command { argv } => (Work::Command(argv.clone()), None),
            LeasedWork::Noop => return End::Succeeded { output: None },
            LeasedWork::Agent { .. } if self.agent_command.is_empty() => {
                return failed(
                    "this worker has no agent command: start it with `baton worker ... -- COMMAND` to answer agent tasks",
                );
            }
            LeasedWork::Agent { .. } => match write_task(&prefix, lease) {
                Ok(path) => (Work::Command(self.agent_command.clone()), Some(path)),
                Err(error) => {
                    return failed(&format!("cannot write the task for the agent: {error}"));
                }
            },
        };
        let agent = stdin.is_some();
        let attempt = Attempt {
            resolved: Resolved {
                env: lease.env.clone().into_iter().collect(),
                cwd: lease.cwd.clone(),
                work,
                route: None,
            },
            context: TaskContext {
                run_id: lease.run_id.clone(),
                task_id: lease.task_id.clone(),
                attempt: lease.attempt,
                idempotency_key: lease.idempotency_key.clone(),
                inputs: lease.inputs.clone(),
                needs: lease.needs.clone(),
                env: lease.env.clone().into_iter().collect(),
            },
            prefix: prefix.clone(),
            workdir: self.workdir.clone(),
            timeout: lease.timeout_ms.map(Duration::from_millis),
            grace: Duration::from_millis(lease.grace_ms),
            lineage: None,
            stdin,
            carried: None,
        };
        let processes = Processes {
            max_output: self.max_output,
        };
        match processes.execute(attempt, stop).await {
            // An agent command may answer on stdout instead of `$BATON_OUTPUT`.
            Outcome::Succeeded(None) if agent => match stdout_json(&prefix, self.max_output) {
                Ok(output) => End::Succeeded { output },
                Err(message) => failed(&message),
            },
            Outcome::Succeeded(output) => End::Succeeded { output },
            Outcome::Failed(failure) => End::Failed {
                failure: failure.into(),
            },
            Outcome::Cancelled => End::Stopped,
        }
    }
}

impl Workspace {
    /// Where `lease` runs: the working directory and the task's `cwd`.
    fn working_dir(&self, lease: &Lease) -> PathBuf {
        match &lease.cwd {
            Some(cwd) => self.workdir.join(cwd),
            None => self.workdir.clone(),
        }
    }

    /// Writes `bytes` (checked against `file`'s digest) at `file.path`
    /// under `lease`'s working directory, before it runs.
    pub fn place(&self, lease: &Lease, file: &LeasedFile, bytes: &[u8]) -> Result<(), String> {
        if !crate::artifacts::stays_inside(&file.path) {
            return Err(format!(
                "`{}` is not a path inside the task's directory",
                file.path
            ));
        }
        let digest = Digest::of_bytes(bytes).to_string();
        if digest != file.sha256 {
            return Err(format!(
                "`{}` arrived with SHA-256 {digest}, not {}",
                file.path, file.sha256
            ));
        }
        let target = self.working_dir(lease).join(&file.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("{}: {error}", parent.display()))?;
        }
        std::fs::write(&target, bytes).map_err(|error| format!("{}: {error}", target.display()))
    }

    /// Where the files `lease` hands back are gathered before they are
    /// uploaded; removed with the lease's other files.
    pub fn files_dir(&self, lease: &Lease) -> PathBuf {
        self.state_dir.join(format!("{}.files", lease.lease_id))
    }

    /// The files `lease`'s `artifacts:` patterns match under its working
    /// directory, gathered under [`Workspace::files_dir`], each with where
    /// its bytes are, to upload.
    pub fn collect(&self, lease: &Lease) -> Result<Vec<(LeasedFile, PathBuf)>, String> {
        let cas = Cas::new(&self.files_dir(lease));
        let found = cas
            .collect(&self.working_dir(lease), &lease.artifacts)
            .map_err(|error| format!("cannot collect the task's artifacts: {error}"))?;
        Ok(found
            .into_iter()
            .map(|artifact| {
                let object = cas.object(&artifact.digest);
                let file = LeasedFile {
                    path: artifact.path,
                    sha256: artifact.digest.to_string(),
                    size: artifact.size,
                };
                (file, object)
            })
            .collect())
    }
}

fn failed(message: &str) -> End {
    End::Failed {
        failure: Failure::new(FailureKind::Error, message).into(),
    }
}

/// The task an agent command reads on stdin.
fn write_task(prefix: &Path, lease: &Lease) -> std::io::Result<PathBuf> {
    let LeasedWork::Agent {
        prompt,
        input,
        schema,
    } = &lease.work
    else {
        unreachable!("only agent leases have a task file");
    };
    let task = json!({
        "run_id": lease.run_id,
        "task_id": lease.task_id,
        "attempt": lease.attempt,
        "idempotency_key": lease.idempotency_key,
        "capability": lease.capability,
        "prompt": prompt,
        "input": input,
        "schema": schema,
        "inputs": lease.inputs,
        "needs": lease.needs,
    });
    let path = attempt_file(prefix, "task.json");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_vec(&task)?)?;
    Ok(path)
}

/// An agent command's stdout, as its JSON answer (none if it printed
/// nothing).
fn stdout_json(prefix: &Path, max_output: u64) -> Result<Option<serde_json::Value>, String> {
    let path = attempt_file(prefix, STDOUT_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    if text.len() as u64 > max_output {
        return Err(format!(
            "the agent's stdout is larger than max_output ({max_output} bytes)"
        ));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|error| format!("the agent's stdout is not JSON ({error}); write the answer as JSON to stdout or to $BATON_OUTPUT"))
}
