use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::BoxError;
use crate::guarded::Pass;

pin_project! {
    /// Response future of the layers that only admit or refuse (rate, quota,
    /// maintenance, body limit): the inner service's future, or the refusal.
    pub struct GateFuture<F> {
        #[pin]
        inner: Pass<F>,
    }
}

impl<F> GateFuture<F> {
    pub(crate) fn inner(fut: F) -> Self {
        Self {
            inner: Pass::Inner { fut },
        }
    }

    pub(crate) fn failed(err: impl Into<BoxError>) -> Self {
        Self {
            inner: Pass::failed(err),
        }
    }
}

impl<F, T, E> Future for GateFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<F> fmt::Debug for GateFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
