//! `ServiceBuilder` methods for every layer of this crate.

use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::{
    MaintenanceLayer, MaintenanceSwitch, QuotaLayer, RateLimitLayer, RuntimeSlots,
    RuntimeSlotsLayer, TenantConcurrencyLayer, TenantLimits, TenantStreamsLayer, UsageSource,
};

mod sealed {
    pub trait Sealed<L> {}
    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}

/// Adds this crate's layers to [`ServiceBuilder`], in the order of Corral's
/// request flow: maintenance → rate → quota → concurrency → runtime →
/// streams (innermost, so the share and slot layers see the event streams it
/// marks [`Detached`](crate::Detached)).
///
/// Each method uses the layer's defaults; build the layer yourself and call
/// `.layer(..)` for a bounded wait or another retry hint.
///
/// ```
/// use std::{convert::Infallible, sync::Arc};
/// use corral_limits::{
///     error_response, MaintenanceSwitch, RuntimeSlots, ServiceBuilderExt, TenantContext,
///     TenantId, TenantLimits, Tier, UsageSource,
/// };
/// use http::{Request, Response};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// struct NothingUsed;
/// impl UsageSource for NothingUsed {
///     fn requests_this_month(&self, _: &TenantId) -> u64 { 0 }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limits = TenantLimits::new();
/// let mut svc = ServiceBuilder::new()
///     .tenant_maintenance(MaintenanceSwitch::new())
///     .tenant_rate_limit(&limits)
///     .tenant_quota(NothingUsed)
///     .tenant_concurrency(&limits)
///     .runtime_slots(&RuntimeSlots::new(8))
///     .tenant_streams(&limits)
///     .service_fn(|_: Request<String>| async {
///         Ok::<_, Infallible>(Response::new(String::from("streaming...")))
///     });
///
/// let free = Arc::new(Tier::free()); // one compute share
/// let req = |tenant: &str| {
///     let mut r = Request::new(String::new());
///     TenantContext::new(tenant.parse().unwrap(), free.clone()).insert_into(&mut r);
///     r
/// };
/// // Tenant a's first response is still streaming (not an event stream, so not
/// // detached): it holds a's only share.
/// let streaming = svc.ready().await.unwrap().call(req("a")).await.unwrap();
/// // So a's next request is refused with a 429...
/// let err = svc.ready().await.unwrap().call(req("a")).await.err().unwrap();
/// let (status, headers, body) = error_response(&err).unwrap();
/// assert_eq!(status, 429);
/// assert_eq!(headers["retry-after"], "1");
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!((v["error"].as_str(), v["tenant"].as_str()), (Some("overloaded"), Some("a")));
/// // ...while tenant b is served.
/// assert_eq!(svc.ready().await.unwrap().call(req("b")).await.unwrap().status(), 200);
/// drop(streaming);
/// assert_eq!(svc.ready().await.unwrap().call(req("a")).await.unwrap().status(), 200);
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Adds a [`MaintenanceLayer`] watching `switch`.
    fn tenant_maintenance(
        self,
        switch: MaintenanceSwitch,
    ) -> ServiceBuilder<Stack<MaintenanceLayer, L>>;

    /// Adds a [`RateLimitLayer`] over `limits`.
    fn tenant_rate_limit(self, limits: &TenantLimits) -> ServiceBuilder<Stack<RateLimitLayer, L>>;

    /// Adds a [`QuotaLayer`] reading `usage`.
    fn tenant_quota<U: UsageSource>(self, usage: U) -> ServiceBuilder<Stack<QuotaLayer<U>, L>>;

    /// Adds a fail-fast [`TenantConcurrencyLayer`] over `limits`.
    fn tenant_concurrency(
        self,
        limits: &TenantLimits,
    ) -> ServiceBuilder<Stack<TenantConcurrencyLayer, L>>;

    /// Adds a fail-fast [`RuntimeSlotsLayer`] over `slots`.
    fn runtime_slots(self, slots: &RuntimeSlots) -> ServiceBuilder<Stack<RuntimeSlotsLayer, L>>;

    /// Adds a [`TenantStreamsLayer`] over `limits`.
    fn tenant_streams(self, limits: &TenantLimits) -> ServiceBuilder<Stack<TenantStreamsLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn tenant_maintenance(
        self,
        switch: MaintenanceSwitch,
    ) -> ServiceBuilder<Stack<MaintenanceLayer, L>> {
        self.layer(MaintenanceLayer::new(switch))
    }

    fn tenant_rate_limit(self, limits: &TenantLimits) -> ServiceBuilder<Stack<RateLimitLayer, L>> {
        self.layer(RateLimitLayer::new(limits.clone()))
    }

    fn tenant_quota<U: UsageSource>(self, usage: U) -> ServiceBuilder<Stack<QuotaLayer<U>, L>> {
        self.layer(QuotaLayer::new(usage))
    }

    fn tenant_concurrency(
        self,
        limits: &TenantLimits,
    ) -> ServiceBuilder<Stack<TenantConcurrencyLayer, L>> {
        self.layer(TenantConcurrencyLayer::new(limits.clone()))
    }

    fn runtime_slots(self, slots: &RuntimeSlots) -> ServiceBuilder<Stack<RuntimeSlotsLayer, L>> {
        self.layer(RuntimeSlotsLayer::new(slots.clone()))
    }

    fn tenant_streams(self, limits: &TenantLimits) -> ServiceBuilder<Stack<TenantStreamsLayer, L>> {
        self.layer(TenantStreamsLayer::new(limits.clone()))
    }
}
