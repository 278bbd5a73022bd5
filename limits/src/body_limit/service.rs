use std::task::{Context, Poll};

use http::{Request, Response};
use tower_http::body::Limited;
use tower_http::limit::{RequestBodyLimit, ResponseBody};
use tower_service::Service;

use super::ResponseFuture;
use crate::{BoxError, TenantContext};

/// The service made by [`TenantBodyLimitLayer`](super::TenantBodyLimitLayer).
#[derive(Debug, Clone)]
pub struct TenantBodyLimit<S> {
    pub(crate) inner: S,
}

impl<S> TenantBodyLimit<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for TenantBodyLimit<S>
where
    S: Service<Request<Limited<ReqB>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: http_body::Body,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<tower_http::limit::ResponseFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let limit = match TenantContext::of(&req) {
            Ok(ctx) => ctx.tier().max_body_limit(),
            Err(e) => return ResponseFuture::failed(e),
        };
        // tower-http's own service, set to this tenant's limit, over the
        // inner service that `poll_ready` already drove ready.
        let mut limited = RequestBodyLimit::new(&mut self.inner, limit);
        ResponseFuture::inner(limited.call(req))
    }
}
