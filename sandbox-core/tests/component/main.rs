//! Integration tests of the component backend over the fixtures under
//! `tests/fixtures/components`, built by clang and wasm-tools with the
//! preview-1 proxy adapter (`rebuild.sh` there rebuilds them; these tests use
//! the committed .wasm files).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use corral::limits_layers::Tier;
use corral::platform::{Bundle, Platform, PlatformConfig};
use corral::{
    Body, EngineConfig, InvocationStats, Kind, Limits, Registry, SandboxError, TenantId,
    TenantState, WasmEngine,
};

/// One engine for the whole test binary, as in production.
fn engine() -> WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| WasmEngine::new(EngineConfig::default().instances(16)).unwrap())
        .clone()
}

fn registry(dir: &std::path::Path) -> Registry {
    Registry::builder(dir)
        .engine(engine())
        .park_sweep_interval(None)
        .open()
        .unwrap()
}

fn tid(name: &str) -> TenantId {
    name.parse().unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/components/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn get(path: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .uri(path)
        .body(Bytes::new())
        .unwrap()
}

/// Deploys `name` (a fixture) as tenant `name` with `limits`.
fn deploy(reg: &Registry, name: &str, limits: Limits) -> TenantId {
    let id = tid(name);
    let source = fixture(name);
    assert_eq!(Kind::of_wasm(&source), Kind::Component, "{name}");
    reg.deploy(&id, Kind::Component, &source, limits).unwrap();
    id
}

#[tokio::test]
async fn hello_answers_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = deploy(&reg, "hello", Limits::default());
    let resp = reg.invoke(&id, get("/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    let stats = *resp.extensions().get::<InvocationStats>().unwrap();
    assert!(stats.fuel_consumed > 0, "{stats:?}");
    assert!(stats.peak_memory > 0, "{stats:?}");
    assert!(!resp.body().is_stream(), "a short answer is one whole body");
    assert_eq!(resp.into_body().to_bytes().await.unwrap(), "Hello from C\n");
    // stderr went to the tenant's log.
    let lines = reg.log(&id).unwrap().lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("hello: handling a request")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn headers_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = deploy(&reg, "headers", Limits::default());
    let req = http::Request::builder()
        .uri("/some/path?q=1&r=%20")
        .header("x-one", "1")
        .header("x-two", "zwei, deux")
        .header("x-two", "second")
        .header("accept", "*/*")
        .body(Bytes::new())
        .unwrap();
    let resp = reg.invoke(&id, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-one"], "1");
    let two: Vec<_> = resp.headers().get_all("x-two").iter().collect();
    assert_eq!(two, ["zwei, deux", "second"]);
    assert!(resp.headers().get("accept").is_none());
    assert_eq!(
        resp.into_body().to_bytes().await.unwrap(),
        "/some/path?q=1&r=%20"
    );
}

#[tokio::test]
async fn echo_streams_a_large_body() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let limits = Limits::builder()
        .max_output_bytes(128 << 20)
        .memory_bytes(16 << 20)
        .build();
    let id = deploy(&reg, "echo", limits);
    let size = 64usize << 20;
    let body: Bytes = (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let req = http::Request::builder()
        .method("POST")
        .uri("/")
        .body(body.clone())
        .unwrap();
    let resp = reg.invoke(&id, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.body().is_stream(), "64 MiB goes out as it is written");
    let figures = resp
        .extensions()
        .get::<corral::metering::StreamFigures>()
        .cloned()
        .unwrap();
    // Read it chunk by chunk: no chunk is the whole body.
    use http_body_util::BodyExt as _;
    let mut body_in = resp.into_body();
    let (mut got, mut largest, mut at) = (0usize, 0usize, 0usize);
    while let Some(frame) = body_in.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        assert_eq!(data, body.slice(at..at + data.len()), "at {at}");
        at += data.len();
        got += data.len();
        largest = largest.max(data.len());
    }
    assert_eq!(got, size);
    assert!(largest <= 1 << 20, "largest chunk {largest}");
    // The run's figures arrive with the end of the stream. The guest ran in
    // 16 MiB (its tier's memory, enforced): it spliced, never buffered.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(figures.fuel() > 0);
}

#[tokio::test]
async fn loop_is_stopped_by_fuel() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let limits = Limits::builder().fuel_per_request(5_000_000).build();
    let id = deploy(&reg, "loop", limits);
    let err = reg.invoke(&id, get("/")).await.unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::FuelExhausted {
                limit: 5_000_000,
                consumed: 5_000_000
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "fuel_exhausted");
}

#[tokio::test]
async fn loop_is_stopped_by_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let limits = Limits::builder()
        .fuel_per_request(u64::MAX / 2)
        .wall_clock(Duration::from_millis(100))
        .build();
    let id = deploy(&reg, "loop", limits);
    let started = std::time::Instant::now();
    let err = reg.invoke(&id, get("/")).await.unwrap_err();
    assert!(matches!(err, SandboxError::Deadline { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn memory_growth_is_capped_by_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let limit = 8u64 << 20;
    let id = deploy(&reg, "grow", Limits::builder().memory_bytes(limit).build());
    let err = reg.invoke(&id, get("/")).await.unwrap_err();
    assert!(
        matches!(err, SandboxError::MemoryLimit { limit: l } if l == limit),
        "{err:?}"
    );
    assert_eq!(err.code(), "memory_limit");
    // The next request gets a fresh instance and fails the same way.
    let again = reg.invoke(&id, get("/")).await.unwrap_err();
    assert!(matches!(again, SandboxError::MemoryLimit { .. }));
}

#[tokio::test]
async fn parked_component_cold_starts_from_its_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let limits = Limits::builder().idle_timeout(Duration::ZERO).build();
    let id = deploy(&reg, "hello", limits);
    assert_eq!(reg.status(&id).unwrap().state, TenantState::Parked);
    let compiles = reg.stats().compiles;
    for round in 1..=3u64 {
        let resp = reg.invoke(&id, get("/")).await.unwrap();
        assert!(
            resp.extensions()
                .get::<InvocationStats>()
                .unwrap()
                .cold_start
        );
        assert_eq!(resp.into_body().to_bytes().await.unwrap(), "Hello from C\n");
        assert_eq!(reg.park_idle(), 1);
        assert_eq!(reg.stats().cold_starts, round);
    }
    assert_eq!(reg.stats().compiles, compiles, "no recompilation");
    let st = reg.stats();
    eprintln!(
        "component cold start: mean {:?} over {}",
        st.cold_start_time_total / st.cold_starts as u32,
        st.cold_starts
    );
    // A registry reopened on the same directory serves it from disk too.
    drop(reg);
    let reg = registry(dir.path());
    assert_eq!(reg.status(&id).unwrap().kind, Kind::Component);
    let resp = reg.invoke(&id, get("/")).await.unwrap();
    assert_eq!(resp.into_body().to_bytes().await.unwrap(), "Hello from C\n");
    assert_eq!(reg.stats().compiles, 0);
}

#[tokio::test]
async fn not_a_proxy_component_is_refused_at_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let err = reg
        .deploy(
            &tid("empty"),
            Kind::Component,
            b"(component)",
            Limits::default(),
        )
        .unwrap_err();
    assert!(matches!(err, SandboxError::InvalidModule { .. }), "{err:?}");
    // A WAGI module is not a component either.
    let module = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
    assert_eq!(Kind::of_wasm(&module), Kind::Wasm);
    let err = reg
        .deploy(&tid("module"), Kind::Component, &module, Limits::default())
        .unwrap_err();
    assert!(matches!(err, SandboxError::InvalidModule { .. }), "{err:?}");
}

/// Outbound HTTP is refused unless the tier allows the host.
#[tokio::test]
async fn outbound_http_is_refused_unless_allowed() {
    // An upstream on loopback that answers every request with "upstream".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 201 Created\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream",
                    )
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let target = addr.to_string();
    let req = || {
        http::Request::builder()
            .uri("/from-guest")
            .header("x-target", target.as_str())
            .body(Bytes::new())
            .unwrap()
    };

    let closed = deploy(&reg, "outbound", Limits::default());
    let err = reg.invoke(&closed, req()).await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::OutboundRefused { authority } if *authority == target),
        "{err:?}"
    );
    assert_eq!(err.code(), "outbound_refused");
    assert_eq!(err.status(), 502);

    // Another host on the list does not open this one.
    let other = tid("outbound-other");
    reg.deploy(
        &other,
        Kind::Component,
        &fixture("outbound"),
        Limits::builder().allow_outbound_host("example.com").build(),
    )
    .unwrap();
    let err = reg.invoke(&other, req()).await.unwrap_err();
    assert!(
        matches!(err, SandboxError::OutboundRefused { .. }),
        "{err:?}"
    );

    let open = tid("outbound-open");
    reg.deploy(
        &open,
        Kind::Component,
        &fixture("outbound"),
        Limits::builder().allow_outbound_host("127.0.0.1").build(),
    )
    .unwrap();
    let resp = reg.invoke(&open, req()).await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.into_body().to_bytes().await.unwrap(), "upstream");
    server.abort();
}

/// The response body of a streaming guest can be cut by the output cap.
#[tokio::test]
async fn output_cap_ends_a_streamed_body() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = deploy(
        &reg,
        "echo",
        Limits::builder().max_output_bytes(1 << 20).build(),
    );
    let req = http::Request::builder()
        .method("POST")
        .uri("/")
        .body(Bytes::from(vec![7u8; 4 << 20]))
        .unwrap();
    let err = match reg.invoke(&id, req).await {
        Err(e) => e,
        Ok(resp) => Body::to_bytes(resp.into_body()).await.unwrap_err(),
    };
    assert!(
        matches!(err, SandboxError::OutputTooLarge { limit } if limit == 1 << 20),
        "{err:?}"
    );
}

/// The JavaScript fixture, built by componentize-js (SpiderMonkey inside):
/// the same backend serves it unchanged (compiling its 13 MB takes ~12 s in
/// the debug test build).
#[tokio::test]
async fn javascript_component_from_componentize_js() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = deploy(&reg, "hello-js", Limits::default());
    let resp = reg.invoke(&id, get("/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(
        resp.into_body().to_bytes().await.unwrap(),
        "Hello from JavaScript\n"
    );
}

/// A platform on a fresh directory with one tier, `kv`: room for the kv
/// fixture and a body just over the store's 1 MiB per-value cap, and a
/// 64 KiB storage quota.
fn kv_platform(dir: &std::path::Path) -> Platform {
    let mut cfg = PlatformConfig::with_data_dir(dir);
    // About the KV, not the host: a loaded box must not refuse the deploy.
    let never = corral::metering::Level::new(1.0, 1.0);
    cfg.thresholds.ram = never;
    cfg.thresholds.disk = never;
    cfg.thresholds.cpu = never;
    let mut tier = Tier::free();
    tier.max_body_bytes = 2 << 20;
    tier.max_bundle_bytes = 1 << 20;
    tier.storage_bytes = Some(64 << 10);
    tier.rate_per_minute = None;
    cfg.tiers.insert("kv".into(), tier);
    Platform::builder().config(cfg).build().unwrap()
}

fn put(path: &str, body: impl Into<Bytes>) -> http::Request<Bytes> {
    http::Request::put(path).body(body.into()).unwrap()
}

fn text(r: &http::Response<Bytes>) -> &str {
    std::str::from_utf8(r.body()).unwrap()
}

/// The tenant KV through `wasi:keyvalue/store`, on the platform's real
/// store: a value one request writes, the next reads, and it survives
/// parking (the read after is a cold start from the artifact, without
/// recompiling). A value over the store's per-value cap or the tier's
/// storage quota, and an invalid key, are refused with their codes and
/// leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_round_trip_survives_parking_and_refuses_past_its_caps() {
    let dir = tempfile::tempdir().unwrap();
    let p = kv_platform(dir.path());
    let app = tid("kv");
    let source = fixture("kv");
    assert_eq!(Kind::of_wasm(&source), Kind::Component);
    p.deploy(&app, Some("kv"), Bundle::code(Kind::Component, source))
        .await
        .unwrap();

    let r = p.invoke(&app, put("/greeting", "hej")).await.unwrap();
    assert_eq!(r.status(), 204, "{}", text(&r));
    let r = p.invoke(&app, get("/greeting")).await.unwrap();
    assert_eq!((r.status().as_u16(), text(&r)), (200, "hej"));
    // The same store as JavaScript's env.KV and the admin's export.
    assert_eq!(
        &p.store().kv_get(&app, "greeting").unwrap().unwrap().bytes[..],
        b"hej"
    );
    let r = p.invoke(&app, get("/missing")).await.unwrap();
    assert_eq!((r.status().as_u16(), text(&r)), (404, "no such key\n"));
    p.invoke(&app, put("/another", "x")).await.unwrap();
    let r = p.invoke(&app, get("/")).await.unwrap();
    assert_eq!(text(&r), "another\ngreeting\n");
    // Metered as storage like env.KV: keys and values, 11 + 8 bytes.
    assert_eq!(p.store().kv_bytes(&app).unwrap(), 19);
    assert_eq!(p.usage(&app).unwrap().usage.storage_bytes, 19);

    // Parked, then woken from the artifact: the value is still there.
    let compiles = p.registry().stats().compiles;
    assert!(p.park(&app).unwrap());
    assert_eq!(p.status(&app).unwrap().state, "parked");
    let r = p.invoke(&app, get("/greeting")).await.unwrap();
    assert!(r.extensions().get::<InvocationStats>().unwrap().cold_start);
    assert_eq!((r.status().as_u16(), text(&r)), (200, "hej"));
    assert_eq!(p.registry().stats().compiles, compiles, "no recompilation");

    // One byte over the store's per-value cap (1 MiB).
    let r = p
        .invoke(&app, put("/big", vec![b'x'; (1 << 20) + 1]))
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        text(&r),
        "value_too_large: value of 1048577 bytes exceeds the limit of 1048576 bytes"
    );
    assert!(p.store().kv_get(&app, "big").unwrap().is_none());

    // The tier's 64 KiB storage quota: 40 KiB fits, 40 KiB more does not.
    let r = p
        .invoke(&app, put("/a", vec![b'a'; 40 << 10]))
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", text(&r));
    let r = p
        .invoke(&app, put("/b", vec![b'b'; 40 << 10]))
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(
        text(&r).starts_with("storage_quota_exceeded: storage quota of 65536 bytes"),
        "{}",
        text(&r)
    );
    assert!(p.store().kv_get(&app, "b").unwrap().is_none());

    // A key past the store's 512 bytes.
    let long = format!("/{}", "k".repeat(600));
    let r = p.invoke(&app, put(&long, "v")).await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(text(&r).starts_with("invalid_key: "), "{}", text(&r));

    // Only the tenant's own store has a name.
    let other = http::Request::get("/greeting")
        .header("x-store", "someone-else")
        .body(Bytes::new())
        .unwrap();
    let r = p.invoke(&app, other).await.unwrap();
    assert_eq!((r.status().as_u16(), text(&r)), (500, "no-such-store"));

    let del = http::Request::delete("/greeting")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(p.invoke(&app, del).await.unwrap().status(), 204);
    let r = p.invoke(&app, get("/greeting")).await.unwrap();
    assert_eq!(r.status(), 404);
    p.shutdown().await;
}

/// A component importing `wasi:keyvalue/atomics` is refused at deploy:
/// Corral's KV has no atomic increment to back it.
#[tokio::test]
async fn keyvalue_atomics_is_refused_at_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    // Its increment's signature does not matter: no implementation of the
    // interface is linked at all.
    let wat = r#"(component
        (import "wasi:keyvalue/atomics@0.2.0-draft" (instance
            (export "increment" (func (param "key" string) (param "delta" u64) (result u64)))))
    )"#;
    let err = reg
        .deploy(
            &tid("atomics"),
            Kind::Component,
            wat.as_bytes(),
            Limits::default(),
        )
        .unwrap_err();
    match err {
        SandboxError::InvalidModule { reason } => {
            assert!(reason.contains("wasi:keyvalue/atomics"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
