//! The host owns a JavaScript response's framing: header caps, and no
//! guest `content-length` / hop-by-hop header reaches the wire.

use corral::{Limits, SandboxError};

use crate::Tenant;

const APP: &str = r#"export default { fetch(req) {
    const p = new URL(req.url).pathname;
    if (p === "/flood") {
        const h = new Headers();
        for (let i = 0; i < 30000; i++) h.append("x-h-" + i, "v");
        h.set("content-type", "text/plain");
        return new Response("flooded", { headers: h });
    }
    if (p === "/fat") {
        return new Response("fat", { headers: { "x-fat": "v".repeat(70000) } });
    }
    if (p === "/framing") {
        return new Response("the real body", { headers: [
            ["content-type", "text/plain"],
            ["content-length", "0"],
            ["transfer-encoding", "chunked"],
            ["connection", "close"],
            ["keep-alive", "timeout=1"],
            ["upgrade", "websocket"],
            ["te", "trailers"],
            ["trailer", "x-t"],
            ["proxy-authenticate", "Basic"],
            ["x-kept", "1"],
        ] });
    }
    if (p === "/stream") {
        const body = new ReadableStream({ start(c) {
            c.enqueue(new TextEncoder().encode("streamed "));
            c.enqueue(new TextEncoder().encode("body"));
            c.close();
        } });
        return new Response(body, { headers: { "content-length": "1", "content-type": "text/plain" } });
    }
    return new Response("ok", { headers: { "x-256": "at the cap" } });
} }"#;

fn tenant() -> Tenant {
    Tenant::new("hygiene", APP, Limits::default())
}

#[tokio::test]
async fn thirty_thousand_headers_are_a_bad_response() {
    let t = tenant();
    let err = t.get("/flood").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::BadResponse { reason } if reason.contains("more than 256")),
        "{err:?}"
    );
    assert_eq!(err.code(), "bad_response");
    assert_eq!(err.status(), 502);
    // The runtime is fine afterwards.
    assert_eq!(t.text("/").await, "ok");
}

#[tokio::test]
async fn header_bytes_over_the_cap_are_a_bad_response() {
    let err = tenant().get("/fat").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::BadResponse { reason } if reason.contains("65536 bytes")),
        "{err:?}"
    );
}

#[tokio::test]
async fn framing_headers_from_the_guest_are_dropped_and_the_body_is_whole() {
    let resp = tenant().get("/framing").await.unwrap();
    assert_eq!(resp.body().as_ref(), b"the real body");
    let mut names: Vec<&str> = resp.headers().keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-type", "x-kept"]);
}

#[tokio::test]
async fn a_streamed_body_keeps_no_guest_content_length() {
    let t = tenant();
    let resp = t.open("/stream").await.unwrap();
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.headers()["content-type"], "text/plain");
    let body = resp.into_body().to_bytes().await.unwrap();
    assert_eq!(&body[..], b"streamed body");
}
