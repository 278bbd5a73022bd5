//! The response marker that lets the guard-holding layers let go at the head.

/// A response extension saying "this response's body is long-lived and
/// governed by another limit": the layers that hold a guard for the life of a
/// response ([`TenantConcurrencyLayer`](crate::TenantConcurrencyLayer),
/// [`RuntimeSlotsLayer`](crate::RuntimeSlotsLayer)) release their compute
/// share or runtime slot as soon as the response head arrives, instead of when
/// the body ends.
///
/// [`TenantStreamsLayer`](crate::TenantStreamsLayer) inserts it into every
/// event stream it admits (the stream holds a stream permit instead), so it
/// must sit inside those layers. Responses without the marker keep their guard
/// until the body ends or is dropped.
///
/// ```
/// use std::{convert::Infallible, sync::Arc};
/// use corral_limits::{Detached, TenantConcurrencyLayer, TenantContext, TenantLimits, Tier};
/// use http::{Request, Response};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limits = TenantLimits::new();
/// let mut svc = ServiceBuilder::new()
///     .layer(TenantConcurrencyLayer::new(limits.clone()))
///     .service_fn(|_: Request<()>| async {
///         let mut resp = Response::new(String::from("long-lived"));
///         resp.extensions_mut().insert(Detached);
///         Ok::<_, Infallible>(resp)
///     });
///
/// let ctx = TenantContext::new("a".parse().unwrap(), Arc::new(Tier::free()));
/// let mut req = Request::new(());
/// ctx.clone().insert_into(&mut req);
/// let open = svc.ready().await.unwrap().call(req).await.unwrap();
/// // The body is still open, but it holds no compute share.
/// assert!(!open.body().is_guarded());
/// assert_eq!(limits.load(ctx.id()).unwrap().shares_in_use, 0);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Detached;

impl Detached {
    /// Whether `resp` carries the marker.
    ///
    /// ```
    /// use corral_limits::Detached;
    /// let mut resp = http::Response::new(());
    /// assert!(!Detached::is_set(&resp));
    /// resp.extensions_mut().insert(Detached);
    /// assert!(Detached::is_set(&resp));
    /// ```
    pub fn is_set<B>(resp: &http::Response<B>) -> bool {
        resp.extensions().get::<Detached>().is_some()
    }
}

/// A response extension for an event stream whose body is still written by
/// the request's own run (a WebAssembly module that writes events until it
/// exits): [`TenantStreamsLayer`](crate::TenantStreamsLayer) counts it
/// against `max_streams` as usual but does not mark it [`Detached`], so the
/// compute share and runtime slot stay held until the body ends, as for any
/// request still running guest code.
///
/// ```
/// use std::{convert::Infallible, sync::Arc};
/// use corral_limits::{Attached, Detached, TenantContext, TenantLimits, TenantStreamsLayer, Tier};
/// use http::{Request, Response};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limits = TenantLimits::new();
/// let mut svc = ServiceBuilder::new()
///     .layer(TenantStreamsLayer::new(limits.clone()))
///     .service_fn(|_: Request<()>| async {
///         let mut resp = Response::builder()
///             .header("content-type", "text/event-stream")
///             .body(String::new())
///             .unwrap();
///         resp.extensions_mut().insert(Attached);
///         Ok::<_, Infallible>(resp)
///     });
///
/// let ctx = TenantContext::new("a".parse().unwrap(), Arc::new(Tier::free()));
/// let mut req = Request::new(());
/// ctx.clone().insert_into(&mut req);
/// let open = svc.ready().await.unwrap().call(req).await.unwrap();
/// assert!(!Detached::is_set(&open));
/// assert_eq!(limits.load(ctx.id()).unwrap().streams_open, 1);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attached;
