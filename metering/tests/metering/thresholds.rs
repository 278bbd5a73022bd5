use std::time::{Duration, Instant};

use corral_metering::{
    HostEvent, Level, Probe, Resource, ThresholdError, ThresholdTracker, Thresholds,
};

fn ram(percent: u64) -> Probe {
    Probe {
        ram_total: 100,
        ram_available: 100 - percent,
        ..Probe::default()
    }
}

fn disk(percent: u64) -> Probe {
    Probe {
        disk_total: 1000,
        disk_available: 1000 - percent * 10,
        ..Probe::default()
    }
}

fn cpu(usage: f64) -> Probe {
    Probe {
        cpu_usage: usage,
        ..Probe::default()
    }
}

/// What each reading produced: 'C' crossed, 'R' cleared, '.' nothing.
fn run(t: &mut ThresholdTracker, seq: &[Probe]) -> String {
    let now = Instant::now();
    seq.iter()
        .map(|p| match &t.observe(p, now)[..] {
            [] => '.',
            [HostEvent::ThresholdCrossed { .. }] => 'C',
            [HostEvent::ThresholdCleared { .. }] => 'R',
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn ram_fires_once_rearms_below_the_band_fires_again() {
    let mut t = ThresholdTracker::new(Thresholds::default()).unwrap();
    let seq = [50, 79, 80, 95, 81, 76, 75, 90, 74, 60, 85, 85].map(ram);
    assert_eq!(run(&mut t, &seq), "..C.....R.C.");
    assert!(!t.accepting_new_tenants());
    assert!(t.is_over(Resource::Ram));
    assert!(!t.is_over(Resource::Disk));
    let ev = t.observe(&ram(10), Instant::now());
    assert_eq!(
        ev,
        vec![HostEvent::ThresholdCleared {
            resource: Resource::Ram,
            value: 0.1,
            rearm: 0.75
        }]
    );
    assert!(t.accepting_new_tenants());
}

#[test]
fn crossing_event_names_resource_value_and_threshold() {
    let mut t = ThresholdTracker::new(Thresholds::default()).unwrap();
    let ev = t.observe(&disk(85), Instant::now());
    assert_eq!(
        ev,
        vec![HostEvent::ThresholdCrossed {
            resource: Resource::Disk,
            value: 0.85,
            threshold: 0.8
        }]
    );
    assert!(ev[0].fires_hook());
    let json = serde_json::to_value(ev[0]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"event": "threshold_crossed", "resource": "disk", "value": 0.85, "threshold": 0.8})
    );
}

#[test]
fn disk_with_configured_levels() {
    let cfg = Thresholds {
        disk: Level::new(0.9, 0.5),
        ..Thresholds::default()
    };
    let mut t = ThresholdTracker::new(cfg).unwrap();
    let seq = [85, 90, 60, 51, 50, 49, 91].map(disk);
    assert_eq!(run(&mut t, &seq), ".C...RC");
}

#[test]
fn cpu_must_stay_over_for_the_whole_window() {
    let cfg = Thresholds {
        cpu_window: Duration::from_secs(10),
        ..Thresholds::default()
    };
    let mut t = ThresholdTracker::new(cfg).unwrap();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Over from 0 s but a dip at 5 s restarts the window.
    assert!(t.observe(&cpu(0.75), at(0)).is_empty());
    assert!(t.observe(&cpu(0.60), at(5)).is_empty());
    assert!(t.observe(&cpu(0.90), at(6)).is_empty());
    assert!(t.observe(&cpu(0.71), at(15)).is_empty());
    assert!(t.accepting_new_tenants());
    let ev = t.observe(&cpu(0.70), at(16));
    assert_eq!(
        ev,
        vec![HostEvent::ThresholdCrossed {
            resource: Resource::Cpu,
            value: 0.70,
            threshold: 0.70
        }]
    );
    assert!(!t.accepting_new_tenants());
    assert!(t.observe(&cpu(0.99), at(30)).is_empty(), "once only");
    assert!(t.observe(&cpu(0.66), at(31)).is_empty(), "inside the band");
    assert_eq!(t.observe(&cpu(0.64), at(32)).len(), 1, "re-armed below 65%");
    assert!(
        t.observe(&cpu(0.80), at(33)).is_empty(),
        "window starts again"
    );
    assert_eq!(
        t.observe(&cpu(0.80), at(43)).len(),
        1,
        "fires again after re-crossing"
    );
}

#[test]
fn db_to_ram_ratio_raises_maintenance() {
    let mut t = ThresholdTracker::new(Thresholds::default()).unwrap();
    let db = |ratio: u64| Probe {
        ram_total: 1 << 30,
        ram_available: 1 << 30,
        db_bytes: ratio << 30,
        ..Probe::default()
    };
    let now = Instant::now();
    assert!(t.observe(&db(50), now).is_empty());
    assert!(
        t.observe(&db(100), now).is_empty(),
        "at the limit is not over"
    );
    assert_eq!(
        t.observe(&db(150), now),
        vec![HostEvent::MaintenanceRequired {
            ratio: 150.0,
            limit: 100.0
        }]
    );
    assert!(t.maintenance_required());
    assert!(t.accepting_new_tenants(), "maintenance is its own signal");
    assert!(t.observe(&db(120), now).is_empty());
    assert_eq!(
        t.observe(&db(80), now),
        vec![HostEvent::MaintenanceCleared {
            ratio: 80.0,
            limit: 100.0
        }]
    );
    assert!(!t.maintenance_required());
}

#[test]
fn bad_levels_are_refused() {
    let bad = Thresholds {
        ram: Level::new(0.7, 0.8),
        ..Thresholds::default()
    };
    assert_eq!(
        ThresholdTracker::new(bad).unwrap_err(),
        ThresholdError::BadLevel {
            resource: Resource::Ram,
            fire: 0.7,
            rearm: 0.8
        }
    );
    let bad = Thresholds {
        db_ram_ratio: 0.0,
        ..Thresholds::default()
    };
    assert_eq!(
        ThresholdTracker::new(bad).unwrap_err(),
        ThresholdError::BadRatio(0.0)
    );
}

/// The real probe reads the data dir's disk as `df` does, even before the
/// data dir exists (first start): used + available never exceeds total, and
/// the ratio is used / (used + available).
#[test]
fn real_probe_reads_the_data_disk_like_df() {
    use corral_metering::HostProbe;
    let tmp = tempfile::tempdir().unwrap();
    for dir in [tmp.path().to_owned(), tmp.path().join("not/yet/created")] {
        let p = corral_metering::SysinfoProbe::new(&dir).probe();
        assert!(p.disk_total > 0, "{p:?}");
        assert!(p.disk_used > 0 && p.disk_used <= p.disk_total, "{p:?}");
        assert!(p.disk_available <= p.disk_total - p.disk_used, "{p:?}");
        let expect = p.disk_used as f64 / (p.disk_used + p.disk_available) as f64;
        assert!((p.disk_used_ratio() - expect).abs() < 1e-12);
    }
}
