//! The runs an engine drives, each with what wakes it to read its control
//! requests and the fence it holds it by: the engine's watcher of the
//! store's change feed looks a run up here when a request for it arrives,
//! and a drain waits here until no run is left and hands back the rest.

use std::sync::{Arc, Mutex};

use baton_store::Fence;
use rustc_hash::FxHashMap;
use tokio::sync::{Notify, watch};

pub(crate) struct Driven {
    runs: Mutex<FxHashMap<String, (Arc<Notify>, Fence)>>,
    /// How many runs are driven, for a drain to wait on.
    count: watch::Sender<usize>,
    /// Set once the engine drains: loops start nothing new and hand their
    /// runs back once their attempts in flight have ended.
    draining: watch::Sender<bool>,
}

impl Default for Driven {
    fn default() -> Driven {
        Driven {
            runs: Mutex::default(),
            count: watch::Sender::new(0),
            draining: watch::Sender::new(false),
        }
    }
}

impl Driven {
    /// Registers a run this engine drives by `fence`; what wakes it.
    pub(crate) fn register(&self, run: &str, fence: Fence) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        let mut runs = self.lock();
        runs.insert(run.to_owned(), (Arc::clone(&notify), fence));
        self.count.send_replace(runs.len());
        notify
    }

    pub(crate) fn forget(&self, run: &str) {
        let mut runs = self.lock();
        runs.remove(run);
        self.count.send_replace(runs.len());
    }

    /// Wakes `run`, if this engine drives it.
    pub(crate) fn wake(&self, run: &str) {
        if let Some((notify, _)) = self.lock().get(run) {
            notify.notify_one();
        }
    }

    /// Wakes every run, to look whether anything arrived.
    pub(crate) fn wake_all(&self) {
        self.lock()
            .values()
            .for_each(|(notify, _)| notify.notify_one());
    }

    /// Every driven run with the fence it is held by.
    pub(crate) fn runs(&self) -> Vec<(String, Fence)> {
        self.lock()
            .iter()
            .map(|(run, (_, fence))| (run.clone(), *fence))
            .collect()
    }

    /// How many runs are driven, as it changes.
    pub(crate) fn count(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// From now on every loop starts nothing new.
    pub(crate) fn drain(&self) {
        self.draining.send_replace(true);
    }

    /// Whether the engine drains now.
    pub(crate) fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Whether the engine drains, as it changes.
    pub(crate) fn draining(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<String, (Arc<Notify>, Fence)>> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
