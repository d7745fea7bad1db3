//! The scale-out store: one PostgreSQL database that any number of `baton`
//! processes (server replicas, `baton run`, `baton worker`'s server) share.
//!
//! Writes go to one writer task per process over a channel; it takes every
//! write waiting at that moment into one transaction (group commit), sent
//! as a single pipeline, and answers each caller only after the commit.
//! Writers of all processes serialise on one advisory lock per schema, so
//! feed positions are handed out in commit order and a reader resuming
//! after a position misses nothing. Reads use a pool of connections. A
//! watcher `LISTEN`s for the writers' notifications and publishes what
//! changed, polling as a fallback.

mod columns;
mod connection;
mod queue;
mod reads;
mod schema;
mod store;
mod watch;
mod writer;

pub use store::{PostgresOptions, PostgresStore};
