//! The response future of [`TenantBodyLimit`](super::TenantBodyLimit).

/// Response future of [`TenantBodyLimit`](super::TenantBodyLimit): the inner service's future,
/// or the refusal. One type is shared by every admit-or-refuse layer.
pub type ResponseFuture<F> = crate::gate_future::GateFuture<F>;
