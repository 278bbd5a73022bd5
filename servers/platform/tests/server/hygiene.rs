//! Response hygiene end to end: the host frames every response, path-routed
//! apps cannot set cookies or origin-wide headers outside their path, and
//! `[routing]` switches path routing off and binds the admin API to a host.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{self, Server};

/// A guest that lies about its framing and sets cookies and origin-wide headers.
const APP: &str = r#"export default { async fetch(req) {
    const p = new URL(req.url).pathname;
    if (p === "/split") {
        const forged = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\nx-forged: 1\r\n\r\nforged";
        return new Response(forged, { headers: {
            "content-type": "text/plain",
            "content-length": "0",
            "connection": "keep-alive",
        } });
    }
    const h = new Headers();
    h.append("set-cookie", "sid=1; Path=/; Domain=corral.test; HttpOnly");
    h.append("set-cookie", "pref=dark; path=/apps/jar/prefs");
    h.append("clear-site-data", "\"*\"");
    h.append("service-worker-allowed", "/");
    h.append("x-app", "jar");
    return new Response("cookies", { headers: h });
} }"#;

/// One response read off a raw connection: status line, headers, body.
#[derive(Debug)]
struct Raw {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Parses one `content-length`-framed HTTP/1.1 response off the front of
/// `wire`, and returns it with what follows it.
fn parse_one(wire: &[u8]) -> (Raw, &[u8]) {
    let end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(wire)));
    let head = std::str::from_utf8(&wire[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let lengths: Vec<usize> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .collect();
    assert_eq!(lengths.len(), 1, "one content-length: {headers:?}");
    assert!(
        !headers.iter().any(|(n, _)| n == "transfer-encoding"),
        "{headers:?}"
    );
    let rest = &wire[end + 4..];
    assert!(rest.len() >= lengths[0], "{headers:?}: {rest:?}");
    let (body, rest) = rest.split_at(lengths[0]);
    let raw = Raw {
        status_line,
        headers,
        body: body.to_vec(),
    };
    (raw, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_content_length_cannot_split_the_response() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let (status, v) = s.deploy_js("jar", "test", APP).await;
    assert_eq!(status, 200, "{v}");

    // Two pipelined requests on one connection: the guest's response, then
    // the host's own /healthz. The wire must hold exactly those two.
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(
        b"GET /apps/jar/split HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut wire = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut wire),
    )
    .await
    .expect("the server closes after the second response")
    .unwrap();

    let (first, rest) = parse_one(&wire);
    assert_eq!(first.status_line, "HTTP/1.1 200 OK");
    let forged = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\nx-forged: 1\r\n\r\nforged";
    assert_eq!(
        first.body,
        forged.as_bytes(),
        "the whole body, inside the first response"
    );
    let len: Vec<_> = first
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .collect();
    assert_eq!(len[0].1, forged.len().to_string());
    assert!(
        !first.headers.iter().any(|(n, _)| n == "connection"),
        "{:?}",
        first.headers
    );

    let (second, rest) = parse_one(rest);
    assert_eq!(second.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        second.body, b"ok\n",
        "the next response is the host's /healthz"
    );
    assert!(!second.headers.iter().any(|(n, _)| n == "x-forged"));
    assert!(rest.is_empty(), "nothing else on the wire: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_routed_cookies_stay_under_the_app_and_subdomains_keep_theirs() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let (status, v) = s.deploy_js("jar", "test", APP).await;
    assert_eq!(status, 200, "{v}");
    let get = |path: &str, host: Option<&str>, app_header: Option<&str>| {
        let mut req = Request::get(s.url(path));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        if let Some(a) = app_header {
            req = req.header("x-corral-app", a);
        }
        s.send(req.body(Full::default()).unwrap())
    };
    let cookies = |h: &http::HeaderMap| -> Vec<String> {
        h.get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };

    // By path: confined to /apps/jar/, Domain gone, origin-wide headers dropped.
    let (status, h, body) = get("/apps/jar/", None, None).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(&body[..], b"cookies");
    assert_eq!(
        cookies(&h),
        [
            "sid=1; HttpOnly; Path=/apps/jar/",
            "pref=dark; path=/apps/jar/prefs"
        ]
    );
    assert!(h.get("clear-site-data").is_none(), "{h:?}");
    assert!(h.get("service-worker-allowed").is_none(), "{h:?}");
    assert_eq!(h["x-app"], "jar");

    // On its own subdomain (its own origin), and named by a proxy's header:
    // the app's headers as it sent them.
    for (host, app) in [(Some("jar.corral.test"), None), (None, Some("jar"))] {
        let (status, h, _) = get("/", host, app).await;
        assert_eq!(status, 200);
        assert_eq!(
            cookies(&h),
            [
                "sid=1; Path=/; Domain=corral.test; HttpOnly",
                "pref=dark; path=/apps/jar/prefs"
            ],
            "{host:?} {app:?}"
        );
        assert_eq!(h["clear-site-data"], "\"*\"");
        assert_eq!(h["service-worker-allowed"], "/");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_path_off_and_admin_host() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[routing]\npath = false\nadmin_host = \"admin.corral.test\"\n",
        common::CONFIG
    );
    let s = Server::start_with(tmp.path(), None, &config);
    let send = |method: Method, path: &str, host: &str, token: bool| {
        let mut req = Request::builder()
            .method(method)
            .uri(s.url(path))
            .header("host", host);
        if token {
            req = req.header("authorization", format!("Bearer {}", s.token));
        }
        s.send(req.body(Full::new(Bytes::new())).unwrap())
    };
    let code = |body: &Bytes| -> String {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["error"].as_str().unwrap().to_owned()
    };

    // The demo app is reached on its subdomain only.
    let (status, _, body) = send(Method::GET, "/", "demo.corral.test", false).await;
    assert_eq!(status, 200, "{body:?}");
    for host in ["corral.test", "localhost", "admin.corral.test"] {
        let (status, _, body) = send(Method::GET, "/apps/demo/", host, false).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{host}");
        assert_eq!(code(&body), "not_found");
    }

    // The admin API answers on its host only; elsewhere it does not exist.
    let (status, _, body) = send(Method::GET, "/api/apps", "admin.corral.test", true).await;
    assert_eq!(status, 200, "{body:?}");
    let (status, _, body) = send(Method::GET, "/api/apps", "admin.corral.test:443", true).await;
    assert_eq!(status, 200, "{body:?}");
    for host in ["corral.test", "localhost", "evil.test"] {
        for (method, path) in [
            (Method::GET, "/api/apps"),
            (Method::DELETE, "/api/apps/demo"),
        ] {
            let (status, _, body) = send(method, path, host, true).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{host} {path}");
            assert_eq!(code(&body), "not_found");
        }
    }
    // The delete above never happened.
    let (status, _, _) = send(Method::GET, "/", "demo.corral.test", false).await;
    assert_eq!(status, 200);

    // Probes and the TLS proxy's question answer on every host.
    for path in [
        "/healthz",
        "/readyz",
        "/api/tls-ask?domain=demo.corral.test",
    ] {
        let (status, _, body) = send(Method::GET, path, "127.0.0.1", false).await;
        assert_eq!(status, 200, "{path}: {body:?}");
    }
}

/// The mark one node puts on a request it forwards to another names a node:
/// it is the platform's, and the app the request reaches never sees it, as
/// sent by a client or by a peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarding_mark_never_reaches_the_guest() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let echo = r#"export default { fetch(req) {
        return new Response([...req.headers].map(([k, v]) => `${k}=${v}`).join("\n"));
    } }"#;
    let (status, v) = s.deploy_js("echo", "test", echo).await;
    assert_eq!(status, 200, "{v}");
    let req = Request::get(s.url("/apps/echo/"))
        .header("x-corral-forwarded-by", "node-7")
        .header("x-kept", "1")
        .body(Full::default())
        .unwrap();
    let (status, _, body) = s.send(req).await;
    assert_eq!(status, 200, "{body:?}");
    let seen = String::from_utf8(body.to_vec()).unwrap();
    assert!(seen.contains("x-kept=1"), "{seen}");
    assert!(!seen.contains("forwarded-by"), "{seen}");
    assert!(!seen.contains("node-7"), "{seen}");
}
