//! Per-tenant event streams: a semaphore per tenant sized by the tier's
//! `max_streams`, taken by each Server-Sent Events response
//! (`content-type: text/event-stream`, see [`is_event_stream`]).
//!
//! An open event stream executes nothing while it idles, so it must not hold a
//! compute share or a runtime slot (one stream would block a free-tier tenant
//! entirely, and `max_streams` could never be reached). Instead, when the
//! response head of an event stream arrives, this layer takes a stream permit
//! without waiting: the body ([`GuardedBody`](crate::GuardedBody)) holds it
//! until the stream ends or the client goes away, and the response is marked
//! [`Detached`](crate::Detached) so that [`TenantConcurrencyLayer`](crate::TenantConcurrencyLayer)
//! and [`RuntimeSlotsLayer`](crate::RuntimeSlotsLayer) release their share
//! and slot at the head. So the layer sits innermost, inside those two. A
//! stream the service marked [`Attached`](crate::Attached) (its own run still
//! writes it, so it is not idle) takes a permit too but is not detached.
//!
//! When all of the tenant's permits are held (or the tier allows none), the
//! call fails with [`TooManyStreams`](crate::TooManyStreams) (429 +
//! `Retry-After`) and the response is dropped, which ends the guest's stream.
//! Other responses pass through untouched and hold no permit.
//!
//! ```
//! use std::{convert::Infallible, sync::Arc, time::Duration};
//! use corral_limits::{
//!     error_response, TenantConcurrencyLayer, TenantContext, TenantLimits, TenantStreamsLayer, Tier,
//! };
//! use http::{header::CONTENT_TYPE, Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limits = TenantLimits::new();
//! let mut svc = ServiceBuilder::new()
//!     .layer(TenantConcurrencyLayer::new(limits.clone()))
//!     .layer(TenantStreamsLayer::new(limits.clone()).retry_after(Duration::from_millis(500)))
//!     .service_fn(|req: Request<&'static str>| async move {
//!         let kind = if *req.body() == "sse" { "text/event-stream" } else { "text/plain" };
//!         Ok::<_, Infallible>(Response::builder().header(CONTENT_TYPE, kind).body(()).unwrap())
//!     });
//!
//! let free = Arc::new(Tier::free()); // one compute share, two streams
//! let ctx = TenantContext::new("a".parse().unwrap(), free);
//! let req = |body| {
//!     let mut r = Request::new(body);
//!     ctx.clone().insert_into(&mut r);
//!     r
//! };
//! let one = svc.ready().await.unwrap().call(req("sse")).await.unwrap();
//! let two = svc.ready().await.unwrap().call(req("sse")).await.unwrap();
//! let load = limits.load(ctx.id()).unwrap();
//! // Two streams open, and the only compute share is free.
//! assert_eq!((load.streams_open, load.shares_in_use), (2, 0));
//!
//! let err = svc.ready().await.unwrap().call(req("sse")).await.unwrap_err();
//! let (status, headers, body) = error_response(&err).unwrap();
//! assert_eq!((status.as_u16(), headers["retry-after"].to_str().unwrap()), (429, "1"));
//! let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!((v["error"].as_str(), v["limit"].as_u64()), (Some("too_many_streams"), Some(2)));
//! // Other responses are served meanwhile.
//! assert!(svc.ready().await.unwrap().call(req("page")).await.is_ok());
//!
//! drop(one); // the client went away: its permit is back
//! assert!(svc.ready().await.unwrap().call(req("sse")).await.is_ok());
//! # drop(two);
//! # }
//! ```

use http::HeaderMap;
use http::header::CONTENT_TYPE;

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::TenantStreamsLayer;
pub use service::TenantStreams;

/// Whether `headers` describe an event stream: the media type of
/// `content-type` is `text/event-stream` (compared case-insensitively,
/// parameters such as `charset` ignored). No `content-type`: not a stream.
///
/// ```
/// use corral_limits::is_event_stream;
/// use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue};
///
/// let mut headers = HeaderMap::new();
/// assert!(!is_event_stream(&headers));
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("Text/Event-Stream; charset=utf-8"));
/// assert!(is_event_stream(&headers));
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
/// assert!(!is_event_stream(&headers));
/// ```
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let media = v
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default();
        media
            .trim_ascii()
            .eq_ignore_ascii_case(b"text/event-stream")
    })
}
