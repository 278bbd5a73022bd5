use std::fmt;
use std::task::{Context, Poll};

use http::Request;
use tower_service::Service;

use super::{QuotaLayer, ResponseFuture};
use crate::error::QuotaExceeded;
use crate::{BoxError, TenantContext, UsageSource};

/// The service made by [`QuotaLayer`].
pub struct TenantQuota<S, U> {
    pub(crate) inner: S,
    pub(crate) layer: QuotaLayer<U>,
}

impl<S, U> TenantQuota<S, U> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, U> Clone for TenantQuota<S, U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, U> fmt::Debug for TenantQuota<S, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantQuota")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, U, ReqB> Service<Request<ReqB>> for TenantQuota<S, U>
where
    S: Service<Request<ReqB>>,
    S::Error: Into<BoxError>,
    U: UsageSource,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let ctx = match TenantContext::of(&req) {
            Ok(ctx) => ctx,
            Err(e) => return ResponseFuture::failed(e),
        };
        if let Some(quota) = ctx.tier().requests_per_month {
            // The quota is the account's: all its apps' requests count.
            let used = self.layer.usage.requests_this_month(ctx.account());
            if used >= quota {
                let now = (self.layer.now)();
                return ResponseFuture::failed(QuotaExceeded::new(
                    ctx.id().clone(),
                    quota,
                    used,
                    now,
                ));
            }
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}
