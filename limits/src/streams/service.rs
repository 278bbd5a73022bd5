use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::sync::OwnedSemaphorePermit;
use tower_service::Service;

use super::future::Admit;
use super::{ResponseFuture, TenantStreamsLayer};
use crate::{BoxError, GuardedBody, TenantContext};

/// The service made by [`TenantStreamsLayer`]. A clone holds no permit:
/// permits are taken per response and live in its body.
#[derive(Debug, Clone)]
pub struct TenantStreams<S> {
    pub(crate) inner: S,
    pub(crate) layer: TenantStreamsLayer,
}

impl<S> TenantStreams<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for TenantStreams<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<GuardedBody<ResB, OwnedSemaphorePermit>>;
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
        let admit = Admit {
            state: self.layer.limits.state(ctx),
            tenant: ctx.id().clone(),
            retry_after: self.layer.retry_after,
        };
        ResponseFuture::new(self.inner.call(req), admit)
    }
}
