//! Per-request cost of corral-limits' full layer stack against a bare
//! `service_fn`, uncontended, with one tenant and with 100,000 tenants in the map.
//!
//! `cargo bench -p corral-benches --bench limits -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_limits::{
    MaintenanceSwitch, RuntimeSlots, ServiceBuilderExt, TenantContext, TenantId, TenantLimits,
    Tier, UsageSource,
};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A usage source as cheap as the real meter's lookup: nothing used.
struct NoUsage;
impl UsageSource for NoUsage {
    fn requests_this_month(&self, _: &TenantId) -> u64 {
        0
    }
}

/// A tier whose limits are all checked but never hit by the bench loop.
fn roomy_tier() -> Arc<Tier> {
    let mut t = Tier::scale();
    t.rate_per_minute = Some(u32::MAX);
    t.burst = u32::MAX;
    t.requests_per_month = Some(u64::MAX);
    t.validate().unwrap();
    Arc::new(t)
}

fn contexts(n: usize, tier: &Arc<Tier>) -> Vec<TenantContext> {
    (0..n)
        .map(|i| TenantContext::new(TenantId::new(&format!("t{i}")).unwrap(), tier.clone()))
        .collect()
}

/// Runs `iters` requests through `svc`, cycling over `ctxs`; returns the time taken.
fn run<S, B>(
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    ctxs: &[TenantContext],
    iters: u64,
) -> Duration
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            let mut req = Request::new(());
            ctxs[(i as usize) % ctxs.len()]
                .clone()
                .insert_into(&mut req);
            let resp = svc.ready().await.unwrap().call(req).await.unwrap();
            black_box(resp);
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tier = roomy_tier();
    let limits = TenantLimits::new();
    let slots = RuntimeSlots::new(64);
    let stack = || {
        ServiceBuilder::new()
            .tenant_maintenance(MaintenanceSwitch::new())
            .tenant_rate_limit(&limits)
            .tenant_quota(NoUsage)
            .tenant_concurrency(&limits)
            .runtime_slots(&slots)
            .service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            })
    };
    let one = contexts(1, &tier);
    let many = contexts(100_000, &tier);

    let mut group = c.benchmark_group("limits");
    group.bench_function("bare_service_fn", |b| {
        let mut svc = service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        b.iter_custom(|iters| run(&rt, &mut svc, &one, iters));
    });
    group.bench_function("full_stack_1_tenant", |b| {
        let mut svc = stack();
        b.iter_custom(|iters| run(&rt, &mut svc, &one, iters));
    });
    // Fill the map with 100,000 tenants, then cycle over all of them.
    let mut svc = stack();
    run(&rt, &mut svc, &many, many.len() as u64);
    assert_eq!(limits.len(), 100_000);
    group.bench_function("full_stack_100k_tenants_round_robin", |b| {
        b.iter_custom(|iters| run(&rt, &mut svc, &many, iters));
    });
    group.bench_function("full_stack_1_tenant_with_100k_in_map", |b| {
        let mut svc = stack();
        b.iter_custom(|iters| run(&rt, &mut svc, &one, iters));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
