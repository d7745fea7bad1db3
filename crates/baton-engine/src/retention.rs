//! Retention (`baton gc`): finished runs past their age leave the store
//! with their logs, then the artifact objects no remaining run refers to.

use std::collections::HashSet;
use std::time::{Duration as StdDuration, UNIX_EPOCH};

use baton_core::Duration;
use baton_core::run::Millis;
use baton_store::RunFilter;
use serde::Serialize;

use crate::artifacts::Cas;
use crate::engine::Engine;
use crate::error::Error;

/// What a sweep removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// The runs deleted, newest first.
    pub runs: Vec<String>,
    /// Artifact objects no run refers to any more.
    pub objects: u64,
    /// Bytes of artifact objects and log files freed.
    pub bytes: u64,
}

impl Engine {
    /// Deletes every run that finished more than `older_than` before `now`:
    /// its record, events, read models and log files; then the artifact
    /// objects that no remaining run refers to and that are themselves that
    /// old (a younger one may belong to an attempt not yet recorded).
    pub async fn prune(&self, older_than: Duration, now: Millis) -> Result<Pruned, Error> {
        let cutoff = Millis(now.0.saturating_sub(older_than.as_millis()));
        let filter = RunFilter {
            finished_before: Some(cutoff),
            limit: usize::MAX,
            ..RunFilter::default()
        };
        let listed: Vec<String> = self
            .store
            .runs(&filter)
            .await?
            .into_iter()
            .map(|run| run.run_id)
            .collect();
        // Sent together, the deletions share the writer's transactions.
        let deletions = listed.iter().map(|run| self.store.delete_run(run));
        let deleted = futures_util::future::join_all(deletions).await;
        let mut runs = Vec::with_capacity(listed.len());
        for (run, deleted) in listed.iter().zip(deleted) {
            match deleted {
                Ok(()) => runs.push(run.clone()),
                // Another process (a server replica on the same database)
                // pruned it first: it is gone, which is what was asked.
                Err(baton_store::Error::UnknownRun(_)) => {}
                Err(other) => return Err(other.into()),
            }
        }
        let mut pruned = Pruned {
            runs,
            ..Pruned::default()
        };
        for run in &pruned.runs {
            let dir = self.config.state_dir.join("runs").join(run);
            let removed = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || remove_dir(&dir)
            })
            .await?;
            pruned.bytes += removed.map_err(|source| Error::Files { path: dir, source })?;
        }
        let keep: HashSet<_> = self.store.artifact_digests().await?.into_iter().collect();
        let before = UNIX_EPOCH + StdDuration::from_millis(cutoff.0);
        let cas = Cas::new(&self.config.state_dir);
        let swept = tokio::task::spawn_blocking(move || cas.sweep(&keep, before)).await??;
        pruned.objects = swept.objects;
        pruned.bytes += swept.bytes;
        Ok(pruned)
    }
}

/// Removes `dir` and what it holds; the bytes its files held.
fn remove_dir(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let entries = match std::fs::read_dir(&next) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                bytes += entry.metadata()?.len();
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(bytes),
    }
}
