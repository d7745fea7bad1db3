//! Runs as readers see them: a run's state rebuilt once (from its newest
//! checkpoint and the events after it) and then brought up to date with
//! only the events appended since, which the store's change feed says are
//! there. A `GET` of a running run of 100,000 tasks, or the check of a
//! control request, no longer replays the run; it reads what changed, off
//! the runtime's threads. Works the same for runs this process drives and
//! runs another process (or replica) drives.
//!
//! The cache is bounded by count and by tasks; the least recently read
//! view goes first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use baton_core::run::{Event, RunState};
use baton_store::{Change, Store};
use tokio::sync::broadcast::error::RecvError;

use crate::config::setup_of;
use crate::error::Error;
use crate::handle::Recovery;
use crate::report::RunReport;

/// Views kept at most, and tasks across them.
const MAX_VIEWS: usize = 256;
const MAX_TASKS: usize = 4_000_000;

/// A run as of some event: its state folded that far, and its report,
/// made the first time it is asked for (a control's check needs only the
/// state).
pub struct View {
    /// Events folded into it.
    pub events: u64,
    /// The registered workflow version the run was started from.
    pub workflow_version: Option<u32>,
    pub(crate) state: Arc<RunState>,
    state_dir: std::path::PathBuf,
    report: tokio::sync::OnceCell<Arc<RunReport>>,
}

impl View {
    /// The run's report as of this view, made off the runtime's threads.
    pub async fn report(&self) -> Result<Arc<RunReport>, Error> {
        self.report
            .get_or_try_init(|| async {
                let state = Arc::clone(&self.state);
                let state_dir = self.state_dir.clone();
                tokio::task::spawn_blocking(move || {
                    Arc::new(RunReport::from_state(&state, &state_dir))
                })
                .await
                .map_err(|error| Error::Aborted(error.to_string()))
            })
            .await
            .cloned()
    }
}

/// The views of this engine's readers.
pub(crate) struct Views {
    store: Arc<dyn Store>,
    state_dir: std::path::PathBuf,
    kept: Mutex<Kept>,
    /// Set once the change feed is followed.
    following: std::sync::Once,
}

#[derive(Default)]
struct Kept {
    entries: HashMap<String, Arc<Entry>>,
    /// Bumped on every read, to find the least recently read.
    clock: u64,
}

/// One run's view, updated by one reader at a time.
struct Entry {
    /// The highest event count the change feed has told of.
    known: AtomicU64,
    read_at: AtomicU64,
    tasks: usize,
    current: tokio::sync::Mutex<Option<Arc<View>>>,
}

impl Views {
    pub(crate) fn new(store: Arc<dyn Store>, state_dir: std::path::PathBuf) -> Views {
        Views {
            store,
            state_dir,
            kept: Mutex::default(),
            following: std::sync::Once::new(),
        }
    }

    /// `run` as of the latest event the store holds (as far as its change
    /// feed has told; without a feed, as of the run's recorded count).
    pub(crate) async fn view(self: &Arc<Self>, run: &str) -> Result<Arc<View>, Error> {
        self.follow();
        let entry = self.entry(run).await?;
        let mut current = entry.current.lock().await;
        let known = entry.known.load(Ordering::Relaxed);
        if let Some(view) = current.as_ref()
            && view.events >= known
        {
            return Ok(Arc::clone(view));
        }
        let updated = match current.take() {
            Some(view) => self.update(run, view).await,
            None => self.rebuild(run).await,
        };
        let view = updated?;
        entry.known.fetch_max(view.events, Ordering::Relaxed);
        *current = Some(Arc::clone(&view));
        Ok(view)
    }

    /// The entry of `run`, made (and room made for it) if it has none.
    async fn entry(&self, run: &str) -> Result<Arc<Entry>, Error> {
        if let Some(entry) = self.touch(run) {
            return Ok(entry);
        }
        let summary = self.store.summary(run).await?;
        let record = self.store.run(run).await?;
        let entry = Arc::new(Entry {
            known: AtomicU64::new(summary.events),
            read_at: AtomicU64::new(0),
            tasks: record.workflow.tasks.len(),
            current: tokio::sync::Mutex::new(None),
        });
        let mut kept = self.lock();
        let entry = Arc::clone(kept.entries.entry(run.to_owned()).or_insert(entry));
        kept.clock += 1;
        entry.read_at.store(kept.clock, Ordering::Relaxed);
        kept.make_room();
        Ok(entry)
    }

    fn touch(&self, run: &str) -> Option<Arc<Entry>> {
        let mut kept = self.lock();
        kept.clock += 1;
        let clock = kept.clock;
        let entry = kept.entries.get(run)?;
        entry.read_at.store(clock, Ordering::Relaxed);
        Some(Arc::clone(entry))
    }

    /// The view of a run no one has read yet: from its newest sound
    /// checkpoint and the events after it.
    async fn rebuild(&self, run: &str) -> Result<Arc<View>, Error> {
        let (state, recovery) = rebuild(self.store.as_ref(), run).await?;
        let version = self.store.run(run).await?.workflow_version;
        Ok(self.made(Arc::new(state), recovery.events(), version))
    }

    /// `view` with the events appended since folded in.
    async fn update(&self, run: &str, view: Arc<View>) -> Result<Arc<View>, Error> {
        let events = self.store.events_from(run, view.events).await?;
        if events.is_empty() {
            return Ok(view);
        }
        let (first, version) = (view.events, view.workflow_version);
        // Folded in place when no reader still holds the view (the usual
        // case), copied otherwise.
        let state = match Arc::try_unwrap(view) {
            Ok(view) => view.state,
            Err(view) => Arc::clone(&view.state),
        };
        let run_id = run.to_owned();
        let folded = tokio::task::spawn_blocking(move || {
            let mut state = Arc::unwrap_or_clone(state);
            fold(&mut state, &run_id, first, &events)?;
            Ok::<_, Error>((state, first + events.len() as u64, version))
        })
        .await
        .map_err(|error| Error::Aborted(error.to_string()))??;
        let (state, events, version) = folded;
        Ok(self.made(Arc::new(state), events, version))
    }

    /// The view of `state` after `events` events.
    fn made(&self, state: Arc<RunState>, events: u64, workflow_version: Option<u32>) -> Arc<View> {
        Arc::new(View {
            events,
            workflow_version,
            state,
            state_dir: self.state_dir.clone(),
            report: tokio::sync::OnceCell::new(),
        })
    }

    /// Follows the store's change feed from now on (once), so views know
    /// when their run has moved on.
    fn follow(self: &Arc<Self>) {
        self.following.call_once(|| {
            tokio::spawn(track(Arc::downgrade(self), self.store.changes()));
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Kept {
    /// Drops the least recently read views past the bounds.
    fn make_room(&mut self) {
        let mut tasks: usize = self.entries.values().map(|entry| entry.tasks).sum();
        while self.entries.len() > MAX_VIEWS || (tasks > MAX_TASKS && self.entries.len() > 1) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.read_at.load(Ordering::Relaxed))
                .map(|(run, _)| run.clone());
            let Some(oldest) = oldest else {
                return;
            };
            if let Some(entry) = self.entries.remove(&oldest) {
                tasks -= entry.tasks;
            }
        }
    }
}

/// Marks the views whose run the change feed says moved on; after missed
/// changes, every view checks the store on its next read.
async fn track(views: Weak<Views>, mut changes: tokio::sync::broadcast::Receiver<Change>) {
    loop {
        let change = changes.recv().await;
        let Some(views) = views.upgrade() else {
            return;
        };
        let kept = views.lock();
        match change {
            Ok(Change::Appended { run, events, .. }) => {
                if let Some(entry) = kept.entries.get(&*run) {
                    entry.known.fetch_max(events, Ordering::Relaxed);
                }
            }
            Ok(Change::Requested { .. }) => {}
            Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => {
                for entry in kept.entries.values() {
                    entry.known.store(u64::MAX, Ordering::Relaxed);
                }
                if matches!(change, Err(RecvError::Closed)) {
                    return;
                }
            }
        }
    }
}

/// A recorded run's state, rebuilt from its newest sound checkpoint and
/// the events after it (or all its events), and how it was rebuilt. The
/// checking of the workflow and the folding run off the runtime's threads.
pub(crate) async fn rebuild(
    store: &dyn Store,
    run_id: &str,
) -> Result<(RunState, Recovery), Error> {
    let record = store.run(run_id).await?;
    let mut sealed = Vec::new();
    for info in store.checkpoints(run_id).await? {
        sealed.push((info.events, store.checkpoint(run_id, info.events).await));
    }
    let workflow = Arc::unwrap_or_clone(Arc::clone(&record.workflow));
    let setup = setup_of(&record);
    let (mut state, recovery) = tokio::task::spawn_blocking(move || {
        let valid = Arc::new(baton_core::check(workflow).map_err(Error::Invalid)?);
        let mut recovery = Recovery::default();
        for (events, stored) in sealed {
            let opened = stored
                .map_err(|error| error.to_string())
                .and_then(|sealed| sealed.open().map_err(|error| error.to_string()))
                .and_then(|snapshot| {
                    RunState::restore(Arc::clone(&valid), setup.clone(), snapshot)
                        .map_err(|error| error.to_string())
                });
            match opened {
                Ok(state) => {
                    recovery.checkpoint = Some(events);
                    return Ok::<_, Error>((state, recovery));
                }
                Err(error) => {
                    metrics::counter!("baton_checkpoints_rejected_total").increment(1);
                    recovery
                        .rejected
                        .push(format!("the checkpoint at event {events}: {error}"));
                }
            }
        }
        Ok((RunState::new(valid, setup), recovery))
    })
    .await
    .map_err(|error| Error::Aborted(error.to_string()))??;
    let from = recovery.checkpoint.unwrap_or(0);
    let events = store.events_from(run_id, from).await?;
    let run = run_id.to_owned();
    tokio::task::spawn_blocking(move || {
        fold(&mut state, &run, from, &events)?;
        let recovery = Recovery {
            replayed: events.len() as u64,
            ..recovery
        };
        Ok((state, recovery))
    })
    .await
    .map_err(|error| Error::Aborted(error.to_string()))?
}

/// Folds `events`, the log's `first` onwards, into `state`; one that
/// cannot follow is the log's corruption, named by run and position.
fn fold(state: &mut RunState, run: &str, first: u64, events: &[Event]) -> Result<(), Error> {
    for (offset, event) in events.iter().enumerate() {
        state.apply(event).map_err(|why| Error::Corrupt {
            run: run.to_owned(),
            seq: first + offset as u64,
            why,
        })?;
    }
    Ok(())
}
