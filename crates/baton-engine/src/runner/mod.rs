//! Runners do one attempt of one task and report an [`Outcome`]: a process
//! (`run`, `command`), an HTTP call, an in-process handler. Each honours its
//! timeout and a kill signal from the run loop.

mod handler;
mod http;
mod process;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use baton_core::Duration;
use baton_core::run::{Failure, FailureKind, Resolved, Work};
use serde_json::Value;
use tokio::sync::oneshot;

pub(crate) use handler::Handlers;
pub use handler::{Handler, HandlerError, HandlerResult, TaskContext};

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Succeeded(Option<Value>),
    Failed(Failure),
    /// Stopped by the run loop (cancellation, fail-fast).
    Cancelled,
}

/// Everything a runner needs for one attempt.
pub(crate) struct Attempt {
    pub(crate) resolved: Resolved,
    pub(crate) context: TaskContext,
    /// Where logs and `$BATON_OUTPUT` go.
    pub(crate) dir: PathBuf,
    /// The working directory relative paths start from.
    pub(crate) workdir: PathBuf,
    pub(crate) timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub(crate) grace: Duration,
}

impl Attempt {
    /// Where the attempt's process starts and its artifacts are found.
    pub(crate) fn working_dir(&self) -> PathBuf {
        match &self.resolved.cwd {
            Some(cwd) => self.workdir.join(cwd),
            None => self.workdir.clone(),
        }
    }
}

/// Shared by every attempt of an engine.
pub(crate) struct Runners {
    pub(crate) handlers: Arc<RwLock<Handlers>>,
    pub(crate) http: reqwest::Client,
}

impl Runners {
    pub(crate) async fn run(&self, attempt: Attempt, kill: oneshot::Receiver<()>) -> Outcome {
        match &attempt.resolved.work {
            Work::Shell(_) | Work::Command(_) => process::run(&attempt, kill).await,
            Work::Http(call) => bounded(http::call(&self.http, call), attempt.timeout, kill).await,
            Work::Handler(name) => match self.handler(name) {
                Some(handler) => {
                    bounded(handler.call(attempt.context.clone()), attempt.timeout, kill).await
                }
                None => Outcome::Failed(Failure::new(
                    FailureKind::Error,
                    format!("no handler named `{name}` is registered"),
                )),
            },
            Work::Noop => Outcome::Succeeded(None),
        }
    }

    fn handler(&self, name: &str) -> Option<Handler> {
        self.handlers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }
}

/// Runs `work` until it ends, its timeout passes or the loop kills it;
/// dropping the future is how an in-process attempt stops.
async fn bounded(
    work: impl Future<Output = Outcome>,
    timeout: Option<Duration>,
    kill: oneshot::Receiver<()>,
) -> Outcome {
    let limit = async {
        match timeout {
            Some(after) => tokio::time::sleep(after.as_std()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        outcome = work => outcome,
        () = limit => Outcome::Failed(timed_out(timeout)),
        Ok(()) = kill => Outcome::Cancelled,
    }
}

fn timed_out(timeout: Option<Duration>) -> Failure {
    let after = timeout.unwrap_or(Duration::ZERO);
    Failure::new(FailureKind::Timeout, format!("timed out after {after}"))
}
