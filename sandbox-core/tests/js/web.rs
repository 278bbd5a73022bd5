//! URL, URLSearchParams, TextEncoder/TextDecoder, atob and btoa (issue 16):
//! the standards' behaviour as the `url`, `form_urlencoded`, `encoding_rs`
//! and `base64` crates give it, their containment (decoded text and open
//! streams bounded by the tenant's memory, never the host's), and their
//! immunity to a tenant patching prototypes. No WPT checkout needed.

use corral::{Limits, SandboxError};
use serde_json::json;

use super::Tenant;

/// Runs `body` (the inside of an async `fetch`, returning a JSON-able
/// value) and gives back that value.
async fn eval(name: &str, body: &str, limits: Limits) -> serde_json::Value {
    let source = format!(
        "export default {{ async fetch(req) {{ const out = await (async () => {{ {body} }})(); \
         return Response.json(out); }} }}"
    );
    let t = Tenant::new(name, &source, limits);
    let text = t.text("/").await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn url_follows_the_whatwg_parser_and_setters() {
    let v = eval(
        "url",
        r#"
        const parts = (u) => [u.href, u.origin, u.protocol, u.username, u.password, u.host,
                              u.hostname, u.port, u.pathname, u.search, u.hash];
        const u = new URL("HTTPS://us er:p@ss@EXAMPLE.com:443/a/./b/../c d?q=a b#f g");
        const idna = new URL("http://Bücher.example/");
        const ipv4 = new URL("http://0x7f.1/");
        const rel = new URL("../x?y#z", "http://h.example/p/q/r");
        const file = new URL("file:///C:/dir/../f.txt");
        let invalid;
        try { new URL("http://exa mple.com/"); } catch (e) { invalid = [e.name, e.message]; }
        const s = new URL("http://a.example/p");
        s.protocol = "https";
        s.host = "b.example:8443";
        s.pathname = "/x y/./z";
        s.search = "k=v w";
        s.hash = "h";
        s.username = "me";
        s.port = "99999"; // refused: the URL stays as it was
        const bad = new URL("http://a.example/");
        s.protocol = "mailto"; // special to non-special: ignored
        let hrefThrows;
        try { bad.href = "nope"; } catch (e) { hrefThrows = e.name; }
        return {
            u: parts(u), idna: idna.hostname, ipv4: ipv4.host, rel: rel.href, file: file.href,
            invalid, set: s.href, hrefThrows, bad: bad.href,
            canParse: [URL.canParse("a:b"), URL.canParse("nope"), URL.canParse("x", "http://h/")],
            parse: [URL.parse("nope"), URL.parse("/p", "http://h/").href],
            json: JSON.stringify({ u: new URL("http://h/") }),
        };
        "#,
        Limits::default(),
    )
    .await;
    assert_eq!(
        v,
        json!({
            "u": ["https://us%20er:p%40ss@example.com/a/c%20d?q=a%20b#f%20g", "https://example.com",
                  "https:", "us%20er", "p%40ss", "example.com", "example.com", "", "/a/c%20d",
                  "?q=a%20b", "#f%20g"],
            "idna": "xn--bcher-kva.example",
            "ipv4": "127.0.0.1",
            "rel": "http://h.example/p/x?y#z",
            "file": "file:///C:/f.txt",
            "invalid": ["TypeError", "Invalid URL: http://exa mple.com/"],
            "set": "https://me@b.example:8443/x%20y/z?k=v%20w#h",
            "hrefThrows": "TypeError",
            "bad": "http://a.example/",
            "canParse": [true, false, true],
            "parse": [null, "http://h/p"],
            "json": "{\"u\":\"http://h/\"}",
        })
    );
}

#[tokio::test]
async fn search_params_stay_linked_to_their_url_and_iterate_live() {
    let v = eval(
        "params",
        r#"
        const u = new URL("http://h/?a=1&b=2&c=3");
        const p = u.searchParams;
        const seen = [];
        for (const [k] of p) { seen.push(k); if (k === "a") p.delete("b"); }
        p.append("d", "x y&z");
        const afterAppend = u.href;
        u.search = "?e=%FE%FF&f=+";
        const fromSearch = [...p];
        p.sort();
        p.delete("e");
        p.delete("f");
        const cleared = u.href;
        const form = new URLSearchParams("x=%FE%FF&y=%e2%82%ac&z=a+b&&w");
        return {
            same: u.searchParams === p, seen, afterAppend, fromSearch, cleared,
            form: [...form], str: form.toString(), size: form.size,
            record: new URLSearchParams({ "k\uD800": "v" }).toString(),
        };
        "#,
        Limits::default(),
    )
    .await;
    assert_eq!(
        v,
        json!({
            "same": true,
            "seen": ["a", "c"],
            "afterAppend": "http://h/?a=1&c=3&d=x+y%26z",
            // %FE%FF decodes as UTF-8 (two U+FFFD), not as Latin-1.
            "fromSearch": [["e", "\u{FFFD}\u{FFFD}"], ["f", " "]],
            "cleared": "http://h/",
            "form": [["x", "\u{FFFD}\u{FFFD}"], ["y", "\u{20AC}"], ["z", "a b"], ["w", ""]],
            "str": "x=%EF%BF%BD%EF%BF%BD&y=%E2%82%AC&z=a+b&w=",
            "size": 4,
            "record": "k%EF%BF%BD=v",
        })
    );
}

#[tokio::test]
async fn text_codecs_cover_the_whatwg_encodings() {
    let v = eval(
        "codec",
        r#"
        const b = (...xs) => new Uint8Array(xs);
        const names = ["latin1", " UTF-16 ", "sjis", "csbig5", "x-user-defined", "GBK", "koi8-u"]
            .map((l) => new TextDecoder(l).encoding);
        let unknown, replacement, fatal;
        try { new TextDecoder("nope"); } catch (e) { unknown = e.name; }
        try { new TextDecoder("iso-2022-kr"); } catch (e) { replacement = e.name; }
        try { new TextDecoder("utf-16le", { fatal: true }).decode(b(0x00, 0xd8)); } catch (e) { fatal = e.name; }
        const d = new TextDecoder("utf-8");
        const parts = [d.decode(b(0xe2, 0x82), { stream: true }), d.decode(b(0xac, 0xf0), { stream: true }), d.decode()];
        const jis = new TextDecoder("iso-2022-jp");
        const jisParts = [jis.decode(b(0x1b, 0x24, 0x42, 0x30), { stream: true }), jis.decode(b(0x21, 0x1b, 0x28, 0x42, 0x41))];
        const dv = new DataView(new Uint8Array([0, 0xef, 0xbb, 0xbf, 0x68, 0x69]).buffer, 1);
        const enc = new TextEncoder();
        const into = new Uint8Array(5);
        const r = enc.encodeInto("a\u{1F600}b", into);
        return {
            names, unknown, replacement, fatal, parts, jisParts,
            latin1: new TextDecoder("latin1").decode(b(0x80, 0xe9)),
            utf16be: new TextDecoder("utf-16be").decode(b(0xfe, 0xff, 0x00, 0x41)),
            sjis: new TextDecoder("shift_jis").decode(b(0x82, 0xa0)),
            bom: new TextDecoder().decode(dv),
            keptBom: new TextDecoder("utf-8", { ignoreBOM: true }).decode(dv).length,
            lone: Array.from(enc.encode("x\uD800y")),
            into: [r.read, r.written, Array.from(into)],
        };
        "#,
        Limits::default(),
    )
    .await;
    assert_eq!(
        v,
        json!({
            "names": ["windows-1252", "utf-16le", "shift_jis", "big5", "x-user-defined", "gbk", "koi8-u"],
            "unknown": "RangeError",
            "replacement": "RangeError",
            "fatal": "TypeError",
            "parts": ["", "\u{20AC}", "\u{FFFD}"],
            "jisParts": ["", "\u{4E9C}A"],
            "latin1": "\u{20AC}\u{E9}",
            "utf16be": "A",
            "sjis": "\u{3042}",
            "bom": "hi",
            "keptBom": 3,
            "lone": [0x78, 0xef, 0xbf, 0xbd, 0x79],
            "into": [3, 5, [0x61, 0xf0, 0x9f, 0x98, 0x80]],
        })
    );
}

#[tokio::test]
async fn atob_and_btoa_follow_forgiving_base64() {
    let v = eval(
        "b64",
        r#"
        const err = (f) => { try { f(); return "no error"; } catch (e) { return [e.name, e instanceof DOMException]; } };
        return {
            ok: [atob(" YW\tJj\n"), atob("YQ"), atob("YQ=="), atob("YR=="), atob(""), btoa("\u00ff\u00fea"), btoa("")],
            bytes: Array.from(atob("/+8="), (c) => c.charCodeAt(0)),
            bad: [err(() => atob("YQ=")), err(() => atob("Y")), err(() => atob("Y*==")), err(() => atob("YQ==YQ=="))],
            wide: err(() => btoa("\u0100")),
            surrogate: err(() => btoa("\uD800")),
            arity: err(() => atob()),
        };
        "#,
        Limits::default(),
    )
    .await;
    assert_eq!(
        v,
        json!({
            "ok": ["abc", "a", "a", "a", "", "//5h", ""],
            "bytes": [255, 239],
            "bad": [["InvalidCharacterError", true], ["InvalidCharacterError", true],
                    ["InvalidCharacterError", true], ["InvalidCharacterError", true]],
            "wide": ["InvalidCharacterError", true],
            "surrogate": ["InvalidCharacterError", true],
            "arity": ["TypeError", false],
        })
    );
}

/// A tenant asking for text larger than its memory gets a RangeError (its
/// memory stays its own), one holding too many streams open gets a
/// RangeError, and one keeping what it decodes runs into its memory limit.
#[tokio::test]
async fn decoding_is_bounded_by_the_tenant_memory() {
    let limits = Limits::builder().memory_bytes(16 << 20).build();
    let v = eval(
        "bounded",
        r#"
        // 8 MiB of 0xFF: 24 MiB of U+FFFD as UTF-8, more than the 16 MiB tier.
        const big = new Uint8Array(8 << 20).fill(0xff);
        let huge;
        try { new TextDecoder().decode(big); huge = "decoded"; } catch (e) { huge = e.name; }
        let streamed;
        try {
            const d = new TextDecoder("windows-1252");
            d.decode(big.subarray(0, 1), { stream: true });
            d.decode(big);
            streamed = "decoded";
        } catch (e) { streamed = e.name; }
        const open = [];
        let streams;
        try {
            for (let i = 0; i < 5000; i++) {
                const d = new TextDecoder();
                d.decode(new Uint8Array([0xe2]), { stream: true });
                open.push(d);
            }
            streams = "unbounded";
        } catch (e) { streams = [e.name, open.length]; }
        return { huge, streamed, streams };
        "#,
        limits.clone(),
    )
    .await;
    assert_eq!(
        v,
        json!({ "huge": "RangeError", "streamed": "RangeError", "streams": ["RangeError", 1024] })
    );

    // Keeping decoded text: the heap, not the host, runs out.
    let t = Tenant::new(
        "hoard-text",
        r#"const kept = [];
        export default { async fetch() {
            const bytes = new Uint8Array(1 << 20).fill(0x61);
            kept.push(new TextDecoder("latin1").decode(bytes));
            kept.push(new URLSearchParams("a=" + "b".repeat(1 << 19)).toString());
            return new Response(String(kept.length));
        } }"#,
        limits.clone(),
    );
    let mut refused = None;
    for sent in 0..64 {
        match t.get("/").await {
            Ok(resp) => assert_eq!(resp.status(), 200),
            Err(e) => {
                refused = Some((sent, e));
                break;
            }
        }
    }
    let (sent, err) = refused.expect("the tenant kept 64+ MiB under a 16 MiB limit");
    assert!(
        matches!(err, SandboxError::MemoryLimit { limit } if limit == 16 << 20),
        "{err:?}"
    );
    assert!(sent >= 4, "refused after {sent} requests");
}

/// A tenant that patches the built-ins the prelude could use cannot change
/// what URL, URLSearchParams, the codecs and base64 do, nor get its code
/// run inside them.
#[tokio::test]
async fn patched_prototypes_cannot_reach_the_web_classes() {
    let v = eval(
        "patched",
        r#"
        let calls = 0;
        const trap = function () { calls++; throw new Error("hijacked"); };
        for (const name of ["push", "pop", "shift", "slice", "splice", "sort", "map", "filter",
                            "forEach", "join", "concat", "indexOf", "find", "findIndex", "some"]) {
            Array.prototype[name] = trap;
        }
        for (const name of ["slice", "indexOf", "split", "replace", "toLowerCase", "toWellFormed",
                            "charCodeAt", "startsWith", "trim"]) {
            String.prototype[name] = trap;
        }
        Object.defineProperty(Object.prototype, "then", { get: trap, configurable: true });
        Object.defineProperty(Object.prototype, "1", { get: trap, set: trap, configurable: true });
        Object.defineProperty(Object.prototype, "11", { get: trap, configurable: true });
        Uint8Array.prototype.set = trap;
        Uint8Array.prototype.subarray = trap;
        Function.prototype.call = trap;
        Function.prototype.apply = trap;
        Reflect.apply = trap;
        WeakMap.prototype.get = trap;
        FinalizationRegistry.prototype.register = trap;
        Array.prototype[Symbol.iterator] = trap;

        const u = new URL("http://h/p?a=1&b=2");
        u.searchParams.append("c", "3");
        u.searchParams.sort();
        u.hostname = "x.example";
        let keys = "";
        const it = u.searchParams.keys();
        for (let r = it.next(); !r.done; r = it.next()) keys += r.value;
        const d = new TextDecoder("utf-16le");
        const s1 = d.decode(Uint8Array.of(0x41, 0x00, 0x42), { stream: true });
        const s2 = d.decode(Uint8Array.of(0x00));
        const into = new Uint8Array(4);
        const r = new TextEncoder().encodeInto("hé", into);
        const out = {
            href: u.href, keys, size: u.searchParams.size, got: u.searchParams.get("b"),
            decoded: s1 + s2, written: r.written, read: r.read, b64: atob(btoa("ok")),
            enc: new TextEncoder().encode("é").length,
        };
        delete Object.prototype.then;
        delete Object.prototype[1];
        delete Object.prototype[11];
        out.calls = calls;
        return out;
        "#,
        Limits::default(),
    )
    .await;
    assert_eq!(
        v,
        json!({
            "href": "http://x.example/p?a=1&b=2&c=3", "keys": "abc", "size": 3, "got": "2",
            "decoded": "AB", "written": 3, "read": 2, "b64": "ok", "enc": 2, "calls": 0,
        })
    );
}
