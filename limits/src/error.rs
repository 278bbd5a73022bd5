//! The errors the layers fail with, and their HTTP form.
//!
//! Each layer fails with a small error struct boxed as a [`BoxError`] (tower's
//! convention); find it with `downcast_ref`, or turn any of them into a status,
//! headers and a stable JSON body with [`error_response`].

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::TenantId;

/// A boxed error, as tower services return them.
pub type BoxError = tower::BoxError;

/// All of the tenant's compute shares are busy (per-tenant semaphore): 429.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {tenant} is using all its compute shares; retry in {retry_after:?}")]
#[non_exhaustive]
pub struct Overloaded {
    /// The tenant refused.
    pub tenant: TenantId,
    /// When a retry is worth trying.
    pub retry_after: Duration,
}

impl Overloaded {
    /// The error for `tenant`.
    pub fn new(tenant: TenantId, retry_after: Duration) -> Self {
        Self {
            tenant,
            retry_after,
        }
    }
}

/// The tenant already holds open as many event streams as its tier's
/// `max_streams` allows: 429. The refused stream's response is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {tenant} has all of its {limit} event streams open; retry in {retry_after:?}")]
#[non_exhaustive]
pub struct TooManyStreams {
    /// The tenant refused.
    pub tenant: TenantId,
    /// Event streams the tier allows open at once (`max_streams`).
    pub limit: u32,
    /// When a retry is worth trying.
    pub retry_after: Duration,
}

impl TooManyStreams {
    /// The error for `tenant`, whose tier allows `limit` open streams.
    pub fn new(tenant: TenantId, limit: u32, retry_after: Duration) -> Self {
        Self {
            tenant,
            limit,
            retry_after,
        }
    }
}

/// Every host-wide runtime slot is busy: 503 (the host, not the tenant, is at capacity).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no runtime slot free on this host; retry in {retry_after:?}")]
#[non_exhaustive]
pub struct RuntimeBusy {
    /// When a retry is worth trying.
    pub retry_after: Duration,
}

impl RuntimeBusy {
    /// The error with a retry hint.
    pub fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }
}

/// The tenant went over its tier's request rate (GCRA): 429.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {tenant} is rate limited; retry in {retry_after:?}")]
#[non_exhaustive]
pub struct RateLimited {
    /// The tenant refused.
    pub tenant: TenantId,
    /// When the next request will be admitted.
    pub retry_after: Duration,
}

impl RateLimited {
    /// The error for `tenant`.
    pub fn new(tenant: TenantId, retry_after: Duration) -> Self {
        Self {
            tenant,
            retry_after,
        }
    }
}

/// The tenant used its monthly request quota: 429 until the next month (UTC).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {tenant} used {used} of its {quota} requests this month; resets at {resets_at}")]
#[non_exhaustive]
pub struct QuotaExceeded {
    /// The tenant refused.
    pub tenant: TenantId,
    /// Requests per month of the tier.
    pub quota: u64,
    /// Requests counted this month.
    pub used: u64,
    /// Start of the next calendar month, UTC.
    pub resets_at: DateTime<Utc>,
    /// Time from the refusal until `resets_at`.
    pub retry_after: Duration,
}

impl QuotaExceeded {
    /// The error for `tenant` refused at `now`.
    pub fn new(tenant: TenantId, quota: u64, used: u64, now: DateTime<Utc>) -> Self {
        let resets_at = crate::quota::next_month_start(now);
        Self {
            tenant,
            quota,
            used,
            resets_at,
            retry_after: (resets_at - now).to_std().unwrap_or_default(),
        }
    }
}

/// The host is in maintenance mode: 503 for tenant traffic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the host is in maintenance mode")]
#[non_exhaustive]
pub struct Maintenance {
    /// The tenant refused, when the request carried a [`TenantContext`](crate::TenantContext).
    pub tenant: Option<TenantId>,
    /// A retry hint, when the operator gave one.
    pub retry_after: Option<Duration>,
}

impl Maintenance {
    /// The error for `tenant`.
    pub fn new(tenant: Option<TenantId>, retry_after: Option<Duration>) -> Self {
        Self {
            tenant,
            retry_after,
        }
    }
}

/// A tenant layer met a request without a [`TenantContext`](crate::TenantContext)
/// extension: the frontend did not resolve the tenant (500).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request carries no TenantContext; insert one before the tenant layers")]
#[non_exhaustive]
pub struct MissingTenant;

/// The HTTP form of a limit error: the [`Refused`](crate::Refused) found in
/// `err` or its `source()` chain, as [`Refused::to_http`](crate::Refused::to_http)
/// renders it (status, `content-type: application/json`, `retry-after` in
/// whole seconds rounded up when there is a hint, and a stable JSON body; the
/// table on [`Refused`](crate::Refused) lists them), or 500 `missing_tenant`
/// for [`MissingTenant`]; `None` for anything else.
///
/// ```
/// use std::time::Duration;
/// use corral_limits::{error_response, BoxError, Overloaded};
///
/// let err: BoxError = Overloaded::new("a".parse().unwrap(), Duration::from_millis(250)).into();
/// let (status, headers, body) = error_response(&err).unwrap();
/// assert_eq!(status, 429);
/// assert_eq!(headers["retry-after"], "1");
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!((v["error"].as_str(), v["tenant"].as_str()), (Some("overloaded"), Some("a")));
/// assert_eq!(v["retry_after_ms"], 250);
///
/// let other: BoxError = "something else".into();
/// assert!(error_response(&other).is_none());
/// ```
pub fn error_response(err: &BoxError) -> Option<(StatusCode, HeaderMap, Bytes)> {
    if let Some(r) = crate::Refused::of(&**err) {
        return Some(r.to_http());
    }
    let missing = std::iter::successors(
        Some(err.as_ref() as &(dyn std::error::Error + 'static)),
        |e| e.source(),
    )
    .any(|e| e.is::<MissingTenant>());
    missing.then(|| {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body =
            serde_json::json!({"error": "missing_tenant", "message": MissingTenant.to_string()});
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            headers,
            Bytes::from(body.to_string()),
        )
    })
}

/// The stable `error` code of the refusal in `err` ([`Refused::of`](crate::Refused::of)),
/// without building the body.
///
/// ```
/// use std::time::Duration;
/// use corral_limits::{error_code, BoxError, RuntimeBusy};
///
/// let err: BoxError = RuntimeBusy::new(Duration::from_secs(1)).into();
/// assert_eq!(error_code(&err), Some("runtime_busy"));
/// assert_eq!(error_code(&BoxError::from("something else")), None);
/// ```
pub fn error_code(err: &BoxError) -> Option<&'static str> {
    crate::Refusal::of(&**err).map(crate::Refusal::code)
}
