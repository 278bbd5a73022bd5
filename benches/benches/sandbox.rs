//! The WebAssembly core: warm invoke, cold start from parked, the bare
//! wasmtime floor for the same module, and fuel + epoch overhead.
//!
//! `cargo bench -p corral-benches --features engines --bench sandbox -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::{Duration, Instant};

use bytes::Bytes;
use corral::{EngineConfig, Kind, Limits, Registry, TenantId, WasmEngine};
use criterion::{Criterion, criterion_group, criterion_main};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

const HELLO: &str = include_str!("../../sandbox-core/tests/fixtures/hello.wat");
const COMPUTE: &str = include_str!("../../sandbox-core/tests/fixtures/compute.wat");

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request() -> http::Request<Bytes> {
    http::Request::builder()
        .uri("http://hello.localhost/")
        .body(Bytes::new())
        .unwrap()
}

fn registry(dir: &std::path::Path, engine: WasmEngine) -> Registry {
    Registry::builder(dir)
        .engine(engine)
        .park_sweep_interval(None)
        .open()
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn floor_pre(engine: &wasmtime::Engine) -> wasmtime::InstancePre<WasiP1Ctx> {
    let module = wasmtime::Module::new(engine, HELLO).unwrap();
    let mut linker: wasmtime::Linker<WasiP1Ctx> = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s| s).unwrap();
    linker.instantiate_pre(&module).unwrap()
}

async fn floor_call(engine: &wasmtime::Engine, pre: &wasmtime::InstancePre<WasiP1Ctx>) {
    let out = MemoryOutputPipe::new(1 << 20);
    let wasi = wasmtime_wasi::WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(Bytes::new()))
        .stdout(out.clone())
        .build_p1();
    let mut store = wasmtime::Store::new(engine, wasi);
    let instance = pre.instantiate_async(&mut store).await.unwrap();
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .unwrap();
    start.call_async(&mut store, ()).await.unwrap();
    assert_eq!(out.contents().len(), 45);
}

fn sandbox(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let engine = WasmEngine::new(EngineConfig::default().instances(16)).unwrap();
    let reg = registry(dir.path(), engine);
    let id: TenantId = "hello".parse().unwrap();
    reg.deploy(&id, Kind::Wasm, HELLO.as_bytes(), Limits::default())
        .unwrap();
    let _guard = rt.enter();

    let mut g = c.benchmark_group("sandbox");
    g.bench_function("warm_invoke_hello", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = reg.invoke(&id, request()).await.unwrap();
            assert_eq!(resp.body().as_bytes().map(|b| b.len()), Some(19));
        })
    });

    g.bench_function("cold_start_invoke_hello", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let reg = reg.clone();
            let id = id.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    reg.park(&id).unwrap();
                    let t = Instant::now();
                    reg.invoke(&id, request()).await.unwrap();
                    total += t.elapsed();
                }
                total
            }
        })
    });

    // The floor: the same module instantiated and called with WASI and
    // nothing else (no limits, no registry, no CGI parsing), on
    // - a default wasmtime engine (on-demand allocator), and
    // - an engine with Corral's own configuration (pooling allocator,
    //   copy-on-write memory init) minus fuel and epochs: the like-for-like floor.
    let bare = wasmtime::Engine::default();
    let pre = floor_pre(&bare);
    g.bench_function("bare_wasmtime_instantiate_call", |b| {
        b.to_async(&rt).iter(|| floor_call(&bare, &pre))
    });
    let pooled_engine = WasmEngine::new_unmetered(EngineConfig::default().instances(16)).unwrap();
    let pooled = pooled_engine.wasmtime().clone();
    let pooled_pre = floor_pre(&pooled);
    g.bench_function("bare_wasmtime_pooled_instantiate_call", |b| {
        b.to_async(&rt).iter(|| floor_call(&pooled, &pooled_pre))
    });

    let metered_dir = tempfile::tempdir().unwrap();
    let unmetered_dir = tempfile::tempdir().unwrap();
    let metered = registry(
        metered_dir.path(),
        WasmEngine::new(EngineConfig::default().instances(4)).unwrap(),
    );
    let unmetered = registry(
        unmetered_dir.path(),
        WasmEngine::new_unmetered(EngineConfig::default().instances(4)).unwrap(),
    );
    let cid: TenantId = "compute".parse().unwrap();
    for r in [&metered, &unmetered] {
        r.deploy(&cid, Kind::Wasm, COMPUTE.as_bytes(), Limits::default())
            .unwrap();
    }
    g.sample_size(20);
    g.bench_function("compute_fuel_epoch_on", |b| {
        b.to_async(&rt)
            .iter(|| async { metered.invoke(&cid, request()).await.unwrap() })
    });
    g.bench_function("compute_fuel_epoch_off", |b| {
        b.to_async(&rt)
            .iter(|| async { unmetered.invoke(&cid, request()).await.unwrap() })
    });
    g.finish();

    // Cold-start percentiles (criterion reports means): 500 wakes of the
    // hello tenant, timing the load alone (registry counter) and the whole
    // parked → answered invoke.
    let mut whole = Vec::with_capacity(500);
    let mut load = Vec::with_capacity(500);
    rt.block_on(async {
        for _ in 0..500 {
            reg.park(&id).unwrap();
            let before = reg.stats().cold_start_time_total;
            let t = Instant::now();
            reg.invoke(&id, request()).await.unwrap();
            whole.push(t.elapsed());
            load.push(reg.stats().cold_start_time_total - before);
        }
    });
    whole.sort();
    load.sort();
    println!(
        "cold start (load only): p50 {:?} p99 {:?}; parked -> answered invoke: p50 {:?} p99 {:?}",
        percentile(&load, 0.5),
        percentile(&load, 0.99),
        percentile(&whole, 0.5),
        percentile(&whole, 0.99),
    );

    // Fuel + epoch overhead with the two engines interleaved (on, off, on,
    // off, ...), so load drifting on a shared machine hits both alike.
    const PAIRS: usize = 100;
    let mut on = Vec::with_capacity(PAIRS);
    let mut off = Vec::with_capacity(PAIRS);
    rt.block_on(async {
        for _ in 0..PAIRS {
            let t = Instant::now();
            metered.invoke(&cid, request()).await.unwrap();
            on.push(t.elapsed());
            let t = Instant::now();
            unmetered.invoke(&cid, request()).await.unwrap();
            off.push(t.elapsed());
        }
    });
    on.sort();
    off.sort();
    let (on50, off50) = (percentile(&on, 0.5), percentile(&off, 0.5));
    println!(
        "fuel+epoch, {PAIRS} interleaved pairs: on p50 {on50:?}, off p50 {off50:?}, overhead {:+.1}%",
        (on50.as_secs_f64() / off50.as_secs_f64() - 1.0) * 100.0
    );

    // The same in on-CPU time (the guest runs on this thread: current-thread
    // runtime), so time spent waiting for a core on a loaded machine does not
    // count: 20 rounds of 5 metered then 5 unmetered invocations.
    let (mut on_ns, mut off_ns, mut n) = (0u64, 0u64, 0u64);
    rt.block_on(async {
        for _ in 0..20 {
            let Some(a) = on_cpu_ns() else { return };
            for _ in 0..5 {
                metered.invoke(&cid, request()).await.unwrap();
            }
            let Some(b) = on_cpu_ns() else { return };
            for _ in 0..5 {
                unmetered.invoke(&cid, request()).await.unwrap();
            }
            let Some(c) = on_cpu_ns() else { return };
            on_ns += b - a;
            off_ns += c - b;
            n += 5;
        }
    });
    if n > 0 {
        println!(
            "fuel+epoch on-CPU, {n} invocations each: on {:.3} ms, off {:.3} ms per invocation, overhead {:+.1}%",
            on_ns as f64 / n as f64 / 1e6,
            off_ns as f64 / n as f64 / 1e6,
            (on_ns as f64 / off_ns as f64 - 1.0) * 100.0
        );
    }
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat).
fn on_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

criterion_group!(benches, sandbox);
criterion_main!(benches);
