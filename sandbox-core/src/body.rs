//! [`Body`]: the body of a sandbox response, whole or streamed.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use crate::SandboxError;

/// The body of a response from a [`Program`](crate::Program): either the
/// whole body at once, or a stream of chunks the guest is still producing
/// (a JavaScript `ReadableStream`, for example a `text/event-stream`).
///
/// It is an [`http_body::Body`], so a frontend can hand it straight to hyper;
/// [`to_bytes`](Self::to_bytes) collects it when the whole body is wanted.
/// Dropping a streamed body (the client went away) tells the guest: its
/// stream is cancelled.
///
/// ```
/// use corral::Body;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let whole = Body::full("hello");
/// assert!(!whole.is_stream());
/// assert_eq!(whole.as_bytes().unwrap(), "hello");
///
/// let (tx, streamed) = Body::channel(4);
/// tokio::spawn(async move {
///     tx.send("data: 1\n\n").await.unwrap();
///     tx.send("data: 2\n\n").await.unwrap();
/// });
/// assert!(streamed.is_stream());
/// assert_eq!(streamed.to_bytes().await.unwrap(), "data: 1\n\ndata: 2\n\n");
/// # }
/// ```
pub struct Body {
    kind: Kind,
    /// Released when the body ends, fails or is dropped (keeps the tenant
    /// from being parked while its stream is open).
    guard: Option<Box<dyn Any + Send + Sync>>,
    /// Ends a streamed body early when it resolves (the tenant was removed).
    until: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, SandboxError>>),
}

impl Body {
    /// A whole body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            guard: None,
            until: None,
        }
    }

    /// An empty body.
    ///
    /// ```
    /// assert_eq!(corral::Body::empty().as_bytes().unwrap().len(), 0);
    /// ```
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// A streamed body fed by the returned [`BodySender`], which holds up
    /// to `buffer` chunks (at least 1) before `send` waits for the reader.
    /// The body ends when the sender is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (tx, body) = corral::Body::channel(1);
    /// drop(body); // the client went away
    /// assert!(tx.send("late").await.is_err());
    /// # }
    /// ```
    pub fn channel(buffer: usize) -> (BodySender, Self) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let body = Self {
            kind: Kind::Stream(rx),
            guard: None,
            until: None,
        };
        (BodySender(tx), body)
    }

    /// Whether the body is streamed (its length is not known yet).
    pub fn is_stream(&self) -> bool {
        matches!(self.kind, Kind::Stream(_))
    }

    /// The bytes of a whole body; `None` for a streamed one.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        static EMPTY: Bytes = Bytes::new();
        match &self.kind {
            Kind::Full(bytes) => Some(bytes.as_ref().unwrap_or(&EMPTY)),
            Kind::Stream(_) => None,
        }
    }

    /// Collects the body: at once for a whole body, to the stream's end for
    /// a streamed one. A stream the guest failed gives its error.
    pub async fn to_bytes(self) -> Result<Bytes, SandboxError> {
        use http_body_util::BodyExt as _;
        Ok(self.collect().await?.to_bytes())
    }

    /// Collects `response`'s body, keeping its status, headers and
    /// extensions.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let response = http::Response::new(corral::Body::full("hi"));
    /// let whole = corral::Body::collect_response(response).await.unwrap();
    /// assert_eq!(whole.body(), "hi");
    /// # }
    /// ```
    pub async fn collect_response(
        response: http::Response<Self>,
    ) -> Result<http::Response<Bytes>, SandboxError> {
        let (parts, body) = response.into_parts();
        Ok(http::Response::from_parts(parts, body.to_bytes().await?))
    }

    /// Keeps `guard` alive until the body ends, fails or is dropped.
    pub(crate) fn hold(mut self, guard: impl Any + Send + Sync) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// Ends a streamed body (as if the guest had closed it) once `stop`
    /// resolves; the producer sees its reader gone.
    pub(crate) fn until(mut self, stop: impl Future<Output = ()> + Send + Sync + 'static) -> Self {
        self.until = Some(Box::pin(stop));
        self
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f
                .debug_struct("Body")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream(_) => f.debug_struct("Body").field("stream", &true).finish(),
        }
    }
}

macro_rules! from_bytes {
    ($($t:ty),*) => {$(
        impl From<$t> for Body {
            fn from(value: $t) -> Self {
                Self::full(value)
            }
        }
    )*};
}
from_bytes!(Bytes, Vec<u8>, String, &'static str, &'static [u8]);

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = SandboxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SandboxError>>> {
        let this = &mut *self;
        if let Some(stop) = &mut this.until
            && stop.as_mut().poll(cx).is_ready()
        {
            // Dropping the receiver tells the producer its reader is gone.
            this.kind = Kind::Full(None);
            this.until = None;
            this.guard = None;
            return Poll::Ready(None);
        }
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|c| c.map(Frame::data))),
        };
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

/// The feeding end of a streamed [`Body`], from [`Body::channel`].
#[derive(Debug, Clone)]
pub struct BodySender(mpsc::Sender<Result<Bytes, SandboxError>>);

/// The reader of a streamed [`Body`] is gone: the client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the body's reader is gone")]
#[non_exhaustive]
pub struct BodyClosed;

impl BodySender {
    /// Sends a chunk, waiting while the body's buffer is full. Empty chunks
    /// are skipped. `Err` once the body was dropped.
    pub async fn send(&self, chunk: impl Into<Bytes>) -> Result<(), BodyClosed> {
        let chunk = chunk.into();
        if chunk.is_empty() {
            return if self.0.is_closed() {
                Err(BodyClosed)
            } else {
                Ok(())
            };
        }
        self.0.send(Ok(chunk)).await.map_err(|_| BodyClosed)
    }

    /// Ends the body with `error` (the reader sees it after the chunks
    /// already sent; over HTTP the response is cut short).
    pub async fn abort(self, error: SandboxError) {
        let _ = self.0.send(Err(error)).await;
    }

    /// Resolves when the body has been dropped.
    pub async fn closed(&self) {
        self.0.closed().await;
    }

    /// Whether the body has been dropped.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Sends without waiting, for a producer that cannot await (a guest's
    /// synchronous write): it waits in [`room`](Self::room) first.
    pub(crate) fn try_send(&self, chunk: Bytes) -> Result<(), TrySend> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.0.try_send(Ok(chunk)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TrySend::Full,
            mpsc::error::TrySendError::Closed(_) => TrySend::Closed,
        })
    }

    /// Whether a [`try_send`](Self::try_send) would find room now.
    pub(crate) fn has_room(&self) -> bool {
        self.0.capacity() > 0
    }

    /// Resolves once the buffer has room for a chunk, or the body is gone.
    pub(crate) async fn room(&self) {
        let _ = self.0.reserve().await;
    }
}

/// Why [`BodySender::try_send`] did not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrySend {
    /// The buffer is full.
    Full,
    /// The body was dropped.
    Closed,
}
