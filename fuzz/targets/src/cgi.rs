//! `cgi_response`: a guest's stdout through the WAGI parser, whole and
//! written in random splits.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use corral::Body;
use corral::wasm::fuzzing::{CgiStdout, parse_cgi_response};
use http_body::Body as _;

/// Output with no end of head within this many bytes is buffered, not
/// streamed (mirrors `wagi::MAX_STREAM_HEAD`).
const MAX_STREAM_HEAD: usize = 64 << 10;

/// Where the body starts: just past the first blank line (LF or CRLF).
fn body_start(out: &[u8]) -> Option<usize> {
    if out.starts_with(b"\r\n") {
        return Some(2);
    }
    if out.starts_with(b"\n") {
        return Some(1);
    }
    (0..out.len()).find_map(|i| {
        if out[i] != b'\n' {
            None
        } else if out.get(i + 1) == Some(&b'\n') {
            Some(i + 2)
        } else if out.get(i + 1..i + 3) == Some(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// Whether `out` parses as a CGI response declaring an event stream.
fn is_event_stream(out: &[u8]) -> bool {
    parse_cgi_response(out).is_ok_and(|r| corral_limits::is_event_stream(r.headers()))
}

/// Reads what the body has ready without blocking; true once it ended.
fn drain(body: &mut Pin<Box<Body>>, into: &mut Vec<u8>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    into.extend_from_slice(&data);
                }
            }
            Poll::Ready(Some(Err(e))) => panic!("the event stream failed: {e}"),
            Poll::Ready(None) => return true,
            Poll::Pending => return false,
        }
    }
}

/// The write sizes and output cap the first byte of an input selects.
struct Plan {
    cap: u64,
    seed: u32,
    max_write: usize,
}

impl Plan {
    fn new(control: u8, len: usize) -> Self {
        let cap = match control & 3 {
            0 => u64::MAX,
            1 => len as u64,
            2 => (len / 2) as u64,
            _ => 64,
        };
        let max_write = [1, 3, 16, 4096][usize::from(control >> 2 & 3)];
        Self {
            cap,
            seed: u32::from(control >> 4)
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(len as u32),
            max_write,
        }
    }

    /// Splits `out` into writes of 1..=max_write bytes (xorshift sizes).
    fn writes<'a>(&self, out: &'a [u8]) -> Vec<&'a [u8]> {
        let mut x = self.seed | 1;
        let mut rest = out;
        let mut v = Vec::new();
        while !rest.is_empty() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let n = (x as usize % self.max_write + 1).min(rest.len());
            let (a, b) = rest.split_at(n);
            v.push(a);
            rest = b;
        }
        v
    }
}

/// Byte 0 picks the cap and write sizes; the rest is the guest's stdout.
///
/// Invariants: a parsed response's body is exactly the bytes after the
/// head and it carries no framing header; written in pieces, the output is
/// streamed iff its head, complete at the write that decided, declares an
/// event stream, and what a client receives (head plus streamed chunks, or
/// the buffer) is byte for byte the output written before any trap.
pub fn cgi_response(data: &[u8]) {
    let Some((&control, out)) = data.split_first() else {
        return;
    };
    match parse_cgi_response(out) {
        Ok(resp) => {
            let start = body_start(out).expect("a parsed response has a blank line");
            assert_eq!(&resp.body()[..], &out[start..], "body is not the rest");
            for h in ["content-length", "transfer-encoding", "connection"] {
                assert!(!resp.headers().contains_key(h), "guest set {h}");
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    let plan = Plan::new(control, out.len());
    let mut stdout = CgiStdout::new(plan.cap);
    let mut written = 0usize;
    let mut decided_at = None;
    let mut head = None;
    let mut body: Option<Pin<Box<Body>>> = None;
    let mut streamed = Vec::new();
    for w in plan.writes(out) {
        if stdout.write(w).is_err() {
            // A trap ends the guest: nothing more is written.
            assert!(
                stdout.overflowed() && (written + w.len()) as u64 > plan.cap,
                "write refused under the cap"
            );
            break;
        }
        written += w.len();
        assert!(written as u64 <= plan.cap);
        if decided_at.is_none()
            && (body_start(&out[..written]).is_some() || written > MAX_STREAM_HEAD)
        {
            decided_at = Some(written);
        }
        if head.is_none()
            && let Some(resp) = stdout.streamed_head()
        {
            assert_eq!(
                decided_at,
                Some(written),
                "head out before or after the decision"
            );
            let (parts, b) = resp.into_parts();
            head = Some(parts);
            body = Some(Box::pin(b));
        }
        if let Some(b) = &mut body {
            assert!(!drain(b, &mut streamed), "the stream ended early");
        }
    }
    stdout.finish();
    let prefix = &out[..written];
    let should_stream = decided_at.is_some_and(|at| is_event_stream(&out[..at]));
    match (head, body) {
        (Some(parts), Some(mut b)) => {
            assert!(should_stream, "streamed a response that is no event stream");
            assert!(drain(&mut b, &mut streamed), "the stream did not end");
            let whole = parse_cgi_response(prefix).expect("the streamed head parses");
            assert_eq!(parts.status, whole.status());
            assert_eq!(&parts.headers, whole.headers());
            assert_eq!(&streamed[..], &whole.body()[..], "streamed body differs");
            assert!(stdout.take().is_empty());
        }
        _ => {
            assert!(!should_stream, "an event stream was buffered");
            assert_eq!(&stdout.take()[..], prefix, "buffered output differs");
        }
    }
}
