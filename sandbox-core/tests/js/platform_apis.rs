//! crypto.subtle (digest, HMAC), CompressionStream/DecompressionStream and
//! FormData with multipart and urlencoded bodies (issue 16): the standards'
//! behaviour and errors, and their bounds (a decompression bomb stops with a
//! RangeError inside the tenant's memory, a runtime has at most 32 coders,
//! a multipart body at most 10,000 parts). No WPT checkout needed.

use bytes::Bytes;
use corral::Limits;
use serde_json::json;

use super::Tenant;

/// Runs `body` (the inside of an async `fetch(req)`, returning a JSON-able
/// value) for a POST of `request_body` and gives back that value.
async fn eval_with(name: &str, body: &str, request_body: Vec<u8>, limits: Limits) -> serde_json::Value {
    let source = format!(
        "export default {{ async fetch(req) {{ const out = await (async () => {{ {body} }})(); \
         return Response.json(out); }} }}"
    );
    let t = Tenant::new(name, &source, limits);
    let request = http::Request::post("/")
        .header("host", "app.example")
        .body(Bytes::from(request_body))
        .unwrap();
    let resp = t.send(request).await.expect("request succeeds");
    let text = String::from_utf8(resp.into_body().to_vec()).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn eval(name: &str, body: &str) -> serde_json::Value {
    eval_with(name, body, Vec::new(), Limits::default()).await
}

#[tokio::test]
async fn subtle_digests_with_the_sha_family() {
    let v = eval(
        "digest",
        r#"
        const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
        const abc = new TextEncoder().encode("abc");
        const err = async (p) => { try { await p; return "resolved"; } catch (e) { return e.name; } };
        return {
            sha1: hex(await crypto.subtle.digest("SHA-1", abc)),
            sha256: hex(await crypto.subtle.digest({ name: "sha-256" }, abc.buffer)),
            lengths: [
                (await crypto.subtle.digest("SHA-384", new DataView(abc.buffer))).byteLength,
                (await crypto.subtle.digest("SHA-512", new Uint8Array(0))).byteLength,
            ],
            badName: await err(crypto.subtle.digest("MD5", abc)),
            noName: await err(crypto.subtle.digest({}, abc)),
            notBytes: await err(crypto.subtle.digest("SHA-256", "abc")),
            // A rejection, never a throw.
            sync: (() => { try { crypto.subtle.digest("nope", abc); return "promise"; } catch { return "threw"; } })(),
            subtle: [crypto.subtle instanceof SubtleCrypto, String(crypto.subtle)],
            uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID()),
        };
        "#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "sha1": "a9993e364706816aba3e25717850c26c9cd0d89d",
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "lengths": [48, 64],
            "badName": "NotSupportedError",
            "noName": "TypeError",
            "notBytes": "TypeError",
            "sync": "promise",
            "subtle": [true, "[object SubtleCrypto]"],
            "uuid": true,
        })
    );
}

#[tokio::test]
async fn subtle_hmac_keys_sign_and_verify() {
    let v = eval(
        "hmac",
        r#"
        const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
        const enc = (s) => new TextEncoder().encode(s);
        const err = async (p) => { try { await p; return "resolved"; } catch (e) { return e.name; } };
        const alg = { name: "HMAC", hash: "SHA-256" };
        // RFC 4231, test case 2.
        const key = await crypto.subtle.importKey("raw", enc("Jefe"), alg, true, ["sign", "verify"]);
        const data = enc("what do ya want for nothing?");
        const mac = await crypto.subtle.sign("HMAC", key, data);
        const verifyOnly = await crypto.subtle.importKey("raw", enc("Jefe"), alg, false, ["verify"]);
        const generated = await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-512" }, true, ["sign"]);
        const jwk = await crypto.subtle.exportKey("jwk", key);
        const fromJwk = await crypto.subtle.importKey("jwk", jwk, alg, false, ["verify"]);
        return {
            mac: hex(mac),
            verified: await crypto.subtle.verify("HMAC", key, mac, data),
            tampered: await crypto.subtle.verify("HMAC", key, mac, enc("what do ya want for nothing!")),
            key: [String(key), key.type, key.extractable, key.algorithm, key.usages],
            generated: [generated.algorithm.length, (await crypto.subtle.exportKey("raw", generated)).byteLength],
            jwk: [jwk.kty, jwk.k, jwk.alg],
            fromJwk: await crypto.subtle.verify("HMAC", fromJwk, mac, data),
            noSignUsage: await err(crypto.subtle.sign("HMAC", verifyOnly, data)),
            notExtractable: await err(crypto.subtle.exportKey("raw", verifyOnly)),
            badUsage: await err(crypto.subtle.importKey("raw", enc("k"), alg, false, ["encrypt"])),
            noUsage: await err(crypto.subtle.importKey("raw", enc("k"), alg, false, [])),
            emptyKey: await err(crypto.subtle.importKey("raw", new Uint8Array(0), alg, false, ["sign"])),
            noHash: await err(crypto.subtle.importKey("raw", enc("k"), { name: "HMAC" }, false, ["sign"])),
            otherAlgorithm: await err(crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"])),
            encrypt: await err(crypto.subtle.encrypt({ name: "AES-GCM" }, key, data)),
            notAKey: await err(crypto.subtle.sign("HMAC", {}, data)),
            illegal: await err((async () => new CryptoKey())()),
        };
        "#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "mac": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "verified": true,
            "tampered": false,
            "key": ["[object CryptoKey]", "secret", true,
                    {"name": "HMAC", "length": 32, "hash": {"name": "SHA-256"}}, ["sign", "verify"]],
            "generated": [1024, 128],
            "jwk": ["oct", "SmVmZQ", "HS256"],
            "fromJwk": true,
            "noSignUsage": "InvalidAccessError",
            "notExtractable": "InvalidAccessError",
            "badUsage": "SyntaxError",
            "noUsage": "SyntaxError",
            "emptyKey": "DataError",
            "noHash": "TypeError",
            "otherAlgorithm": "NotSupportedError",
            "encrypt": "NotSupportedError",
            "notAKey": "TypeError",
            "illegal": "TypeError",
        })
    );
}
