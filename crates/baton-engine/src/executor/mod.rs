//! Executors run attempts: a process (`run`, `command`), an HTTP call, an
//! in-process handler, a child run (`workflow:`), an agent served by a
//! configured chat endpoint, a tool call on an MCP server. The run loop hands each
//! resolved attempt to [`Executors`], which routes it by what it runs; each
//! executor honours the attempt's timeout and the loop's kill.

mod agent;
mod child;
mod endpoints;
mod handler;
mod http;
mod job;
mod mcp;
mod process;
mod remote;
mod route;

pub(crate) use agent::Agents;
pub(crate) use child::{ChildRuns, carried, child_id, ended, supervise};
pub use endpoints::EndpointError;
pub use handler::{Handler, HandlerError, HandlerResult};
pub(crate) use handler::{Handlers, InProcess};
pub(crate) use http::Http;
pub use job::TaskContext;
pub(crate) use job::{Attempt, Carried, Executor, Kill, Lineage, Outcome};
pub(crate) use mcp::Mcp;
pub(crate) use process::Processes;
pub(crate) use remote::Remote;
pub(crate) use route::{Executors, Finished};
