//! The operator console at `/console/`: a few static pages over the admin
//! API, a login that turns the admin token or an account token into a
//! session cookie, and a live feed of the dashboard.
//!
//! # Never behind tenant work
//!
//! A tenant request waits, if at all, on its tier's compute share, a
//! runtime slot ([`corral::platform`]'s host-wide semaphore) and, for
//! writes, the SQLite writer. The console touches none of these:
//!
//! - its assets are compiled into the binary (`include_bytes!`), hashed once
//!   at boot and answered from memory, with no store read and no slot;
//! - a session is checked from a table in memory (no argon2, no SQLite); a
//!   login checks the token through the same [`AdminGate`](crate::auth::AdminGate)
//!   as the admin API: from RAM once argon2 has accepted it, otherwise one
//!   bounded, throttled argon2 run (its own semaphore, never a tenant's);
//! - the live feed reads the platform's gauges and counters, all in memory;
//! - its `/console/api/…` routes are the admin API's own operations, run
//!   under the admin reserve (`admin.max_concurrent`, apart from every
//!   tenant limit). Only operations that write (deploy, delete, re-tier)
//!   reach the SQLite writer, as the admin API's do.
//!
//! # Sessions
//!
//! Only a valid token makes a session, so an anonymous client cannot grow the
//! table: a wrong token costs it one throttled attempt and the server nothing
//! kept. A session id is 256 bits from the OS; the table keys on its hash,
//! holds at most [`MAX_SESSIONS`] (at most [`MAX_SESSIONS_PER_PRINCIPAL`]
//! per token holder, the oldest going first), and each session ends after
//! [`SESSION_IDLE`] unused or [`SESSION_TTL`] in all, at logout, or when its
//! account token is revoked. When the table is full, the least recently used
//! account session makes room: account holders cannot lock the operator out.
//!
//! Writes need the session's CSRF token in `X-CSRF-Token` and, when the
//! browser sends one, an `Origin` of this host; the cookie is `HttpOnly`,
//! `SameSite=Strict`, `Path=/console`, and `Secure` over TLS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use blake2::digest::Digest;
use blake2::digest::consts::U32;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::{App, RequestBody};
use crate::auth::{AccountTokens, Principal};
use crate::http::{Body, collect_limited, discard, error, full, json};
use crate::routes::Route;

/// Sessions held at most, node-wide.
pub const MAX_SESSIONS: usize = 256;

/// Sessions one token holder (the admin, or one account) holds at most; a
/// new login past it ends that holder's least recently used session.
pub const MAX_SESSIONS_PER_PRINCIPAL: usize = 8;

/// A session ends this long after its login, however busy.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// A session ends after this long unused.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);

/// Live feeds (`/console/events`) one session may hold open at once.
pub const MAX_STREAMS_PER_SESSION: usize = 2;

/// Live feeds open at once, node-wide.
pub const MAX_STREAMS: usize = 32;

/// How often the live feed sends a frame.
pub const TICK: Duration = Duration::from_secs(1);

/// The session cookie's name.
pub const COOKIE: &str = "corral_console";

/// Largest login body read (a token is under 100 bytes).
const MAX_LOGIN_BODY: u64 = 4096;

/// The Content-Security-Policy of every console response: only this
/// origin's own scripts, styles and connections; no inline script, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One embedded asset.
#[derive(Debug)]
struct Asset {
    body: Bytes,
    content_type: &'static str,
    etag: HeaderValue,
}

/// The console's assets, in the binary and hashed at boot.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/console/",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "/console/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/app.js"),
    ),
    (
        "/console/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/app.css"),
    ),
];

/// The console's state: its assets and sessions, all in memory.
#[derive(Debug)]
pub struct Console {
    assets: HashMap<&'static str, Asset>,
    sessions: Mutex<HashMap<SessionKey, Session>>,
    streams: Arc<Semaphore>,
}

/// The hash of a session id: the table never holds an id itself.
type SessionKey = [u8; 32];

#[derive(Debug)]
struct Session {
    principal: Principal,
    /// The account token's id, checked on every use (revocation ends the session).
    token_id: Option<String>,
    csrf: String,
    created: Instant,
    last: Instant,
    streams: Arc<Semaphore>,
}

/// What a request's session lets it do.
#[derive(Debug, Clone)]
struct Current {
    key: SessionKey,
    principal: Principal,
    csrf: String,
    streams: Arc<Semaphore>,
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    /// The console with its assets loaded and no session.
    pub fn new() -> Self {
        let assets = ASSETS
            .iter()
            .map(|(path, ct, bytes)| {
                let hash = blake2::Blake2b::<U32>::digest(bytes);
                let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
                let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header");
                (
                    *path,
                    Asset {
                        body: Bytes::from_static(bytes),
                        content_type: ct,
                        etag,
                    },
                )
            })
            .collect();
        Self {
            assets,
            sessions: Mutex::new(HashMap::new()),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    /// Sessions held now (expired ones included until the next login sweeps them).
    pub fn sessions(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `principal`; returns its id (for the cookie) and
    /// CSRF token.
    fn create(&self, principal: Principal, token_id: Option<String>) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| live(s, now));
        // The holder's own oldest session makes room for its new one.
        let mine: Vec<(SessionKey, Instant)> = map
            .iter()
            .filter(|(_, s)| s.principal == principal)
            .map(|(k, s)| (*k, s.last))
            .collect();
        if mine.len() >= MAX_SESSIONS_PER_PRINCIPAL
            && let Some((k, _)) = mine.iter().min_by_key(|(_, last)| *last)
        {
            map.remove(k);
        }
        if map.len() >= MAX_SESSIONS {
            // Full: the least recently used account session goes (the admin
            // holds at most MAX_SESSIONS_PER_PRINCIPAL, far fewer than the cap).
            let victim = map
                .iter()
                .filter(|(_, s)| matches!(s.principal, Principal::Account(_)))
                .min_by_key(|(_, s)| s.last)
                .or_else(|| map.iter().min_by_key(|(_, s)| s.last))
                .map(|(k, _)| *k);
            if let Some(k) = victim {
                map.remove(&k);
            }
        }
        map.insert(
            key_of(&id),
            Session {
                principal,
                token_id,
                csrf: csrf.clone(),
                created: now,
                last: now,
                streams: Arc::new(Semaphore::new(MAX_STREAMS_PER_SESSION)),
            },
        );
        (id, csrf)
    }

    /// The live session named by the request's cookie, marked as used.
    fn current(&self, app: &App, headers: &HeaderMap) -> Option<Current> {
        let key = key_of(cookie(headers)?);
        let now = Instant::now();
        let mut map = self.lock();
        let s = map.get_mut(&key)?;
        let token_ok = s
            .token_id
            .as_deref()
            .is_none_or(|id| app.gate().account_tokens().contains(id));
        if !live(s, now) || !token_ok {
            map.remove(&key);
            return None;
        }
        s.last = now;
        Some(Current {
            key,
            principal: s.principal.clone(),
            csrf: s.csrf.clone(),
            streams: s.streams.clone(),
        })
    }

    /// Whether the session of `key` is still there (the live feed ends when not).
    fn still(&self, app: &App, key: &SessionKey) -> bool {
        let now = Instant::now();
        self.lock().get(key).is_some_and(|s| {
            live(s, now)
                && s.token_id
                    .as_deref()
                    .is_none_or(|id| app.gate().account_tokens().contains(id))
        })
    }

    fn end(&self, key: &SessionKey) {
        self.lock().remove(key);
    }

    fn asset(&self, path: &str, headers: &HeaderMap, head: bool) -> Option<Response<Body>> {
        let a = self.assets.get(path)?;
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == a.etag.as_bytes());
        let mut r = if fresh {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else if head {
            Response::new(full(Bytes::new()))
        } else {
            Response::new(full(a.body.clone()))
        };
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        h.insert(header::ETAG, a.etag.clone());
        // Revalidate every time: a 304 costs a hash compare, and an
        // upgraded binary's assets are seen at once.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Some(r)
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.created) < SESSION_TTL && now.duration_since(s.last) < SESSION_IDLE
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key_of(id: &str) -> SessionKey {
    blake2::Blake2b::<U32>::digest(id.as_bytes()).into()
}

/// The session id of the request's cookie header(s).
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE && v.len() == 64).then_some(v)
        })
}

/// Whether the request came over TLS: an `https` URI (HTTP/2's `:scheme`)
/// or a proxy's `X-Forwarded-Proto: https`. A client lying about it only
/// makes its own cookie `Secure`.
fn over_tls(parts: &Parts) -> bool {
    parts.uri.scheme_str() == Some("https")
        || parts
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// A write from another origin: its `Origin` (browsers send one on every
/// POST, PUT, PATCH and DELETE) names a host other than this request's.
fn cross_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return false;
    };
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(header::HOST)?.to_str().ok());
    let Some(host) = host else {
        return true;
    };
    let origin = origin.to_str().unwrap_or("");
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    rest.is_none_or(|h| !h.eq_ignore_ascii_case(host))
}

/// Adds the headers every console response carries.
fn harden(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

/// Serves one `/console…` request.
pub(crate) async fn serve(
    app: &App,
    console: &Console,
    parts: Parts,
    body: RequestBody,
) -> Response<Body> {
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    let get = method == Method::GET || method == Method::HEAD;
    if let Some(rest) = path.strip_prefix("/console/api/") {
        return harden(api(app, console, parts, body, rest).await);
    }
    let r = match (get, method.as_str(), path.as_str()) {
        (true, _, "/console") => {
            discard(&parts.headers, body);
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/console/"));
            r
        }
        (true, _, "/console/session") => {
            discard(&parts.headers, body);
            match console.current(app, &parts.headers) {
                Some(c) => json(
                    StatusCode::OK,
                    &json!({"principal": principal_json(&c.principal), "csrf": c.csrf}),
                ),
                None => unauthorized(),
            }
        }
        (true, _, "/console/events") => {
            discard(&parts.headers, body);
            events(app, console, &parts)
        }
        (true, _, p) => {
            discard(&parts.headers, body);
            match console.asset(p, &parts.headers, method == Method::HEAD) {
                Some(r) => r,
                None => error(StatusCode::NOT_FOUND, "not_found", format!("no page {p}")),
            }
        }
        (false, "POST", "/console/login") => login(app, console, parts, body).await,
        (false, "POST", "/console/logout") => {
            discard(&parts.headers, body);
            match write_session(app, console, &parts) {
                Ok(c) => {
                    console.end(&c.key);
                    let mut r = json(StatusCode::OK, &json!({"logged_out": true}));
                    r.headers_mut()
                        .insert(header::SET_COOKIE, clear_cookie(over_tls(&parts)));
                    r
                }
                Err(r) => r,
            }
        }
        (false, _, p) => {
            discard(&parts.headers, body);
            let allow = match p {
                "/console/login" | "/console/logout" => "POST",
                _ => "GET, HEAD",
            };
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("method not allowed; allowed: {allow}"),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            r
        }
    };
    harden(r)
}

fn principal_json(p: &Principal) -> serde_json::Value {
    match p {
        Principal::Admin => json!({"admin": true}),
        Principal::Account(a) => json!({"admin": false, "account": a}),
        #[allow(unreachable_patterns)]
        _ => json!({"admin": false}),
    }
}

fn unauthorized() -> Response<Body> {
    error(
        StatusCode::UNAUTHORIZED,
        "no_session",
        "log in at /console/ first",
    )
}

fn forbidden_write(why: &str) -> Response<Body> {
    error(StatusCode::FORBIDDEN, "csrf", why)
}

/// The session of a state-changing request, after its origin and CSRF checks.
#[allow(clippy::result_large_err)]
fn write_session(app: &App, console: &Console, parts: &Parts) -> Result<Current, Response<Body>> {
    if cross_origin(parts) {
        return Err(forbidden_write("cross-origin write refused"));
    }
    let c = console
        .current(app, &parts.headers)
        .ok_or_else(unauthorized)?;
    let sent = parts
        .headers
        .get("x-csrf-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(sent.ct_eq(c.csrf.as_bytes())) {
        return Err(forbidden_write("missing or wrong X-CSRF-Token"));
    }
    Ok(c)
}

fn session_cookie(id: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    ))
    .expect("hex and ASCII")
}

fn clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    ))
    .expect("ASCII")
}

/// `POST /console/login`: `{"token": "…"}` (JSON, from the page's script)
/// or `token=…` (a plain form, without script): the token is checked by
/// the admin API's own gate, then a session is made.
async fn login(app: &App, console: &Console, parts: Parts, body: RequestBody) -> Response<Body> {
    if cross_origin(&parts) {
        discard(&parts.headers, body);
        return forbidden_write("cross-origin login refused");
    }
    let bytes = match collect_limited(&parts.headers, body, MAX_LOGIN_BODY).await {
        Ok(b) => b,
        Err(e) => return e.to_response(),
    };
    let form = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    });
    let token = if form {
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| {
                s.split('&')
                    .find_map(|kv| kv.strip_prefix("token="))
                    .map(percent_decode)
            })
            .unwrap_or_default()
    } else {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("token")?.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let token = token.trim();
    // The admin API's gate, on a bearer header made of the typed token.
    let mut check = Parts::clone(&parts);
    match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(v) => {
            check.headers = HeaderMap::new();
            check.headers.insert(header::AUTHORIZATION, v);
        }
        Err(_) => return crate::auth::Denied::Wrong.to_response(),
    }
    let principal = match app.authorize(&check).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let token_id = match &principal {
        Principal::Account(_) => AccountTokens::id_of(token).map(str::to_owned),
        _ => None,
    };
    let (id, csrf) = console.create(principal.clone(), token_id);
    let mut r = if form {
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/console/"));
        r
    } else {
        json(
            StatusCode::OK,
            &json!({"principal": principal_json(&principal), "csrf": csrf}),
        )
    };
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id, over_tls(&parts)));
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/console/api/<rest>`: the admin API's operation at `/api/<rest>`, for
/// the session's principal, under the admin API's own permission check.
/// Writes need the CSRF token. The live gauges come from `/console/events`,
/// which is bounded per session; `/api/gauges` is not mapped.
async fn api(
    app: &App,
    console: &Console,
    mut parts: Parts,
    body: RequestBody,
    rest: &str,
) -> Response<Body> {
    let safe = parts.method == Method::GET || parts.method == Method::HEAD;
    let current = if safe {
        console
            .current(app, &parts.headers)
            .ok_or_else(unauthorized)
    } else {
        write_session(app, console, &parts)
    };
    let current = match current {
        Ok(c) => c,
        Err(r) => {
            discard(&parts.headers, body);
            return r;
        }
    };
    let path = format!("/api/{rest}");
    match app.router().route_api_path(&parts.method, &path) {
        Ok(Route::Api {
            op, name, auth: _, ..
        }) if op != crate::routes::Op::Gauges => {
            // The operation sees the API path, as a bearer client's would.
            let pq = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            if let Ok(uri) = pq.parse() {
                parts.uri = uri;
            }
            app.admin_api(op, name, current.principal, parts, body)
                .await
        }
        Ok(_) => {
            discard(&parts.headers, body);
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "live gauges: /console/events",
            )
        }
        Err(e) => {
            discard(&parts.headers, body);
            let mut r = error(e.status(), e.code(), &e);
            if let crate::routes::RouteError::MethodNotAllowed { allow } = &e
                && let Ok(v) = HeaderValue::from_str(&allow.join(", "))
            {
                r.headers_mut().insert(header::ALLOW, v);
            }
            r
        }
    }
}

/// `GET /console/events`: the dashboard as server-sent events, one frame a
/// second (`{"gauges": …, "overview": …}`, the data of `/api/gauges` and
/// `/api/overview`), for an admin session. At most
/// [`MAX_STREAMS_PER_SESSION`] per session and [`MAX_STREAMS`] in all
/// (429 past either); a stream ends when its session does.
fn events(app: &App, console: &Console, parts: &Parts) -> Response<Body> {
    let Some(c) = console.current(app, &parts.headers) else {
        return unauthorized();
    };
    if c.principal != Principal::Admin {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the host's gauges are the operator's: log in with the admin token",
        );
    }
    let too_many = || {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            "too many live feeds open; close a console tab",
        )
    };
    let Ok(mine) = c.streams.clone().try_acquire_owned() else {
        return too_many();
    };
    let Ok(all) = console.streams.clone().try_acquire_owned() else {
        return too_many();
    };
    struct Feed {
        app: App,
        key: SessionKey,
        tick: tokio::time::Interval,
        done: bool,
        _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        app: app.clone(),
        key: c.key,
        tick,
        done: false,
        _permits: (mine, all),
    };
    let stream = futures_util::stream::unfold(feed, |mut f| async move {
        if f.done {
            return None;
        }
        f.tick.tick().await;
        if !f.app.console().still(&f.app, &f.key) {
            f.done = true;
            return Some(("event: end\ndata: session ended\n\n".to_owned(), f));
        }
        let p = f.app.platform();
        let gauges = p.gauges().borrow().clone();
        let frame = json!({"gauges": gauges, "overview": crate::app::overview(p)});
        Some((format!("data: {frame}\n\n"), f))
    });
    crate::app::event_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_with_etags() {
        let c = Console::new();
        for (path, _, bytes) in ASSETS {
            let a = &c.assets[path];
            assert_eq!(&a.body[..], *bytes);
            assert_eq!(a.etag.len(), 26);
        }
        let mut h = HeaderMap::new();
        let etag = c.assets["/console/"].etag.clone();
        h.insert(header::IF_NONE_MATCH, etag);
        let r = c.asset("/console/", &h, false).unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(c.asset("/console/nope", &h, false).is_none());
    }

    #[test]
    fn sessions_are_bounded_per_principal_and_in_all() {
        let c = Console::new();
        let first = c.create(Principal::Admin, None).0;
        // Strictly the oldest, whatever the clock's resolution.
        std::thread::sleep(Duration::from_millis(2));
        for _ in 0..MAX_SESSIONS_PER_PRINCIPAL + 5 {
            c.create(Principal::Admin, None);
        }
        assert_eq!(c.sessions(), MAX_SESSIONS_PER_PRINCIPAL);
        assert!(!c.lock().contains_key(&key_of(&first)), "oldest went");
        // Many accounts fill the table; it never passes the cap, and the
        // admin's sessions survive.
        for i in 0..MAX_SESSIONS * 2 {
            let a: corral::TenantId = format!("acct{i}").parse().unwrap();
            c.create(Principal::Account(a), Some(format!("{i}")));
        }
        assert_eq!(c.sessions(), MAX_SESSIONS);
        let admins = c
            .lock()
            .values()
            .filter(|s| s.principal == Principal::Admin)
            .count();
        assert_eq!(admins, MAX_SESSIONS_PER_PRINCIPAL);
    }

    #[test]
    fn cookie_and_origin_parsing() {
        let id = "a".repeat(64);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("x=1; {COOKIE}={id}; y=2").parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some(id.as_str()));
        h.insert(header::COOKIE, format!("{COOKIE}=short").parse().unwrap());
        assert_eq!(cookie(&h), None);

        let req = |origin: Option<&str>| {
            let mut b = http::Request::post("/console/login").header("host", "node.test:8080");
            if let Some(o) = origin {
                b = b.header("origin", o);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(!cross_origin(&req(None)));
        assert!(!cross_origin(&req(Some("http://node.test:8080"))));
        assert!(cross_origin(&req(Some("http://evil.test"))));
        assert!(cross_origin(&req(Some("null"))));
        assert_eq!(percent_decode("a%5Fb+c%"), "a_b c%");
    }
}
