use std::sync::Arc;
use std::time::Duration;

use corral_metering::{ErrorKind, InvocationFigures, Meter, StatusClass};

use crate::id;

#[test]
fn eight_threads_times_100k_across_1000_tenants_sum_exactly() {
    let meter = Meter::new();
    let ids: Arc<Vec<_>> = Arc::new((0..1000).map(|i| id(&format!("t{i}"))).collect());
    let threads: Vec<_> = (0..8)
        .map(|th| {
            let (meter, ids) = (meter.clone(), ids.clone());
            std::thread::spawn(move || {
                for i in 0..100_000usize {
                    let tenant = &ids[(th * 100_000 + i) % 1000];
                    if (i / 1000) % 2 == 0 {
                        meter.request(tenant);
                    } else {
                        let t = meter.tenant(tenant);
                        t.request();
                        t.bytes_out(3);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(meter.tenant_count(), 1000);
    for tenant in ids.iter() {
        let s = meter.snapshot(tenant).unwrap();
        assert_eq!(s.requests, 800, "{tenant}");
        assert_eq!(s.bytes_out, 400 * 3, "{tenant}");
        assert_eq!(meter.usage(tenant).unwrap().requests, 800);
    }
    let total = meter.totals();
    assert_eq!(total.requests, 800_000);
    assert_eq!(total.bytes_out, 1_200_000);
}

#[test]
fn every_counter_lands_where_it_should() {
    let meter = Meter::new();
    let t = meter.tenant(&id("shop"));
    for s in [200, 201, 304, 404, 429, 503, 101] {
        t.request();
        t.response(http::StatusCode::from_u16(s).unwrap());
    }
    for k in [
        ErrorKind::Fuel,
        ErrorKind::Fuel,
        ErrorKind::Memory,
        ErrorKind::Deadline,
        ErrorKind::Overloaded,
    ] {
        t.error(k);
    }
    t.error(ErrorKind::Rate);
    t.error(ErrorKind::Quota);
    t.error(ErrorKind::Other);
    t.invocation(&InvocationFigures::new(
        1_000,
        Duration::from_micros(1_500),
        3 << 20,
        true,
    ));
    t.invocation(&InvocationFigures::new(
        500,
        Duration::from_micros(2_500),
        1 << 20,
        false,
    ));
    t.bytes_in(10);
    t.bytes_out(20);
    t.cache_hit();
    t.cache_hit();
    t.cache_miss();
    t.set_storage_bytes(4096);
    t.set_storage_bytes(1024);
    t.latency(Duration::from_millis(2));

    let s = t.snapshot();
    assert_eq!(s.requests, 7);
    assert_eq!(s.status, [1, 2, 1, 2, 1]);
    assert_eq!(s.status(StatusClass::ClientError), 2);
    assert_eq!(s.errors, [2, 1, 1, 1, 1, 1, 1]);
    assert_eq!(s.errors_total(), 8);
    assert_eq!(s.fuel, 1_500);
    assert_eq!(s.wall_time, Duration::from_micros(4_000));
    assert_eq!(s.peak_memory, 3 << 20);
    assert_eq!(s.cold_starts, 1);
    assert_eq!((s.bytes_in, s.bytes_out), (10, 20));
    assert_eq!((s.cache_hits, s.cache_misses), (2, 1));
    assert_eq!(s.storage_bytes, 1024);
    assert_eq!((s.latency, s.latency_count), (Duration::from_millis(2), 1));

    let u = meter.usage(&id("shop")).unwrap();
    assert_eq!(
        (
            u.requests,
            u.errors,
            u.exec_time_ms,
            u.fuel,
            u.peak_memory,
            u.cold_starts,
            u.storage_bytes
        ),
        (7, 8, 4, 1_500, 3 << 20, 1, 1024)
    );
}

#[test]
fn forget_drops_the_tenant_but_keeps_its_totals_for_the_flush() {
    let meter = Meter::new();
    meter.request(&id("gone"));
    let u = meter.forget(&id("gone")).unwrap();
    assert_eq!(u.requests, 1);
    assert_eq!(meter.tenant_count(), 0);
    assert!(meter.snapshot(&id("gone")).is_none());
    assert!(meter.forget(&id("gone")).is_none());
    let sink = crate::usage::MemSink::default();
    assert_eq!(meter.flush(&sink).unwrap(), 1);
    assert_eq!(sink.get("gone", meter.period()).unwrap().requests, 1);
}
