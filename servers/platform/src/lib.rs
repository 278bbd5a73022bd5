//! The Corral platform server, `corral-server`: a thin HTTP frontend over
//! `corral::Platform`.
//!
//! - [`config`]: defaults → `corral.toml` → `CORRAL_*` environment → flags.
//! - [`cli`]: the command line (`serve`, `probe`, `scrub`, `tenant export|import`).
//! - [`auth`]: the admin token, stored only as an argon2 hash.
//! - [`routes`]: tenant and admin routing as a pure function over the request head.
//! - [`hygiene`]: what path-routed apps may not send (origin-wide headers, cookies outside their path).
//! - [`console`]: the operator console at `/console/` (embedded pages, sessions, live feed).
//! - [`history`]: per-app usage per hour for 30 days, kept across restarts.
//! - [`openapi`]: the admin API document, built from the router's own table.
//! - [`client`]: the `corral` client CLI for app developers (init, dev, deploy, logs, …).
//! - [`http`]: the hyper server (HTTP/1.1 + h2c, limits, graceful drain) and response helpers.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]

/// jemalloc, with background threads purging freed pages after its decay
/// time (10 s): when a wave of apps parks, their runtimes' memory goes back to
/// the OS. glibc's malloc keeps freed memory in per-thread arenas, and RSS
/// never came down after parking. Figures: BENCHMARKS.md, "Density".
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// mimalloc, for comparison (`--no-default-features --features mimalloc`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod console;
pub mod history;
pub mod http;
pub mod hygiene;
mod moves;
pub mod openapi;
pub mod routes;
