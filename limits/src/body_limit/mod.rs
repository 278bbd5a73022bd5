//! Request body size from the tenant's tier, enforced by tower-http's
//! [`RequestBodyLimit`](tower_http::limit::RequestBodyLimit) (this crate does
//! not write another): a `Content-Length` over the tier's `max_body_bytes`
//! gets tower-http's 413 response at once; a body without one is cut off at
//! the limit, and the inner service reading it gets
//! `http_body_util::LengthLimitError`, which [`error_response`](crate::error_response)
//! maps to 413 `{"error":"payload_too_large"}`.
//!
//! For a stack serving one tier, [`Tier::body_limit_layer`](crate::Tier::body_limit_layer)
//! gives tower-http's layer directly.
//!
//! ```
//! use std::{convert::Infallible, sync::Arc};
//! use corral_limits::{TenantBodyLimitLayer, TenantContext, Tier};
//! use http::{header::CONTENT_LENGTH, Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_http::body::Limited;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut svc = ServiceBuilder::new()
//!     .layer(TenantBodyLimitLayer::new())
//!     .service_fn(|_: Request<Limited<String>>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//!
//! let mut tier = Tier::free();
//! tier.max_body_bytes = 4;
//! let mut req = Request::builder().header(CONTENT_LENGTH, 5).body(String::from("12345")).unwrap();
//! TenantContext::new("a".parse().unwrap(), Arc::new(tier)).insert_into(&mut req);
//! let resp = svc.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(resp.status(), 413);
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::TenantBodyLimitLayer;
pub use service::TenantBodyLimit;
