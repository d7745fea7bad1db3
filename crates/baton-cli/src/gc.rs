//! `baton gc`: retention for the local store.

use std::process::ExitCode;

use baton_core::Duration;

use baton_engine::wall_clock as now;

use crate::home::Home;

#[derive(clap::Args)]
pub(crate) struct GcArgs {
    /// Delete runs that finished longer ago than this: `30d`, `12h`.
    #[arg(long, value_parser = crate::run::parse_duration, value_name = "AGE")]
    older_than: Duration,
    /// Print what was deleted as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    home: Home,
}

/// Deletes old finished runs, their logs, and artifacts nothing else uses.
pub(crate) async fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let engine = args.home.engine().await?;
    let pruned = engine.prune(args.older_than, now()).await?;
    if args.json {
        crate::out::emit(serde_json::to_string_pretty(&pruned)?);
    } else {
        crate::out::emit(format_args!(
            "deleted {} run(s) that finished over {} ago and {} unreferenced artifact(s); {} freed",
            pruned.runs.len(),
            args.older_than,
            pruned.objects,
            bytes(pruned.bytes)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `512 B`, `3.4 MiB`: sizes for people.
fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
