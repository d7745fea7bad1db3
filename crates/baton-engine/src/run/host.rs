//! What the loop of one run works with: the engine's configuration,
//! store, global slots and executors, the seam to start child runs, and the
//! registry of driven runs. The engine makes one per run it drives; nothing
//! here knows the engine.

use std::sync::Arc;

use baton_store::Store;
use tokio::sync::Semaphore;

use super::driven::Driven;
use crate::children::Children;
use crate::config::EngineConfig;
use crate::executor::Executors;

#[derive(Clone)]
pub(crate) struct Host {
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) store: Arc<dyn Store>,
    /// Task attempts in flight across every run of the engine.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) executors: Arc<Executors>,
    pub(crate) children: Arc<dyn Children>,
    pub(crate) driven: Arc<Driven>,
}
