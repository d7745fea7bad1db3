//! baton's pure core: the workflow spec, its loading, checking and planning.
//!
//! Nothing here does I/O, reads a clock or draws randomness; everything takes
//! data and returns data, so the engine, the server and the CLI share one
//! definition of what a valid workflow is.
//!
//! - [`Workflow`] and [`Task`] are the spec as typed values ([`spec`]).
//! - [`load`] reads YAML or JSON text into a workflow plus [`Problem`]s.
//! - [`check()`] validates a workflow and compiles its DAG ([`Dag`]).
//! - [`Plan`] orders a valid DAG: levels, critical path, width.
//!
//! ```
//! use baton_core::{Format, check_source};
//!
//! let text = "name: hello\ntasks:\n  a: {run: echo a}\n  b: {run: echo b, needs: [a]}\n";
//! let valid = check_source(text, Format::Yaml).expect("a valid workflow");
//! let plan = valid.plan();
//! assert_eq!(plan.level_count(), 2);
//! ```

mod builder;
pub mod check;
pub mod diff;
pub mod duration;
pub mod generate;
pub mod layout;
mod load;
mod plan;
mod problem;
pub mod render;
pub mod run;
mod seed;
mod source_map;
pub mod spec;
pub mod timetable;

pub use builder::{TaskBuilder, WorkflowBuilder};
pub use check::{Dag, Valid, check, check_source, resolve_inputs, validate};
pub use compact_str::CompactString;
pub use duration::Duration;
pub use load::{Format, Loaded, load};
pub use plan::{DEFAULT_ESTIMATE, Plan, PlanReport};
pub use problem::{Code, Location, Path, Problem, Segment, Target, did_you_mean};
pub use seed::{SplitMix64, seeded_run_id};
pub use source_map::SourceMap;
pub use spec::{Task, TaskKind, Workflow};
