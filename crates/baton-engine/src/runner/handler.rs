//! In-process handlers: Rust functions a program registers by name and
//! tasks select with `handler: NAME`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use baton_core::run::{Failure, FailureKind};
use serde_json::Value;

use super::Outcome;

/// What a handler returns: its output (`Value::Null` for none) or an error.
pub type HandlerResult = Result<Value, HandlerError>;

/// A handler's error; anything that displays converts into one.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

/// What a handler gets to work with.
#[derive(Clone, Debug)]
pub struct TaskContext {
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    /// `run:task:attempt`, stable across a replay, for de-duplicating side effects.
    pub idempotency_key: String,
    /// The run's inputs.
    pub inputs: Value,
    /// Outputs of the tasks this one needs, by task id.
    pub needs: serde_json::Map<String, Value>,
    /// The task's `env`, rendered.
    pub env: Vec<(String, String)>,
}

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
