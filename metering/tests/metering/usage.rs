use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use corral_limits::{TenantId, UsageSource};
use corral_metering::{
    InvocationFigures, ManualClock, Meter, MeterError, Period, SinkError, Usage, UsageSink,
};
use parking_lot::Mutex;

use crate::id;

/// An in-memory sink that upserts like the SQLite one; can be told to fail.
#[derive(Default)]
pub(crate) struct MemSink {
    rows: Mutex<HashMap<(TenantId, Period), Usage>>,
    pub(crate) stores: AtomicUsize,
    pub(crate) fail: AtomicBool,
}

impl MemSink {
    pub(crate) fn get(&self, tenant: &str, p: Period) -> Option<Usage> {
        self.rows.lock().get(&(id(tenant), p)).cloned()
    }
    pub(crate) fn len(&self) -> usize {
        self.rows.lock().len()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("disk full")]
struct DiskFull;

impl UsageSink for MemSink {
    fn store(&self, batch: &[Usage]) -> Result<(), SinkError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(Box::new(DiskFull));
        }
        self.stores.fetch_add(1, Ordering::SeqCst);
        let mut rows = self.rows.lock();
        for u in batch {
            rows.insert((u.tenant.clone(), u.period), u.clone());
        }
        Ok(())
    }
    fn load(&self, period: Period) -> Result<Vec<Usage>, SinkError> {
        Ok(self
            .rows
            .lock()
            .values()
            .filter(|u| u.period == period)
            .cloned()
            .collect())
    }
}

fn nov() -> Period {
    Period::new(2026, 11).unwrap()
}
fn dec() -> Period {
    Period::new(2026, 12).unwrap()
}

fn meter_at(clock: &ManualClock) -> Meter {
    Meter::builder().clock(clock.clone()).build()
}

fn hit(meter: &Meter, tenant: &str, n: u64) {
    let t = meter.tenant(&id(tenant));
    for _ in 0..n {
        t.request();
    }
}

#[test]
fn two_flushes_and_a_restart_give_exact_monthly_totals() {
    let clock = ManualClock::new(nov().start() + Duration::from_secs(9 * 86_400));
    let sink = MemSink::default();

    let first = meter_at(&clock);
    assert_eq!(first.restore(&sink).unwrap(), 0);
    hit(&first, "a", 5);
    hit(&first, "b", 3);
    let b = first.tenant(&id("b"));
    b.invocation(
        &InvocationFigures::new(100, Duration::from_micros(1_500), 8 << 20, true)
            .with_cpu_time(Duration::from_micros(250)),
    );
    b.invocation(&InvocationFigures::new(
        100,
        Duration::from_micros(1_500),
        2 << 20,
        false,
    ));
    b.set_storage_bytes(777);
    let guard = b.open_stream();
    assert_eq!(first.flush(&sink).unwrap(), 2);
    assert_eq!(sink.get("a", nov()).unwrap().requests, 5);

    hit(&first, "a", 2);
    assert_eq!(
        first.flush(&sink).unwrap(),
        1,
        "only the changed tenant is stored"
    );
    assert_eq!(
        first.flush(&sink).unwrap(),
        0,
        "nothing changed, nothing stored"
    );
    assert_eq!(sink.stores.load(Ordering::SeqCst), 2);
    let a = sink.get("a", nov()).unwrap();
    let bu = sink.get("b", nov()).unwrap();
    assert_eq!((a.requests, bu.requests), (7, 3));
    assert_eq!(
        (bu.exec_time_ms, bu.fuel, bu.peak_memory, bu.cold_starts),
        (3, 200, 8 << 20, 1)
    );
    assert_eq!((bu.peak_streams, bu.storage_bytes), (1, 777));
    assert_eq!(bu.cpu_us, 250);
    drop(guard);
    drop(first); // the process ends

    let second = meter_at(&clock);
    assert_eq!(second.restore(&sink).unwrap(), 2);
    assert_eq!(second.requests_this_month(&id("a")), 7);
    assert_eq!(second.requests_this_month(&id("b")), 3);
    assert_eq!(second.requests_this_month(&id("nobody")), 0);
    assert_eq!(
        second.flush(&sink).unwrap(),
        0,
        "restored totals are not stored again"
    );
    hit(&second, "a", 4);
    second.tenant(&id("b")).invocation(
        &InvocationFigures::new(1, Duration::from_micros(1_000), 1 << 20, false)
            .with_cpu_time(Duration::from_micros(40)),
    );
    assert_eq!(second.flush(&sink).unwrap(), 2);
    assert_eq!(second.flush(&sink).unwrap(), 0);
    let a = sink.get("a", nov()).unwrap();
    let bu = sink.get("b", nov()).unwrap();
    assert_eq!(a.requests, 11);
    assert_eq!((bu.requests, bu.exec_time_ms, bu.fuel), (3, 4, 201));
    assert_eq!(bu.cpu_us, 290, "restored CPU time carries on");
    assert_eq!(
        bu.peak_memory,
        8 << 20,
        "the month's peak survives the restart"
    );
    assert_eq!(bu.storage_bytes, 777, "storage gauge restored");
    assert_eq!(sink.len(), 2);
}

#[test]
fn restore_after_a_flush_is_refused() {
    let sink = MemSink::default();
    let meter = Meter::new();
    hit(&meter, "a", 1);
    meter.flush(&sink).unwrap();
    assert!(matches!(
        meter.restore(&sink),
        Err(MeterError::RestoreAfterFlush)
    ));
    assert_eq!(meter.requests_this_month(&id("a")), 1);
}

#[test]
fn a_failed_flush_loses_nothing_and_the_retry_counts_once() {
    let clock = ManualClock::new(nov().start());
    let sink = MemSink::default();
    let meter = meter_at(&clock);
    hit(&meter, "a", 4);
    sink.fail.store(true, Ordering::SeqCst);
    let err = meter.flush(&sink).unwrap_err();
    assert!(matches!(err, MeterError::Sink(_)));
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "disk full"
    );
    hit(&meter, "a", 1);
    sink.fail.store(false, Ordering::SeqCst);
    assert_eq!(meter.flush(&sink).unwrap(), 1);
    assert_eq!(meter.flush(&sink).unwrap(), 0);
    assert_eq!(sink.get("a", nov()).unwrap().requests, 5);
}

#[test]
fn month_rolls_over_at_the_utc_boundary() {
    let clock = ManualClock::new(dec().start() - Duration::from_secs(1)); // 2026-11-30T23:59:59Z
    let sink = MemSink::default();
    let meter = meter_at(&clock);
    hit(&meter, "a", 5);
    assert_eq!(meter.flush(&sink).unwrap(), 1);
    hit(&meter, "a", 2); // still November, not flushed before the boundary
    meter
        .tenant(&id("a"))
        .invocation(&InvocationFigures::new(9, Duration::ZERO, 5 << 20, false));
    assert_eq!(meter.period(), nov());

    clock.advance(Duration::from_secs(1)); // 2026-12-01T00:00:00Z
    hit(&meter, "a", 3);
    assert_eq!(meter.period(), dec());
    let u = meter.usage(&id("a")).unwrap();
    assert_eq!(
        (u.period, u.requests, u.fuel, u.peak_memory),
        (dec(), 3, 0, 0)
    );
    assert_eq!(meter.requests_this_month(&id("a")), 3);
    // Lifetime counters do not reset.
    assert_eq!(meter.snapshot(&id("a")).unwrap().requests, 10);

    assert_eq!(
        meter.flush(&sink).unwrap(),
        2,
        "the closed month and the new one"
    );
    let n = sink.get("a", nov()).unwrap();
    assert_eq!((n.requests, n.fuel, n.peak_memory), (7, 9, 5 << 20));
    assert_eq!(sink.get("a", dec()).unwrap().requests, 3);
    assert_eq!(meter.flush(&sink).unwrap(), 0);

    // A tenant first seen in December.
    hit(&meter, "b", 1);
    assert_eq!(meter.flush(&sink).unwrap(), 1);
    assert!(sink.get("b", nov()).is_none());
    assert_eq!(sink.get("b", dec()).unwrap().requests, 1);
}

#[test]
fn rollover_after_restore_closes_the_restored_month_whole() {
    let clock = ManualClock::new(dec().start() - Duration::from_secs(60));
    let sink = MemSink::default();
    let first = meter_at(&clock);
    hit(&first, "a", 6);
    first.flush(&sink).unwrap();
    drop(first);

    let second = meter_at(&clock);
    second.restore(&sink).unwrap();
    hit(&second, "a", 1);
    clock.advance(Duration::from_secs(60));
    hit(&second, "a", 2);
    second.flush(&sink).unwrap();
    assert_eq!(sink.get("a", nov()).unwrap().requests, 7);
    assert_eq!(sink.get("a", dec()).unwrap().requests, 2);
}

#[test]
fn year_boundary() {
    let jan = Period::new(2027, 1).unwrap();
    let clock = ManualClock::new(jan.start() - Duration::from_millis(1));
    let meter = meter_at(&clock);
    hit(&meter, "a", 1);
    assert_eq!(meter.period(), dec());
    clock.advance(Duration::from_millis(1));
    hit(&meter, "a", 1);
    assert_eq!(meter.usage(&id("a")).unwrap().period, jan);
    assert_eq!(meter.requests_this_month(&id("a")), 1);
}

#[test]
fn background_flusher_flushes_and_flushes_once_more_on_stop() {
    let sink = Arc::new(MemSink::default());
    let meter = Meter::new();
    hit(&meter, "a", 2);
    let flusher = meter.spawn_flusher(sink.clone(), Duration::from_millis(10));
    let mut waited = 0;
    while sink.get("a", meter.period()).is_none() && waited < 1000 {
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(sink.get("a", meter.period()).unwrap().requests, 2);
    hit(&meter, "a", 3);
    flusher.stop();
    assert_eq!(sink.get("a", meter.period()).unwrap().requests, 5);
}
