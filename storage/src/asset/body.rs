//! The response body: cached bytes, a verified stream, or the inner body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BlobReader;

/// Error type of [`AssetBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// Body of responses from [`AssetCacheService`](super::AssetCacheService):
    /// bytes from the cache, a verified stream of a large file, or the inner
    /// service's body.
    #[derive(Debug)]
    pub struct AssetBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Full { data: Option<Bytes> },
        Stream { reader: Option<Box<BlobReader>> },
        Inner { #[pin] body: B },
    }
}

impl<B> AssetBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full { data: Some(data) },
        }
    }
    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }
    pub(crate) fn stream(reader: BlobReader) -> Self {
        Self {
            kind: Kind::Stream {
                reader: Some(Box::new(reader)),
            },
        }
    }
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }
}

impl<B> Body for AssetBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Stream { reader } => {
                let Some(r) = reader.as_mut() else {
                    return Poll::Ready(None);
                };
                match r.next_verified() {
                    None => {
                        *reader = None;
                        Poll::Ready(None)
                    }
                    Some(Ok(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    Some(Err(e)) => {
                        *reader = None;
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                }
            }
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Stream { reader } => reader.is_none(),
            Kind::Inner { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream { reader: Some(r) } => SizeHint::default().tap_upper(r.len()),
            Kind::Stream { reader: None } => SizeHint::with_exact(0),
            Kind::Inner { body } => body.size_hint(),
        }
    }
}

trait TapUpper {
    fn tap_upper(self, upper: u64) -> Self;
}
impl TapUpper for SizeHint {
    fn tap_upper(mut self, upper: u64) -> Self {
        self.set_upper(upper);
        self
    }
}
