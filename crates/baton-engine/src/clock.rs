//! The engine's one source of time. Runs read it to stamp events and sleep
//! until retries and deadlines; tests start it at a fixed instant and run on
//! tokio's paused clock, so no test waits for real time to pass.

use std::time::{SystemTime, UNIX_EPOCH};

use baton_core::run::Millis;
use tokio::time::Instant;

/// Wall time as the engine sees it: a start instant plus tokio's monotonic
/// time since, so it never goes backwards.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
    origin_millis: u64,
}

/// The system's wall time now, for stamps outside a run (keys, retention).
pub fn wall_clock() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64),
    )
}

impl Clock {
    /// The system's wall time.
    pub(crate) fn system() -> Clock {
        Clock::starting_at(wall_clock())
    }

    /// A clock that reads `start` now and advances with tokio's time
    /// (which tests may pause and auto-advance).
    pub(crate) fn starting_at(start: Millis) -> Clock {
        Clock {
            origin: Instant::now(),
            origin_millis: start.0,
        }
    }

    pub(crate) fn now(&self) -> Millis {
        Millis(self.origin_millis + self.origin.elapsed().as_millis() as u64)
    }

    pub(crate) async fn sleep_until(&self, at: Millis) {
        let offset = at.0.saturating_sub(self.origin_millis);
        tokio::time::sleep_until(self.origin + std::time::Duration::from_millis(offset)).await;
    }
}
