//! `baton logs`: the stdout and stderr of a run's tasks, whole or as they
//! are written.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use baton_engine::logs::LogFollower;
use baton_engine::{Engine, RunReport, TaskReport};

use crate::remote::Remote;
use crate::runs::Home;

/// How often `--follow` looks for new output and for the run's end.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

#[derive(clap::Args)]
pub(crate) struct LogsArgs {
    /// The run's id.
    run: String,
    /// One task; every task that ran a process when absent.
    task: Option<String>,
    /// One attempt of the task; its last when absent.
    #[arg(long, requires = "task")]
    attempt: Option<u32>,
    /// Keep printing what the run's tasks write until the run ends.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    home: Home,
}

pub(crate) async fn logs(args: LogsArgs, remote: Option<&Remote>) -> anyhow::Result<ExitCode> {
    if let Some(remote) = remote {
        return remote_logs(remote, &args).await;
    }
    let engine = args.home.engine()?;
    if args.follow {
        return follow(&engine, &args).await;
    }
    let report = engine.recorded(&args.run).await?;
    let tasks = selected(&report, &args)?;
    let mut out = std::io::stdout().lock();
    for task in tasks {
        let attempt = args.attempt.unwrap_or(task.attempts);
        if attempt == 0 || attempt > task.attempts {
            anyhow::ensure!(
                args.task.is_none(),
                "task `{}` has {} attempt(s)",
                task.id,
                task.attempts
            );
            continue;
        }
        let dir =
            baton_engine::logs::attempt_dir(&args.home.state_dir, &args.run, &task.id, attempt);
        for stream in [
            baton_engine::logs::STDOUT_FILE,
            baton_engine::logs::STDERR_FILE,
        ] {
            let Ok(text) = std::fs::read_to_string(dir.join(stream)) else {
                continue;
            };
            if text.is_empty() {
                continue;
            }
            let written = writeln!(out, "--- {} (attempt {attempt}) {stream} ---", task.id)
                .and_then(|()| out.write_all(text.as_bytes()));
            match written {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(ExitCode::SUCCESS);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tasks whose logs are asked for: the one named, or all.
fn selected<'a>(report: &'a RunReport, args: &LogsArgs) -> anyhow::Result<Vec<&'a TaskReport>> {
    Ok(match &args.task {
        Some(id) => vec![
            report
                .task(id)
                .with_context(|| format!("run `{}` has no task `{id}`", args.run))?,
        ],
        None => report.tasks.iter().collect(),
    })
}

/// [`logs`] through a server: the same text, read over the API (with
/// `--follow`, by offset, until the run has ended and all is printed).
async fn remote_logs(remote: &Remote, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let streams = [
        baton_engine::logs::STDOUT_FILE,
        baton_engine::logs::STDERR_FILE,
    ];
    // Bytes printed per (task, attempt, stream), and attempts drained.
    let mut offsets: HashMap<(String, u32, &str), u64> = HashMap::new();
    let mut drained: HashSet<(String, u32)> = HashSet::new();
    let mut last = None;
    let mut out = std::io::stdout().lock();
    loop {
        let report: RunReport = remote.get(&format!("/runs/{}", args.run), &[]).await?;
        let ended = report.status.is_final();
        for task in selected(&report, args)? {
            let attempts = match args.attempt {
                Some(attempt) => {
                    anyhow::ensure!(
                        (1..=task.attempts).contains(&attempt) || args.follow,
                        "task `{}` has {} attempt(s)",
                        task.id,
                        task.attempts
                    );
                    attempt..=attempt.min(task.attempts)
                }
                None if args.follow => 1..=task.attempts,
                None => task.attempts..=task.attempts,
            };
            for attempt in attempts.filter(|&attempt| attempt > 0) {
                if drained.contains(&(task.id.clone(), attempt)) {
                    continue;
                }
                let mut fresh = false;
                for stream in streams {
                    let key = (task.id.clone(), attempt, stream);
                    let offset = offsets.get(&key).copied().unwrap_or(0);
                    let query = [
                        ("attempt", attempt.to_string()),
                        ("stream", stream.trim_end_matches(".log").to_owned()),
                        ("offset", offset.to_string()),
                    ];
                    let path = format!("/runs/{}/tasks/{}/logs", args.run, task.id);
                    let Some(text) = remote.text(&path, &query).await? else {
                        continue;
                    };
                    if text.is_empty() {
                        continue;
                    }
                    fresh = true;
                    offsets.insert(key, offset + text.len() as u64);
                    let source = (task.id.clone(), attempt, stream);
                    let written = if last.as_ref() == Some(&source) {
                        out.write_all(text.as_bytes())
                    } else {
                        writeln!(out, "--- {} (attempt {attempt}) {stream} ---", task.id)
                            .and_then(|()| out.write_all(text.as_bytes()))
                    };
                    match written.and_then(|()| out.flush()) {
                        Ok(()) => last = Some(source),
                        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                            return Ok(ExitCode::SUCCESS);
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                if !fresh && (attempt < task.attempts || task.status.is_final()) {
                    drained.insert((task.id.clone(), attempt));
                }
            }
        }
        if !args.follow || ended {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

/// Prints new log output until the run has ended and everything it wrote
/// has been printed; a header marks each switch of task, attempt or stream.
async fn follow(engine: &Engine, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let store = engine.store();
    let mut follower = LogFollower::new(&args.home.state_dir, &args.run, args.attempt);
    let mut last = None;
    let mut out = std::io::stdout().lock();
    loop {
        // Read the status first: once it is final, this pass drains the rest.
        let ended = store.summary(&args.run).await?.status.is_final();
        let rows = store.tasks(&args.run).await?;
        if let Some(id) = &args.task {
            anyhow::ensure!(
                rows.iter().any(|row| row.id == *id),
                "run `{}` has no task `{id}`",
                args.run
            );
        }
        let watched = rows
            .iter()
            .filter(|row| args.task.as_ref().is_none_or(|id| row.id == *id))
            .map(|row| (row.id.as_str(), row.attempts));
        for chunk in follower.poll(watched)? {
            let source = (chunk.task, chunk.attempt, chunk.stream);
            let written = if last.as_ref() == Some(&source) {
                out.write_all(&chunk.bytes)
            } else {
                writeln!(
                    out,
                    "--- {} (attempt {}) {} ---",
                    source.0, source.1, source.2
                )
                .and_then(|()| out.write_all(&chunk.bytes))
            };
            match written.and_then(|()| out.flush()) {
                Ok(()) => last = Some(source),
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(ExitCode::SUCCESS);
                }
                Err(error) => return Err(error.into()),
            }
        }
        if ended {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}
