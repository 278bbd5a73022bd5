//! Monthly request quota: refuses a tenant's request once the requests counted
//! this calendar month (UTC) by a [`UsageSource`](crate::UsageSource) for the
//! tenant's *account* ([`TenantContext::account`](crate::TenantContext::account);
//! an app in an account of its own is its own account) reach the
//! tier's `requests_per_month` — exactly at `used == quota` — with
//! [`QuotaExceeded`](crate::QuotaExceeded) (429, `Retry-After` until the first
//! second of next month). Tiers without a monthly quota are not checked.
//!
//! The layer only reads: counting is the metering layer's job. `used` is taken
//! to be the requests *before* this one. Only admitted requests count: a
//! request refused by any limit (this one included, see
//! [`Refusal`](crate::Refusal)) is not a request of the month, so a client
//! hammering an app with requests that are refused cannot spend its quota.
//!
//! ```
//! use std::{convert::Infallible, sync::Arc};
//! use chrono::{DateTime, TimeZone, Utc};
//! use corral_limits::{error_response, QuotaExceeded, QuotaLayer, TenantContext, TenantId, Tier, UsageSource};
//! use http::{Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! struct Used(u64);
//! impl UsageSource for Used {
//!     fn requests_this_month(&self, _: &TenantId) -> u64 { self.0 }
//! }
//! fn now() -> DateTime<Utc> { Utc.with_ymd_and_hms(2026, 11, 30, 23, 0, 0).unwrap() }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut svc = ServiceBuilder::new()
//!     .layer(QuotaLayer::new(Used(10_000)).clock(now))
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
//! let mut req = Request::new(());
//! TenantContext::new("a".parse().unwrap(), Arc::new(Tier::free())).insert_into(&mut req);
//!
//! let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
//! let q = err.downcast_ref::<QuotaExceeded>().unwrap();
//! assert_eq!((q.quota, q.used), (10_000, 10_000));
//! assert_eq!(q.resets_at, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
//! let (status, headers, _) = error_response(&err).unwrap();
//! assert_eq!((status.as_u16(), headers["retry-after"].to_str().unwrap()), (429, "3600"));
//! # }
//! ```

use chrono::{DateTime, Datelike, NaiveDate, Utc};

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::QuotaLayer;
pub use service::TenantQuota;

/// Midnight UTC on the first day of the month after `now`'s.
pub(crate) fn next_month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = match now.month() {
        12 => (now.year() + 1, 1),
        m => (now.year(), m + 1),
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
