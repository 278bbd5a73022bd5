//! The response future of [`TenantQuota`](super::TenantQuota).

/// Response future of [`TenantQuota`](super::TenantQuota): the inner service's future,
/// or the refusal. One type is shared by every admit-or-refuse layer.
pub type ResponseFuture<F> = crate::gate_future::GateFuture<F>;
