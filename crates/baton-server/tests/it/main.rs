//! The service through `router(state)`, one request at a time with
//! `oneshot`: status codes, problem bodies, shapes, event streams.

mod agents;
mod auth;
mod connections;
mod contract;
mod controls;
mod corruption;
mod events;
mod feed;
mod monitoring;
mod otlp;
mod schedules;
mod streams;
mod traversal;
mod triggers;
mod util;
mod workers;
mod workflows;
