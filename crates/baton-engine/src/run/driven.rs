//! The runs an engine drives, each with what wakes it to read its control
//! requests: the engine's watcher of the store's change feed looks a run up
//! here when a request for it arrives.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Driven(Mutex<FxHashMap<String, Arc<Notify>>>);

impl Driven {
    /// Registers a run this engine drives; what wakes it.
    pub(crate) fn register(&self, run: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.lock().insert(run.to_owned(), Arc::clone(&notify));
        notify
    }

    pub(crate) fn forget(&self, run: &str) {
        self.lock().remove(run);
    }

    /// Wakes `run`, if this engine drives it.
    pub(crate) fn wake(&self, run: &str) {
        if let Some(notify) = self.lock().get(run) {
            notify.notify_one();
        }
    }

    /// Wakes every run, to look whether anything arrived.
    pub(crate) fn wake_all(&self) {
        self.lock().values().for_each(|notify| notify.notify_one());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<String, Arc<Notify>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
