//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes from any thread go to one writer thread over a channel; the
//! writer takes every write waiting at that moment into one transaction
//! (group commit) and answers each caller only after the commit, so no
//! caller is told an event is stored before it is durable (`synchronous =
//! NORMAL` in WAL mode survives a process crash; an OS crash may lose the
//! last commits, never corrupt earlier ones). Reads run on tokio's blocking
//! pool over a small pool of reader connections, so no runtime thread waits
//! on the file. A watcher thread notices commits from this process and
//! others (`PRAGMA data_version`) and publishes what changed.

mod codec;
mod connection;
mod readers;
mod reads;
mod schema;
mod store;
mod watch;
mod writer;

pub use store::{SqliteOptions, SqliteStore};
