//! Per-tenant request rate: GCRA (the `governor` crate) with the tier's
//! `rate_per_minute` and `burst`. Over the rate, a request fails with
//! [`RateLimited`](crate::RateLimited) (429 + `Retry-After` of when the next
//! request will be admitted). Tiers without a rate are not limited. The GCRA
//! state is one atomic word per tenant in [`TenantLimits`](crate::TenantLimits):
//! no task or timer.
//!
//! ```
//! use std::{convert::Infallible, sync::Arc};
//! use corral_limits::{error_response, RateLimitLayer, RateLimited, TenantContext, TenantLimits, Tier};
//! use http::{Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let mut tier = Tier::free();
//! tier.rate_per_minute = Some(60); // one per second...
//! tier.burst = 2; // ...after a burst of two
//! let tier = Arc::new(tier);
//! let mut svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(TenantLimits::new()))
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
//! let req = || {
//!     let mut r = Request::new(());
//!     TenantContext::new("a".parse().unwrap(), tier.clone()).insert_into(&mut r);
//!     r
//! };
//! assert!(svc.ready().await.unwrap().call(req()).await.is_ok());
//! assert!(svc.ready().await.unwrap().call(req()).await.is_ok());
//! let err = svc.ready().await.unwrap().call(req()).await.unwrap_err();
//! let limited = err.downcast_ref::<RateLimited>().unwrap();
//! assert_eq!(limited.retry_after, std::time::Duration::from_secs(1));
//! assert_eq!(error_response(&err).unwrap().0, 429);
//! tokio::time::advance(limited.retry_after).await;
//! assert!(svc.ready().await.unwrap().call(req()).await.is_ok());
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::RateLimitLayer;
pub use service::TenantRateLimit;
