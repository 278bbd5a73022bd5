//! Integration tests for corral-limits: one binary, one module per area.

mod concurrency;
mod errors;
mod maintenance;
mod quota;
mod rate;
mod registry;
mod runtime;
mod send_sync;
mod streams;
mod support;
mod tier;
