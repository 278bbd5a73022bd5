//! The response future shared by the layers that hold a guard (a compute share,
//! a runtime slot) for the life of the response and its body, or only until
//! the response head when the response is marked [`Detached`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use sync_wrapper::SyncWrapper;
use tower_service::Service;

use crate::{BoxError, Detached, GuardedBody};

type Waiting<B, G> = SyncWrapper<
    Pin<Box<dyn Future<Output = Result<Response<GuardedBody<B, G>>, BoxError>> + Send>>,
>;

pin_project! {
    #[project = GuardedProj]
    pub(crate) enum Guarded<F, B, G> {
        // The guard was taken at once and the inner service called.
        Running { #[pin] fut: F, guard: Option<G> },
        // Waiting (bounded) for a guard, then calling the inner service.
        Waiting { fut: Waiting<B, G> },
        // Refused before calling the inner service.
        Failed { err: Option<BoxError> },
    }
}

impl<F, B, G> Guarded<F, B, G> {
    pub(crate) fn running(fut: F, guard: Option<G>) -> Self {
        Self::Running { fut, guard }
    }

    pub(crate) fn failed(err: impl Into<BoxError>) -> Self {
        Self::Failed {
            err: Some(err.into()),
        }
    }

    /// Waits up to `wait` for `acquire`, then calls the (already ready) `inner`.
    pub(crate) fn wait_then_call<S, ReqB, A>(
        acquire: A,
        wait: Duration,
        on_timeout: BoxError,
        mut inner: S,
        req: Request<ReqB>,
    ) -> Self
    where
        A: Future<Output = Option<G>> + Send + 'static,
        S: Service<Request<ReqB>, Response = Response<B>> + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        ReqB: Send + 'static,
        B: Send + 'static,
        G: Send + 'static,
    {
        let fut = async move {
            let guard = match tokio::time::timeout(wait, acquire).await {
                Ok(Some(guard)) => guard,
                _ => return Err(on_timeout),
            };
            let resp = inner.call(req).await.map_err(Into::into)?;
            Ok(guard_body(resp, Some(guard)))
        };
        Self::Waiting {
            fut: SyncWrapper::new(Box::pin(fut)),
        }
    }
}

/// Hands `guard` to the response body, or drops it here, at the head, when the
/// response is marked [`Detached`] (its body is governed by another limit).
fn guard_body<B, G>(resp: Response<B>, guard: Option<G>) -> Response<GuardedBody<B, G>> {
    let guard = if Detached::is_set(&resp) { None } else { guard };
    resp.map(|b| GuardedBody::new(b, guard))
}

impl<F, B, G, E> Future for Guarded<F, B, G>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<GuardedBody<B, G>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardedProj::Running { fut, guard } => match ready!(fut.poll(cx)) {
                Ok(resp) => Poll::Ready(Ok(guard_body(resp, guard.take()))),
                Err(e) => {
                    guard.take();
                    Poll::Ready(Err(e.into()))
                }
            },
            GuardedProj::Waiting { fut } => fut.get_mut().as_mut().poll(cx),
            GuardedProj::Failed { err } => {
                Poll::Ready(Err(err.take().expect("future polled after completion")))
            }
        }
    }
}

impl<F, B, G> fmt::Debug for Guarded<F, B, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self {
            Self::Running { guard, .. } => {
                if guard.is_some() {
                    "running"
                } else {
                    "running (unguarded)"
                }
            }
            Self::Waiting { .. } => "waiting",
            Self::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

// A future that only errors or forwards, for the layers that hold nothing.
pin_project! {
    #[project = PassProj]
    pub(crate) enum Pass<F> {
        Inner { #[pin] fut: F },
        Failed { err: Option<BoxError> },
    }
}

impl<F> Pass<F> {
    pub(crate) fn failed(err: impl Into<BoxError>) -> Self {
        Self::Failed {
            err: Some(err.into()),
        }
    }
}

impl<F, T, E> Future for Pass<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PassProj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            PassProj::Failed { err } => {
                Poll::Ready(Err(err.take().expect("future polled after completion")))
            }
        }
    }
}

impl<F> fmt::Debug for Pass<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self {
            Self::Inner { .. } => "inner",
            Self::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
