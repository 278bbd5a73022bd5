//! Per-tenant metering for Corral: counters, monthly usage, Prometheus
//! exposition, the host probe, thresholds and the expansion hook.
//!
//! - [`Meter`]: per-tenant counters (atomics in a sharded map, no global lock
//!   on the hot path), monthly [`Usage`] flushed to a [`UsageSink`] and
//!   restored at start, and the [`UsageSource`](corral_limits::UsageSource)
//!   the quota layer reads.
//! - [`MeteringLayer`]: the tower layer that feeds it.
//! - [`Meter::render`]: Prometheus text, per-tenant series bounded.
//! - [`SysinfoProbe`] → [`Probe`] → [`Budget::from_probe`]: sizing from the host.
//! - [`ThresholdTracker`], [`ExpansionHook`] and [`Monitor`]: thresholds with
//!   hysteresis, the webhook/command hook, and the live gauge feed.
//!
//! ```
//! use corral_metering::{Meter, MeteringLayer};
//! let meter = Meter::new();
//! let _layer = MeteringLayer::new(meter.clone()); // put it outermost in the tenant stack
//! assert!(meter.render().contains("corral_requests_total 0"));
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_code)]

pub mod budget;
mod clock;
mod counters;
mod hash;
mod hook;
mod journal;
mod layer;
mod meter;
mod monitor;
mod probe;
mod prometheus;
mod thresholds;
mod usage;

pub use budget::{Budget, BudgetError, DEFAULT_OS_OVERHEAD, DEFAULT_SAFETY};
pub use clock::{Clock, ManualClock, SystemClock};
pub use counters::{
    ErrorKind, InvocationFigures, LATENCY_BUCKETS, StatusClass, StreamFigures, TenantSnapshot,
};
pub use hook::{ExpansionHook, HookConfig, HookError, HookPayload, HookStats, HookTarget};
pub use journal::{Journal, JournalError, JournalMark, Recovered};
pub use layer::{
    AccountFromExtensions, AsOther, ClassifyError, LimitErrors, MeteredBody, MeteringLayer,
    MeteringService, ResponseFuture, TenantFromExtensions, TenantOf, limit_error_kind,
};
pub use meter::{
    DEFAULT_EXPORT_TOP, Flusher, Meter, MeterBuilder, MeterError, StreamGuard, TenantMeter,
};
pub use monitor::{CacheStats, CacheStatsSource, LiveGauges, Monitor, NodeStatus, TenantGauge};
pub use probe::{HostProbe, Probe, SysinfoProbe};
pub use prometheus::{AppCounts, HostReport, MeterCollector};
pub use thresholds::{HostEvent, Level, Resource, ThresholdError, ThresholdTracker, Thresholds};
pub use usage::{Period, SinkError, Usage, UsageSink};
