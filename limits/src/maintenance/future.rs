//! The response future of [`MaintenanceGate`](super::MaintenanceGate).

/// Response future of [`MaintenanceGate`](super::MaintenanceGate): the inner service's future,
/// or the refusal. One type is shared by every admit-or-refuse layer.
pub type ResponseFuture<F> = crate::gate_future::GateFuture<F>;
