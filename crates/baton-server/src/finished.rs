//! Finished runs as `GET /api/v1/runs/{id}` shows them: a finished run
//! never changes, so its JSON is built once from its events and kept,
//! bounded (the oldest half goes when it is full).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::body::Bytes;

/// How many finished runs are kept.
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub(crate) struct Finished {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    shown: HashMap<String, Bytes>,
    order: VecDeque<String>,
}

impl Finished {
    pub(crate) fn get(&self, run: &str) -> Option<Bytes> {
        self.lock().shown.get(run).cloned()
    }

    pub(crate) fn put(&self, run: &str, shown: Bytes) {
        let mut kept = self.lock();
        if kept.shown.insert(run.to_owned(), shown).is_none() {
            kept.order.push_back(run.to_owned());
        }
        if kept.order.len() > CAPACITY {
            for _ in 0..CAPACITY / 2 {
                if let Some(old) = kept.order.pop_front() {
                    kept.shown.remove(&old);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
