use std::time::Duration;

use tower_layer::Layer;

use super::TenantConcurrency;
use crate::TenantLimits;

/// Applies per-tenant compute shares; see the [module docs](crate::concurrency).
#[derive(Debug, Clone)]
#[must_use]
pub struct TenantConcurrencyLayer {
    pub(crate) limits: TenantLimits,
    pub(crate) wait: Option<Duration>,
    pub(crate) retry_after: Duration,
}

impl TenantConcurrencyLayer {
    /// Shares come from `limits`, the registry shared with the other layers.
    pub fn new(limits: TenantLimits) -> Self {
        Self {
            limits,
            wait: None,
            retry_after: Duration::from_secs(1),
        }
    }

    /// Waits up to `max` for a share before refusing. Default: no wait (fail fast).
    pub fn wait(mut self, max: Duration) -> Self {
        self.wait = Some(max);
        self
    }

    /// The `retry_after` reported in [`Overloaded`](crate::Overloaded). Default: 1 s.
    pub fn retry_after(mut self, hint: Duration) -> Self {
        self.retry_after = hint;
        self
    }
}

impl<S> Layer<S> for TenantConcurrencyLayer {
    type Service = TenantConcurrency<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TenantConcurrency {
            inner,
            layer: self.clone(),
        }
    }
}
