//! Per-tenant limits for Corral as composable tower layers.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]

mod tenant;
mod usage;

pub use tenant::{InvalidTenantId, MAX_TENANT_LEN, TenantId};
pub use usage::UsageSource;
