//! Draining: how a server that is asked to stop (SIGTERM) lets go of its
//! runs without losing or repeating work. Nothing new starts; attempts in
//! flight may finish for a grace period, and each run is handed back at
//! the first clean point after (its ownership released, so another replica
//! takes it at once, or this one after a restart). What is still running
//! when the grace period ends is stopped without a word in the log: it
//! stays in flight there, and whoever goes on with the run runs it again,
//! as after a crash.

use std::time::Duration;

use crate::engine::Engine;
use crate::error::Error;

/// How a drain ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Runs whose attempts were still running when the grace period ended:
    /// stopped and handed back as after a crash.
    pub cut_short: Vec<String>,
}

impl Engine {
    /// Drains this engine: see the module's documentation. Answers once no
    /// run is driven here any more, at the latest soon after `grace`.
    pub async fn drain(&self, grace: Duration) -> Drained {
        self.driven.drain();
        self.dispatcher().stop_taking();
        let mut driven = self.driven.count();
        if tokio::time::timeout(grace, driven.wait_for(|&count| count == 0))
            .await
            .is_ok()
        {
            return Drained::default();
        }
        let left = self.driven.runs();
        for (run, _) in &left {
            // From here on no run of this process records anything, so the
            // stopped attempts stay in flight in the log.
            crate::leftovers::kill_now(run);
        }
        for (run, fence) in &left {
            // A release that fails leaves the run to its lease, which runs
            // out once this process is gone.
            let _ = self.store.release(run, *fence).await;
        }
        Drained {
            cut_short: left.into_iter().map(|(run, _)| run).collect(),
        }
    }

    /// Whether the engine drains (and so starts and resumes no run).
    pub fn is_draining(&self) -> bool {
        self.driven.is_draining()
    }

    pub(crate) fn refuse_when_draining(&self) -> Result<(), Error> {
        if self.is_draining() {
            return Err(Error::Draining);
        }
        Ok(())
    }
}
