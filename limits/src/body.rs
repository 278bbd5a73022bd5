//! A response body that holds a guard (a compute share, a runtime slot, a
//! stream permit) until the body ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A response body that keeps `guard` alive while the body streams.
    ///
    /// The guard drops when the body yields its last frame (or an error), or
    /// when the body itself is dropped (the client went away). So a long
    /// streaming body holds its compute share and runtime slot for as long as
    /// it is open, unless the response is marked [`Detached`](crate::Detached):
    /// then those layers wrap it with no guard (`GuardedBody::new(body, None)`)
    /// and the limit that governs it, such as the stream permit of
    /// [`TenantStreamsLayer`](crate::TenantStreamsLayer), is the one held here.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use corral_limits::GuardedBody;
    /// use http_body_util::BodyExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let sem = Arc::new(tokio::sync::Semaphore::new(1));
    /// let permit = sem.clone().try_acquire_owned().unwrap();
    /// let body = GuardedBody::new(String::from("hi"), Some(permit));
    /// assert_eq!(sem.available_permits(), 0);
    /// let bytes = body.collect().await.unwrap().to_bytes();
    /// assert_eq!(&bytes[..], b"hi");
    /// assert_eq!(sem.available_permits(), 1);
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct GuardedBody<B, G> {
        #[pin]
        inner: B,
        guard: Option<G>,
    }
}

impl<B, G> GuardedBody<B, G> {
    /// Wraps `inner`, holding `guard` (if any) until the body ends.
    pub fn new(inner: B, guard: Option<G>) -> Self {
        Self { inner, guard }
    }

    /// Whether the guard is still held.
    pub fn is_guarded(&self) -> bool {
        self.guard.is_some()
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the body, releasing the guard.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body, G> Body for GuardedBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let done = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if done {
            *this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
