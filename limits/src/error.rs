//! The errors the layers fail with, and their HTTP form.
//!
//! Each layer fails with a small error struct boxed as a [`BoxError`] (tower's
//! convention); find it with `downcast_ref`, or turn any of them into a status,
//! headers and a stable JSON body with [`error_response`].

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
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

/// A memory reservation would take the tenant past its tier's memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {tenant} asked for {requested} more bytes with {used} of {limit} in use")]
#[non_exhaustive]
pub struct MemoryBudgetExceeded {
    /// The tenant refused.
    pub tenant: TenantId,
    /// Bytes asked for.
    pub requested: u64,
    /// Bytes reserved by all the tenant's instances when refused.
    pub used: u64,
    /// The tenant's budget.
    pub limit: u64,
}

#[derive(serde::Serialize)]
struct Body<'a> {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<Limit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resets_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

/// The `limit` key: the name of the limit reached (`quota_exceeded`), or the
/// figure of a count limit (`too_many_streams`).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Limit {
    Name(&'static str),
    Count(u32),
}

impl Body<'_> {
    fn new(error: &'static str) -> Self {
        Body {
            error,
            tenant: None,
            limit: None,
            quota: None,
            used: None,
            requested: None,
            limit_bytes: None,
            resets_at: None,
            retry_after_ms: None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The HTTP form of a limit error: status, headers (`content-type:
/// application/json`, and `retry-after` in whole seconds rounded up when there
/// is a hint) and a stable JSON body, or `None` when neither `err` nor any
/// error in its `source()` chain is one of this crate's (or a body-size error
/// from tower-http's limit).
///
/// | error | status | body |
/// |---|---|---|
/// | [`Overloaded`] | 429 | `{"error":"overloaded","tenant":"a","retry_after_ms":250}` |
/// | [`RateLimited`] | 429 | `{"error":"rate_limited","tenant":"a","retry_after_ms":1000}` |
/// | [`QuotaExceeded`] | 429 | `{"error":"quota_exceeded","tenant":"a","limit":"requests_per_month","quota":10,"used":10,"resets_at":"2026-12-01T00:00:00Z","retry_after_ms":…}` |
/// | [`TooManyStreams`] | 429 | `{"error":"too_many_streams","tenant":"a","limit":2,"retry_after_ms":1000}` |
/// | [`RuntimeBusy`] | 503 | `{"error":"runtime_busy","retry_after_ms":1000}` |
/// | [`Maintenance`] | 503 | `{"error":"maintenance","tenant":"a"}` (+ `retry_after_ms` when set) |
/// | [`MemoryBudgetExceeded`] | 503 | `{"error":"memory_budget_exceeded","tenant":"a","used":…,"requested":…,"limit_bytes":…}` |
/// | body over the limit (`http_body_util::LengthLimitError`) | 413 | `{"error":"payload_too_large"}` |
/// | [`MissingTenant`] | 500 | `{"error":"missing_tenant"}` |
///
/// ```
/// use std::time::Duration;
/// use corral_limits::{error_response, BoxError, Overloaded};
///
/// let err: BoxError = Overloaded::new("a".parse().unwrap(), Duration::from_millis(250)).into();
/// let (status, headers, body) = error_response(&err).unwrap();
/// assert_eq!(status, 429);
/// assert_eq!(headers["retry-after"], "1");
/// assert_eq!(&body[..], br#"{"error":"overloaded","tenant":"a","retry_after_ms":250}"#);
///
/// let other: BoxError = "something else".into();
/// assert!(error_response(&other).is_none());
/// ```
pub fn error_response(err: &BoxError) -> Option<(StatusCode, HeaderMap, Bytes)> {
    chain(err).find_map(respond)
}

/// The stable `error` code [`error_response`] would put in the JSON body
/// (`"overloaded"`, `"too_many_streams"`, …), without building the body.
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
    chain(err).find_map(|e| describe(e).map(|(_, body, _)| body.error))
}

/// `err` and every error in its `source()` chain.
fn chain(err: &BoxError) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(
        Some(err.as_ref() as &(dyn std::error::Error + 'static)),
        |e| e.source(),
    )
}

/// The status, JSON body and retry hint of `e` if it is one of ours.
fn describe<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<(StatusCode, Body<'e>, Option<Duration>)> {
    let found = if let Some(e) = e.downcast_ref::<Overloaded>() {
        let mut b = Body::new("overloaded");
        b.tenant = Some(e.tenant.as_str());
        b.retry_after_ms = Some(millis(e.retry_after));
        (StatusCode::TOO_MANY_REQUESTS, b, Some(e.retry_after))
    } else if let Some(e) = e.downcast_ref::<RateLimited>() {
        let mut b = Body::new("rate_limited");
        b.tenant = Some(e.tenant.as_str());
        b.retry_after_ms = Some(millis(e.retry_after));
        (StatusCode::TOO_MANY_REQUESTS, b, Some(e.retry_after))
    } else if let Some(e) = e.downcast_ref::<QuotaExceeded>() {
        let mut b = Body::new("quota_exceeded");
        b.tenant = Some(e.tenant.as_str());
        b.limit = Some(Limit::Name("requests_per_month"));
        b.quota = Some(e.quota);
        b.used = Some(e.used);
        b.resets_at = Some(e.resets_at.to_rfc3339_opts(SecondsFormat::Secs, true));
        b.retry_after_ms = Some(millis(e.retry_after));
        (StatusCode::TOO_MANY_REQUESTS, b, Some(e.retry_after))
    } else if let Some(e) = e.downcast_ref::<TooManyStreams>() {
        let mut b = Body::new("too_many_streams");
        b.tenant = Some(e.tenant.as_str());
        b.limit = Some(Limit::Count(e.limit));
        b.retry_after_ms = Some(millis(e.retry_after));
        (StatusCode::TOO_MANY_REQUESTS, b, Some(e.retry_after))
    } else if let Some(e) = e.downcast_ref::<RuntimeBusy>() {
        let mut b = Body::new("runtime_busy");
        b.retry_after_ms = Some(millis(e.retry_after));
        (StatusCode::SERVICE_UNAVAILABLE, b, Some(e.retry_after))
    } else if let Some(e) = e.downcast_ref::<Maintenance>() {
        let mut b = Body::new("maintenance");
        b.tenant = e.tenant.as_ref().map(TenantId::as_str);
        b.retry_after_ms = e.retry_after.map(millis);
        (StatusCode::SERVICE_UNAVAILABLE, b, e.retry_after)
    } else if let Some(e) = e.downcast_ref::<MemoryBudgetExceeded>() {
        let mut b = Body::new("memory_budget_exceeded");
        b.tenant = Some(e.tenant.as_str());
        b.used = Some(e.used);
        b.requested = Some(e.requested);
        b.limit_bytes = Some(e.limit);
        (StatusCode::SERVICE_UNAVAILABLE, b, None)
    } else if e.is::<http_body_util::LengthLimitError>() {
        let b = Body::new("payload_too_large");
        (StatusCode::PAYLOAD_TOO_LARGE, b, None)
    } else if e.is::<MissingTenant>() {
        let b = Body::new("missing_tenant");
        (StatusCode::INTERNAL_SERVER_ERROR, b, None)
    } else {
        return None;
    };
    Some(found)
}

fn respond(e: &(dyn std::error::Error + 'static)) -> Option<(StatusCode, HeaderMap, Bytes)> {
    let (status, body, retry_after) = describe(e)?;
    let body = to_json(&body);
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(d) = retry_after {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    Some((status, headers, body))
}

fn to_json(b: &Body<'_>) -> Bytes {
    Bytes::from(serde_json::to_vec(b).expect("error bodies always serialize"))
}
