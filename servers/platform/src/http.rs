//! The hyper server: HTTP/1.1 and h2c on one port (hyper-util's auto builder),
//! keep-alive, header size and count limits, a header-read timeout against
//! slowloris, a cap on open connections, an idle timeout, and graceful
//! shutdown that stops accepting, ends open event streams (their clients
//! reconnect elsewhere) and drains in-flight requests up to a deadline.
//!
//! Also the small request and response helpers every handler uses: stable
//! JSON error bodies, body collection under a byte cap, and [`BodyBudget`],
//! which puts a whole-body deadline on every request body and a host-wide
//! cap on the body bytes buffered at once.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

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
    /// The body is larger than the cap → 413 `payload_too_large`.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// The connection failed while reading → 400 `bad_body`.
    #[error("request body could not be read: {0}")]
    Read(String),
    /// The whole body did not arrive within the deadline → 408 `body_timeout`.
    #[error("request body did not arrive within {limit:?}")]
    Timeout {
        /// The deadline (`http.body_read_timeout`).
        limit: Duration,
    },
    /// Holding the body would pass the host-wide cap on buffered body bytes
    /// → 503 `body_buffer_full` with `Retry-After`.
    #[error("the server is holding too many request bodies (cap {limit} bytes); retry shortly")]
    BufferFull {
        /// The cap (`http.max_buffered_body_bytes`).
        limit: u64,
    },
}

impl BodyError {
    /// The JSON error response for this error. A timeout also closes the
    /// connection, since the rest of the body is never read.
    ///
    /// ```
    /// use corral_server::http::BodyError;
    /// let r = BodyError::Timeout { limit: std::time::Duration::from_secs(30) }.to_response();
    /// assert_eq!(r.status(), 408);
    /// assert_eq!(r.headers()["connection"], "close");
    /// let r = BodyError::BufferFull { limit: 1 }.to_response();
    /// assert_eq!(r.status(), 503);
    /// assert_eq!(r.headers()["retry-after"], "1");
    /// ```
    pub fn to_response(&self) -> Response<Body> {
        match self {
            Self::TooLarge { limit } => {
                let (status, headers, body) =
                    corral::limits_layers::Refused::payload_too_large(None, *limit, None).to_http();
                let mut r = Response::new(full(body));
                *r.status_mut() = status;
                *r.headers_mut() = headers;
                r
            }
            Self::Read(_) => error(StatusCode::BAD_REQUEST, "bad_body", self),
            Self::Timeout { .. } => {
                let mut r = error(StatusCode::REQUEST_TIMEOUT, "body_timeout", self);
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            Self::BufferFull { limit } => {
                let mut r = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"error": "body_buffer_full", "limit": limit, "message": self.to_string()}),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        }
    }

    /// The body error behind a body's own error: a [`BodyError`] raised by
    /// [`GuardedBody`] comes back as itself, anything else is a read failure.
    fn from_frame_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        let boxed: BoxError = Box::new(e);
        match boxed.downcast::<BodyError>() {
            Ok(b) => *b,
            Err(other) => Self::Read(other.to_string()),
        }
    }
}

/// How much of a refused body is read and thrown away so the client sees
/// the answer (413, 404).
///
/// Answering while the client is still sending and then closing makes the
/// kernel reset the connection, and most clients then report a broken pipe
/// instead of the answer. Reading a bounded tail (at most this many bytes, for
/// at most [`DRAIN_TIMEOUT`]) lets ordinary clients see it; anything larger or
/// slower is cut off. 1 MiB matches curl, which sends larger bodies only after
/// `100 Continue`, so it reads an early answer without any draining.
pub const DRAIN_MAX_BYTES: u64 = 1 << 20;

/// How long a refused body is drained before the connection is given up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

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
        let frame = frame.map_err(BodyError::from_frame_error)?;
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

/// Answers without reading `body`, then drains it in the background (at
/// most [`DRAIN_MAX_BYTES`] for at most [`DRAIN_TIMEOUT`]) so the client reads
/// the answer instead of a reset. Nothing is drained when the declared length
/// is larger than that (the connection is simply closed after the answer) or
/// when the client waits for `100 Continue` (it has sent nothing).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mut h = http::HeaderMap::new();
/// h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from_static("1073741824"));
/// // A declared 1 GiB is never read: the body is dropped at once.
/// corral_server::http::discard(&h, http_body_util::Empty::<bytes::Bytes>::new());
/// # });
/// ```
pub fn discard<B>(headers: &http::HeaderMap, body: B)
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    if body.is_end_stream() {
        return;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let waits_for_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if waits_for_continue || declared.is_some_and(|len| len > DRAIN_MAX_BYTES) {
        return;
    }
    tokio::spawn(drain(body, 0));
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

/// The host-wide account of request-body bytes held in memory, and the
/// whole-body deadline: one per server, shared by every request (tenant
/// bodies and admin uploads alike).
///
/// [`guard`](Self::guard) wraps a request body so that
/// - the whole body must arrive within the timeout, counted from its first
///   read (not per chunk: a client sending a byte a minute is cut too), and
/// - each data frame is counted against the host-wide cap as it arrives; a
///   frame that would pass the cap fails the read with
///   [`BodyError::BufferFull`].
///
/// The bytes stay counted until every [`BodyHold`] of the request is dropped:
/// keep it for as long as the collected body is in use.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use corral_server::http::{BodyBudget, BodyError, collect_limited};
///
/// let budget = BodyBudget::new(8, Duration::from_secs(30));
/// let body = http_body_util::Full::new(bytes::Bytes::from_static(b"hello"));
/// let (body, hold) = budget.guard(body);
/// let bytes = collect_limited(&http::HeaderMap::new(), body, 1024).await.unwrap();
/// assert_eq!(budget.buffered(), 5);
///
/// // A second body of 5 bytes would pass the cap of 8 while the first is held.
/// let (other, _) = budget.guard(http_body_util::Full::new(bytes.clone()));
/// let full = collect_limited(&http::HeaderMap::new(), other, 1024).await;
/// assert!(matches!(full, Err(BodyError::BufferFull { limit: 8 })));
///
/// drop(hold);
/// assert_eq!(budget.buffered(), 0);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct BodyBudget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    buffered: AtomicU64,
    max: u64,
    timeout: Duration,
}

impl BodyBudget {
    /// A budget of `max_bytes` buffered at once, and `timeout` for each whole body.
    pub fn new(max_bytes: u64, timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                buffered: AtomicU64::new(0),
                max: max_bytes,
                timeout,
            }),
        }
    }

    /// Body bytes held right now, across every request.
    pub fn buffered(&self) -> u64 {
        self.shared.buffered.load(Ordering::Relaxed)
    }

    /// Wraps `body` under the deadline and the cap; the [`BodyHold`] keeps
    /// its bytes counted until dropped.
    pub fn guard<B>(&self, body: B) -> (GuardedBody<B>, BodyHold) {
        let hold = BodyHold(Arc::new(Held {
            shared: self.shared.clone(),
            bytes: AtomicU64::new(0),
        }));
        let guarded = GuardedBody {
            inner: body,
            deadline: None,
            timeout: self.shared.timeout,
            hold: hold.clone(),
            failed: false,
        };
        (guarded, hold)
    }
}

/// Keeps one request's body bytes counted in its [`BodyBudget`]; they are
/// given back when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct BodyHold(Arc<Held>);

#[derive(Debug)]
struct Held {
    shared: Arc<Shared>,
    bytes: AtomicU64,
}

impl Held {
    /// Counts `n` more bytes, unless that would pass the host-wide cap.
    fn reserve(&self, n: u64) -> Result<(), BodyError> {
        let max = self.shared.max;
        self.shared
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(n).filter(|&next| next <= max)
            })
            .map_err(|_| BodyError::BufferFull { limit: max })?;
        self.bytes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = *self.bytes.get_mut();
        self.shared.buffered.fetch_sub(n, Ordering::AcqRel);
    }
}

/// A request body under a [`BodyBudget`]: fails with [`BodyError::Timeout`]
/// when the whole body has not arrived in time, and with
/// [`BodyError::BufferFull`] when holding it would pass the host-wide cap.
/// [`collect_limited`] turns those errors back into themselves.
#[derive(Debug)]
pub struct GuardedBody<B> {
    inner: B,
    /// Started at the first read, so time spent before the handler asks for
    /// the body (queueing for an admin slot) is not charged to the client.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    hold: BodyHold,
    failed: bool,
}

impl<B> http_body::Body for GuardedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            this.failed = true;
            return Poll::Ready(Some(Err(BodyError::Timeout { limit: timeout })));
        }
        let frame = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => {
                this.failed = true;
                return Poll::Ready(Some(Err(BodyError::Read(e.to_string()))));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref()
            && let Err(e) = this.hold.0.reserve(data.len() as u64)
        {
            this.failed = true;
            return Poll::Ready(Some(Err(e)));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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
/// At most `limits.max_connections` connections are open at once: the next
/// is accepted only when one closes (clients wait in the kernel's backlog).
/// A connection with no request in flight for `limits.idle_timeout` is shut
/// down gracefully (HTTP/2 gets a GOAWAY).
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
    // One permit per open connection; all permits back means all closed.
    let max_connections = limits.max_connections.max(1);
    let open = Arc::new(Semaphore::new(max_connections as usize));
    let (stopping, stop) = watch::channel(false);
    let mut connections = 0u64;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
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
        let load = Arc::new(Load::new());
        let conn = builder
            .serve_connection(
                TokioIo::new(ChunkedReads(stream)),
                PeerService {
                    inner: service.clone(),
                    peer,
                    stop: stop.clone(),
                    load: load.clone(),
                },
            )
            .into_owned();
        tokio::spawn(watch_connection(
            conn,
            peer,
            stop.clone(),
            load,
            limits.idle_timeout,
            permit,
        ));
    }
    drop(listener);
    let _ = stopping.send(true);
    let in_flight = max_connections as usize - open.available_permits();
    tracing::info!(in_flight_connections = in_flight, "draining");
    let drained = tokio::time::timeout(limits.drain_timeout, open.acquire_many(max_connections))
        .await
        .is_ok();
    ServeReport {
        connections,
        drained,
    }
}

/// Drives one connection to its end, shutting it down gracefully when the
/// server stops or when it has had no request in flight for `idle_timeout`.
/// Holds the connection's permit until the connection is gone.
async fn watch_connection<S>(
    conn: auto::Connection<'static, TokioIo<ChunkedReads>, PeerService<S>, TokioExecutor>,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
    load: Arc<Load>,
    idle_timeout: Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
) where
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            _ = stop.wait_for(|stopping| *stopping), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle_for(&load, idle_timeout), if !closing => {
                tracing::debug!(%peer, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// How busy a connection is: requests in flight (until their response body
/// ends) and when that count last changed.
///
/// Plain atomics, read by [`idle_for`] only when its timer fires: a request
/// wakes nothing and arms no timer (a `watch` channel here woke the
/// connection's task twice per request and re-armed its idle timer each time
/// the count went back to zero).
#[derive(Debug)]
struct Load {
    in_flight: AtomicUsize,
    /// When `in_flight` last changed, in nanoseconds after `origin`.
    since: AtomicU64,
    origin: Instant,
}

impl Load {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            since: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.since.store(nanos, Ordering::Release);
    }

    fn since(&self) -> Instant {
        self.origin + Duration::from_nanos(self.since.load(Ordering::Acquire))
    }
}

/// Resolves once the connection has had no request in flight for `timeout`.
/// One timer at a time: it sleeps until the earliest moment the connection
/// could be idle long enough, then looks again.
async fn idle_for(load: &Load, timeout: Duration) {
    loop {
        let now = Instant::now();
        let deadline = if load.in_flight.load(Ordering::Acquire) == 0 {
            let deadline = load.since() + timeout;
            // Checked after reading `since`: a request that began in
            // between is seen here.
            if deadline <= now && load.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            deadline.max(now + Duration::from_millis(1))
        } else {
            now + timeout
        };
        tokio::time::sleep_until(deadline).await;
    }
}

/// Counts one request in flight on its connection until dropped (which
/// happens when its response body ends or is dropped).
struct InFlight(Arc<Load>);

impl InFlight {
    fn begin(load: &Arc<Load>) -> Self {
        load.in_flight.fetch_add(1, Ordering::AcqRel);
        load.touch();
        Self(load.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The most bytes one read of a connection hands to hyper.
///
/// hyper's `max_buf_size` is checked only between reads: a head still
/// incomplete once its read buffer holds that many bytes is refused (431),
/// but one read may carry the buffer past it and complete a larger head (a
/// 17,005-byte head was once served under a 16,384-byte limit). With every
/// read at most `READ_CHUNK` bytes and hyper's buffer limit set
/// `READ_CHUNK - 1` below `max_header_bytes` ([`hyper_buf_limit`]), no head
/// over `max_header_bytes` is ever served, to the byte.
pub const READ_CHUNK: usize = 4096;

/// hyper's read buffer limit for a head limit: the buffer is refused once it
/// holds this many bytes without a complete head, so the read that completes
/// a head starts below it and adds at most [`READ_CHUNK`] bytes, ending at or
/// under `max_header_bytes`. Heads up to `max_header_bytes - READ_CHUNK` are
/// always served; larger ones up to the limit are served when they arrive
/// in few enough reads.
///
/// ```
/// use corral_server::http::{hyper_buf_limit, READ_CHUNK};
/// let limit = 16384;
/// assert_eq!(hyper_buf_limit(limit) - 1 + READ_CHUNK, limit);
/// ```
pub fn hyper_buf_limit(max_header_bytes: usize) -> usize {
    // hyper asserts at least 8192; config validation keeps the head limit
    // at least 8192 + READ_CHUNK so this never rounds up past the limit.
    (max_header_bytes + 1).saturating_sub(READ_CHUNK).max(8192)
}

/// A TCP stream whose reads hand hyper at most [`READ_CHUNK`] bytes each,
/// which makes hyper's head limit exact (see [`READ_CHUNK`]). Writes pass
/// through unchanged.
#[derive(Debug)]
struct ChunkedReads(tokio::net::TcpStream);

impl tokio::io::AsyncRead for ChunkedReads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(READ_CHUNK);
        // Zeroing at most 4 KiB per read keeps this free of `unsafe`.
        let mut part = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(n));
        std::task::ready!(Pin::new(&mut self.0).poll_read(cx, &mut part))?;
        let read = part.filled().len();
        buf.advance(read);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for ChunkedReads {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn builder(limits: &HttpLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .keep_alive(limits.keep_alive)
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(hyper_buf_limit(limits.max_header_bytes))
        .max_headers(limits.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
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
    stop: watch::Receiver<bool>,
    /// The connection's load, for its idle timeout.
    load: Arc<Load>,
}

impl<S> hyper::service::Service<http::Request<Incoming>> for PeerService<S>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;
    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(Peer(self.peer));
        let in_flight = InFlight::begin(&self.load);
        let response = self.inner.call(req);
        let mut stop = self.stop.clone();
        Box::pin(async move {
            let response = response.await?;
            let stream = corral_limits::is_event_stream(response.headers());
            Ok(response.map(|inner| {
                let stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = stream.then(|| {
                    Box::pin(async move {
                        let _ = stop.wait_for(|stopping| *stopping).await;
                    }) as Pin<Box<dyn Future<Output = ()> + Send>>
                });
                Tracked {
                    inner,
                    stop,
                    _in_flight: in_flight,
                }
                .boxed_unsync()
            }))
        })
    }
}

/// A response body that keeps its request counted in flight until it ends,
/// and, for an event stream, ends (cleanly, as if the guest closed it) when
/// shutdown begins.
struct Tracked {
    inner: Body,
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if let Some(stop) = self.stop.as_mut()
            && stop.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
        // A server that answers (431) before the whole request is in and
        // closes may reset the rest of the write: what it answered is what
        // the callers check, so read it either way.
        let _ = s.write_all(request).await;
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

    /// The fuzzer's finding: a head 621 bytes over the limit, sent in one
    /// write, was served because one read carried hyper's buffer past its
    /// limit. Now every head over the limit is refused, and every head at
    /// or under `max_header_bytes - READ_CHUNK` is served, whole or trickled.
    #[tokio::test]
    async fn head_limit_holds_to_the_byte() {
        let l = limits();
        let max = l.max_header_bytes;
        let (addr, _tx, _h, done) = start(l, Duration::ZERO).await;
        let found = include_bytes!("../../../fuzz/regressions/http_head/head-over-limit-accepted");
        let r = raw(addr, found).await;
        assert!(r.starts_with("HTTP/1.1 431 "), "{}", &r[..r.len().min(80)]);
        let head = |len: usize| {
            let fixed = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: \r\n\r\n".len();
            let pad = "a".repeat(len - fixed);
            let h =
                format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: {pad}\r\n\r\n");
            assert_eq!(h.len(), len);
            h
        };
        for len in [max + 1, max + 2, max + READ_CHUNK, 2 * max] {
            let r = raw(addr, head(len).as_bytes()).await;
            assert!(
                r.starts_with("HTTP/1.1 431 "),
                "{len}: {}",
                &r[..r.len().min(80)]
            );
        }
        assert_eq!(done.load(Ordering::SeqCst), 0);
        for len in [max - READ_CHUNK, max - READ_CHUNK - 1, 1000] {
            let r = raw(addr, head(len).as_bytes()).await;
            assert!(
                r.starts_with("HTTP/1.1 200 "),
                "{len}: {}",
                &r[..r.len().min(80)]
            );
        }
        // The same largest always-served head, trickled in 100-byte writes.
        let mut s = TcpStream::connect(addr).await.unwrap();
        for part in head(max - READ_CHUNK).as_bytes().chunks(100) {
            s.write_all(part).await.unwrap();
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(
            out.starts_with(b"HTTP/1.1 200 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(done.load(Ordering::SeqCst), 4);
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
        assert_eq!(v["error"], "payload_too_large");
        assert_eq!(v["limit"], 5);
    }
    /// A body that sends one byte every `every`, forever.
    fn trickle(
        every: Duration,
        sent: Arc<AtomicUsize>,
    ) -> http_body_util::StreamBody<
        impl futures_util::Stream<Item = Result<http_body::Frame<Bytes>, Infallible>> + Unpin,
    > {
        let stream = futures_util::stream::unfold(sent, move |sent| async move {
            tokio::time::sleep(every).await;
            sent.fetch_add(1, Ordering::SeqCst);
            Some((Ok(http_body::Frame::data(Bytes::from_static(b"x"))), sent))
        });
        http_body_util::StreamBody::new(Box::pin(stream))
    }

    #[tokio::test]
    async fn a_trickling_body_is_cut_at_the_whole_body_deadline() {
        let budget = BodyBudget::new(1 << 20, Duration::from_millis(600));
        let sent = Arc::new(AtomicUsize::new(0));
        // Each byte arrives well within 600 ms of the previous one: only a
        // deadline on the whole body can cut this.
        let (body, hold) = budget.guard(trickle(Duration::from_millis(100), sent.clone()));
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            collect_limited(&http::HeaderMap::new(), body, 1 << 20),
        )
        .await
        .expect("the body deadline never fired");
        assert!(
            matches!(read, Err(BodyError::Timeout { limit }) if limit == Duration::from_millis(600)),
            "{read:?}"
        );
        let bytes = sent.load(Ordering::SeqCst);
        assert!((1..=6).contains(&bytes), "{bytes} bytes read");
        // What was read stays counted while the request holds it, then is given back.
        assert_eq!(budget.buffered(), bytes as u64);
        drop(hold);
        assert_eq!(budget.buffered(), 0);
        let r = BodyError::Timeout {
            limit: Duration::from_secs(1),
        }
        .to_response();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "body_timeout");
    }

    #[tokio::test]
    async fn buffered_bytes_are_capped_host_wide_and_given_back() {
        let budget = BodyBudget::new(10, Duration::from_secs(30));
        let h = http::HeaderMap::new();
        let (a, hold_a) = budget.guard(Full::new(Bytes::from_static(b"123456")));
        assert_eq!(collect_limited(&h, a, 100).await.unwrap().len(), 6);
        let (b, hold_b) = budget.guard(Full::new(Bytes::from_static(b"12345")));
        let full = collect_limited(&h, b, 100).await;
        assert!(
            matches!(full, Err(BodyError::BufferFull { limit: 10 })),
            "{full:?}"
        );
        // The refused body holds nothing; the first still holds its 6 bytes.
        drop(hold_b);
        assert_eq!(budget.buffered(), 6);
        let extra = hold_a.clone();
        drop(hold_a);
        assert_eq!(budget.buffered(), 6, "a clone keeps the bytes counted");
        drop(extra);
        assert_eq!(budget.buffered(), 0);
        let (c, _hold_c) = budget.guard(Full::new(Bytes::from_static(b"0123456789")));
        assert_eq!(collect_limited(&h, c, 100).await.unwrap().len(), 10);
        let r = BodyError::BufferFull { limit: 10 }.to_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "body_buffer_full");
    }

    /// Reads one HTTP/1.1 response head from `s` (up to the blank line).
    async fn read_head(s: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    const KEEP_ALIVE_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn connections_over_the_cap_wait_for_one_to_close() {
        let mut l = limits();
        l.max_connections = 2;
        l.header_read_timeout = Duration::from_secs(30);
        let (addr, _tx, _h, done) = start(l, Duration::ZERO).await;
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(KEEP_ALIVE_GET).await.unwrap();
            assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
            open.push(s);
        }
        // The kernel completes the handshake, but the server does not take
        // the connection while two are open.
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(KEEP_ALIVE_GET).await.unwrap();
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
        assert!(early.is_err(), "served over the connection cap: {early:?}");
        assert_eq!(done.load(Ordering::SeqCst), 2);
        drop(open.pop());
        let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut third))
            .await
            .expect("not served after a connection closed");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn idle_connections_close_after_the_idle_timeout() {
        let mut l = limits();
        // Far longer than the test: only the idle timeout can close these.
        l.header_read_timeout = Duration::from_secs(30);
        l.idle_timeout = Duration::from_millis(300);
        let (addr, _tx, _h, _) = start(l, Duration::ZERO).await;

        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(KEEP_ALIVE_GET).await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "HTTP/1.1 keep-alive connection still open");

        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        let req = http::Request::get("http://x/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(send.send_request(req).await.unwrap().status(), 200);
        // The server sends GOAWAY and closes; the client connection ends.
        let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
        assert!(ended.is_ok(), "HTTP/2 connection still open");
    }

    #[tokio::test]
    async fn a_request_in_flight_is_not_idle() {
        let mut l = limits();
        l.header_read_timeout = Duration::from_secs(30);
        l.idle_timeout = Duration::from_millis(200);
        // The handler takes longer than the idle timeout.
        let (addr, _tx, _h, _) = start(l, Duration::from_millis(800)).await;
        let r = raw(addr, KEEP_ALIVE_GET).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        // Shutting the connection down mid-request would have turned
        // keep-alive off for this response.
        assert!(!r.contains("connection: close"), "{r}");
    }

    /// Sends `n` requests at once on one HTTP/2 connection to a handler that
    /// takes 300 ms, and returns how many ran at the same time at most.
    async fn h2_peak_concurrency(max_streams: u32, n: usize) -> usize {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n2, p2) = (now.clone(), peak.clone());
        let svc = hyper::service::service_fn(move |_req: http::Request<Incoming>| {
            let (now, peak) = (n2.clone(), p2.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Infallible>(Response::new(full("ok")))
            }
        });
        let mut l = limits();
        l.h2_max_concurrent_streams = max_streams;
        tokio::spawn(async move { serve(listener, svc, &l, std::future::pending::<()>()).await });
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        // One request first, so the client has the server's SETTINGS and
        // queues streams over the limit instead of having them refused.
        let req = http::Request::get("http://x/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(send.clone().send_request(req).await.unwrap().status(), 200);
        let requests = (0..n).map(|_| {
            let mut send = send.clone();
            tokio::spawn(async move {
                let req = http::Request::get("http://x/")
                    .body(http_body_util::Empty::<Bytes>::new())
                    .unwrap();
                send.send_request(req).await.unwrap().status()
            })
        });
        for r in requests.collect::<Vec<_>>() {
            assert_eq!(r.await.unwrap(), StatusCode::OK);
        }
        peak.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn h2_concurrent_streams_come_from_config() {
        assert_eq!(h2_peak_concurrency(1, 3).await, 1);
        assert_eq!(h2_peak_concurrency(100, 3).await, 3);
    }
}
