//! `run` and `command` tasks: one child process in its own process group,
//! stdout and stderr copied from pipes to per-attempt log files, the output
//! read from `$BATON_OUTPUT`. On a timeout or kill the whole group gets
//! SIGTERM, then SIGKILL after the grace period; on any exit, members the
//! task left behind are killed too, so no task leaves orphans.
//!
//! A log file is made when its stream first carries a byte, so a silent
//! task costs no files: creating an inode is most of what a short task
//! costs on a busy file system. The attempt ends once both pipes are
//! drained, so its logs are whole when its end is recorded; a process
//! that left the group (`setsid`) and keeps a pipe open is given
//! [`DRAIN`] before its pipe is closed on it.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use async_trait::async_trait;
use baton_core::Duration;
use baton_core::run::{Failure, FailureKind, Work};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::job::{Attempt, Executor, Kill, Outcome, timed_out, too_large};
use crate::logs::{OUTPUT_FILE, STDERR_FILE, STDOUT_FILE, attempt_file};

/// Runs `run` and `command` tasks as processes of this machine.
#[derive(Clone, Copy)]
pub(crate) struct Processes {
    /// Bytes of `$BATON_OUTPUT` read at most.
    pub(crate) max_output: u64,
}

#[async_trait]
impl Executor for Processes {
    async fn execute(&self, attempt: Attempt, kill: Kill) -> Outcome {
        let Started {
            child,
            stdout,
            stderr,
        } = match spawn(&attempt) {
            Ok(started) => started,
            Err(failure) => return Outcome::Failed(failure),
        };
        // The logs are copied in this same task, beside the supervision:
        // no hand-off between tasks on the way from a child's exit to its
        // outcome.
        let logs = async {
            let out = attempt_file(&attempt.prefix, STDOUT_FILE);
            let err = attempt_file(&attempt.prefix, STDERR_FILE);
            tokio::join!(copy_log(stdout, out), copy_log(stderr, err));
        };
        let supervised = supervise(child, &attempt, kill, self.max_output);
        tokio::pin!(logs, supervised);
        let mut copied = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut supervised => break outcome,
                () = &mut logs, if !copied => copied = true,
            }
        };
        if !copied {
            let _ = tokio::time::timeout(DRAIN, logs).await;
        }
        outcome
    }
}

fn spawn(attempt: &Attempt) -> Result<Started, Failure> {
    let setup = |what: &str, error: std::io::Error| {
        Failure::new(FailureKind::Error, format!("{what}: {error}"))
    };
    let dir = attempt.prefix.parent().unwrap_or(&attempt.prefix);
    std::fs::create_dir_all(dir)
        .map_err(|error| setup(&format!("cannot create {}", dir.display()), error))?;
    let resolved = &attempt.resolved;
    let (mut command, program) = match &resolved.work {
        Work::Shell(shell) => {
            let mut command = Command::new("sh");
            command.arg("-c").arg(&shell.script);
            command.envs(shell.values.iter().map(|(name, value)| (name, value)));
            (command, "sh".to_owned())
        }
        Work::Command(argv) => {
            let Some((program, arguments)) = argv.split_first() else {
                return Err(Failure::new(FailureKind::Error, "the command is empty"));
            };
            let mut command = Command::new(program);
            command.args(arguments);
            (command, program.clone())
        }
        _ => {
            return Err(Failure::new(
                FailureKind::Error,
                "only `run` and `command` tasks are processes",
            ));
        }
    };
    let context = &attempt.context;
    let stdin = match &attempt.stdin {
        Some(path) => Stdio::from(
            std::fs::File::open(path)
                .map_err(|error| setup(&format!("cannot open {}", path.display()), error))?,
        ),
        None => Stdio::null(),
    };
    command
        .envs(resolved.env.iter().map(|(name, value)| (name, value)))
        .env("BATON_OUTPUT", attempt_file(&attempt.prefix, OUTPUT_FILE))
        .env("BATON_RUN_ID", &context.run_id)
        .env("BATON_TASK_ID", &context.task_id)
        .env("BATON_ATTEMPT", context.attempt.to_string())
        .env("BATON_IDEMPOTENCY_KEY", &context.idempotency_key)
        .env("TRACEPARENT", context.traceparent())
        .current_dir(attempt.working_dir())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| setup(&format!("cannot start `{program}`"), error))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    Ok(Started {
        child,
        stdout,
        stderr,
    })
}

/// How long the pipes of an ended attempt may stay open: only a process
/// that escaped its group holds one past the group's end.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// A started child and the read ends of its stdout and stderr.
struct Started {
    child: Child,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
}

/// Copies `pipe` to the file at `path`, made on the first byte. A log
/// that cannot be written is given up (the task's work goes on); the rest
/// of the pipe is still read so the task never blocks on it.
pub(super) async fn copy_log(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    path: std::path::PathBuf,
) {
    let Some(mut pipe) = pipe else {
        return;
    };
    // Read into spare capacity: nothing is zeroed for a task that prints
    // nothing.
    let mut buffer: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut file: Option<tokio::fs::File> = None;
    let mut writable = true;
    loop {
        buffer.clear();
        match pipe.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !writable {
            continue;
        }
        if file.is_none() {
            file = tokio::fs::File::create(&path).await.ok();
            writable = file.is_some();
        }
        if let Some(open) = &mut file
            && open.write_all(&buffer).await.is_err()
        {
            writable = false;
        }
    }
    if let Some(mut open) = file {
        let _ = open.flush().await;
    }
}

async fn supervise(mut child: Child, attempt: &Attempt, kill: Kill, max_output: u64) -> Outcome {
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    let limit = async {
        match attempt.timeout {
            Some(after) => tokio::time::sleep(after.as_std()).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => finished(status, attempt, max_output).await,
            Err(error) => Outcome::Failed(Failure::new(FailureKind::Error, format!("cannot wait for the process: {error}"))),
        },
        () = limit => {
            terminate(&mut child, group, attempt.grace).await;
            Outcome::Failed(timed_out(attempt.timeout))
        }
        Ok(()) = kill => {
            terminate(&mut child, group, attempt.grace).await;
            Outcome::Cancelled
        }
    };
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    outcome
}

/// SIGTERM to the group, SIGKILL after `grace` if the leader still runs,
/// then reap the leader so it leaves no zombie.
async fn terminate(child: &mut Child, group: Option<Pid>, grace: Duration) {
    let Some(group) = group else {
        let _ = child.kill().await;
        return;
    };
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(grace.as_std(), child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

async fn finished(status: ExitStatus, attempt: &Attempt, max_output: u64) -> Outcome {
    if let Some(signal) = status.signal() {
        return Outcome::Failed(Failure::new(
            FailureKind::Signal { signal },
            format!("killed by signal {signal}"),
        ));
    }
    let code = status.code().unwrap_or(-1);
    if code != 0 {
        return Outcome::Failed(Failure::new(
            FailureKind::Exit { code },
            format!("exited with code {code}"),
        ));
    }
    match read_output(&attempt_file(&attempt.prefix, OUTPUT_FILE), max_output).await {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Outcome::Succeeded(None),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(output) => Outcome::Succeeded(Some(output)),
            Err(error) => Outcome::Failed(Failure::new(
                FailureKind::Error,
                format!("$BATON_OUTPUT does not hold JSON: {error}"),
            )),
        },
        Err(failure) => Outcome::Failed(failure),
    }
}

/// The output file's bytes, refused unread past `max_output` (a missing
/// file is no output).
async fn read_output(path: &std::path::Path, max_output: u64) -> Result<Vec<u8>, Failure> {
    let cannot = |error: std::io::Error| {
        Failure::new(
            FailureKind::Error,
            format!("cannot read $BATON_OUTPUT: {error}"),
        )
    };
    // Opened in place: one lookup in the run's own directory, and most
    // tasks hand back nothing, where a trip to the blocking pool would cost
    // more than the lookup.
    let file = match std::fs::File::open(path) {
        Ok(file) => tokio::fs::File::from_std(file),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(cannot(error)),
    };
    let mut bytes = Vec::new();
    file.take(max_output + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(cannot)?;
    if bytes.len() as u64 > max_output {
        return Err(too_large("$BATON_OUTPUT", max_output));
    }
    Ok(bytes)
}
