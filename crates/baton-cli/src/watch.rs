//! Watching a run this process drives: live progress (or JSON lines),
//! then the summary table, log tails of failed tasks and the run's figures.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::Context;
use baton_core::Valid;
use baton_core::run::{Event, RunStatus, TaskStatus};
use baton_engine::{Engine, Error, RunEvent, RunHandle, RunReport};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// Lines of a failed task's log printed after the summary.
const TAIL_LINES: usize = 12;

/// Shows a run as it goes (progress or JSON lines), then its summary; the
/// exit code says how it ended.
pub(crate) async fn follow(
    engine: &Engine,
    mut handle: RunHandle,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(recovery) = handle.recovery() {
        for rejected in &recovery.rejected {
            eprintln!("warning: {rejected}; rebuilt from events instead");
        }
    }
    tokio::spawn(cancel_on_signal(
        handle.canceller(),
        handle.run_id().to_owned(),
    ));
    let valid = Arc::clone(handle.valid());
    let mut view = if json {
        View::Json
    } else {
        View::Progress(Progress::new(
            Arc::clone(&valid),
            handle.run_id(),
            handle.ended() as u64,
        ))
    };
    let events = handle
        .events()
        .context("the run was started without its event stream")?;
    let mut tick = tokio::time::interval(StdDuration::from_millis(200));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => view.on_event(&valid, &event)?,
                None => break,
            },
            _ = tick.tick() => view.refresh(),
        }
    }
    let run_id = handle.run_id().to_owned();
    let report = match handle.finish().await {
        Ok(report) => report,
        // Resuming is advice only for a run the record holds: one whose
        // first write failed (a read-only database) has nothing to resume.
        Err(error @ Error::Store(_)) if engine.store().run(&run_id).await.is_err() => {
            return Err(anyhow::Error::new(error).context(format!(
                "run {run_id} could not start: nothing of it was recorded"
            )));
        }
        Err(error @ Error::Store(_)) => {
            return Err(anyhow::Error::new(error).context(format!(
                "run {run_id} stopped: its record could not be written. What was recorded is \
                 kept; once the cause is fixed, `baton resume {run_id}` finishes it"
            )));
        }
        Err(other) => return Err(other.into()),
    };
    let proof = Proof {
        trace: engine.trace(&report.run_id).await?,
        root: engine.provenance(&report.run_id).await?.root,
    };
    view.finish(&report, &proof)?;
    Ok(match report.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Cancelled => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

/// Ctrl-C, SIGTERM or SIGHUP (a closed terminal or SSH session) cancels the
/// run; the loop then stops its tasks cleanly, each given its grace. A
/// second one does not wait: the tasks' process groups are killed at once
/// and baton exits, leaving the run for `baton resume`.
async fn cancel_on_signal(canceller: baton_engine::Canceller, run_id: String) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    let mut stop = async || {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
    };
    // After a hangup the terminal is gone: what is said may go nowhere,
    // and must not stop what is done.
    let say = |text: std::fmt::Arguments<'_>| {
        let _ = writeln!(std::io::stderr(), "{text}");
    };
    stop().await;
    canceller.cancel();
    say(format_args!(
        "cancelling: stopping running tasks (again to kill them at once)"
    ));
    stop().await;
    let killed = baton_engine::kill_now(&run_id);
    say(format_args!(
        "killed {killed} task process(es) at once; `baton resume {run_id}` finishes the run"
    ));
    std::process::exit(130);
}

enum View {
    Json,
    Progress(Progress),
}

impl View {
    fn on_event(&mut self, valid: &Valid, event: &RunEvent) -> anyhow::Result<()> {
        match self {
            View::Json => crate::out::json_line(&event.json(valid)),
            View::Progress(progress) => {
                progress.on_event(&event.event);
                Ok(())
            }
        }
    }

    fn refresh(&mut self) {
        if let View::Progress(progress) = self {
            progress.refresh();
        }
    }

    fn finish(self, report: &RunReport, proof: &Proof) -> anyhow::Result<()> {
        match self {
            View::Json => {
                let mut line = serde_json::to_value(report)?;
                line["type"] = Value::from("run_report");
                line["trace"] = Value::from(proof.trace.to_string());
                line["provenance_root"] = Value::from(proof.root.to_string());
                crate::out::json_line(&line)?;
            }
            View::Progress(progress) => {
                progress.bar.finish_and_clear();
                print_summary(report);
                crate::out::out!(
                    "  trace {}, provenance root {} (baton replay / baton verify {})",
                    proof.trace.short(),
                    proof.root.short(),
                    report.run_id
                );
            }
        }
        Ok(())
    }
}

/// What identifies a finished run's history and results.
struct Proof {
    trace: baton_core::run::Digest,
    root: baton_core::run::Digest,
}

/// The live display: done/total, running tasks with their elapsed time,
/// failures printed above the bar as they happen.
struct Progress {
    valid: Arc<Valid>,
    run_id: String,
    bar: ProgressBar,
    running: BTreeMap<u32, std::time::Instant>,
    colour: bool,
}

impl Progress {
    fn new(valid: Arc<Valid>, run_id: &str, done: u64) -> Progress {
        let total = valid.workflow().tasks.len() as u64;
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_position(done);
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:24}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Progress {
            valid,
            run_id: run_id.to_owned(),
            bar,
            running: BTreeMap::new(),
            colour: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn id(&self, task: u32) -> &str {
        &self.valid.workflow().tasks[task as usize].id
    }

    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            let _ = writeln!(std::io::stderr(), "{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn on_event(&mut self, event: &Event) {
        match event {
            // Someone has to act: say how.
            Event::ApprovalRequested { task, .. } => {
                let id = self.id(*task).to_owned();
                let choices = match &self.valid.workflow().tasks[*task as usize].kind {
                    baton_core::TaskKind::Approval(approval) => approval.choices.join("|"),
                    _ => String::new(),
                };
                let mark = paint(self.colour, "33", "?");
                self.say(format!(
                    "{mark} {id} waits for a decision: baton approve {} {id} <{choices}>",
                    self.run_id
                ));
            }
            Event::TaskStarted { task, attempt, .. } => {
                self.running.insert(*task, std::time::Instant::now());
                if *attempt > 1 {
                    self.bar.set_position(self.bar.position().saturating_sub(1));
                }
            }
            // An iteration counts like a retried failure: the next start
            // takes it back.
            Event::TaskSucceeded { task, .. } | Event::TaskIterated { task, .. } => {
                self.running.remove(task);
                self.bar.inc(1);
            }
            Event::TaskFailed {
                task,
                attempt,
                failure,
                ..
            } => {
                self.running.remove(task);
                let id = self.id(*task).to_owned();
                let mark = paint(self.colour, "31", "✗");
                self.say(format!(
                    "{mark} {id} failed (attempt {attempt}): {}",
                    failure.message
                ));
                // Final unless a retry starts it again, which takes it back.
                self.bar.inc(1);
            }
            Event::TaskSkipped { task, .. } | Event::TaskCancelled { task, .. } => {
                self.running.remove(task);
                self.bar.inc(1);
            }
            Event::CancelRequested { .. } => self.say("cancel requested".to_owned()),
            Event::RunTimedOut { .. } => self.say("the run timed out".to_owned()),
            _ => {}
        }
        self.refresh();
    }

    fn refresh(&mut self) {
        let mut running: Vec<String> = self
            .running
            .iter()
            .take(4)
            .map(|(task, started)| format!("{} {}", self.id(*task), short(started.elapsed())))
            .collect();
        if self.running.len() > 4 {
            running.push(format!("+{} more", self.running.len() - 4));
        }
        self.bar.set_message(if running.is_empty() {
            String::new()
        } else {
            format!("running: {}", running.join(", "))
        });
    }
}

fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// `1.23s`, `320ms`, `2m03s`: durations for people.
fn short(duration: StdDuration) -> String {
    let millis = duration.as_millis();
    if millis < 1_000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.2}s", duration.as_secs_f64())
    } else {
        format!("{}m{:02}s", millis / 60_000, (millis % 60_000) / 1_000)
    }
}

pub(crate) fn print_summary(report: &RunReport) {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut table = comfy_table::Table::new();
    table.load_preset(if colour {
        comfy_table::presets::UTF8_FULL_CONDENSED
    } else {
        comfy_table::presets::ASCII_FULL_CONDENSED
    });
    table.set_header(["task", "status", "attempts", "duration", "exit", "note"]);
    for task in &report.tasks {
        // A reused result did not run here: it is marked as taken from the
        // run that produced it.
        let (status, note) = match (&task.reused_from, &task.approval) {
            (Some(run), _) => ("cached", format!("result of run {run}")),
            // A waiting approval shows what it asks.
            (None, Some(asks)) => (
                task.status.name(),
                format!("{} ({})", asks.prompt, asks.choices.join(" | ")),
            ),
            (None, None) => (
                task.status.name(),
                task.waiting
                    .clone()
                    .or_else(|| task.note.clone())
                    .unwrap_or_default(),
            ),
        };
        table.add_row([
            task.id.clone(),
            status.to_owned(),
            task.attempts.to_string(),
            if task.attempts == 0 {
                "-".to_owned()
            } else {
                short(task.duration.as_std())
            },
            task.exit_code
                .map_or_else(String::new, |code| code.to_string()),
            note,
        ]);
    }
    crate::out::out!("{table}");
    for task in &report.tasks {
        let failed = matches!(task.status, TaskStatus::Failed | TaskStatus::TimedOut);
        let Some(logs) = task.logs.as_ref().filter(|_| failed) else {
            continue;
        };
        for stream in [
            baton_engine::logs::STDERR_FILE,
            baton_engine::logs::STDOUT_FILE,
        ] {
            let tail = baton_engine::logs::tail(
                &baton_engine::logs::attempt_file(logs, stream),
                TAIL_LINES,
            );
            if !tail.is_empty() {
                crate::out::out!(
                    "\n--- {} (attempt {}) {stream}: {} ---\n{tail}",
                    task.id,
                    task.attempts,
                    logs.join(stream).display()
                );
            }
        }
    }
    let metrics = &report.metrics;
    let (code, mark) = match report.status {
        RunStatus::Succeeded => ("32", "✓"),
        RunStatus::Cancelled => ("33", "■"),
        status if !status.is_final() => ("36", "…"),
        _ => ("31", "✗"),
    };
    // A reason that only repeats the status says nothing.
    let reason = report
        .reason
        .as_ref()
        .filter(|reason| reason.as_str() != report.status.name())
        .map_or_else(String::new, |reason| format!(" ({reason})"));
    let took = if report.status.is_final() {
        format!(" in {}", short(metrics.wall.as_std()))
    } else {
        ", not finished".to_owned()
    };
    crate::out::out!(
        "\n{} run {} {}{reason}{took}",
        paint(colour, code, mark),
        report.run_id,
        report.status,
    );
    crate::out::out!(
        "  {} tasks, {} attempts; task time {}, {:.1} attempts in flight on average (task time / wall time); critical path {}",
        report.tasks.len(),
        metrics.attempts,
        short(metrics.task_time.as_std()),
        metrics.parallelism,
        short(metrics.critical_path.as_std()),
    );
    if metrics.usage.tokens > 0 || metrics.usage.cost > 0.0 {
        crate::out::out!(
            "  usage: {} tokens, cost {:.4}",
            metrics.usage.tokens,
            metrics.usage.cost
        );
    }
}
