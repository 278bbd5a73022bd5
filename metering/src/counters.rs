//! The per-tenant counters: plain atomics, one set per tenant, so the hot path
//! never takes a lock shared with other tenants.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use corral_limits::Refusal;

use crate::journal::{Additive, Raw, SlotHandle, at};
use parking_lot::Mutex;
use std::time::Duration;

/// Why a request failed, as metering counts it.
///
/// The sandbox and the limit layers report their failures as one of these,
/// either as a response extension (the [`MeteringLayer`](crate::MeteringLayer)
/// reads `ErrorKind` from the response's extensions) or through the layer's
/// [classifier](crate::ClassifyError) when the inner service returns `Err`.
///
/// ```
/// use corral_metering::ErrorKind;
/// assert_eq!(ErrorKind::Quota.as_str(), "quota");
/// assert_eq!(ErrorKind::ALL.len(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The invocation ran out of fuel.
    Fuel,
    /// The guest hit its memory limit (instance or tenant budget).
    Memory,
    /// The invocation ran past its wall-clock deadline.
    Deadline,
    /// No compute share, runtime slot or stream permit was free (429/503
    /// from the concurrency and stream layers).
    Overloaded,
    /// The tenant's rate limit refused the request.
    Rate,
    /// The tenant's monthly quota refused the request.
    Quota,
    /// Any other failure (trap, script error, internal error, 5xx without a kind).
    Other,
}

impl ErrorKind {
    /// Every kind, in label order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Fuel,
        ErrorKind::Memory,
        ErrorKind::Deadline,
        ErrorKind::Overloaded,
        ErrorKind::Rate,
        ErrorKind::Quota,
        ErrorKind::Other,
    ];

    /// The label used in Prometheus series and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Fuel => "fuel",
            ErrorKind::Memory => "memory",
            ErrorKind::Deadline => "deadline",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Rate => "rate",
            ErrorKind::Quota => "quota",
            ErrorKind::Other => "other",
        }
    }

    /// The kind a refusal is counted under: the one mapping from
    /// [`Refusal`] that every stack uses.
    ///
    /// ```
    /// use corral_limits::Refusal;
    /// use corral_metering::ErrorKind;
    /// assert_eq!(ErrorKind::of_refusal(Refusal::RuntimeBusy), ErrorKind::Overloaded);
    /// assert_eq!(ErrorKind::of_refusal(Refusal::QuotaExceeded), ErrorKind::Quota);
    /// ```
    pub fn of_refusal(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Overloaded | Refusal::RuntimeBusy | Refusal::TooManyStreams => {
                ErrorKind::Overloaded
            }
            Refusal::RateLimited => ErrorKind::Rate,
            Refusal::QuotaExceeded => ErrorKind::Quota,
            // Maintenance, a body over the tier's size, and kinds added later.
            _ => ErrorKind::Other,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            ErrorKind::Fuel => 0,
            ErrorKind::Memory => 1,
            ErrorKind::Deadline => 2,
            ErrorKind::Overloaded => 3,
            ErrorKind::Rate => 4,
            ErrorKind::Quota => 5,
            ErrorKind::Other => 6,
        }
    }
}

/// The class of an HTTP status: `1xx` … `5xx`.
///
/// ```
/// use corral_metering::StatusClass;
/// assert_eq!(StatusClass::of(http::StatusCode::TOO_MANY_REQUESTS), StatusClass::ClientError);
/// assert_eq!(StatusClass::ServerError.as_str(), "5xx");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
}

impl StatusClass {
    /// Every class, in label order.
    pub const ALL: [StatusClass; 5] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
    ];

    /// The class of `status`.
    pub fn of(status: http::StatusCode) -> Self {
        match status.as_u16() {
            0..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }

    /// The label used in Prometheus series: `"2xx"`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "1xx",
            Self::Success => "2xx",
            Self::Redirection => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Informational => 0,
            Self::Success => 1,
            Self::Redirection => 2,
            Self::ClientError => 3,
            Self::ServerError => 4,
        }
    }
}

/// The figures of one sandbox invocation, carried in the response's
/// extensions from the sandbox to the [`MeteringLayer`](crate::MeteringLayer).
///
/// The core crate inserts one per response (it cannot be referenced from here,
/// so this crate owns the type).
///
/// ```
/// use std::time::Duration;
/// use corral_metering::InvocationFigures;
/// let f = InvocationFigures::new(1_200, Duration::from_millis(3), 2 << 20, true);
/// let mut res = http::Response::new(());
/// res.extensions_mut().insert(f);
/// assert_eq!(res.extensions().get::<InvocationFigures>().unwrap().fuel, 1_200);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvocationFigures {
    /// Fuel consumed (the engine's own unit: WebAssembly instructions,
    /// JavaScript interrupt ticks).
    pub fuel: u64,
    /// CPU time the invocation's threads spent on it (the guest and the
    /// host work it caused), the one figure both engines share.
    pub cpu_time: Duration,
    /// Wall time of the invocation.
    pub wall_time: Duration,
    /// Highest memory the instance held, in bytes.
    pub peak_memory: u64,
    /// Whether the tenant had to be woken from parked (a cold start).
    pub cold_start: bool,
}

impl InvocationFigures {
    /// Figures for one invocation.
    pub fn new(fuel: u64, wall_time: Duration, peak_memory: u64, cold_start: bool) -> Self {
        Self {
            fuel,
            cpu_time: Duration::ZERO,
            wall_time,
            peak_memory,
            cold_start,
        }
    }

    /// The same figures with `cpu_time` as the invocation's CPU time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use corral_metering::InvocationFigures;
    /// let f = InvocationFigures::new(1, Duration::from_millis(3), 0, false)
    ///     .with_cpu_time(Duration::from_micros(40));
    /// assert_eq!(f.cpu_time, Duration::from_micros(40));
    /// ```
    pub fn with_cpu_time(mut self, cpu_time: Duration) -> Self {
        self.cpu_time = cpu_time;
        self
    }
}

/// The figures of work a response does after its head: a streamed body the
/// guest keeps producing (fuel, CPU and wall time of each step, peak memory).
///
/// The producer keeps one clone and reports each step with
/// [`add`](Self::add); the sandbox puts another clone in the response's
/// extensions, where [`MeteringLayer`](crate::MeteringLayer) connects it to
/// the tenant's counters as the head passes. From then on each report lands
/// in the tenant's usage at once (a stream may stay open for hours); what was
/// reported before is carried over.
///
/// ```
/// use std::time::Duration;
/// use corral_metering::StreamFigures;
///
/// let figures = StreamFigures::new();
/// let producer = figures.clone();
/// producer.add(500, Duration::from_micros(900), Duration::from_millis(2), 4096);
/// producer.add(700, Duration::from_micros(1100), Duration::from_millis(3), 8192);
/// assert_eq!(figures.fuel(), 1_200);
/// assert_eq!(figures.cpu_time(), Duration::from_millis(2));
/// assert_eq!(figures.wall_time(), Duration::from_millis(5));
/// // A limit ended the stream after its head was sent: counted by kind.
/// producer.failed(corral_metering::ErrorKind::Fuel);
/// ```
#[derive(Debug, Clone, Default)]
pub struct StreamFigures(Arc<Mutex<Late>>);

#[derive(Debug, Default)]
struct Late {
    /// Where reports go once the metering layer has seen the response.
    sink: Option<Arc<crate::meter::Tenant>>,
    fuel: u64,
    cpu_time: Duration,
    wall_time: Duration,
    /// What was reported before the sink was attached.
    pending: Option<InvocationFigures>,
    /// A failure reported before the sink was attached.
    pending_failure: Option<ErrorKind>,
}

impl StreamFigures {
    /// Figures with nothing reported.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports one step of work: its fuel, CPU time, wall time and the
    /// memory it peaked at.
    pub fn add(&self, fuel: u64, cpu_time: Duration, wall_time: Duration, peak_memory: u64) {
        let step =
            InvocationFigures::new(fuel, wall_time, peak_memory, false).with_cpu_time(cpu_time);
        let mut late = self.0.lock();
        late.fuel = late.fuel.saturating_add(fuel);
        late.cpu_time = late.cpu_time.saturating_add(cpu_time);
        late.wall_time = late.wall_time.saturating_add(wall_time);
        match &late.sink {
            Some(tenant) => tenant.c.invocation(&step),
            None => {
                let p = late.pending.get_or_insert_with(InvocationFigures::default);
                p.fuel = p.fuel.saturating_add(fuel);
                p.cpu_time = p.cpu_time.saturating_add(cpu_time);
                p.wall_time = p.wall_time.saturating_add(wall_time);
                p.peak_memory = p.peak_memory.max(peak_memory);
            }
        }
    }

    /// Reports that the work failed after the head went out (the stream was
    /// cut): counted among the tenant's errors of `kind`, like a request
    /// that failed.
    pub fn failed(&self, kind: ErrorKind) {
        let mut late = self.0.lock();
        match &late.sink {
            Some(tenant) => {
                tenant.c.errors[kind.index()].fetch_add(1, Relaxed);
            }
            None => late.pending_failure = Some(kind),
        }
    }

    /// Fuel reported so far.
    pub fn fuel(&self) -> u64 {
        self.0.lock().fuel
    }

    /// CPU time reported so far.
    pub fn cpu_time(&self) -> Duration {
        self.0.lock().cpu_time
    }

    /// Wall time reported so far.
    pub fn wall_time(&self) -> Duration {
        self.0.lock().wall_time
    }

    /// Sends this and every later report to `tenant`'s counters.
    pub(crate) fn attach(&self, tenant: Arc<crate::meter::Tenant>) {
        let mut late = self.0.lock();
        if let Some(p) = late.pending.take() {
            tenant.c.invocation(&p);
        }
        if let Some(kind) = late.pending_failure.take() {
            tenant.c.errors[kind.index()].fetch_add(1, Relaxed);
        }
        late.sink = Some(tenant);
    }
}

/// Upper bounds of the request latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const LATENCY_BUCKETS_US: [u64; 12] = [
    1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Lifetime (since this process started metering the tenant) counters.
#[derive(Debug, Default)]
pub(crate) struct TenantCounters {
    /// The additive counters that monthly usage is made of (admitted
    /// requests, refusals by [`Refusal::index`], errors by kind, times, fuel,
    /// bytes, cold starts): on the heap, or in a [`Journal`](crate::Journal)
    /// slot that outlives the process. Read through `Deref`.
    pub(crate) add: Counts,
    /// Requests inside the stack, not yet admitted or refused (a gauge).
    pub(crate) in_flight: AtomicU64,
    pub(crate) status: [AtomicU64; 5],
    pub(crate) latency_us: AtomicU64,
    /// Non-cumulative; the last slot counts everything above the last bound.
    /// Their sum is the number of latencies recorded (no separate counter:
    /// one atomic fewer per request).
    pub(crate) latency_buckets: [AtomicU64; 13],
    pub(crate) peak_memory: AtomicU64,
    pub(crate) month_peak_memory: AtomicU64,
    pub(crate) streams_open: AtomicU64,
    pub(crate) streams_total: AtomicU64,
    pub(crate) peak_streams: AtomicU64,
    pub(crate) month_peak_streams: AtomicU64,
    pub(crate) storage_bytes: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    /// Requests at the live feed's previous tick (for per-second rates).
    pub(crate) feed_mark: AtomicU64,
}

/// Where a tenant's additive counters live.
#[derive(Debug)]
pub(crate) enum Counts {
    Heap(Additive),
    Journal(SlotHandle),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::Heap(Additive::default())
    }
}

impl std::ops::Deref for TenantCounters {
    type Target = Additive;
    #[inline]
    fn deref(&self) -> &Additive {
        match &self.add {
            Counts::Heap(a) => a,
            Counts::Journal(h) => h.live(),
        }
    }
}

/// The additive monthly figures, as read at one instant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sums {
    pub(crate) requests: u64,
    pub(crate) refused: [u64; Refusal::COUNT],
    pub(crate) errors: u64,
    pub(crate) wall_us: u64,
    pub(crate) fuel: u64,
    pub(crate) cpu_us: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) cold_starts: u64,
}

impl Sums {
    /// The figures of counters read as `raw`.
    pub(crate) fn of(raw: &Raw) -> Self {
        Sums {
            requests: raw[at::REQUESTS],
            refused: std::array::from_fn(|i| raw[at::REFUSED + i]),
            errors: raw[at::ERRORS..at::ERRORS + 7].iter().sum(),
            wall_us: raw[at::WALL_US],
            fuel: raw[at::FUEL],
            cpu_us: raw[at::CPU_US],
            bytes_in: raw[at::BYTES_IN],
            bytes_out: raw[at::BYTES_OUT],
            cold_starts: raw[at::COLD_STARTS],
        }
    }
}

impl TenantCounters {
    /// Counters on the heap, or in `slot`.
    pub(crate) fn new(slot: Option<SlotHandle>) -> Self {
        Self {
            add: slot.map_or_else(Counts::default, Counts::Journal),
            ..Self::default()
        }
    }

    /// The journal slot the counters live in, if any.
    pub(crate) fn slot(&self) -> Option<&SlotHandle> {
        match &self.add {
            Counts::Journal(h) => Some(h),
            Counts::Heap(_) => None,
        }
    }

    /// Latencies recorded: the sum of the histogram's buckets.
    pub(crate) fn latency_count(&self) -> u64 {
        self.latency_buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    pub(crate) fn latency(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.fetch_add(us, Relaxed);
        let slot = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[slot].fetch_add(1, Relaxed);
    }

    pub(crate) fn invocation(&self, f: &InvocationFigures) {
        self.fuel.fetch_add(f.fuel, Relaxed);
        if !f.cpu_time.is_zero() {
            let cpu = u64::try_from(f.cpu_time.as_micros()).unwrap_or(u64::MAX);
            self.cpu_us.fetch_add(cpu, Relaxed);
        }
        let us = u64::try_from(f.wall_time.as_micros()).unwrap_or(u64::MAX);
        self.wall_us.fetch_add(us, Relaxed);
        // A plain load first: `fetch_max` is a compare-and-swap loop, and in
        // the steady state the peak is already at least this high.
        if f.peak_memory > self.peak_memory.load(Relaxed) {
            self.peak_memory.fetch_max(f.peak_memory, Relaxed);
        }
        if f.peak_memory > self.month_peak_memory.load(Relaxed) {
            self.month_peak_memory.fetch_max(f.peak_memory, Relaxed);
        }
        if f.cold_start {
            self.cold_starts.fetch_add(1, Relaxed);
        }
    }

    /// Settles one request that was in flight: admitted (`None`) or refused.
    /// The outcome is counted before the gauge falls, so admitted plus in
    /// flight never dips below the truth while the quota reads it.
    #[inline]
    pub(crate) fn settle(&self, refused: Option<Refusal>) {
        match refused {
            None => self.requests.fetch_add(1, Relaxed),
            Some(r) => self.refused[r.index()].fetch_add(1, Relaxed),
        };
        self.in_flight.fetch_sub(1, Relaxed);
    }

    pub(crate) fn open_stream(&self) {
        let now = self.streams_open.fetch_add(1, Relaxed) + 1;
        self.streams_total.fetch_add(1, Relaxed);
        self.peak_streams.fetch_max(now, Relaxed);
        self.month_peak_streams.fetch_max(now, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TenantSnapshot {
        TenantSnapshot {
            requests: self.requests.load(Relaxed),
            refused: std::array::from_fn(|i| self.refused[i].load(Relaxed)),
            in_flight: self.in_flight.load(Relaxed),
            status: std::array::from_fn(|i| self.status[i].load(Relaxed)),
            errors: std::array::from_fn(|i| self.errors[i].load(Relaxed)),
            latency: Duration::from_micros(self.latency_us.load(Relaxed)),
            latency_count: self.latency_count(),
            wall_time: Duration::from_micros(self.wall_us.load(Relaxed)),
            fuel: self.fuel.load(Relaxed),
            cpu_time: Duration::from_micros(self.cpu_us.load(Relaxed)),
            peak_memory: self.peak_memory.load(Relaxed),
            cold_starts: self.cold_starts.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            streams_open: self.streams_open.load(Relaxed),
            streams_total: self.streams_total.load(Relaxed),
            peak_streams: self.peak_streams.load(Relaxed),
            storage_bytes: self.storage_bytes.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
        }
    }
}

/// One tenant's counters since this process started metering it (not
/// monthly: see [`Meter::usage`](crate::Meter::usage) for the billing view).
///
/// ```
/// use corral_limits::Refusal;
/// use corral_metering::{ErrorKind, Meter, StatusClass};
/// let meter = Meter::new();
/// let t = meter.tenant(&"shop".parse().unwrap());
/// t.request();
/// t.response(http::StatusCode::OK);
/// t.refused(Refusal::RateLimited);
/// t.response(http::StatusCode::TOO_MANY_REQUESTS);
/// t.error(ErrorKind::Rate);
/// let s = t.snapshot();
/// assert_eq!((s.requests, s.refused(Refusal::RateLimited), s.refused_total()), (1, 1, 1));
/// assert_eq!((s.status(StatusClass::ClientError), s.errors(ErrorKind::Rate)), (1, 1));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantSnapshot {
    /// Requests admitted (they passed every limit; refused ones are in
    /// [`refused`](Self::refused)).
    pub requests: u64,
    /// Requests refused by a limit, indexed like [`Refusal::ALL`].
    pub refused: [u64; Refusal::COUNT],
    /// Requests inside the stack now, not yet admitted or refused.
    pub in_flight: u64,
    /// Responses by status class, indexed like [`StatusClass::ALL`].
    pub status: [u64; 5],
    /// Errors by kind, indexed like [`ErrorKind::ALL`].
    pub errors: [u64; 7],
    /// Summed request latency (time to response headers).
    pub latency: Duration,
    /// Requests whose latency was recorded.
    pub latency_count: u64,
    /// Summed invocation wall time.
    pub wall_time: Duration,
    /// Fuel consumed.
    pub fuel: u64,
    /// Summed CPU time of invocations.
    pub cpu_time: Duration,
    /// Highest memory of one invocation, in bytes.
    pub peak_memory: u64,
    /// Cold starts.
    pub cold_starts: u64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Streaming responses open now (the gauge).
    pub streams_open: u64,
    /// Streaming responses ever opened.
    pub streams_total: u64,
    /// Most streams open at once.
    pub peak_streams: u64,
    /// Bytes the tenant stores (last value set).
    pub storage_bytes: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// Cache misses.
    pub cache_misses: u64,
}

impl TenantSnapshot {
    /// Responses of `class`.
    pub fn status(&self, class: StatusClass) -> u64 {
        self.status[class.index()]
    }
    /// Errors of `kind`.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }
    /// Errors of every kind.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }
    /// Requests refused as `kind`.
    pub fn refused(&self, kind: Refusal) -> u64 {
        self.refused[kind.index()]
    }
    /// Requests refused, every kind.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}
