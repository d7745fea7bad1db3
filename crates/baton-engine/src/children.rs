//! The seam through which a run starts runs of its own: a sub-workflow's
//! attempt, spawned tasks, and the undoing of such a run when its parent
//! compensates. The engine implements it; what runs attempts and drives
//! runs depends only on this trait, never on the engine itself.

use async_trait::async_trait;
use baton_core::Workflow;

use crate::config::RunOptions;
use crate::error::Error;
use crate::handle::RunHandle;

/// Starts and continues child runs on the engine that drives their parent.
#[async_trait]
pub(crate) trait Children: Send + Sync {
    /// Checks `workflow` and starts it as a new run.
    async fn start(&self, workflow: Workflow, options: RunOptions) -> Result<RunHandle, Error>;

    /// Continues a recorded run (a finished one just reports).
    async fn resume(&self, run: &str) -> Result<RunHandle, Error>;

    /// Undoes a run that succeeded, as its parent's compensation asks.
    async fn compensate(&self, run: &str) -> Result<RunHandle, Error>;

    /// The store child runs are recorded in.
    fn store(&self) -> &dyn baton_store::Store;
}
