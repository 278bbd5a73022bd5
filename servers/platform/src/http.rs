//! The hyper server: HTTP/1.1 and h2c on one port (hyper-util's auto builder),
//! keep-alive, header size and count limits, a header-read timeout against
//! slowloris, and graceful shutdown that stops accepting, ends open event
//! streams (their clients reconnect elsewhere) and drains in-flight requests
//! up to a deadline.
//!
//! Also the small response helpers every handler uses: stable JSON error
//! bodies and body collection under a byte cap.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::HttpLimits;

/// A boxed error, as carried by streaming bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of the server: full bodies, tenant responses and
/// streams (SSE) alike. Same type as `corral::platform::PlatformBody`.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A full body.
///
/// ```
/// let b = corral_server::http::full("hi");
/// assert_eq!(http_body::Body::size_hint(&b).exact(), Some(2));
/// ```
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response with `status`.
///
/// ```
/// let r = corral_server::http::json(http::StatusCode::OK, &serde_json::json!({"ok": true}));
/// assert_eq!(r.headers()["content-type"], "application/json");
/// ```
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A stable JSON error body: `{"error": code, "message": message}`.
///
/// ```
/// let r = corral_server::http::error(http::StatusCode::NOT_FOUND, "app_not_found", "no app named x");
/// assert_eq!(r.status(), 404);
/// ```
pub fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"error": code, "message": message.to_string()}),
    )
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than the cap → 413 `body_too_large`.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// The connection failed while reading → 400 `bad_body`.
    #[error("request body could not be read: {0}")]
    Read(String),
}

impl BodyError {
    /// The JSON error response for this error.
    pub fn to_response(&self) -> Response<Body> {
        match self {
            Self::TooLarge { limit } => json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({"error": "body_too_large", "limit": limit, "message": self.to_string()}),
            ),
            Self::Read(_) => error(StatusCode::BAD_REQUEST, "bad_body", self),
        }
    }
}

/// How much of an over-cap body is read and thrown away before answering 413.
///
/// Answering while the client is still sending and then closing makes the
/// kernel reset the connection, and most clients then report a broken pipe
/// instead of the 413. Reading a bounded tail (at most this many bytes, for at
/// most [`DRAIN_TIMEOUT`]) lets ordinary clients see the answer; anything
/// larger or slower is cut off.
pub const DRAIN_MAX_BYTES: u64 = 8 << 20;

/// How long an over-cap body is drained before the connection is given up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Collects `body` into memory, refusing it as soon as it passes `limit`
/// bytes (a `Content-Length` over the cap is refused without buffering it).
///
/// An over-cap body is drained (discarded, up to [`DRAIN_MAX_BYTES`]) so the
/// client reliably reads the 413 instead of a connection reset.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use corral_server::http::{collect_limited, BodyError};
/// let body = http_body_util::Full::new(bytes::Bytes::from_static(b"hello"));
/// let over = collect_limited(&http::HeaderMap::new(), body, 4).await;
/// assert!(matches!(over, Err(BodyError::TooLarge { limit: 4 })));
/// # });
/// ```
pub async fn collect_limited<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: u64,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > limit) {
        // A declared body too big to drain is cut off unread.
        if len <= DRAIN_MAX_BYTES {
            drain(body, 0).await;
        }
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = std::pin::pin!(body);
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let seen = (buf.len() + data.remaining()) as u64;
        if seen > limit {
            drain(body, seen).await;
            return Err(BodyError::TooLarge { limit });
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            let n = chunk.len();
            buf.extend_from_slice(chunk);
            data.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards `body` until it ends, [`DRAIN_MAX_BYTES`] have been
/// seen (counting `seen` already read), or [`DRAIN_TIMEOUT`] passes.
async fn drain<B: http_body::Body>(body: B, mut seen: u64) {
    let mut body = std::pin::pin!(body);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while seen <= DRAIN_MAX_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    seen += frame.data_ref().map_or(0, |d| d.remaining() as u64);
                }
                _ => break,
            }
        }
    })
    .await;
}

/// What [`serve`] reports when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeReport {
    /// Connections accepted over the server's life.
    pub connections: u64,
    /// Whether every connection finished within the drain timeout.
    pub drained: bool,
}

/// Serves `service` on `listener` until `shutdown` resolves, then stops
/// accepting, ends open `text/event-stream` bodies cleanly (an event stream
/// never finishes on its own, so it would hold the drain to its deadline),
/// asks every connection to finish its in-flight requests, and waits up to
/// `limits.drain_timeout` for them.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use corral_server::{config::ServerConfig, http};
/// let cfg = ServerConfig::load(None, &std::collections::BTreeMap::new()).unwrap();
/// let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
/// let svc = hyper::service::service_fn(|_req| async {
///     Ok::<_, std::convert::Infallible>(hyper::Response::new(http::full("hello")))
/// });
/// http::serve(listener, svc, &cfg.http, tokio::signal::ctrl_c()).await;
/// # Ok(()) }
/// # let _ = demo();
/// ```
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    limits: &HttpLimits,
    shutdown: F,
) -> ServeReport
where
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Future,
{
    let builder = builder(limits);
    let graceful = GracefulShutdown::new();
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut connections = 0u64;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        connections += 1;
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection(
                TokioIo::new(stream),
                PeerService {
                    inner: service.clone(),
                    peer,
                    stop: stop.clone(),
                },
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    tracing::info!(in_flight_connections = graceful.count(), "draining");
    let drained = tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_ok();
    ServeReport {
        connections,
        drained,
    }
}

fn builder(limits: &HttpLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .keep_alive(limits.keep_alive)
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// The remote address of a connection, in each request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

#[derive(Clone)]
struct PeerService<S> {
    inner: S,
    peer: SocketAddr,
    /// Turns true when shutdown begins.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl<S> hyper::service::Service<http::Request<Incoming>> for PeerService<S>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;
    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(Peer(self.peer));
        let response = self.inner.call(req);
        let mut stop = self.stop.clone();
        Box::pin(async move {
            let response = response.await?;
            if !corral_limits::is_event_stream(response.headers()) {
                return Ok(response);
            }
            Ok(response.map(|inner| {
                let stop = Box::pin(async move {
                    let _ = stop.wait_for(|stopping| *stopping).await;
                });
                UntilShutdown { inner, stop }.boxed_unsync()
            }))
        })
    }
}

/// An event stream's body that ends (cleanly, as if the guest closed it)
/// when shutdown begins.
struct UntilShutdown {
    inner: Body,
    stop: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl http_body::Body for UntilShutdown {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn limits() -> HttpLimits {
        let mut l = crate::config::ServerConfig::load(None, &crate::cli::no_env())
            .unwrap()
            .http;
        l.header_read_timeout = Duration::from_millis(300);
        l.drain_timeout = Duration::from_secs(5);
        l
    }

    /// Starts `serve` with a handler that sleeps `delay` and answers with the
    /// protocol version; returns the address, the shutdown trigger and the join handle.
    async fn start(
        limits: HttpLimits,
        delay: Duration,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<ServeReport>,
        Arc<AtomicUsize>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let d = d.clone();
            async move {
                tokio::time::sleep(delay).await;
                d.fetch_add(1, Ordering::SeqCst);
                let peer = req.extensions().get::<Peer>().map(|p| p.0.ip().to_string());
                Ok::<_, Infallible>(Response::new(full(format!(
                    "{:?} {}",
                    req.version(),
                    peer.unwrap_or_default()
                ))))
            }
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let h = tokio::spawn(async move {
            serve(listener, svc, &limits, async {
                let _ = rx.await;
            })
            .await
        });
        (addr, tx, h, done)
    }

    async fn raw(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn http1_and_h2c_on_one_port() {
        let (addr, tx, h, _) = start(limits(), Duration::ZERO).await;
        let r = raw(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("HTTP/1.1 127.0.0.1"), "{r}");

        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("http://x/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"HTTP/2.0 127.0.0.1");
        drop(send);
        tx.send(()).unwrap();
        let report = h.await.unwrap();
        assert_eq!(
            report,
            ServeReport {
                connections: 2,
                drained: true
            }
        );
    }

    #[tokio::test]
    async fn slowloris_is_cut_off() {
        let (addr, _tx, _h, done) = start(limits(), Duration::ZERO).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        let waited = t.elapsed();
        assert!(read.is_ok(), "connection still open after 5 s");
        assert!(
            waited >= Duration::from_millis(250),
            "closed after {waited:?}"
        );
        assert_eq!(done.load(Ordering::SeqCst), 0);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn oversized_head_gets_431() {
        let (addr, _tx, _h, done) = start(limits(), Duration::ZERO).await;
        let big = "a".repeat(20_000);
        let r = raw(
            addr,
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 431 "), "{}", &r[..r.len().min(80)]);
        let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
        let r = raw(
            addr,
            format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 431 "), "{}", &r[..r.len().min(80)]);
        assert_eq!(done.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn shutdown_drains_in_flight_then_refuses() {
        let (addr, tx, h, done) = start(limits(), Duration::from_millis(400)).await;
        let inflight = tokio::spawn(raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(()).unwrap();
        let report = h.await.unwrap();
        assert_eq!(
            report,
            ServeReport {
                connections: 1,
                drained: true
            }
        );
        let r = inflight.await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("connection: close"), "{r}");
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn drain_gives_up_at_the_timeout() {
        let mut l = limits();
        l.drain_timeout = Duration::from_millis(200);
        let (addr, tx, h, done) = start(l, Duration::from_secs(30)).await;
        let _stuck = tokio::spawn(raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        tx.send(()).unwrap();
        let report = h.await.unwrap();
        assert!(!report.drained);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(done.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn collect_limited_caps_bytes() {
        let h = http::HeaderMap::new();
        let ok = collect_limited(&h, Full::new(Bytes::from_static(b"12345")), 5).await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"12345"));
        let over = collect_limited(&h, Full::new(Bytes::from_static(b"123456")), 5).await;
        assert!(matches!(over, Err(BodyError::TooLarge { limit: 5 })));
        let mut h = http::HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        let declared = collect_limited(&h, Full::new(Bytes::new()), 5).await;
        assert!(matches!(declared, Err(BodyError::TooLarge { limit: 5 })));
        let r = BodyError::TooLarge { limit: 5 }.to_response();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "body_too_large");
        assert_eq!(v["limit"], 5);
    }
}
