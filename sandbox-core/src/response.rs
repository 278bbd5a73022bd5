//! Response headers from guest output: every engine builds them here.
//!
//! The host owns HTTP framing. A guest's `content-length`,
//! `transfer-encoding`, `connection`, `keep-alive`, `upgrade`, `te`,
//! `trailer` and `proxy-*` headers are dropped: the server recomputes the
//! length from the body it actually sends, so `content-length: 0` followed by
//! a body cannot put a second, forged response on the wire.
//!
//! Every pair the guest supplies (kept or dropped) counts towards
//! [`MAX_RESPONSE_HEADERS`] and [`MAX_RESPONSE_HEADER_BYTES`] (names plus
//! values). Past either the response is refused with
//! [`SandboxError::BadResponse`] (`bad_response`, 502) *before* anything more
//! is inserted, so a guest can neither make the host build a huge header map
//! nor reach the point where `http::HeaderMap` panics (about 24,000 names).
//! No name or value bytes panic: invalid ones are a `bad_response` too.
//!
//! ```
//! use corral::SandboxError;
//! use corral::response::{guest_headers, MAX_RESPONSE_HEADERS};
//!
//! let headers = guest_headers([
//!     ("Content-Type", "text/plain"),
//!     ("Content-Length", "0"),
//!     ("Transfer-Encoding", "chunked"),
//!     ("X-App", "1"),
//! ])
//! .unwrap();
//! assert_eq!(headers["content-type"], "text/plain");
//! assert!(!headers.contains_key("content-length"), "the host owns framing");
//! assert!(!headers.contains_key("transfer-encoding"));
//! assert_eq!(headers.len(), 2);
//!
//! // One header too many is refused, however many more follow.
//! let flood = (0..30_000).map(|i| (format!("x-{i}"), "v"));
//! let err = guest_headers(flood).unwrap_err();
//! assert!(matches!(err, SandboxError::BadResponse { .. }));
//! assert_eq!(err.code(), "bad_response");
//! assert_eq!(err.status(), 502);
//! # let _ = MAX_RESPONSE_HEADERS;
//! ```

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::SandboxError;

/// Most header fields one guest response may carry (dropped ones included).
pub const MAX_RESPONSE_HEADERS: usize = 256;

/// Most bytes of header names plus values one guest response may carry
/// (dropped ones included).
pub const MAX_RESPONSE_HEADER_BYTES: usize = 65536;

/// Whether `name` is a framing or hop-by-hop header, which the host owns and
/// a guest's response never carries: `content-length`, `transfer-encoding`,
/// `connection`, `keep-alive`, `upgrade`, `te`, `trailer` and any `proxy-*`.
///
/// `name` is compared without regard to ASCII case.
///
/// ```
/// assert!(corral::response::is_framing_header(b"Content-Length"));
/// assert!(corral::response::is_framing_header(b"proxy-authenticate"));
/// assert!(!corral::response::is_framing_header(b"content-type"));
/// ```
pub fn is_framing_header(name: &[u8]) -> bool {
    const FRAMING: &[&[u8]] = &[
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"upgrade",
        b"te",
        b"trailer",
    ];
    FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f))
        || name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"))
}

/// The status of a guest response: a final status, `200..=599`.
///
/// An informational status (`1xx`) is not a response the host can send as
/// the only answer to a request (`101` would announce a protocol switch the
/// host never makes), so it is a `bad_response` like any other invalid one.
///
/// ```
/// use corral::response::guest_status;
/// assert_eq!(guest_status(204).unwrap(), 204);
/// assert_eq!(guest_status(101).unwrap_err().code(), "bad_response");
/// assert!(guest_status(600).is_err());
/// ```
pub fn guest_status(code: u16) -> Result<StatusCode, SandboxError> {
    match StatusCode::from_u16(code) {
        Ok(s) if (200..=599).contains(&code) => Ok(s),
        _ => Err(SandboxError::BadResponse {
            reason: format!("invalid status {code} (a response status is 200..=599)"),
        }),
    }
}

/// Builds the headers of a guest response one pair at a time, under the
/// caps, dropping the framing headers the host owns.
///
/// Use it when pairs are produced lazily (read out of a JavaScript array or
/// parsed from CGI output) so that the first pair over a cap stops the work;
/// [`guest_headers`] is the one-call form.
///
/// ```
/// use corral::response::GuestHeaders;
///
/// let mut h = GuestHeaders::new();
/// h.append(b"Location", b"/next").unwrap();
/// h.append(b"Connection", b"close").unwrap(); // dropped, but counted
/// assert_eq!(h.count(), 2);
/// assert!(h.contains("location"));
/// assert_eq!(h.append(b"bad name", b"v").unwrap_err().code(), "bad_response");
/// let map = h.into_map();
/// assert_eq!(map.len(), 1);
/// ```
#[derive(Debug, Default)]
pub struct GuestHeaders {
    map: HeaderMap,
    count: usize,
    bytes: usize,
}

impl GuestHeaders {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one pair of `name_len` + `value_len` bytes towards the caps.
    ///
    /// [`append`](Self::append) calls this; call it directly for a line of
    /// the guest's head that is not a header (the CGI `Status:` line), so
    /// that a flood of those is stopped too.
    pub fn account(&mut self, name_len: usize, value_len: usize) -> Result<(), SandboxError> {
        self.count += 1;
        if self.count > MAX_RESPONSE_HEADERS {
            return Err(SandboxError::BadResponse {
                reason: format!("more than {MAX_RESPONSE_HEADERS} response headers"),
            });
        }
        self.bytes = self
            .bytes
            .saturating_add(name_len)
            .saturating_add(value_len);
        if self.bytes > MAX_RESPONSE_HEADER_BYTES {
            return Err(SandboxError::BadResponse {
                reason: format!(
                    "response headers exceed {MAX_RESPONSE_HEADER_BYTES} bytes (names plus values)"
                ),
            });
        }
        Ok(())
    }

    /// Adds one header from the guest: refused past a cap or when the name or
    /// value is invalid, silently dropped when it is a framing header
    /// ([`is_framing_header`]).
    pub fn append(&mut self, name: &[u8], value: &[u8]) -> Result<(), SandboxError> {
        self.account(name.len(), value.len())?;
        if is_framing_header(name) {
            return Ok(());
        }
        let shown = || String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
        let hname = HeaderName::from_bytes(name).map_err(|_| SandboxError::BadResponse {
            reason: format!("invalid header name {:?}", shown()),
        })?;
        let hvalue = HeaderValue::from_bytes(value).map_err(|_| SandboxError::BadResponse {
            reason: format!("invalid value for header {:?}", shown()),
        })?;
        // Under the count cap the map cannot reach its size limit; `try_append`
        // keeps even that from panicking.
        self.map
            .try_append(hname, hvalue)
            .map_err(|_| SandboxError::BadResponse {
                reason: "too many response headers".into(),
            })?;
        Ok(())
    }

    /// Whether a header of this name was kept (`name` in lower case).
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Pairs counted so far, dropped ones included.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The headers kept.
    pub fn into_map(self) -> HeaderMap {
        self.map
    }
}

/// The headers of a guest response from `(name, value)` pairs: the caps,
/// the framing rule and the validity checks of [`GuestHeaders`] in one call.
/// Pairs past the first one over a cap are never looked at.
pub fn guest_headers<I, N, V>(pairs: I) -> Result<HeaderMap, SandboxError>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut headers = GuestHeaders::new();
    for (name, value) in pairs {
        headers.append(name.as_ref(), value.as_ref())?;
    }
    Ok(headers.into_map())
}

/// Refuses a list of `pairs` header pairs before any is read, when it is
/// longer than [`MAX_RESPONSE_HEADERS`]: a cheap first check for engines
/// that know the length of the guest's list up front.
///
/// ```
/// use corral::response::check_header_count;
/// assert!(check_header_count(256).is_ok());
/// assert_eq!(check_header_count(257).unwrap_err().code(), "bad_response");
/// ```
pub fn check_header_count(pairs: usize) -> Result<(), SandboxError> {
    if pairs > MAX_RESPONSE_HEADERS {
        return Err(SandboxError::BadResponse {
            reason: format!("more than {MAX_RESPONSE_HEADERS} response headers ({pairs})"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_bad(r: Result<HeaderMap, SandboxError>) -> String {
        match r {
            Err(SandboxError::BadResponse { reason }) => reason,
            other => panic!("expected bad_response, got {other:?}"),
        }
    }

    #[test]
    fn exactly_the_count_cap_is_allowed() {
        let ok = guest_headers((0..MAX_RESPONSE_HEADERS).map(|i| (format!("x-{i}"), "v")));
        assert_eq!(ok.unwrap().len(), MAX_RESPONSE_HEADERS);
        let reason = is_bad(guest_headers(
            (0..=MAX_RESPONSE_HEADERS).map(|i| (format!("x-{i}"), "v")),
        ));
        assert!(reason.contains("256"), "{reason}");
    }

    #[test]
    fn repeated_names_count_one_each() {
        let reason = is_bad(guest_headers((0..300).map(|_| ("set-cookie", "a=b"))));
        assert!(reason.contains("more than 256"), "{reason}");
        let ok = guest_headers((0..200).map(|_| ("set-cookie", "a=b"))).unwrap();
        assert_eq!(ok.get_all("set-cookie").iter().count(), 200);
    }

    #[test]
    fn dropped_headers_count_too() {
        let reason = is_bad(guest_headers((0..257).map(|_| ("content-length", "0"))));
        assert!(reason.contains("more than 256"), "{reason}");
    }

    #[test]
    fn the_bytes_cap_counts_names_and_values() {
        // 64 values of 1020 bytes plus 4-byte names: exactly 65,536 bytes.
        let value = "v".repeat(1020);
        let ok = guest_headers((0..64).map(|i| (format!("x-{i:02}"), value.as_str())));
        assert_eq!(ok.unwrap().len(), 64);
        let reason = is_bad(guest_headers(
            (0..64)
                .map(|i| (format!("x-{i:02}"), value.clone()))
                .chain([("y".to_owned(), String::new())]),
        ));
        assert!(reason.contains("65536 bytes"), "{reason}");
        // One huge value is refused on its own.
        let huge = vec![b'a'; MAX_RESPONSE_HEADER_BYTES];
        is_bad(guest_headers([(&b"x"[..], &huge[..])]));
    }

    #[test]
    fn thirty_thousand_headers_are_refused_without_panic() {
        let reason = is_bad(guest_headers(
            (0..30_000).map(|i| (format!("x-distinct-{i}"), "1")),
        ));
        assert!(reason.contains("more than 256"), "{reason}");
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_dropped() {
        let dropped = [
            "Content-Length",
            "content-length",
            "Transfer-Encoding",
            "CONNECTION",
            "Keep-Alive",
            "Upgrade",
            "TE",
            "Trailer",
            "Proxy-Authenticate",
            "proxy-connection",
            "Proxy-Authorization",
        ];
        let map = guest_headers(dropped.iter().map(|n| (*n, "0")).chain([
            ("x-kept", "1"),
            ("proxyish", "2"),
            ("tea", "3"),
        ]))
        .unwrap();
        let names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept", "proxyish", "tea"]);
    }

    #[test]
    fn invalid_bytes_are_bad_response_never_a_panic() {
        for (name, value) in [
            (&b""[..], &b"v"[..]),
            (b"bad name", b"v"),
            (b"x:y", b"v"),
            (b"\xff\xfe", b"v"),
            (b"x", b"a\r\nSet-Cookie: injected=1"),
            (b"x", b"nul\0"),
            (b"x", b"\n"),
        ] {
            let r = guest_headers([(name, value)]);
            assert!(
                matches!(r, Err(SandboxError::BadResponse { .. })),
                "{name:?}: {value:?}: {r:?}"
            );
        }
        // Every single byte as a name and as a value: Ok or bad_response.
        for b in 0..=255u8 {
            for pair in [([b], &b"v"[..]), ([b'x'], &[b][..])] {
                match guest_headers([(&pair.0[..], pair.1)]) {
                    Ok(_) | Err(SandboxError::BadResponse { .. }) => {}
                    Err(e) => panic!("{b}: {e:?}"),
                }
            }
        }
        // Obs-text in a value is allowed through as bytes.
        let map = guest_headers([(&b"x"[..], &b"caf\xe9"[..])]).unwrap();
        assert_eq!(map["x"].as_bytes(), b"caf\xe9");
    }

    #[test]
    fn the_status_line_counts_through_account() {
        let mut h = GuestHeaders::new();
        for _ in 0..MAX_RESPONSE_HEADERS {
            h.account(6, 3).unwrap();
        }
        assert!(h.append(b"x", b"1").is_err());
    }

    #[test]
    fn statuses() {
        for ok in [200, 204, 304, 404, 599] {
            assert_eq!(guest_status(ok).unwrap().as_u16(), ok);
        }
        for bad in [0, 99, 100, 101, 199, 600, 999, 1000, u16::MAX] {
            assert_eq!(guest_status(bad).unwrap_err().code(), "bad_response");
        }
    }
}
