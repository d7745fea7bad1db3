//! The in-memory store: one vector of events per run behind a mutex.

use std::collections::HashMap;
use std::sync::Mutex;

use baton_core::run::Event;

use crate::{Appended, Error, Result, Store};

#[derive(Debug, Default)]
pub struct MemoryStore {
    logs: Mutex<HashMap<String, Vec<Event>>>,
}

impl Store for MemoryStore {
    fn append(&self, run: &str, first_seq: u64, events: &[Event]) -> Appended {
        Appended::done(self.append_now(run, first_seq, events))
    }

    fn events(&self, run: &str) -> Result<Vec<Event>> {
        let logs = self
            .logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        logs.get(run)
            .cloned()
            .ok_or_else(|| Error::UnknownRun(run.to_owned()))
    }
}

impl MemoryStore {
    fn append_now(&self, run: &str, first_seq: u64, events: &[Event]) -> Result<()> {
        let mut logs = self
            .logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let log = match logs.get_mut(run) {
            Some(log) => log,
            None => logs.entry(run.to_owned()).or_default(),
        };
        if log.len() as u64 != first_seq {
            return Err(Error::Conflict {
                run: run.to_owned(),
                expected: first_seq,
                actual: log.len() as u64,
            });
        }
        log.extend_from_slice(events);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use baton_core::run::Millis;

    use super::*;

    #[test]
    fn an_append_at_the_wrong_position_is_refused_and_changes_nothing() {
        let store = MemoryStore::default();
        let started = Event::RunStarted { at: Millis(1) };
        store
            .append("r", 0, std::slice::from_ref(&started))
            .wait()
            .unwrap();
        let error = store
            .append("r", 0, std::slice::from_ref(&started))
            .wait()
            .unwrap_err();
        assert!(
            matches!(error, Error::Conflict { actual: 1, .. }),
            "{error}"
        );
        assert_eq!(store.events("r").unwrap(), [started]);
        assert!(matches!(store.events("other"), Err(Error::UnknownRun(_))));
    }
}
