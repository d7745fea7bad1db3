//! In-process handlers: Rust functions a program registers by name and
//! tasks select with `handler: NAME`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use baton_core::run::{Failure, FailureKind, Work};
use serde_json::Value;

use super::job::{Attempt, Executor, Kill, Outcome, TaskContext, bounded};

/// What a handler returns: its output (`Value::Null` for none) or an error.
pub type HandlerResult = Result<Value, HandlerError>;

/// A handler's error; anything that displays converts into one.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

/// A registered function, blocking or async.
#[derive(Clone)]
pub enum Handler {
    /// Runs on tokio's blocking pool; a timeout or kill abandons it (it
    /// cannot be interrupted) and the run moves on.
    Blocking(Arc<dyn Fn(TaskContext) -> HandlerResult + Send + Sync>),
    Async(Arc<dyn Fn(TaskContext) -> BoxFuture + Send + Sync>),
}

impl Handler {
    pub fn blocking(
        function: impl Fn(TaskContext) -> HandlerResult + Send + Sync + 'static,
    ) -> Self {
        Handler::Blocking(Arc::new(function))
    }

    pub fn asynchronous<F, Fut>(function: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        Handler::Async(Arc::new(move |context| Box::pin(function(context))))
    }

    pub(crate) async fn call(&self, context: TaskContext) -> Outcome {
        let result = match self {
            Handler::Blocking(function) => {
                let function = Arc::clone(function);
                match tokio::task::spawn_blocking(move || function(context)).await {
                    Ok(result) => result,
                    Err(error) => Err(format!("the handler panicked: {error}").into()),
                }
            }
            Handler::Async(function) => function(context).await,
        };
        match result {
            Ok(Value::Null) => Outcome::Succeeded(None),
            Ok(output) => Outcome::Succeeded(Some(output)),
            Err(error) => Outcome::Failed(Failure::new(FailureKind::Error, error.to_string())),
        }
    }
}

/// Handlers by name.
pub(crate) type Handlers = HashMap<String, Handler>;

/// Runs `handler:` tasks: the function registered under the task's name,
/// in this process.
#[derive(Clone, Default)]
pub(crate) struct InProcess {
    pub(crate) handlers: Arc<RwLock<Handlers>>,
}

impl InProcess {
    fn handler(&self, name: &str) -> Option<Handler> {
        self.handlers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }
}

#[async_trait]
impl Executor for InProcess {
    async fn execute(&self, attempt: Attempt, kill: Kill) -> Outcome {
        let Work::Handler(name) = &attempt.resolved.work else {
            return Outcome::Failed(Failure::new(
                FailureKind::Error,
                "only `handler` tasks run in process",
            ));
        };
        match self.handler(name) {
            Some(handler) => {
                bounded(handler.call(attempt.context.clone()), attempt.timeout, kill).await
            }
            None => Outcome::Failed(Failure::new(
                FailureKind::Error,
                format!("no handler named `{name}` is registered"),
            )),
        }
    }
}
