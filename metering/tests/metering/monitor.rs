use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_metering::{CacheStats, HostEvent, Meter, Monitor, Probe, Resource, Thresholds};

use crate::id;

#[test]
fn tick_updates_node_status_and_meter_host_gauges() {
    let meter = Meter::new();
    let mut readings = vec![
        Probe {
            ram_total: 100,
            ram_available: 50,
            disk_total: 100,
            disk_available: 10,
            cpus: 2,
            ..Probe::default()
        },
        Probe {
            ram_total: 100,
            ram_available: 50,
            disk_total: 100,
            disk_available: 40,
            cpus: 2,
            ..Probe::default()
        },
    ]
    .into_iter();
    let probe = move || readings.next().unwrap();
    let mut mon = Monitor::new(meter.clone(), probe, Thresholds::default()).unwrap();
    let status = mon.status();

    let g = mon.tick(Instant::now());
    assert_eq!(
        g.events,
        vec![HostEvent::ThresholdCrossed {
            resource: Resource::Disk,
            value: 0.9,
            threshold: 0.8
        }]
    );
    assert!(!g.accepting_new_tenants);
    assert!(!status.accepting_new_tenants());
    assert_eq!(meter.host().unwrap().probe.disk_available, 10);
    assert!(
        meter
            .render()
            .contains("\ncorral_host_accepting_new_tenants 0\n")
    );

    let g = mon.tick(Instant::now());
    assert_eq!(g.events.len(), 1);
    assert!(g.accepting_new_tenants && status.accepting_new_tenants());
    assert!(
        meter
            .render()
            .contains("\ncorral_host_accepting_new_tenants 1\n")
    );
}

#[tokio::test(start_paused = true)]
async fn live_feed_publishes_every_second_with_rates_and_real_cache_figures() {
    let meter = Meter::new();
    let hits = Arc::new(AtomicU64::new(0));
    let misses = Arc::new(AtomicU64::new(0));
    let (h, m) = (hits.clone(), misses.clone());
    let cache =
        move || CacheStats::new(h.load(Ordering::SeqCst), m.load(Ordering::SeqCst), 10, 100);
    let probe = || Probe {
        ram_total: 100,
        ram_available: 75,
        cpus: 2,
        load_1: 0.25,
        ..Probe::default()
    };
    let mon = Monitor::new(meter.clone(), probe, Thresholds::default())
        .unwrap()
        .with_cache(Arc::new(cache))
        .top_tenants(2);
    let (mut rx, task) = mon.spawn(Duration::from_secs(1));
    assert_eq!(rx.borrow_and_update().cache_hit_rate, None);

    for (name, n) in [("a", 30), ("b", 10), ("c", 20)] {
        let t = meter.tenant(&id(name));
        for _ in 0..n {
            t.request();
        }
    }
    let _stream = meter.tenant(&id("b")).open_stream();
    hits.store(9, Ordering::SeqCst);
    misses.store(1, Ordering::SeqCst);

    rx.changed().await.unwrap();
    let g = rx.borrow_and_update().clone();
    assert_eq!(g.ram_used_ratio, 0.25);
    assert_eq!(g.probe.load_1, 0.25);
    assert_eq!(g.cache_hit_rate, Some(0.9));
    assert_eq!(g.cache.hits, 9);
    assert_eq!(g.requests_per_sec, 60.0);
    assert_eq!(g.streams_open, 1);
    let top: Vec<_> = g
        .top_tenants
        .iter()
        .map(|t| (t.tenant.as_str(), t.requests_per_sec))
        .collect();
    assert_eq!(top, vec![("a", 30.0), ("c", 20.0)]);

    // A quiet second: rates fall to zero, no cache lookups.
    rx.changed().await.unwrap();
    let g = rx.borrow_and_update().clone();
    assert_eq!(g.requests_per_sec, 0.0);
    assert_eq!(g.cache_hit_rate, None);
    assert_eq!(
        g.top_tenants[0].tenant.as_str(),
        "a",
        "ties broken by total"
    );
    assert_eq!(g.top_tenants[0].requests, 30);
    task.abort();
}
