//! Integration tests of the WebAssembly core: limits, the WAGI ABI, the
//! registry (deploy, replace, park, wake, restart) and concurrency.

mod events;
mod failures;
mod hygiene;
mod lifecycle;
mod wagi;

use std::sync::OnceLock;

use bytes::Bytes;
use corral::{EngineConfig, Registry, SandboxError, TenantId, WasmEngine};

/// One engine for the whole test binary, as in production.
pub(crate) fn engine() -> WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| WasmEngine::new(EngineConfig::default().instances(96)).unwrap())
        .clone()
}

/// A registry on the shared engine with no background sweep.
pub(crate) fn registry(dir: &std::path::Path) -> Registry {
    Registry::builder(dir)
        .engine(engine())
        .park_sweep_interval(None)
        .open()
        .unwrap()
}

pub(crate) fn tid(name: &str) -> TenantId {
    name.parse().unwrap()
}

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    wat::parse_file(path).unwrap()
}

/// The misbehaving-on-request fixture, compiled once.
pub(crate) fn chaos() -> Vec<u8> {
    static CHAOS: OnceLock<Vec<u8>> = OnceLock::new();
    CHAOS.get_or_init(|| fixture("chaos.wat")).clone()
}

/// A WAGI module answering `text`, after sleeping `sleep_ms` in poll_oneoff.
pub(crate) fn reply_module(text: &str, sleep_ms: u64) -> Vec<u8> {
    let body = format!("Content-Type: text/plain\n\n{text}");
    let escaped: String = body.bytes().map(|b| format!("\\{b:02x}")).collect();
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $p (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{escaped}")
  (func (export "_start")
    (if (i64.ne (i64.const {ns}) (i64.const 0))
      (then
        (i32.store (i32.const 40) (i32.const 1))
        (i64.store (i32.const 48) (i64.const {ns}))
        (drop (call $p (i32.const 24) (i32.const 128) (i32.const 1) (i32.const 16)))))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        ns = sleep_ms * 1_000_000,
        len = body.len(),
    );
    wat::parse_str(wat).unwrap()
}

/// Invokes `tenant` with `body` as the request body.
pub(crate) async fn call(
    registry: &Registry,
    tenant: &TenantId,
    body: &'static [u8],
) -> Result<http::Response<Bytes>, SandboxError> {
    let req = http::Request::builder()
        .method("POST")
        .uri("/run")
        .body(Bytes::from_static(body))
        .unwrap();
    let resp = registry.invoke(tenant, req).await?;
    corral::Body::collect_response(resp).await
}

/// The body of a successful call, as a string.
pub(crate) async fn text(registry: &Registry, tenant: &TenantId, body: &'static [u8]) -> String {
    let resp = call(registry, tenant, body).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    String::from_utf8(resp.into_body().to_vec()).unwrap()
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Registry>();
    check::<corral::SandboxService>();
    check::<WasmEngine>();
    check::<corral::WasmBackend>();
    check::<SandboxError>();
    check::<corral::DeployInfo>();
    check::<corral::TenantStatus>();
    check::<corral::RegistryStats>();
}
