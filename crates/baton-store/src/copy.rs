//! Copying what one store keeps into another (`baton migrate`, from the
//! laptop's SQLite file up to a PostgreSQL database): runs with their
//! events, read models, checkpoints and control requests, and the catalog.
//! It goes through the store traits only, so any backend copies to any.

use baton_core::run::Millis;

use crate::owner::Owner;
use crate::{Batch, Error, Result, RunFilter, Store};

/// Events written per batch: a long log is copied in bounded steps.
const CHUNK: usize = 5_000;

/// What became of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copied {
    /// Copied, with this many events.
    Events(u64),
    /// The target already held the run whole (an earlier copy).
    AlreadyThere,
}

/// Every run `from` holds, by id, newest first.
pub async fn run_ids(from: &dyn Store) -> Result<Vec<String>> {
    let filter = RunFilter {
        limit: usize::MAX,
        ..RunFilter::default()
    };
    Ok(from
        .runs(&filter)
        .await?
        .into_iter()
        .map(|run| run.run_id)
        .collect())
}

/// Copies run `run` from `from` into `to` as `owner` (which must have sent
/// `to` a heartbeat), then lets go of it: nobody drives the copy until a
/// process claims it. A run the target holds whole is left as it is; one
/// it holds in part is refused, naming it.
pub async fn copy_run(
    from: &dyn Store,
    to: &dyn Store,
    run: &str,
    owner: &Owner,
    now: Millis,
) -> Result<Copied> {
    let events = from.events(run).await?;
    match to.summary(run).await {
        Ok(there) if there.events == events.len() as u64 => return Ok(Copied::AlreadyThere),
        Ok(_) => return Err(Error::RunExists(run.to_owned())),
        Err(Error::UnknownRun(_)) => {}
        Err(other) => return Err(other),
    }
    let record = from.run(run).await?;
    let tasks = from.tasks(run).await?;
    let attempts = from.attempts(run).await?;
    let artifacts = from.artifacts(run).await?;
    let fence = to.create_run(&record, &owner.id, now).await?;
    let chunks: Vec<&[baton_core::run::Event]> = match events.is_empty() {
        true => vec![&[]],
        false => events.chunks(CHUNK).collect(),
    };
    let last = chunks.len() - 1;
    let mut written = 0;
    for (index, chunk) in chunks.into_iter().enumerate() {
        // The read models go with the last events, as the engine wrote them.
        let batch = match index == last {
            true => Batch {
                events: chunk,
                tasks: &tasks,
                attempts: &attempts,
                artifacts: &artifacts,
            },
            false => Batch {
                events: chunk,
                ..Batch::default()
            },
        };
        to.write(run, written, fence, batch).await?;
        written += chunk.len() as u64;
    }
    for info in from.checkpoints(run).await?.into_iter().rev() {
        let sealed = from.checkpoint(run, info.events).await?;
        to.put_checkpoint(run, fence, &sealed).await?;
    }
    for control in from.controls(run, 0).await? {
        to.request(run, &control).await?;
    }
    to.release(run, fence).await?;
    Ok(Copied::Events(written))
}

/// Copies every workflow version and API key `from` holds that `to` does
/// not, and every schedule tick (so a schedule goes on where it was); the
/// counts of versions and keys copied.
pub async fn copy_catalog(from: &dyn Store, to: &dyn Store) -> Result<(usize, usize)> {
    let mut workflows = 0;
    for latest in from.workflows().await? {
        for version in from.workflow_versions(&latest.name).await? {
            match to.put_workflow(&version).await {
                Ok(()) => workflows += 1,
                Err(Error::VersionExists { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        for tick in from.ticks(&latest.name, usize::MAX).await? {
            to.put_tick(&tick).await?;
        }
    }
    let mut keys = 0;
    for key in from.keys().await? {
        match to.put_key(&key).await {
            Ok(()) => keys += 1,
            Err(Error::KeyExists(_)) => continue,
            Err(other) => return Err(other),
        }
        if let Some(at) = key.revoked_at {
            to.revoke_key(&key.id, at).await?;
        }
    }
    Ok((workflows, keys))
}
