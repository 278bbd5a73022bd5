//! The Workers-style surface: requests, responses, web classes, KV, logs.

use std::sync::Arc;

use bytes::Bytes;
use corral::{Backend, Limits, QuickJsBackend, SandboxError};

use crate::{MemKv, Tenant, get, stats};

#[tokio::test]
async fn hello_fetch() {
    let t = Tenant::new(
        "hello",
        r#"export default { async fetch(request) { return new Response("hello") } }"#,
        Limits::default(),
    );
    let first = t.get("/").await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.body().as_ref(), b"hello");
    assert_eq!(first.headers()["content-type"], "text/plain;charset=UTF-8");
    let s = stats(&first);
    assert!(
        s.cold_start,
        "the first request on a loaded program is its cold start"
    );
    assert!(s.peak_memory > 64 << 10, "peak {}", s.peak_memory);

    let second = t.get("/").await.unwrap();
    assert_eq!(second.body().as_ref(), b"hello");
    assert!(!stats(&second).cold_start);
}

#[tokio::test]
async fn status_headers_and_binary_bodies_round_trip() {
    let t = Tenant::new(
        "echo",
        r#"export default { async fetch(req) {
            const bytes = new Uint8Array(await req.arrayBuffer());
            const out = new Uint8Array(bytes.length);
            for (let i = 0; i < bytes.length; i++) out[i] = bytes[bytes.length - 1 - i];
            const h = new Headers({ "X-Len": String(bytes.length) });
            h.append("Set-Cookie", "a=1");
            h.append("Set-Cookie", "b=2");
            h.set("x-method", req.method);
            h.set("x-custom-in", req.headers.get("X-Custom") ?? "none");
            h.set("x-url", req.url);
            return new Response(out.buffer, { status: 201, headers: h });
        } }"#,
        Limits::default(),
    );
    let body: Vec<u8> = (0..=255u8).collect();
    let req = http::Request::post("/upload?x=1")
        .header("host", "app.example:8080")
        .header("x-custom", "yes")
        .body(Bytes::from(body.clone()))
        .unwrap();
    let resp = t.send(req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let expected: Vec<u8> = body.iter().rev().copied().collect();
    assert_eq!(resp.body().as_ref(), expected.as_slice());
    let h = resp.headers();
    assert_eq!(h["x-len"], "256");
    assert_eq!(h["x-method"], "POST");
    assert_eq!(h["x-custom-in"], "yes");
    assert_eq!(h["x-url"], "http://app.example:8080/upload?x=1");
    let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert!(
        h.get("content-type").is_none(),
        "binary bodies get no default type"
    );

    // A Uint8Array view (with an offset) as the body, and Response.json.
    let t = Tenant::new(
        "views",
        r#"export default { fetch(req) {
            const u = new URL(req.url);
            if (u.pathname === "/json") return Response.json({ ok: true, n: [1, 2] }, { status: 202 });
            const buf = new Uint8Array([9, 1, 2, 3, 9]);
            return new Response(buf.subarray(1, 4), { headers: [["content-type", "application/octet-stream"]] });
        } }"#,
        Limits::default(),
    );
    let resp = t.get("/view").await.unwrap();
    assert_eq!(resp.body().as_ref(), &[1, 2, 3]);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let resp = t.get("/json").await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.body().as_ref(), br#"{"ok":true,"n":[1,2]}"#);
}

#[tokio::test]
async fn web_classes_behave_like_the_platform() {
    let t = Tenant::new(
        "web",
        r#"export default { async fetch(req) {
            const u = new URL("https://User:pw@Example.COM:443/a/./b/../c%20d?q=1&q=2&s=a+b#frag");
            const rel = new URL("../x?y=z", "http://h.example/p/q/r");
            const p = new URLSearchParams({ b: "2", a: "1 & 2" });
            p.append("a", "é");
            p.sort();
            u.searchParams.set("q", "3");
            const enc = new TextEncoder().encode("héllo €");
            const dec = new TextDecoder().decode(new Uint8Array([0xEF, 0xBB, 0xBF, 0x68, 0xC3, 0xA9]));
            let fatal;
            try { new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff])); fatal = "no"; }
            catch (e) { fatal = e.constructor.name; }
            const rnd = crypto.getRandomValues(new Uint8Array(32));
            const uuid = crypto.randomUUID();
            const h = new Headers([["B", "2"], ["a", "1"], ["A", "3"]]);
            return Response.json({
                href: u.href, host: u.host, origin: u.origin, path: u.pathname, search: u.search,
                hash: u.hash, user: u.username, s: u.searchParams.get("s"),
                rel: rel.href,
                params: p.toString(),
                enc: Array.from(enc), dec, fatal,
                rndLen: rnd.length, rndNonZero: rnd.some((x) => x !== 0),
                uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid),
                headers: [...h],
                bad: URL.canParse("not a url"),
            });
        } }"#,
        Limits::default(),
    );
    let body = t.text("/").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let expected = serde_json::json!({
        "href": "https://User:pw@example.com/a/c%20d?q=3&s=a+b#frag",
        "host": "example.com",
        "origin": "https://example.com",
        "path": "/a/c%20d",
        "search": "?q=3&s=a+b",
        "hash": "#frag",
        "user": "User",
        "s": "a b",
        "rel": "http://h.example/p/x?y=z",
        "params": "a=1+%26+2&a=%C3%A9&b=2",
        "enc": [104, 195, 169, 108, 108, 111, 32, 226, 130, 172],
        "dec": "hé",
        "fatal": "TypeError",
        "rndLen": 32,
        "rndNonZero": true,
        "uuid": true,
        "headers": [["a", "1, 3"], ["b", "2"]],
        "bad": false,
    });
    assert_eq!(v, expected);
}

#[tokio::test]
async fn console_log_goes_to_the_tenant_log() {
    let t = Tenant::new(
        "logger",
        r#"export default { fetch(req) {
            console.log("hello", 42, { a: [1, "x"] });
            console.error("bad", null);
            return new Response("ok");
        } }"#,
        Limits::default(),
    );
    assert_eq!(t.text("/").await, "ok");
    assert_eq!(
        t.cx.log.lines(),
        vec![
            "hello 42 { a: [ 1, \"x\" ] }".to_owned(),
            "error: bad null".to_owned()
        ]
    );
}

#[tokio::test]
async fn promises_async_and_request_scoped_timers() {
    let t = Tenant::new(
        "async",
        r#"
        const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
        export default { async fetch(req) {
            const order = [];
            queueMicrotask(() => order.push("micro"));
            setTimeout(() => order.push("t20"), 20);
            setTimeout(() => order.push("t5"), 5);
            const id = setTimeout(() => order.push("cleared"), 1);
            clearTimeout(id);
            await sleep(30);
            const all = await Promise.all([1, Promise.resolve(2), (async () => 3)()]);
            // A timer left pending is dropped when the request ends.
            setTimeout(() => console.log("never"), 10_000);
            return new Response(order.join(",") + "|" + all.join(","));
        } }"#,
        Limits::default(),
    );
    let started = std::time::Instant::now();
    assert_eq!(t.text("/").await, "micro,t5,t20|1,2,3");
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));
    assert_eq!(t.text("/").await, "micro,t5,t20|1,2,3");
    assert!(t.cx.log.lines().is_empty());
}

#[tokio::test]
async fn kv_get_put_delete_list() {
    let kv = Arc::new(MemKv::default());
    let src = r#"export default { async fetch(req, env) {
        const u = new URL(req.url);
        const op = u.pathname.slice(1);
        const key = u.searchParams.get("k");
        if (op === "put") { await env.KV.put(key, await req.text()); return new Response("stored"); }
        if (op === "putbin") { await env.KV.put(key, new Uint8Array([0, 255, 7])); return new Response("stored"); }
        if (op === "get") { const v = await env.KV.get(key); return new Response(v === null ? "<none>" : v); }
        if (op === "getbin") { return new Response(await env.KV.get(key, "arrayBuffer")); }
        if (op === "json") { return new Response(JSON.stringify(await env.KV.get(key, { type: "json" }))); }
        if (op === "del") { await env.KV.delete(key); return new Response("deleted"); }
        if (op === "list") { return Response.json(await env.KV.list({ prefix: u.searchParams.get("p") ?? "", limit: 2 })); }
        if (op === "big") {
            try { await env.KV.put("big", "x".repeat(2000)); return new Response("stored"); }
            catch (e) { return new Response(e.message, { status: 507 }); }
        }
        return new Response("?", { status: 400 });
    } }"#;
    let a = Tenant::new("kv-a", src, Limits::default()).with_kv(kv.clone());
    let b = Tenant::new("kv-b", src, Limits::default()).with_kv(kv.clone());
    let put = |path: &str, body: &'static str| {
        http::Request::post(path)
            .body(Bytes::from_static(body.as_bytes()))
            .unwrap()
    };
    assert_eq!(
        a.send(put("/put?k=user:1", "alice"))
            .await
            .unwrap()
            .body()
            .as_ref(),
        b"stored"
    );
    a.send(put("/put?k=user:2", "{\"n\":2}")).await.unwrap();
    a.send(put("/put?k=user:3", "carol")).await.unwrap();
    a.send(put("/put?k=other", "x")).await.unwrap();
    assert_eq!(a.text("/get?k=user:1").await, "alice");
    assert_eq!(a.text("/json?k=user:2").await, "{\"n\":2}");
    assert_eq!(b.text("/get?k=user:1").await, "<none>", "KV is per tenant");
    let list: serde_json::Value = serde_json::from_str(&a.text("/list?p=user:").await).unwrap();
    assert_eq!(
        list,
        serde_json::json!({
            "keys": [{"name": "user:1"}, {"name": "user:2"}],
            "list_complete": false,
            "cursor": "user:2"
        })
    );
    assert_eq!(a.text("/del?k=user:1").await, "deleted");
    assert_eq!(a.text("/get?k=user:1").await, "<none>");
    a.get("/putbin?k=bin").await.unwrap();
    assert_eq!(
        a.get("/getbin?k=bin").await.unwrap().body().as_ref(),
        &[0, 255, 7]
    );

    let resp = a.get("/big").await.unwrap();
    assert_eq!(resp.status(), 507);
    assert_eq!(
        resp.body().as_ref(),
        b"KV: storage quota of 1024 bytes exceeded"
    );

    // Without a KV store there is no env.KV binding.
    let bare = Tenant::new(
        "nokv",
        r#"export default { fetch(req, env) { return new Response(String("KV" in env)) } }"#,
        Limits::default(),
    );
    assert_eq!(bare.text("/").await, "false");
}

#[tokio::test]
async fn a_global_set_by_one_tenant_is_invisible_to_another() {
    let src = r#"export default { fetch(req) {
        const u = new URL(req.url);
        if (u.pathname === "/set") { globalThis.secret = "tenant-a-secret"; Object.prototype.polluted = 1; }
        return new Response(`${typeof globalThis.secret}:${({}).polluted}`);
    } }"#;
    let a = Tenant::new("iso-a", src, Limits::default());
    let b = Tenant::new("iso-b", src, Limits::default());
    assert_eq!(a.text("/set").await, "string:1");
    assert_eq!(
        a.text("/").await,
        "string:1",
        "globals persist within a tenant's runtime"
    );
    assert_eq!(b.text("/").await, "undefined:undefined");
}

#[tokio::test]
async fn uncaught_errors_are_script_errors_with_stacks() {
    let t = Tenant::new(
        "thrower",
        "function inner() {\n  throw new TypeError(\"boom\");\n}\nexport default { fetch() { inner(); } }\n",
        Limits::default(),
    );
    let err = t.get("/").await.unwrap_err();
    match err {
        SandboxError::ScriptError { message, stack } => {
            assert_eq!(message, "TypeError: boom");
            let stack = stack.expect("a stack");
            assert!(stack.contains("at inner (app.js:2:"), "stack: {stack}");
        }
        other => panic!("expected ScriptError, got {other:?}"),
    }

    let t = Tenant::new(
        "thrower2",
        r#"export default { async fetch() { throw "plain string" } }"#,
        Limits::default(),
    );
    assert!(matches!(
        t.get("/").await.unwrap_err(),
        SandboxError::ScriptError { message, stack: None } if message == "plain string"
    ));
}

#[tokio::test]
async fn bad_responses_are_typed() {
    let t = Tenant::new(
        "bad",
        r#"export default { fetch(req) {
            const p = new URL(req.url).pathname;
            if (p === "/string") return "not a response";
            if (p === "/big") return new Response("x".repeat(100));
            return new Promise(() => {});
        } }"#,
        Limits::builder().max_output_bytes(50).build(),
    );
    let err = t.get("/string").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::BadResponse { reason } if reason == "fetch() must return a Response, got not a response"),
        "{err:?}"
    );
    assert!(matches!(
        t.get("/big").await.unwrap_err(),
        SandboxError::OutputTooLarge { limit: 50 }
    ));
    assert!(matches!(
        t.get("/never").await.unwrap_err(),
        SandboxError::BadResponse { reason } if reason.contains("never settled")
    ));
}

#[test]
fn syntax_error_at_deploy_names_line_and_column() {
    let backend = QuickJsBackend::new();
    let src = b"export default {\n  fetch(req) {\n    return new Response(\"x\";\n  }\n}\n";
    let err = backend.precompile(src, &Limits::default()).unwrap_err();
    match err {
        SandboxError::InvalidModule { reason } => assert_eq!(
            reason,
            "SyntaxError: Unexpected token ';' at app.js line 3, column 28"
        ),
        other => panic!("expected InvalidModule, got {other:?}"),
    }
}

#[test]
fn deploy_refuses_modules_that_cannot_serve() {
    let backend = QuickJsBackend::new();
    let deploy = |src: &str| backend.precompile(src.as_bytes(), &Limits::default());
    let reason = |r: Result<Vec<u8>, SandboxError>| match r {
        Err(SandboxError::InvalidModule { reason }) => reason,
        other => panic!("expected InvalidModule, got {other:?}"),
    };
    assert_eq!(
        reason(deploy("export const x = 1;")),
        "evaluating app.js: bad response from guest: app.js must `export default { fetch(request, env, ctx) { ... } }`"
    );
    assert!(reason(deploy("throw new Error('top');")).contains("Error: top"));
    assert!(reason(deploy("import x from 'fs';\nexport default { fetch() {} }")).contains("fs"));
    assert!(reason(backend.precompile(&[0xff, 0xfe], &Limits::default())).contains("not UTF-8"));
}

#[test]
fn corrupt_artifacts_are_refused() {
    let backend = QuickJsBackend::new();
    let limits = Limits::default();
    let mut art = backend
        .precompile(
            b"export default { fetch() { return new Response('x') } }",
            &limits,
        )
        .unwrap();
    let last = art.len() - 1;
    art[last] ^= 0x55;
    assert!(matches!(
        backend.load(&art, &limits),
        Err(SandboxError::CorruptArtifact { .. })
    ));
    assert!(matches!(
        backend.load(b"garbage", &limits),
        Err(SandboxError::CorruptArtifact { .. })
    ));
}

#[tokio::test]
async fn tar_bundles_deploy_their_app_js() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data).unwrap();
    };
    add("static/index.html", b"<h1>hi</h1>");
    add(
        "app.js",
        b"export default { fetch() { return new Response('from tar') } }",
    );
    let bundle = builder.into_inner().unwrap();
    let backend = QuickJsBackend::new();
    let limits = Limits::default();
    let program = backend
        .load(&backend.precompile(&bundle, &limits).unwrap(), &limits)
        .unwrap();
    let cx = corral::InvokeContext::new(
        "tarred".parse().unwrap(),
        Arc::new(limits),
        Arc::new(corral::TenantLog::new(1024)),
    );
    let resp = program.invoke(cx, get("/")).await.unwrap();
    let body = resp.into_body().to_bytes().await.unwrap();
    assert_eq!(body, "from tar");
}

/// Headers and Response as the Fetch standard has them (issue 16): a null
/// init throws, iteration is live over the sorted list through a real
/// Headers Iterator, `statusText` defaults to "", and `Response.error()` is
/// a network error with immutable headers that fails the request it answers.
#[tokio::test]
async fn headers_and_response_follow_the_fetch_standard() {
    let t = Tenant::new(
        "fetchstd",
        r#"export default { async fetch(req) {
            if (new URL(req.url).pathname === "/error") return Response.error();
            const out = [];
            try { new Headers(null); out.push("null accepted"); } catch (e) { out.push(e.constructor.name); }
            const h = new Headers({ foo: "2", baz: "1", BAR: "0", quux: "3" });
            const seen = [];
            for (const [k] of h) { seen.push(k); if (k === "baz") { h.delete("bar"); h.append("x-yz", "4"); } }
            out.push(seen.join(","));
            const it = h.keys();
            out.push(Object.prototype.toString.call(it));
            out.push(Object.getPrototypeOf(Object.getPrototypeOf(it)) === Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())));
            out.push(JSON.stringify(new Response("x", { status: 404 }).statusText));
            const e = Response.error();
            out.push(e.type, e.status, e.body);
            try { e.headers.append("a", "b"); out.push("mutable"); } catch (err) { out.push(err.constructor.name); }
            return new Response(out.join("|"));
        } }"#,
        Limits::default(),
    );
    assert_eq!(
        t.text("/").await,
        "TypeError|bar,baz,quux,x-yz|[object Headers Iterator]|true|\"\"|error|0||TypeError"
    );
    let err = t.get("/error").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::BadResponse { reason } if reason.contains("Response.error()")),
        "{err:?}"
    );
}

/// EventTarget, Event, CustomEvent, AbortController and AbortSignal after
/// the DOM standard (issue 16): listeners in order with capture first,
/// `once`, removal through a signal, handler attributes, a synchronous
/// trusted abort event, `AbortSignal.any` and `timeout`, brand checks.
#[tokio::test]
async fn events_and_abort_signals_follow_the_dom_standard() {
    let t = Tenant::new(
        "events",
        r#"export default { async fetch() {
            const out = [];
            const et = new EventTarget();
            et.addEventListener("x", () => out.push("bubble"));
            et.addEventListener("x", () => out.push("capture"), true);
            et.addEventListener("x", { handleEvent(e) { out.push("obj:" + e.detail); } }, { once: true });
            const ac0 = new AbortController();
            et.addEventListener("x", () => out.push("until-abort"), { signal: ac0.signal });
            out.push(et.dispatchEvent(new CustomEvent("x", { detail: 7 })));
            ac0.abort();
            et.dispatchEvent(new Event("x"));
            const ac = new AbortController();
            let fired = 0;
            ac.signal.onabort = (e) => { fired++; out.push(e.isTrusted, e.target === ac.signal); };
            const any = AbortSignal.any([ac.signal, new AbortController().signal]);
            ac.abort();
            ac.abort();
            out.push(fired, ac.signal.aborted, ac.signal.reason.name, ac.signal.reason instanceof DOMException, any.aborted);
            try { Object.getOwnPropertyDescriptor(AbortController.prototype, "signal").get.call({}); } catch (e) { out.push(e.constructor.name); }
            try { new AbortSignal(); } catch (e) { out.push(e.constructor.name); }
            const reason = await new Promise((resolve) => { AbortSignal.timeout(5).onabort = function () { resolve(this.reason.name); }; });
            out.push(reason, self === globalThis);
            return new Response(out.join(","));
        } }"#,
        Limits::default(),
    );
    assert_eq!(
        t.text("/").await,
        "capture,bubble,obj:7,until-abort,true,capture,bubble,true,true,1,true,AbortError,true,true,TypeError,TypeError,TimeoutError,true"
    );
}

/// The global object is an EventTarget (as a worker's is): bare
/// `addEventListener`/`dispatchEvent` work with the global as `this`, and an
/// exception a listener throws is an `error` event there (HTML's "report an
/// exception"), which a listener can cancel; an error thrown while one is
/// reported is not reported again (no recursion).
#[tokio::test]
async fn the_global_object_is_an_event_target_with_error_events() {
    let t = Tenant::new(
        "global-events",
        r#"export default { async fetch() {
            const out = [];
            function onPing() { out.push(this === globalThis); }
            addEventListener("ping", onPing);
            out.push(dispatchEvent(new Event("ping")));
            removeEventListener("ping", onPing);
            dispatchEvent(new Event("ping"));
            const boom = new Error("boom");
            const onError = (e) => {
                out.push(e instanceof ErrorEvent, e.error === boom, e.message, e.isTrusted);
                e.preventDefault();
                throw new Error("again");
            };
            globalThis.addEventListener("error", onError);
            const et = new EventTarget();
            et.addEventListener("x", () => { throw boom; });
            et.dispatchEvent(new Event("x"));
            removeEventListener("error", onError);
            try { dispatchEvent(null); } catch (e) { out.push(e.constructor.name); }
            out.push(Object.getOwnPropertyDescriptor(new Event("x"), "isTrusted").enumerable);
            return new Response(out.join(","));
        } }"#,
        Limits::default(),
    );
    assert_eq!(
        t.text("/").await,
        "true,true,true,true,boom,true,TypeError,true"
    );
}

/// Blob options are a WebIDL dictionary (issue 16): `endings: "native"`
/// turns CR and CRLF in string parts into LF, a bad `endings` or a
/// non-object options bag is a TypeError; URLs keep a file: host beside a
/// drive letter and a file: path's empty leading segments.
#[tokio::test]
async fn blob_options_and_file_urls_follow_the_standards() {
    let t = Tenant::new(
        "blob-url",
        r#"export default { async fetch() {
            const out = [];
            out.push(JSON.stringify(await new Blob(["a\r\nb\rc"], { endings: "native" }).text()));
            out.push(JSON.stringify(await new Blob(["a\r\n"], {}).text()));
            for (const bad of [1, "x", true]) { try { new Blob([], bad); } catch (e) { out.push(e.constructor.name); } }
            try { new Blob([], { endings: "crlf" }); } catch (e) { out.push(e.constructor.name); }
            out.push(new URL("file://host/C:/x").host, new URL("file:////srv").href);
            const u = new URL("file://h/C:/");
            u.pathname = "//a";
            out.push(u.href, new URL("blob:ftp://host/").origin);
            return new Response(out.join(","));
        } }"#,
        Limits::default(),
    );
    assert_eq!(
        t.text("/").await,
        r#""a\nb\nc","a\r\n",TypeError,TypeError,TypeError,TypeError,host,file:////srv,file://h//a,null"#
    );
}

/// `crypto.getRandomValues` throws what Web Crypto says (issue 16): a
/// TypeError for a non-view, a TypeMismatchError DOMException for float
/// arrays and DataViews, a QuotaExceededError DOMException past 65,536 bytes.
#[tokio::test]
async fn get_random_values_throws_the_standard_errors() {
    let t = Tenant::new(
        "rng",
        r#"export default { async fetch() {
            const out = [];
            for (const arg of [{}, new Float32Array(4), new DataView(new ArrayBuffer(4)), new Uint32Array(16385)]) {
                try { crypto.getRandomValues(arg); out.push("ok"); }
                catch (e) { out.push(e instanceof DOMException ? e.name + ":" + e.code : e.constructor.name); }
            }
            out.push(crypto.getRandomValues(new BigInt64Array(2)).constructor.name);
            return new Response(out.join(","));
        } }"#,
        Limits::default(),
    );
    assert_eq!(
        t.text("/").await,
        "TypeError,TypeMismatchError:17,TypeMismatchError:17,QuotaExceededError:22,BigInt64Array"
    );
}

/// `structuredClone` (issue 16): a deep copy that keeps cycles, shared
/// references, Maps, Sets, Dates and typed arrays over a copied buffer, and
/// refuses functions with a DataCloneError.
#[tokio::test]
async fn structured_clone_copies_deeply_and_refuses_functions() {
    let t = Tenant::new(
        "clone",
        r#"export default { async fetch() {
            const bytes = new Uint8Array([1, 2, 3]);
            const src = { n: 1, d: new Date(5), m: new Map([["k", [1, 2]]]), s: new Set([3]), bytes, view: bytes.subarray(1) };
            src.self = src;
            const c = structuredClone(src);
            c.bytes[1] = 9;
            const out = [
                c !== src, c.self === c, c.d.getTime(), c.m.get("k").join("+"), c.s.has(3),
                bytes[1], c.view[0], c.view.buffer === c.bytes.buffer,
            ];
            try { structuredClone({ f() {} }); out.push("cloned a function"); }
            catch (e) { out.push(e.name); }
            return new Response(out.join(","));
        } }"#,
        Limits::default(),
    );
    assert_eq!(
        t.text("/").await,
        "true,true,5,1+2,true,2,9,true,DataCloneError"
    );
}

/// `pipeTo(dest, { signal })` (issue 16): aborting the signal rejects the
/// pipe with its reason, aborts the destination and cancels the source; an
/// already aborted signal stops the pipe before any chunk moves.
#[tokio::test]
async fn pipe_to_stops_when_its_signal_aborts() {
    let t = Tenant::new(
        "pipeabort",
        r#"export default { async fetch() {
            const out = [];
            const written = [];
            let cancelled, abortedWith;
            const source = new ReadableStream({ pull(c) { c.enqueue("x"); return new Promise((r) => setTimeout(r, 1)); }, cancel(r) { cancelled = r; } });
            const dest = new WritableStream({ write(chunk) { written.push(chunk); }, abort(r) { abortedWith = r; } });
            const ac = new AbortController();
            const piped = source.pipeTo(dest, { signal: ac.signal });
            await new Promise((r) => setTimeout(r, 20));
            ac.abort("stop");
            try { await piped; out.push("resolved"); } catch (e) { out.push("rejected:" + e); }
            out.push(written.length > 0, cancelled, abortedWith);
            const w2 = [];
            const again = new ReadableStream({ start(c) { c.enqueue("y"); } })
                .pipeTo(new WritableStream({ write(c) { w2.push(c); } }), { signal: AbortSignal.abort("early") });
            try { await again; } catch (e) { out.push(e, w2.length); }
            try { await new ReadableStream().pipeTo(new WritableStream(), { signal: {} }); } catch (e) { out.push(e.constructor.name); }
            out.push(navigator.userAgent);
            return new Response(out.join(","));
        } }"#,
        Limits::default(),
    );
    assert_eq!(
        t.text("/").await,
        "rejected:stop,true,stop,stop,early,0,TypeError,Corral"
    );
}

/// Blob and File (issue 16): parts of strings, buffers and other blobs,
/// `slice` with negative indices, `text`/`bytes`/`stream`, a lowercased
/// type, and a Blob as a Response body (its type the content-type) read
/// back with `blob()`.
#[tokio::test]
async fn blobs_and_files_hold_their_parts() {
    let t = Tenant::new(
        "blob",
        r#"export default { async fetch() {
            const inner = new Blob(["é"]);
            const b = new Blob(["ab", new Uint8Array([99]), inner], { type: "Text/Plain" });
            const out = [b.size, b.type, await b.text(), await b.slice(-3).text(), (await b.slice(-3, -1).bytes()).length, b.slice(1, 2, "x/y").type];
            const f = new File(["hi"], "a.txt", { lastModified: 7 });
            out.push(f.name, f.lastModified, f.size, f instanceof Blob);
            const chunks = [];
            for await (const c of b.stream()) chunks.push(c.length);
            out.push(chunks.join("+"));
            const back = await new Response(b).blob();
            out.push(back.type, back.size);
            return new Response(out.join(","));
        } }"#,
        Limits::default(),
    );
    assert_eq!(
        t.text("/").await,
        "5,text/plain,abcé,cé,2,x/y,a.txt,7,2,true,5,text/plain,5"
    );
}

/// The Request the host hands the handler builds its Headers only when
/// asked; copies and clones of it still carry them, its body and method.
#[tokio::test]
async fn the_host_request_keeps_its_headers_through_copies_and_clones() {
    let t = Tenant::new(
        "reqcopy",
        r#"export default { async fetch(req) {
            const copy = new Request(req, { method: "PUT" });
            const clone = req.clone();
            const text = await clone.text();
            const out = [
              req.method, copy.method, req.url, copy.url,
              copy.headers.get("x-a"), clone.headers.get("x-a"), req.headers.get("x-a"),
              [...req.headers.keys()].join(","), text, await req.text(),
              req.bodyUsed, Object.prototype.toString.call(req), req instanceof Request,
            ];
            return new Response(out.join("|"));
        } }"#,
        Limits::default(),
    );
    let req = http::Request::post("/p?q=1")
        .header("host", "h.example")
        .header("x-a", "1")
        .header("x-a", "2")
        .body(Bytes::from_static(b"body!"))
        .unwrap();
    let resp = t.send(req).await.unwrap();
    assert_eq!(
        std::str::from_utf8(resp.body()).unwrap(),
        "POST|PUT|http://h.example/p?q=1|http://h.example/p?q=1|1, 2|1, 2|1, 2|host,x-a|body!|body!|true|[object Request]|true"
    );
    // A method the fast path leaves to the constructor, and a GET's body.
    let t = Tenant::new(
        "reqmethod",
        r#"export default { fetch(req) {
            return new Response(`${req.method} ${req.headers.get("x-b")} ${req.body === null}`);
        } }"#,
        Limits::default(),
    );
    let req = http::Request::builder()
        .method("patch")
        .uri("/")
        .header("x-b", "yes")
        .body(Bytes::new())
        .unwrap();
    let resp = t.send(req).await.unwrap();
    assert_eq!(std::str::from_utf8(resp.body()).unwrap(), "PATCH yes true");
    let resp = t
        .send(
            http::Request::get("/")
                .header("x-b", "g")
                .body(Bytes::from_static(b"ignored"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(std::str::from_utf8(resp.body()).unwrap(), "GET g true");
}

/// A Response made from a string hands the host its body and its default
/// content-type straight from its private fields: what a tenant patches on
/// the prototypes (getters, `Object.prototype`, the ctx's methods) or in a
/// subclass changes nothing the host sends, and the Headers a handler asks
/// for afterwards are the ones sent.
#[tokio::test]
async fn jsfast3_a_string_response_reaches_the_host_as_made() {
    let t = Tenant::new(
        "jsfast3-fast",
        r#"
        const trap = () => { throw new Error("hijacked"); };
        Object.defineProperty(Object.prototype, "status", { get: () => 500, configurable: true });
        Object.defineProperty(Object.prototype, "headers", { get: () => ({ "x-evil": "1" }), configurable: true });
        Object.defineProperty(Response.prototype, "status", { get: () => 404 });
        Object.defineProperty(Response.prototype, "headers", { get: trap });
        class Lying extends Response {
            get body() { return "lie"; }
        }
        let n = 0;
        export default { fetch(request, env, ctx) {
            n++;
            Object.getPrototypeOf(ctx).waitUntil = trap;
            if (n === 1) return new Response("plain \ud800 end");
            if (n === 2) return new Lying("from a subclass");
            if (n === 3) return new Response("with headers", { __proto__: null, headers: { "x-a": "b" } });
            return new Response(new Blob(["blob"], { type: "Text/X-Y" }));
        } }
        "#,
        Limits::default(),
    );
    let r = t.get("/").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body().as_ref(), "plain \u{FFFD} end".as_bytes());
    assert_eq!(r.headers()["content-type"], "text/plain;charset=UTF-8");
    assert!(r.headers().get("x-evil").is_none());
    let r = t.get("/").await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.body().as_ref()),
        (200, &b"from a subclass"[..])
    );
    let r = t.get("/").await.unwrap();
    assert_eq!(r.body().as_ref(), b"with headers");
    assert_eq!(r.headers()["x-a"], "b");
    assert_eq!(r.headers()["content-type"], "text/plain;charset=UTF-8");
    assert!(r.headers().get("x-evil").is_none());
    let r = t.get("/").await.unwrap();
    assert_eq!(r.body().as_ref(), b"blob");
    assert_eq!(r.headers()["content-type"], "text/x-y");
}

/// The lazily made Headers of a Response are the ones it sends: a handler
/// that edits them, or reads a string body back, sees and sends what a
/// Response with eager Headers would.
#[tokio::test]
async fn jsfast3_lazy_response_headers_and_text_bodies_behave_as_eager_ones() {
    let t = Tenant::new(
        "jsfast3-lazy",
        r#"export default { async fetch(request, env, ctx) {
            const r = new Response("héllo");
            r.headers.set("x-len", String((await r.clone().text()).length));
            r.headers.delete("content-type");
            const s = new Response("abc");
            const bytes = await s.bytes();
            let waited = false;
            ctx.waitUntil(Promise.resolve().then(() => { waited = true; }));
            const e = Response.error();
            r.headers.set("x-seen", [s.bodyUsed, bytes.length, e.status, e.headers.has("content-type"), typeof ctx.passThroughOnException].join(","));
            return r;
        } }"#,
        Limits::default(),
    );
    let r = t.get("/").await.unwrap();
    assert_eq!(r.body().as_ref(), "héllo".as_bytes());
    assert!(r.headers().get("content-type").is_none());
    assert_eq!(r.headers()["x-len"], "5");
    assert_eq!(r.headers()["x-seen"], "true,3,0,false,function");
}
