use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::sync::OwnedSemaphorePermit;
use tower_service::Service;

use super::{ResponseFuture, TenantConcurrencyLayer};
use crate::error::Overloaded;
use crate::guarded::Guarded;
use crate::{BoxError, GuardedBody, TenantContext};

/// The service made by [`TenantConcurrencyLayer`]. A clone holds no share:
/// shares are taken per request in `call` and live in the response.
#[derive(Debug, Clone)]
pub struct TenantConcurrency<S> {
    pub(crate) inner: S,
    pub(crate) layer: TenantConcurrencyLayer,
}

impl<S> TenantConcurrency<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for TenantConcurrency<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<GuardedBody<ResB, OwnedSemaphorePermit>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let ctx = match TenantContext::of(&req) {
            Ok(ctx) => ctx,
            Err(e) => return ResponseFuture::new(Guarded::failed(e)),
        };
        let state = self.layer.limits.state(ctx);
        if let Ok(permit) = state.shares.clone().try_acquire_owned() {
            return ResponseFuture::new(Guarded::running(self.inner.call(req), Some(permit)));
        }
        let refused = Overloaded::new(ctx.id().clone(), self.layer.retry_after);
        match self.layer.wait {
            None => ResponseFuture::new(Guarded::failed(refused)),
            Some(wait) => {
                // Take the service that was driven ready; leave a fresh clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let acquire = async move { state.shares.clone().acquire_owned().await.ok() };
                ResponseFuture::new(Guarded::wait_then_call(
                    acquire,
                    wait,
                    refused.into(),
                    inner,
                    req,
                ))
            }
        }
    }
}
