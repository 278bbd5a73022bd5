//! The [`Monitor`]: probes the host, applies the thresholds, fires the
//! expansion hook, and publishes a live gauge feed once a second.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use corral_limits::TenantId;
use tokio::sync::watch;

use crate::clock::unix_millis;
use crate::{
    ExpansionHook, HookPayload, HostEvent, HostProbe, HostReport, Meter, Probe, ThresholdError,
    ThresholdTracker, Thresholds,
};

/// Cache figures, supplied by whoever owns the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that hit, since start.
    pub hits: u64,
    /// Lookups that missed, since start.
    pub misses: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Byte capacity.
    pub capacity: u64,
}

impl CacheStats {
    /// Figures of a cache.
    pub fn new(hits: u64, misses: u64, bytes: u64, capacity: u64) -> Self {
        Self {
            hits,
            misses,
            bytes,
            capacity,
        }
    }
}

/// Where the live feed reads the cache's real figures (storage's cache
/// implements it, or pass a closure). The [`Meter`] is one too: the hits and
/// misses tenants were metered for.
///
/// ```
/// use corral_metering::{CacheStats, CacheStatsSource};
/// let cache = || CacheStats::new(9, 1, 512, 1024);
/// assert_eq!(cache.cache_stats().hits, 9);
/// ```
pub trait CacheStatsSource: Send + Sync + 'static {
    /// The figures now.
    fn cache_stats(&self) -> CacheStats;
}

impl<F: Fn() -> CacheStats + Send + Sync + 'static> CacheStatsSource for F {
    fn cache_stats(&self) -> CacheStats {
        self()
    }
}

impl CacheStatsSource for Meter {
    fn cache_stats(&self) -> CacheStats {
        let t = self.totals();
        CacheStats::new(t.cache_hits, t.cache_misses, 0, 0)
    }
}

/// One tenant in the live feed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct TenantGauge {
    /// The tenant.
    pub tenant: TenantId,
    /// Requests since start.
    pub requests: u64,
    /// Requests per second over the last interval.
    pub requests_per_sec: f64,
    /// Streams open now.
    pub streams_open: u64,
}

/// One frame of the live gauge feed; serialises to JSON for an SSE frontend.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct LiveGauges {
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: i64,
    /// The host reading.
    pub probe: Probe,
    /// RAM in use, 0–1.
    pub ram_used_ratio: f64,
    /// Data disk in use, 0–1.
    pub disk_used_ratio: f64,
    /// The cache's figures.
    pub cache: CacheStats,
    /// Hits over lookups during the last interval; `None` without lookups.
    pub cache_hit_rate: Option<f64>,
    /// Whether the node takes new tenants.
    pub accepting_new_tenants: bool,
    /// Whether maintenance is required.
    pub maintenance_required: bool,
    /// Requests per second, all tenants, over the last interval.
    pub requests_per_sec: f64,
    /// Streams open now, all tenants.
    pub streams_open: u64,
    /// The busiest tenants over the last interval.
    pub top_tenants: Vec<TenantGauge>,
    /// What crossed or recovered at this tick.
    pub events: Vec<HostEvent>,
}

/// The node's admission state, shared with whoever admits new tenants.
///
/// ```
/// let s = corral_metering::NodeStatus::default();
/// assert!(s.accepting_new_tenants());
/// assert!(!s.maintenance_required());
/// ```
#[derive(Debug, Clone)]
pub struct NodeStatus(Arc<(AtomicBool, AtomicBool)>);

impl Default for NodeStatus {
    fn default() -> Self {
        Self(Arc::new((AtomicBool::new(true), AtomicBool::new(false))))
    }
}

impl NodeStatus {
    /// False while a threshold is crossed.
    pub fn accepting_new_tenants(&self) -> bool {
        self.0.0.load(Relaxed)
    }
    /// True while the database/RAM ratio is over its limit.
    pub fn maintenance_required(&self) -> bool {
        self.0.1.load(Relaxed)
    }
}

/// Probes, thresholds, hook and live feed in one place.
///
/// ```
/// use std::time::Instant;
/// use corral_metering::{Meter, Monitor, Probe, Thresholds};
///
/// let full = || Probe { ram_total: 100, ram_available: 10, cpus: 2, ..Probe::default() };
/// let mut mon = Monitor::new(Meter::new(), full, Thresholds::default()).unwrap();
/// let status = mon.status();
/// let g = mon.tick(Instant::now());
/// assert_eq!(g.ram_used_ratio, 0.9);
/// assert!(!status.accepting_new_tenants());
/// ```
pub struct Monitor {
    meter: Meter,
    probe: Box<dyn HostProbe>,
    tracker: ThresholdTracker,
    hook: Option<ExpansionHook>,
    cache: Option<Arc<dyn CacheStatsSource>>,
    status: NodeStatus,
    node: String,
    top: usize,
    last_tick: Instant,
    last_cache: CacheStats,
    last_requests: u64,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("node", &self.node)
            .field("tracker", &self.tracker)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor feeding `meter`'s host gauges from `probe`.
    pub fn new(
        meter: Meter,
        probe: impl HostProbe,
        thresholds: Thresholds,
    ) -> Result<Self, ThresholdError> {
        Ok(Self {
            meter,
            probe: Box::new(probe),
            tracker: ThresholdTracker::new(thresholds)?,
            hook: None,
            cache: None,
            status: NodeStatus::default(),
            node: String::from("corral"),
            top: 10,
            last_tick: Instant::now(),
            last_cache: CacheStats::default(),
            last_requests: 0,
        })
    }

    /// Fires `hook` on every crossing. Default: no hook.
    #[must_use]
    pub fn with_hook(mut self, hook: ExpansionHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Reads cache figures from `cache`. Default: none (hit rate `None`).
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<dyn CacheStatsSource>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The node name put in hook payloads. Default: `"corral"`.
    #[must_use]
    pub fn node(mut self, name: impl Into<String>) -> Self {
        self.node = name.into();
        self
    }

    /// How many tenants the feed lists. Default: 10.
    #[must_use]
    pub fn top_tenants(mut self, n: usize) -> Self {
        self.top = n;
        self
    }

    /// The shared admission state.
    pub fn status(&self) -> NodeStatus {
        self.status.clone()
    }

    /// Probes once at `at`, applies the thresholds, fires the hook for
    /// crossings (without waiting for delivery) and returns the gauges.
    pub fn tick(&mut self, at: Instant) -> LiveGauges {
        let probe = self.probe.probe();
        let events = self.tracker.observe(&probe, at);
        let now_ms = unix_millis(SystemTime::now());
        if let Some(hook) = &self.hook {
            for ev in events.iter().filter(|e| e.fires_hook()) {
                // A full queue is counted in the hook's stats; never wait here.
                let _ = hook.fire(HookPayload::new(*ev, self.node.clone(), now_ms, probe));
            }
        }
        let accepting = self.tracker.accepting_new_tenants();
        let maintenance = self.tracker.maintenance_required();
        self.status.0.0.store(accepting, Relaxed);
        self.status.0.1.store(maintenance, Relaxed);
        self.meter
            .record_host(HostReport::new(probe, accepting, maintenance));

        let secs = at
            .saturating_duration_since(self.last_tick)
            .as_secs_f64()
            .max(1e-3);
        self.last_tick = at;
        let cache = self
            .cache
            .as_ref()
            .map(|c| c.cache_stats())
            .unwrap_or_default();
        let lookups = (cache.hits + cache.misses)
            .saturating_sub(self.last_cache.hits + self.last_cache.misses);
        let cache_hit_rate = (lookups > 0)
            .then(|| cache.hits.saturating_sub(self.last_cache.hits) as f64 / lookups as f64);
        self.last_cache = cache;

        let mut total = 0;
        let mut streams = 0;
        let mut rows: Vec<(u64, TenantGauge)> = Vec::new();
        for t in self.meter.all() {
            let req = t.c.requests.load(Relaxed);
            let delta = req.saturating_sub(t.c.feed_mark.swap(req, Relaxed));
            let open = t.c.streams_open.load(Relaxed);
            total += req;
            streams += open;
            rows.push((
                delta,
                TenantGauge {
                    tenant: t.id.clone(),
                    requests: req,
                    requests_per_sec: delta as f64 / secs,
                    streams_open: open,
                },
            ));
        }
        rows.sort_unstable_by(|a, b| {
            b.0.cmp(&a.0)
                .then(b.1.requests.cmp(&a.1.requests))
                .then_with(|| a.1.tenant.cmp(&b.1.tenant))
        });
        rows.truncate(self.top);
        let requests_per_sec = total.saturating_sub(self.last_requests) as f64 / secs;
        self.last_requests = total;

        LiveGauges {
            at_unix_ms: now_ms,
            probe,
            ram_used_ratio: probe.ram_used_ratio(),
            disk_used_ratio: probe.disk_used_ratio(),
            cache,
            cache_hit_rate,
            accepting_new_tenants: accepting,
            maintenance_required: maintenance,
            requests_per_sec,
            streams_open: streams,
            top_tenants: rows.into_iter().map(|(_, g)| g).collect(),
            events,
        }
    }

    /// Ticks every `every` (one second for the live feed) on the current
    /// tokio runtime and publishes each frame on the returned `watch`
    /// channel. The task runs until its handle is aborted.
    pub fn spawn(
        mut self,
        every: Duration,
    ) -> (watch::Receiver<LiveGauges>, tokio::task::JoinHandle<()>) {
        let first = self.tick(tokio::time::Instant::now().into_std());
        let (tx, rx) = watch::channel(first);
        let handle = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                let at = interval.tick().await;
                tx.send_replace(self.tick(at.into_std()));
            }
        });
        (rx, handle)
    }
}
