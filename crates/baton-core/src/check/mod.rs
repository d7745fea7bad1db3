//! Validation: every problem of a workflow at once, and its compiled DAG.
//!
//! [`check`] takes a [`Workflow`](crate::Workflow) from any source (a file, the builder, the
//! API) and returns a [`Valid`] workflow or the full list of problems, sorted
//! by where they are. [`check_source`] also loads the text and attaches
//! line:col to each problem.

mod dag;
mod fields;
mod heredoc;
mod inputs;
mod refs;
mod valid;

pub use dag::Dag;
pub use inputs::resolve_inputs;
pub(crate) use refs::task_references;
pub(crate) use valid::ReadyOrder;
pub use valid::{Valid, check, check_source, validate};
