//! The `WebAssembly` JS API (js/wasm.rs and the prelude's `wasm` part):
//! real modules, compiled by wasmtime from bytes the tenant sends, called
//! from JS and calling JS, and held to the tenant's limits like its JS.

use std::time::{Duration, Instant};

use bytes::Bytes;
use corral::{Limits, SandboxError};

use crate::Tenant;

/// The module most cases use.
const MODULE: &str = r#"
(module
  (import "env" "log" (func $log (param i32 i64 f64) (result i32)))
  (import "env" "re" (func $re (param i32) (result i32)))
  (memory (export "mem") 1 4)
  (global (export "g") (mut i32) (i32.const 7))
  (table (export "tbl") 2 funcref)
  (elem (i32.const 0) $add)
  (func $add (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "add64") (param i64 i64) (result i64) local.get 0 local.get 1 i64.add)
  (func (export "half") (param f32) (result f32) local.get 0 f32.const 0.5 f32.mul)
  (func (export "callLog") (param i32) (result i32)
    local.get 0 i64.const -5 f64.const 1.5 call $log)
  (func (export "store") (param i32 i32) local.get 0 local.get 1 i32.store8)
  (func (export "load") (param i32) (result i32) local.get 0 i32.load8_u)
  (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
  (func (export "growThenLog") (result i32)
    i32.const 1 memory.grow drop i32.const 0 i64.const 0 f64.const 0 call $log)
  (func (export "spin") (loop br 0))
  (func $rec (export "rec") (param i32) (result i32) local.get 0 i32.const 1 i32.add call $rec)
  (func (export "reenter") (param i32) (result i32) local.get 0 i32.const 1 i32.add call $re)
  (func (export "trap") unreachable)
)
"#;

/// Instantiates the module in the request body with `env.log` and
/// `env.re` (which calls back into wasm), then runs the route's case.
const APP: &str = r#"
async function load(req, env = {}) {
  const bytes = new Uint8Array(await req.arrayBuffer());
  const calls = [];
  let e;
  const imports = { env: {
    log(a, b, c) { calls.push(`${a}:${typeof b}:${b}:${c}`); return a * 2; },
    re(n) { return e.reenter(n); },
    ...env,
  } };
  const { module, instance } = await WebAssembly.instantiate(bytes, imports);
  e = instance.exports;
  return { bytes, module, instance, e, calls };
}
const name = (f) => { try { f(); return "no error"; } catch (err) { return `${err.name}: ${err instanceof Error}`; } };

export default { async fetch(req) {
  const path = new URL(req.url).pathname;
  if (path === "/basic") {
    const { bytes, module, instance, e, calls } = await load(req);
    const out = [
      e.add(2, 3), e.add("40", 2), String(e.add64(1n << 40n, 2n)), e.half(3),
      e.callLog(21), calls.join(","),
      instance instanceof WebAssembly.Instance, module instanceof WebAssembly.Module,
      e.mem instanceof WebAssembly.Memory, e.g instanceof WebAssembly.Global,
      e.tbl instanceof WebAssembly.Table,
      Object.isFrozen(e), Object.getPrototypeOf(e) === null,
      WebAssembly.Module.exports(module).map((x) => `${x.name}/${x.kind}`).join(" "),
      WebAssembly.Module.imports(module).map((x) => `${x.module}.${x.name}/${x.kind}`).join(" "),
      WebAssembly.validate(bytes), WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 2, 0, 0, 0])),
      Object.prototype.toString.call(WebAssembly), String(module),
      name(() => new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 2, 0, 0, 0]))),
      typeof WebAssembly.Module.customSections(module, "name"),
      `${e.add.name}/${e.add.length} ${e.add64.name}/${e.add64.length} ${e.add === e.tbl.get(0)}`,
      typeof e.add.prototype, name(() => new e.add(1, 2)),
    ];
    return new Response(out.join("|"));
  }
  if (path === "/compile-error") {
    try { new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 2, 0, 0, 0])); }
    catch (err) { return new Response(`${err instanceof WebAssembly.CompileError} ${err.name}`); }
    return new Response("compiled");
  }
  if (path === "/link-error") {
    const bytes = new Uint8Array(await req.arrayBuffer());
    const out = [];
    try { new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { log: 1, re() {} } }); }
    catch (err) { out.push(`${err instanceof WebAssembly.LinkError}`); }
    try { new WebAssembly.Instance(new WebAssembly.Module(bytes)); }
    catch (err) { out.push(`${err instanceof TypeError}`); }
    try { await WebAssembly.instantiate(bytes, { env: {} }); }
    catch (err) { out.push(`${err instanceof WebAssembly.LinkError}`); }
    return new Response(out.join(" "));
  }
  if (path === "/memory") {
    const { e } = await load(req);
    e.store(10, 42);
    const view = new Uint8Array(e.mem.buffer);
    view[11] = 99;
    const before = e.mem.buffer;
    const out = [view[10], e.load(11), before === e.mem.buffer, before.byteLength];
    out.push(e.mem.grow(1), before.byteLength, before.detached, e.mem.buffer.byteLength,
      e.mem.buffer !== before, new Uint8Array(e.mem.buffer)[10]);
    // Grown from inside wasm: the buffer is detached by the time wasm
    // returns (wasm-bindgen's glue refreshes a view whose length is 0).
    const view2 = new Uint8Array(e.mem.buffer);
    out.push(e.grow(1), view2.length, e.mem.buffer.byteLength, e.grow(10));
    out.push(name(() => e.mem.grow(10)));
    return new Response(out.join(","));
  }
  if (path === "/grow-in-import") {
    // An import called after wasm grew its memory sees old views detached.
    let view;
    let seen;
    const { e } = await load(req, { log() { seen = `${view.length} ${e.mem.buffer.byteLength}`; return 0; } });
    view = new Uint8Array(e.mem.buffer);
    e.growThenLog();
    return new Response(seen);
  }
  if (path === "/globals") {
    const { e } = await load(req);
    const out = [e.g.value];
    e.g.value = 9;
    const i64 = new WebAssembly.Global({ value: "i64", mutable: true }, 5n);
    const c = new WebAssembly.Global({ value: "f64" }, 2.5);
    out.push(e.g.value, i64.value === 5n, c.valueOf(), name(() => { c.value = 1; }));
    i64.value = -1n;
    out.push(String(i64.value));
    out.push(e.tbl.length, e.tbl.get(0) === e.add, e.tbl.get(1), e.tbl.grow(1), e.tbl.length);
    e.tbl.set(1, e.add64);
    out.push(e.tbl.get(1) === e.add64, name(() => e.tbl.get(10)));
    const t = new WebAssembly.Table({ element: "anyfunc", initial: 1 });
    out.push(t.get(0), name(() => t.set(0, () => 1)));
    return new Response(out.join(","));
  }
  if (path === "/shared") {
    const m = new WebAssembly.Memory({ shared: true, initial: 1, maximum: 2 });
    const b = m.buffer;
    new Uint8Array(b).set([104, 105, 0xe2, 0x82]);
    const d = new TextDecoder();
    const text = d.decode(new Uint8Array(b, 0, 4), { stream: true }) + d.decode(new Uint8Array([0xac]));
    const out = [b instanceof SharedArrayBuffer, b.byteLength, text, Object.isFrozen(b)];
    out.push(m.grow(1), m.buffer.byteLength, b.byteLength, new Uint8Array(m.buffer)[0]);
    out.push(name(() => Atomics.wait(new Int32Array(m.buffer), 0, 0, 1000)));
    out.push(name(() => new WebAssembly.Memory({ shared: true, initial: 1 })));
    // Each reserves address space: a runtime has at most 16.
    const many = [];
    try {
      for (let i = 0; i < 20; i++) many.push(new WebAssembly.Memory({ shared: true, initial: 0, maximum: 1 }));
    } catch (err) { out.push(`${err.name} after ${many.length}`); }
    return new Response(out.join(","));
  }
  if (path === "/trap") {
    const { e } = await load(req, { log() { throw new SyntaxError("from the import"); } });
    const out = [];
    try { e.trap(); } catch (err) { out.push(err instanceof WebAssembly.RuntimeError, err.message); }
    try { e.callLog(1); } catch (err) { out.push(err instanceof SyntaxError, err.message); }
    return new Response(out.join(","));
  }
  if (path === "/recursion") {
    const { bytes, e } = await load(req);
    const out = [name(() => e.rec(0)), name(() => e.reenter(0)), e.add(1, 1)];
    // Across two stores: each instance's import calls the other's export.
    const mk = (other) => new WebAssembly.Instance(new WebAssembly.Module(bytes),
      { env: { log: () => 0, re: (n) => other().reenter(n) } }).exports;
    let a, b;
    a = mk(() => b);
    b = mk(() => a);
    out.push(name(() => a.reenter(0)), b.add(2, 2));
    return new Response(out.join(","));
  }
  if (path === "/spin") {
    const { e } = await load(req);
    try { e.spin(); } catch (err) { return new Response(`caught ${err}`); }
    return new Response("returned");
  }
  if (path === "/big-memory") {
    const out = [name(() => new WebAssembly.Memory({ initial: 65536 })),
      name(() => new WebAssembly.Memory({ initial: 2000 }))];
    // Refused memories do not count against the runtime's 16.
    for (let i = 0; i < 20; i++) name(() => new WebAssembly.Memory({ initial: 2000 }));
    const m = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
    out.push(name(() => m.grow(2000)), m.buffer.byteLength);
    const { e } = await load(req);
    out.push(e.grow(3), e.mem.buffer.byteLength);
    return new Response(out.join(","));
  }
  if (path === "/combined") {
    // 40 MiB of JS heap fits a 64 MiB tenant, until 40 MiB of wasm memory
    // takes its share.
    let ab = new ArrayBuffer(40 << 20);
    const out = [ab.byteLength];
    ab = null;
    const m = new WebAssembly.Memory({ initial: 640 });
    out.push(m.buffer.byteLength, name(() => new ArrayBuffer(40 << 20)));
    return new Response(out.join(","));
  }
  if (path === "/oversize") {
    const out = [name(() => new WebAssembly.Module(new Uint8Array(5 << 20)))];
    out.push(name(() => new WebAssembly.Module(new Uint8Array(1 << 20))));
    out.push(name(() => WebAssembly.validate(new Uint8Array(5 << 20))));
    return new Response(out.join(","));
  }
  if (path === "/per-request") {
    // An instance per request, each with its own memory: the stores go
    // when their instances do, so this never reaches the runtime's 16
    // memories or the tenant's 64 MiB.
    const bytes = new Uint8Array(await req.arrayBuffer());
    const module = new WebAssembly.Module(bytes);
    let sum = 0;
    for (let i = 0; i < 40; i++) {
      const instance = new WebAssembly.Instance(module, { env: { log: () => 0, re: () => 0 } });
      instance.exports.store(0, i);
      instance.exports.grow(3);
      sum += instance.exports.load(0);
    }
    return new Response(`${sum}`);
  }
  if (path === "/lazy") {
    const d = Object.getOwnPropertyDescriptor(globalThis, "WebAssembly");
    return new Response(`${typeof d.get}`);
  }
  return new Response("ok");
} };
"#;

fn module() -> Bytes {
    Bytes::from(wat::parse_str(MODULE).expect("the test module assembles"))
}

fn post(path: &str, body: Bytes) -> http::Request<Bytes> {
    http::Request::post(path)
        .header("host", "app.example")
        .body(body)
        .unwrap()
}

async fn text(t: &Tenant, path: &str) -> String {
    let resp = t
        .send(post(path, module()))
        .await
        .expect("request succeeds");
    String::from_utf8(resp.into_body().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_from_the_request_compiles_runs_and_calls_js() {
    let t = Tenant::new("wasm-basic", APP, Limits::default());
    // A hello request does not load the part.
    assert_eq!(t.text("/lazy").await, "function");
    let out = text(&t, "/basic").await;
    let got: Vec<&str> = out.split('|').collect();
    assert_eq!(
        got,
        [
            "5",
            "42",
            "1099511627778",
            "1.5",
            "42",
            "21:bigint:-5:1.5",
            "true",
            "true",
            "true",
            "true",
            "true",
            "true",
            "true",
            "mem/memory g/global tbl/table add/function add64/function half/function callLog/function store/function load/function grow/function growThenLog/function spin/function rec/function reenter/function trap/function",
            "env.log/function env.re/function",
            "true",
            "false",
            "[object WebAssembly]",
            "[object WebAssembly.Module]",
            "CompileError: true",
            "object",
            "2/2 3/2 true",
            "undefined",
            "TypeError: true",
        ]
    );
    assert_eq!(text(&t, "/compile-error").await, "true CompileError");
    assert_eq!(text(&t, "/link-error").await, "true true true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_buffers_alias_linear_memory_and_grow_detaches() {
    let t = Tenant::new("wasm-memory", APP, Limits::default());
    assert_eq!(text(&t, "/grow-in-import").await, "0 131072");
    assert_eq!(
        text(&t, "/memory").await,
        "42,99,true,65536,1,0,true,131072,true,42,2,0,196608,-1,RangeError: true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globals_and_tables() {
    let t = Tenant::new("wasm-globals", APP, Limits::default());
    assert_eq!(
        text(&t, "/globals").await,
        "7,9,true,2.5,TypeError: true,-1,2,true,,2,3,true,RangeError: true,,TypeError: true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_memory_is_a_shared_array_buffer_text_decoder_reads() {
    let t = Tenant::new("wasm-shared", APP, Limits::default());
    assert_eq!(
        t.text("/shared").await,
        "true,65536,hi€,true,1,131072,65536,104,TypeError: true,TypeError: true,RangeError after 15"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_are_runtime_errors_and_import_exceptions_pass_through() {
    let t = Tenant::new("wasm-trap", APP, Limits::default());
    assert_eq!(
        text(&t, "/trap").await,
        "true,wasm trap: wasm `unreachable` instruction executed,true,from the import"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_in_wasm_and_through_js_is_a_catchable_range_error() {
    // At the largest JS stack a tier may have, too.
    let deepest = Limits::builder()
        .max_stack_bytes(corral::js::MAX_JS_STACK_BYTES)
        .build();
    for _ in 0..2 {
        let t = Tenant::new("wasm-recursion-deep", APP, deepest.clone());
        assert_eq!(
            text(&t, "/recursion").await,
            "RangeError: true,RangeError: true,2,RangeError: true,4"
        );
    }
    let t = Tenant::new("wasm-recursion", APP, Limits::default());
    for _ in 0..3 {
        assert_eq!(
            text(&t, "/recursion").await,
            "RangeError: true,RangeError: true,2,RangeError: true,4"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_wasm_ends_with_the_request_limit() {
    let wall = Duration::from_millis(300);
    let t = Tenant::new("wasm-spin", APP, Limits::builder().wall_clock(wall).build());
    let started = Instant::now();
    let err = t.send(post("/spin", module())).await.unwrap_err();
    assert!(
        matches!(err, SandboxError::Deadline { limit } if limit == wall),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Fuel as well: one tick per epoch tick of wasm.
    let t = Tenant::new(
        "wasm-fuel",
        APP,
        Limits::builder().fuel_per_request(50).build(),
    );
    let err = t.send(post("/spin", module())).await.unwrap_err();
    assert!(
        matches!(err, SandboxError::FuelExhausted { limit: 50, .. }),
        "{err:?}"
    );
    // The tenant's runtime still serves.
    assert_eq!(t.text("/").await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_past_the_tier_is_refused_not_allocated() {
    let limits = Limits::builder().memory_bytes(64 << 20).build();
    let t = Tenant::new("wasm-big", APP, limits);
    assert_eq!(
        text(&t, "/big-memory").await,
        "RangeError: true,RangeError: true,RangeError: true,65536,1,262144"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_memory_and_the_js_heap_share_the_tenant_memory() {
    let limits = Limits::builder().memory_bytes(64 << 20).build();
    let t = Tenant::new("wasm-combined", APP, limits);
    assert_eq!(
        t.text("/combined").await,
        "41943040,41943040,InternalError: true"
    );
    // The requests' memory figure (sampled at most every 50 ms) counts the
    // runtime's wasm too.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let resp = t.get("/").await.unwrap();
    assert!(crate::stats(&resp).peak_memory >= 40 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_module_is_refused_before_compiling() {
    let t = Tenant::new("wasm-oversize", APP, Limits::default());
    assert_eq!(
        t.text("/oversize").await,
        "RangeError: true,CompileError: true,RangeError: true"
    );
    // With 50 ms of wall clock, a module no compiler could finish in the
    // time left is refused up front.
    let short = Limits::builder()
        .wall_clock(Duration::from_millis(50))
        .build();
    let t = Tenant::new("wasm-short", APP, short);
    assert_eq!(
        t.text("/oversize").await,
        "RangeError: true,RangeError: true,RangeError: true"
    );
    const { assert!(corral::MAX_WASM_MODULE_BYTES < 5 << 20) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_per_request_is_freed_with_its_store() {
    let limits = Limits::builder().memory_bytes(64 << 20).build();
    let t = Tenant::new("wasm-per-request", APP, limits);
    for _ in 0..5 {
        assert_eq!(text(&t, "/per-request").await, "780");
    }
}

/// `[1,2,...]`: a module's bytes as a JS array literal.
fn js_bytes(wat: &str) -> String {
    let bytes = wat::parse_str(wat).expect("assembles");
    format!("new Uint8Array({bytes:?})")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_link_through_their_stores() {
    let p = js_bytes(r#"(module (func (export "seven") (result i32) i32.const 7))"#);
    let q = js_bytes(
        r#"(module (import "m" "f" (func $f (result i32))) (import "m" "mem" (memory 1))
            (func (export "g") (result i32) call $f i32.const 0 i32.load8_u i32.add))"#,
    );
    let r = js_bytes(
        r#"(module (import "m" "f" (func $f (result i32))) (func (export "g") (result i32) call $f))"#,
    );
    let app = format!(
        r#"
const P = new WebAssembly.Module({p}), Q = new WebAssembly.Module({q}), R = new WebAssembly.Module({r});
export default {{ async fetch() {{
  const out = [];
  const p = new WebAssembly.Instance(P).exports;
  const mem = new WebAssembly.Memory({{ initial: 1 }});
  new Uint8Array(mem.buffer)[0] = 3;
  // A JS function and a JS-made memory: the runtime's first store.
  out.push(new WebAssembly.Instance(Q, {{ m: {{ f: () => 8, mem }} }}).exports.g());
  // p's function: r joins p's store, and calls it directly.
  const r = new WebAssembly.Instance(R, {{ m: {{ f: p.seven }} }}).exports;
  out.push(r.g());
  // p's function with a JS-made memory: two stores, which Corral cannot link.
  try {{ new WebAssembly.Instance(Q, {{ m: {{ f: p.seven, mem }} }}); }}
  catch (e) {{ out.push(e instanceof WebAssembly.LinkError); }}
  return new Response(out.join(","));
}} }};
"#
    );
    let t = Tenant::new("wasm-link", &app, Limits::default());
    assert_eq!(t.text("/").await, "11,7,true");
}
