//! The runs this server drives, and their events as they are persisted,
//! for every event stream that follows them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use baton_engine::{RunEvent, RunHandle};
use tokio::sync::broadcast;

/// Events kept for subscribers that fall behind; one that falls further
/// reads the store instead, so nothing is lost either way.
const BACKLOG: usize = 16 * 1024;

/// One persisted event of a run this server drives.
#[derive(Debug)]
pub(crate) struct LiveEvent {
    pub(crate) run: String,
    pub(crate) event: RunEvent,
}

pub(crate) struct Live {
    events: broadcast::Sender<Arc<LiveEvent>>,
    /// Runs this server drives now.
    driven: Mutex<HashSet<String>>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            events: broadcast::channel(BACKLOG).0,
            driven: Mutex::new(HashSet::new()),
        }
    }
}

impl Live {
    /// Takes over a started or resumed run: publishes its events and forgets
    /// it once it ends.
    pub(crate) fn drive(self: &Arc<Self>, mut handle: RunHandle) {
        let run = handle.run_id().to_owned();
        self.lock().insert(run.clone());
        let live = Arc::clone(self);
        tokio::spawn(async move {
            if let Some(events) = handle.events() {
                while let Some(event) = events.recv().await {
                    let published = LiveEvent {
                        run: run.clone(),
                        event,
                    };
                    // No subscriber is not an error: the store has it all.
                    let _ = live.events.send(Arc::new(published));
                }
            }
            match handle.finish().await {
                Ok(_) => {}
                // A drain's clean stop: the run goes on elsewhere.
                Err(error @ baton_engine::Error::HandedBack(_)) => tracing::info!("{error}"),
                Err(error) => tracing::warn!("run {run} stopped: {error}"),
            }
            live.lock().remove(&run);
        });
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.events.subscribe()
    }

    /// How many runs this server drives now.
    pub(crate) fn active(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.driven
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
