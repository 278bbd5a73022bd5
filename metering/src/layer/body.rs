use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::meter::Tenant;
use crate::{StreamGuard, TenantMeter};

pin_project! {
    /// A response body that counts the bytes it yields into its tenant's
    /// `bytes_out`, and for streaming responses holds the stream gauge until
    /// the body ends, fails, or is dropped.
    #[derive(Debug)]
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        tenant: Option<Arc<Tenant>>,
        stream: Option<StreamGuard>,
    }
}

impl<B> MeteredBody<B> {
    /// Wraps `inner`; `stream` (if any) is released when the body ends.
    pub fn new(inner: B, tenant: Option<TenantMeter>, stream: Option<StreamGuard>) -> Self {
        Self::with_counters(inner, tenant.map(TenantMeter::into_counters), stream)
    }

    pub(crate) fn with_counters(
        inner: B,
        tenant: Option<Arc<Tenant>>,
        stream: Option<StreamGuard>,
    ) -> Self {
        Self {
            inner,
            tenant,
            stream,
        }
    }

    /// Whether this body holds a stream open in the gauge.
    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(t), Some(d)) = (this.tenant.as_ref(), f.data_ref()) {
                    t.c.bytes_out.fetch_add(d.remaining() as u64, Relaxed);
                }
            }
            Some(Err(_)) | None => {
                this.stream.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
