//! The usage figures the quota layer reads, behind a trait so the limits do not
//! depend on how usage is counted (`corral-metering` implements it).

use crate::TenantId;

/// Where the [quota layer](crate) reads how much a tenant has used this month.
///
/// Implemented by `corral-metering`'s meter; tests can use any in-memory map.
///
/// ```
/// use corral_limits::{TenantId, UsageSource};
///
/// struct Fixed(u64);
/// impl UsageSource for Fixed {
///     fn requests_this_month(&self, _: &TenantId) -> u64 { self.0 }
/// }
/// assert_eq!(Fixed(7).requests_this_month(&TenantId::new("a").unwrap()), 7);
/// ```
pub trait UsageSource: Send + Sync + 'static {
    /// Requests admitted for `tenant` in the current calendar month (UTC),
    /// where the [`QuotaLayer`](crate::QuotaLayer) asks about the request's
    /// account ([`TenantContext::account`](crate::TenantContext::account)),
    /// including the ones persisted before a restart. Requests refused by a
    /// limit ([`Refusal`](crate::Refusal)) are not counted; a source may count
    /// requests still in flight, which errs on the side of the quota.
    fn requests_this_month(&self, tenant: &TenantId) -> u64;
}

impl<T: UsageSource + ?Sized> UsageSource for std::sync::Arc<T> {
    fn requests_this_month(&self, tenant: &TenantId) -> u64 {
        (**self).requests_this_month(tenant)
    }
}
