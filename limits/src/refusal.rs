//! [`Refused`]: the one description of "not admitted" — its kind
//! ([`Refusal`], one stable code and one HTTP status each), retry hint and
//! fields — that every frontend renders.
//!
//! A request refused by a limit never reached the tenant's code, so usage
//! counts it apart from admitted requests (and the monthly quota never sees
//! it). Each layer fails with its own small error struct ([`RateLimited`],
//! [`QuotaExceeded`], …); [`Refused::of`] is the one place that reads any of
//! them (or a `Refused` itself) out of a boxed error. Metering, the platform
//! error, the JSON body and the Python exceptions all start from it.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};

use crate::{
    Maintenance, Overloaded, QuotaExceeded, RateLimited, RuntimeBusy, TenantId, TooManyStreams,
};

/// Why a request was refused before (or instead of) being served: the kind
/// of a [`Refused`], for counters kept per kind.
///
/// The [`code`](Self::code) is the `error` code of the refusal's JSON body and
/// [`status`](Self::status) its HTTP status; each code has one status.
///
/// ```
/// use std::time::Duration;
/// use corral_limits::{BoxError, RateLimited, Refusal};
///
/// let err: BoxError = RateLimited::new("a".parse().unwrap(), Duration::from_secs(1)).into();
/// assert_eq!(Refusal::of(&*err), Some(Refusal::RateLimited));
/// assert_eq!(Refusal::RateLimited.code(), "rate_limited");
/// assert_eq!(Refusal::RateLimited.status(), 429);
/// assert_eq!(Refusal::from_code("quota_exceeded"), Some(Refusal::QuotaExceeded));
/// assert_eq!(Refusal::of(&*BoxError::from("a guest trap")), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Refusal {
    /// [`RateLimited`]: over the tier's request rate.
    RateLimited,
    /// [`QuotaExceeded`]: the month's requests are used up.
    QuotaExceeded,
    /// [`Overloaded`]: every compute share of the tenant is busy.
    Overloaded,
    /// [`RuntimeBusy`]: every host-wide runtime slot is busy.
    RuntimeBusy,
    /// [`TooManyStreams`]: every event-stream permit of the tenant is held.
    TooManyStreams,
    /// [`Maintenance`]: the host serves no tenant traffic.
    Maintenance,
    /// The request body is over the tier's `max_body_bytes`.
    PayloadTooLarge,
}

impl Refusal {
    /// How many kinds there are.
    pub const COUNT: usize = 7;

    /// Every kind, in [`index`](Self::index) order.
    pub const ALL: [Refusal; Self::COUNT] = [
        Refusal::RateLimited,
        Refusal::QuotaExceeded,
        Refusal::Overloaded,
        Refusal::RuntimeBusy,
        Refusal::TooManyStreams,
        Refusal::Maintenance,
        Refusal::PayloadTooLarge,
    ];

    /// The stable code, as in the JSON error body (`"rate_limited"`, …).
    pub const fn code(self) -> &'static str {
        match self {
            Refusal::RateLimited => "rate_limited",
            Refusal::QuotaExceeded => "quota_exceeded",
            Refusal::Overloaded => "overloaded",
            Refusal::RuntimeBusy => "runtime_busy",
            Refusal::TooManyStreams => "too_many_streams",
            Refusal::Maintenance => "maintenance",
            Refusal::PayloadTooLarge => "payload_too_large",
        }
    }

    /// The HTTP status: 429 when the tenant is over one of its own limits,
    /// 503 when the host is busy or in maintenance, 413 for a body over the
    /// tier's size.
    pub const fn status(self) -> StatusCode {
        match self {
            Refusal::RateLimited
            | Refusal::QuotaExceeded
            | Refusal::Overloaded
            | Refusal::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            Refusal::RuntimeBusy | Refusal::Maintenance => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The kind whose [`code`](Self::code) is `code`. Also reads
    /// `body_too_large`, the code usage rows stored for
    /// [`PayloadTooLarge`](Self::PayloadTooLarge) before it had one name.
    pub fn from_code(code: &str) -> Option<Self> {
        if code == "body_too_large" {
            return Some(Refusal::PayloadTooLarge);
        }
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Position in [`ALL`](Self::ALL), for counters kept in arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The kind of the refusal in `err` or its `source()` chain
    /// ([`Refused::of`]).
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        Refused::of(err).map(|r| r.kind)
    }
}

/// A refusal with everything a frontend shows of it: kind, tenant, retry
/// hint and the kind's figures. Build one from a layer's error with
/// [`Refused::of`]; answer with [`to_http`](Self::to_http) (status,
/// `Retry-After`, JSON body) or read [`fields`](Self::fields).
///
/// | kind | status | body (besides `error` and `message`) |
/// |---|---|---|
/// | [`Overloaded`] | 429 | `tenant`, `retry_after_ms` |
/// | [`RateLimited`] | 429 | `tenant`, `retry_after_ms` |
/// | [`QuotaExceeded`] | 429 | `tenant`, `limit: "requests_per_month"`, `quota`, `used`, `resets_at`, `retry_after_ms` |
/// | [`TooManyStreams`] | 429 | `tenant`, `limit` (open streams allowed), `retry_after_ms` |
/// | [`RuntimeBusy`] | 503 | `retry_after_ms` |
/// | [`Maintenance`] | 503 | `tenant`, `retry_after_ms` when set |
/// | payload too large | 413 | `tenant`, `limit` and `size` in bytes when known |
///
/// ```
/// use std::time::Duration;
/// use corral_limits::{BoxError, Refusal, Refused, TooManyStreams};
///
/// let err: BoxError = TooManyStreams::new("a".parse().unwrap(), 2, Duration::from_millis(1500)).into();
/// let r = Refused::of(&*err).unwrap();
/// assert_eq!((r.kind, r.limit), (Refusal::TooManyStreams, Some(2)));
/// let (status, headers, body) = r.to_http();
/// assert_eq!(status, 429);
/// assert_eq!(headers["retry-after"], "2"); // whole seconds, rounded up
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(v["error"], "too_many_streams");
/// assert_eq!(v["limit"], 2);
/// assert_eq!(v["retry_after_ms"], 1500);
///
/// let big = Refused::payload_too_large(None, 10, Some(11));
/// assert_eq!(big.code(), "payload_too_large");
/// assert_eq!(Refused::of(&big), Some(big.clone())); // a `Refused` reads as itself
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct Refused {
    /// What refused the request.
    pub kind: Refusal,
    /// The tenant refused, when known.
    pub tenant: Option<TenantId>,
    /// When a retry is worth trying.
    pub retry_after: Option<Duration>,
    /// A count or byte limit: open streams for [`Refusal::TooManyStreams`],
    /// bytes for [`Refusal::PayloadTooLarge`].
    pub limit: Option<u64>,
    /// The body's size in bytes ([`Refusal::PayloadTooLarge`], when declared).
    pub size: Option<u64>,
    /// Requests allowed a month ([`Refusal::QuotaExceeded`]).
    pub quota: Option<u64>,
    /// Requests counted this month ([`Refusal::QuotaExceeded`]).
    pub used: Option<u64>,
    /// When the quota resets ([`Refusal::QuotaExceeded`]).
    pub resets_at: Option<DateTime<Utc>>,
    /// A sentence for people.
    pub message: String,
}

impl Refused {
    fn new(kind: Refusal, message: String) -> Self {
        Self {
            kind,
            tenant: None,
            retry_after: None,
            limit: None,
            size: None,
            quota: None,
            used: None,
            resets_at: None,
            message,
        }
    }

    /// A body over `limit` bytes (`size` when its length was declared).
    pub fn payload_too_large(tenant: Option<TenantId>, limit: u64, size: Option<u64>) -> Self {
        let message = match size {
            Some(size) => {
                format!("request body of {size} bytes exceeds the tier's limit of {limit} bytes")
            }
            None => format!("request body exceeds the tier's limit of {limit} bytes"),
        };
        Self {
            tenant,
            limit: Some(limit),
            size,
            ..Self::new(Refusal::PayloadTooLarge, message)
        }
    }

    /// The refusal in `err` or its `source()` chain: one of this crate's
    /// layer errors, a `Refused`, or a body-size error from tower-http's
    /// limit ([`Refusal::PayloadTooLarge`]). Failures while serving (guest
    /// traps, the sandbox's memory limit) are not refusals.
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        std::iter::successors(Some(err), |e| e.source()).find_map(Self::one)
    }

    fn one(e: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let msg = || e.to_string();
        let r = if let Some(r) = e.downcast_ref::<Refused>() {
            r.clone()
        } else if let Some(e) = e.downcast_ref::<RateLimited>() {
            Self {
                tenant: Some(e.tenant.clone()),
                retry_after: Some(e.retry_after),
                ..Self::new(Refusal::RateLimited, msg())
            }
        } else if let Some(e) = e.downcast_ref::<QuotaExceeded>() {
            Self {
                tenant: Some(e.tenant.clone()),
                retry_after: Some(e.retry_after),
                quota: Some(e.quota),
                used: Some(e.used),
                resets_at: Some(e.resets_at),
                ..Self::new(Refusal::QuotaExceeded, msg())
            }
        } else if let Some(e) = e.downcast_ref::<Overloaded>() {
            Self {
                tenant: Some(e.tenant.clone()),
                retry_after: Some(e.retry_after),
                ..Self::new(Refusal::Overloaded, msg())
            }
        } else if let Some(e) = e.downcast_ref::<RuntimeBusy>() {
            Self {
                retry_after: Some(e.retry_after),
                ..Self::new(Refusal::RuntimeBusy, msg())
            }
        } else if let Some(e) = e.downcast_ref::<TooManyStreams>() {
            Self {
                tenant: Some(e.tenant.clone()),
                retry_after: Some(e.retry_after),
                limit: Some(u64::from(e.limit)),
                ..Self::new(Refusal::TooManyStreams, msg())
            }
        } else if let Some(e) = e.downcast_ref::<Maintenance>() {
            Self {
                tenant: e.tenant.clone(),
                retry_after: e.retry_after,
                ..Self::new(Refusal::Maintenance, msg())
            }
        } else if e.is::<http_body_util::LengthLimitError>() {
            Self::new(Refusal::PayloadTooLarge, msg())
        } else {
            return None;
        };
        Some(r)
    }

    /// The stable code ([`Refusal::code`]).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The HTTP status ([`Refusal::status`]).
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The JSON body's fields besides `error` and `message`, in a stable
    /// order (see the table on [`Refused`]).
    pub fn fields(&self) -> Vec<(&'static str, serde_json::Value)> {
        use serde_json::json;
        let mut out = Vec::new();
        if let Some(t) = &self.tenant {
            out.push(("tenant", json!(t.as_str())));
        }
        if self.kind == Refusal::QuotaExceeded {
            out.push(("limit", json!("requests_per_month")));
        } else if let Some(limit) = self.limit {
            out.push(("limit", json!(limit)));
        }
        if let Some(size) = self.size {
            out.push(("size", json!(size)));
        }
        if let Some(quota) = self.quota {
            out.push(("quota", json!(quota)));
        }
        if let Some(used) = self.used {
            out.push(("used", json!(used)));
        }
        if let Some(at) = self.resets_at {
            out.push((
                "resets_at",
                json!(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ));
        }
        if let Some(d) = self.retry_after {
            out.push((
                "retry_after_ms",
                json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ));
        }
        out
    }

    /// Status, headers (`content-type: application/json`, and `retry-after`
    /// in whole seconds rounded up when there is a hint) and the JSON body
    /// `{"error": code, "message": …, …fields}`.
    pub fn to_http(&self) -> (StatusCode, HeaderMap, Bytes) {
        let mut body = vec![
            ("error", serde_json::Value::from(self.code())),
            ("message", self.message.clone().into()),
        ];
        body.extend(self.fields());
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(d) = self.retry_after {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        let bytes = serde_json::to_vec(&Ordered(&body)).expect("a JSON map always serializes");
        (self.status(), headers, Bytes::from(bytes))
    }
}

/// A JSON object whose keys keep their order (`error` first, as people read it).
struct Ordered<'a>(&'a [(&'static str, serde_json::Value)]);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl serde::Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_error_code_and_indices_match_all() {
        use std::time::Duration;
        let t: crate::TenantId = "a".parse().unwrap();
        let d = Duration::from_secs(1);
        let now = chrono::Utc::now();
        let errs: Vec<(crate::BoxError, Refusal)> = vec![
            (RateLimited::new(t.clone(), d).into(), Refusal::RateLimited),
            (
                QuotaExceeded::new(t.clone(), 1, 1, now).into(),
                Refusal::QuotaExceeded,
            ),
            (Overloaded::new(t.clone(), d).into(), Refusal::Overloaded),
            (RuntimeBusy::new(d).into(), Refusal::RuntimeBusy),
            (
                TooManyStreams::new(t.clone(), 2, d).into(),
                Refusal::TooManyStreams,
            ),
            (
                Maintenance::new(Some(t.clone()), None).into(),
                Refusal::Maintenance,
            ),
        ];
        for (e, want) in &errs {
            assert_eq!(Refusal::of(&**e), Some(*want));
            assert_eq!(crate::error_code(e), Some(want.code()));
            let (status, _, _) = crate::error_response(e).unwrap();
            assert_eq!(status, want.status());
        }
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(Refusal::from_code(r.code()), Some(*r));
        }
        assert_eq!(
            Refusal::from_code("body_too_large"),
            Some(Refusal::PayloadTooLarge)
        );
        let missing: crate::BoxError = crate::MissingTenant.into();
        assert_eq!(Refusal::of(&*missing), None);
    }
}
