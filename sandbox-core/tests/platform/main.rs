//! The assembled platform end to end: every layer of the stack over a real
//! SQLite file, the real registry and the real meter.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use corral::limits_layers::Refusal;
use corral::limits_layers::Tier;
use corral::platform::{Bundle, ImportOptions, Platform, PlatformConfig, PlatformError};
use corral::{InvocationStats, Kind, SandboxError, TenantId};

const HELLO: &str = include_str!("../fixtures/hello.wat");
const CHAOS: &str = include_str!("../fixtures/chaos.wat");
const EVENTS: &str = include_str!("../fixtures/events.wat");

fn id(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn wasm(src: &str) -> Bundle {
    Bundle::code(Kind::Wasm, wat::parse_str(src).unwrap())
}

fn req(body: &str) -> http::Request<Bytes> {
    http::Request::post("/")
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

/// A tier small enough to hit every limit quickly.
fn tight() -> Tier {
    let mut t = Tier::free();
    t.compute_shares = 1;
    t.wall_clock = Duration::from_millis(1500);
    t.rate_per_minute = Some(600);
    t.burst = 50;
    t.requests_per_month = Some(1_000);
    t.max_body_bytes = 1024;
    t.max_bundle_bytes = 64 << 10;
    t
}

fn config(dir: &Path) -> PlatformConfig {
    let mut cfg = PlatformConfig::with_data_dir(dir);
    // These tests are about the request path, not the host: a loaded CI box
    // must not make the node refuse new tenants (thresholds have their own tests).
    let never = corral::metering::Level::new(1.0, 1.0);
    cfg.thresholds.ram = never;
    cfg.thresholds.disk = never;
    cfg.thresholds.cpu = never;
    cfg.tiers.insert("tight".into(), tight());
    let mut quota = tight();
    quota.requests_per_month = Some(3);
    cfg.tiers.insert("quota3".into(), quota);
    let mut rate = tight();
    rate.rate_per_minute = Some(1);
    rate.burst = 2;
    cfg.tiers.insert("rate2".into(), rate);
    // The free tier's month, with a rate limit a flood runs into at once.
    let mut free_like = Tier::free();
    free_like.requests_per_month = Some(10_000);
    free_like.rate_per_minute = Some(60);
    free_like.burst = 5;
    cfg.tiers.insert("free-like".into(), free_like);
    cfg
}

fn open(dir: &Path) -> Platform {
    Platform::builder().config(config(dir)).build().unwrap()
}

fn text(r: &http::Response<Bytes>) -> &str {
    std::str::from_utf8(r.body()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_invoke_usage_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let app = id("hello");
    let info = p.deploy(&app, Some("tight"), wasm(HELLO)).await.unwrap();
    assert_eq!(
        (info.tier.as_str(), info.kind, info.replaced),
        ("tight", Kind::Wasm, false)
    );

    let r = p.invoke(&app, req("")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(text(&r), "Hello from Corral!\n");
    let stats = r.extensions().get::<InvocationStats>().copied().unwrap();
    assert!(stats.fuel_consumed > 0, "{stats:?}");

    p.invoke(&app, req("")).await.unwrap();
    let usage = p.usage(&app).unwrap();
    assert_eq!(usage.usage.requests, 2);
    assert_eq!(usage.requests_quota, Some(1_000));
    assert!(usage.usage.fuel >= 2 * stats.fuel_consumed - 1);
    assert_eq!(p.status(&app).unwrap().state, "warm");
    let apps = p.apps().unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        (apps[0].tier.as_str(), apps[0].version, apps[0].bytes),
        ("tight", 1, info.bytes)
    );

    assert!(p.remove(&app).unwrap());
    let err = p.invoke(&app, req("")).await.unwrap_err();
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err:?}");
    assert_eq!(err.status(), 404);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_at_its_shares_is_refused_while_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let (busy, other) = (id("busy"), id("other"));
    p.deploy(&busy, Some("tight"), wasm(CHAOS)).await.unwrap();
    p.deploy(&other, Some("tight"), wasm(HELLO)).await.unwrap();

    // The sleeper holds busy's only share until its deadline cuts it.
    let sleeper = {
        let (p, busy) = (p.clone(), busy.clone());
        tokio::spawn(async move { p.invoke(&busy, req("s")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = p.invoke(&busy, req("")).await.unwrap_err();
    assert_eq!(refused.code(), "overloaded", "{refused:?}");
    let (status, headers, body) = refused.to_http();
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains(r#""tenant":"busy""#)
    );
    assert_eq!(p.invoke(&other, req("")).await.unwrap().status(), 200);

    let err = sleeper.await.unwrap().unwrap_err();
    assert!(
        matches!(err, PlatformError::Sandbox(SandboxError::Deadline { limit }) if limit == Duration::from_millis(1500)),
        "{err:?}"
    );
    assert_eq!(err.status(), 503);
    // The share came back and the tenant answers again.
    assert_eq!(text(&p.invoke(&busy, req("")).await.unwrap()), "hello\n");
    let snap = p.meter().snapshot(&busy).unwrap();
    // The sleeper and the last request were admitted; the refusal was not.
    assert_eq!(
        (
            snap.requests,
            snap.refused(Refusal::Overloaded),
            snap.in_flight
        ),
        (2, 1, 0),
        "{snap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_rate_body_bundle_and_maintenance_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let q = id("q");
    p.deploy(&q, Some("quota3"), wasm(HELLO)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(p.invoke(&q, req("")).await.unwrap().status(), 200);
    }
    let err = p.invoke(&q, req("")).await.unwrap_err();
    assert_eq!(err.code(), "quota_exceeded");
    let (status, _, body) = err.to_http();
    assert_eq!(status, 429);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["quota"].as_u64(), v["used"].as_u64()),
        (Some(3), Some(3))
    );

    let r = id("r");
    p.deploy(&r, Some("rate2"), wasm(HELLO)).await.unwrap();
    assert_eq!(p.invoke(&r, req("")).await.unwrap().status(), 200);
    assert_eq!(p.invoke(&r, req("")).await.unwrap().status(), 200);
    assert_eq!(
        p.invoke(&r, req("")).await.unwrap_err().code(),
        "rate_limited"
    );

    let t = id("t");
    p.deploy(&t, Some("tight"), wasm(HELLO)).await.unwrap();
    let err = p.invoke(&t, req(&"x".repeat(1025))).await.unwrap_err();
    let PlatformError::Refused(refused) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (refused.kind, refused.limit, refused.size),
        (Refusal::PayloadTooLarge, Some(1024), Some(1025))
    );
    assert_eq!(
        (err.code(), err.status().as_u16()),
        ("payload_too_large", 413)
    );
    let big = Bundle::code(Kind::Js, vec![b' '; 64 << 10]).with_static("a.txt", vec![1]);
    let err = p.deploy(&t, None, big).await.unwrap_err();
    assert!(
        matches!(
            err,
            PlatformError::BundleTooLarge {
                limit: 65536,
                size: 65537
            }
        ),
        "{err:?}"
    );
    // The refused deploy left the app as it was.
    assert_eq!(
        text(&p.invoke(&t, req("")).await.unwrap()),
        "Hello from Corral!\n"
    );

    let err = p
        .deploy(
            &id("bad"),
            None,
            Bundle::code(Kind::Wasm, b"\0asm garbage".to_vec()),
        )
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.status().as_u16()), ("invalid_module", 400));
    assert!(p.app(&id("bad")).unwrap().is_none());
    let err = p
        .deploy(&id("x"), Some("gold"), wasm(HELLO))
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::UnknownTier { .. }));

    p.set_maintenance(true);
    let err = p.invoke(&t, req("")).await.unwrap_err();
    assert_eq!((err.code(), err.status().as_u16()), ("maintenance", 503));
    p.set_maintenance(false);
    assert_eq!(p.invoke(&t, req("")).await.unwrap().status(), 200);
}

fn tar_bundle(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_come_from_the_cache_with_etags() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let app = id("site");
    let tar = tar_bundle(&[
        ("app.wasm", &wat::parse_str(HELLO).unwrap()),
        ("static/style.css", b"body{color:red}"),
    ]);
    let info = p
        .deploy(
            &app,
            Some("tight"),
            Bundle::detect(tar, Some("application/x-tar")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(info.static_files, 1);
    let get = |etag: Option<&str>| {
        let mut b = http::Request::get("/style.css");
        if let Some(e) = etag {
            b = b.header("if-none-match", e);
        }
        b.body(Bytes::new()).unwrap()
    };
    let r = p.invoke(&app, get(None)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.body()[..], b"body{color:red}");
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    let crc = format!("{:08x}", crc32fast::hash(b"body{color:red}"));
    assert_eq!(r.headers()["x-corral-crc32"].to_str().unwrap(), crc);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        p.invoke(&app, get(Some(&etag))).await.unwrap().status(),
        304
    );
    // Anything else still reaches the guest.
    assert_eq!(
        text(&p.invoke(&app, req("")).await.unwrap()),
        "Hello from Corral!\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_apps_and_usage_without_recompiling() {
    let dir = tempfile::tempdir().unwrap();
    let app = id("keep");
    {
        let p = open(dir.path());
        p.deploy(&app, Some("tight"), wasm(HELLO)).await.unwrap();
        for _ in 0..5 {
            p.invoke(&app, req("")).await.unwrap();
        }
        p.shutdown().await;
    }
    let p = open(dir.path());
    assert_eq!(p.registry().stats().compiles, 0);
    assert_eq!(p.status(&app).unwrap().state, "parked");
    assert_eq!(p.app(&app).unwrap().unwrap().tier, "tight");
    assert_eq!(p.usage(&app).unwrap().usage.requests, 5);
    let r = p.invoke(&app, req("")).await.unwrap();
    assert_eq!(text(&r), "Hello from Corral!\n");
    assert!(r.extensions().get::<InvocationStats>().unwrap().cold_start);
    assert_eq!(p.usage(&app).unwrap().usage.requests, 6);
    assert_eq!(p.registry().stats().compiles, 0);
}

/// `app_tier` answers from memory and follows deploy, re-tier, restart and
/// removal, so a frontend can size a body before reading it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_tier_follows_deploy_retier_restart_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let app = id("sized");
    {
        let p = open(dir.path());
        assert!(p.app_tier(&app).is_none());
        p.deploy(&app, Some("tight"), wasm(HELLO)).await.unwrap();
        assert_eq!(p.app_tier(&app).unwrap().max_body_bytes, 1024);
        p.set_tier(&app, "pro").await.unwrap();
        assert_eq!(
            p.app_tier(&app).unwrap().max_body_bytes,
            Tier::pro().max_body_bytes
        );
        p.shutdown().await;
    }
    let p = open(dir.path());
    assert_eq!(*p.app_tier(&app).unwrap(), p.tiers()["pro"]);
    assert!(p.remove(&app).unwrap());
    assert!(p.app_tier(&app).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip_and_corrupt_archives_import_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = open(a.path());
    let app = id("moved");
    src.deploy(
        &app,
        Some("tight"),
        wasm(HELLO).with_static("i.txt", b"asset".to_vec()),
    )
    .await
    .unwrap();
    src.store().kv_put(&app, "greeting", b"hej").unwrap();
    src.invoke(&app, req("")).await.unwrap();
    let archive = src.export_tenant(&app).unwrap();
    let err = src.export_tenant(&id("nobody")).unwrap_err();
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err:?}");
    assert_eq!((err.code(), err.status().as_u16()), ("not_found", 404));

    let dst = open(b.path());
    // Flip one byte inside the first data entry's contents (after its 512-byte header).
    let mut bad = archive.clone();
    bad[512] ^= 0x01;
    let keep_all = ImportOptions::new().keep_tier(true).keep_usage(true);
    let err = dst.import_tenant(bad, keep_all).await.unwrap_err();
    assert!(
        matches!(err, PlatformError::InvalidArchive { .. }),
        "{err:?}"
    );
    assert!(dst.app(&app).unwrap().is_none());
    assert!(dst.registry().status(&app).is_none());
    let err = dst
        .import_tenant(archive[..archive.len() / 2].to_vec(), keep_all)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PlatformError::InvalidArchive { .. }),
        "{err:?}"
    );
    assert!(dst.app(&app).unwrap().is_none());

    assert_eq!(
        dst.import_tenant(archive.clone(), keep_all).await.unwrap(),
        app
    );
    assert_eq!(
        text(&dst.invoke(&app, req("")).await.unwrap()),
        "Hello from Corral!\n"
    );
    assert_eq!(
        &dst.store().kv_get(&app, "greeting").unwrap().unwrap().bytes[..],
        b"hej"
    );
    let asset = dst
        .invoke(
            &app,
            http::Request::get("/i.txt").body(Bytes::new()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(&asset.body()[..], b"asset");
    assert_eq!(dst.usage(&app).unwrap().usage.requests, 3);
    // A second import of the same app is refused, not merged.
    let err = dst.import_tenant(archive, keep_all).await.unwrap_err();
    assert!(matches!(err, PlatformError::InvalidArchive { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_finds_nothing_on_a_healthy_store_and_host_reports_figures() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    p.deploy(&id("s"), None, wasm(HELLO)).await.unwrap();
    let s = p.scrub().unwrap();
    assert!(s.verified >= 1 && s.corrupt.is_empty(), "{s:?}");
    let host = p.host();
    assert!(host.probe.ram_total > 0 && host.runtime_slots > 0);
    assert!(!host.maintenance);
    let m = p.metrics();
    assert!(m.contains("corral_"), "{m}");
}

/// `queue_wait`: a request over its app's compute shares waits for the share
/// (and is served) instead of being refused; with no wait it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_over_its_shares_waits_for_one_up_to_queue_wait() {
    let slow = "export default { async fetch() { \
        await new Promise((r) => setTimeout(r, 200)); return new Response('done'); } };";
    for (wait, both_served) in [(Duration::from_secs(3), true), (Duration::ZERO, false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.queue_wait = wait;
        let p = Platform::builder().config(cfg).build().unwrap();
        let app = id("slow");
        let bundle = Bundle::code(Kind::Js, slow.as_bytes().to_vec());
        p.deploy(&app, Some("tight"), bundle).await.unwrap();
        assert_eq!(text(&p.invoke(&app, req("")).await.unwrap()), "done"); // warm

        let started = std::time::Instant::now();
        let first = {
            let (p, app) = (p.clone(), app.clone());
            tokio::spawn(async move { p.invoke(&app, req("")).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = p.invoke(&app, req("")).await;
        assert_eq!(text(&first.await.unwrap().unwrap()), "done");
        if both_served {
            assert_eq!(text(&second.unwrap()), "done", "waited {wait:?}");
            // It ran only after the first freed the one share.
            assert!(started.elapsed() >= Duration::from_millis(400));
        } else {
            let err = second.unwrap_err();
            assert_eq!(err.code(), "overloaded", "{err:?}");
        }
        p.shutdown().await;
    }
}

const TICKER: &str = r#"export default { fetch(req) {
    if (new URL(req.url).pathname !== "/sse") return new Response("hello");
    let i = 0;
    return new Response(new ReadableStream({
        pull(c) { return new Promise((r) => setTimeout(() => { c.enqueue(`data: ${i++}\n\n`); r(); }, 20)); },
    }), { headers: { "content-type": "text/event-stream" } });
} };"#;

/// Opens `/sse` on `app` through the platform's service, unread.
async fn open_stream(
    p: &Platform,
    app: &TenantId,
) -> Result<http::Response<corral::platform::PlatformBody>, PlatformError> {
    use tower::ServiceExt as _;
    let mut req = http::Request::get("/sse").body(Bytes::new()).unwrap();
    req.extensions_mut().insert(app.clone());
    p.service().oneshot(req).await
}

async fn first_event(resp: &mut http::Response<corral::platform::PlatformBody>) -> Bytes {
    use http_body_util::BodyExt as _;
    let frame = tokio::time::timeout(Duration::from_secs(5), resp.body_mut().frame())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
        .expect("not an error");
    frame.into_data().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_streams_are_counted_and_limited_by_the_tier_and_hold_no_share() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let app = id("ticker");
    let bundle = Bundle::code(Kind::Js, TICKER.as_bytes().to_vec());
    p.deploy(&app, Some("tight"), bundle).await.unwrap();
    assert_eq!(tight().compute_shares, 1);
    assert_eq!(tight().max_streams, 2);

    let mut one = open_stream(&p, &app).await.unwrap();
    assert_eq!(one.headers()["content-type"], "text/event-stream");
    assert_eq!(first_event(&mut one).await, "data: 0\n\n");
    let mut two = open_stream(&p, &app).await.unwrap();
    assert_eq!(first_event(&mut two).await, "data: 0\n\n");
    // The guest's work after the head is metered while the stream is open.
    let wall = || p.meter().snapshot(&app).unwrap().wall_time;
    let before = wall();
    for i in 1..4 {
        assert_eq!(first_event(&mut two).await, format!("data: {i}\n\n"));
    }
    assert!(wall() > before, "{:?} > {before:?}", wall());
    assert_eq!(p.status(&app).unwrap().streams, 2);

    // The tier's third stream is refused with a 429 naming the limit...
    let err = open_stream(&p, &app).await.unwrap_err();
    assert_eq!(
        (err.code(), err.status().as_u16()),
        ("too_many_streams", 429)
    );
    let (_, headers, body) = err.to_http();
    assert!(headers.contains_key(http::header::RETRY_AFTER));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["limit"], 2, "{json}");
    // ...while its one compute share still serves plain requests.
    for _ in 0..3 {
        assert_eq!(text(&p.invoke(&app, req("")).await.unwrap()), "hello");
    }
    assert_eq!(first_event(&mut one).await, "data: 1\n\n");

    // A client going away frees its stream at once.
    drop(one);
    assert_eq!(p.status(&app).unwrap().streams, 1);
    let mut three = open_stream(&p, &app).await.unwrap();
    assert_eq!(first_event(&mut three).await, "data: 0\n\n");
    drop((two, three));
    assert_eq!(p.status(&app).unwrap().streams, 0);
    let usage = p.usage(&app).unwrap();
    assert_eq!(usage.usage.peak_streams, 2);
    p.shutdown().await;
}

/// One runtime slot for the host: requests and event stream steps take turns
/// in it, a download (which keeps its request's slot until it ends) runs its
/// steps there instead of waiting for a second slot, and a dedicated tier's
/// stream runs outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_runtime_slot_is_shared_by_requests_and_stream_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.runtime_slots = Some(1);
    // Room for the download to stay open through the checks below.
    let mut long = tight();
    long.wall_clock = Duration::from_secs(30);
    cfg.tiers.insert("long".into(), long);
    let mut own = tight();
    own.dedicated = true;
    cfg.tiers.insert("dedicated".into(), own);
    let p = Platform::builder().config(cfg).build().unwrap();
    assert_eq!(p.host().runtime_slots, 1);
    let (ticker, download) = (id("ticker"), id("download"));
    let js = |s: &str| Bundle::code(Kind::Js, s.as_bytes().to_vec());
    p.deploy(&ticker, Some("tight"), js(TICKER)).await.unwrap();
    let plain = TICKER.replace("text/event-stream", "text/plain");
    p.deploy(&download, Some("long"), js(&plain)).await.unwrap();

    let vip = id("vip");
    p.deploy(&vip, Some("dedicated"), js(TICKER)).await.unwrap();
    let mut vip_events = open_stream(&p, &vip).await.unwrap();
    let mut events = open_stream(&p, &ticker).await.unwrap();
    for i in 0..3 {
        assert_eq!(first_event(&mut events).await, format!("data: {i}\n\n"));
        assert_eq!(text(&p.invoke(&download, req("")).await.unwrap()), "hello");
    }
    let mut body = open_stream(&p, &download).await.unwrap();
    for i in 0..5 {
        assert_eq!(first_event(&mut body).await, format!("data: {i}\n\n"));
    }
    assert_eq!(
        p.host().runtime_slots_in_use,
        1,
        "the download holds the slot"
    );
    // So the event stream's steps wait: past what its buffer held when the
    // slot went, no event comes (a tick is every 20 ms).
    use http_body_util::BodyExt as _;
    let mut buffered = 0;
    while tokio::time::timeout(Duration::from_millis(300), events.body_mut().frame())
        .await
        .is_ok()
    {
        buffered += 1;
        assert!(buffered < 20, "the event stream ran steps without a slot");
    }
    // A dedicated tier's stream runs outside the shared slots: it goes on.
    for _ in 0..20 {
        assert!(first_event(&mut vip_events).await.starts_with(b"data: "));
    }
    drop(body);
    // The event stream goes on once the slot is free again.
    let mut seen = 0;
    while seen < 5 {
        let event = first_event(&mut events).await;
        assert!(event.starts_with(b"data: "), "{event:?}");
        seen += 1;
    }
    drop((events, vip_events));
    // A step already running when the client left gives its slot back.
    let free = async {
        while p.host().runtime_slots_in_use != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), free)
        .await
        .expect("every slot free once the streams are gone");
    p.shutdown().await;
}

/// A WebAssembly module's event stream is its request's own run: counted
/// against `max_streams` like any event stream, but it keeps its compute share
/// until the module exits, and the run's figures reach the meter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webassembly_event_stream_is_counted_and_keeps_its_share() {
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let mut wide = tight();
    wide.compute_shares = 4;
    wide.max_streams = 1;
    wide.wall_clock = Duration::from_secs(30);
    cfg.tiers.insert("wide".into(), wide);
    let p = Platform::builder().config(cfg).build().unwrap();
    let (one, many) = (id("one-share"), id("one-stream"));
    p.deploy(&one, Some("tight"), wasm(EVENTS)).await.unwrap();
    p.deploy(&many, Some("wide"), wasm(EVENTS)).await.unwrap();
    let open = |app: &TenantId, mode: &'static str| {
        let mut req = http::Request::post("/").body(Bytes::from(mode)).unwrap();
        req.extensions_mut().insert(app.clone());
        p.service().oneshot(req)
    };

    // One compute share: while the module streams, the app has none left.
    let mut stream = open(&one, "f").await.unwrap();
    assert_eq!(first_event(&mut stream).await, "data: 1\n\n");
    assert_eq!(p.status(&one).unwrap().streams, 1);
    let err = p.invoke(&one, req("")).await.unwrap_err();
    assert_eq!(err.code(), "overloaded", "{err:?}");
    drop(stream);
    let resp = p.invoke(&one, req("")).await.unwrap();
    assert_eq!(text(&resp), "data: 1\n\n");

    // Shares to spare, one stream allowed: the second is refused.
    let mut stream = open(&many, "f").await.unwrap();
    assert_eq!(first_event(&mut stream).await, "data: 1\n\n");
    let err = open(&many, "f").await.unwrap_err();
    assert_eq!(err.code(), "too_many_streams", "{err:?}");
    drop(stream);
    assert_eq!(p.status(&many).unwrap().streams, 0);

    // The head carries no fuel; the whole run's is metered as the stream ends.
    let fuel = || p.meter().snapshot(&many).unwrap().fuel;
    let before = fuel();
    let ended = open(&many, "e").await.unwrap();
    let body = http_body_util::BodyExt::collect(ended.into_body());
    let body = tokio::time::timeout(Duration::from_secs(5), body)
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"data: 1\n\ndata: 2\n\n");
    assert!(fuel() > before, "{} > {before}", fuel());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_cut_by_a_limit_counts_as_an_error_of_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let mut short = tight();
    short.wall_clock = Duration::from_millis(300);
    cfg.tiers.insert("short".into(), short);
    let p = Platform::builder().config(cfg).build().unwrap();
    let app = id("download");
    // Not an event stream: it must end within the wall clock, and never does.
    let js = TICKER.replace("text/event-stream", "text/plain");
    p.deploy(&app, Some("short"), Bundle::code(Kind::Js, js.into_bytes()))
        .await
        .unwrap();
    let mut resp = open_stream(&p, &app).await.unwrap();
    let errors = || {
        p.meter()
            .snapshot(&app)
            .unwrap()
            .errors(corral::metering::ErrorKind::Deadline)
    };
    assert_eq!(first_event(&mut resp).await, "data: 0\n\n");
    assert_eq!(errors(), 0);
    use http_body_util::BodyExt as _;
    let cut = loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), resp.body_mut().frame())
            .await
            .expect("a frame within 5 s")
            .expect("not a clean end");
        if let Err(e) = frame {
            break e;
        }
    };
    assert!(cut.to_string().contains("deadline"), "{cut}");
    assert_eq!(errors(), 1);
    p.shutdown().await;
}

/// Issue 13: refusals are not requests. 10,000 requests that the rate limiter
/// refuses leave a free-like tier's monthly quota untouched and show up under
/// `refused`; so do the quota's own refusals and oversized bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_never_spend_the_monthly_quota() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let app = id("flooded");
    p.deploy(&app, Some("free-like"), wasm(HELLO))
        .await
        .unwrap();

    let (mut ok, mut limited) = (0u64, 0u64);
    for _ in 0..10_000 {
        match p.invoke(&app, req("")).await {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), "rate_limited", "{e:?}");
                limited += 1;
            }
        }
    }
    // The burst (5), and at most a few more as the bucket refills.
    assert!((5..=20).contains(&ok), "{ok} admitted");
    let report = p.usage(&app).unwrap();
    assert_eq!(report.usage.requests, ok, "only admitted requests count");
    assert_eq!(report.requests_quota, Some(10_000));
    assert_eq!(report.usage.refused[&Refusal::RateLimited], limited);
    assert_eq!(ok + limited, 10_000);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["usage"]["requests"], ok);
    assert_eq!(json["usage"]["refused"]["rate_limited"], limited);
    assert!(
        p.metrics().contains(&format!(
            "corral_refused_total{{kind=\"rate_limited\"}} {limited}\n"
        )),
        "{}",
        p.metrics()
    );

    // Quota refusals and oversized bodies are refused too, never requests:
    // the quota of 3 stays exactly 3 however often it refuses.
    let q = id("q3");
    p.deploy(&q, Some("quota3"), wasm(HELLO)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(p.invoke(&q, req("")).await.unwrap().status(), 200);
    }
    for _ in 0..5 {
        let err = p.invoke(&q, req("")).await.unwrap_err();
        assert_eq!(err.code(), "quota_exceeded");
        let v: serde_json::Value = serde_json::from_slice(&err.to_http().2).unwrap();
        assert_eq!(
            (v["quota"].as_u64(), v["used"].as_u64()),
            (Some(3), Some(3))
        );
    }
    let err = p.invoke(&q, req(&"x".repeat(1025))).await.unwrap_err();
    assert_eq!(err.code(), "payload_too_large");
    let u = p.usage(&q).unwrap().usage;
    assert_eq!(u.requests, 3);
    assert_eq!(
        serde_json::to_value(&u.refused).unwrap(),
        serde_json::json!({"quota_exceeded": 5, "payload_too_large": 1})
    );

    // Refused counts survive a restart like the rest of the month.
    p.shutdown().await;
    drop(p);
    let p = open(dir.path());
    let u = p.usage(&app).unwrap().usage;
    assert_eq!(
        (u.requests, u.refused[&Refusal::RateLimited]),
        (ok, limited)
    );
    p.shutdown().await;
}

/// Rewrites an export archive's manifest (`edit` changes its JSON) and its
/// CRC32, as a tenant holding the archive could.
fn edit_manifest(archive: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    use std::io::Read;
    let mut entries = Vec::new();
    let mut tar = tar::Archive::new(archive);
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        entries.push((path, data));
    }
    let i = entries
        .iter()
        .position(|(p, _)| p == "manifest.json")
        .unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries[i].1).unwrap();
    edit(&mut manifest);
    let json = serde_json::to_vec(&manifest).unwrap();
    let crc = format!("{:08x}", crc32fast::hash(&json));
    entries[i].1 = json;
    let c = entries
        .iter()
        .position(|(p, _)| p == "manifest.crc32")
        .unwrap();
    entries[c].1 = crc.into_bytes();
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in &entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Issue 13: an archive's tier and usage are claims. Without options the app
/// lands on the default tier with fresh usage; `keep_tier` keeps only a tier
/// this node has; `keep_usage` keeps every month the archive carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_the_archives_tier_and_usage_only_when_asked() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = open(a.path());
    let app = id("mover");
    src.deploy(&app, Some("tight"), wasm(HELLO)).await.unwrap();
    for _ in 0..4 {
        src.invoke(&app, req("")).await.unwrap();
    }
    let archive = src.export_tenant(&app).unwrap();
    // The tenant rewrites its archive: the biggest tier, a reset month and an
    // old month it would like on the record.
    let forged = edit_manifest(&archive, |m| {
        m["tenant"]["tier"] = "omni-core".into();
        let mut old = m["usage"][0].clone();
        old["period"] = serde_json::json!({"year": 2020, "month": 1});
        old["requests"] = 77.into();
        m["usage"][0]["requests"] = 0.into();
        m["usage"].as_array_mut().unwrap().push(old);
    });

    let dst = open(b.path());
    let default = ImportOptions::new();
    assert_eq!(
        dst.import_tenant(forged.clone(), default).await.unwrap(),
        app
    );
    let info = dst.app(&app).unwrap().unwrap();
    assert_eq!(info.tier, "free", "the node's default tier, not omni-core");
    assert_eq!(
        dst.store().tenant(&app).unwrap().unwrap().tier.as_str(),
        "free"
    );
    assert!(
        dst.store().tenant_usage(&app).unwrap().is_empty(),
        "no imported months"
    );
    assert_eq!(dst.usage(&app).unwrap().usage.requests, 0);
    assert_eq!(
        dst.usage(&app).unwrap().requests_quota,
        Tier::free().requests_per_month
    );
    assert_eq!(
        text(&dst.invoke(&app, req("")).await.unwrap()),
        "Hello from Corral!\n"
    );
    assert_eq!(dst.usage(&app).unwrap().usage.requests, 1);
    assert!(dst.remove(&app).unwrap());

    // keep_tier with a tier this node does not have: refused, nothing written.
    let gold = edit_manifest(&archive, |m| m["tenant"]["tier"] = "gold".into());
    let err = dst
        .import_tenant(gold, ImportOptions::new().keep_tier(true))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PlatformError::UnknownTier { tier } if tier == "gold"),
        "{err:?}"
    );
    assert_eq!((err.code(), err.status().as_u16()), ("unknown_tier", 400));
    assert!(dst.app(&app).unwrap().is_none());
    assert!(dst.registry().status(&app).is_none());

    // keep_tier and keep_usage with the genuine archive: both kept.
    let c = tempfile::tempdir().unwrap();
    let third = open(c.path());
    let keep = ImportOptions::new().keep_tier(true).keep_usage(true);
    third.import_tenant(archive.clone(), keep).await.unwrap();
    assert_eq!(third.app(&app).unwrap().unwrap().tier, "tight");
    assert_eq!(third.usage(&app).unwrap().usage.requests, 4);
    // The months are its new account's too: what the quota reads.
    assert_eq!(third.account_usage(&app).unwrap().usage.requests, 4);
    assert_eq!(
        third.store().tenant_usage(&app).unwrap(),
        src.store().tenant_usage(&app).unwrap()
    );

    // keep_usage alone keeps every month, on the default tier.
    let d = tempfile::tempdir().unwrap();
    let fourth = open(d.path());
    fourth
        .import_tenant(forged, ImportOptions::new().keep_usage(true))
        .await
        .unwrap();
    assert_eq!(fourth.app(&app).unwrap().unwrap().tier, "free");
    let months = fourth.store().tenant_usage(&app).unwrap();
    assert_eq!(months.len(), 2);
    assert_eq!((months[0].period.year(), months[0].requests), (2020, 77));

    // The tier bounds what the archive brings: a bundle over the default
    // tier's cap is refused even when the archive's own tier allowed it.
    let big_src = id("bigapp");
    let pro_cap = Tier::free().max_bundle_bytes;
    let padding = vec![b'x'; usize::try_from(pro_cap).unwrap()];
    src.deploy(
        &big_src,
        Some("pro"),
        wasm(HELLO).with_static("pad.bin", padding),
    )
    .await
    .unwrap();
    let big = src.export_tenant(&big_src).unwrap();
    let err = dst
        .import_tenant(big, ImportOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PlatformError::BundleTooLarge { .. }),
        "{err:?}"
    );
    assert!(dst.app(&big_src).unwrap().is_none());

    for p in [src, dst, third, fourth] {
        p.shutdown().await;
    }
}

/// A JS app that names its version, keeps a KV key and, at `/kv`, reads it.
fn versioned(version: &str) -> Bundle {
    let src = format!(
        r#"export default {{ async fetch(req, env) {{
            if (new URL(req.url).pathname === "/kv") {{
                const v = await env.KV.get("k");
                return new Response(v === null ? "<none>" : v);
            }}
            await env.KV.put("k", "{version}");
            return new Response("{version}");
        }} }};"#
    );
    Bundle::code(Kind::Js, src.into_bytes())
}

/// Deploy, re-tier, remove and redeploy under load: requests in flight
/// finish or get a clean refusal or 404, and after the redeploy nothing of
/// the old app is left but its month's usage (the documented survivor).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_retier_remove_redeploy_under_load_leaves_only_usage() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let app = id("cycle");
    p.deploy(
        &app,
        Some("rate2"),
        versioned("v1").with_static("old.txt", b"old".to_vec()),
    )
    .await
    .unwrap();
    let get = |path: &str| http::Request::get(path).body(Bytes::new()).unwrap();

    // Load: four tasks send requests until told to stop; every answer is a
    // response or a typed error, never a hang or a panic.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (p, app, stop) = (p.clone(), app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut codes = std::collections::BTreeMap::<String, usize>::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let got =
                        tokio::time::timeout(Duration::from_secs(10), p.invoke(&app, req("")))
                            .await
                            .expect("a request hung");
                    let key = match got {
                        Ok(r) => text(&r).to_owned(),
                        Err(e) => e.code().to_owned(),
                    };
                    *codes.entry(key).or_default() += 1;
                    tokio::task::yield_now().await;
                }
                codes
            })
        })
        .collect();

    // rate2 allows a burst of two: the old app's rate cell runs dry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        p.invoke(&app, req("")).await.unwrap_err().code(),
        "rate_limited"
    );
    // Re-tier: the next request gets a fresh rate cell from the new tier.
    p.set_tier(&app, "tight").await.unwrap();
    assert_eq!(
        p.app_tier(&app).unwrap().rate_per_minute,
        tight().rate_per_minute
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = p.usage(&app).unwrap().usage;
    assert!(before.requests >= 2, "{before:?}");
    assert!(before.storage_bytes > 0, "{before:?}");

    assert!(before.storage_bytes > 0, "{before:?}");
    assert!(p.remove(&app).unwrap());
    assert!(p.app_tier(&app).is_none());
    assert!(matches!(
        p.status(&app),
        Err(PlatformError::NotFound { .. })
    ));
    assert_eq!(
        p.invoke(&app, req("")).await.unwrap_err().code(),
        "not_found"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for t in load {
        for (k, n) in t.await.unwrap() {
            *seen.entry(k).or_default() += n;
        }
    }
    assert!(seen.get("v1").is_some_and(|n| *n >= 2), "{seen:?}");
    assert!(
        seen.contains_key("not_found"),
        "no request saw the removal: {seen:?}"
    );
    // A request in flight while its app is removed may find its KV write
    // refused (the store no longer holds the app): the guest's `put` throws.
    for code in seen.keys() {
        assert!(
            [
                "v1",
                "rate_limited",
                "not_found",
                "overloaded",
                "script_error"
            ]
            .contains(&code.as_str()),
            "unexpected outcome under load: {seen:?}"
        );
    }

    // Redeploy on the rate-limited tier whose cell ran dry: a fresh cell (a
    // burst of two), no KV, no old static file.
    p.deploy(&app, Some("rate2"), versioned("v2"))
        .await
        .unwrap();
    assert_eq!(text(&p.invoke(&app, get("/kv")).await.unwrap()), "<none>");
    // The old file is gone: the request reaches the new code (the second
    // of the burst), which answers with its version.
    assert_eq!(text(&p.invoke(&app, get("/old.txt")).await.unwrap()), "v2");
    assert_eq!(
        p.invoke(&app, req("")).await.unwrap_err().code(),
        "rate_limited"
    );
    // What the docs say survives: the month's usage, still counting.
    let after = p.usage(&app).unwrap().usage;
    assert!(
        after.requests >= before.requests,
        "{before:?} then {after:?}"
    );
    assert_eq!(after.period, before.period);
    p.shutdown().await;
}

/// Accounts: `max_apps` refuses a deploy past it, an account's apps share
/// its monthly requests (the quota refuses at the account's total, and a
/// removed app's requests still count), a shared account's tier is moved
/// for all its apps at once, and an account with apps cannot be deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_apps_share_its_quota_and_its_app_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let mut team = tight();
    team.requests_per_month = Some(5);
    team.max_apps = Some(2);
    cfg.tiers.insert("team5".into(), team);
    let mut solo = tight();
    solo.max_apps = Some(1);
    cfg.tiers.insert("solo".into(), solo);
    let p = Platform::builder().config(cfg).build().unwrap();

    // A one-app account: the second app is refused and not deployed.
    let one = id("one");
    p.create_account(&one, "solo").await.unwrap();
    p.deploy_in(&id("first"), &one, wasm(HELLO)).await.unwrap();
    let err = p
        .deploy_in(&id("second"), &one, wasm(HELLO))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PlatformError::AppLimit {
                apps: 1,
                max: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!((err.status().as_u16(), err.code()), (403, "app_limit"));
    assert!(p.app(&id("second")).unwrap().is_none());
    assert!(p.invoke(&id("second"), req("")).await.is_err());
    // Redeploying the app it has is no new app.
    p.deploy_in(&id("first"), &one, wasm(HELLO)).await.unwrap();

    // Two apps of one account share its 5 requests a month.
    let acme = id("acme");
    p.create_account(&acme, "team5").await.unwrap();
    let (a, b) = (id("acme-a"), id("acme-b"));
    p.deploy_in(&a, &acme, wasm(HELLO)).await.unwrap();
    p.deploy_in(&b, &acme, wasm(HELLO)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(p.invoke(&a, req("")).await.unwrap().status(), 200);
    }
    assert_eq!(p.invoke(&b, req("")).await.unwrap().status(), 200);
    // One app of a shared account cannot change the account's tier.
    for err in [
        p.deploy(&b, Some("tight"), wasm(HELLO)).await.unwrap_err(),
        p.set_tier(&b, "tight").await.unwrap_err(),
    ] {
        assert!(matches!(err, PlatformError::AccountTier { .. }), "{err:?}");
        assert_eq!((err.status().as_u16(), err.code()), (409, "account_tier"));
    }
    // Removing an app gives back none of the account's month.
    assert!(p.remove(&a).unwrap());
    assert_eq!(p.invoke(&b, req("")).await.unwrap().status(), 200);
    let err = p.invoke(&b, req("")).await.unwrap_err();
    assert!(
        matches!(&err, PlatformError::Refused(r) if r.kind == Refusal::QuotaExceeded),
        "{err:?}"
    );
    let usage = p.account_usage(&acme).unwrap();
    assert_eq!((usage.usage.requests, usage.requests_quota), (5, Some(5)));
    assert_eq!(p.usage(&b).unwrap().usage.requests, 2);
    // Another account is not touched by acme's month.
    assert_eq!(p.invoke(&id("first"), req("")).await.unwrap().status(), 200);

    // An app's tier is its account's.
    let info = p.set_account_tier(&acme, "tight").await.unwrap();
    assert_eq!(
        (info.tier.as_str(), info.apps.clone()),
        ("tight", vec![b.clone()])
    );
    assert_eq!(p.app_tier(&b).unwrap().requests_per_month, Some(1_000));
    assert_eq!(p.invoke(&b, req("")).await.unwrap().status(), 200);

    // Moving an app: it takes the new account's tier.
    let moved = p.move_app(&b, &one).await;
    assert!(
        matches!(moved, Err(PlatformError::AppLimit { .. })),
        "{moved:?}"
    );
    p.create_account(&id("big"), "team5").await.unwrap();
    let app = p.move_app(&b, &id("big")).await.unwrap();
    assert_eq!((app.account.as_str(), app.tier.as_str()), ("big", "team5"));
    assert_eq!(p.app_tier(&b).unwrap().requests_per_month, Some(5));

    // Accounts with apps stay; empty ones go.
    assert!(matches!(
        p.delete_account(&id("big")),
        Err(PlatformError::AccountNotEmpty { apps: 1, .. })
    ));
    assert!(p.delete_account(&acme).unwrap());
    let names: Vec<_> = p
        .accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.name.to_string())
        .collect();
    assert_eq!(names, ["big", "one"]);
    p.shutdown().await;
}

/// A request still running when its app is removed and deployed again under
/// the same name cannot touch the new app's KV: its deployment's KV is
/// refused from the remove on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_outliving_its_app_cannot_touch_the_next_apps_kv() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let app = id("reborn");
    let slow = r#"export default { async fetch(req, env) {
        await new Promise((r) => setTimeout(r, 400));
        try { await env.KV.put("k", "old"); } catch (e) { return new Response("refused: " + e.message); }
        return new Response("wrote");
    } };"#;
    p.deploy(&app, None, Bundle::code(Kind::Js, slow.as_bytes().to_vec()))
        .await
        .unwrap();
    let in_flight = {
        let (p, app) = (p.clone(), app.clone());
        tokio::spawn(async move { p.invoke(&app, req("")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(p.remove(&app).unwrap());
    p.deploy(&app, None, versioned("v2")).await.unwrap();
    let old = in_flight.await.unwrap().unwrap();
    assert!(text(&old).starts_with("refused: "), "{}", text(&old));
    let kv = http::Request::get("/kv").body(Bytes::new()).unwrap();
    assert_eq!(text(&p.invoke(&app, kv).await.unwrap()), "<none>");
    p.shutdown().await;
}

/// JavaScript work shows in usage: fuel is interrupt ticks (one per
/// `POLLS_PER_TICK` interpreter poll points), so a request that computes has
/// nonzero fuel in the app's usage, as a WebAssembly one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_work_is_metered_as_fuel() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let mut norate = tight();
    norate.rate_per_minute = None;
    cfg.tiers.insert("norate".into(), norate);
    let p = Platform::builder().config(cfg).build().unwrap();
    let app = id("busy-js");
    let js = r#"export default { fetch() {
        let x = 0;
        for (let i = 0; i < 1000000; i++) x += i % 7;
        return new Response(String(x));
    } };"#;
    p.deploy(&app, None, Bundle::code(Kind::Js, js.as_bytes().to_vec()))
        .await
        .unwrap();
    let r = p.invoke(&app, req("")).await.unwrap();
    let fuel = r
        .extensions()
        .get::<InvocationStats>()
        .unwrap()
        .fuel_consumed;
    assert!(fuel >= 50, "a million iterations took {fuel} ticks");
    let usage = p.usage(&app).unwrap().usage;
    assert_eq!((usage.requests, usage.fuel), (1, fuel));

    // A request shorter than a tick may show none, but the interpreter's
    // poll counter runs on across requests, so many short ones add up.
    let hello = id("short-js");
    let js = b"export default { fetch(req) { return new Response(new URL(req.url).pathname); } };";
    p.deploy(&hello, Some("norate"), Bundle::code(Kind::Js, js.to_vec()))
        .await
        .unwrap();
    for _ in 0..500 {
        p.invoke(&hello, req("")).await.unwrap();
    }
    let usage = p.usage(&hello).unwrap().usage;
    println!("500 short requests: {} ticks", usage.fuel);
    assert!(usage.fuel >= 1, "500 short requests took no tick at all");
    p.shutdown().await;
}

/// A warm request to a path that is no static file reads no SQLite: the
/// asset layer knows the app's static paths from RAM (read once, dropped
/// when the bundle changes). And building the stack again, as every
/// `Platform::invoke` does, registers no new store hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_dynamic_request_reads_no_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let mut norate = tight();
    norate.rate_per_minute = None;
    cfg.tiers.insert("norate".into(), norate);
    let p = Platform::builder().config(cfg).build().unwrap();
    let app = id("dyn");
    let bundle = wasm(HELLO).with_static("index.html", b"<h1>hi</h1>".to_vec());
    p.deploy(&app, Some("norate"), bundle).await.unwrap();
    let get = |path: &str| http::Request::get(path).body(Bytes::new()).unwrap();
    // The first request reads the app's static paths; the static file
    // itself comes from the store once, then from the cache.
    assert_eq!(
        text(&p.invoke(&app, get("/dynamic")).await.unwrap()),
        "Hello from Corral!\n"
    );
    assert_eq!(
        text(&p.invoke(&app, get("/")).await.unwrap()),
        "<h1>hi</h1>"
    );
    let before = p.store().stats();
    for _ in 0..50 {
        let r = p.invoke(&app, get("/dynamic")).await.unwrap();
        assert_eq!(text(&r), "Hello from Corral!\n");
        assert_eq!(
            text(&p.invoke(&app, get("/")).await.unwrap()),
            "<h1>hi</h1>"
        );
    }
    let after = p.store().stats();
    assert_eq!(after.reads, before.reads, "warm requests read SQLite");
    assert_eq!(after.bundle_listeners, before.bundle_listeners);

    // A new bundle is seen at once: the index and the cache were dropped.
    let v2 = wasm(HELLO).with_static("dynamic", b"now static".to_vec());
    p.deploy(&app, Some("norate"), v2).await.unwrap();
    assert_eq!(
        text(&p.invoke(&app, get("/dynamic")).await.unwrap()),
        "now static"
    );
    assert_eq!(
        text(&p.invoke(&app, get("/")).await.unwrap()),
        "Hello from Corral!\n"
    );
    p.shutdown().await;
}

/// Two nodes on one store: a bundle the other node cannot compile (here, a
/// broken one written straight into the store) is skipped by the app sync,
/// which still loads the good app beside it ("bad" sorts first: a pass that
/// stopped at its error would load nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_sync_skips_a_bundle_it_cannot_load_and_loads_the_rest() {
    use corral_storage::{AppKind, TenantRecord};
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared.db");
    let node = |n: &str| {
        let mut cfg = PlatformConfig::with_data_dir(dir.path().join(n));
        cfg.storage.url = Some(shared.display().to_string());
        Platform::builder().config(cfg).build().unwrap()
    };
    let (a, b) = (node("a"), node("b"));
    let good = TenantId::new("good").unwrap();
    let js = b"export default { fetch() { return new Response('ok'); } };".to_vec();
    a.deploy(&good, None, Bundle::code(Kind::Js, js))
        .await
        .unwrap();
    let bad = TenantId::new("bad").unwrap();
    let store = a.store();
    store
        .create_tenant(&TenantRecord::new(
            bad.clone(),
            "free".parse().unwrap(),
            AppKind::Wasm,
        ))
        .unwrap();
    store
        .put_bundle(
            &bad,
            &corral_storage::Bundle::new(AppKind::Wasm, b"not wasm".to_vec()),
        )
        .unwrap();

    let first = b.sync_apps().await.unwrap();
    assert_eq!(first.added, 1, "{first:?}");
    assert!(b.resolve_app(&good).is_some());
    assert!(b.resolve_app(&bad).is_none());
    let again = b.sync_apps().await.unwrap();
    assert_eq!((again.added, again.updated), (0, 0), "{again:?}");
    a.shutdown().await;
    b.shutdown().await;
}
