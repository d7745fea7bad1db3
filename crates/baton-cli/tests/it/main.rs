//! Behaviour of the `baton` binary, driven as a user drives it.

mod agents;
mod audit;
mod chromium;
mod conditions;
mod corruption;
mod crash;
mod dashboard;
mod deploy;
mod drain;
mod faults;
mod live;
mod ownership;
mod pg_restart;
mod plan;
mod replicas;
mod reuse;
mod run;
mod schedules;
mod schema;
mod serve;
mod util;
mod validate;
mod workers;
