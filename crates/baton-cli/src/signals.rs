//! Ctrl-C and SIGTERM for the long-running commands, listened for from the
//! moment a [`Stop`] is made: made before `baton serve` says it serves, a
//! signal that comes right after is a stop, never the default (death).

use tokio::signal::unix::{Signal, SignalKind, signal};

pub(crate) struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    pub(crate) fn listen() -> std::io::Result<Stop> {
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next Ctrl-C or SIGTERM.
    pub(crate) async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
