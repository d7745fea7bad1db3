//! Behaviour of the engine through its public API: real processes, a real
//! HTTP server on a local port, handlers on tokio's paused clock.

mod artifacts;
mod checkpoints;
mod controls;
mod copies;
mod drain;
mod handlers;
mod hooks;
mod http;
mod mcp;
mod ownership;
mod policies;
mod processes;
mod retention;
mod sagas;
mod spawn;
mod subworkflows;
mod uses;
mod util;
