//! Per-tenant limits for Corral as composable tower layers.
//!
//! A frontend resolves the tenant, inserts a [`TenantContext`] (its
//! [`TenantId`] and `Arc<`[`Tier`]`>`) into the request's extensions, and
//! sends it through the layers; each layer keys its state by that tenant:
//!
//! | layer | limit | refusal |
//! |---|---|---|
//! | [`MaintenanceLayer`] | host in maintenance mode | [`Maintenance`], 503 |
//! | [`RateLimitLayer`] | tier `rate_per_minute` / `burst` (GCRA) | [`RateLimited`], 429 |
//! | [`QuotaLayer`] | tier `requests_per_month` vs a [`UsageSource`] | [`QuotaExceeded`], 429 |
//! | [`TenantConcurrencyLayer`] | tier `compute_shares` | [`Overloaded`], 429 |
//! | [`RuntimeSlotsLayer`] | host-wide [`RuntimeSlots`], resizable | [`RuntimeBusy`], 503 |
//! | [`TenantStreamsLayer`] | tier `max_streams` (open event streams) | [`TooManyStreams`], 429 |
//!
//! Every refusal is a typed error boxed as [`BoxError`]; [`Refused::of`]
//! reads any of them as the one [`Refused`] (kind, code, status, retry hint,
//! fields), [`error_response`] turns it into a status, `Retry-After` and a
//! stable JSON body, and [`Refusal::of`] names its kind (metering counts refused requests apart
//! from admitted ones, so a refusal never uses up the monthly quota). The stateful
//! layers share one [`TenantLimits`] registry (a concurrent map, no task or
//! timer per tenant); [`ServiceBuilderExt`] adds them to a `ServiceBuilder`,
//! and its doc example composes all of them.
//!
//! Every layer needs `http::Request`s; the layers that hold a permit wrap the
//! response body in a [`GuardedBody`] so streaming responses keep their
//! permit until they end or are dropped. An event stream admitted by
//! [`TenantStreamsLayer`] holds a stream permit instead of a compute share and
//! a runtime slot: it is marked [`Detached`], and the share and slot layers
//! outside it let go at the response head (unless the service marked it
//! [`Attached`]: its own run still writes it).
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]

mod body;
mod builder;
mod clock;
mod context;
mod detached;
mod error;
mod gate_future;
mod guarded;
mod refusal;
mod registry;
mod tenant;
mod tier;
mod usage;

pub mod concurrency;
pub mod maintenance;
pub mod quota;
pub mod rate;
pub mod runtime;
pub mod streams;

pub use body::GuardedBody;
pub use builder::ServiceBuilderExt;
pub use concurrency::TenantConcurrencyLayer;
pub use context::TenantContext;
pub use detached::{Attached, Detached};
pub use error::{
    BoxError, Maintenance, MissingTenant, Overloaded, QuotaExceeded, RateLimited, RuntimeBusy,
    TooManyStreams, error_code, error_response,
};
pub use gate_future::GateFuture;
pub use maintenance::{MaintenanceLayer, MaintenanceSwitch};
pub use quota::QuotaLayer;
pub use rate::RateLimitLayer;
pub use refusal::{Refusal, Refused};
pub use registry::{TenantLimits, TenantLoad};
pub use runtime::{RuntimeSlot, RuntimeSlots, RuntimeSlotsLayer};
pub use streams::{TenantStreamsLayer, is_event_stream};
pub use tenant::{InvalidTenantId, MAX_TENANT_LEN, TenantId};
pub use tier::{
    DEFAULT_STREAM_DURATION_FACTOR, DEFAULT_STREAM_FUEL_FACTOR, GB, GIB, MB, MIB,
    MIN_MEMORY_PER_SHARE, PRESET_NAMES, Tier, TierError, TierName, default_max_stream_duration,
    default_stream_fuel,
};
pub use usage::UsageSource;
