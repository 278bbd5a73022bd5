use std::time::Duration;

use tower_layer::Layer;

use super::TenantStreams;
use crate::TenantLimits;

/// Applies per-tenant event-stream limits; see the [module docs](crate::streams).
#[derive(Debug, Clone)]
#[must_use]
pub struct TenantStreamsLayer {
    pub(crate) limits: TenantLimits,
    pub(crate) retry_after: Duration,
}

impl TenantStreamsLayer {
    /// Stream permits come from `limits`, the registry shared with the other layers.
    pub fn new(limits: TenantLimits) -> Self {
        Self {
            limits,
            retry_after: Duration::from_secs(1),
        }
    }

    /// The `retry_after` reported in [`TooManyStreams`](crate::TooManyStreams). Default: 1 s.
    pub fn retry_after(mut self, hint: Duration) -> Self {
        self.retry_after = hint;
        self
    }
}

impl<S> Layer<S> for TenantStreamsLayer {
    type Service = TenantStreams<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TenantStreams {
            inner,
            layer: self.clone(),
        }
    }
}
