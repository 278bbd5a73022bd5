use tower_layer::Layer;

use super::TenantBodyLimit;

/// Limits request bodies to the tier's `max_body_bytes`; see the [module docs](crate::body_limit).
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct TenantBodyLimitLayer {
    _private: (),
}

impl TenantBodyLimitLayer {
    /// The layer; the limit comes from each request's [`TenantContext`](crate::TenantContext).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for TenantBodyLimitLayer {
    type Service = TenantBodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TenantBodyLimit { inner }
    }
}
