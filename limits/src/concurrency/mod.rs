//! Per-tenant compute shares: a semaphore per tenant sized by the tier's
//! `compute_shares`.
//!
//! When all of a tenant's shares are busy, the next request fails at once with
//! [`Overloaded`](crate::Overloaded) (429 + `Retry-After`), or, with
//! [`TenantConcurrencyLayer::wait`], after at most a bounded wait: never an
//! unbounded queue. Other tenants are unaffected. The share is held by the
//! response future and then by the response body ([`GuardedBody`](crate::GuardedBody)),
//! so a long streaming response keeps its share until it ends or the client
//! goes away, unless the response is marked [`Detached`](crate::Detached):
//! then the share is released when the response head arrives. An event
//! stream admitted by [`TenantStreamsLayer`](crate::TenantStreamsLayer)
//! (inside this layer) is marked so: it holds a stream permit, not a share.
//!
//! ```
//! use std::{convert::Infallible, sync::Arc, time::Duration};
//! use corral_limits::{error_response, TenantConcurrencyLayer, TenantContext, TenantLimits, Tier};
//! use http::{Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limits = TenantLimits::new();
//! let mut svc = ServiceBuilder::new()
//!     .layer(TenantConcurrencyLayer::new(limits.clone()).retry_after(Duration::from_millis(250)))
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::from("hi"))) });
//!
//! let free = Arc::new(Tier::free()); // one compute share
//! let req = || {
//!     let mut r = Request::new(());
//!     TenantContext::new("a".parse().unwrap(), free.clone()).insert_into(&mut r);
//!     r
//! };
//! // The first response's body holds tenant a's only share...
//! let held = svc.ready().await.unwrap().call(req()).await.unwrap();
//! // ...so the second request is refused at once.
//! let err = svc.ready().await.unwrap().call(req()).await.unwrap_err();
//! let (status, _, body) = error_response(&err).unwrap();
//! assert_eq!(status, 429);
//! let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!((v["error"].as_str(), v["retry_after_ms"].as_u64()), (Some("overloaded"), Some(250)));
//! drop(held); // the body is gone: the share is back
//! assert!(svc.ready().await.unwrap().call(req()).await.is_ok());
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::TenantConcurrencyLayer;
pub use service::TenantConcurrency;
