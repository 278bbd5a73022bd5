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

/// The tenant KV from a component over HTTP (`wasi:keyvalue/store`): a
/// value one request writes, another reads, also after a restart (the
/// component cold-starts from its stored artifact); a value over the tier's
/// storage quota is refused with its code and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn component_kv_round_trip_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    // A tier with a 4 KiB storage quota.
    let config = format!(
        "{}
[tiers.compkv]
compute_shares = 2
memory_bytes = 67108864
fuel_per_request = 1000000000
wall_clock = \"5s\"
burst = 0
max_body_bytes = 4096
max_bundle_bytes = 1048576
idle_timeout = \"10m\"
max_streams = 1
storage_bytes = 4096
",
        config()
    );
    let s = Server::start_with(tmp.path(), None, &config);
    let (status, info) = s
        .admin(
            Method::PUT,
            "/api/apps/kv?tier=compkv",
            &fixture("kv"),
            "application/wasm",
        )
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["kind"], "component");
    let put = |path: &str, body: &'static [u8]| {
        Request::put(s.url(path))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    };
    let (status, _, _) = s.send(put("/apps/kv/greeting", b"hej")).await;
    assert_eq!(status, 204);
    let (status, body) = s.get("/apps/kv/greeting").await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"hej"[..]));

    // Keys and values count against the quota: four 1,000-byte values fit
    // in 4 KiB beside the greeting, a fifth does not.
    let (status, _, body) = s.send(put("/apps/kv/big", &[b'x'; 1000])).await;
    assert_eq!(status, 204, "{body:?}");
    for key in ["/apps/kv/b2", "/apps/kv/b3", "/apps/kv/b4"] {
        s.send(put(key, &[b'x'; 1000])).await;
    }
    let (status, _, body) = s.send(put("/apps/kv/b5", &[b'x'; 1000])).await;
    assert_eq!(status, 500);
    assert!(
        body.starts_with(b"storage_quota_exceeded: storage quota of 4096 bytes"),
        "{body:?}"
    );
    let (status, _) = s.get("/apps/kv/b5").await;
    assert_eq!(status, 404);

    let (dir, token) = s.stop();
    let s = Server::start_with(&dir, Some(&token), &config);
    let (status, body) = s.get("/apps/kv/greeting").await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"hej"[..]));
}
