//! [`MeteringLayer`]: counts each request, its outcome, latency, body bytes and
//! the sandbox's per-invocation figures.
//!
//! It sits outermost in the tenant stack, so it also sees the requests that
//! the limit layers refuse, and counts them apart: a request is *in flight*
//! while the stack works on it, then either *refused* (the inner service
//! failed with a limit's refusal, as named by the classifier's
//! [`refusal`](ClassifyError::refusal), or answered with a
//! `corral_limits::Refusal` response extension) and counted by kind under
//! `refused`, or *admitted* and counted among the requests that the monthly
//! quota reads. The tenant is read from the request's extensions
//! (by default a `corral_limits::TenantContext`, or a bare [`TenantId`]; see
//! [`TenantOf`]); the outcome is counted by status class, and as an error when
//! - the inner service fails: the [`ClassifyError`] given to the layer names the
//!   [`ErrorKind`] (the default, [`AsOther`], counts every failure as `other`;
//!   [`LimitErrors`] knows corral-limits' error types in a `BoxError`);
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
//! use corral_limits::{Refusal, TenantId};
//! use tower::{Layer, Service, ServiceExt};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let meter = Meter::new();
//! let inner = tower::service_fn(|req: http::Request<String>| async move {
//!     if req.body() == "hello" {
//!         return Ok::<_, Infallible>(http::Response::new("hi".to_string()));
//!     }
//!     let mut res = http::Response::new("slow down".to_string());
//!     *res.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
//!     res.extensions_mut().insert(ErrorKind::Rate); // what the rate limit reports
//!     res.extensions_mut().insert(Refusal::RateLimited);
//!     Ok::<_, Infallible>(res)
//! });
//! let mut svc = MeteringLayer::new(meter.clone()).layer(inner);
//!
//! let shop: TenantId = "shop".parse().unwrap();
//! for body in ["hello", "again", "again"] {
//!     let mut req = http::Request::new(body.to_string());
//!     req.extensions_mut().insert(shop.clone());
//!     svc.ready().await.unwrap().call(req).await.unwrap();
//! }
//!
//! let s = meter.snapshot(&shop).unwrap();
//! assert_eq!(s.requests, 1); // admitted
//! assert_eq!(s.refused(Refusal::RateLimited), 2);
//! assert_eq!(s.bytes_in, 15);
//! assert_eq!(s.status(StatusClass::ClientError), 2);
//! assert_eq!(s.errors(ErrorKind::Rate), 2);
//! # });
//! ```

mod body;
mod future;
mod service;

pub use body::MeteredBody;
pub use future::ResponseFuture;
pub use service::MeteringService;

use corral_limits::{BoxError, Refusal, TenantContext, TenantId};

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

    /// The refusal `error` is, if a limit refused the request: then it is
    /// counted under `refused` instead of among the admitted requests.
    /// Default: `None` (every failure was admitted first).
    fn refusal(&self, error: &E) -> Option<Refusal> {
        let _ = error;
        None
    }
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
/// use corral_metering::{TenantFromExtensions, TenantOf};
/// use corral_limits::TenantId;
/// let mut ext = http::Extensions::new();
/// assert!(TenantFromExtensions.tenant(&ext).is_none());
/// ext.insert(TenantId::new("shop").unwrap());
/// assert_eq!(TenantFromExtensions.tenant(&ext).unwrap().as_str(), "shop");
/// ```
pub trait TenantOf: Clone + Send + Sync + 'static {
    /// The tenant, if the request names one.
    fn tenant<'a>(&self, extensions: &'a http::Extensions) -> Option<&'a TenantId>;
}

/// Reads a `corral_limits::TenantContext` extension, else a bare [`TenantId`]
/// extension (the default).
///
/// ```
/// use std::sync::Arc;
/// use corral_limits::{TenantContext, TenantId, Tier};
/// use corral_metering::{TenantFromExtensions, TenantOf};
/// let mut ext = http::Extensions::new();
/// ext.insert(TenantContext::new(TenantId::new("ctx")?, Arc::new(Tier::free())));
/// assert_eq!(TenantFromExtensions.tenant(&ext).unwrap().as_str(), "ctx");
/// # Ok::<(), corral_limits::InvalidTenantId>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantFromExtensions;

impl TenantOf for TenantFromExtensions {
    fn tenant<'a>(&self, extensions: &'a http::Extensions) -> Option<&'a TenantId> {
        match extensions.get::<TenantContext>() {
            Some(ctx) => Some(ctx.id()),
            None => extensions.get::<TenantId>(),
        }
    }
}

/// Reads the *account* of a `corral_limits::TenantContext` extension: a
/// second [`MeteringLayer`] on a meter of its own, with this as its
/// [`tenant_from`](MeteringLayer::tenant_from), meters every account (all
/// its apps' requests together), which is what an account-wide monthly
/// quota reads.
///
/// ```
/// use std::sync::Arc;
/// use corral_limits::{TenantContext, Tier};
/// use corral_metering::{AccountFromExtensions, TenantOf};
/// let mut ext = http::Extensions::new();
/// ext.insert(TenantContext::in_account("blog".parse()?, "acme".parse()?, Arc::new(Tier::pro())));
/// assert_eq!(AccountFromExtensions.tenant(&ext).unwrap().as_str(), "acme");
/// # Ok::<(), corral_limits::InvalidTenantId>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountFromExtensions;

impl TenantOf for AccountFromExtensions {
    fn tenant<'a>(&self, extensions: &'a http::Extensions) -> Option<&'a TenantId> {
        extensions
            .get::<TenantContext>()
            .map(TenantContext::account)
    }
}

/// The [`ErrorKind`] of the refusal found in `error` or its sources
/// ([`Refusal::of`], [`ErrorKind::of_refusal`]); `None` for anything else.
///
/// ```
/// use std::time::Duration;
/// use corral_limits::{BoxError, Overloaded};
/// use corral_metering::{ErrorKind, limit_error_kind};
/// let e: BoxError = Overloaded::new("a".parse().unwrap(), Duration::from_millis(5)).into();
/// assert_eq!(limit_error_kind(&*e), Some(ErrorKind::Overloaded));
/// assert_eq!(limit_error_kind(&*BoxError::from("boom")), None);
/// ```
pub fn limit_error_kind(error: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    Refusal::of(error).map(ErrorKind::of_refusal)
}

/// Classifies corral-limits' errors in a `BoxError` ([`limit_error_kind`]),
/// everything else as `other`; their refusals ([`Refusal::of`]) are counted
/// as refused, not admitted.
///
/// ```
/// use corral_limits::{BoxError, Refusal, RuntimeBusy};
/// use corral_metering::{ClassifyError, ErrorKind, LimitErrors};
/// let e: BoxError = RuntimeBusy::new(std::time::Duration::from_millis(5)).into();
/// assert_eq!(LimitErrors.classify(&e), ErrorKind::Overloaded);
/// assert_eq!(LimitErrors.refusal(&e), Some(Refusal::RuntimeBusy));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitErrors;

impl ClassifyError<BoxError> for LimitErrors {
    fn classify(&self, error: &BoxError) -> ErrorKind {
        limit_error_kind(&**error).unwrap_or(ErrorKind::Other)
    }

    fn refusal(&self, error: &BoxError) -> Option<Refusal> {
        Refusal::of(&**error)
    }
}

/// The tower layer that meters every request through it. Configuration only:
/// `Clone + Debug`, the counters live in the shared [`Meter`].
#[derive(Debug, Clone)]
pub struct MeteringLayer<C = AsOther, T = TenantFromExtensions> {
    meter: Meter,
    classify: C,
    tenant_of: T,
}

impl MeteringLayer {
    /// Meters into `meter`; errors count as `other`, the tenant comes from
    /// [`TenantFromExtensions`].
    pub fn new(meter: Meter) -> Self {
        Self {
            meter,
            classify: AsOther,
            tenant_of: TenantFromExtensions,
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

    /// Finds the tenant with `tenant_of`. Default: [`TenantFromExtensions`].
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
