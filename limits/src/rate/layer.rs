use tower_layer::Layer;

use super::TenantRateLimit;
use crate::TenantLimits;

/// Applies each tenant's tier rate; see the [module docs](crate::rate).
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitLayer {
    pub(crate) limits: TenantLimits,
}

impl RateLimitLayer {
    /// GCRA state lives in `limits`, the registry shared with the other layers.
    pub fn new(limits: TenantLimits) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = TenantRateLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TenantRateLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}
