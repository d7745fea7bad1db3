//! `baton migrate`: moving up from the laptop's SQLite file to a
//! PostgreSQL database (or between any two stores), with every copied run
//! verified against its original.

use anyhow::Context;
use baton_engine::Engine;
use baton_store::copy::{Copied, copy_catalog, copy_run, run_ids};
use baton_store::{Owner, Presence};
use std::process::ExitCode;

use crate::home::{Home, open};

#[derive(clap::Args)]
pub(crate) struct MigrateArgs {
    /// The store to copy from: a SQLite file or a `postgres://` URL.
    #[arg(long, value_name = "PATH|URL")]
    from: String,
    /// The store to copy into (created or upgraded as needed).
    #[arg(long, value_name = "PATH|URL")]
    to: String,
    #[command(flatten)]
    home: Home,
}

pub(crate) async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.from != args.to, "--from and --to name the same store");
    let settings = args.home.settings()?;
    let connections = settings.store.connections;
    let from = open(&args.from, connections)
        .await
        .with_context(|| format!("cannot open {}", args.from))?;
    let to = open(&args.to, connections)
        .await
        .with_context(|| format!("cannot open {}", args.to))?;
    let (workflows, keys) = copy_catalog(from.as_ref(), to.as_ref()).await?;
    let presence = Presence::new(Owner::this_process());
    let now = baton_engine::wall_clock();
    to.heartbeat(presence.owner(), now, baton_core::Duration::from_secs(3600))
        .await?;
    let runs = run_ids(from.as_ref()).await?;
    let (mut copied, mut there, mut events) = (0, 0, 0);
    for run in &runs {
        match copy_run(from.as_ref(), to.as_ref(), run, presence.owner(), now)
            .await
            .with_context(|| format!("cannot copy run {run}"))?
        {
            Copied::Events(count) => {
                copied += 1;
                events += count;
            }
            Copied::AlreadyThere => there += 1,
        }
    }
    println!(
        "copied {copied} run(s) with {events} event(s), {workflows} workflow version(s), \
         {keys} API key(s){}",
        if there > 0 {
            format!("; {there} run(s) were there already")
        } else {
            String::new()
        }
    );
    // Engines that only read: what `baton verify` uses.
    let (original, copy) = (
        Engine::with_store(settings.engine_config(), from),
        Engine::with_store(settings.engine_config(), to),
    );
    let mut unsound = 0;
    for run in &runs {
        let (before, after) = (original.verify(run).await?, copy.verify(run).await?);
        if !after.is_sound() || after.root != before.root || after.events != before.events {
            unsound += 1;
            eprintln!(
                "MISMATCH: run {run}: the copy has {} events and root {}, the original {} and {}",
                after.events, after.root, before.events, before.root
            );
        }
    }
    if unsound > 0 {
        eprintln!("error: {unsound} copied run(s) do not verify against their originals");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "verified {} run(s): every event follows the last and every provenance root matches the original's",
        runs.len()
    );
    Ok(ExitCode::SUCCESS)
}
