//! [`MeteringLayer`]: counts each request, its outcome, latency, body bytes and
//! the sandbox's per-invocation figures.
//!
//! It sits outermost in the tenant stack, so it also sees the requests that
//! the limit layers refuse. The tenant is read from the request's extensions
//! (by default a [`TenantId`]; see [`TenantOf`]); the outcome is counted by
//! status class, and as an error when
//! - the inner service fails: the [`ClassifyError`] given to the layer names the
//!   [`ErrorKind`] (the default, [`AsOther`], counts every failure as `other`);
//! - or the response carries an [`ErrorKind`] extension (inserted by whatever
//!   turned a limit error into a response);
//! - or, lacking both, the status is 5xx (counted as `other`).
//!
//! [`InvocationFigures`](crate::InvocationFigures) in the response's extensions
//! add fuel, wall time, peak memory and cold starts. The response body is
//! wrapped in a [`MeteredBody`] that counts bytes out and, for
//! `text/event-stream` responses, holds the tenant's stream gauge up until the
//! body ends or is dropped (client gone).
//!
//! ```
//! use std::convert::Infallible;
//! use corral_metering::{ErrorKind, Meter, MeteringLayer, StatusClass};
//! use corral_limits::TenantId;
//! use tower::{Layer, Service, ServiceExt};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let meter = Meter::new();
//! let inner = tower::service_fn(|_req: http::Request<String>| async {
//!     let mut res = http::Response::new("slow down".to_string());
//!     *res.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
//!     res.extensions_mut().insert(ErrorKind::Rate); // what the rate limit reports
//!     Ok::<_, Infallible>(res)
//! });
//! let mut svc = MeteringLayer::new(meter.clone()).layer(inner);
//!
//! let shop: TenantId = "shop".parse().unwrap();
//! let mut req = http::Request::new("hello".to_string());
//! req.extensions_mut().insert(shop.clone());
//! let res = svc.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.status(), 429);
//!
//! let s = meter.snapshot(&shop).unwrap();
//! assert_eq!(s.requests, 1);
//! assert_eq!(s.bytes_in, 5);
//! assert_eq!(s.status(StatusClass::ClientError), 1);
//! assert_eq!(s.errors(ErrorKind::Rate), 1);
//! # });
//! ```

mod body;
mod future;
mod service;

pub use body::MeteredBody;
pub use future::ResponseFuture;
pub use service::MeteringService;

use corral_limits::TenantId;

use crate::{ErrorKind, Meter};

/// Names the [`ErrorKind`] of an inner service's error `E`.
///
/// Implemented for closures `Fn(&E) -> ErrorKind`, so a stack over
/// `BoxError` can write
/// `|e: &BoxError| if e.is::<QuotaExceeded>() { ErrorKind::Quota } else { ErrorKind::Other }`.
///
/// ```
/// use corral_metering::{AsOther, ClassifyError, ErrorKind};
/// let by_message = |e: &std::io::Error| {
///     if e.kind() == std::io::ErrorKind::TimedOut { ErrorKind::Deadline } else { ErrorKind::Other }
/// };
/// let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
/// assert_eq!(by_message.classify(&timeout), ErrorKind::Deadline);
/// assert_eq!(AsOther.classify(&timeout), ErrorKind::Other);
/// ```
pub trait ClassifyError<E>: Clone + Send + Sync + 'static {
    /// The kind of `error`.
    fn classify(&self, error: &E) -> ErrorKind;
}

/// Counts every inner-service error as [`ErrorKind::Other`] (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AsOther;

impl<E> ClassifyError<E> for AsOther {
    fn classify(&self, _: &E) -> ErrorKind {
        ErrorKind::Other
    }
}

impl<E, F> ClassifyError<E> for F
where
    F: Fn(&E) -> ErrorKind + Clone + Send + Sync + 'static,
{
    fn classify(&self, error: &E) -> ErrorKind {
        self(error)
    }
}

/// Finds whose request this is in the request's extensions.
///
/// ```
/// use corral_metering::{TenantIdExtension, TenantOf};
/// use corral_limits::TenantId;
/// let mut ext = http::Extensions::new();
/// assert!(TenantIdExtension.tenant(&ext).is_none());
/// ext.insert(TenantId::new("shop").unwrap());
/// assert_eq!(TenantIdExtension.tenant(&ext).unwrap().as_str(), "shop");
/// ```
pub trait TenantOf: Clone + Send + Sync + 'static {
    /// The tenant, if the request names one.
    fn tenant<'a>(&self, extensions: &'a http::Extensions) -> Option<&'a TenantId>;
}

/// Reads a [`TenantId`] extension (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantIdExtension;

impl TenantOf for TenantIdExtension {
    fn tenant<'a>(&self, extensions: &'a http::Extensions) -> Option<&'a TenantId> {
        extensions.get::<TenantId>()
    }
}

/// The tower layer that meters every request through it. Configuration only:
/// `Clone + Debug`, the counters live in the shared [`Meter`].
#[derive(Debug, Clone)]
pub struct MeteringLayer<C = AsOther, T = TenantIdExtension> {
    meter: Meter,
    classify: C,
    tenant_of: T,
}

impl MeteringLayer {
    /// Meters into `meter`; errors count as `other`, the tenant is a
    /// [`TenantId`] extension.
    pub fn new(meter: Meter) -> Self {
        Self {
            meter,
            classify: AsOther,
            tenant_of: TenantIdExtension,
        }
    }
}

impl<C, T> MeteringLayer<C, T> {
    /// Names inner-service errors with `classify`. Default: [`AsOther`].
    #[must_use]
    pub fn classify<C2>(self, classify: C2) -> MeteringLayer<C2, T> {
        MeteringLayer {
            meter: self.meter,
            classify,
            tenant_of: self.tenant_of,
        }
    }

    /// Finds the tenant with `tenant_of`. Default: [`TenantIdExtension`].
    #[must_use]
    pub fn tenant_from<T2>(self, tenant_of: T2) -> MeteringLayer<C, T2> {
        MeteringLayer {
            meter: self.meter,
            classify: self.classify,
            tenant_of,
        }
    }
}

impl<S, C: Clone, T: Clone> tower_layer::Layer<S> for MeteringLayer<C, T> {
    type Service = MeteringService<S, C, T>;
    fn layer(&self, inner: S) -> Self::Service {
        MeteringService::new(
            inner,
            self.meter.clone(),
            self.classify.clone(),
            self.tenant_of.clone(),
        )
    }
}
