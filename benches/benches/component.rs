//! Cold start of a parked WebAssembly component (issue 17's "p50 ≤ 1 ms"):
//! 500 wakes of the C hello component, each a `Registry::park` then an
//! invoke that loads the CRC-checked `CRLC` artifact, deserializes it,
//! pre-instantiates it (`ProxyPre`) and answers. Prints percentiles of the
//! load alone (the registry's cold-start timer) and of the whole parked →
//! answered invoke, and the warm invoke beside them. No criterion: the
//! figures are percentiles, not means.
//!
//! `cargo bench -p corral-benches --features engines --bench component`

use std::time::{Duration, Instant};

use bytes::Bytes;
use corral::{EngineConfig, Kind, Limits, Registry, TenantId, WasmEngine};

const WAKES: usize = 500;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn request() -> http::Request<Bytes> {
    http::Request::builder()
        .uri("http://hello.localhost/")
        .body(Bytes::new())
        .unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = WasmEngine::new(EngineConfig::default().instances(16)).unwrap();
    let reg = Registry::builder(dir.path())
        .engine(engine)
        .park_sweep_interval(None)
        .open()
        .unwrap();
    let id: TenantId = "hello-c".parse().unwrap();
    let hello = include_bytes!("../../sandbox-core/tests/fixtures/components/hello.wasm");
    reg.deploy(&id, Kind::Component, hello, Limits::default())
        .unwrap();
    let compiles = reg.stats().compiles;

    let (mut load, mut whole, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..WAKES {
            reg.park(&id).unwrap();
            let before = reg.stats().cold_start_time_total;
            let t = Instant::now();
            let resp = reg.invoke(&id, request()).await.unwrap();
            whole.push(t.elapsed());
            load.push(reg.stats().cold_start_time_total - before);
            assert_eq!(resp.status(), 200);
            let t = Instant::now();
            reg.invoke(&id, request()).await.unwrap();
            warm.push(t.elapsed());
        }
    });
    assert_eq!(reg.stats().compiles, compiles, "a wake never recompiles");
    for v in [&mut load, &mut whole, &mut warm] {
        v.sort();
    }
    println!(
        "component cold start, {WAKES} wakes: load only p50 {:?} p99 {:?}; \
         parked -> answered invoke p50 {:?} p99 {:?}; warm invoke p50 {:?} p99 {:?}",
        percentile(&load, 0.5),
        percentile(&load, 0.99),
        percentile(&whole, 0.5),
        percentile(&whole, 0.99),
        percentile(&warm, 0.5),
        percentile(&warm, 0.99),
    );
}
