use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tower_layer::Layer;

use super::TenantQuota;
use crate::UsageSource;

/// Applies each tenant's monthly quota; see the [module docs](crate::quota).
#[must_use]
pub struct QuotaLayer<U> {
    pub(crate) usage: Arc<U>,
    pub(crate) now: fn() -> DateTime<Utc>,
}

impl<U: UsageSource> QuotaLayer<U> {
    /// Reads usage from `usage` (in Corral: the metering crate's meter).
    pub fn new(usage: U) -> Self {
        Self {
            usage: Arc::new(usage),
            now: Utc::now,
        }
    }

    /// The clock that dates refusals (`resets_at`). Default: [`Utc::now`].
    pub fn clock(mut self, now: fn() -> DateTime<Utc>) -> Self {
        self.now = now;
        self
    }
}

impl<U> Clone for QuotaLayer<U> {
    fn clone(&self) -> Self {
        Self {
            usage: self.usage.clone(),
            now: self.now,
        }
    }
}

impl<U> fmt::Debug for QuotaLayer<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaLayer").finish_non_exhaustive()
    }
}

impl<S, U> Layer<S> for QuotaLayer<U> {
    type Service = TenantQuota<S, U>;
    fn layer(&self, inner: S) -> Self::Service {
        TenantQuota {
            inner,
            layer: self.clone(),
        }
    }
}
