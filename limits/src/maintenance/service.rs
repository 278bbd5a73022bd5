use std::task::{Context, Poll};

use http::Request;
use tower_service::Service;

use super::{MaintenanceLayer, ResponseFuture};
use crate::error::Maintenance;
use crate::{BoxError, TenantContext};

/// The service made by [`MaintenanceLayer`].
#[derive(Debug, Clone)]
pub struct MaintenanceGate<S> {
    pub(crate) inner: S,
    pub(crate) layer: MaintenanceLayer,
}

impl<S> MaintenanceGate<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqB> Service<Request<ReqB>> for MaintenanceGate<S>
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
        if self.layer.switch.is_on() {
            let tenant = TenantContext::of(&req).ok().map(|c| c.id().clone());
            return ResponseFuture::failed(Maintenance::new(tenant, self.layer.retry_after));
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}
