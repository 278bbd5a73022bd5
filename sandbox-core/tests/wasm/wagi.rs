//! The WAGI ABI as a guest sees it: CGI variables only, the body on stdin, no
//! filesystem, stderr into the tenant log.

use std::collections::BTreeMap;

use bytes::Bytes;
use corral::{InvocationStats, Kind, LINE_OVERHEAD, Limits, SandboxError, SandboxService};
use tower_service::Service;

use crate::{chaos, fixture, registry, text, tid};

#[tokio::test]
async fn guest_sees_exactly_the_cgi_variables_and_no_host_environment() {
    // The host has an environment; none of it may reach the guest.
    assert!(std::env::var_os("PATH").is_some());
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("env");
    reg.deploy(&id, Kind::Wasm, &chaos(), Limits::default())
        .unwrap();
    let mut req = http::Request::builder()
        .method("PUT")
        .uri("http://ignored/items/7?verbose=1")
        .header("host", "env.apps.test:8443")
        .header("content-type", "text/plain")
        .header("x-request-id", "r-42")
        .body(Bytes::from_static(b"e"))
        .unwrap();
    req.extensions_mut()
        .insert("192.0.2.9:40000".parse::<std::net::SocketAddr>().unwrap());
    let resp = reg.invoke(&id, req).await.unwrap();
    let body = resp.into_body().to_bytes().await.unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let env: BTreeMap<&str, &str> = body.lines().map(|l| l.split_once('=').unwrap()).collect();
    let expected: BTreeMap<&str, &str> = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "PUT"),
        ("SCRIPT_NAME", ""),
        ("PATH_INFO", "/items/7"),
        ("QUERY_STRING", "verbose=1"),
        ("CONTENT_LENGTH", "1"),
        ("CONTENT_TYPE", "text/plain"),
        ("SERVER_NAME", "env.apps.test"),
        ("SERVER_PORT", "8443"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_SOFTWARE", "corral"),
        ("REMOTE_ADDR", "192.0.2.9"),
        ("REMOTE_PORT", "40000"),
        ("HTTP_HOST", "env.apps.test:8443"),
        ("HTTP_X_REQUEST_ID", "r-42"),
    ]
    .into_iter()
    .collect();
    assert_eq!(env, expected);
}

#[tokio::test]
async fn guest_cannot_open_etc_passwd() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("snoop");
    reg.deploy(&id, Kind::Wasm, &chaos(), Limits::default())
        .unwrap();
    let resp = crate::call(&reg, &id, b"p").await.unwrap();
    // WASI errno 8 = EBADF: there is no preopened directory (fd 3) at all.
    assert_eq!(resp.body().as_ref(), &[8, 8]);
}

#[tokio::test]
async fn body_arrives_on_stdin_and_the_response_carries_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("echo");
    reg.deploy(&id, Kind::Wasm, &chaos(), Limits::default())
        .unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut body = vec![b'c'];
    body.extend_from_slice(&payload);
    let req = http::Request::builder()
        .method("POST")
        .uri("/echo")
        .body(Bytes::from(body))
        .unwrap();
    let resp = reg.invoke(&id, req).await.unwrap();
    let resp = corral::Body::collect_response(resp).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.body().as_ref(), &payload[..]);
    let stats = *resp.extensions().get::<InvocationStats>().unwrap();
    assert!(stats.fuel_consumed > 0);
    assert!(stats.cold_start, "a deploy leaves the tenant parked");
    // Two pages declared, no growth.
    assert_eq!(stats.peak_memory, 2 << 16);
}

#[tokio::test]
async fn stderr_lines_land_in_the_bounded_tenant_log() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("chatty");
    // Room for two 8-byte lines, each charged LINE_OVERHEAD on top.
    let limits = Limits::builder()
        .max_log_bytes(2 * (LINE_OVERHEAD + 8))
        .build();
    reg.deploy(&id, Kind::Wasm, &chaos(), limits).unwrap();
    assert_eq!(text(&reg, &id, b"w").await, "hello\n");
    let log = reg.log(&id).unwrap();
    assert_eq!(log.lines(), vec!["line one", "line two"]);
    assert_eq!(text(&reg, &id, b"w").await, "hello\n");
    // The log holds two 8-byte lines: the oldest two were dropped.
    assert_eq!(log.lines(), vec!["line one", "line two"]);
    assert_eq!(log.dropped(), 2);
}

#[tokio::test]
async fn sandbox_service_routes_by_the_tenant_extension() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("svc");
    reg.deploy(&id, Kind::Wasm, &chaos(), Limits::default())
        .unwrap();
    let mut svc = SandboxService::new(reg);
    let mut req = http::Request::new(Bytes::from_static(b"h"));
    req.extensions_mut().insert(id.clone());
    let resp = svc.call(req).await.unwrap();
    assert_eq!(resp.into_body().to_bytes().await.unwrap(), "hello\n");
    let err = svc
        .call(http::Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::MissingTenant));
    let mut req = http::Request::new(Bytes::new());
    req.extensions_mut().insert(tid("absent"));
    let err = svc.call(req).await.unwrap_err();
    assert!(matches!(&err, SandboxError::TenantNotFound { tenant } if tenant.as_str() == "absent"));
    assert_eq!(err.status(), http::StatusCode::NOT_FOUND);
}

/// 16 MiB of stderr in 64 KiB writes, as the `logflood.wat` fixture writes it.
const FLOOD_BYTES: u64 = 256 * 65_536;

#[tokio::test]
async fn a_stderr_flood_of_empty_lines_keeps_the_log_within_its_caps() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("flood");
    reg.deploy(&id, Kind::Wasm, &fixture("logflood.wat"), Limits::default())
        .unwrap();
    let log = reg.log(&id).unwrap();
    // 64 KiB by default: 1,024 lines of LINE_OVERHEAD bytes each.
    assert_eq!(log.max_lines(), 1024);
    for round in 1..=2u64 {
        assert_eq!(text(&reg, &id, b"n").await, "ok");
        assert!(log.len() <= log.max_lines());
        assert!(log.bytes() <= log.max_bytes());
        // Each request kept one log's worth of empty lines and counted the
        // rest; its note pushed two of them out (and, from the second
        // request on, its lines pushed out the first request's).
        let lines = log.lines();
        assert_eq!(lines.len(), 1022 + 1);
        assert!(lines[..1022].iter().all(String::is_empty));
        let refused = FLOOD_BYTES - 1024;
        assert_eq!(
            lines[1022],
            format!("[corral] {refused} more log lines from this request were dropped")
        );
        assert_eq!(log.dropped(), round * (refused + 2) + (round - 1) * 1023);
    }
}

#[tokio::test]
async fn a_stderr_flood_of_tiny_lines_keeps_the_log_within_its_caps() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("tiny");
    let limits = Limits::builder().max_log_bytes(16 << 10).build();
    reg.deploy(&id, Kind::Wasm, &fixture("logflood.wat"), limits)
        .unwrap();
    assert_eq!(text(&reg, &id, b"t").await, "ok");
    let log = reg.log(&id).unwrap();
    assert!(log.bytes() <= 16 << 10);
    // "x" costs 1 + LINE_OVERHEAD: 16 KiB take 252 of them; the note's
    // 64 + 63 bytes push out two.
    let accepted = (16 << 10) / (1 + LINE_OVERHEAD as u64);
    assert_eq!(accepted, 252);
    let lines = log.lines();
    assert_eq!(lines.len(), 250 + 1);
    assert!(lines[..250].iter().all(|l| l == "x"));
    let refused = FLOOD_BYTES / 2 - accepted;
    assert_eq!(
        lines[250],
        format!("[corral] {refused} more log lines from this request were dropped")
    );
    assert_eq!(log.dropped(), refused + 2);
    // No flood: the log is unchanged.
    assert_eq!(text(&reg, &id, b"").await, "ok");
    assert_eq!(log.lines(), lines);
}
