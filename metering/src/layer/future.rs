use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::Response;
use pin_project_lite::pin_project;

use super::{ClassifyError, MeteredBody};
use corral_limits::Refusal;

use crate::meter::Entry;
use crate::{ErrorKind, InvocationFigures, StatusClass, StreamFigures, StreamGuard};

pin_project! {
    /// The response future of [`MeteringService`](super::MeteringService):
    /// counts the outcome and latency when the inner future completes. The
    /// request is in flight until then; a refusal counts under `refused`,
    /// anything else as an admitted request (also when this future is
    /// dropped first).
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        start: Instant,
        tenant: Option<Entry>,
        classify: C,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn new(inner: F, start: Instant, tenant: Option<Entry>, classify: C) -> Self {
        Self {
            inner,
            start,
            tenant,
            classify,
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: ClassifyError<E>,
{
    type Output = Result<Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        let entry = this.tenant.take();
        match out {
            Ok(res) => {
                let refused = res.extensions().get::<Refusal>().copied();
                let tenant: Option<Arc<_>> = entry.map(|e| e.settle(refused));
                let mut stream = None;
                if let Some(t) = &tenant {
                    t.c.latency(this.start.elapsed());
                    t.c.status[StatusClass::of(res.status()).index()].fetch_add(1, Relaxed);
                    if let Some(kind) = res.extensions().get::<ErrorKind>() {
                        t.c.errors[kind.index()].fetch_add(1, Relaxed);
                    } else if res.status().is_server_error() {
                        t.c.errors[ErrorKind::Other.index()].fetch_add(1, Relaxed);
                    }
                    if let Some(f) = res.extensions().get::<InvocationFigures>() {
                        t.c.invocation(f);
                    }
                    if let Some(late) = res.extensions().get::<StreamFigures>() {
                        late.attach(t.clone());
                    }
                    if corral_limits::is_event_stream(res.headers()) {
                        stream = Some(StreamGuard::open(t.clone()));
                    }
                }
                Poll::Ready(Ok(
                    res.map(|b| MeteredBody::with_counters(b, tenant, stream))
                ))
            }
            Err(e) => {
                if let Some(entry) = entry {
                    let t = entry.settle(this.classify.refusal(&e));
                    t.c.latency(this.start.elapsed());
                    let kind = this.classify.classify(&e);
                    t.c.errors[kind.index()].fetch_add(1, Relaxed);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}
