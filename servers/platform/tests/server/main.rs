//! End-to-end tests: each starts the real `corral-server` binary on a loopback
//! port chosen by the OS and talks to it with a real HTTP client.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

#[path = "../common/mod.rs"]
mod common;
mod hygiene;
use common::{BIN, Server, js_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_deploy_invoke_usage_redeploy_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);

    // First start deploys the demo.
    let (status, body) = s.get("/apps/demo/").await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"Hello from Corral! (GET)\n");

    // Deploy, invoke three ways.
    let js = js_text("v1");
    let (status, info) = s.deploy_js("hello", "test", &js).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["name"], "hello");
    assert_eq!(info["tier"], "test");
    assert_eq!(info["kind"], "js");
    assert_eq!(info["bytes"], js.len());
    assert_eq!(info["crc32"], crc32fast::hash(js.as_bytes()));
    assert_eq!(
        s.get("/apps/hello/").await,
        (StatusCode::OK, Bytes::from("v1"))
    );
    let by_header = Request::get(s.url("/x"))
        .header("x-corral-app", "hello")
        .body(Full::default())
        .unwrap();
    assert_eq!(s.send(by_header).await.2, Bytes::from("v1"));
    let by_host = Request::get(s.url("/x"))
        .header("host", "hello.corral.test")
        .body(Full::default())
        .unwrap();
    assert_eq!(s.send(by_host).await.2, Bytes::from("v1"));

    let (status, usage) = s
        .admin(Method::GET, "/api/apps/hello/usage", b"", "text/plain")
        .await;
    assert_eq!(status, 200);
    assert_eq!(usage["usage"]["requests"], 3, "{usage}");
    let (_, st) = s
        .admin(Method::GET, "/api/apps/hello/status", b"", "text/plain")
        .await;
    assert_eq!(st["state"], "warm", "{st}");
    let names = s.app_names().await;
    assert_eq!(names, ["demo", "hello"]);

    // Redeploy under load: every response is v1 or v2, none fails.
    let s = Arc::new(s);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (s, stop) = (s.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(s.get("/apps/hello/").await);
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, info) = s.deploy_js("hello", "test", &js_text("v2")).await;
    assert_eq!(status, 200, "{info}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for h in load {
        let seen = h.await.unwrap();
        total += seen.len();
        for (status, body) in seen {
            assert_eq!(status, 200);
            assert!(body == "v1" || body == "v2", "{body:?}");
        }
    }
    assert!(total > 8, "only {total} requests during the redeploy");
    assert_eq!(
        s.get("/apps/hello/").await,
        (StatusCode::OK, Bytes::from("v2"))
    );

    // Delete → 404 JSON.
    let (status, _) = s
        .admin(Method::DELETE, "/api/apps/hello", b"", "text/plain")
        .await;
    assert_eq!(status, 200);
    let (status, body) = s.get("/apps/hello/").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "not_found");

    // Traversal → 400 before any lookup; unknown route → 404 JSON.
    let (status, body) = s.get("/apps/nope/%2e%2e/api/apps").await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "bad_path"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_admin_route_needs_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let (status, doc) = s
        .admin(Method::GET, "/api/openapi.json", b"", "text/plain")
        .await;
    assert_eq!(status, 200);
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let uri = s.url(&path.replace("{name}", "demo"));
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            if op.get("security") == Some(&serde_json::json!([])) {
                continue;
            }
            for auth in [None, Some("Bearer corral_wrong"), Some("Basic abc")] {
                let mut b = Request::builder().method(method.clone()).uri(&uri);
                if let Some(a) = auth {
                    b = b.header("authorization", a);
                }
                let (status, headers, body) = s.send(b.body(Full::default()).unwrap()).await;
                assert_eq!(status, 401, "{method} {path} with {auth:?}");
                assert_eq!(headers["www-authenticate"], "Bearer");
                assert_eq!(
                    serde_json::from_slice::<Value>(&body).unwrap()["error"],
                    "unauthorized"
                );
            }
            walked += 1;
        }
    }
    // Every route the router guards, and none skipped: the document and the
    // router are built from the same table, so this walks all of them.
    let guarded = corral_server::routes::ROUTES
        .iter()
        .filter(|r| r.auth)
        .count();
    assert_eq!(walked, guarded);
    assert!(walked >= 13, "only {walked} admin routes walked");
    assert_eq!(
        s.get("/healthz").await,
        (StatusCode::OK, Bytes::from("ok\n"))
    );
    assert_eq!(
        s.get("/readyz").await,
        (StatusCode::OK, Bytes::from("ready\n"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(Server::start(tmp.path(), None));
    let slow = "export default { async fetch(req) { await new Promise(r => setTimeout(r, 1000)); return new Response('slow'); } };";
    assert_eq!(s.deploy_js("slow", "one", slow).await.0, 200);
    assert_eq!(s.deploy_js("fast", "test", &js_text("fast")).await.0, 200);

    // At its compute shares: 429 + Retry-After, while another tenant is served.
    let s2 = s.clone();
    let first = tokio::spawn(async move { s2.get("/apps/slow/").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, headers, body) = s
        .send(
            Request::get(s.url("/apps/slow/"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(status, 429, "{body:?}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "overloaded"
    );
    assert_eq!(
        s.get("/apps/fast/").await,
        (StatusCode::OK, Bytes::from("fast"))
    );
    assert_eq!(first.await.unwrap(), (StatusCode::OK, Bytes::from("slow")));

    // Monthly quota: the fourth request gets 429 naming the quota.
    assert_eq!(s.deploy_js("metered", "quota3", &js_text("m")).await.0, 200);
    for _ in 0..3 {
        assert_eq!(s.get("/apps/metered/").await.0, 200);
    }
    let (status, body) = s.get("/apps/metered/").await;
    assert_eq!(status, 429);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "quota_exceeded", "{v}");

    // Request body over the tier cap (1024) → 413.
    let big = Request::post(s.url("/apps/fast/"))
        .body(Full::new(Bytes::from(vec![b'x'; 2048])))
        .unwrap();
    let (status, _, body) = s.send(big).await;
    assert_eq!(status, 413);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "body_too_large"
    );
    let ok = Request::post(s.url("/apps/fast/"))
        .body(Full::new(Bytes::from(vec![b'x'; 1024])))
        .unwrap();
    assert_eq!(s.send(ok).await.0, 200);

    // Bundle over the tier cap (65536) → 413; invalid bundle → 400 naming the reason.
    let huge = format!("// {}\n{}", "x".repeat(70_000), js_text("big"));
    let (status, v) = s.deploy_js("big", "test", &huge).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"], "bundle_too_large");
    let (status, v) = s
        .admin(
            Method::PUT,
            "/api/apps/bad",
            b"\0asm\x01\0\0\0garbage",
            "application/wasm",
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"], "invalid_module");
    assert!(v["message"].as_str().unwrap().len() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_and_recalibrate_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(Server::start(tmp.path(), None));
    assert_eq!(s.deploy_js("app", "test", &js_text("up")).await.0, 200);

    let (status, v) = s
        .admin(
            Method::POST,
            "/api/admin/maintenance",
            br#"{"on":true}"#,
            "application/json",
        )
        .await;
    assert_eq!(
        (status, v["maintenance"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, body) = s.get("/apps/app/").await;
    assert_eq!(status, 503);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "maintenance"
    );
    let (status, host) = s.admin(Method::GET, "/api/host", b"", "text/plain").await;
    assert_eq!(status, 200);
    assert_eq!(host["maintenance"], true);
    s.admin(
        Method::POST,
        "/api/admin/maintenance",
        br#"{"on":false}"#,
        "application/json",
    )
    .await;
    assert_eq!(s.get("/apps/app/").await.0, 200);

    // Recalibrate while 4 clients hammer the tenant: no request is dropped.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (s, stop) = (s.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(s.get("/apps/app/").await.0);
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let (status, v) = s
            .admin(Method::POST, "/api/admin/recalibrate", b"", "text/plain")
            .await;
        assert_eq!(status, 200, "{v}");
        assert!(v["runtime_slots"].as_u64().unwrap() > 0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in load {
        for status in h.await.unwrap() {
            assert_eq!(status, 200);
        }
    }

    // Live gauges: an SSE stream with JSON frames.
    let req = Request::get(s.url("/api/gauges"))
        .header("authorization", format!("Bearer {}", s.token))
        .body(Full::default())
        .unwrap();
    let resp = s.client.request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let text = std::str::from_utf8(&frame).unwrap();
    assert!(
        text.starts_with("data: {") && text.ends_with("}\n\n"),
        "{text}"
    );

    let (status, metrics) = {
        let req = Request::get(s.url("/metrics"))
            .header("authorization", format!("Bearer {}", s.token))
            .body(Full::default())
            .unwrap();
        let (st, _, b) = s.send(req).await;
        (st, String::from_utf8(b.to_vec()).unwrap())
    };
    assert_eq!(status, 200);
    assert!(metrics.contains("app"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_and_usage_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(Server::start(tmp.path(), None));
    let slow = "export default { async fetch(req) { await new Promise(r => setTimeout(r, 300)); return new Response('done'); } };";
    let (status, v) = s.deploy_js("slow", "test", slow).await;
    assert_eq!(status, 200, "{v}");

    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::get(s.url("/apps/slow/"))
                .body(Full::default())
                .unwrap();
            match s.client.request(req).await {
                Ok(r) => {
                    let status = r.status();
                    let body = r.into_body().collect().await.map(|c| c.to_bytes());
                    Some((status, body.is_ok()))
                }
                Err(_) => None,
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.signal("-TERM");
    let mut ok = 0u64;
    let mut refused = 0u64;
    let mut failed = 0u64;
    for t in tasks {
        match t.await.unwrap() {
            Some((StatusCode::OK, true)) => ok += 1,
            Some((st, true)) if st == 429 || st == 503 => refused += 1,
            Some(other) => panic!("unclean response {other:?}"),
            None => failed += 1,
        }
    }
    println!(
        "SIGTERM with 200 in flight: {ok} completed, {refused} refused (429/503), {failed} connection errors"
    );
    assert!(ok >= 4, "{ok} completed");
    let s = Arc::try_unwrap(s).ok().unwrap();
    let (dir, token) = s.stop();

    let s = Server::start(&dir, Some(&token));
    let (status, usage) = s
        .admin(Method::GET, "/api/apps/slow/usage", b"", "text/plain")
        .await;
    assert_eq!(status, 200);
    let requests = usage["usage"]["requests"].as_u64().unwrap();
    assert!(
        requests >= ok,
        "usage after restart counts {requests} < {ok} completed"
    );
}

/// A supervisor may send SIGTERM the moment the server says it is listening;
/// the handler is in place by then, so that is a clean drain, not death by
/// signal 15. A hundred rounds (about 2 s), since a handler installed late
/// loses a race only now and then.
#[test]
fn sigterm_as_soon_as_listening_is_a_clean_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut token = None;
    for _ in 0..100 {
        let s = Server::start(tmp.path(), token.as_deref());
        token = Some(s.stop().1);
    }
}

/// The README's own `export CORRAL_TOKEN=…` (and any other `CORRAL_*` a tool
/// sets) must not stop the server: an unknown variable is one warning.
#[test]
fn unknown_corral_variables_are_one_warning_each() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("corral.toml");
    std::fs::write(&config, common::CONFIG).unwrap();
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("CORRAL_LOG", "warn")
        .env("CORRAL_TOKEN", "corral_not_a_setting")
        .env("CORRAL_URL", "http://127.0.0.1:1")
        .env("CORRAL_FOO", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let listening = stdout
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("corral-server listening on"));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(listening, "server did not start: {stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("CORRAL_")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains("CORRAL_FOO"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_import_between_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("a"), None);
    let kv = r#"export default { async fetch(req, env) {
        if (req.method === "POST") { await env.KV.put("greeting", await req.text()); return new Response("stored"); }
        return new Response("kv=" + (await env.KV.get("greeting")));
    } };"#;
    assert_eq!(s.deploy_js("notes", "test", kv).await.0, 200);
    let post = Request::post(s.url("/apps/notes/"))
        .body(Full::new(Bytes::from("hi there")))
        .unwrap();
    assert_eq!(s.send(post).await.2, Bytes::from("stored"));
    let before = s.get("/apps/notes/").await;
    assert_eq!(before, (StatusCode::OK, Bytes::from("kv=hi there")));
    let (dir_a, _) = s.stop();

    let cli = |dir: &Path, args: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(dir.join("corral.toml"))
            .args(args)
            .env("CORRAL_LOG", "error")
            .output()
            .unwrap()
    };
    let out = cli(&dir_a, &["tenant", "export", "notes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = out.stdout;
    assert!(archive.len() > kv.len());

    // A corrupted archive is refused and imports nothing.
    let dir_b = tmp.path().join("b");
    let s = Server::start(&dir_b, None);
    let token_b = s.token.clone();
    let (_, dir_b) = (s.stop(), dir_b);
    let mut bad = archive.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(dir_b.join("bad.corral"), &bad).unwrap();
    let out = cli(
        &dir_b,
        &[
            "tenant",
            "import",
            dir_b.join("bad.corral").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    std::fs::write(dir_b.join("good.corral"), &archive).unwrap();
    let s = Server::start(&dir_b, Some(&token_b));
    let names = s.app_names().await;
    assert_eq!(names, ["demo"], "the corrupt archive imported something");
    let (dir_b, token_b) = s.stop();

    let out = cli(
        &dir_b,
        &[
            "tenant",
            "import",
            dir_b.join("good.corral").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Server::start(&dir_b, Some(&token_b));
    assert_eq!(s.get("/apps/notes/").await, before);
}

/// SIGTERM with `body` (an event stream) open: the stream ends, and the
/// server exits cleanly at once instead of holding the drain (20 s in the
/// test config) until the stream's deadline.
async fn sigterm_ends_the_stream(s: Server, body: &mut hyper::body::Incoming) {
    let stopping = std::time::Instant::now();
    s.signal("-TERM");
    let mut seen = String::new();
    assert!(
        read_until(body, &mut seen, "never").await.is_none(),
        "the stream ends"
    );
    s.stop(); // a clean exit, after the drain
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
}

/// Reads `body` until it holds `want` (a whole event); `None` if it ended first.
async fn read_until(body: &mut hyper::body::Incoming, seen: &mut String, want: &str) -> Option<()> {
    while !seen.contains(want) {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")?
            .expect("the stream is not cut");
        seen.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_streams_stay_open_are_counted_and_limited_by_the_tier() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let ticker = r#"export default { fetch(req) {
        if (!new URL(req.url).pathname.endsWith("/events")) return new Response("hello");
        let i = 0;
        return new Response(new ReadableStream({
            pull(c) { return new Promise((r) => setTimeout(() => { c.enqueue(`data: ${i++}\n\n`); r(); }, 100)); },
        }), { headers: { "content-type": "text/event-stream" } });
    } };"#;
    // Tier `one`: one compute share, one stream.
    assert_eq!(s.deploy_js("ticker", "one", ticker).await.0, 200);

    let resp = s.open("/apps/ticker/events").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "data: 0\n\n")
        .await
        .unwrap();
    let first = std::time::Instant::now();
    read_until(&mut body, &mut seen, "data: 2\n\n")
        .await
        .unwrap();
    assert!(
        seen.starts_with("data: 0\n\ndata: 1\n\ndata: 2\n\n"),
        "{seen:?}"
    );
    // Events arrive as the guest writes them, 100 ms apart, on one response.
    assert!(
        first.elapsed() >= Duration::from_millis(150),
        "{:?}",
        first.elapsed()
    );

    let (status, v) = s
        .admin(Method::GET, "/api/apps/ticker/status", b"", "text/plain")
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["streams"].as_u64(), v["state"].as_str()),
        (Some(1), Some("warm")),
        "{v}"
    );
    let metrics = Request::get(s.url("/metrics"))
        .header("authorization", format!("Bearer {}", s.token))
        .body(Full::default())
        .unwrap();
    let (status, _, metrics) = s.send(metrics).await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        metrics.lines().any(|l| l == "corral_streams_open 1"),
        "{metrics}"
    );

    // The tier's second stream: 429 naming the limit, with Retry-After...
    let (status, headers, body2) = s
        .send(
            Request::get(s.url("/apps/ticker/events"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(status, 429, "{body2:?}");
    assert!(headers.contains_key("retry-after"));
    let v: Value = serde_json::from_slice(&body2).unwrap();
    assert_eq!(
        (v["error"].as_str(), v["limit"].as_u64()),
        (Some("too_many_streams"), Some(1)),
        "{v}"
    );
    // ...while the stream holds no compute share: the app still answers.
    assert_eq!(
        s.get("/apps/ticker/").await,
        (StatusCode::OK, Bytes::from("hello"))
    );
    read_until(&mut body, &mut seen, "data: 3\n\n")
        .await
        .unwrap();

    // The client goes away: the stream is counted out.
    drop(body);
    let started = std::time::Instant::now();
    loop {
        let (_, v) = s
            .admin(Method::GET, "/api/apps/ticker/status", b"", "text/plain")
            .await;
        if v["streams"] == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // SIGTERM ends an open stream cleanly instead of holding the drain
    // (20 s in the test config) until its deadline.
    let mut body = s.open("/apps/ticker/events").await.into_body();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "data: 0\n\n")
        .await
        .unwrap();
    sigterm_ends_the_stream(s, &mut body).await;
}

/// A WebAssembly module's event stream over real HTTP: each event reaches the
/// client as the module writes it, and SIGTERM ends an open one cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webassembly_event_stream_arrives_as_the_module_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let wasm = wat::parse_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../sandbox-core/tests/fixtures/events.wat"
    ))
    .unwrap();
    let (status, v) = s
        .admin(
            Method::PUT,
            "/api/apps/events?tier=test",
            &wasm,
            "application/wasm",
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let post = |mode: &'static str| {
        let req = Request::post(s.url("/apps/events/"))
            .body(Full::new(Bytes::from(mode)))
            .unwrap();
        s.client.request(req)
    };

    // Two events 300 ms apart: the first is read before the second is written.
    let resp = post("e").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "data: 1\n\n")
        .await
        .unwrap();
    let first = std::time::Instant::now();
    assert_eq!(seen, "data: 1\n\n");
    read_until(&mut body, &mut seen, "data: 2\n\n")
        .await
        .unwrap();
    assert!(
        first.elapsed() >= Duration::from_millis(100),
        "{:?}",
        first.elapsed()
    );
    assert!(read_until(&mut body, &mut seen, "never").await.is_none());

    // An endless one is ended by SIGTERM, and the server exits cleanly.
    let mut body = post("f").await.unwrap().into_body();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "data: 2\n\n")
        .await
        .unwrap();
    sigterm_ends_the_stream(s, &mut body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_past_its_thresholds_starts_with_its_demo_but_refuses_new_apps() {
    let tmp = tempfile::tempdir().unwrap();
    let full_disk = common::CONFIG.replace(
        "disk = { fire = 1.0, rearm = 1.0 }",
        "disk = { fire = 0.001, rearm = 0.0005 }",
    );
    assert_ne!(full_disk, common::CONFIG);
    let s = Server::start_with(tmp.path(), None, &full_disk);
    let (status, body) = s.get("/apps/demo/").await;
    assert_eq!(status, 200, "{body:?}");
    let (status, v) = s.deploy_js("late", "test", &js_text("late")).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "not_accepting_tenants", "{v}");
}
