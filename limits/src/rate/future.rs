//! The response future of [`TenantRateLimit`](super::TenantRateLimit).

/// Response future of [`TenantRateLimit`](super::TenantRateLimit): the inner service's future,
/// or the refusal. One type is shared by every admit-or-refuse layer.
pub type ResponseFuture<F> = crate::gate_future::GateFuture<F>;
