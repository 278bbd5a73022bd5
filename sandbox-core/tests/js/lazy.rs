//! The prelude's parts (streams, URL, events, Blob, ...) load into a runtime
//! only when its code first touches them (js/split.rs): a hello app
//! evaluates none, a touched global loads its part and becomes the data
//! property it always was, a part loads with the built-ins of load time
//! whatever the tenant patched since, and the tenant pays for the load.

use corral::{Limits, SandboxError};

use crate::Tenant;

/// The lazy globals, and `crypto.subtle`, that are still accessors (their
/// part not loaded), as a comma-separated list. Reading descriptors loads
/// nothing.
const LAZY: &str = r#"
const NAMES = ["ReadableStream", "WritableStream", "TransformStream", "URL", "URLSearchParams",
    "Blob", "File", "FormData", "Event", "EventTarget", "AbortController", "DOMException",
    "TextEncoder", "TextDecoder", "structuredClone", "CompressionStream", "CryptoKey", "WebAssembly"];
function lazy() {
    const out = NAMES.filter((n) => {
        const d = Object.getOwnPropertyDescriptor(globalThis, n);
        return d !== undefined && typeof d.get === "function";
    });
    const s = Object.getOwnPropertyDescriptor(crypto, "subtle");
    if (typeof s.get === "function") out.push("crypto.subtle");
    return out.join(",");
}
"#;

fn app(body: &str) -> String {
    format!(
        "{LAZY}\nexport default {{ async fetch(req) {{\n const path = req.url.slice(req.url.indexOf('/', 8));\n{body}\n return new Response('hi'); }} }}"
    )
}

const ALL: &str = "ReadableStream,WritableStream,TransformStream,URL,URLSearchParams,Blob,File,FormData,Event,EventTarget,AbortController,DOMException,TextEncoder,TextDecoder,structuredClone,CompressionStream,CryptoKey,WebAssembly,crypto.subtle";

#[tokio::test]
async fn a_hello_app_evaluates_no_part_and_a_touched_global_loads_only_its_own() {
    let t = Tenant::new(
        "lazy-hello",
        &app(r#"
            if (path === "/lazy") return new Response(lazy());
            if (path === "/touch") return new Response(typeof ReadableStream);
            if (path === "/body") {
                const body = new Response("x").body;
                return new Response(String(body instanceof ReadableStream));
            }
        "#),
        Limits::default(),
    );
    assert_eq!(t.text("/").await, "hi");
    assert_eq!(t.text("/lazy").await, ALL);
    assert_eq!(t.text("/touch").await, "function");
    // The streams part (ReadableStream, WritableStream, TransformStream)
    // loaded; nothing else did.
    let after = t.text("/lazy").await;
    assert_eq!(
        after,
        ALL.replace("ReadableStream,WritableStream,TransformStream,", "")
    );
}

#[tokio::test]
async fn the_core_loads_a_part_when_it_needs_one() {
    let t = Tenant::new(
        "lazy-core",
        &app(r#"
            if (path === "/lazy") return new Response(lazy());
            if (path === "/body") {
                // Response.body is a ReadableStream: the core loads the part.
                const body = new Response("x").body;
                return new Response(String(body instanceof ReadableStream) + " " + lazy().includes("ReadableStream"));
            }
            if (path === "/atob") {
                try { atob("*"); } catch (e) { return new Response(`${e instanceof DOMException} ${e.name}`); }
            }
        "#),
        Limits::default(),
    );
    assert_eq!(t.text("/body").await, "true false");
    assert_eq!(t.text("/atob").await, "true InvalidCharacterError");
}

#[tokio::test]
async fn globals_are_as_they_were_once_loaded_and_may_be_replaced_before() {
    let t = Tenant::new(
        "lazy-descriptors",
        &app(r#"
            if (path === "/check") {
                const out = [];
                out.push("URL" in globalThis, Object.keys(globalThis).includes("URL"));
                // Replaced and deleted before their part loads: the tenant's
                // choice stays when the part loads.
                globalThis.Blob = 1;
                delete globalThis.File;
                out.push(typeof FormData); // loads formdata (and blob)
                out.push(globalThis.Blob, "File" in globalThis);
                const b = Object.getOwnPropertyDescriptor(globalThis, "Blob");
                out.push(b.writable, b.enumerable, b.configurable);
                for (const n of ["URL", "ReadableStream", "Event", "structuredClone", "TextDecoder"]) {
                    const v = globalThis[n];
                    const d = Object.getOwnPropertyDescriptor(globalThis, n);
                    out.push(`${n}:${d.value === v}/${d.writable}/${d.enumerable}/${d.configurable}/${"get" in d}`);
                }
                const s = crypto.subtle;
                const d = Object.getOwnPropertyDescriptor(crypto, "subtle");
                out.push(`subtle:${d.value === s}/${d.writable}/${d.enumerable}/${d.configurable}/${String(s)}`);
                out.push(Object.keys(crypto).join("+"));
                out.push(lazy());
                return new Response(out.join(" "));
            }
        "#),
        Limits::default(),
    );
    assert_eq!(
        t.text("/check").await,
        "true false function 1 false true false true \
         URL:true/true/false/true/false ReadableStream:true/true/false/true/false \
         Event:true/true/false/true/false structuredClone:true/true/false/true/false \
         TextDecoder:true/true/false/true/false \
         subtle:true/false/true/true/[object SubtleCrypto] getRandomValues+randomUUID+subtle \
         CompressionStream,WebAssembly"
    );
}

#[tokio::test]
async fn a_part_loads_with_the_builtins_of_load_time_whatever_the_tenant_patched() {
    let t = Tenant::new(
        "lazy-hijack",
        &app(r#"
            if (path === "/hijack") {
                const seen = [];
                const spyGetter = (name) => ({ __proto__: null, get() { seen.push(name); return undefined; }, configurable: true });
                const saved = {};
                const ArrayIterator = Array.prototype[Symbol.iterator];
                for (const n of ["WeakMap", "Map", "Set", "WeakSet", "FinalizationRegistry", "Object", "Symbol", "Promise", "Array", "Error", "TypeError"]) {
                    saved[n] = globalThis[n];
                    globalThis[n] = function () { seen.push(n); return {}; };
                }
                const { call, apply, bind } = Function.prototype;
                const then = saved.Promise.prototype.then;
                saved.Object.defineProperty(saved.Object.prototype, "get", spyGetter("get"));
                saved.Object.defineProperty(saved.Object.prototype, "set", spyGetter("set"));
                saved.Object.defineProperty(saved.Object.prototype, "value", spyGetter("value"));
                saved.Object.defineProperty(saved.Object.prototype, "writable", spyGetter("writable"));
                saved.Array.prototype[saved.Symbol.iterator] = function () { seen.push("iterator"); return ArrayIterator.call(this); };
                Function.prototype.call = function () { seen.push("call"); };
                Function.prototype.apply = function () { seen.push("apply"); };
                Function.prototype.bind = function () { seen.push("bind"); };
                saved.Promise.prototype.then = function () { seen.push("then"); };
                // Loads every part.
                const got = [ReadableStream, URL, URLSearchParams, Blob, FormData, Event, TextDecoder,
                    structuredClone, crypto.subtle, CompressionStream, AbortController];
                // Undo, then check the parts work as they should.
                saved.Promise.prototype.then = then;
                Function.prototype.call = call;
                Function.prototype.apply = apply;
                Function.prototype.bind = bind;
                saved.Array.prototype[saved.Symbol.iterator] = ArrayIterator;
                for (const n of ["get", "set", "value", "writable"]) delete saved.Object.prototype[n];
                for (const n in saved) globalThis[n] = saved[n];
                const out = [seen.join(",") || "nothing seen", got.every((x) => x !== undefined)];
                out.push([...new URLSearchParams("a=1&b=2")].join(";"));
                const fd = new FormData();
                fd.append("f", new Blob(["xyz"]), "n.txt");
                out.push([...fd.keys()].join(), fd.get("f").name, await fd.get("f").text());
                out.push(Event.AT_TARGET, Object.getOwnPropertyDescriptor(Event.prototype, "NONE").writable);
                out.push(String(Object.getPrototypeOf(new URLSearchParams().entries())));
                out.push(structuredClone(new Map([[1, 2]])).get(1));
                const digest = await crypto.subtle.digest("SHA-256", new Uint8Array(0));
                out.push(new Uint8Array(digest)[0]);
                const r = new ReadableStream({ start(c) { c.enqueue("s"); c.close(); } }).getReader();
                out.push((await r.read()).value);
                return new Response(out.join(" "));
            }
        "#),
        Limits::default(),
    );
    assert_eq!(
        t.text("/hijack").await,
        "nothing seen true a,1;b,2 f n.txt xyz 2 false [object URLSearchParams Iterator] 2 227 s"
    );
}

#[tokio::test]
async fn loading_a_part_is_charged_to_the_tenant_and_a_failed_load_can_be_retried() {
    let limit = 4 << 20;
    let t = Tenant::new(
        "lazy-memory",
        &format!(
            "let held = null;\n{}",
            app(r#"
            // Fills the heap but for some 16 KiB: room for an error, not
            // for a part. A list, not an array: no reallocation of a large
            // array can fail early and leave much more room.
            const fill = () => {
                try { for (;;) held = { next: held, b: new ArrayBuffer(64 << 10) }; } catch {}
                held = held.next;
                try { for (;;) held = { next: held, b: new ArrayBuffer(1 << 10) }; } catch {}
                for (let i = 0; i < 16; i++) held = held.next;
            };
            if (path === "/caught") {
                fill();
                let out;
                try { out = typeof ReadableStream; } catch (e) { out = `${e.name}: ${e.message}`; }
                held = null;
                return new Response(`${out}, then ${typeof ReadableStream}`);
            }
            if (path === "/uncaught") {
                fill();
                return new Response(typeof URL);
            }
            if (path === "/free") { held = null; return new Response(typeof URL); }
        "#)
        ),
        Limits::builder().memory_bytes(limit).build(),
    );
    assert_eq!(
        t.text("/caught").await,
        "InternalError: out of memory, then function"
    );
    let err = t.get("/uncaught").await.unwrap_err();
    assert!(
        matches!(err, SandboxError::MemoryLimit { limit: l } if l == limit),
        "{err:?}"
    );
    assert_eq!(t.text("/free").await, "function");
}

/// A part loaded at the bottom of a deep recursion gives the guest no fresh
/// stack allowance below that point (rquickjs's module evaluation resets
/// QuickJS's stack top; a lazy global touched at the bottom of each of a
/// few recursions ran the host off its stack).
#[tokio::test]
async fn a_part_loaded_deep_in_a_recursion_gives_no_fresh_stack() {
    let app = r#"
let more = 0;
function down(n) {
  if (n === 0) { typeof URL; return again(0); }
  return down(n - 1) + 1;
}
function again(n) { more = n; return again(n + 1) + 1; }
export default { async fetch(req) {
  let max = 0;
  function probe(n) { max = n; probe(n + 1); }
  try { probe(0); } catch {}
  try { down(max - 50); } catch (e) { return new Response(`${max} ${more} ${e.name}`); }
  return new Response("returned");
} };
"#;
    let t = Tenant::new("lazy-deep", app, Limits::default());
    let out = t.text("/").await;
    let parts: Vec<&str> = out.split(' ').collect();
    let (max, more): (u32, u32) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
    assert!(max > 100, "{out}");
    // Without the reset the recursion after the load went as deep again.
    assert!(more < 100, "{out}");
    assert_eq!(parts[2], "RangeError");
}
