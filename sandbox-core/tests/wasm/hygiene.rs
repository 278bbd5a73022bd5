//! The host owns a WAGI response's framing: header caps, and no guest
//! `content-length` / hop-by-hop header reaches the wire.

use corral::{Kind, Limits, SandboxError};

use crate::{call, fixture, registry, tid};

/// A WAGI module that writes `out` to stdout as is.
fn raw_module(out: &[u8]) -> Vec<u8> {
    let escaped: String = out.iter().map(|b| format!("\\{b:02x}")).collect();
    wat::parse_str(format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{escaped}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        len = out.len(),
    ))
    .unwrap()
}

#[tokio::test]
async fn thirty_thousand_header_lines_are_a_bad_response() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("flood");
    reg.deploy(&id, Kind::Wasm, &fixture("headers.wat"), Limits::default())
        .unwrap();
    let err = call(&reg, &id, b"").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::BadResponse { reason } if reason.contains("more than 256")),
        "{err:?}"
    );
    assert_eq!(err.status(), 502);
}

#[tokio::test]
async fn a_flood_of_status_lines_is_stopped_too() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("statuses");
    let head = "Status: 200\n".repeat(300) + "Content-Type: text/plain\n\nbody";
    reg.deploy(
        &id,
        Kind::Wasm,
        &raw_module(head.as_bytes()),
        Limits::default(),
    )
    .unwrap();
    let err = call(&reg, &id, b"").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::BadResponse { reason } if reason.contains("more than 256")),
        "{err:?}"
    );
}

#[tokio::test]
async fn framing_headers_from_the_guest_are_dropped_and_the_body_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("framing");
    let out = b"Content-Type: text/plain\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\
Connection: close\r\nKeep-Alive: timeout=1\r\nUpgrade: h2c\r\nTE: trailers\r\nTrailer: x-t\r\n\
Proxy-Connection: keep-alive\r\nX-Kept: 1\r\n\r\nHTTP/1.1 200 OK\r\nX-Forged: 1\r\n\r\n";
    reg.deploy(&id, Kind::Wasm, &raw_module(out), Limits::default())
        .unwrap();
    let resp = call(&reg, &id, b"").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.body().as_ref(),
        b"HTTP/1.1 200 OK\r\nX-Forged: 1\r\n\r\n",
        "the whole body, which the host frames itself"
    );
    let mut names: Vec<&str> = resp.headers().keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-type", "x-kept"]);
}

#[tokio::test]
async fn an_informational_status_is_a_bad_response() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("switch");
    reg.deploy(
        &id,
        Kind::Wasm,
        &raw_module(b"Status: 101 Switching Protocols\nUpgrade: websocket\n\n"),
        Limits::default(),
    )
    .unwrap();
    let err = call(&reg, &id, b"").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::BadResponse { reason } if reason.contains("101")),
        "{err:?}"
    );
}
