//! Host-wide runtime slots: how many tenant requests execute on this host at
//! once, whoever the tenant. Sized from the host probe and resizable at run
//! time ([`RuntimeSlots::resize`]) without dropping a request in flight.
//!
//! When no slot is free the request fails with [`RuntimeBusy`](crate::RuntimeBusy)
//! (503 + `Retry-After`: the host, not the tenant, is at capacity), at once or
//! after a bounded [`wait`](RuntimeSlotsLayer::wait). Like compute shares, the
//! slot is held by the response future and then by the response body, or only
//! until the response head when the response is marked
//! [`Detached`](crate::Detached) (an event stream admitted by
//! [`TenantStreamsLayer`](crate::TenantStreamsLayer) inside this layer). Requests
//! of a tenant whose tier is `dedicated` run on their own partition and take
//! no shared slot; requests without a [`TenantContext`](crate::TenantContext)
//! take one, so the layer also works in a stack without tenants.
//!
//! ```
//! use std::convert::Infallible;
//! use corral_limits::{error_response, RuntimeSlots, RuntimeSlotsLayer};
//! use http::{Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let slots = RuntimeSlots::new(1);
//! let mut svc = ServiceBuilder::new()
//!     .layer(RuntimeSlotsLayer::new(slots.clone()))
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//!
//! let held = svc.ready().await.unwrap().call(Request::new(())).await.unwrap();
//! assert_eq!(slots.in_use(), 1);
//! let err = svc.ready().await.unwrap().call(Request::new(())).await.unwrap_err();
//! assert_eq!(error_response(&err).unwrap().0, 503);
//!
//! slots.resize(2); // at run time, with `held` still streaming
//! assert!(svc.ready().await.unwrap().call(Request::new(())).await.is_ok());
//! drop(held);
//! # }
//! ```

mod future;
mod layer;
mod service;
mod slots;

pub use future::ResponseFuture;
pub use layer::RuntimeSlotsLayer;
pub use service::RuntimeLimit;
pub use slots::{RuntimeSlot, RuntimeSlots};
