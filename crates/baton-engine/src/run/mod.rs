//! The run loop and what it is made of: the [`drive`] loop itself, the
//! attempts it launches (`launch`, `attempt`, `spawn`, `compensation`) and
//! the events their ends become (`completion`), the rows it records with
//! each batch (`record`), control requests (`controls`), hooks and metrics.

mod attempt;
mod compensation;
mod completion;
mod controls;
mod drive;
mod driven;
mod hooks;
mod host;
mod launch;
mod record;
mod report;
mod reuse;
mod spawn;
mod telemetry;

pub(crate) use drive::{Run, Start, drive};
pub(crate) use driven::Driven;
pub(crate) use host::Host;
pub(crate) use launch::Family;
pub(crate) use record::record_of;
pub(crate) use reuse::reusable;
pub use telemetry::report_metrics;
