//! Integration tests of corral-metering, one binary for the whole area.

mod budget;
mod counters;
mod hook;
mod journal;
mod layer;
mod monitor;
mod prometheus;
mod thresholds;
mod usage;

use corral_limits::TenantId;

pub(crate) fn id(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

#[test]
fn public_types_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<corral_metering::Meter>();
    both::<corral_metering::TenantMeter>();
    both::<corral_metering::StreamGuard>();
    both::<corral_metering::MeteringLayer>();
    both::<corral_metering::ExpansionHook>();
    both::<corral_metering::NodeStatus>();
    both::<corral_metering::Flusher>();
    fn send<T: Send>() {}
    send::<corral_metering::Monitor>();
    send::<corral_metering::SysinfoProbe>();
}
