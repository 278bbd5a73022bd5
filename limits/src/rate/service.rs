use std::task::{Context, Poll};

use governor::clock::Clock;
use http::Request;
use tower_service::Service;

use super::ResponseFuture;
use crate::clock::TokioClock;
use crate::error::RateLimited;
use crate::{BoxError, TenantContext, TenantLimits};

/// The service made by [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Debug, Clone)]
pub struct TenantRateLimit<S> {
    pub(crate) inner: S,
    pub(crate) limits: TenantLimits,
}

impl<S> TenantRateLimit<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqB> Service<Request<ReqB>> for TenantRateLimit<S>
where
    S: Service<Request<ReqB>>,
    S::Error: Into<BoxError>,
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
        let state = self.limits.state(ctx);
        if let Some(limiter) = &state.rate
            && let Err(not_until) = limiter.check()
        {
            let retry_after = not_until.wait_time_from(TokioClock.now());
            return ResponseFuture::failed(RateLimited::new(ctx.id().clone(), retry_after));
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}
