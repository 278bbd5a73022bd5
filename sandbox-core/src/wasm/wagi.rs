//! The WAGI handler ABI: an HTTP request becomes CGI environment variables
//! plus the body on stdin; the guest's stdout is a CGI response.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use parking_lot::Mutex;
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::body::TrySend;
use crate::response::{GuestHeaders, guest_status};
use crate::{Body, BodySender, LogWriter, SandboxError, TenantLog};

/// The CGI variables for `req` (and nothing else: no host environment).
///
/// Names other than `HTTP_*` are static and values are borrowed from the
/// request where they can be: the WASI builder copies each pair once, so a
/// request's variables are not built twice.
pub(crate) fn cgi_env(req: &Request<Bytes>) -> Vec<(Cow<'static, str>, Cow<'_, str>)> {
    let mut env: Vec<(Cow<'static, str>, Cow<'_, str>)> =
        Vec::with_capacity(16 + req.headers().len());
    let uri = req.uri();
    let mut set = |k: &'static str, v| env.push((Cow::Borrowed(k), v));
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set("REQUEST_METHOD", req.method().as_str().into());
    set("SCRIPT_NAME", "".into());
    set("PATH_INFO", uri.path().into());
    set("QUERY_STRING", uri.query().unwrap_or("").into());
    set("CONTENT_LENGTH", req.body().len().to_string().into());
    let ct = req.headers().get(http::header::CONTENT_TYPE);
    set(
        "CONTENT_TYPE",
        ct.map_or(Cow::Borrowed(""), |ct| {
            String::from_utf8_lossy(ct.as_bytes())
        }),
    );
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let (name, port) = match host.and_then(|h| h.parse::<http::uri::Authority>().ok()) {
        Some(a) => (
            a.host().to_owned(),
            a.port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                }),
        ),
        None => ("localhost".to_owned(), 80),
    };
    set("SERVER_NAME", name.into());
    set(
        "SERVER_PORT",
        match port {
            80 => "80".into(),
            443 => "443".into(),
            p => p.to_string().into(),
        },
    );
    set(
        "SERVER_PROTOCOL",
        match req.version() {
            http::Version::HTTP_09 => "HTTP/0.9".into(),
            http::Version::HTTP_10 => "HTTP/1.0".into(),
            http::Version::HTTP_11 => "HTTP/1.1".into(),
            http::Version::HTTP_2 => "HTTP/2.0".into(),
            http::Version::HTTP_3 => "HTTP/3.0".into(),
            v => format!("{v:?}").into(),
        },
    );
    set("SERVER_SOFTWARE", "corral".into());
    if let Some(addr) = req.extensions().get::<SocketAddr>() {
        set("REMOTE_ADDR", addr.ip().to_string().into());
        set("REMOTE_PORT", addr.port().to_string().into());
    }
    for (name, value) in req.headers() {
        if name == http::header::CONTENT_TYPE || name == http::header::CONTENT_LENGTH {
            continue;
        }
        let name = name.as_str();
        let mut key = String::with_capacity(5 + name.len());
        key.push_str("HTTP_");
        key.extend(name.chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        let value = String::from_utf8_lossy(value.as_bytes());
        // Repeated headers (and names that differ only in `-` against `_`)
        // are joined the way CGI servers do.
        if let Some(existing) = env.iter_mut().find(|(k, _)| *k == key) {
            let joined = existing.1.to_mut();
            joined.push_str(", ");
            joined.push_str(&value);
        } else {
            env.push((Cow::Owned(key), value));
        }
    }
    env
}

/// Parses a CGI response: header lines (`Status:`, `Content-Type:`,
/// `Location:`, others), a blank line, then the body. LF or CRLF.
///
/// The headers go through [`GuestHeaders`]: capped in count and bytes, and
/// without the framing headers the host owns.
pub(crate) fn parse_cgi(out: Bytes) -> Result<Response<Bytes>, SandboxError> {
    let bad = |reason: String| SandboxError::BadResponse { reason };
    let (head_end, body_start) = find_blank_line(&out).ok_or_else(|| {
        bad(if out.is_empty() {
            "no output".into()
        } else {
            "no blank line after the headers".into()
        })
    })?;
    let head =
        std::str::from_utf8(&out[..head_end]).map_err(|_| bad("headers are not UTF-8".into()))?;
    let mut headers = GuestHeaders::new();
    let mut status = None;
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header line without a colon: {:?}", clip(line))))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            // Not a header, but counted like one: a flood of them stops too.
            headers.account(name.len(), value.len())?;
            let code = value.split_whitespace().next().unwrap_or("");
            let code = code
                .parse::<u16>()
                .map_err(|_| bad(format!("bad Status: {:?}", clip(value))))?;
            status = Some(guest_status(code)?);
            continue;
        }
        headers.append(name.trim().as_bytes(), value.as_bytes())?;
    }
    let has_location = headers.contains("location");
    let has_content_type = headers.contains("content-type");
    if status.is_none() && !has_location && !has_content_type {
        return Err(bad("no Content-Type, Location or Status header".to_owned()));
    }
    let mut resp = Response::new(Bytes::new());
    *resp.headers_mut() = headers.into_map();
    *resp.status_mut() = status.unwrap_or(if has_location {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    *resp.body_mut() = out.slice(body_start..);
    Ok(resp)
}

/// At most 80 characters of `s`, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// `(end of headers, start of body)` of the first blank line.
fn find_blank_line(out: &[u8]) -> Option<(usize, usize)> {
    if out.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    if out.starts_with(b"\n") {
        return Some((0, 1));
    }
    let mut i = 0;
    while i < out.len() {
        if out[i] == b'\n' {
            if out.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if out.get(i + 1) == Some(&b'\r') && out.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Guest stdout, capped: a write that would pass `cap` is refused, flags the
/// overflow and traps the guest, so the host never holds more than `cap`.
///
/// The output is buffered until the guest exits (a whole CGI response), unless
/// its head, once complete, declares `Content-Type: text/event-stream`: then
/// the response goes out at once through `head`, and every later write is a
/// chunk of its body. A write then waits (in [`Pollable::ready`]) while the
/// body's buffer is full, so a slow client slows the guest down.
#[derive(Debug, Clone)]
pub(crate) struct CappedOutput {
    inner: Arc<CappedInner>,
}

#[derive(Debug)]
struct CappedInner {
    cap: usize,
    state: Mutex<OutputState>,
    overflowed: AtomicBool,
}

#[derive(Debug)]
struct OutputState {
    buf: BytesMut,
    written: usize,
    /// How much of `buf` was searched for the end of the head: each write
    /// searches only what it added, so tiny writes cost no more than big ones.
    scanned: usize,
    mode: Mode,
}

/// What the output turned out to be.
#[derive(Debug)]
enum Mode {
    /// The head is not complete yet; the response goes to the sender if it
    /// is an event stream.
    Undecided(Option<oneshot::Sender<Response<Body>>>),
    /// A whole response, parsed when the guest exits.
    Buffered,
    /// An event stream whose head is out: writes are chunks of its body.
    Streaming(BodySender),
}

/// Chunks an event stream's body buffers before the guest's writes wait.
const STREAM_BUFFER: usize = 8;
/// Output with no end of head within this many bytes is not looked at again
/// (and is refused as a CGI response when the guest exits, if it never has one).
const MAX_STREAM_HEAD: usize = 64 << 10;

/// Whether `buf` holds a blank line (the end of a CGI head), searching only
/// past `scanned` (less the two bytes a blank line could straddle).
fn head_complete(buf: &[u8], scanned: usize) -> bool {
    if buf.starts_with(b"\n") || buf.starts_with(b"\r\n") {
        return true;
    }
    let tail = &buf[scanned.saturating_sub(2)..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

impl CappedOutput {
    pub(crate) fn new(cap: u64, head: oneshot::Sender<Response<Body>>) -> Self {
        Self {
            inner: Arc::new(CappedInner {
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
                state: Mutex::new(OutputState {
                    buf: BytesMut::new(),
                    written: 0,
                    scanned: 0,
                    mode: Mode::Undecided(Some(head)),
                }),
                overflowed: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.inner.overflowed.load(Ordering::Acquire)
    }

    /// The buffered output (empty once the output is streamed).
    pub(crate) fn take(&self) -> Bytes {
        std::mem::take(&mut self.inner.state.lock().buf).freeze()
    }

    /// The event stream's sender, if the output became one. Taking it (and
    /// dropping it) is what ends the body once the guest is done.
    pub(crate) fn take_stream(&self) -> Option<BodySender> {
        let mut state = self.inner.state.lock();
        match std::mem::replace(&mut state.mode, Mode::Buffered) {
            Mode::Streaming(tx) => Some(tx),
            other => {
                state.mode = other;
                None
            }
        }
    }

    /// A clone of the event stream's sender, if the output became one.
    pub(crate) fn stream(&self) -> Option<BodySender> {
        match &self.inner.state.lock().mode {
            Mode::Streaming(tx) => Some(tx.clone()),
            _ => None,
        }
    }

    /// Takes `bytes` if they fit under the cap.
    fn push(&self, bytes: Bytes) -> Result<(), StreamError> {
        let mut state = self.inner.state.lock();
        if state.written.saturating_add(bytes.len()) > self.inner.cap {
            self.inner.overflowed.store(true, Ordering::Release);
            return Err(StreamError::trap("guest output exceeded max_output_bytes"));
        }
        state.written += bytes.len();
        match &state.mode {
            Mode::Streaming(tx) => match tx.try_send(bytes) {
                Ok(()) => Ok(()),
                Err(TrySend::Closed) => Err(StreamError::Closed),
                // Only a writer that skipped `ready` gets here.
                Err(TrySend::Full) => Err(StreamError::trap("guest output buffer full")),
            },
            Mode::Buffered => {
                state.buf.extend_from_slice(&bytes);
                Ok(())
            }
            Mode::Undecided(_) => {
                state.buf.extend_from_slice(&bytes);
                decide(&mut state);
                Ok(())
            }
        }
    }
}

/// Once the head is complete: an event stream goes out now, anything else
/// (a malformed head included, refused when the guest exits) is buffered.
fn decide(state: &mut OutputState) {
    let complete = head_complete(&state.buf, state.scanned);
    state.scanned = state.buf.len();
    if !complete && state.buf.len() <= MAX_STREAM_HEAD {
        return;
    }
    let Mode::Undecided(head) = std::mem::replace(&mut state.mode, Mode::Buffered) else {
        return;
    };
    // An event stream's head holds `text/event-stream` (its Content-Type):
    // a head without it is buffered as it is, without a copy and a parse
    // here (the whole response is parsed once, when the guest exits). No
    // blank line: not a response `parse_cgi` would take either.
    let Some((head_end, _)) = find_blank_line(&state.buf) else {
        return;
    };
    if !contains_ignore_ascii_case(&state.buf[..head_end], b"text/event-stream") {
        return;
    }
    let Ok(resp) = parse_cgi(Bytes::copy_from_slice(&state.buf)) else {
        return;
    };
    if !corral_limits::is_event_stream(resp.headers()) {
        return;
    }
    let (tx, body) = Body::channel(STREAM_BUFFER);
    let (parts, first) = resp.into_parts();
    // The buffer is empty: the first chunk always fits.
    let _ = tx.try_send(first);
    if head
        .and_then(|h| h.send(Response::from_parts(parts, body)).ok())
        .is_some()
    {
        state.buf.clear();
        state.mode = Mode::Streaming(tx);
    }
}

/// Whether `needle` (ASCII) occurs in `hay`, ignoring ASCII case.
fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {
        // Streaming: wait for room in the body's buffer (or its reader to go).
        if let Some(tx) = self.stream() {
            tx.room().await;
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(bytes)
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        match self.stream() {
            Some(tx) if tx.is_closed() => Err(StreamError::Closed),
            Some(tx) if !tx.has_room() => Ok(0),
            // Never 0 otherwise (`ready` returns at once, so a blocking write
            // would spin): an overlong write is refused in `write` instead.
            _ => Ok(64 << 10),
        }
    }
}

impl AsyncWrite for CappedOutput {
    // Only WASI preview 2/3 guests write through this; preview-1 modules
    // (WAGI) use the `OutputStream` above, which waits for room.
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(match self.push(Bytes::copy_from_slice(buf)) {
            Ok(()) => Ok(buf.len()),
            Err(e) => Err(io::Error::other(e.to_string())),
        })
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Guest stderr, split into lines for the tenant's bounded log through the
/// request's [`LogWriter`]. A partial line is kept up to `cap` bytes and
/// flushed at the end of the request. Once the request has written its share
/// of the log, the rest of its stderr is only scanned for newlines to count
/// the dropped lines: a guest writing megabytes of `\n` costs the host one
/// pass over the bytes, not an allocation per line.
#[derive(Debug, Clone)]
pub(crate) struct LogOutput {
    writer: Arc<LogWriter>,
    partial: Arc<Mutex<Vec<u8>>>,
    cap: usize,
}

impl LogOutput {
    pub(crate) fn new(log: &Arc<TenantLog>, cap: usize) -> Self {
        Self {
            writer: Arc::new(log.writer()),
            partial: Arc::default(),
            cap: cap.min(log.max_line_len()),
        }
    }

    fn push(&self, mut bytes: &[u8]) {
        let mut partial = self.partial.lock();
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            if !self.writer.accepts() {
                let lines = bytes[nl..].iter().filter(|&&b| b == b'\n').count();
                self.writer.refuse(lines as u64);
                partial.clear();
                let last = nl + bytes[nl..].iter().rposition(|&b| b == b'\n').unwrap_or(0);
                bytes = &bytes[last + 1..];
                break;
            }
            let room = self.cap.saturating_sub(partial.len());
            partial.extend_from_slice(&bytes[..nl.min(room)]);
            self.emit(&mut partial);
            bytes = &bytes[nl + 1..];
        }
        let room = self.cap.saturating_sub(partial.len());
        partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn emit(&self, partial: &mut Vec<u8>) {
        let line = String::from_utf8_lossy(partial);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        self.writer.push(line);
        partial.clear();
    }

    /// Writes out a last line that had no newline.
    pub(crate) fn finish(&self) {
        let mut partial = self.partial.lock();
        if !partial.is_empty() {
            self.emit(&mut partial);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for LogOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lf_and_crlf_responses() {
        let r = parse_cgi(Bytes::from_static(
            b"Status: 201 Created\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\nhi\r\n",
        ))
        .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.body().as_ref(), b"hi\r\n");

        let r = parse_cgi(Bytes::from_static(b"Location: /next\n\n")).unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()["location"], "/next");
        assert_eq!(r.body().len(), 0);

        let r = parse_cgi(Bytes::from_static(b"content-type: a/b\n\nbody\n\nmore")).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.body().as_ref(), b"body\n\nmore");
    }

    #[test]
    fn malformed_output_is_bad_response() {
        for out in [
            &b""[..],
            b"Content-Type: text/plain\nno blank line",
            b"not a header\n\nbody",
            b"Status: abc\n\n",
            b"Status: 99\n\n",
            b"X-Only: 1\n\nbody",
            b"Bad Name: 1\nContent-Type: a/b\n\n",
            b"Content-Type: \xff\n\n",
        ] {
            let err = parse_cgi(Bytes::copy_from_slice(out)).unwrap_err();
            assert!(
                matches!(err, SandboxError::BadResponse { .. }),
                "{out:?}: {err:?}"
            );
        }
    }

    #[test]
    fn cgi_env_holds_the_request_and_nothing_else() {
        let mut req = Request::builder()
            .method("POST")
            .uri("/a/b?x=1&y=2")
            .header("host", "app.example.com:8080")
            .header("content-type", "application/json")
            .header("x-trace-id", "abc")
            .header("accept", "a")
            .header("accept", "b")
            .header("x-dash", "1")
            .header("x_dash", "2")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        req.extensions_mut()
            .insert("10.0.0.7:5555".parse::<SocketAddr>().unwrap());
        let env = cgi_env(&req);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_ref());
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("QUERY_STRING"), Some("x=1&y=2"));
        assert_eq!(get("CONTENT_TYPE"), Some("application/json"));
        assert_eq!(get("CONTENT_LENGTH"), Some("2"));
        assert_eq!(get("SERVER_NAME"), Some("app.example.com"));
        assert_eq!(get("SERVER_PORT"), Some("8080"));
        assert_eq!(get("SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(get("GATEWAY_INTERFACE"), Some("CGI/1.1"));
        assert_eq!(get("REMOTE_ADDR"), Some("10.0.0.7"));
        assert_eq!(get("HTTP_X_TRACE_ID"), Some("abc"));
        assert_eq!(get("HTTP_ACCEPT"), Some("a, b"));
        // Two names that one CGI variable stands for are joined, never two
        // variables of one name.
        assert_eq!(get("HTTP_X_DASH"), Some("1, 2"));
        assert_eq!(get("HTTP_CONTENT_TYPE"), None);
        assert_eq!(get("PATH"), None);
        assert_eq!(env.len(), 17);
    }

    fn push(out: &CappedOutput, bytes: &'static [u8]) -> bool {
        out.push(Bytes::from_static(bytes)).is_ok()
    }

    #[test]
    fn capped_output_refuses_past_the_cap() {
        let (head, _) = oneshot::channel();
        let out = CappedOutput::new(10, head);
        assert!(push(&out, b"12345"));
        assert!(push(&out, b"67890"));
        assert!(!out.overflowed());
        assert!(!push(&out, b"x"));
        assert!(out.overflowed());
        assert_eq!(out.take().as_ref(), b"1234567890");
    }

    #[tokio::test]
    async fn an_event_stream_head_goes_out_once_complete_and_writes_follow() {
        let (head, mut rx) = oneshot::channel();
        let out = CappedOutput::new(60, head);
        assert!(push(&out, b"Content-Type: text/event-stream\n"));
        assert!(rx.try_recv().is_err(), "the head is not complete yet");
        assert!(push(&out, b"\ndata: 1\n\n"));
        let resp = rx.try_recv().expect("the head is out");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert!(out.take().is_empty(), "nothing is buffered once streaming");
        assert!(push(&out, b"data: 2\n\n"));
        // 51 of 60 bytes so far: the cap counts the streamed bytes too.
        assert!(!push(&out, b"data: three\n\n"));
        assert!(out.overflowed());
        drop(out.take_stream());
        drop(out);
        let body = resp.into_body().to_bytes().await.unwrap();
        assert_eq!(&body[..], b"data: 1\n\ndata: 2\n\n");
    }

    #[test]
    fn the_end_of_a_head_is_found_across_writes() {
        for writes in [
            &[&b"Content-Type: text/event-stream\n"[..], b"\n"][..],
            &[b"Content-Type: text/event-stream\r\n", b"\r", b"\n"],
            &[
                b"Content-Type: text/event-stream",
                b"\n",
                b"\n",
                b"data: 1\n\n",
            ],
        ] {
            let (head, mut rx) = oneshot::channel();
            let out = CappedOutput::new(1024, head);
            for w in writes {
                assert!(out.push(Bytes::copy_from_slice(w)).is_ok());
            }
            assert!(rx.try_recv().is_ok(), "{writes:?}");
        }
        // A head that never ends is not searched past MAX_STREAM_HEAD.
        let (head, mut rx) = oneshot::channel();
        let out = CappedOutput::new(1 << 20, head);
        for _ in 0..(MAX_STREAM_HEAD / 1024 + 1) {
            assert!(out.push(Bytes::from(vec![b'x'; 1024])).is_ok());
        }
        assert!(rx.try_recv().is_err());
        assert!(push(&out, b"\n\n"));
        assert!(rx.try_recv().is_err(), "decided: buffered");
    }

    #[test]
    fn any_other_head_is_buffered_to_the_end() {
        let (head, mut rx) = oneshot::channel();
        let out = CappedOutput::new(1024, head);
        assert!(push(&out, b"Content-Type: text/plain\n\nhello"));
        assert!(push(&out, b" world"));
        assert!(rx.try_recv().is_err());
        assert!(out.stream().is_none());
        let resp = parse_cgi(out.take()).unwrap();
        assert_eq!(&resp.body()[..], b"hello world");
    }

    #[test]
    fn only_the_head_says_whether_it_is_an_event_stream() {
        // In the body only: buffered.
        let (head, mut rx) = oneshot::channel();
        let out = CappedOutput::new(1024, head);
        assert!(push(&out, b"Content-Type: text/plain\n\ntext/event-stream"));
        assert!(rx.try_recv().is_err());
        assert!(out.stream().is_none());
        // Any case, with parameters: streamed.
        let (head, mut rx) = oneshot::channel();
        let out = CappedOutput::new(1024, head);
        assert!(push(
            &out,
            b"content-type: TEXT/Event-Stream; charset=utf-8\r\n\r\n"
        ));
        assert!(rx.try_recv().is_ok());
        // Named in another header only: buffered, as the parse decides.
        let (head, mut rx) = oneshot::channel();
        let out = CappedOutput::new(1024, head);
        assert!(push(
            &out,
            b"Content-Type: text/plain\nX-Not: text/event-stream\n\n"
        ));
        assert!(rx.try_recv().is_err());
        assert!(out.stream().is_none());
        assert!(contains_ignore_ascii_case(
            b"a TEXT/EVENT-STREAM",
            b"text/event-stream"
        ));
        assert!(!contains_ignore_ascii_case(
            b"text/event",
            b"text/event-stream"
        ));
    }

    #[test]
    fn stderr_is_split_into_log_lines() {
        let log = Arc::new(TenantLog::new(1024));
        let out = LogOutput::new(&log, 8);
        out.push(b"one\r\ntw");
        out.push(b"o\nthree-is-long");
        out.finish();
        assert_eq!(log.lines(), vec!["one", "two", "three-is"]);
    }
}
