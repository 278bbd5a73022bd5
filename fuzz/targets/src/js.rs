//! `js_deploy`: module source to bytecode and back, under the deploy budget.

use corral::limits_layers::Tier;
use corral::platform::limits_for;
use corral::{Limits, QuickJsBackend};

/// The deploy budget: a deploy evaluates the module once under its tier's
/// per-request limits; the free tier's are the smallest.
fn limits() -> Limits {
    limits_for(&Tier::free())
}

/// The input is the uploaded module (or a tar holding `app.js`).
///
/// Invariants: a refusal is `invalid_module`; an accepted module's artifact
/// loads back, and the same artifact with any one bytecode byte changed is
/// refused as `corrupt_artifact` before QuickJS reads it.
pub fn js_deploy(data: &[u8]) {
    // The envelope before the bytecode is 16 bytes.
    crate::deploy::round_trip(&QuickJsBackend::new(), data, &limits(), 16);
}
