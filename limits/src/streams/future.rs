use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

use super::is_event_stream;
use crate::error::TooManyStreams;
use crate::guarded::Pass;
use crate::registry::TenantState;
use crate::{Attached, BoxError, Detached, GuardedBody, TenantId};

pin_project! {
    /// Response future of [`TenantStreams`](super::TenantStreams): the inner
    /// service's future; when the response head is an event stream, it takes
    /// a stream permit (never waiting) and hands it to the body, or fails with
    /// [`TooManyStreams`](crate::TooManyStreams), dropping the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Pass<F>,
        admit: Option<Admit>,
    }
}

/// What the future needs to admit an event stream when the head arrives.
pub(crate) struct Admit {
    pub(crate) state: Arc<TenantState>,
    pub(crate) tenant: TenantId,
    pub(crate) retry_after: Duration,
}

impl Admit {
    fn admit<B>(
        self,
        resp: Response<B>,
    ) -> Result<Response<GuardedBody<B, OwnedSemaphorePermit>>, BoxError> {
        if !is_event_stream(resp.headers()) {
            return Ok(resp.map(|b| GuardedBody::new(b, None)));
        }
        match self.state.streams.clone().try_acquire_owned() {
            Ok(permit) => {
                let mut resp = resp.map(|b| GuardedBody::new(b, Some(permit)));
                if resp.extensions().get::<Attached>().is_none() {
                    resp.extensions_mut().insert(Detached);
                }
                Ok(resp)
            }
            Err(_) => {
                Err(
                    TooManyStreams::new(self.tenant, self.state.tier.max_streams, self.retry_after)
                        .into(),
                )
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(fut: F, admit: Admit) -> Self {
        Self {
            inner: Pass::Inner { fut },
            admit: Some(admit),
        }
    }

    pub(crate) fn failed(err: impl Into<BoxError>) -> Self {
        Self {
            inner: Pass::failed(err),
            admit: None,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<GuardedBody<B, OwnedSemaphorePermit>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.inner.poll(cx))?;
        let admit = this.admit.take().expect("future polled after completion");
        Poll::Ready(admit.admit(resp))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
