//! WebAssembly components deployed through the real server: `PUT` with
//! `content-type: application/wasm` picks the component backend from the
//! binary's header, and a component's limits come back as the same JSON
//! errors as a module's.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use crate::common::{CONFIG, Server};

/// The test tiers plus two with room for a component (~100 KB) and a
/// 1 MiB body; `compspin` has the `spin` tier's small fuel.
fn config() -> String {
    format!(
        "{CONFIG}
[tiers.comp]
compute_shares = 4
memory_bytes = 268435456
fuel_per_request = 1000000000
wall_clock = \"5s\"
burst = 0
max_body_bytes = 2097152
max_bundle_bytes = 1048576
idle_timeout = \"10m\"
max_streams = 2

[tiers.compspin]
compute_shares = 1
memory_bytes = 67108864
fuel_per_request = 20000000
wall_clock = \"200ms\"
burst = 0
max_body_bytes = 1024
max_bundle_bytes = 1048576
idle_timeout = \"10m\"
max_streams = 1
"
    )
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../sandbox-core/tests/fixtures/components/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn component_deploys_by_itself_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with(tmp.path(), None, &config());

    let hello = fixture("hello");
    let (status, info) = s
        .admin(
            Method::PUT,
            "/api/apps/hello-c?tier=comp",
            &hello,
            "application/wasm",
        )
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["kind"], "component");
    let (status, body) = s.get("/apps/hello-c/").await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"Hello from C\n");

    // Headers and the path reach the guest and come back.
    let (_, info) = s
        .admin(
            Method::PUT,
            "/api/apps/headers?tier=comp",
            &fixture("headers"),
            "application/wasm",
        )
        .await;
    assert_eq!(info["kind"], "component", "{info}");
    let req = Request::get(s.url("/apps/headers/a/b?c=d"))
        .header("x-round", "trip")
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = s.send(req).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-round"], "trip");
    assert!(body.ends_with(b"/a/b?c=d"), "{body:?}");

    // A streamed echo of 1 MiB.
    s.admin(
        Method::PUT,
        "/api/apps/echo?tier=comp",
        &fixture("echo"),
        "application/wasm",
    )
    .await;
    let big: Bytes = (0..1usize << 20)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<_>>()
        .into();
    let req = Request::post(s.url("/apps/echo/"))
        .body(Full::new(big.clone()))
        .unwrap();
    let (status, _, body) = s.send(req).await;
    assert_eq!(status, 200);
    assert_eq!(body, big);

    // The spin tier's fuel stops a looping component: the same JSON error
    // as for a module.
    // (`compspin` has the `spin` tier's fuel.)
    s.admin(
        Method::PUT,
        "/api/apps/looper?tier=compspin",
        &fixture("loop"),
        "application/wasm",
    )
    .await;
    let (status, body) = s.get("/apps/looper/").await;
    assert_eq!(status, 503);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "fuel_exhausted", "{v}");

    // Outbound HTTP: refused, with its own code.
    s.admin(
        Method::PUT,
        "/api/apps/out?tier=comp",
        &fixture("outbound"),
        "application/wasm",
    )
    .await;
    let req = Request::get(s.url("/apps/out/"))
        .header("x-target", "127.0.0.1:9")
        .body(Full::default())
        .unwrap();
    let (status, _, body) = s.send(req).await;
    assert_eq!(status, 502);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "outbound_refused", "{v}");
}
