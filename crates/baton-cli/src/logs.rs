//! `baton logs`: the stdout and stderr of a run's tasks, whole or as they
//! are written.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use baton_engine::logs::LogFollower;
use baton_engine::{Engine, RunReport, TaskReport};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use crate::home::Home;
use crate::remote::Remote;

/// How often `--follow` looks for new output in the files; the run's end
/// comes from the store's change feed at once.
const GROWTH: Duration = Duration::from_millis(100);

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
    let engine = args.home.engine().await?;
    if args.follow {
        return follow(&engine, &args).await;
    }
    let report = engine.recorded(&args.run).await?;
    let tasks = selected(&report, &args)?;
    let mut printer = Printer::default();
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
        let prefix =
            baton_engine::logs::attempt_prefix(&args.home.state_dir, &args.run, &task.id, attempt);
        for stream in STREAMS {
            let Ok(bytes) = std::fs::read(baton_engine::logs::attempt_file(&prefix, stream)) else {
                continue;
            };
            if !printer.print(&task.id, attempt, stream, &bytes)? {
                return Ok(ExitCode::SUCCESS);
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

/// [`logs`] through a server: the same text, read over the API. With
/// `--follow`, each attempt the run's event stream says started is
/// followed as its own event stream of log bytes, resumed by offset if the
/// connection breaks, until the run has ended and every log is drained.
async fn remote_logs(remote: &Remote, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let report: RunReport = remote.get(&format!("/runs/{}", args.run), &[]).await?;
    let tasks = selected(&report, args)?;
    if args.follow {
        return remote_follow(remote, args).await;
    }
    let mut printer = Printer::default();
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
        for stream in STREAMS {
            let query = [
                ("attempt", attempt.to_string()),
                ("stream", stream.trim_end_matches(".log").to_owned()),
            ];
            let path = format!("/runs/{}/tasks/{}/logs", args.run, task.id);
            let Some(text) = remote.text(&path, &query).await? else {
                continue;
            };
            if !printer.print(&task.id, attempt, stream, text.as_bytes())? {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

const STREAMS: [&str; 2] = [
    baton_engine::logs::STDOUT_FILE,
    baton_engine::logs::STDERR_FILE,
];

/// Times a broken log stream is taken up again from its last offset.
const RECONNECTS: u32 = 3;

/// Bytes of one attempt's log, as they come.
struct Piece {
    task: String,
    attempt: u32,
    stream: &'static str,
    text: String,
}

async fn remote_follow(remote: &Remote, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let mut run_events = remote
        .events(&format!("/runs/{}/events", args.run), &[], None)
        .await??;
    let (sender, mut pieces) = mpsc::channel(64);
    // Dropped once the run has ended: the pieces then end with the last
    // attempt's follower.
    let mut sender = Some(sender);
    let mut printer = Printer::default();
    loop {
        tokio::select! {
            message = run_events.next(), if sender.is_some() => match message? {
                Some(message) if message.kind == "task_started" => {
                    let started: Value = serde_json::from_str(&message.data)?;
                    let task = started["task"].as_str().unwrap_or_default().to_owned();
                    let attempt = started["attempt"].as_u64().unwrap_or(0) as u32;
                    let wanted = args.task.as_ref().is_none_or(|id| *id == task)
                        && args.attempt.is_none_or(|only| only == attempt);
                    if let (true, Some(sender)) = (wanted, &sender) {
                        for stream in STREAMS {
                            let follower = follow_log(
                                remote.clone(),
                                format!("/runs/{}/tasks/{task}/logs", args.run),
                                Piece { task: task.clone(), attempt, stream, text: String::new() },
                                sender.clone(),
                            );
                            tokio::spawn(follower);
                        }
                    }
                }
                Some(message) if message.kind == "run_finished" => sender = None,
                Some(_) => {}
                None => sender = None,
            },
            piece = pieces.recv() => match piece {
                Some(piece) => {
                    if !printer.print(&piece.task, piece.attempt, piece.stream, piece.text.as_bytes())? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                None => return Ok(ExitCode::SUCCESS),
            },
        }
    }
}

/// Sends what one attempt writes to one stream, as it writes it, until the
/// server says it ended (or the printer went away).
async fn follow_log(remote: Remote, path: String, of: Piece, sender: mpsc::Sender<Piece>) {
    let query = [
        ("attempt", of.attempt.to_string()),
        ("stream", of.stream.trim_end_matches(".log").to_owned()),
        ("follow", "true".to_owned()),
    ];
    let mut last = None;
    for _ in 0..=RECONNECTS {
        if let Ok(Ok(mut events)) = remote.events(&path, &query, last.as_deref()).await {
            while let Ok(Some(message)) = events.next().await {
                match message.kind.as_str() {
                    "log" => {
                        let Ok(log) = serde_json::from_str::<Value>(&message.data) else {
                            return;
                        };
                        let piece = Piece {
                            text: log["text"].as_str().unwrap_or_default().to_owned(),
                            task: of.task.clone(),
                            ..of
                        };
                        if sender.send(piece).await.is_err() {
                            return;
                        }
                        last = message.id;
                    }
                    "end" | "error" => return,
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints new log output until the run has ended and everything it wrote
/// has been printed. The store is read again only when its change feed
/// says the run moved on; the files are looked at every [`GROWTH`].
async fn follow(engine: &Engine, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let store = engine.store();
    let mut changes = store.changes();
    let mut follower = LogFollower::new(&args.home.state_dir, &args.run, args.attempt);
    let mut printer = Printer::default();
    let mut stale = true;
    let mut ended = false;
    let mut rows = Vec::new();
    loop {
        if stale {
            // The status first: once it is final, this pass drains the rest.
            ended = store.summary(&args.run).await?.status.is_final();
            rows = store.tasks(&args.run).await?;
            stale = false;
            if let Some(id) = &args.task {
                anyhow::ensure!(
                    rows.iter().any(|row| row.id == *id),
                    "run `{}` has no task `{id}`",
                    args.run
                );
            }
        }
        let watched = rows
            .iter()
            .filter(|row| args.task.as_ref().is_none_or(|id| row.id == *id))
            .map(|row| (row.id.as_str(), row.attempts));
        for chunk in follower.poll(watched)? {
            if !printer.print(&chunk.task, chunk.attempt, chunk.stream, &chunk.bytes)? {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if ended {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            changed = changes.recv() => match changed {
                Ok(change) => stale = change.run() == args.run,
                Err(broadcast::error::RecvError::Lagged(_)) => stale = true,
                Err(broadcast::error::RecvError::Closed) => {
                    anyhow::bail!("the store's change feed closed")
                }
            },
            () = tokio::time::sleep(GROWTH) => {}
        }
    }
}

/// Writes log output to stdout, with a header at each switch of task,
/// attempt or stream.
#[derive(Default)]
struct Printer {
    last: Option<(String, u32, &'static str)>,
}

impl Printer {
    /// False once stdout is closed (`| head`): nothing more to print.
    fn print(
        &mut self,
        task: &str,
        attempt: u32,
        stream: &'static str,
        bytes: &[u8],
    ) -> anyhow::Result<bool> {
        if bytes.is_empty() {
            return Ok(true);
        }
        let mut out = std::io::stdout().lock();
        let source = (task.to_owned(), attempt, stream);
        let written = if self.last.as_ref() == Some(&source) {
            out.write_all(bytes)
        } else {
            writeln!(out, "--- {task} (attempt {attempt}) {stream} ---")
                .and_then(|()| out.write_all(bytes))
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => {
                self.last = Some(source);
                Ok(true)
            }
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}
