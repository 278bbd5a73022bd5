//! Corral: a multi-tenant sandbox runtime for WebAssembly and JavaScript.
//!
//! ## Feature flags
//! - `js` (default): JavaScript tenants on QuickJS.
//! - `component` (default): WebAssembly components serving `wasi:http/proxy`
//!   ([`wasm::ComponentBackend`], `Kind::Component`).
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod artifact;
mod backend;
mod body;
mod cpu;
mod engine;
mod error;
#[cfg(feature = "js")]
pub mod js;
mod limits;
mod log;
pub mod platform;
mod registry;
pub mod response;
mod service;
pub mod wasm;
mod workers;

pub use backend::{
    Backend, BoxFuture, InvocationStats, InvokeContext, Kind, KvError, Program, TenantKv,
};
pub use body::{Body, BodyClosed, BodySender};
pub use engine::{EngineConfig, EpochTicker, WasmEngine};
pub use error::SandboxError;
#[cfg(feature = "js")]
pub use js::{MAX_WASM_MODULE_BYTES, MAX_WASM_STACK, QuickJsBackend, QuickJsProgram};
#[cfg(feature = "v8")]
pub mod v8_engine;
pub use limits::{Limits, LimitsBuilder};
pub use log::{LINE_OVERHEAD, LogWriter, TenantLog};
pub use registry::{
    AppHandle, DeployInfo, Registry, RegistryBuilder, RegistryStats, TenantState, TenantStatus,
};
pub use service::SandboxService;
#[cfg(feature = "v8")]
pub use v8_engine::{V8Backend, V8Program};
pub use wasm::WasmBackend;
pub use workers::{size_workers, worker_threads};

pub use corral_limits::{self as limits_layers, InvalidTenantId, TenantId};
pub use corral_metering as metering;
pub use corral_storage as storage;
