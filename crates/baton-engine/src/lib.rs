//! baton's engine: runs a checked workflow for real.
//!
//! The pure [`RunState`](baton_core::run::RunState) decides; this crate does.
//! Its one loop (the `run` module) persists each batch of events to a
//! [`Store`](baton_store::Store) before acting on it, applies them, asks the
//! state for commands, and hands work to runners: processes in their own
//! process groups, HTTP calls, in-process [`Handler`]s.
//!
//! - [`Engine`] holds configuration, handlers and the global concurrency limit.
//! - [`Engine::run`] runs a workflow to its end and returns a [`RunReport`].
//! - [`Engine::start`] returns a [`RunHandle`] with an event stream and a
//!   [`Canceller`].
//!
//! ```no_run
//! # async fn example() -> Result<(), baton_engine::Error> {
//! use baton_core::{TaskKind, Workflow};
//! use baton_engine::{Engine, EngineConfig, Handler};
//!
//! let engine = Engine::new(EngineConfig::default());
//! engine.register("greet", Handler::blocking(|task| Ok(serde_json::json!({"hello": task.task_id}))));
//! let workflow = Workflow::builder("hello")
//!     .task("greet", TaskKind::Handler("greet".into()))
//!     .task("echo", TaskKind::run("echo done"))
//!     .needs(["greet"])
//!     .build()
//!     .expect("a valid workflow");
//! let report = engine.run(workflow.into_workflow(), Default::default()).await?;
//! assert!(report.succeeded());
//! # Ok(())
//! # }
//! ```

mod artifacts;
mod audit;
mod breaker;
mod children;
mod clock;
mod config;
mod drain;
mod engine;
mod error;
mod executor;
mod handle;
mod leftovers;
pub mod logs;
mod net_guard;
mod pin;
mod reference;
mod registry;
pub mod remote;
mod report;
mod rerun;
mod retention;
mod run;
mod runnable;
mod spans;
mod uses;
mod views;

pub use artifacts::ArtifactError;
pub use audit::{Mismatch, ProvenanceChain, Verification};
pub use baton_store::Reuse;
pub use breaker::{BreakerChange, BreakerSettings, BreakerState};
pub use clock::wall_clock;
pub use config::{AgentProvider, EngineConfig, RunOptions};
pub use drain::Drained;
pub use engine::{Engine, http_client};
pub use error::Error;
pub use executor::{EndpointError, Handler, HandlerError, HandlerResult, TaskContext};
pub use handle::{Canceller, Recovery, RunEvent, RunHandle};
pub use leftovers::kill_now;
pub use pin::workflow_dirs;
pub use registry::{AgentHealth, AgentKind, AgentStatus};
pub use remote::{Dispatcher, WorkerError, WorkerSettings};
pub use report::{ApprovalRequest, RunReport, TaskReport};
pub use retention::Pruned;
pub use run::report_metrics;
pub use spans::{FinishedSpan, SpanKind, SpanSink, SpanValue};
pub use uses::{expand_templates, has_uses, template_dirs};
pub use views::View;
