//! JavaScript tenants on QuickJS (issue 7): warm request, cold start from
//! bytecode, and the memory of a warm vs a parked tenant. The WebAssembly
//! hello tenant runs in the same registry and the same run as the baseline.
//!
//! `cargo bench -p corral-benches --features engines --bench js -- --warm-up-time 1 --measurement-time 3`
//!
//! - `js/warm_invoke_hello`: `Registry::invoke` on a warm JS tenant.
//! - `js/warm_invoke_plain_hello`: the same on `benches/js-ab.sh`'s module
//!   (a Response from a string, nothing else). `JS_BENCH_QUICK=1` skips the
//!   memory and stream reports.
//! - `js/warm_invoke_hello_wasm_baseline`: the same on the WebAssembly hello
//!   tenant (`sandbox-core/tests/fixtures/hello.wat`), same registry.
//! - `js/cold_start_invoke_hello`: park, then `Registry::invoke` (reads the
//!   artifact, verifies its CRC, rebuilds the runtime from bytecode, answers).
//! - `js/load_from_bytecode`: `QuickJsProgram::load` alone (CRC check + new
//!   runtime + module evaluated from bytecode), no request.
//! - `js/precompile_from_source`: what a cold start would cost if it parsed
//!   source (deploy-time work), for comparison.
//!
//! - `js/stream_event`: one event read from an open `text/event-stream`
//!   whose `pull` enqueues at once (a step on the runtime, a channel hop).
//! - `js/stream_event_with_runtime_slots`: the same where each step takes a
//!   host runtime slot, as it does in the platform.
//!
//! Then it prints cold-start percentiles (500 wakes, like the sandbox bench),
//! the memory of `MEM_TENANTS` tenants warm vs parked, and what
//! `IDLE_STREAMS` idle event streams on one tenant cost.

#![allow(missing_docs)] // criterion_group! generates undocumented functions
#![allow(unsafe_code)] // the counting allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

/// Counts the bytes live on the Rust heap, to measure what a parked tenant
/// keeps (registry entry, log, metadata). QuickJS allocates with libc malloc
/// directly (rquickjs without its `allocator` feature), so its heaps are not
/// in this count; `QuickJsProgram::heap_bytes` reports those. Counts only
/// while `COUNTING` is set (the memory report), so the timed benches do not
/// share a counter between the bench thread and the JS worker threads.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

fn count(delta: i64) {
    if COUNTING.load(Relaxed) {
        LIVE.fetch_add(delta, Relaxed);
    }
}

// SAFETY: every call forwards to `System` unchanged; the counter is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_rust_bytes() -> i64 {
    LIVE.load(Relaxed)
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral::{
    Backend, EngineConfig, InvokeContext, Kind, Limits, Program, QuickJsBackend, QuickJsProgram,
    Registry, TenantId, TenantLog,
};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt as _;

const HELLO_JS: &str = r#"export default {
  async fetch(request) {
    const url = new URL(request.url);
    return new Response(`Hello from Corral! ${url.pathname}`, {
      headers: { "content-type": "text/plain" },
    });
  },
};"#;
/// The module `benches/js-ab.sh` serves (and workerd beside it): a Response
/// from a string, no URL, no headers, not async.
const PLAIN_HELLO_JS: &str =
    r#"export default { fetch() { return new Response("Hello, world!\n") } }"#;
const HELLO_WAT: &str = include_str!("../../sandbox-core/tests/fixtures/hello.wat");
const MEM_TENANTS: usize = 200;

fn request() -> http::Request<Bytes> {
    http::Request::get("http://hello.localhost/bench")
        .body(Bytes::new())
        .unwrap()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn registry(dir: &std::path::Path) -> Registry {
    Registry::builder(dir)
        .engine_config(EngineConfig::default().instances(4))
        .park_sweep_interval(None)
        .open()
        .unwrap()
}

/// `MEM_TENANTS` JS tenants deployed then parked; RSS with all of them woken
/// (one request each) vs all parked, then all woken again (glibc keeps freed
/// pages, so RSS barely falls at parking; the second wake shows whether that
/// memory is reused), and QuickJS's own heap count for one tenant.
fn memory_report(rt: &tokio::runtime::Runtime) {
    COUNTING.store(true, Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let ids: Vec<TenantId> = (0..MEM_TENANTS)
        .map(|i| format!("mem-{i}").parse().unwrap())
        .collect();
    let mut artifact_bytes = 0;
    for id in &ids {
        let info = reg
            .deploy(id, Kind::Js, HELLO_JS.as_bytes(), Limits::default())
            .unwrap();
        artifact_bytes = info.bytes;
        reg.park(id).unwrap();
    }
    let parked_before = rss_bytes();
    let rust_parked = live_rust_bytes();
    rt.block_on(async {
        for id in &ids {
            let r = reg.invoke(id, request()).await.unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    let warm = rss_bytes();
    let rust_warm = live_rust_bytes();
    for id in &ids {
        assert!(reg.park(id).unwrap());
    }
    let parked_after = rss_bytes();
    rt.block_on(async {
        for id in &ids {
            reg.invoke(id, request()).await.unwrap();
        }
    });
    let rewoken = rss_bytes();
    for id in &ids {
        assert!(reg.park(id).unwrap());
    }
    // What a parked tenant keeps in memory (registry entry, log, metadata):
    // RSS growth per additional tenant deployed and parked, once the freed
    // runtimes of the first batch are there for deploys to reuse.
    let before_more = rss_bytes();
    let rust_before_more = live_rust_bytes();
    for i in 0..MEM_TENANTS {
        let id: TenantId = format!("more-{i}").parse().unwrap();
        reg.deploy(&id, Kind::Js, HELLO_JS.as_bytes(), Limits::default())
            .unwrap();
        reg.park(&id).unwrap();
    }
    let after_more = rss_bytes();
    let rust_after_more = live_rust_bytes();

    // QuickJS's own count for one warm tenant, after one request.
    let limits = Limits::default();
    let artifact = QuickJsBackend::new()
        .precompile(HELLO_JS.as_bytes(), &limits)
        .unwrap();
    let program = Arc::new(QuickJsProgram::load(&artifact, &limits).unwrap());
    let heap_loaded = program.heap_bytes();
    let cx = InvokeContext::new(
        "mem-probe".parse().unwrap(),
        Arc::new(limits.clone()),
        Arc::new(TenantLog::new(4096)),
    );
    rt.block_on(program.clone().invoke(cx, request())).unwrap();
    let heap_served = program.heap_bytes();
    COUNTING.store(false, Relaxed);
    let n = MEM_TENANTS as u64;
    println!(
        "js memory: {MEM_TENANTS} tenants; RSS all parked {} KiB, all warm {} KiB \
         (+{} KiB, {} KiB per warm tenant), parked again {} KiB (-{} KiB), woken again {} KiB; \
         Rust heap live per tenant: {} B more when warm than parked, {} B per parked tenant \
         ({MEM_TENANTS} more deployed and parked: RSS +{} KiB); \
         QuickJS heap (malloc_size) of one tenant: {} B loaded, {} B after one request; \
         artifact on disk {} B per tenant (bytecode {} B)",
        parked_before / 1024,
        warm / 1024,
        warm.saturating_sub(parked_before) / 1024,
        warm.saturating_sub(parked_before) / n / 1024,
        parked_after / 1024,
        warm.saturating_sub(parked_after) / 1024,
        rewoken / 1024,
        (rust_warm - rust_parked) / MEM_TENANTS as i64,
        (rust_after_more - rust_before_more) / MEM_TENANTS as i64,
        after_more.saturating_sub(before_more) / 1024,
        heap_loaded,
        heap_served,
        artifact_bytes,
        program.bytecode_len(),
    );
}

/// An event stream whose `pull` enqueues at once: the cost of one event.
const TICKER_JS: &str = r#"const chunk = new TextEncoder().encode("data: tick\n\n");
export default {
  fetch(request) {
    if (new URL(request.url).pathname === "/idle") {
      return new Response(new ReadableStream({}), { headers: { "content-type": "text/event-stream" } });
    }
    if (new URL(request.url).pathname === "/hello") return new Response("hello");
    return new Response(new ReadableStream({ pull(c) { c.enqueue(chunk); } }), {
      headers: { "content-type": "text/event-stream" },
    });
  },
};"#;
const IDLE_STREAMS: usize = 1_000;

/// CPU time of this process (user + system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line (11, 12 here).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// `IDLE_STREAMS` idle event streams open on one JS tenant: what each costs
/// (RSS, QuickJS heap), that they cost nothing while idle (steps and CPU over
/// one second), and a request's latency with them open vs none.
fn stream_report(rt: &tokio::runtime::Runtime) {
    let limits = Limits::default();
    let artifact = QuickJsBackend::new()
        .precompile(TICKER_JS.as_bytes(), &limits)
        .unwrap();
    let program = Arc::new(QuickJsProgram::load(&artifact, &limits).unwrap());
    let cx = InvokeContext::new(
        "streams".parse().unwrap(),
        Arc::new(limits),
        Arc::new(TenantLog::new(4096)),
    );
    let get = |path: &str| {
        http::Request::get(format!("http://streams.localhost{path}"))
            .body(Bytes::new())
            .unwrap()
    };
    rt.block_on(async {
        let hello = |n: usize| {
            let (program, cx) = (program.clone(), cx.clone());
            async move {
                let t = Instant::now();
                for _ in 0..n {
                    let r = program.clone().invoke(cx.clone(), get("/hello")).await.unwrap();
                    assert_eq!(r.into_body().to_bytes().await.unwrap(), "hello");
                }
                t.elapsed() / n as u32
            }
        };
        hello(200).await;
        let alone = hello(1_000).await;
        let (rss0, heap0) = (rss_bytes(), program.heap_bytes());
        let mut open = Vec::with_capacity(IDLE_STREAMS);
        for _ in 0..IDLE_STREAMS {
            let r = program.clone().invoke(cx.clone(), get("/idle")).await.unwrap();
            open.push(r.into_body());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (rss1, heap1) = (rss_bytes(), program.heap_bytes());
        let (steps0, cpu0) = (program.stream_steps(), cpu_time());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (steps1, cpu1) = (program.stream_steps(), cpu_time());
        let beside = hello(1_000).await;
        drop(open);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let heap_closed = program.heap_bytes();
        // QuickJS frees cycles (a stream and its reader) at its next GC,
        // which the heap's growth triggers: a few thousand requests later.
        hello(6_000).await;
        println!(
            "js streams: {IDLE_STREAMS} idle event streams on one tenant: RSS +{} KiB ({} B a stream), \
             QuickJS heap +{} KiB ({} B a stream); idle for 1 s: {} steps, {:?} CPU; \
             a request alone {:?}, beside the {IDLE_STREAMS} open streams {:?}; \
             heap after they closed +{} KiB, after 6,000 more requests +{} KiB",
            rss1.saturating_sub(rss0) / 1024,
            rss1.saturating_sub(rss0) / IDLE_STREAMS as u64,
            heap1.saturating_sub(heap0) / 1024,
            heap1.saturating_sub(heap0) / IDLE_STREAMS as u64,
            steps1 - steps0,
            cpu1.saturating_sub(cpu0),
            alone,
            beside,
            heap_closed.saturating_sub(heap0) / 1024,
            program.heap_bytes().saturating_sub(heap0) / 1024,
        );
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // JS_BENCH_QUICK=1: only the timed benches (skips the memory and
    // stream reports, which take minutes).
    if std::env::var_os("JS_BENCH_QUICK").is_none() {
        memory_report(&rt);
        stream_report(&rt);
    }

    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let js: TenantId = "hello-js".parse().unwrap();
    let wasm: TenantId = "hello-wasm".parse().unwrap();
    reg.deploy(&js, Kind::Js, HELLO_JS.as_bytes(), Limits::default())
        .unwrap();
    reg.deploy(&wasm, Kind::Wasm, HELLO_WAT.as_bytes(), Limits::default())
        .unwrap();
    let plain: TenantId = "plain-hello-js".parse().unwrap();
    reg.deploy(
        &plain,
        Kind::Js,
        PLAIN_HELLO_JS.as_bytes(),
        Limits::default(),
    )
    .unwrap();
    let _guard = rt.enter();

    let mut g = c.benchmark_group("js");
    g.bench_function("warm_invoke_hello", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = reg.invoke(&js, request()).await.unwrap();
            assert_eq!(resp.body().as_bytes().map(|b| b.len()), Some(25));
        })
    });
    g.bench_function("warm_invoke_plain_hello", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = reg.invoke(&plain, request()).await.unwrap();
            assert_eq!(resp.body().as_bytes().map(|b| b.len()), Some(14));
        })
    });
    g.bench_function("warm_invoke_hello_wasm_baseline", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = reg.invoke(&wasm, request()).await.unwrap();
            assert_eq!(resp.body().as_bytes().map(|b| b.len()), Some(19));
        })
    });
    let ticker: TenantId = "ticker".parse().unwrap();
    reg.deploy(&ticker, Kind::Js, TICKER_JS.as_bytes(), Limits::default())
        .unwrap();
    let mut events = rt
        .block_on(reg.invoke(&ticker, request()))
        .unwrap()
        .into_body();
    // The same stream in a registry with host runtime slots (as the
    // platform has): each step also takes and returns a slot.
    let slotted_dir = tempfile::tempdir().unwrap();
    let slotted = Registry::builder(slotted_dir.path())
        .engine_config(EngineConfig::default().instances(4))
        .park_sweep_interval(None)
        .runtime_slots(corral::limits_layers::RuntimeSlots::new(4))
        .open()
        .unwrap();
    slotted
        .deploy(&ticker, Kind::Js, TICKER_JS.as_bytes(), Limits::default())
        .unwrap();
    let mut slotted_events = rt
        .block_on(slotted.invoke(&ticker, request()))
        .unwrap()
        .into_body();
    for (name, events) in [
        ("stream_event", &mut events),
        ("stream_event_with_runtime_slots", &mut slotted_events),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let frame = events.frame().await.unwrap().unwrap();
                        assert_eq!(frame.data_ref().map(|d| d.len()), Some(12));
                    }
                    t.elapsed()
                })
            })
        });
    }
    drop((events, slotted_events));
    g.bench_function("cold_start_invoke_hello", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let reg = reg.clone();
            let js = js.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    reg.park(&js).unwrap();
                    let t = Instant::now();
                    reg.invoke(&js, request()).await.unwrap();
                    total += t.elapsed();
                }
                total
            }
        })
    });
    let limits = Limits::default();
    let backend = QuickJsBackend::new();
    let artifact = backend.precompile(HELLO_JS.as_bytes(), &limits).unwrap();
    g.bench_function("load_from_bytecode", |b| {
        b.iter(|| QuickJsProgram::load(&artifact, &limits).unwrap())
    });
    g.bench_function("precompile_from_source", |b| {
        b.iter(|| backend.precompile(HELLO_JS.as_bytes(), &limits).unwrap())
    });
    g.finish();

    // Cold-start percentiles (criterion reports means): 500 wakes, timing the
    // load alone (registry counter) and the whole parked -> answered invoke.
    let mut whole = Vec::with_capacity(500);
    let mut load = Vec::with_capacity(500);
    rt.block_on(async {
        for _ in 0..500 {
            reg.park(&js).unwrap();
            let before = reg.stats().cold_start_time_total;
            let t = Instant::now();
            reg.invoke(&js, request()).await.unwrap();
            whole.push(t.elapsed());
            load.push(reg.stats().cold_start_time_total - before);
        }
    });
    whole.sort();
    load.sort();
    println!(
        "js cold start (load only): p50 {:?} p99 {:?}; parked -> answered invoke: p50 {:?} p99 {:?}",
        percentile(&load, 0.5),
        percentile(&load, 0.99),
        percentile(&whole, 0.5),
        percentile(&whole, 0.99),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
