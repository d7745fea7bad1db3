//! `baton schedules` (what fires next, what the last tick became) and
//! `baton backfill` (a run per past tick): on the local store, or a
//! server's with `--server`.

use std::process::ExitCode;

use baton_server::api::{Backfill, BackfillRequest, ScheduleShown};
use baton_server::{AppState, ServerConfig};

use crate::home::Home;
use crate::remote::Remote;

#[derive(clap::Args)]
pub(crate) struct SchedulesArgs {
    /// How many next fire times to show for each.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    next: u16,
    /// Print them as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    home: Home,
}

#[derive(clap::Args)]
pub(crate) struct BackfillArgs {
    /// The registered workflow whose schedule's ticks to run.
    workflow: String,
    /// The first day (`2026-11-01`) or time (`2026-11-01T02:00`, RFC 3339),
    /// in the schedule's zone.
    #[arg(long, value_name = "DATE|TIME")]
    from: String,
    /// The last day (included to its end) or time.
    #[arg(long, value_name = "DATE|TIME")]
    to: String,
    /// Runs of the backfill unfinished at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: u32,
    #[command(flatten)]
    home: Home,
}

pub(crate) async fn schedules(
    args: SchedulesArgs,
    remote: Option<&Remote>,
) -> anyhow::Result<ExitCode> {
    let count = usize::from(args.next);
    let shown: Vec<ScheduleShown> = match remote {
        Some(remote) => {
            remote
                .get("/schedules", &[("next", count.to_string())])
                .await?
        }
        None => {
            let engine = args.home.engine().await?;
            baton_server::schedules::overview(
                engine.store().as_ref(),
                baton_engine::wall_clock(),
                count,
            )
            .await?
        }
    };
    if args.json {
        crate::out::out!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(ExitCode::SUCCESS);
    }
    if shown.is_empty() {
        crate::out::out!(
            "no schedules: register a workflow with a `schedule:` (cron, timezone, inputs, catch_up, overlap); `baton serve` starts its runs"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "workflow",
        "cron",
        "zone",
        "catch up",
        "overlap",
        "next",
        "last tick",
    ]);
    for schedule in &shown {
        let last = schedule.last.as_ref().map_or_else(String::new, |tick| {
            let run = tick
                .run_id
                .as_deref()
                .map(|run| format!(" {run}"))
                .unwrap_or_default();
            format!("{} {}{run}", tick.tick, tick.outcome)
        });
        table.add_row([
            format!("{}@{}", schedule.workflow, schedule.version),
            schedule.cron.clone(),
            schedule.timezone.clone(),
            schedule.catch_up.clone(),
            schedule.overlap.clone(),
            schedule.next.join("\n"),
            last,
        ]);
    }
    crate::out::out!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn backfill(
    args: BackfillArgs,
    remote: Option<&Remote>,
) -> anyhow::Result<ExitCode> {
    let request = BackfillRequest {
        from: args.from.clone(),
        to: args.to.clone(),
        concurrency: Some(args.concurrency),
    };
    if let Some(remote) = remote {
        let path = format!("/schedules/{}/backfill", args.workflow);
        let answer: Backfill = match remote.post(&path, &request).await? {
            Ok(answer) => answer,
            Err(refused) => anyhow::bail!("{refused}"),
        };
        for tick in &answer.ticks {
            crate::out::out!(
                "{}  {}",
                tick.tick,
                tick.run_id.as_deref().unwrap_or_default()
            );
        }
        crate::out::out!(
            "{} tick(s) of {}@{}: the server starts their runs, {} at once (ticks that ran already are not run again); `baton runs --workflow {}` follows them",
            answer.ticks.len(),
            answer.workflow,
            answer.version,
            answer.concurrency,
            answer.workflow
        );
        return Ok(ExitCode::SUCCESS);
    }
    let engine = args.home.engine().await?;
    let app = AppState::new(engine, ServerConfig::default());
    let planned = baton_server::schedules::planned(&app, &args.workflow, &request)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    if planned.ticks.is_empty() {
        crate::out::out!(
            "no tick of {}'s schedule falls in that range",
            args.workflow
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut runs = Vec::new();
    let timetable = planned.timetable.clone();
    baton_server::schedules::backfill::run(
        &app,
        &planned,
        args.concurrency as usize,
        true,
        |tick, run, new| {
            let what = if new { "started" } else { "ran already" };
            crate::out::out!("{}  {run}  {what}", timetable.local(tick));
            runs.push(run.to_owned());
        },
    )
    .await?;
    let mut failed = 0;
    for run in &runs {
        if app.store().summary(run).await?.status != baton_core::run::RunStatus::Succeeded {
            failed += 1;
        }
    }
    crate::out::out!(
        "backfill of {}: {} run(s), {} succeeded, {failed} did not",
        args.workflow,
        runs.len(),
        runs.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
