//! A driven run's control requests: read where it left off when the
//! store's change feed says one arrived, each recorded as it is applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use baton_core::run::{Event, Millis, RunState};
use baton_store::Fence;
use tokio::sync::Notify;

use super::host::Host;
use super::record::Recorder;
use crate::error::Error;

/// The run's control requests: where it reads on from, and what wakes it
/// when one arrives. Dropped with the loop, so an engine forgets the runs
/// it no longer drives however the loop ends.
pub(crate) struct Controls<'a> {
    host: &'a Host,
    run: String,
    next: AtomicU64,
    pub(crate) wake: Arc<Notify>,
}

impl<'a> Controls<'a> {
    pub(crate) fn new(host: &'a Host, state: &RunState, fence: Fence) -> Controls<'a> {
        Controls {
            host,
            run: state.run_id().to_owned(),
            next: AtomicU64::new(state.controls_read()),
            wake: host.driven.register(state.run_id(), fence),
        }
    }

    /// Reads each new request and applies it, with what it changes, to
    /// `state`; returns those events, the log's `first` onwards, to be
    /// persisted. The position of every request read is in the log, so a
    /// resumed run neither misses nor repeats one; each is checked against
    /// the state the ones before it left, so they apply in the order they
    /// were asked. A request that no longer applies (its approval was
    /// decided meanwhile) changes nothing. A store that cannot answer is
    /// asked again the next time the run is woken.
    pub(crate) async fn read(
        &self,
        state: &mut RunState,
        recorder: &mut Recorder,
        at: Millis,
        first: u64,
    ) -> Result<Vec<Event>, Error> {
        let from = self.next.load(Ordering::Relaxed);
        let Ok(controls) = self.host.store.controls(&self.run, from).await else {
            return Ok(Vec::new());
        };
        let mut read = Vec::new();
        for control in controls {
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            let effects = state.control(&control, at).unwrap_or_default();
            let received = Event::ControlReceived {
                at,
                seq,
                control: Box::new(control),
            };
            for event in std::iter::once(received).chain(effects) {
                let position = first + read.len() as u64;
                recorder
                    .apply(state, &event)
                    .map_err(|why| Error::Corrupt {
                        run: self.run.clone(),
                        seq: position,
                        why,
                    })?;
                read.push(event);
            }
        }
        Ok(read)
    }
}

impl Drop for Controls<'_> {
    fn drop(&mut self) {
        self.host.driven.forget(&self.run);
    }
}
