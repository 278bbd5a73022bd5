//! corral-metering: per-request metering cost, uncontended, and the
//! Prometheus render time for 10,000 tenants.
//!
//! `cargo bench -p corral-benches --bench metering -- --warm-up-time 1 --measurement-time 3`
//!
//! - `meter/handle`: what the layer does per request on the meter: look the
//!   tenant up among 10,000, count request, status, latency and bytes out.
//! - `meter/handle_one_tenant`: the same, always the same tenant (hot caches).
//! - `layer/bare` vs `layer/metered`: one request through a ready
//!   `service_fn` alone, then wrapped in `MeteringLayer` (response body read
//!   to its end); the difference is the layer's cost.
//! - `baseline/system_time_now`: one `SystemTime::now()`, to scale the others
//!   on a loaded machine (the meter reads the clock once per request).
//! - `render/10000_tenants`: `Meter::render()` with 10,000 active tenants
//!   (top 50 exported).
//!
//! Then it prints the same per-request work and the clock read timed in
//! on-CPU time (the thread's `sum_exec_runtime` from
//! `/proc/thread-self/schedstat`), the lowest of 5 rounds of 2,000,000
//! operations each: on a shared, loaded machine wall time also counts the
//! time the thread waited for a core.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use corral_limits::TenantId;
use corral_metering::{InvocationFigures, Meter, MeteringLayer};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower::{Layer, Service};

/// A one-frame static body: no allocation, exact size hint.
struct Static(Option<&'static [u8]>);

impl Body for Static {
    type Data = bytes::Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        Poll::Ready(
            self.0
                .take()
                .map(|b| Ok(http_body::Frame::data(bytes::Bytes::from_static(b)))),
        )
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.map_or(0, |b| b.len() as u64))
    }
}

fn ids(n: usize) -> Vec<TenantId> {
    (0..n)
        .map(|i| TenantId::new(&format!("t{i}")).unwrap())
        .collect()
}

/// Polls a future that is ready at once (no runtime needed).
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the bench services are always ready"),
    }
}

fn drain<B: Body + Unpin>(mut body: B) {
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(_)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {}
}

fn per_request(c: &mut Criterion) {
    let tenants = ids(10_000);
    let meter = Meter::new();
    for t in &tenants {
        meter.tenant(t).request();
    }
    let mut g = c.benchmark_group("metering");
    // Scale for a loaded machine: one wall-clock read, which the meter does per request.
    g.bench_function("baseline/system_time_now", |b| {
        b.iter(|| black_box(std::time::SystemTime::now()))
    });
    let mut i = 0usize;
    g.bench_function("meter/handle", |b| {
        b.iter(|| {
            i = (i + 1) % tenants.len();
            let t = meter.tenant(&tenants[i]);
            t.request();
            t.response(StatusCode::OK);
            t.latency(Duration::from_micros(250));
            t.bytes_out(black_box(512));
        })
    });

    let one = &tenants[0];
    g.bench_function("meter/handle_one_tenant", |b| {
        b.iter(|| {
            let t = meter.tenant(black_box(one));
            t.request();
            t.response(StatusCode::OK);
            t.latency(Duration::from_micros(250));
            t.bytes_out(black_box(512));
        })
    });

    let inner = tower::service_fn(|_: Request<Static>| async {
        let mut res = Response::new(Static(Some(b"hello world")));
        res.extensions_mut().insert(InvocationFigures::new(
            1_000,
            Duration::from_micros(40),
            1 << 20,
            false,
        ));
        Ok::<_, Infallible>(res)
    });
    let mut bare = inner;
    let mut metered = MeteringLayer::new(meter.clone()).layer(inner);
    let make = |i: usize| {
        let mut req = Request::new(Static(Some(b"ping")));
        req.extensions_mut()
            .insert(tenants[i % tenants.len()].clone());
        req
    };
    let mut k = 0usize;
    g.bench_function("layer/bare", |b| {
        b.iter_batched(
            || {
                k += 1;
                make(k)
            },
            |req| {
                let res = now(bare.call(req)).unwrap();
                drain(res.into_body());
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("layer/metered", |b| {
        b.iter_batched(
            || {
                k += 1;
                make(k)
            },
            |req| {
                let res = now(metered.call(req)).unwrap();
                drain(res.into_body());
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat; advances at
/// scheduler ticks and switches, so time batches far longer than a tick).
fn on_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// On-CPU nanoseconds per call of `f`: the lowest of 5 rounds of `n` calls.
fn cpu_ns_per_op(n: u64, mut f: impl FnMut()) -> Option<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let before = on_cpu_ns()?;
        for _ in 0..n {
            f();
        }
        let spent = on_cpu_ns()? - before;
        best = best.min(spent as f64 / n as f64);
    }
    Some(best)
}

fn cpu_time_report(_: &mut Criterion) {
    const N: u64 = 2_000_000;
    let tenants = ids(10_000);
    let meter = Meter::new();
    for t in &tenants {
        meter.tenant(t).request();
    }
    let clock = cpu_ns_per_op(N, || {
        black_box(std::time::SystemTime::now());
    });
    let mut i = 0usize;
    let handle = cpu_ns_per_op(N, || {
        i = (i + 1) % tenants.len();
        let t = meter.tenant(&tenants[i]);
        t.request();
        t.response(StatusCode::OK);
        t.latency(Duration::from_micros(250));
        t.bytes_out(black_box(512));
    });
    let one = &tenants[0];
    let handle_one = cpu_ns_per_op(N, || {
        let t = meter.tenant(black_box(one));
        t.request();
        t.response(StatusCode::OK);
        t.latency(Duration::from_micros(250));
        t.bytes_out(black_box(512));
    });
    match (clock, handle, handle_one) {
        (Some(clock), Some(handle), Some(one)) => println!(
            "metering on-CPU ns/op (min of 5 x {N}): system_time_now {clock:.1}; \
             meter/handle {handle:.1} ({:.1} x clock); meter/handle_one_tenant {one:.1} ({:.1} x clock)",
            handle / clock,
            one / clock
        ),
        _ => println!("metering on-CPU time: /proc/thread-self/schedstat unavailable"),
    }
}

fn render(c: &mut Criterion) {
    let tenants = ids(10_000);
    let meter = Meter::new();
    for (n, t) in tenants.iter().enumerate() {
        let m = meter.tenant(t);
        for _ in 0..(n % 7 + 1) {
            m.request();
            m.response(StatusCode::OK);
            m.latency(Duration::from_millis(n as u64 % 40));
        }
    }
    let mut g = c.benchmark_group("metering");
    g.bench_function("render/10000_tenants", |b| {
        b.iter(|| black_box(meter.render().len()))
    });
    g.finish();
}

criterion_group!(benches, per_request, render, cpu_time_report);
criterion_main!(benches);
