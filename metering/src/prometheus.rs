//! Prometheus text exposition of the [`Meter`], with `prometheus-client`.
//!
//! Host-wide series sum every tenant; per-tenant series (label `tenant`) exist
//! only for the busiest [`export_top`](crate::MeterBuilder::export_top) tenants
//! by requests (50 by default) plus the opt-in
//! [`export_tenants`](crate::MeterBuilder::export_tenants), so 100,000 tenants
//! never make 100,000 series.
//!
//! ```
//! use corral_metering::Meter;
//! let meter = Meter::builder().export_top(1).build();
//! for (name, n) in [("big", 3), ("small", 1)] {
//!     let t = meter.tenant(&name.parse().unwrap());
//!     for _ in 0..n { t.request(); t.response(http::StatusCode::OK); }
//! }
//! let text = meter.render();
//! assert!(text.contains("corral_requests_total 4\n"));
//! assert!(text.contains("corral_refused_total{kind=\"rate_limited\"} 0\n"));
//! assert!(text.contains("corral_tenant_requests_total{tenant=\"big\"} 3\n"));
//! assert!(!text.contains("tenant=\"small\""));
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::counters::LATENCY_BUCKETS;
use crate::meter::Tenant;
use crate::{ErrorKind, Meter, Probe, StatusClass};
use corral_limits::Refusal;

/// The host's state as last reported to the meter (by the
/// [`Monitor`](crate::Monitor), or by hand).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HostReport {
    /// The reading.
    pub probe: Probe,
    /// Whether the node takes new tenants.
    pub accepting_new_tenants: bool,
    /// Whether maintenance is required.
    pub maintenance_required: bool,
    /// Apps deployed and apps warm now, when the reporter knows them
    /// (`corral_apps`, `corral_apps_warm`).
    pub apps: Option<AppCounts>,
}

/// How many apps a node holds, and how many of them are warm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppCounts {
    /// Apps deployed.
    pub deployed: u64,
    /// Apps with a loaded program (the rest are parked).
    pub warm: u64,
}

impl AppCounts {
    /// The counts.
    pub fn new(deployed: u64, warm: u64) -> Self {
        Self { deployed, warm }
    }
}

impl HostReport {
    /// A report.
    pub fn new(probe: Probe, accepting_new_tenants: bool, maintenance_required: bool) -> Self {
        Self {
            probe,
            accepting_new_tenants,
            maintenance_required,
            apps: None,
        }
    }

    /// The same report with the node's app counts.
    ///
    /// ```
    /// use corral_metering::{AppCounts, HostReport, Meter, Probe};
    /// let meter = Meter::new();
    /// meter.record_host(HostReport::new(Probe::default(), true, false).with_apps(AppCounts::new(3, 1)));
    /// let text = meter.render();
    /// assert!(text.contains("corral_apps 3") && text.contains("corral_apps_warm 1"), "{text}");
    /// ```
    #[must_use]
    pub fn with_apps(mut self, apps: AppCounts) -> Self {
        self.apps = Some(apps);
        self
    }
}

/// A `prometheus-client` [`Collector`] over a [`Meter`], to register into an
/// application's own registry; [`Meter::render`] uses one too.
#[derive(Debug, Clone)]
pub struct MeterCollector {
    meter: Meter,
}

impl Meter {
    /// Records the host's state for the `corral_host_*` gauges.
    pub fn record_host(&self, report: HostReport) {
        *self.inner.host.write() = Some(report);
    }

    /// The host's state last recorded.
    pub fn host(&self) -> Option<HostReport> {
        *self.inner.host.read()
    }

    /// A collector for an application's own registry.
    pub fn collector(&self) -> MeterCollector {
        MeterCollector {
            meter: self.clone(),
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.collector()));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// The tenants that get their own series: the top N by requests, then the
    /// opt-in ones.
    pub(crate) fn exported(&self, top: usize) -> Vec<Arc<Tenant>> {
        let mut all: Vec<(u64, Arc<Tenant>)> = self
            .inner
            .tenants
            .iter()
            .map(|e| (e.c.requests.load(Relaxed), e.value().clone()))
            .collect();
        let by_rank = |a: &(u64, Arc<Tenant>), b: &(u64, Arc<Tenant>)| {
            b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id))
        };
        if all.len() > top {
            if top > 0 {
                all.select_nth_unstable_by(top - 1, by_rank);
            }
            all.truncate(top);
        }
        all.sort_unstable_by(by_rank);
        let mut out: Vec<Arc<Tenant>> = all.into_iter().map(|(_, t)| t).collect();
        for id in &self.inner.export_always {
            if !out.iter().any(|t| &t.id == id)
                && let Some(t) = self.inner.tenants.get(id)
            {
                out.push(t.value().clone());
            }
        }
        out
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: impl EncodeGaugeValue,
) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn per_tenant(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    tenants: &[Arc<Tenant>],
    f: impl Fn(&Tenant) -> u64,
) -> fmt::Result {
    if tenants.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for t in tenants {
        let labels = [("tenant", t.id.as_str())];
        let mut fam = m.encode_family(&labels)?;
        if matches!(ty, MetricType::Counter) {
            fam.encode_counter::<NoLabelSet, _, u64>(&f(t), None)?;
        } else {
            fam.encode_gauge(&f(t))?;
        }
    }
    Ok(())
}

impl Collector for MeterCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let meter = &self.meter;
        let all = meter.all();
        let sum = |f: &dyn Fn(&Tenant) -> u64| all.iter().map(|t| f(t)).sum::<u64>();
        let requests = sum(&|t| t.c.requests.load(Relaxed));
        let status: Vec<u64> = (0..5)
            .map(|i| sum(&|t| t.c.status[i].load(Relaxed)))
            .collect();
        let errors: Vec<u64> = (0..7)
            .map(|i| sum(&|t| t.c.errors[i].load(Relaxed)))
            .collect();
        let refused: Vec<u64> = (0..Refusal::COUNT)
            .map(|i| sum(&|t| t.c.refused[i].load(Relaxed)))
            .collect();
        let buckets: Vec<u64> = (0..13)
            .map(|i| sum(&|t| t.c.latency_buckets[i].load(Relaxed)))
            .collect();
        let latency_us = sum(&|t| t.c.latency_us.load(Relaxed));
        let latency_count = buckets.iter().sum::<u64>();
        let wall_us = sum(&|t| t.c.wall_us.load(Relaxed));
        let fuel = sum(&|t| t.c.fuel.load(Relaxed));
        let cpu_us = sum(&|t| t.c.cpu_us.load(Relaxed));
        let cold = sum(&|t| t.c.cold_starts.load(Relaxed));
        let bytes_in = sum(&|t| t.c.bytes_in.load(Relaxed));
        let bytes_out = sum(&|t| t.c.bytes_out.load(Relaxed));
        let streams = sum(&|t| t.c.streams_open.load(Relaxed));
        let storage = sum(&|t| t.c.storage_bytes.load(Relaxed));
        let hits = sum(&|t| t.c.cache_hits.load(Relaxed));
        let misses = sum(&|t| t.c.cache_misses.load(Relaxed));

        gauge(
            &mut enc,
            "corral_tenants",
            "Tenants being metered.",
            all.len() as u64,
        )?;
        counter(
            &mut enc,
            "corral_requests",
            "Requests admitted (past every limit), all tenants.",
            requests,
        )?;
        {
            let mut m = enc.encode_descriptor(
                "corral_refused",
                "Requests refused by a limit, by refusal code; never admitted.",
                None,
                MetricType::Counter,
            )?;
            for r in Refusal::ALL {
                m.encode_family(&[("kind", r.code())])?
                    .encode_counter::<NoLabelSet, _, u64>(&refused[r.index()], None)?;
            }
        }
        counter(
            &mut enc,
            "corral_unattributed_requests",
            "Requests that named no tenant.",
            meter.unattributed_requests(),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "corral_responses",
                "Responses by status class.",
                None,
                MetricType::Counter,
            )?;
            for c in StatusClass::ALL {
                m.encode_family(&[("class", c.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&status[c.index()], None)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "corral_errors",
                "Failed requests by kind.",
                None,
                MetricType::Counter,
            )?;
            for k in ErrorKind::ALL {
                m.encode_family(&[("kind", k.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&errors[k.index()], None)?;
            }
        }
        {
            let mut hist: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .zip(buckets.iter().copied())
                .collect();
            hist.push((f64::MAX, buckets[12]));
            enc.encode_descriptor(
                "corral_request_duration_seconds",
                "Time to response headers.",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                latency_us as f64 / 1e6,
                latency_count,
                &hist,
                None,
            )?;
        }
        enc.encode_descriptor(
            "corral_invocation_seconds",
            "Summed invocation wall time.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&(wall_us as f64 / 1e6), None)?;
        counter(&mut enc, "corral_fuel_consumed", "Fuel consumed.", fuel)?;
        enc.encode_descriptor(
            "corral_invocation_cpu_seconds",
            "Summed CPU time of invocations.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&(cpu_us as f64 / 1e6), None)?;
        counter(&mut enc, "corral_cold_starts", "Cold starts.", cold)?;
        counter(&mut enc, "corral_bytes_in", "Request body bytes.", bytes_in)?;
        counter(
            &mut enc,
            "corral_bytes_out",
            "Response body bytes.",
            bytes_out,
        )?;
        gauge(
            &mut enc,
            "corral_streams_open",
            "Streaming responses open now.",
            streams,
        )?;
        gauge(
            &mut enc,
            "corral_storage_bytes",
            "Bytes stored by tenants.",
            storage,
        )?;
        counter(&mut enc, "corral_cache_hits", "Cache hits.", hits)?;
        counter(&mut enc, "corral_cache_misses", "Cache misses.", misses)?;

        if let Some(h) = meter.host() {
            let p = h.probe;
            gauge(
                &mut enc,
                "corral_host_memory_total_bytes",
                "Host RAM.",
                p.ram_total,
            )?;
            gauge(
                &mut enc,
                "corral_host_memory_available_bytes",
                "Host RAM available.",
                p.ram_available,
            )?;
            gauge(
                &mut enc,
                "corral_host_cpus",
                "Logical CPUs.",
                u64::from(p.cpus),
            )?;
            gauge(
                &mut enc,
                "corral_host_load1",
                "Load average, 1 minute.",
                p.load_1,
            )?;
            gauge(
                &mut enc,
                "corral_host_cpu_usage_ratio",
                "CPU use, 0-1, less the node's compiling for its operator (what the CPU threshold reads).",
                p.cpu_usage,
            )?;
            gauge(
                &mut enc,
                "corral_host_operator_cpu_usage_ratio",
                "CPU use, 0-1, of the node compiling deploys for its operator.",
                p.operator_cpu_usage,
            )?;
            gauge(
                &mut enc,
                "corral_host_disk_total_bytes",
                "Data disk size.",
                p.disk_total,
            )?;
            gauge(
                &mut enc,
                "corral_host_disk_available_bytes",
                "Data disk free.",
                p.disk_available,
            )?;
            gauge(
                &mut enc,
                "corral_host_disk_used_bytes",
                "Data disk in use (total - free, as df counts it).",
                p.disk_used,
            )?;
            gauge(
                &mut enc,
                "corral_process_resident_memory_bytes",
                "This process's RSS.",
                p.process_rss,
            )?;
            gauge(&mut enc, "corral_db_bytes", "Database size.", p.db_bytes)?;
            gauge(
                &mut enc,
                "corral_host_accepting_new_tenants",
                "1 while no threshold is crossed.",
                u64::from(h.accepting_new_tenants),
            )?;
            gauge(
                &mut enc,
                "corral_host_maintenance_required",
                "1 while the database/RAM ratio is over its limit.",
                u64::from(h.maintenance_required),
            )?;
            if let Some(a) = h.apps {
                gauge(&mut enc, "corral_apps", "Apps deployed.", a.deployed)?;
                gauge(
                    &mut enc,
                    "corral_apps_warm",
                    "Apps with a loaded program; the rest are parked.",
                    a.warm,
                )?;
            }
        }

        let top = meter.exported(meter.inner.export_top);
        use MetricType::{Counter as C, Gauge as G};
        per_tenant(
            &mut enc,
            "corral_tenant_requests",
            "Requests.",
            C,
            &top,
            |t| t.c.requests.load(Relaxed),
        )?;
        if !top.is_empty() {
            let mut m = enc.encode_descriptor(
                "corral_tenant_responses",
                "Responses by status class.",
                None,
                C,
            )?;
            for t in &top {
                for c in StatusClass::ALL {
                    m.encode_family(&[("tenant", t.id.as_str()), ("class", c.as_str())])?
                        .encode_counter::<NoLabelSet, _, u64>(
                            &t.c.status[c.index()].load(Relaxed),
                            None,
                        )?;
                }
            }
        }
        if !top.is_empty() {
            let mut m =
                enc.encode_descriptor("corral_tenant_errors", "Failed requests by kind.", None, C)?;
            for t in &top {
                for k in ErrorKind::ALL {
                    m.encode_family(&[("tenant", t.id.as_str()), ("kind", k.as_str())])?
                        .encode_counter::<NoLabelSet, _, u64>(
                            &t.c.errors[k.index()].load(Relaxed),
                            None,
                        )?;
                }
            }
        }
        if !top.is_empty() {
            let mut m = enc.encode_descriptor(
                "corral_tenant_refused",
                "Requests refused by a limit, by refusal code.",
                None,
                C,
            )?;
            for t in &top {
                for r in Refusal::ALL {
                    m.encode_family(&[("tenant", t.id.as_str()), ("kind", r.code())])?
                        .encode_counter::<NoLabelSet, _, u64>(
                            &t.c.refused[r.index()].load(Relaxed),
                            None,
                        )?;
                }
            }
        }
        per_tenant(
            &mut enc,
            "corral_tenant_latency_microseconds",
            "Summed latency.",
            C,
            &top,
            |t| t.c.latency_us.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_invocation_microseconds",
            "Summed invocation wall time.",
            C,
            &top,
            |t| t.c.wall_us.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_fuel_consumed",
            "Fuel consumed.",
            C,
            &top,
            |t| t.c.fuel.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_invocation_cpu_microseconds",
            "Summed CPU time of invocations.",
            C,
            &top,
            |t| t.c.cpu_us.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_peak_memory_bytes",
            "Highest invocation memory.",
            G,
            &top,
            |t| t.c.peak_memory.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_cold_starts",
            "Cold starts.",
            C,
            &top,
            |t| t.c.cold_starts.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_bytes_in",
            "Request body bytes.",
            C,
            &top,
            |t| t.c.bytes_in.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_bytes_out",
            "Response body bytes.",
            C,
            &top,
            |t| t.c.bytes_out.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_streams_open",
            "Streams open now.",
            G,
            &top,
            |t| t.c.streams_open.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_storage_bytes",
            "Bytes stored.",
            G,
            &top,
            |t| t.c.storage_bytes.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_cache_hits",
            "Cache hits.",
            C,
            &top,
            |t| t.c.cache_hits.load(Relaxed),
        )?;
        per_tenant(
            &mut enc,
            "corral_tenant_cache_misses",
            "Cache misses.",
            C,
            &top,
            |t| t.c.cache_misses.load(Relaxed),
        )?;
        Ok(())
    }
}
