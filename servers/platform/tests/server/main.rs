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

mod accounts;
#[path = "../common/mod.rs"]
mod common;
mod component;
mod console;
mod hygiene;
mod shared_store;
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
async fn an_apps_console_log_lines_are_read_over_the_admin_api() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let js = r#"export default { fetch(req) {
        console.log("served " + new URL(req.url).pathname);
        return new Response("ok");
    } };"#;
    let (status, info) = s.deploy_js("logger", "test", js).await;
    assert_eq!(status, 200, "{info}");
    for path in ["/apps/logger/a", "/apps/logger/b"] {
        assert_eq!(s.get(path).await.0, StatusCode::OK);
    }
    let (status, logs) = s
        .admin(Method::GET, "/api/apps/logger/logs", b"", "text/plain")
        .await;
    assert_eq!(status, 200, "{logs}");
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let a = lines.iter().position(|l| l.contains("served /a"));
    let b = lines.iter().position(|l| l.contains("served /b"));
    assert!(a.is_some() && b.is_some() && a < b, "{lines:?}");
    let (status, err) = s
        .admin(Method::GET, "/api/apps/nosuch/logs", b"", "text/plain")
        .await;
    assert_eq!(
        (status, &err["error"]),
        (StatusCode::NOT_FOUND, &"not_found".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_followed_log_streams_kept_then_new_lines_and_ends_on_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let js = r#"export default { fetch(req) {
        console.log("served " + new URL(req.url).pathname);
        return new Response("ok");
    } };"#;
    let (status, info) = s.deploy_js("tail", "test", js).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(s.get("/apps/tail/a").await.0, StatusCode::OK);
    let open = |path: &str| {
        Request::get(s.url(path))
            .header("authorization", format!("Bearer {}", s.token))
            .body(Full::default())
            .unwrap()
    };
    let resp = s
        .client
        .request(open("/api/apps/tail/logs?follow=1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut next = async || {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame within 10 s");
        frame.map(|f| String::from_utf8(f.unwrap().into_data().unwrap().to_vec()).unwrap())
    };
    // The kept line first, then each new one as it arrives.
    assert_eq!(next().await.as_deref(), Some("data: served /a\n\n"));
    assert_eq!(s.get("/apps/tail/b").await.0, StatusCode::OK);
    assert_eq!(next().await.as_deref(), Some("data: served /b\n\n"));
    // Removing the app ends the stream.
    let (status, _) = s
        .admin(Method::DELETE, "/api/apps/tail", b"", "text/plain")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        next().await.as_deref(),
        Some("event: end\ndata: the app was removed\n\n")
    );
    assert_eq!(next().await, None);

    // An unknown app is 404 before any stream; a bad follow value is 400.
    let (status, err) = s
        .admin(
            Method::GET,
            "/api/apps/nosuch/logs?follow=1",
            b"",
            "text/plain",
        )
        .await;
    assert_eq!(
        (status, &err["error"]),
        (StatusCode::NOT_FOUND, &"not_found".into())
    );
    assert_eq!(s.deploy_js("tail", "test", js).await.0, 200);
    let (status, err) = s
        .admin(
            Method::GET,
            "/api/apps/tail/logs?follow=yes",
            b"",
            "text/plain",
        )
        .await;
    assert_eq!(
        (status, &err["error"]),
        (StatusCode::BAD_REQUEST, &"bad_request".into())
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
        "payload_too_large"
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

/// A killed node loses no usage: with `usage_flush_interval = "1h"` nothing
/// is flushed before the SIGKILL, and the restart on the same data dir still
/// counts every answered request, exactly, from the usage journal. The same
/// run with `usage_journal = false` shows what the journal is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_usage_the_journal_hands_it_over_on_restart() {
    for journal in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let config = common::CONFIG.replace(
            "usage_flush_interval = \"1s\"",
            &format!("usage_flush_interval = \"1h\"\nusage_journal = {journal}"),
        );
        let s = Server::start_with(tmp.path(), None, &config);
        let (status, v) = s
            .deploy_js(
                "counted",
                "test",
                "export default { fetch() { return new Response('hi'); } };",
            )
            .await;
        assert_eq!(status, 200, "{v}");
        for _ in 0..37 {
            let req = Request::get(s.url("/apps/counted/"))
                .body(Full::default())
                .unwrap();
            let (st, _, body) = s.send(req).await;
            assert_eq!((st, &body[..]), (StatusCode::OK, &b"hi"[..]));
        }
        let (dir, token) = s.kill();
        let s = Server::start_with(&dir, Some(&token), &config);
        let (status, usage) = s
            .admin(Method::GET, "/api/apps/counted/usage", b"", "text/plain")
            .await;
        assert_eq!(status, 200, "{usage}");
        let requests = usage["usage"]["requests"].as_u64().unwrap();
        if journal {
            assert_eq!(requests, 37, "{usage}");
        } else {
            assert_eq!(
                requests, 0,
                "without the journal the kill took them: {usage}"
            );
        }
    }
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
    let addr = stdout.lines().map_while(Result::ok).find_map(|l| {
        let rest = l.strip_prefix("corral-server listening on http://")?;
        rest.split_whitespace().next().map(str::to_owned)
    });
    // It serves: the demo app answers over a plain HTTP/1.1 exchange.
    let answer = addr.as_deref().map(|addr| {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.write_all(b"GET /apps/demo/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        text
    });
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let answer = answer.unwrap_or_else(|| panic!("server did not start: {stderr}"));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("Hello from Corral! (GET)\n"), "{answer}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("CORRAL_")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("CORRAL_FOO"),
        "{stderr}"
    );
}

/// Nodes that share a store share one admin token: `corral-server admin-token`
/// prints a new token with its argon2 hash, and two servers given that hash
/// in their config accept the token and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_token_command_gives_one_token_to_many_nodes() {
    let out = Command::new(BIN).arg("admin-token").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    let hash = v["token_hash"].as_str().unwrap();
    assert!(
        token.starts_with("corral_") && hash.starts_with("$argon2id$"),
        "{v}"
    );
    let again: Value = serde_json::from_slice(
        &Command::new(BIN)
            .arg("admin-token")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_ne!(again["token"], v["token"], "every call makes a new token");

    let tmp = tempfile::tempdir().unwrap();
    let config = format!("{}\n[admin]\ntoken_hash = \"{hash}\"\n", common::CONFIG);
    let nodes: Vec<Server> = ["n1", "n2"]
        .iter()
        .map(|n| Server::start_with(&tmp.path().join(n), Some(&token), &config))
        .collect();
    for node in &nodes {
        assert_eq!(
            node.admin(Method::GET, "/api/apps", b"", "").await.0,
            StatusCode::OK
        );
        let wrong = Request::get(node.url("/api/apps"))
            .header(
                "authorization",
                format!("Bearer {}", again["token"].as_str().unwrap()),
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(node.send(wrong).await.0, StatusCode::UNAUTHORIZED);
        // No token of its own was made: the configured hash is the only one.
        assert!(!node.dir.join("data/admin-token.argon2").exists());
    }
    for node in nodes {
        node.stop();
    }
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

/// Issue 13: refused requests show under `refused` in the usage JSON and never
/// count toward the quota; export and import over the admin API keep the
/// archive's tier and usage only when asked, and so does the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_over_the_admin_api_and_the_cli_keeps_tier_and_usage_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Server::start(&tmp.path().join("a"), None);
    assert_eq!(a.deploy_js("metered", "quota3", &js_text("m")).await.0, 200);
    for _ in 0..3 {
        assert_eq!(a.get("/apps/metered/").await.0, 200);
    }
    for _ in 0..2 {
        assert_eq!(a.get("/apps/metered/").await.0, 429);
    }
    let (status, usage) = a
        .admin(Method::GET, "/api/apps/metered/usage", b"", "text/plain")
        .await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["usage"]["requests"], 3, "{usage}");
    assert_eq!(
        usage["usage"]["refused"],
        serde_json::json!({"quota_exceeded": 2})
    );

    let export = |s: &Server, name: &str| {
        Request::get(s.url(&format!("/api/apps/{name}/export")))
            .header("authorization", format!("Bearer {}", s.token))
            .body(Full::default())
            .unwrap()
    };
    let (status, headers, archive) = a.send(export(&a, "metered")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-tar");
    assert!(archive.len() > 1024);
    let (status, _, body) = a.send(export(&a, "nobody")).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "not_found"
    );
    a.stop();

    // B has no `quota3` tier and takes admin bodies up to 64 KiB.
    let config_b = common::CONFIG
        .replace(
            "drain_timeout = \"20s\"",
            "drain_timeout = \"20s\"\nmax_admin_body_bytes = 65536",
        )
        .replace("[tiers.quota3]", "[tiers.quota3-elsewhere]");
    let b = Server::start_with(&tmp.path().join("b"), None, &config_b);
    let import = |query: &'static str, body: &[u8]| post_import(&b, query, body.to_vec());
    let (status, v) = import("?keep_tier=maybe", &archive).await;
    assert_eq!(
        (status.as_u16(), &v["error"]),
        (400, &"bad_request".into()),
        "{v}"
    );
    let (status, v) = import("", &vec![0u8; 100 << 10]).await;
    assert_eq!(
        (status.as_u16(), &v["error"]),
        (413, &"payload_too_large".into()),
        "{v}"
    );
    let (status, v) = import("?keep_tier=true", &archive).await;
    assert_eq!(
        (status.as_u16(), &v["error"]),
        (400, &"unknown_tier".into()),
        "{v}"
    );
    assert_eq!(
        b.app_names().await,
        ["demo"],
        "a refused import wrote nothing"
    );

    // Default: the node's default tier, fresh usage.
    let (status, v) = import("", &archive).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["imported"], &v["app"]["tier"]),
        (&"metered".into(), &"test".into())
    );
    let (_, usage) = b
        .admin(Method::GET, "/api/apps/metered/usage", b"", "text/plain")
        .await;
    assert_eq!(usage["usage"]["requests"], 0, "{usage}");
    assert_eq!(usage["usage"]["refused"], serde_json::json!({}));
    let (status, v) = import("", &archive).await;
    assert_eq!(
        (status.as_u16(), &v["error"]),
        (400, &"invalid_archive".into()),
        "{v}"
    );

    // keep_usage: the months come along (admitted and refused).
    let (status, _) = b
        .admin(Method::DELETE, "/api/apps/metered", b"", "text/plain")
        .await;
    assert_eq!(status, 200);
    let (status, v) = import("?keep_usage=true", &archive).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["app"]["tier"], "test");
    let (_, usage) = b
        .admin(Method::GET, "/api/apps/metered/usage", b"", "text/plain")
        .await;
    assert_eq!(usage["usage"]["requests"], 3, "{usage}");
    assert_eq!(usage["usage"]["refused"]["quota_exceeded"], 2, "{usage}");
    assert_eq!(
        b.get("/apps/metered/").await,
        (StatusCode::OK, Bytes::from("m"))
    );
    b.stop();

    // The CLI: `--keep-tier --keep-usage` keeps both, so the month's quota
    // of 3 is already used on the new node.
    let dir_c = tmp.path().join("c");
    std::fs::create_dir_all(&dir_c).unwrap();
    std::fs::write(dir_c.join("corral.toml"), common::CONFIG).unwrap();
    std::fs::write(dir_c.join("m.corral"), &archive).unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir_c.join("data"))
        .arg("--config")
        .arg(dir_c.join("corral.toml"))
        .args(["tenant", "import"])
        .arg(dir_c.join("m.corral"))
        .args(["--keep-tier", "--keep-usage"])
        .env("CORRAL_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["app"]["tier"], "quota3", "{printed}");
    let c = Server::start(&dir_c, None);
    let (status, body) = c.get("/apps/metered/").await;
    assert_eq!(status, 429, "{body:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "quota_exceeded"
    );
}

async fn post_import(s: &Server, query: &str, body: Vec<u8>) -> (StatusCode, Value) {
    s.admin(
        Method::POST,
        &format!("/api/import{query}"),
        &body,
        "application/x-tar",
    )
    .await
}

/// One HTTP/1.1 exchange over a fresh connection from `source` (any
/// 127.0.0.0/8 address works on loopback), for tests that need the raw wire.
mod wire {
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    pub(crate) async fn connect(source: IpAddr, addr: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        socket.connect(addr).await.unwrap()
    }

    /// A response as read off the wire.
    #[derive(Debug)]
    pub(crate) struct Answer {
        pub(crate) status: u16,
        pub(crate) head: String,
        pub(crate) json: serde_json::Value,
    }

    /// Reads one response (head, then a `Content-Length` body) within 10 s.
    pub(crate) async fn read(s: &mut TcpStream) -> Answer {
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_ne!(s.read(&mut byte).await.unwrap(), 0, "closed mid-head");
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
            let status = head[9..12].parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).await.unwrap();
            Answer {
                status,
                head,
                json: serde_json::from_slice(&body).unwrap_or_default(),
            }
        })
        .await
        .expect("no response within 10 s")
    }

    /// Sends `request` on a new connection from `source` and reads the answer.
    pub(crate) async fn exchange(source: IpAddr, addr: SocketAddr, request: &str) -> Answer {
        let mut s = connect(source, addr).await;
        s.write_all(request.as_bytes()).await.unwrap();
        read(&mut s).await
    }
}

fn localhost() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_are_refused_from_the_head_and_cut_by_size_and_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let config = common::CONFIG.replace("[http]\n", "[http]\nbody_read_timeout = \"1s\"\n");
    let s = Server::start_with(tmp.path(), None, &config);
    let echo = "export default { async fetch(req) { return new Response(String((await req.text()).length)); } };";
    assert_eq!(s.deploy_js("echo", "test", echo).await.0, 200);

    // An unknown app with a declared 1 GiB body: 404 while the client has
    // sent only the head.
    let a = wire::exchange(
        localhost(),
        s.addr,
        "POST /apps/no-such-app/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n",
    )
    .await;
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (404, Some("not_found")),
        "{a:?}"
    );

    // Over the app's own tier cap (1024): 413 from the head alone, whether
    // the declared body is huge or small.
    for len in [1u64 << 30, 2048] {
        let a = wire::exchange(
            localhost(),
            s.addr,
            &format!("POST /apps/echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n"),
        )
        .await;
        assert_eq!(a.status, 413, "{a:?}");
        assert_eq!(a.json["error"], "payload_too_large");
        assert_eq!(a.json["limit"], 1024);
    }

    // A chunked body (no length) is cut at the tier's cap, not the largest tier's.
    let chunk = "x".repeat(2048);
    let a = wire::exchange(
        localhost(),
        s.addr,
        &format!(
            "POST /apps/echo/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{chunk}\r\n0\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.json["limit"].as_u64()),
        (413, Some(1024)),
        "{a:?}"
    );
    let a = wire::exchange(
        localhost(),
        s.addr,
        &format!(
            "POST /apps/echo/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{}\r\n0\r\n\r\n",
            "y".repeat(1024)
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");

    // A body trickling a byte every 300 ms is cut at body_read_timeout (1 s)
    // though no single byte is ever late: 408, and the connection closes.
    let mut conn = wire::connect(localhost(), s.addr).await;
    conn.write_all(b"POST /apps/echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        while sent < 100 && wr.write_all(b"x").await.is_ok() {
            sent += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        sent
    });
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out))
        .await
        .expect("the trickling connection was not closed")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("\"body_timeout\""), "{text}");
    let sent = trickle.await.unwrap();
    assert!(sent < 20, "{sent} bytes accepted before the cut");

    // The server still serves.
    let ok = Request::post(s.url("/apps/echo/"))
        .body(Full::new(Bytes::from(vec![b'z'; 1000])))
        .unwrap();
    let (status, _, body) = s.send(ok).await;
    assert_eq!((status, body), (StatusCode::OK, Bytes::from("1000")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_are_capped_and_idle_ones_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let config = common::CONFIG.replace(
        "[http]\n",
        "[http]\nmax_connections = 2\nidle_timeout = \"3s\"\nheader_read_timeout = \"60s\"\n",
    );
    let s = Server::start_with(tmp.path(), None, &config);
    const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = wire::connect(localhost(), s.addr).await;
        c.write_all(HEALTHZ.as_bytes()).await.unwrap();
        assert_eq!(wire::read(&mut c).await.status, 200);
        held.push(c);
    }
    // A third client is not served while two connections are open...
    let mut third = wire::connect(localhost(), s.addr).await;
    third.write_all(HEALTHZ.as_bytes()).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "served over max_connections: {early:?}");
    // ...and is served once one closes.
    drop(held.pop());
    assert_eq!(wire::read(&mut third).await.status, 200);

    // Idle keep-alive connections are closed after idle_timeout (the head
    // timeout is 60 s, so only the idle timeout can do it).
    for mut c in held.into_iter().chain([third]) {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    }
    assert_eq!(s.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bogus_tokens_are_throttled_per_client_and_health_checks_never_wait() {
    use corral_server::auth::FAILED_ATTEMPTS_BURST;
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(Server::start(tmp.path(), None));
    // The right token, verified once, is known from RAM from then on.
    assert_eq!(s.app_names().await, ["demo"]);
    let bogus = |from: [u8; 4]| {
        let s = s.clone();
        async move {
            wire::exchange(
                std::net::IpAddr::from(from),
                s.addr,
                "GET /api/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer corral_wrong\r\nConnection: close\r\n\r\n",
            )
            .await
        }
    };

    // While a crowd of bogus tokens queues for argon2, health and readiness
    // answer at once: they wait for neither argon2 nor an admin slot.
    let crowd: Vec<_> = (0..12u8)
        .map(|i| tokio::spawn(bogus([127, 0, 1, i])))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for path in ["/healthz", "/readyz"] {
        let a = wire::exchange(
            localhost(),
            s.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        assert_eq!(a.status, 200, "{path}");
    }
    let pending = crowd.iter().filter(|t| !t.is_finished()).count();
    assert!(pending > 0, "the crowd finished before the health checks");
    for t in crowd {
        assert!([401, 429].contains(&t.await.unwrap().status));
    }

    // One client: 401 for its allowance, then 429 too_many_attempts with Retry-After.
    let mut unauthorized = 0;
    let throttled = loop {
        let a = bogus([127, 0, 0, 3]).await;
        match a.status {
            401 => unauthorized += 1,
            429 => break a,
            other => panic!("{other}: {a:?}"),
        }
        assert!(
            unauthorized <= FAILED_ATTEMPTS_BURST + 10,
            "never throttled"
        );
    };
    assert!(
        unauthorized >= FAILED_ATTEMPTS_BURST,
        "throttled after {unauthorized}"
    );
    assert_eq!(
        throttled.json["error"], "too_many_attempts",
        "{throttled:?}"
    );
    let retry: u64 = throttled
        .head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .expect("no Retry-After")
        .trim()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // Another client still gets its own answer, and the admin's token works.
    assert_eq!(bogus([127, 0, 0, 4]).await.status, 401);
    assert_eq!(s.app_names().await, ["demo"]);
}
