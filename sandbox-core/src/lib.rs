//! Corral: a multi-tenant sandbox runtime for WebAssembly and JavaScript.
//!
//! ## Feature flags
//! - `js` (default): JavaScript tenants on QuickJS.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod backend;
mod error;
mod limits;
mod log;
#[cfg(feature = "js")]
pub mod js;

pub use backend::{
    Backend, BoxFuture, InvocationStats, InvokeContext, Kind, KvError, Program, TenantKv,
};
pub use error::SandboxError;
pub use limits::{Limits, LimitsBuilder};
pub use log::TenantLog;
#[cfg(feature = "js")]
pub use js::{QuickJsBackend, QuickJsProgram};

pub use corral_limits::{self as limits_layers, InvalidTenantId, TenantId};
pub use corral_metering as metering;
pub use corral_storage as storage;
