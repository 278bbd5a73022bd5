//! Engine conformance: the same HTTP-level cases, through the engine-neutral
//! `Backend` / `Program` traits, against every backend this build has
//! (WebAssembly always; QuickJS with `js`; V8 with `v8`, which needs a
//! prebuilt rusty_v8 library to link, see `corral::v8_engine`). Each backend gets the same app in
//! its own language: `app.wat` (WAGI) and `app.js` (Workers-style).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral::{
    Backend, EngineConfig, InvocationStats, InvokeContext, Limits, Program, SandboxError,
    TenantLog, WasmBackend, WasmEngine,
};

/// A backend under test and the app source it runs.
struct Subject {
    name: &'static str,
    backend: Arc<dyn Backend>,
    source: Vec<u8>,
}

fn subjects() -> Vec<Subject> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance");
    let engine = WasmEngine::new(EngineConfig::default().instances(8)).unwrap();
    let mut out = vec![Subject {
        name: "wasm",
        backend: Arc::new(WasmBackend::new(engine).unwrap()),
        source: wat::parse_file(format!("{dir}/app.wat")).unwrap(),
    }];
    #[cfg(feature = "js")]
    out.push(Subject {
        name: "quickjs",
        backend: Arc::new(corral::QuickJsBackend::new()),
        source: std::fs::read(format!("{dir}/app.js")).unwrap(),
    });
    #[cfg(feature = "v8")]
    out.push(Subject {
        name: "v8",
        backend: Arc::new(corral::V8Backend::new()),
        source: std::fs::read(format!("{dir}/app.js")).unwrap(),
    });
    out
}

fn limits() -> Limits {
    Limits::builder()
        .wall_clock(Duration::from_millis(300))
        .max_stack_bytes(256 << 10)
        .build()
}

fn deploy(s: &Subject) -> (Arc<dyn Program>, InvokeContext) {
    let limits = limits();
    let artifact = s.backend.precompile(&s.source, &limits).unwrap();
    let program = s.backend.load(&artifact, &limits).unwrap();
    let cx = InvokeContext::new(
        format!("conf-{}", s.name).parse().unwrap(),
        Arc::new(limits),
        Arc::new(TenantLog::new(4096)),
    );
    (program, cx)
}

async fn call(
    p: &Arc<dyn Program>,
    cx: &InvokeContext,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<http::Response<Bytes>, SandboxError> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "conformance.example")
        .body(Bytes::from(body))
        .unwrap();
    let resp = p.clone().invoke(cx.clone(), req).await?;
    corral::Body::collect_response(resp).await
}

#[tokio::test]
async fn hello() {
    for s in subjects() {
        let (p, cx) = deploy(&s);
        let resp = call(&p, &cx, "GET", "/hello", vec![]).await.unwrap();
        assert_eq!(resp.status(), 200, "{}", s.name);
        assert_eq!(resp.headers()["content-type"], "text/plain", "{}", s.name);
        assert_eq!(resp.body().as_ref(), b"hello\n", "{}", s.name);
        let stats = resp.extensions().get::<InvocationStats>().copied();
        assert!(
            stats.is_some_and(|s| s.wall_time > Duration::ZERO),
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn binary_body_round_trips() {
    let body: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    for s in subjects() {
        let (p, cx) = deploy(&s);
        let resp = call(&p, &cx, "POST", "/echo", body.clone()).await.unwrap();
        assert_eq!(resp.status(), 200, "{}", s.name);
        assert_eq!(
            resp.headers()["content-type"],
            "application/octet-stream",
            "{}",
            s.name
        );
        assert_eq!(resp.body().as_ref(), body.as_slice(), "{}", s.name);
    }
}

#[tokio::test]
async fn status_and_headers() {
    for s in subjects() {
        let (p, cx) = deploy(&s);
        let resp = call(&p, &cx, "GET", "/teapot", vec![]).await.unwrap();
        assert_eq!(resp.status(), 418, "{}", s.name);
        assert_eq!(resp.headers()["x-kind"], "teapot", "{}", s.name);
        assert_eq!(resp.body().as_ref(), b"short and stout\n", "{}", s.name);
        let resp = call(&p, &cx, "GET", "/nowhere", vec![]).await.unwrap();
        assert_eq!(resp.status(), 404, "{}", s.name);
        assert_eq!(resp.body().as_ref(), b"not found\n", "{}", s.name);
    }
}

#[tokio::test]
async fn runaway_guest_is_stopped_and_the_next_request_works() {
    for s in subjects() {
        let (p, cx) = deploy(&s);
        let started = std::time::Instant::now();
        let err = call(&p, &cx, "GET", "/spin", vec![]).await.unwrap_err();
        assert!(
            matches!(
                err,
                SandboxError::Deadline { .. } | SandboxError::FuelExhausted { .. }
            ),
            "{}: {err:?}",
            s.name
        );
        assert_eq!(err.status(), 503, "{}", s.name);
        assert!(started.elapsed() < Duration::from_millis(600), "{}", s.name);
        let resp = call(&p, &cx, "GET", "/hello", vec![]).await.unwrap();
        assert_eq!(resp.body().as_ref(), b"hello\n", "{}", s.name);
    }
}

#[tokio::test]
async fn unbounded_recursion_is_a_stack_overflow() {
    for s in subjects() {
        let (p, cx) = deploy(&s);
        let err = call(&p, &cx, "GET", "/recurse", vec![]).await.unwrap_err();
        assert!(
            matches!(err, SandboxError::StackOverflow),
            "{}: {err:?}",
            s.name
        );
        assert_eq!(err.code(), "stack_overflow", "{}", s.name);
        let resp = call(&p, &cx, "GET", "/hello", vec![]).await.unwrap();
        assert_eq!(resp.status(), 200, "{}", s.name);
    }
}
