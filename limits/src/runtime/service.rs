use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{ResponseFuture, RuntimeSlot, RuntimeSlotsLayer};
use crate::error::RuntimeBusy;
use crate::guarded::Guarded;
use crate::{BoxError, GuardedBody, TenantContext};

/// The service made by [`RuntimeSlotsLayer`]. A clone holds no slot.
#[derive(Debug, Clone)]
pub struct RuntimeLimit<S> {
    pub(crate) inner: S,
    pub(crate) layer: RuntimeSlotsLayer,
}

impl<S> RuntimeLimit<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RuntimeLimit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<GuardedBody<ResB, RuntimeSlot>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let dedicated = TenantContext::of(&req).is_ok_and(|ctx| ctx.tier().dedicated);
        if dedicated {
            return ResponseFuture::new(Guarded::running(self.inner.call(req), None));
        }
        if let Some(slot) = self.layer.slots.try_acquire() {
            return ResponseFuture::new(Guarded::running(self.inner.call(req), Some(slot)));
        }
        let refused = RuntimeBusy::new(self.layer.retry_after);
        match self.layer.wait {
            None => ResponseFuture::new(Guarded::failed(refused)),
            Some(wait) => {
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let slots = self.layer.slots.clone();
                let acquire = async move { Some(slots.acquire().await) };
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
