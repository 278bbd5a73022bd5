use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::RuntimeSlot;
use http::Response;
use pin_project_lite::pin_project;

use crate::guarded::Guarded;
use crate::{BoxError, GuardedBody};

pin_project! {
    /// Response future of [`RuntimeLimit`](super::RuntimeLimit): holds
    /// a runtime slot, and hands it to the response body (or releases it at
    /// the head of a [`Detached`](crate::Detached) response).
    /// Dropping the future (a cancelled request) gives the slot back.
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: Guarded<F, B, RuntimeSlot>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(inner: Guarded<F, B, RuntimeSlot>) -> Self {
        Self { inner }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<GuardedBody<B, RuntimeSlot>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
