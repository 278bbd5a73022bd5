use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{ClassifyError, ResponseFuture, TenantOf};
use crate::Meter;

/// The service of [`MeteringLayer`](super::MeteringLayer).
#[derive(Debug, Clone)]
pub struct MeteringService<S, C, T> {
    inner: S,
    meter: Meter,
    classify: C,
    tenant_of: T,
}

impl<S, C, T> MeteringService<S, C, T> {
    pub(super) fn new(inner: S, meter: Meter, classify: C, tenant_of: T) -> Self {
        Self {
            inner,
            meter,
            classify,
            tenant_of,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, C, T, ReqB, ResB> Service<Request<ReqB>> for MeteringService<S, C, T>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ReqB: Body,
    ResB: Body,
    C: ClassifyError<S::Error>,
    T: TenantOf,
{
    type Response = Response<super::MeteredBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let tenant = self
            .tenant_of
            .tenant(req.extensions())
            .map(|id| self.meter.enter(self.meter.counters(id)));
        match &tenant {
            Some(entry) => {
                let t = entry.tenant();
                let n = req.body().size_hint().exact().or_else(|| {
                    req.headers()
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                });
                if let Some(n) = n.filter(|&n| n > 0) {
                    t.c.bytes_in.fetch_add(n, Relaxed);
                }
            }
            None => self.meter.unattributed_request(),
        }
        ResponseFuture::new(
            self.inner.call(req),
            Instant::now(),
            tenant,
            self.classify.clone(),
        )
    }
}
