//! [`Refusal`]: the kinds of "not admitted", one stable code each.
//!
//! A request refused by a limit never reached the tenant's code, so usage
//! counts it apart from admitted requests (and the monthly quota never sees
//! it). Metering finds the kind with [`Refusal::of`] on a layer's error, or
//! as a `Refusal` extension on a response a frontend built itself.

use crate::{Maintenance, Overloaded, QuotaExceeded, RateLimited, RuntimeBusy, TooManyStreams};

/// Why a request was refused before (or instead of) being served.
///
/// The [`code`](Self::code) is the `error` code of the refusal's JSON body.
///
/// ```
/// use std::time::Duration;
/// use corral_limits::{BoxError, RateLimited, Refusal};
///
/// let err: BoxError = RateLimited::new("a".parse().unwrap(), Duration::from_secs(1)).into();
/// assert_eq!(Refusal::of(&*err), Some(Refusal::RateLimited));
/// assert_eq!(Refusal::RateLimited.code(), "rate_limited");
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
    BodyTooLarge,
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
        Refusal::BodyTooLarge,
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
            Refusal::BodyTooLarge => "body_too_large",
        }
    }

    /// The kind whose [`code`](Self::code) is `code`.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Position in [`ALL`](Self::ALL), for counters kept in arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The refusal in `err` or its `source()` chain, if it is one of this
    /// crate's refusals (a body-size error from tower-http's limit counts as
    /// [`BodyTooLarge`](Self::BodyTooLarge)). Failures while serving (memory
    /// budget, guest traps) are not refusals.
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            let found = if e.is::<RateLimited>() {
                Some(Refusal::RateLimited)
            } else if e.is::<QuotaExceeded>() {
                Some(Refusal::QuotaExceeded)
            } else if e.is::<Overloaded>() {
                Some(Refusal::Overloaded)
            } else if e.is::<RuntimeBusy>() {
                Some(Refusal::RuntimeBusy)
            } else if e.is::<TooManyStreams>() {
                Some(Refusal::TooManyStreams)
            } else if e.is::<Maintenance>() {
                Some(Refusal::Maintenance)
            } else if e.is::<http_body_util::LengthLimitError>() {
                Some(Refusal::BodyTooLarge)
            } else {
                None
            };
            if found.is_some() {
                return found;
            }
            cur = e.source();
        }
        None
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
        }
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(Refusal::from_code(r.code()), Some(*r));
        }
        let mem: crate::BoxError = crate::MemoryBudgetExceeded {
            tenant: t,
            requested: 1,
            used: 1,
            limit: 1,
        }
        .into();
        assert_eq!(Refusal::of(&*mem), None);
    }
}
