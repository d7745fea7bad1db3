//! Behaviour of the stores through the `Store` trait.

mod conformance;
mod postgres;
mod sqlite;
