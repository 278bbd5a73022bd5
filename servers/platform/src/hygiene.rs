//! Response hygiene for apps reached by path, which share one browser origin.
//!
//! Under path routing (`/apps/<app>/…`) every app and the admin API answer
//! on the same origin, so a header that acts on the whole origin would let
//! one app act on another app's users. For a response from an app reached by
//! path, [`confine`]:
//!
//! - drops the origin-wide headers in [`ORIGIN_WIDE_HEADERS`]
//!   (`clear-site-data`, `service-worker-allowed`, …);
//! - rewrites every `set-cookie` so the cookie cannot leave the app: its
//!   `Path` is forced under `/apps/<app>/` (a `Path` outside it, missing, or
//!   `/` becomes `/apps/<app>/`; a `Path` already inside it is kept) and its
//!   `Domain` attribute is removed. Other attributes are kept as written.
//!
//! Apps reached by host (`<app>.<base_domain>`) or by the `X-Corral-App`
//! header (a proxy's choice) are left as they are: there each app has its own
//! origin, which is the browser isolation boundary.
//!
//! Framing headers (`content-length`, `transfer-encoding`, …) are the core's
//! job: every engine drops them ([`corral::response`]).
//!
//! ```
//! use corral::TenantId;
//! use corral_server::hygiene::confine;
//! use corral_server::routes::Via;
//!
//! let app = TenantId::new("shop").unwrap();
//! let resp = http::Response::builder()
//!     .header("set-cookie", "sid=1; Path=/; Domain=example.com; HttpOnly")
//!     .header("clear-site-data", "\"cookies\"")
//!     .body(())
//!     .unwrap();
//! let resp = confine(resp, Via::Path, &app);
//! assert_eq!(resp.headers()["set-cookie"], "sid=1; HttpOnly; Path=/apps/shop/");
//! assert!(!resp.headers().contains_key("clear-site-data"));
//! ```

use corral::TenantId;
use http::{HeaderMap, HeaderValue, Response, header};

use crate::routes::Via;

/// Headers that act on the whole origin; dropped from path-routed responses.
///
/// `clear-site-data` and `service-worker-allowed` let an app wipe or take
/// over the other apps' pages; `alt-svc` points the whole origin's traffic
/// elsewhere; `nel` and `report-to` would send the app reports about
/// requests to other apps; `strict-transport-security` is origin-wide
/// policy that belongs to the operator's TLS proxy.
pub const ORIGIN_WIDE_HEADERS: &[&str] = &[
    "clear-site-data",
    "service-worker-allowed",
    "alt-svc",
    "nel",
    "report-to",
    "strict-transport-security",
];

/// Applies response hygiene for an app reached `via` a route: for
/// [`Via::Path`] see [`confine_headers`]; any other route returns `resp`
/// unchanged.
pub fn confine<B>(mut resp: Response<B>, via: Via, app: &TenantId) -> Response<B> {
    if via == Via::Path {
        confine_headers(resp.headers_mut(), app);
    }
    resp
}

/// Drops [`ORIGIN_WIDE_HEADERS`] from `headers` and confines every
/// `set-cookie` to `/apps/<app>/` with [`confine_cookie`]. A cookie that
/// cannot be rewritten is dropped.
pub fn confine_headers(headers: &mut HeaderMap, app: &TenantId) {
    // Most responses carry a few headers and none of these: one pass over
    // their names decides, instead of parsing and hashing each listed name.
    let touched = headers
        .keys()
        .any(|k| *k == header::SET_COOKIE || ORIGIN_WIDE_HEADERS.contains(&k.as_str()));
    if !touched {
        return;
    }
    for name in ORIGIN_WIDE_HEADERS {
        headers.remove(*name);
    }
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| confine_cookie(v.as_bytes(), app))
        .collect();
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
}

/// One `Set-Cookie` value rewritten so the cookie stays under
/// `/apps/<app>/`: attributes are `;`-separated and named without regard to
/// case; every `Domain` is removed; the `Path` a browser would use (the last
/// one) is kept when it is inside the app's prefix, else replaced by
/// `/apps/<app>/`; exactly one `Path` ends the value. `None` when the result
/// is not a valid header value (the guest's value already was, so this does
/// not happen in practice; the cookie is then dropped).
///
/// A `__Host-` cookie requires `Path=/`, so browsers refuse it once
/// rewritten: such a cookie cannot be confined to one app of a shared origin.
///
/// ```
/// use corral::TenantId;
/// use corral_server::hygiene::confine_cookie;
///
/// let app = TenantId::new("shop").unwrap();
/// let c = |v: &str| confine_cookie(v.as_bytes(), &app).unwrap();
/// assert_eq!(c("a=1"), "a=1; Path=/apps/shop/");
/// assert_eq!(c("a=1; path=/apps/shop/cart; Secure"), "a=1; Secure; path=/apps/shop/cart");
/// assert_eq!(c("a=1; Path=/apps/other/; domain=.example.com"), "a=1; Path=/apps/shop/");
/// ```
pub fn confine_cookie(value: &[u8], app: &TenantId) -> Option<HeaderValue> {
    let scope = format!("/apps/{}/", app.as_str());
    let mut parts = value.split(|&b| b == b';');
    let pair = trim(parts.next().unwrap_or_default());
    let mut out = Vec::with_capacity(value.len() + scope.len() + 8);
    out.extend_from_slice(pair);
    // (attribute name as written, value) of the last Path.
    let mut path: Option<(&[u8], &[u8])> = None;
    for attr in parts {
        let attr = trim(attr);
        if attr.is_empty() {
            continue;
        }
        let (name, val) = match attr.iter().position(|&b| b == b'=') {
            Some(i) => (trim(&attr[..i]), trim(&attr[i + 1..])),
            None => (attr, &b""[..]),
        };
        if name.eq_ignore_ascii_case(b"domain") {
            continue;
        }
        if name.eq_ignore_ascii_case(b"path") {
            path = Some((name, val));
            continue;
        }
        out.extend_from_slice(b"; ");
        out.extend_from_slice(attr);
    }
    match path {
        Some((name, val)) if inside(val, &scope) => {
            out.extend_from_slice(b"; ");
            out.extend_from_slice(name);
            out.push(b'=');
            out.extend_from_slice(val);
        }
        _ => {
            out.extend_from_slice(b"; Path=");
            out.extend_from_slice(scope.as_bytes());
        }
    }
    HeaderValue::from_bytes(&out).ok()
}

/// Whether a cookie path only ever matches request paths of the app whose
/// prefix is `scope` (`/apps/<app>/`): it starts with `scope`, or is `scope`
/// without its final slash (which, by the cookie path-match rule, matches
/// only `/apps/<app>` and paths below `/apps/<app>/`).
fn inside(path: &[u8], scope: &str) -> bool {
    let scope = scope.as_bytes();
    path.starts_with(scope) || path == &scope[..scope.len() - 1]
}

/// `bytes` without leading and trailing spaces and tabs (cookie whitespace).
fn trim(bytes: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ws(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> TenantId {
        TenantId::new("shop").unwrap()
    }

    fn c(v: &str) -> String {
        let out = confine_cookie(v.as_bytes(), &app()).expect("a valid value");
        out.to_str().unwrap().to_owned()
    }

    #[test]
    fn path_is_forced_under_the_app() {
        for (given, want) in [
            ("a=1", "a=1; Path=/apps/shop/"),
            ("a=1; Path=/", "a=1; Path=/apps/shop/"),
            ("a=1; Path=", "a=1; Path=/apps/shop/"),
            ("a=1; Path", "a=1; Path=/apps/shop/"),
            ("a=1; Path=/apps/", "a=1; Path=/apps/shop/"),
            ("a=1; Path=/apps/other/", "a=1; Path=/apps/shop/"),
            // A name sharing the app's prefix is another app.
            ("a=1; Path=/apps/shopping/", "a=1; Path=/apps/shop/"),
            ("a=1; Path=/apps/shopping", "a=1; Path=/apps/shop/"),
            // Relative and case-changed paths are not inside.
            ("a=1; Path=apps/shop/", "a=1; Path=/apps/shop/"),
            ("a=1; Path=/APPS/shop/", "a=1; Path=/apps/shop/"),
            ("a=1; Path=/api/", "a=1; Path=/apps/shop/"),
            // Inside: kept as written.
            ("a=1; Path=/apps/shop/", "a=1; Path=/apps/shop/"),
            ("a=1; Path=/apps/shop", "a=1; Path=/apps/shop"),
            ("a=1; Path=/apps/shop/cart/x", "a=1; Path=/apps/shop/cart/x"),
            ("a=1; PATH=/apps/shop/x", "a=1; PATH=/apps/shop/x"),
            ("a=1;path = /apps/shop/x ", "a=1; path=/apps/shop/x"),
        ] {
            assert_eq!(c(given), want, "{given}");
        }
    }

    #[test]
    fn the_last_path_is_the_one_judged_and_only_one_is_left() {
        // Browsers use the last Path: an inside one first cannot smuggle a later "/".
        assert_eq!(c("a=1; Path=/apps/shop/; Path=/"), "a=1; Path=/apps/shop/");
        assert_eq!(
            c("a=1; Path=/; Path=/apps/shop/x"),
            "a=1; Path=/apps/shop/x"
        );
    }

    #[test]
    fn domain_is_removed_in_any_case_and_spacing() {
        for given in [
            "a=1; Domain=example.com",
            "a=1; domain=.example.com",
            "a=1;DOMAIN=example.com",
            "a=1; Domain",
            "a=1;  dOmAiN = example.com ;",
            "a=1; Domain=example.com; Domain=other.com",
        ] {
            assert_eq!(c(given), "a=1; Path=/apps/shop/", "{given}");
        }
    }

    #[test]
    fn other_attributes_are_kept_in_order() {
        assert_eq!(
            c(
                "sid=abc; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Max-Age=60; Secure; HttpOnly; SameSite=Strict; Partitioned"
            ),
            "sid=abc; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Max-Age=60; Secure; HttpOnly; SameSite=Strict; Partitioned; Path=/apps/shop/"
        );
        assert_eq!(
            c("  sid=abc ;;; httponly;\tsecure"),
            "sid=abc; httponly; secure; Path=/apps/shop/"
        );
        // A cookie named like an attribute is still the cookie pair.
        assert_eq!(c("Domain=x; Path=/"), "Domain=x; Path=/apps/shop/");
        assert_eq!(c(""), "; Path=/apps/shop/");
    }

    #[test]
    fn bytes_that_are_not_utf8_pass_through() {
        let out = confine_cookie(b"a=caf\xe9; Domain=x", &app()).unwrap();
        assert_eq!(out.as_bytes(), b"a=caf\xe9; Path=/apps/shop/");
    }

    #[test]
    fn each_origin_wide_header_alone_is_dropped() {
        // The quick pass over the names must see every listed header, in
        // any case, even with no cookie beside it.
        for name in ORIGIN_WIDE_HEADERS {
            for written in [name.to_string(), name.to_ascii_uppercase()] {
                let r = Response::builder()
                    .header(written.as_str(), "1")
                    .header("content-type", "text/plain")
                    .body(())
                    .unwrap();
                let r = confine(r, Via::Path, &app());
                let names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
                assert_eq!(names, ["content-type"], "{written}");
            }
        }
        let r = Response::builder()
            .header("Set-Cookie", "a=1; Path=/")
            .body(())
            .unwrap();
        let r = confine(r, Via::Path, &app());
        assert_eq!(r.headers()["set-cookie"], "a=1; Path=/apps/shop/");
    }

    #[test]
    fn headers_are_confined_only_for_path_routing() {
        let build = || {
            Response::builder()
                .header("set-cookie", "a=1; Path=/")
                .header("set-cookie", "b=2; Domain=example.com; Path=/apps/shop/x")
                .header("Clear-Site-Data", "\"*\"")
                .header("service-worker-allowed", "/")
                .header("alt-svc", "h3=\":443\"")
                .header("nel", "{}")
                .header("report-to", "{}")
                .header("strict-transport-security", "max-age=1")
                .header("content-type", "text/plain")
                .header("x-app", "1")
                .body(())
                .unwrap()
        };
        let r = confine(build(), Via::Path, &app());
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1; Path=/apps/shop/", "b=2; Path=/apps/shop/x"]);
        let mut names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "set-cookie", "x-app"]);

        for via in [Via::Host, Via::Header] {
            let r = confine(build(), via, &app());
            assert_eq!(r.headers(), build().headers(), "{via:?}");
        }
    }
}
