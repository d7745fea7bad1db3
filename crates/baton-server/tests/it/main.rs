//! The service through `router(state)`, one request at a time with
//! `oneshot`: status codes, problem bodies, shapes, event streams.

mod contract;
mod events;
mod util;
