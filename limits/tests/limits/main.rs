//! Integration tests for corral-limits: one binary, one module per area.

mod body_limit;
mod concurrency;
mod errors;
mod maintenance;
mod memory;
mod quota;
mod rate;
mod registry;
mod runtime;
mod send_sync;
mod streams;
mod support;
mod tier;
