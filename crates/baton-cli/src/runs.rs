//! Reading recorded runs back (`baton runs`, `baton show`, `baton events`)
//! and driving them again (`baton resume`, `baton rerun`).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use baton_core::run::RunStatus;
use baton_engine::{RunEvent, RunReport};
use baton_store::{Driven, RunFilter, RunSummary};

use crate::remote::Remote;

use crate::home::{Home, refused};
use crate::watch::{follow, print_summary};

#[derive(clap::Args)]
pub(crate) struct RunsArgs {
    /// How many of the latest runs to list.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Only runs with this status (running, succeeded, failed, cancelled, ...).
    #[arg(long, value_parser = parse_status)]
    status: Option<RunStatus>,
    /// Only runs of this workflow.
    #[arg(long)]
    workflow: Option<String>,
    /// Print the runs as a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    home: Home,
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The run's id, as `baton run` and `baton runs` print it.
    pub(crate) run: String,
    /// Print the run's report as JSON (tasks, outputs, figures).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) home: Home,
}

#[derive(clap::Args)]
pub(crate) struct ResumeArgs {
    /// The run's id.
    run: String,
    /// Stream events as JSON lines on stdout, then the report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    home: Home,
}

#[derive(clap::Args)]
pub(crate) struct RerunArgs {
    /// The run to take results from.
    run: String,
    /// Run this task and everything downstream of it again; without it,
    /// only what did not succeed runs.
    #[arg(long, value_name = "TASK")]
    from: Option<String>,
    /// Stream events as JSON lines on stdout, then the report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    home: Home,
}

#[derive(clap::Args)]
pub(crate) struct EventsArgs {
    /// The run's id (not with --follow, which reads every run's).
    #[arg(required_unless_present = "follow", conflicts_with = "follow")]
    run: Option<String>,
    /// Read every run's events from Redis Streams (`[events] redis` in
    /// baton.toml) as a member of a consumer group, as they are published,
    /// until stopped: each event once, as a JSON line.
    #[arg(long, requires = "group")]
    follow: bool,
    /// The consumer group; members of one group share its events.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// This member's name in the group (the host name and process id by
    /// default); started again under the same name, it first re-reads
    /// what it had not acknowledged.
    #[arg(long, value_name = "NAME")]
    consumer: Option<String>,
    /// Deliveries after which an event goes to the dead-letter stream
    /// (`PREFIX:events:dead`) instead.
    #[arg(long, default_value_t = 5)]
    max_deliveries: u64,
    /// How long an event may stay pending with a member before another
    /// takes it over.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    claim_after: std::time::Duration,
    #[command(flatten)]
    home: Home,
}

pub(crate) async fn runs(args: RunsArgs, remote: Option<&Remote>) -> anyhow::Result<ExitCode> {
    let runs: Vec<RunSummary> = match remote {
        Some(remote) => {
            let mut query = vec![("limit", args.limit.clamp(1, 1000).to_string())];
            if let Some(status) = args.status {
                query.push(("status", status.name().to_owned()));
            }
            if let Some(workflow) = &args.workflow {
                query.push(("workflow", workflow.clone()));
            }
            let page: baton_server::api::RunPage = remote.get("/runs", &query).await?;
            page.runs
        }
        None => {
            let everything = args.status.is_none() && args.workflow.is_none();
            let filter = RunFilter {
                status: args.status,
                workflow: args.workflow,
                limit: args.limit,
                ..RunFilter::default()
            };
            let now = baton_engine::wall_clock();
            let listed = args.home.engine().await?.store().runs(&filter).await?;
            if listed.is_empty() && everything {
                warn_of_lost_record(&args.home.state_dir);
            }
            listed.into_iter().map(|run| run.judged(now)).collect()
        }
    };
    if args.json {
        crate::out::out!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = baton_engine::wall_clock().0;
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "run", "workflow", "status", "started", "took", "events", "driver",
    ]);
    for run in &runs {
        let driver = match (run.driven, &run.driver) {
            (Some(Driven::Live), Some(driver)) => {
                format!("PID {} on {}", driver.owner.pid, driver.owner.host)
            }
            (Some(Driven::Orphaned), _) => "orphaned: baton resume takes it".to_owned(),
            _ => String::new(),
        };
        table.add_row([
            run.run_id.clone(),
            run.workflow.clone(),
            run.status.name().to_owned(),
            run.started_at.map_or_else(String::new, |at| {
                format!("{} ago", age(now.saturating_sub(at.0)))
            }),
            match (run.started_at, run.finished_at) {
                (Some(start), Some(end)) => age(end.0.saturating_sub(start.0)),
                _ => String::new(),
            },
            run.events.to_string(),
            driver,
        ]);
    }
    crate::out::out!("{table}");
    Ok(ExitCode::SUCCESS)
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    serde_json::from_value(serde_json::Value::from(text)).map_err(|_| {
        format!("unknown status `{text}`: use pending, running, paused, succeeded, failed, cancelled, compensated or compensation_failed")
    })
}

/// `42s`, `3m`, `5h`, `2d`: how long ago, roughly.
pub(crate) fn age(millis: u64) -> String {
    let seconds = millis / 1000;
    match seconds {
        0 => format!("{millis}ms"),
        1..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

pub(crate) async fn show(args: RunArgs, remote: Option<&Remote>) -> anyhow::Result<ExitCode> {
    let report: RunReport = match remote {
        Some(remote) => remote.get(&format!("/runs/{}", args.run), &[]).await?,
        None => args.home.engine().await?.recorded(&args.run).await?,
    };
    if args.json {
        crate::out::out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
        print_outputs(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The longest output `show` prints on a line; `--json` has them whole.
const OUTPUT_WIDTH: usize = 160;

/// Each task's output, one compact JSON line each, cut at [`OUTPUT_WIDTH`].
fn print_outputs(report: &RunReport) {
    let outputs: Vec<_> = report
        .tasks
        .iter()
        .filter_map(|task| Some((&task.id, task.output.as_ref()?)))
        .collect();
    if outputs.is_empty() {
        return;
    }
    crate::out::out!("\noutputs:");
    for (id, output) in outputs {
        let text = output.to_string();
        let shown = match text.char_indices().nth(OUTPUT_WIDTH) {
            Some((cut, _)) => format!(
                "{}… ({} bytes; --json has it all)",
                &text[..cut],
                text.len()
            ),
            None => text,
        };
        crate::out::out!("  {id}: {shown}");
    }
}

pub(crate) async fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let engine = args.home.engine().await?;
    match engine.resume(&args.run, true).await {
        Ok(handle) => follow(&engine, handle, args.json).await,
        Err(error) => refused(error),
    }
}

pub(crate) async fn rerun(args: RerunArgs) -> anyhow::Result<ExitCode> {
    let engine = args.home.engine().await?;
    let handle = engine.rerun(&args.run, args.from.as_deref(), true).await?;
    follow(&engine, handle, args.json).await
}

pub(crate) async fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let Some(run) = args.run.clone() else {
        return follow_group(&args).await;
    };
    let engine = args.home.engine().await?;
    let store = engine.store();
    let record = store.run(&run).await?;
    let valid = baton_core::check(Arc::unwrap_or_clone(record.workflow)).map_err(|problems| {
        anyhow::anyhow!("the recorded workflow does not check: {}", problems[0])
    })?;
    let mut out = std::io::stdout().lock();
    for (seq, event) in engine.events(&run).await?.into_iter().enumerate() {
        let line = RunEvent {
            seq: seq as u64,
            event,
        }
        .json(&valid);
        match writeln!(out, "{}", serde_json::to_string(&line)?) {
            Ok(()) => {}
            // A reader that stopped early (`| head`) is not an error.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `baton events --follow --group NAME`: a consumer group member printing
/// each event as a JSON line (`{"id", "run", "type", "event"}`), which is
/// acknowledged once written.
async fn follow_group(args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let config = args.home.config.load()?;
    let Some(settings) = config.events.redis() else {
        anyhow::bail!(
            "no Redis is named: set `[events] redis = \"redis://HOST:PORT\"` in baton.toml (or BATON_EVENTS__REDIS)"
        );
    };
    let consumer = baton_server::Consumer {
        group: args.group.clone().unwrap_or_default(),
        name: args
            .consumer
            .clone()
            .unwrap_or_else(|| format!("baton-{}", std::process::id())),
        max_deliveries: args.max_deliveries.max(1),
        claim_after: args.claim_after,
    };
    baton_server::consume_events(&settings, &consumer, |delivered| async move {
        let event: serde_json::Value =
            serde_json::from_str(&delivered.event).unwrap_or(serde_json::Value::Null);
        let line = serde_json::json!({
            "id": delivered.id,
            "run": delivered.run,
            "type": delivered.kind,
            "event": event,
        });
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => baton_server::Handled::Next,
            // Nobody reads what is printed: left for the group.
            Err(_) => baton_server::Handled::Refused,
        }
    })
    .await
    .map_err(|error| {
        anyhow::anyhow!(
            "reading {} from {}: {error}",
            settings.global_stream(),
            settings.url
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// An empty record beside the files of runs means the database was
/// replaced or emptied: said, rather than shown as "no runs".
fn warn_of_lost_record(state_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("runs")) else {
        return;
    };
    let orphans = entries.filter_map(Result::ok).count();
    if orphans > 0 {
        eprintln!(
            "warning: the record lists no runs, but {} holds the files of {orphans} run(s): \
             its database may have been replaced or emptied (logs are kept there)",
            state_dir.join("runs").display()
        );
    }
}
