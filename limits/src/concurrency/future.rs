use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

use crate::guarded::Guarded;
use crate::{BoxError, GuardedBody};

pin_project! {
    /// Response future of [`TenantConcurrency`](super::TenantConcurrency): holds
    /// the tenant's compute share, and hands it to the response body (or
    /// releases it at the head of a [`Detached`](crate::Detached) response).
    /// Dropping the future (a cancelled request) gives the share back.
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: Guarded<F, B, OwnedSemaphorePermit>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(inner: Guarded<F, B, OwnedSemaphorePermit>) -> Self {
        Self { inner }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<GuardedBody<B, OwnedSemaphorePermit>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
