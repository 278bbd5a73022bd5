//! `http_head`: raw bytes on a TCP connection to the real server loop, with
//! the default head limits, routing each request head to a tenant.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use corral_server::config::{HttpLimits, ServerConfig};
use corral_server::http::{Body, full, serve};
use corral_server::routes::{Route, Router};
use http::{Response, StatusCode};

/// The base domain the server routes tenants under.
const BASE: &str = "example.com";

struct Fixture {
    addr: SocketAddr,
    limits: HttpLimits,
    _rt: tokio::runtime::Runtime,
}

/// Answers with where the head routes: `200 tenant <app>`, `200 api`, or the
/// refusal's status and code; `500` if hyper passed on a head over the limits.
fn answer(req: &http::Request<hyper::body::Incoming>, limits: &HttpLimits) -> Response<Body> {
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(full(body));
        *r.status_mut() = status;
        r
    };
    if req.headers().len() > limits.max_headers {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "too many headers".into());
    }
    let (parts, _) = http::Request::new(()).into_parts();
    let mut head = parts;
    head.method = req.method().clone();
    head.uri = req.uri().clone();
    head.version = req.version();
    head.headers = req.headers().clone();
    match Router::new(Some(BASE)).route(&head) {
        Ok(Route::Tenant { tenant, .. }) => text(StatusCode::OK, format!("tenant {tenant}\n")),
        Ok(_) => text(StatusCode::OK, "api\n".into()),
        Err(e) => text(e.status(), format!("{}\n", e.code())),
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut cfg = ServerConfig::load(None, &BTreeMap::new()).expect("default config");
        // A head that never completes is cut after this; the client below
        // waits longer, so a hang past it is a finding.
        cfg.http.header_read_timeout = Duration::from_secs(1);
        let limits = cfg.http.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let svc_limits = limits.clone();
        let svc = hyper::service::service_fn(move |req| {
            let resp = answer(&req, &svc_limits);
            async move { Ok::<_, Infallible>(resp) }
        });
        let serve_limits = limits.clone();
        rt.spawn(async move {
            serve(listener, svc, &serve_limits, std::future::pending::<()>()).await;
        });
        Fixture {
            addr,
            limits,
            _rt: rt,
        }
    })
}

/// Where the first request head ends (its blank line), if it does.
fn head_end(data: &[u8]) -> Option<usize> {
    // httparse ends a line at CRLF or at a bare LF, so the empty line that
    // ends the head is any of these four; the earliest one counts.
    [&b"\r\n\r\n"[..], b"\n\n", b"\r\n\n", b"\n\r\n"]
        .iter()
        .filter_map(|end| {
            data.windows(end.len())
                .position(|w| w == *end)
                .map(|i| i + end.len())
        })
        .min()
}

/// The input is written as is to a fresh connection, which is then
/// half-closed; the server's answers are read to the end.
///
/// Invariants: the server answers or closes within its header read timeout
/// (no hang); it never hands on a head over `max_header_bytes` or with more
/// than `max_headers` fields; an answer is a well-formed HTTP/1.1 status line;
/// a tenant it resolves is named in the bytes sent.
pub fn http_head(data: &[u8]) {
    let f = fixture();
    let mut conn = TcpStream::connect(f.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    // The server may close early (a refused head): later writes may fail.
    let _ = conn.write_all(data);
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    match conn.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the server neither answered nor closed within 5 s")
        }
        Err(_) => {} // reset: a refused connection
    }
    if data.starts_with(b"PRI * HTTP/2.0") || out.is_empty() {
        return; // HTTP/2 frames, or closed without an answer
    }
    assert!(
        out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "),
        "not an HTTP/1 answer: {:?}",
        String::from_utf8_lossy(&out[..out.len().min(64)])
    );
    let status = std::str::from_utf8(&out[9..out.len().min(12)]).unwrap_or("");
    assert_ne!(status, "500", "a head over the limits reached the service");
    if status == "200" {
        let end = head_end(data).unwrap_or(data.len());
        assert!(
            end <= f.limits.max_header_bytes,
            "a {end}-byte head was accepted (limit {})",
            f.limits.max_header_bytes
        );
        let text = String::from_utf8_lossy(&out);
        if let Some(at) = text.find("tenant ") {
            let name = text[at + 7..].split_whitespace().next().unwrap_or("");
            let sent = String::from_utf8_lossy(data).to_ascii_lowercase();
            assert!(
                sent.contains(name),
                "tenant {name:?} resolved but never named"
            );
        }
    }
}
