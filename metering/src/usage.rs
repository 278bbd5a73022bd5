//! Monthly usage records and the sink they are persisted into.

use crate::JournalMark;
use std::collections::BTreeMap;
use std::time::SystemTime;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use corral_limits::{Refusal, TenantId};

/// A calendar month in UTC: the billing period.
///
/// ```
/// use corral_metering::Period;
/// let p = Period::new(2026, 11).unwrap();
/// assert_eq!(p.to_string(), "2026-11");
/// assert!(Period::new(2026, 13).is_none());
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Period {
    year: i32,
    month: u8,
}

impl Period {
    /// The period for `year`-`month` (month 1–12), or `None` for a bad month.
    pub fn new(year: i32, month: u8) -> Option<Self> {
        (1..=12).contains(&month).then_some(Self { year, month })
    }
    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }
    /// The month, 1–12.
    pub fn month(self) -> u8 {
        self.month
    }
}

impl Period {
    /// The calendar month (UTC) that contains `t`.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use corral_metering::Period;
    /// // 2026-11-30T23:59:59Z and one second later.
    /// let t = UNIX_EPOCH + Duration::from_secs(1_796_083_199);
    /// assert_eq!(Period::containing(t).to_string(), "2026-11");
    /// assert_eq!(Period::containing(t + Duration::from_secs(1)).to_string(), "2026-12");
    /// ```
    pub fn containing(t: SystemTime) -> Self {
        let dt: DateTime<Utc> = t.into();
        Self {
            year: dt.year(),
            month: dt.month() as u8,
        }
    }

    /// The first instant of the month, 00:00:00 UTC on day 1.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use corral_metering::Period;
    /// let dec = Period::new(2026, 12).unwrap();
    /// assert_eq!(dec.start(), UNIX_EPOCH + Duration::from_secs(1_796_083_200));
    /// assert_eq!(Period::containing(dec.start()), dec);
    /// ```
    pub fn start(self) -> SystemTime {
        Utc.with_ymd_and_hms(self.year, u32::from(self.month), 1, 0, 0, 0)
            .single()
            .map_or(SystemTime::UNIX_EPOCH, SystemTime::from)
    }

    /// The month after this one.
    ///
    /// ```
    /// use corral_metering::Period;
    /// assert_eq!(Period::new(2026, 12).unwrap().next(), Period::new(2027, 1).unwrap());
    /// assert_eq!(Period::new(2026, 1).unwrap().next(), Period::new(2026, 2).unwrap());
    /// ```
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// One tenant's usage totals for one period. Totals, not deltas: persisting the
/// same record twice is idempotent, which is what makes flushes safe to retry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Whose usage.
    pub tenant: TenantId,
    /// Which month.
    pub period: Period,
    /// Requests admitted: they passed every limit and count toward the
    /// monthly quota.
    pub requests: u64,
    /// Requests refused by a limit, by kind (only kinds with a count).
    /// They never count toward [`requests`](Self::requests) or the quota.
    /// In JSON a map from the refusal's code: `{"rate_limited": 12}`.
    #[serde(default, deserialize_with = "known_refusals")]
    pub refused: BTreeMap<Refusal, u64>,
    /// Requests that ended in an error of any kind, refusals included (each
    /// refusal also counts under [`refused`](Self::refused)).
    pub errors: u64,
    /// Summed wall time of invocations, in milliseconds.
    pub exec_time_ms: u64,
    /// Summed fuel consumed, in the engine's unit (WebAssembly
    /// instructions, JavaScript interrupt ticks of 10,000 interpreter
    /// polls): the limit's measure, not comparable across engines.
    pub fuel: u64,
    /// Summed CPU time of invocations, in microseconds: the one measure
    /// of work both engines share (a JavaScript hello spends a fraction of
    /// one fuel tick, so its fuel reads 0 where this does not).
    #[serde(default)]
    pub cpu_us: u64,
    /// Highest memory of one invocation, in bytes.
    pub peak_memory: u64,
    /// Most streaming connections open at once.
    pub peak_streams: u64,
    /// Bytes stored by the tenant at the last flush.
    pub storage_bytes: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Cold starts (wake-ups from parked).
    pub cold_starts: u64,
}

impl Usage {
    /// An all-zero record for `tenant` in `period`.
    ///
    /// ```
    /// use corral_metering::{Period, Usage};
    /// let u = Usage::zero("a".parse().unwrap(), Period::new(2026, 1).unwrap());
    /// assert_eq!(u.requests, 0);
    /// ```
    pub fn zero(tenant: TenantId, period: Period) -> Self {
        Self {
            tenant,
            period,
            requests: 0,
            refused: BTreeMap::new(),
            errors: 0,
            exec_time_ms: 0,
            fuel: 0,
            cpu_us: 0,
            peak_memory: 0,
            peak_streams: 0,
            storage_bytes: 0,
            bytes_in: 0,
            bytes_out: 0,
            cold_starts: 0,
        }
    }
}

impl Usage {
    /// Requests refused, every kind.
    ///
    /// ```
    /// use corral_limits::Refusal;
    /// use corral_metering::{Period, Usage};
    /// let mut u = Usage::zero("a".parse().unwrap(), Period::new(2026, 1).unwrap());
    /// u.refused.insert(Refusal::RateLimited, 3);
    /// u.refused.insert(Refusal::Overloaded, 2);
    /// assert_eq!(u.refused_total(), 5);
    /// assert_eq!(serde_json::to_value(&u).unwrap()["refused"]["rate_limited"], 3);
    /// ```
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// Reads a `refused` map, keeping the codes this build knows and dropping
/// the rest (a record written by a newer build, or a hand-made archive),
/// and any zero counts.
fn known_refusals<'de, D>(d: D) -> Result<BTreeMap<Refusal, u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw: BTreeMap<String, u64> = serde::Deserialize::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .filter_map(|(code, n)| Some((Refusal::from_code(&code)?, n)))
        .collect())
}

/// Error from a [`UsageSink`]; boxed so sinks keep their own error types.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where usage totals are persisted (`corral-storage` implements it over SQLite).
///
/// `store` upserts absolute totals keyed by (tenant, period), so a retried or
/// repeated flush never double counts; `load` returns what was stored for a
/// period so a restarted process continues from the persisted totals.
pub trait UsageSink: Send + Sync + 'static {
    /// Upserts these totals.
    fn store(&self, batch: &[Usage]) -> Result<(), SinkError>;
    /// Every tenant's stored totals for `period`.
    fn load(&self, period: Period) -> Result<Vec<Usage>, SinkError>;
    /// Whether other processes flush into the same rows (a store shared by
    /// many nodes, whose `store` adds each node's counts since its last
    /// `store` or `load`). A meter then loads the merged totals back after
    /// every flush, so what it reports — and the monthly quota reads —
    /// includes the other nodes' requests, at most two flush intervals old.
    /// Default `false`.
    fn shared(&self) -> bool {
        false
    }
    /// [`store`](Self::store), and records `mark` as its journal's last
    /// committed flush in the same transaction (for a meter with a
    /// [`Journal`](crate::Journal)). Default: an error, for sinks that keep
    /// no marks.
    fn store_marked(&self, batch: &[Usage], mark: &JournalMark) -> Result<(), SinkError> {
        let _ = (batch, mark);
        Err(NO_MARKS.into())
    }
    /// Adds `deltas` to the stored totals (counters add, peaks keep the
    /// larger, the storage gauge is left alone) and records `mark`, in one
    /// transaction: the counts a journal recovered. Default: an error.
    fn add_marked(&self, deltas: &[Usage], mark: &JournalMark) -> Result<(), SinkError> {
        let _ = (deltas, mark);
        Err(NO_MARKS.into())
    }
    /// Deletes `journal`'s mark: its file is gone. Default: nothing.
    fn forget_mark(&self, journal: &str) -> Result<(), SinkError> {
        let _ = journal;
        Ok(())
    }
    /// The last sequence number recorded for `journal`, 0 if none.
    /// Default: an error.
    fn journal_mark(&self, journal: &str) -> Result<u64, SinkError> {
        let _ = journal;
        Err(NO_MARKS.into())
    }
}

const NO_MARKS: &str = "this usage sink keeps no journal marks";
