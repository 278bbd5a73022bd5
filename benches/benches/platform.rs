//! The platform's request path for a warm WebAssembly hello, as the HTTP
//! frontend drives it: the frontend's one lookup of the app
//! (`Platform::resolve_app`), then every layer of `Platform::service`
//! (metering by app and by account, maintenance, rate, quota, compute
//! shares, runtime slots, streams, asset cache) and the sandbox; beside the
//! sandbox alone (`Registry::invoke`), same run, same tenant.
//!
//! `cargo bench -p corral-benches --features engines --bench platform -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use bytes::Bytes;
use corral::limits_layers::Tier;
use corral::platform::{Bundle, Platform, PlatformConfig};
use corral::{Kind, TenantId};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use tower::ServiceExt;

const HELLO: &str = include_str!("../../sandbox-core/tests/fixtures/hello.wat");

fn request() -> http::Request<Bytes> {
    http::Request::builder()
        .uri("http://hello.localhost/")
        .body(Bytes::new())
        .unwrap()
}

fn platform(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = PlatformConfig::with_data_dir(dir.path());
    let never = corral::metering::Level::new(1.0, 1.0);
    (cfg.thresholds.ram, cfg.thresholds.disk, cfg.thresholds.cpu) = (never, never, never);
    // The free tier with a quota the bench never reaches (so the quota check
    // runs on every request) and no rate limit.
    let mut tier = Tier::free();
    tier.rate_per_minute = None;
    tier.requests_per_month = Some(1 << 40);
    cfg.tiers.insert("bench".into(), tier);
    let p = Platform::builder().config(cfg).build().unwrap();
    let id: TenantId = "hello".parse().unwrap();
    let wasm = Bundle::code(Kind::Wasm, HELLO.as_bytes().to_vec());
    rt.block_on(p.deploy(&id, Some("bench"), wasm)).unwrap();
    let svc = p.service();

    let mut g = c.benchmark_group("platform");
    g.bench_function("warm_hello_through_the_stack", |b| {
        b.to_async(&rt).iter(|| async {
            // What corral-server does with a request head.
            let app = p.resolve_app(&id).unwrap();
            let mut req = request();
            app.insert_into(&mut req);
            let resp = svc.clone().oneshot(req).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 19);
        })
    });
    g.bench_function("warm_hello_registry_only", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = p.registry().invoke(&id, request()).await.unwrap();
            assert_eq!(resp.body().as_bytes().map(|b| b.len()), Some(19));
        })
    });
    g.finish();
    rt.block_on(p.shutdown());
}

criterion_group!(benches, platform);
criterion_main!(benches);
