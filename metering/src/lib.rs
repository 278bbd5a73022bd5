//! Per-tenant metering for Corral.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]

mod usage;

pub use usage::{Period, SinkError, Usage, UsageSink};
