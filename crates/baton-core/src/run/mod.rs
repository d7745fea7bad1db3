//! A run as a pure state machine, and what it needs to decide: events,
//! backoff, templates.
//!
//! The shell (baton-engine) drives it in a loop: turn what happened into
//! [`Event`]s, persist them, [`RunState::apply`] them, ask
//! [`RunState::decide`] for [`Command`]s, record each command's event, then
//! act. Nothing in here reads a clock or does I/O.
//!
//! ```
//! use std::sync::Arc;
//! use baton_core::run::{Budget, Command, Event, Millis, RunSetup, RunState};
//!
//! let valid = baton_core::check_source("name: two\ntasks:\n  a: {noop: true}\n  b: {noop: true, needs: [a]}\n", baton_core::Format::Yaml).unwrap();
//! let mut state = RunState::new(Arc::new(valid), RunSetup::default());
//! state.apply(&Event::RunStarted { at: Millis(0) });
//! let mut commands = Vec::new();
//! state.decide(Millis(0), Budget::default(), &mut commands);
//! assert_eq!(commands, [Command::Dispatch { task: 0, attempt: 1 }]);
//! ```

mod backoff;
mod control;
mod digest;
mod event;
mod id;
mod provenance;
mod resolve;
mod state;
mod swarm;
mod templates;
mod trace;
pub mod trace_context;

pub use backoff::{retries, retry_delay};
pub use control::{Control, ControlError, Decision};
pub use digest::{BadDigest, Digest, Hasher};
pub use event::{Artifact, Event, Failure, FailureKind, Millis, RunStatus, SkipReason};
pub use id::{MAX_RUN_ID, run_id_problem};
pub use provenance::{Chain, Provenance, WorkDigests, cache_key};
pub use resolve::{
    AgentCall, ChildRun, ChildWorkflow, HttpBody, HttpCall, McpCall, Resolved, Route, Work,
};
pub use state::{
    Budget, Command, CopyOutputs, Inadmissible, Iteration, RunMetrics, RunSetup, RunState, Sealed,
    Snapshot, SnapshotError, TaskStatus, Usage,
};
pub use swarm::{Reduction, Vote};
pub use templates::{ShellScript, TemplateError, VALUE_PREFIX, render_value};
pub use trace::{Divergence, Trace, replay};
