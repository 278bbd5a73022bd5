//! The [`Meter`]: per-tenant counters, monthly usage, flush and restore.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_limits::{Refusal, TenantId, UsageSource};
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use crate::clock::unix_millis;
use crate::counters::{InvocationFigures, Sums, TenantCounters};
use crate::hash::TenantHash;
use crate::journal::{Journal, JournalMark, Raw};
use crate::{
    Clock, ErrorKind, Period, SinkError, StatusClass, SystemClock, TenantSnapshot, Usage, UsageSink,
};

/// How many tenants get their own Prometheus series by default.
pub const DEFAULT_EXPORT_TOP: usize = 50;

/// Why a flush or a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeterError {
    /// The [`UsageSink`] refused the batch or the load; nothing was lost, the
    /// next flush retries.
    #[error("usage sink failed")]
    Sink(#[source] SinkError),
    /// [`Meter::restore`] was called after this meter had already flushed:
    /// the stored totals include this process's counts, so adding them again
    /// would double count.
    #[error("restore after the meter has flushed would double count")]
    RestoreAfterFlush,
}

/// Where one tenant's current month started from.
#[derive(Debug)]
struct Baseline {
    period: Period,
    /// Totals persisted by an earlier process for `period` (from `restore`).
    restored: Usage,
    /// The lifetime counters when `period` began in this process.
    start: Sums,
}

/// The current month's bounds and the clock that decides them: what the hot
/// path reads to know whether the month has changed. Shared by the meter and
/// every tenant, so a [`TenantMeter`] checks it without touching the meter's
/// reference count.
#[derive(Debug)]
pub(crate) struct Gate {
    clock: Arc<dyn Clock>,
    /// The month's first second and the next month's, in Unix seconds. Month
    /// bounds are whole seconds, so comparing whole seconds (rounded down) is
    /// exact and spares the hot path a millisecond conversion.
    start_s: AtomicI64,
    end_s: AtomicI64,
}

/// Whole seconds since the Unix epoch, rounded down.
#[inline]
fn unix_secs_floor(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 { -s - 1 } else { -s }
        }
    }
}

impl Gate {
    /// The clock's time if it has left the current month. One clock read and
    /// two loads.
    #[inline]
    fn outside(&self) -> Option<SystemTime> {
        let now = self.clock.now();
        let s = unix_secs_floor(now);
        if s < self.start_s.load(Ordering::Acquire) || s >= self.end_s.load(Ordering::Acquire) {
            Some(now)
        } else {
            None
        }
    }
}

#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) id: TenantId,
    pub(crate) c: TenantCounters,
    base: RwLock<Baseline>,
    /// What the last successful flush stored for this tenant's current period.
    flushed: Mutex<Option<Usage>>,
    gate: Arc<Gate>,
    /// The meter, for the rare month rollover (weak: the meter owns its tenants).
    meter: Weak<Inner>,
}

impl Tenant {
    fn new(
        id: TenantId,
        period: Period,
        gate: Arc<Gate>,
        meter: Weak<Inner>,
        c: TenantCounters,
    ) -> Self {
        Self {
            base: RwLock::new(Baseline {
                period,
                restored: Usage::zero(id.clone(), period),
                start: Sums::default(),
            }),
            id,
            c,
            flushed: Mutex::new(None),
            gate,
            meter,
        }
    }

    /// [`Inner::check_period`] from a tenant handle.
    #[inline]
    fn check_period(&self) {
        if let Some(now) = self.gate.outside() {
            self.roll(now);
        }
    }

    #[cold]
    fn roll(&self, now: SystemTime) {
        // No meter left: nobody can read monthly usage any more.
        if let Some(inner) = self.meter.upgrade() {
            inner.roll(unix_millis(now));
        }
    }

    /// Monthly totals from `base` and the counters read as `cur`.
    fn usage_with(
        &self,
        b: &Baseline,
        cur: Sums,
        month_peak_memory: u64,
        month_peak_streams: u64,
    ) -> Usage {
        let r = &b.restored;
        let s = b.start;
        let mut u = Usage::zero(self.id.clone(), b.period);
        u.requests = r.requests + cur.requests.wrapping_sub(s.requests);
        for kind in Refusal::ALL {
            let i = kind.index();
            let n = r.refused.get(&kind).copied().unwrap_or(0)
                + cur.refused[i].wrapping_sub(s.refused[i]);
            if n > 0 {
                u.refused.insert(kind, n);
            }
        }
        u.errors = r.errors + cur.errors.wrapping_sub(s.errors);
        u.exec_time_ms = (r.exec_time_ms * 1000 + cur.wall_us.wrapping_sub(s.wall_us)) / 1000;
        u.fuel = r.fuel + cur.fuel.wrapping_sub(s.fuel);
        u.cpu_us = r.cpu_us + cur.cpu_us.wrapping_sub(s.cpu_us);
        u.peak_memory = r.peak_memory.max(month_peak_memory);
        u.peak_streams = r.peak_streams.max(month_peak_streams);
        u.storage_bytes = self.c.storage_bytes.load(Relaxed);
        u.bytes_in = r.bytes_in + cur.bytes_in.wrapping_sub(s.bytes_in);
        u.bytes_out = r.bytes_out + cur.bytes_out.wrapping_sub(s.bytes_out);
        u.cold_starts = r.cold_starts + cur.cold_starts.wrapping_sub(s.cold_starts);
        u
    }
}

/// Totals waiting for the next flush: a closed month, or a forgotten
/// tenant's last figures, with the counters they were computed from.
#[derive(Debug, Clone)]
struct Pending {
    usage: Usage,
    from: (Arc<Tenant>, Raw),
}

fn is_zero(u: &Usage) -> bool {
    let z = Usage::zero(u.tenant.clone(), u.period);
    *u == z
}

pub(crate) struct Inner {
    pub(crate) tenants: DashMap<TenantId, Arc<Tenant>, TenantHash>,
    gate: Arc<Gate>,
    period: RwLock<Period>,
    roll_lock: Mutex<()>,
    pending: Mutex<Vec<Pending>>,
    journal: Option<Journal>,
    /// Held across a flush. It keeps the mark of a journaled flush whose
    /// store failed and whose mark could not be read back then (the commit
    /// may have gone through): the next flush learns its fate first.
    flush_lock: Mutex<Option<JournalMark>>,
    flushed_once: AtomicBool,
    pub(crate) unattributed: AtomicU64,
    pub(crate) export_top: usize,
    pub(crate) export_always: Vec<TenantId>,
    pub(crate) host: RwLock<Option<crate::prometheus::HostReport>>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter")
            .field("tenants", &self.tenants.len())
            .field("period", &*self.period.read())
            .field("clock", &self.gate.clock)
            .field("export_top", &self.export_top)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn set_period(&self, p: Period) {
        *self.period.write() = p;
        self.gate
            .start_s
            .store(unix_secs_floor(p.start()), Ordering::Release);
        self.gate
            .end_s
            .store(unix_secs_floor(p.next().start()), Ordering::Release);
    }

    /// Rolls to a new month when the clock has left the current one. One
    /// clock read and two loads on the hot path.
    #[inline]
    fn check_period(&self) {
        if let Some(now) = self.gate.outside() {
            self.roll(unix_millis(now));
        }
    }

    #[cold]
    fn roll(&self, now_ms: i64) {
        let _g = self.roll_lock.lock();
        let now = if now_ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(now_ms.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(now_ms.unsigned_abs())
        };
        let p = Period::containing(now);
        if *self.period.read() == p {
            return;
        }
        self.set_period(p);
        let all: Vec<Arc<Tenant>> = self.tenants.iter().map(|e| e.value().clone()).collect();
        for t in all {
            self.roll_tenant(&t, p);
        }
    }

    /// Closes `t`'s month if it is not `p`: its final totals go to the
    /// pending batch and its counters start again from zero for `p`.
    fn roll_tenant(&self, t: &Arc<Tenant>, p: Period) {
        let mut b = t.base.write();
        if b.period == p {
            return;
        }
        let raw = t.c.load();
        let cur = Sums::of(&raw);
        let peak_mem = t.c.month_peak_memory.swap(0, Relaxed);
        let open = t.c.streams_open.load(Relaxed);
        let peak_streams = t.c.month_peak_streams.swap(open, Relaxed);
        let closed = t.usage_with(&b, cur, peak_mem, peak_streams);
        let mut flushed = t.flushed.lock();
        if flushed.as_ref() != Some(&closed) && !is_zero(&closed) {
            self.pending.lock().push(Pending {
                usage: closed,
                from: (t.clone(), raw),
            });
        }
        if let Some(slot) = t.c.slot() {
            slot.set_period(p);
        }
        *flushed = None;
        *b = Baseline {
            period: p,
            restored: Usage::zero(t.id.clone(), p),
            start: cur,
        };
    }

    fn current_period(&self) -> Period {
        *self.period.read()
    }

    fn tenant(self: &Arc<Self>, id: &TenantId) -> Arc<Tenant> {
        if let Some(t) = self.tenants.get(id) {
            return t.value().clone();
        }
        let p = self.current_period();
        self.tenants
            .entry(id.clone())
            .or_insert_with(|| {
                let slot = self.journal.as_ref().and_then(|j| j.attach(id, p));
                Arc::new(Tenant::new(
                    id.clone(),
                    p,
                    self.gate.clone(),
                    Arc::downgrade(self),
                    TenantCounters::new(slot),
                ))
            })
            .value()
            .clone()
    }

    fn usage_of(&self, t: &Arc<Tenant>) -> Usage {
        self.usage_raw(t).0
    }

    /// `t`'s monthly totals and the counters they were computed from.
    fn usage_raw(&self, t: &Arc<Tenant>) -> (Usage, Raw) {
        let p = self.current_period();
        if t.base.read().period != p {
            self.roll_tenant(t, p);
        }
        let b = t.base.read();
        let raw = t.c.load();
        let u = t.usage_with(
            &b,
            Sums::of(&raw),
            t.c.month_peak_memory.load(Relaxed),
            t.c.month_peak_streams.load(Relaxed),
        );
        (u, raw)
    }
}

/// Per-tenant counters and monthly usage. Cheap to clone (one `Arc`); every
/// clone meters into the same counters.
///
/// The hot path takes no lock shared between tenants: a tenant's counters are
/// atomics found through a sharded map (`dashmap`), and a [`TenantMeter`]
/// handle skips even that lookup.
///
/// Monthly usage is per calendar month in UTC, read from an injected
/// [`Clock`]. The first request after the month changes closes every tenant's
/// month (its final totals wait in the next [`flush`](Self::flush)) and starts
/// the new one from zero.
///
/// ```
/// use corral_metering::{ErrorKind, Meter};
/// use corral_limits::UsageSource;
///
/// let meter = Meter::new();
/// let shop = "shop".parse().unwrap();
/// let t = meter.tenant(&shop);
/// t.request();
/// t.response(http::StatusCode::OK);
/// t.request();
/// t.error(ErrorKind::Quota);
/// assert_eq!(meter.requests_this_month(&shop), 2);
/// assert_eq!(meter.usage(&shop).unwrap().errors, 1);
/// ```
#[derive(Clone, Debug)]
pub struct Meter {
    pub(crate) inner: Arc<Inner>,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`Meter`].
///
/// ```
/// use corral_metering::{Meter, ManualClock, Period};
/// let clock = ManualClock::new(Period::new(2026, 11).unwrap().start());
/// let meter = Meter::builder().clock(clock).export_top(10).build();
/// assert_eq!(meter.period(), Period::new(2026, 11).unwrap());
/// ```
#[must_use]
#[derive(Debug)]
pub struct MeterBuilder {
    clock: Arc<dyn Clock>,
    export_top: usize,
    export_always: Vec<TenantId>,
    journal: Option<Journal>,
}

impl MeterBuilder {
    /// Keeps the additive counters in `journal`'s file, so a killed process
    /// loses none of the usage it had not flushed: the next
    /// [`Journal::open`] hands it to the sink. With a journal,
    /// [`flush`](Meter::flush) writes through [`UsageSink::store_marked`].
    /// Default: none (counters on the heap).
    pub fn journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The clock that decides the month. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many tenants (the busiest by requests) get their own Prometheus
    /// series. Default: [`DEFAULT_EXPORT_TOP`] (50). `0` exports host-wide
    /// totals only (plus any [`export_tenants`](Self::export_tenants)).
    pub fn export_top(mut self, n: usize) -> Self {
        self.export_top = n;
        self
    }

    /// Tenants that always get their own Prometheus series, whatever their
    /// rank (opt-in). Default: none.
    pub fn export_tenants(mut self, tenants: impl IntoIterator<Item = TenantId>) -> Self {
        self.export_always = tenants.into_iter().collect();
        self
    }

    /// The meter.
    pub fn build(self) -> Meter {
        let p = Period::containing(self.clock.now());
        let inner = Inner {
            tenants: DashMap::with_hasher(TenantHash::default()),
            gate: Arc::new(Gate {
                clock: self.clock,
                start_s: AtomicI64::new(0),
                end_s: AtomicI64::new(0),
            }),
            period: RwLock::new(p),
            roll_lock: Mutex::new(()),
            pending: Mutex::new(Vec::new()),
            journal: self.journal,
            flush_lock: Mutex::new(None),
            flushed_once: AtomicBool::new(false),
            unattributed: AtomicU64::new(0),
            export_top: self.export_top,
            export_always: self.export_always,
            host: RwLock::new(None),
        };
        inner.set_period(p);
        Meter {
            inner: Arc::new(inner),
        }
    }
}

impl Meter {
    /// A meter on the system clock, exporting the top 50 tenants.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder with the defaults of [`Meter::new`].
    pub fn builder() -> MeterBuilder {
        MeterBuilder {
            clock: Arc::new(SystemClock),
            export_top: DEFAULT_EXPORT_TOP,
            export_always: Vec::new(),
            journal: None,
        }
    }

    /// The handle for `tenant`, creating its counters on first use. Keep it to
    /// meter several events without looking the tenant up again.
    pub fn tenant(&self, tenant: &TenantId) -> TenantMeter {
        TenantMeter {
            t: self.inner.tenant(tenant),
        }
    }

    /// The handle for `tenant` if it is metered already.
    pub fn get(&self, tenant: &TenantId) -> Option<TenantMeter> {
        let t = self.inner.tenants.get(tenant)?.value().clone();
        Some(TenantMeter { t })
    }

    /// Counts a request for `tenant` (shorthand for `tenant(..).request()`).
    pub fn request(&self, tenant: &TenantId) {
        self.inner.check_period();
        // Count through the map's guard: no reference count touched.
        match self.inner.tenants.get(tenant) {
            Some(t) => t.c.requests.fetch_add(1, Relaxed),
            None => self.inner.tenant(tenant).c.requests.fetch_add(1, Relaxed),
        };
    }

    /// The counters of `tenant`, without the meter's own reference count
    /// (the layer's hot path: no atomic shared by every request).
    pub(crate) fn counters(&self, tenant: &TenantId) -> Arc<Tenant> {
        self.inner.tenant(tenant)
    }

    /// A request enters the stack on counters from [`Meter::counters`]: it
    /// is in flight until [`Entry::settle`] (or the entry's drop) counts it
    /// as admitted or refused.
    #[inline]
    pub(crate) fn enter(&self, t: Arc<Tenant>) -> Entry {
        self.inner.check_period();
        t.c.in_flight.fetch_add(1, Relaxed);
        Entry(Some(t))
    }

    /// Counts a request that carried no tenant (host-wide only).
    pub fn unattributed_request(&self) {
        self.inner.unattributed.fetch_add(1, Relaxed);
    }

    /// Requests that carried no tenant.
    pub fn unattributed_requests(&self) -> u64 {
        self.inner.unattributed.load(Relaxed)
    }

    /// The billing month the meter is in (as of the last request or read).
    pub fn period(&self) -> Period {
        self.inner.check_period();
        self.inner.current_period()
    }

    /// How many tenants are metered.
    pub fn tenant_count(&self) -> usize {
        self.inner.tenants.len()
    }

    /// `tenant`'s counters since this process started metering it.
    pub fn snapshot(&self, tenant: &TenantId) -> Option<TenantSnapshot> {
        Some(self.inner.tenants.get(tenant)?.c.snapshot())
    }

    /// Every tenant's counters summed (peaks: the highest of any tenant).
    pub fn totals(&self) -> TenantSnapshot {
        let mut s = TenantSnapshot::default();
        for e in self.inner.tenants.iter() {
            let t = e.c.snapshot();
            s.requests += t.requests;
            for i in 0..Refusal::COUNT {
                s.refused[i] += t.refused[i];
            }
            s.in_flight += t.in_flight;
            for i in 0..5 {
                s.status[i] += t.status[i];
            }
            for i in 0..7 {
                s.errors[i] += t.errors[i];
            }
            s.latency += t.latency;
            s.latency_count += t.latency_count;
            s.wall_time += t.wall_time;
            s.fuel += t.fuel;
            s.cpu_time += t.cpu_time;
            s.peak_memory = s.peak_memory.max(t.peak_memory);
            s.cold_starts += t.cold_starts;
            s.bytes_in += t.bytes_in;
            s.bytes_out += t.bytes_out;
            s.streams_open += t.streams_open;
            s.streams_total += t.streams_total;
            s.peak_streams = s.peak_streams.max(t.peak_streams);
            s.storage_bytes += t.storage_bytes;
            s.cache_hits += t.cache_hits;
            s.cache_misses += t.cache_misses;
        }
        s
    }

    /// `tenant`'s totals for the current month, including what was restored
    /// from the sink at start.
    pub fn usage(&self, tenant: &TenantId) -> Option<Usage> {
        self.inner.check_period();
        let t = self.inner.tenants.get(tenant)?.value().clone();
        Some(self.inner.usage_of(&t))
    }

    /// Every metered tenant's totals for the current month, by tenant name.
    pub fn usages(&self) -> Vec<Usage> {
        self.inner.check_period();
        let mut v: Vec<Usage> = self.all().iter().map(|t| self.inner.usage_of(t)).collect();
        v.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        v
    }

    pub(crate) fn all(&self) -> Vec<Arc<Tenant>> {
        self.inner
            .tenants
            .iter()
            .map(|e| e.value().clone())
            .collect()
    }

    /// Stops metering `tenant` (deleted app). Its unflushed totals wait in the
    /// next flush; returned for convenience. A tenant metered again later in
    /// the same month starts from zero, so only forget deleted tenants.
    pub fn forget(&self, tenant: &TenantId) -> Option<Usage> {
        self.inner.check_period();
        let (_, t) = self.inner.tenants.remove(tenant)?;
        let (u, raw) = self.inner.usage_raw(&t);
        let flushed = t.flushed.lock();
        if flushed.as_ref() != Some(&u) && !is_zero(&u) {
            self.inner.pending.lock().push(Pending {
                usage: u.clone(),
                from: (t.clone(), raw),
            });
        }
        Some(u)
    }

    /// Upserts every changed tenant's monthly totals (and the final totals of
    /// any month that just closed) into `sink`. Absolute totals, so flushing
    /// twice, or retrying after an error, never double counts. Returns how
    /// many records were stored.
    ///
    /// ```
    /// # use std::sync::Mutex;
    /// use corral_metering::{Meter, Period, SinkError, Usage, UsageSink};
    /// #[derive(Default)]
    /// struct Mem(Mutex<Vec<Usage>>);
    /// impl UsageSink for Mem {
    ///     fn store(&self, batch: &[Usage]) -> Result<(), SinkError> {
    ///         self.0.lock().unwrap().extend_from_slice(batch);
    ///         Ok(())
    ///     }
    ///     fn load(&self, _: Period) -> Result<Vec<Usage>, SinkError> { Ok(vec![]) }
    /// }
    /// let meter = Meter::new();
    /// meter.request(&"a".parse().unwrap());
    /// let sink = Mem::default();
    /// assert_eq!(meter.flush(&sink).unwrap(), 1);
    /// assert_eq!(meter.flush(&sink).unwrap(), 0); // nothing changed
    /// ```
    pub fn flush(&self, sink: &dyn UsageSink) -> Result<usize, MeterError> {
        self.inner.check_period();
        let mut unsure = self.inner.flush_lock.lock();
        if let (Some(j), Some(m)) = (&self.inner.journal, unsure.as_ref()) {
            // Until it is known, a new flush would overwrite what the file
            // says that one held; a process killed then could not tell.
            if sink.journal_mark(m.journal()).map_err(MeterError::Sink)? >= m.seq() {
                j.commit_found(m);
            }
            *unsure = None;
        }
        let pending: Vec<Pending> = self.inner.pending.lock().clone();
        let n_pending = pending.len();
        let mut batch: Vec<Usage> = pending.iter().map(|p| p.usage.clone()).collect();
        let mut from: Vec<(Arc<Tenant>, Raw)> = pending.into_iter().map(|p| p.from).collect();
        let mut fresh = Vec::new();
        for t in self.all() {
            let (u, raw) = self.inner.usage_raw(&t);
            let same = t.flushed.lock().as_ref() == Some(&u);
            if !same && !is_zero(&u) {
                batch.push(u.clone());
                from.push((t.clone(), raw));
                fresh.push((t, u));
            }
        }
        if batch.is_empty() {
            // A shared sink still has the other nodes' counts to read back.
            if sink.shared() {
                self.absorb(sink)?;
            }
            return Ok(0);
        }
        match &self.inner.journal {
            None => sink.store(&batch).map_err(MeterError::Sink)?,
            Some(j) => {
                // The counters each row was computed from go into the
                // journal first: if the process dies before the journal
                // records the commit, the sink's mark tells the next process
                // whether these rows are in.
                let slots = || from.iter().filter_map(|(t, raw)| Some((t.c.slot()?, raw)));
                let mark = j.prepare(slots());
                if let Err(e) = sink.store_marked(&batch, &mark) {
                    // A commit whose answer was lost is in: the mark, written
                    // in its transaction, says so.
                    match sink.journal_mark(mark.journal()) {
                        Ok(seq) if seq >= mark.seq() => {}
                        Ok(_) => return Err(MeterError::Sink(e)),
                        Err(_) => {
                            *unsure = Some(mark);
                            return Err(MeterError::Sink(e));
                        }
                    }
                }
                j.commit(&mark, slots().map(|(s, _)| s));
            }
        }
        self.inner.pending.lock().drain(..n_pending);
        for (t, u) in fresh {
            let b = t.base.read();
            if b.period == u.period {
                *t.flushed.lock() = Some(u);
            }
        }
        self.inner.flushed_once.store(true, Relaxed);
        if sink.shared() {
            self.absorb(sink)?;
        }
        Ok(batch.len())
    }

    /// Folds what other nodes counted into this meter (a shared sink, after
    /// a flush, under the flush lock): each stored row of the current month
    /// holds this meter's last written totals plus the other nodes'; the
    /// difference joins the tenant's restored baseline, so its totals (what
    /// the quota reads) become the stored row plus what this meter counted
    /// since. A tenant this meter has not seen is seeded from its row.
    fn absorb(&self, sink: &dyn UsageSink) -> Result<(), MeterError> {
        let p = self.period();
        let stored = sink.load(p).map_err(MeterError::Sink)?;
        let more = |r: &mut u64, u: u64, f: u64| *r = r.saturating_add(u.saturating_sub(f));
        for u in stored.into_iter().filter(|u| u.period == p) {
            let tm = match self.get(&u.tenant) {
                Some(tm) => tm,
                None if self.restore_tenant(&u) => continue,
                // Metered meanwhile: fold into its counters like the others.
                None => match self.get(&u.tenant) {
                    Some(tm) => tm,
                    None => continue,
                },
            };
            if tm.t.base.read().period != p {
                self.inner.roll_tenant(&tm.t, p);
            }
            let mut b = tm.t.base.write();
            let mut flushed = tm.t.flushed.lock();
            let f = match flushed.as_ref() {
                Some(f) if f.period == p => f.clone(),
                _ => Usage::zero(u.tenant.clone(), p),
            };
            if f == u {
                continue;
            }
            let r = &mut b.restored;
            more(&mut r.requests, u.requests, f.requests);
            more(&mut r.errors, u.errors, f.errors);
            more(&mut r.exec_time_ms, u.exec_time_ms, f.exec_time_ms);
            more(&mut r.fuel, u.fuel, f.fuel);
            more(&mut r.cpu_us, u.cpu_us, f.cpu_us);
            more(&mut r.bytes_in, u.bytes_in, f.bytes_in);
            more(&mut r.bytes_out, u.bytes_out, f.bytes_out);
            more(&mut r.cold_starts, u.cold_starts, f.cold_starts);
            for (code, n) in &u.refused {
                let had = f.refused.get(code).copied().unwrap_or(0);
                more(r.refused.entry(*code).or_insert(0), *n, had);
            }
            r.peak_memory = r.peak_memory.max(u.peak_memory);
            r.peak_streams = r.peak_streams.max(u.peak_streams);
            // The storage gauge is this node's own reading, not the row's:
            // otherwise two nodes would rewrite each other's every flush.
            let mut u = u;
            u.storage_bytes = tm.t.c.storage_bytes.load(Relaxed);
            *flushed = Some(u);
        }
        Ok(())
    }

    /// Seeds one tenant's totals for the current month, for a tenant that
    /// arrives with history (an imported tenant). Returns `false`, changing
    /// nothing, when the tenant already has counters here or `usage` is for
    /// another month; unlike [`restore`](Self::restore) it may run at any time.
    ///
    /// ```
    /// use corral_metering::{Meter, Usage};
    /// let meter = Meter::new();
    /// let mut u = Usage::zero("imported".parse().unwrap(), meter.period());
    /// u.requests = 7;
    /// assert!(meter.restore_tenant(&u));
    /// assert_eq!(meter.usage(&u.tenant).unwrap().requests, 7);
    /// assert!(!meter.restore_tenant(&u));
    /// ```
    pub fn restore_tenant(&self, u: &Usage) -> bool {
        let p = self.period();
        if u.period != p || self.get(&u.tenant).is_some() {
            return false;
        }
        let t = self.inner.tenant(&u.tenant);
        if t.base.read().period != p {
            self.inner.roll_tenant(&t, p);
        }
        let mut b = t.base.write();
        t.c.storage_bytes.store(u.storage_bytes, Relaxed);
        *t.flushed.lock() = Some(u.clone());
        b.restored = u.clone();
        true
    }

    /// Continues from the totals persisted for the current month: call once
    /// at start, before the first flush. Returns how many tenants were
    /// restored.
    pub fn restore(&self, sink: &dyn UsageSink) -> Result<usize, MeterError> {
        if self.inner.flushed_once.load(Relaxed) {
            return Err(MeterError::RestoreAfterFlush);
        }
        let p = self.period();
        let stored = sink.load(p).map_err(MeterError::Sink)?;
        let mut n = 0;
        for u in stored.into_iter().filter(|u| u.period == p) {
            let t = self.inner.tenant(&u.tenant);
            if t.base.read().period != p {
                self.inner.roll_tenant(&t, p);
            }
            let mut b = t.base.write();
            t.c.storage_bytes.store(u.storage_bytes, Relaxed);
            *t.flushed.lock() = Some(u.clone());
            b.restored = u;
            n += 1;
        }
        Ok(n)
    }

    /// Flushes into `sink` every `every` on a background thread, and once more
    /// when the returned [`Flusher`] is stopped or dropped.
    pub fn spawn_flusher(&self, sink: Arc<dyn UsageSink>, every: Duration) -> Flusher {
        let (tx, rx) = mpsc::channel::<()>();
        let stats = Arc::new(FlushStats::default());
        let meter = self.clone();
        let st = stats.clone();
        let handle = std::thread::Builder::new()
            .name("corral-usage-flush".into())
            .spawn(move || {
                loop {
                    let last =
                        !matches!(rx.recv_timeout(every), Err(mpsc::RecvTimeoutError::Timeout));
                    match meter.flush(&*sink) {
                        Ok(_) => st.flushes.fetch_add(1, Relaxed),
                        Err(_) => st.failures.fetch_add(1, Relaxed),
                    };
                    if last {
                        break;
                    }
                }
            })
            .ok();
        Flusher {
            stop: Some(tx),
            handle,
            stats,
        }
    }
}

/// Admitted requests this month plus the requests in flight: a request
/// inside the stack may yet be admitted, so it counts until it is refused.
/// That errs on the side of the quota (never past it), and a refusal stops
/// counting the moment it is settled.
impl UsageSource for Meter {
    fn requests_this_month(&self, tenant: &TenantId) -> u64 {
        let Some(t) = self.inner.tenants.get(tenant).map(|t| t.value().clone()) else {
            return 0;
        };
        self.inner.check_period();
        let in_flight = t.c.in_flight.load(Relaxed);
        self.inner.usage_of(&t).requests.saturating_add(in_flight)
    }
}

/// One request inside a metered stack, counted in flight until it is
/// settled as admitted or refused. Dropped unsettled (the caller went away
/// before the answer) it counts as admitted: it may have run.
#[derive(Debug)]
pub(crate) struct Entry(Option<Arc<Tenant>>);

impl Entry {
    /// The tenant's counters.
    pub(crate) fn tenant(&self) -> &Tenant {
        self.0.as_deref().expect("an entry is settled once")
    }

    /// Counts the request as admitted (`None`) or refused, and hands back
    /// the tenant's counters for the rest of the metering.
    pub(crate) fn settle(mut self, refused: Option<Refusal>) -> Arc<Tenant> {
        let t = self.0.take().expect("an entry is settled once");
        t.check_period();
        t.c.settle(refused);
        t
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.check_period();
            t.c.settle(None);
        }
    }
}

#[derive(Debug, Default)]
struct FlushStats {
    flushes: AtomicU64,
    failures: AtomicU64,
}

/// The background flush thread of [`Meter::spawn_flusher`]; flushes once more
/// and stops when dropped.
#[derive(Debug)]
pub struct Flusher {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    stats: Arc<FlushStats>,
}

impl Flusher {
    /// Successful flushes so far.
    pub fn flushes(&self) -> u64 {
        self.stats.flushes.load(Relaxed)
    }

    /// Failed flushes so far (each retried at the next interval).
    pub fn failures(&self) -> u64 {
        self.stats.failures.load(Relaxed)
    }

    /// Flushes a last time and waits for the thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One tenant's counters, ready to meter without a map lookup. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use corral_metering::{InvocationFigures, Meter};
/// let meter = Meter::new();
/// let t = meter.tenant(&"blog".parse().unwrap());
/// t.invocation(&InvocationFigures::new(500, Duration::from_millis(2), 1 << 20, true));
/// t.bytes_out(1024);
/// let s = t.snapshot();
/// assert_eq!((s.fuel, s.cold_starts, s.bytes_out, s.peak_memory), (500, 1, 1024, 1 << 20));
/// ```
#[derive(Clone)]
pub struct TenantMeter {
    t: Arc<Tenant>,
}

impl fmt::Debug for TenantMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantMeter")
            .field("tenant", &self.t.id)
            .finish()
    }
}

impl TenantMeter {
    /// The tenant.
    pub fn id(&self) -> &TenantId {
        &self.t.id
    }
    /// Counts an admitted request (and rolls the month over if the clock
    /// says so).
    #[inline]
    pub fn request(&self) {
        self.t.check_period();
        self.t.c.requests.fetch_add(1, Relaxed);
    }
    /// Counts a request refused by a limit: in usage under `refused`, never
    /// among the requests or toward the monthly quota.
    ///
    /// ```
    /// use corral_limits::{Refusal, UsageSource};
    /// let meter = corral_metering::Meter::new();
    /// let id = "shop".parse().unwrap();
    /// let t = meter.tenant(&id);
    /// t.refused(Refusal::RateLimited);
    /// t.refused(Refusal::RateLimited);
    /// t.request();
    /// assert_eq!(meter.requests_this_month(&id), 1);
    /// assert_eq!(meter.usage(&id).unwrap().refused[&Refusal::RateLimited], 2);
    /// ```
    #[inline]
    pub fn refused(&self, kind: Refusal) {
        self.t.check_period();
        self.t.c.refused[kind.index()].fetch_add(1, Relaxed);
    }
    /// Counts a response by its status class.
    #[inline]
    pub fn response(&self, status: http::StatusCode) {
        self.t.c.status[StatusClass::of(status).index()].fetch_add(1, Relaxed);
    }
    /// Counts a failed request of `kind`.
    #[inline]
    pub fn error(&self, kind: ErrorKind) {
        self.t.c.errors[kind.index()].fetch_add(1, Relaxed);
    }
    /// Records a request's latency (time to response headers).
    #[inline]
    pub fn latency(&self, d: Duration) {
        self.t.c.latency(d);
    }
    /// Adds one invocation's fuel, wall time, peak memory and cold start.
    #[inline]
    pub fn invocation(&self, f: &InvocationFigures) {
        self.t.c.invocation(f);
    }
    /// Adds request body bytes.
    #[inline]
    pub fn bytes_in(&self, n: u64) {
        self.t.c.bytes_in.fetch_add(n, Relaxed);
    }
    /// Adds response body bytes.
    #[inline]
    pub fn bytes_out(&self, n: u64) {
        self.t.c.bytes_out.fetch_add(n, Relaxed);
    }
    /// Counts a cache hit.
    #[inline]
    pub fn cache_hit(&self) {
        self.t.c.cache_hits.fetch_add(1, Relaxed);
    }
    /// Counts a cache miss.
    #[inline]
    pub fn cache_miss(&self) {
        self.t.c.cache_misses.fetch_add(1, Relaxed);
    }
    /// Sets the bytes the tenant stores (KV, bundles, blobs).
    pub fn set_storage_bytes(&self, n: u64) {
        self.t.c.storage_bytes.store(n, Relaxed);
    }
    /// Opens a streaming connection: the gauge rises now and falls when the
    /// guard is dropped (stream ended or client gone).
    ///
    /// ```
    /// let meter = corral_metering::Meter::new();
    /// let t = meter.tenant(&"chat".parse().unwrap());
    /// let a = t.open_stream();
    /// let b = t.open_stream();
    /// assert_eq!(t.snapshot().streams_open, 2);
    /// drop(a);
    /// drop(b);
    /// assert_eq!((t.snapshot().streams_open, t.snapshot().peak_streams), (0, 2));
    /// ```
    pub fn open_stream(&self) -> StreamGuard {
        StreamGuard::open(self.t.clone())
    }
    /// The counters since this process started metering the tenant.
    pub fn snapshot(&self) -> TenantSnapshot {
        self.t.c.snapshot()
    }

    pub(crate) fn into_counters(self) -> Arc<Tenant> {
        self.t
    }
}

/// Holds one open stream in its tenant's gauge; dropping it closes the stream.
#[must_use = "the stream counts as open only while the guard lives"]
pub struct StreamGuard {
    t: Arc<Tenant>,
}

impl fmt::Debug for StreamGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamGuard")
            .field("tenant", &self.t.id)
            .finish()
    }
}

impl StreamGuard {
    pub(crate) fn open(t: Arc<Tenant>) -> Self {
        t.c.open_stream();
        Self { t }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.t.c.streams_open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_round_down_on_both_sides_of_the_epoch() {
        let at = |ms: i64| {
            if ms >= 0 {
                UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
            } else {
                UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
            }
        };
        assert_eq!(unix_secs_floor(at(0)), 0);
        assert_eq!(unix_secs_floor(at(999)), 0);
        assert_eq!(unix_secs_floor(at(1000)), 1);
        assert_eq!(unix_secs_floor(at(-1)), -1);
        assert_eq!(unix_secs_floor(at(-1000)), -1);
        assert_eq!(unix_secs_floor(at(-1001)), -2);
    }
}
