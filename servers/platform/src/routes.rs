//! Request routing as a pure function over the request head.
//!
//! A request goes to a tenant when it carries `X-Corral-App: <app>` (set by a
//! proxy in front), when its host is `<app>.<base_domain>`, or when its path is
//! `/apps/<app>/…` (the prefix is stripped before the guest sees it). Anything
//! else is matched against [`ROUTES`], the one table that both the router and
//! the OpenAPI document ([`crate::openapi`]) are built from.
//!
//! A target that is no absolute path (`*`, authority-form) and path traversal
//! (`..` segments in any encoding, encoded slashes or
//! backslashes, NUL) is refused with [`RouteError::BadPath`] before any lookup.
//!
//! ```
//! use corral_server::routes::{route, Op, Route, Router};
//!
//! let router = Router::new(Some("example.com"));
//! let req = http::Request::get("http://demo.example.com/hello?x=1").body(()).unwrap();
//! let (parts, ()) = req.into_parts();
//! match router.route(&parts).unwrap() {
//!     Route::Tenant { tenant, path_and_query, .. } => {
//!         assert_eq!(tenant.as_str(), "demo");
//!         assert_eq!(path_and_query, "/hello?x=1");
//!     }
//!     other => panic!("{other:?}"),
//! }
//!
//! let req = http::Request::get("/api/apps/demo/usage").body(()).unwrap();
//! let (parts, ()) = req.into_parts();
//! assert!(matches!(route(&parts, None), Ok(Route::Api { op: Op::AppUsage, .. })));
//! ```

use corral_limits::{InvalidTenantId, TenantId};
use http::{Method, request::Parts};

/// The header a proxy sets to name the tenant app.
pub const APP_HEADER: &str = "x-corral-app";

/// An operation of the admin or system API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `GET /api/apps`
    ListApps,
    /// `PUT /api/apps/{name}`
    PutApp,
    /// `GET /api/apps/{name}`
    GetApp,
    /// `PATCH /api/apps/{name}`
    PatchApp,
    /// `DELETE /api/apps/{name}`
    DeleteApp,
    /// `GET /api/apps/{name}/usage`
    AppUsage,
    /// `GET /api/apps/{name}/status`
    AppStatus,
    /// `GET /api/apps/{name}/logs` (the app's recent log lines)
    AppLogs,
    /// `GET /api/apps/{name}/export` (the app's CRC-checked archive)
    ExportApp,
    /// `GET /api/apps/{name}/history` (requests and errors per hour, 30 days)
    AppHistory,
    /// `GET /api/accounts`
    ListAccounts,
    /// `PUT /api/accounts/{name}` (create, or move to a tier: `{"tier": "pro"}`)
    PutAccount,
    /// `GET /api/accounts/{name}`
    GetAccount,
    /// `DELETE /api/accounts/{name}` (an account with no apps)
    DeleteAccount,
    /// `GET /api/accounts/{name}/usage` (all its apps together)
    AccountUsage,
    /// `POST /api/accounts/{name}/tokens` (a new account token, shown once)
    IssueToken,
    /// `GET /api/accounts/{name}/tokens` (ids and dates, never the tokens)
    ListTokens,
    /// `DELETE /api/tokens/{name}` (revoke the token of that id)
    RevokeToken,
    /// `POST /api/import?keep_tier=…&keep_usage=…` (an archive as the body)
    Import,
    /// `POST /api/apps/{name}/move` (`{"to": "<node>"}`: hand the app to a
    /// peer node while it keeps answering)
    MoveApp,
    /// `GET /api/host`
    Host,
    /// `POST /api/admin/recalibrate`
    Recalibrate,
    /// `POST /api/admin/maintenance`
    Maintenance,
    /// `GET /api/gauges` (server-sent events)
    Gauges,
    /// `GET /api/overview` (one frame of the operator's dashboard: host,
    /// app counts, totals and errors by kind, from memory)
    Overview,
    /// `GET /api/admin/simulate?ram=…&cpus=…&disk=…&apps=…` (the budget a
    /// host of that size would get, by the probe's own budget code)
    Simulate,
    /// `GET /api/openapi.json`
    OpenApi,
    /// `GET /api/tls-ask?domain=…` (Caddy on-demand TLS: 200 for a deployed app's host)
    TlsAsk,
    /// `GET /metrics` (Prometheus text)
    Metrics,
    /// `GET /healthz`
    Healthz,
    /// `GET /readyz`
    Readyz,
}

/// One row of the route table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouteSpec {
    /// The HTTP method (`"GET"`, …).
    pub method: &'static str,
    /// The path template; `{name}` is an app or account name.
    pub path: &'static str,
    /// The operation.
    pub op: Op,
    /// Whether `Authorization: Bearer <token>` is required.
    pub auth: bool,
    /// Whether an account token may call it, for its own apps or its own
    /// account (403 `forbidden` elsewhere); otherwise admin only.
    pub account: bool,
    /// One-line summary (OpenAPI `summary`).
    pub summary: &'static str,
    /// Request body media types accepted, if the route takes a body.
    pub body: &'static [&'static str],
    /// Query parameters: `(name, description)`.
    pub query: &'static [(&'static str, &'static str)],
    /// Media type of a success response.
    pub produces: &'static str,
}

const fn spec(
    method: &'static str,
    path: &'static str,
    op: Op,
    auth: bool,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        op,
        auth,
        account: false,
        summary,
        body: &[],
        query: &[],
        produces: "application/json",
    }
}

/// Every admin and system route. The router and the OpenAPI document both read
/// this table, so they cannot disagree.
pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        account: true,
        ..spec(
            "GET",
            "/api/apps",
            Op::ListApps,
            true,
            "List deployed apps (an account token: its account's apps)",
        )
    },
    RouteSpec {
        body: &[
            "application/wasm",
            "application/javascript",
            "application/x-tar",
        ],
        query: &[
            (
                "tier",
                "Tier of the app's account (default: the account's tier; for a new app in an account of its own, the configured default tier); 409 account_tier for an account shared with other apps",
            ),
            (
                "account",
                "Account to deploy the app into (made with PUT /api/accounts/{name}); default: the app's account, or a new account of the app's name. 403 app_limit when the account holds its tier's max_apps",
            ),
        ],
        account: true,
        ..spec(
            "PUT",
            "/api/apps/{name}",
            Op::PutApp,
            true,
            "Deploy or atomically replace an app",
        )
    },
    RouteSpec {
        account: true,
        ..spec(
            "GET",
            "/api/apps/{name}",
            Op::GetApp,
            true,
            "Describe one app",
        )
    },
    RouteSpec {
        body: &["application/json"],
        ..spec(
            "PATCH",
            "/api/apps/{name}",
            Op::PatchApp,
            true,
            "Change an app's tier ({\"tier\": \"pro\"}; the account's, so only for an app alone in its account) or move it to another account ({\"account\": \"acme\"})",
        )
    },
    RouteSpec {
        account: true,
        ..spec(
            "DELETE",
            "/api/apps/{name}",
            Op::DeleteApp,
            true,
            "Remove an app",
        )
    },
    RouteSpec {
        account: true,
        ..spec(
            "GET",
            "/api/apps/{name}/usage",
            Op::AppUsage,
            true,
            "This month's usage beside the tier's quotas",
        )
    },
    RouteSpec {
        account: true,
        ..spec(
            "GET",
            "/api/apps/{name}/status",
            Op::AppStatus,
            true,
            "Lifecycle state: warm or parked, in flight, streams, idle seconds, cold starts",
        )
    },
    RouteSpec {
        account: true,
        query: &[(
            "follow",
            "1: a text/event-stream instead, one `data:` line per log line, the kept lines first, then new ones as they arrive (checked every 500 ms); `event: end` when the app is removed; at most 64 such streams per node (429 too_many_log_streams)",
        )],
        ..spec(
            "GET",
            "/api/apps/{name}/logs",
            Op::AppLogs,
            true,
            "The app's recent log lines (console.log, guest stderr), oldest first, bounded by the per-app log cap: {\"lines\": [...]}",
        )
    },
    RouteSpec {
        account: true,
        ..spec(
            "GET",
            "/api/apps/{name}/history",
            Op::AppHistory,
            true,
            "Requests and errors per hour over the last 30 days, kept across restarts: {\"hours\": [{\"hour\": <unix seconds>, \"requests\", \"errors\"}]} (hours with nothing counted are absent)",
        )
    },
    RouteSpec {
        body: &["application/json"],
        ..spec(
            "POST",
            "/api/apps/{name}/move",
            Op::MoveApp,
            true,
            "Move the app to a peer node: hold its new requests, let the running ones and its streams finish, import its archive there, point the proxy's moves map at it, forward what still arrives here (admin only)",
        )
    },
    RouteSpec {
        produces: "application/x-tar",
        ..spec(
            "GET",
            "/api/apps/{name}/export",
            Op::ExportApp,
            true,
            "The app's archive: bundle, KV and usage, every entry CRC-checked",
        )
    },
    spec(
        "GET",
        "/api/accounts",
        Op::ListAccounts,
        true,
        "List accounts",
    ),
    RouteSpec {
        body: &["application/json"],
        ..spec(
            "PUT",
            "/api/accounts/{name}",
            Op::PutAccount,
            true,
            "Create an account, or move it and all its apps to a tier ({\"tier\": \"pro\"})",
        )
    },
    RouteSpec {
        account: true,
        ..spec(
            "GET",
            "/api/accounts/{name}",
            Op::GetAccount,
            true,
            "Describe one account: tier, apps, max_apps",
        )
    },
    spec(
        "DELETE",
        "/api/accounts/{name}",
        Op::DeleteAccount,
        true,
        "Remove an account that holds no apps (409 account_not_empty otherwise)",
    ),
    RouteSpec {
        account: true,
        ..spec(
            "GET",
            "/api/accounts/{name}/usage",
            Op::AccountUsage,
            true,
            "This month's usage of all the account's apps together beside its tier's quotas",
        )
    },
    spec(
        "POST",
        "/api/accounts/{name}/tokens",
        Op::IssueToken,
        true,
        "A new API token for the account, shown once in the answer ({\"id\", \"token\"}): it deploys, updates, deletes and reads usage, status and logs of the account's own apps, nothing else",
    ),
    spec(
        "GET",
        "/api/accounts/{name}/tokens",
        Op::ListTokens,
        true,
        "The account's tokens: ids and creation times, never the tokens",
    ),
    spec(
        "DELETE",
        "/api/tokens/{name}",
        Op::RevokeToken,
        true,
        "Revoke the token of this id (the part after corral_acct_ and before the next _)",
    ),
    RouteSpec {
        body: &["application/x-tar", "application/octet-stream"],
        query: &[
            (
                "keep_tier",
                "true: keep the archive's tier, which must be one of this node's (else 400 unknown_tier); default false: the default tier",
            ),
            (
                "keep_usage",
                "true: keep the archive's usage months; default false: fresh usage",
            ),
        ],
        ..spec(
            "POST",
            "/api/import",
            Op::Import,
            true,
            "Import an archive from /api/apps/{name}/export as a new app (body capped by http.max_admin_body_bytes)",
        )
    },
    spec(
        "GET",
        "/api/host",
        Op::Host,
        true,
        "Host probe, budget, thresholds, accepting_new_tenants, maintenance",
    ),
    spec(
        "POST",
        "/api/admin/recalibrate",
        Op::Recalibrate,
        true,
        "Probe the host again and resize caches and semaphores",
    ),
    RouteSpec {
        body: &["application/json"],
        ..spec(
            "POST",
            "/api/admin/maintenance",
            Op::Maintenance,
            true,
            "Turn maintenance mode on or off ({\"on\": true})",
        )
    },
    RouteSpec {
        produces: "text/event-stream",
        ..spec(
            "GET",
            "/api/gauges",
            Op::Gauges,
            true,
            "Live gauges as server-sent events",
        )
    },
    spec(
        "GET",
        "/api/overview",
        Op::Overview,
        true,
        "One dashboard frame from memory: host, slots, warm/parked apps, totals, errors by kind, thresholds",
    ),
    RouteSpec {
        query: &[
            (
                "ram",
                "Physical RAM of the simulated host, bytes (required unless probe=1)",
            ),
            ("cpus", "Logical CPUs (required unless probe=1)"),
            (
                "probe",
                "1: probe this host now and use its RAM, CPUs and disk for what is not given (what a recalibrate would derive)",
            ),
            ("disk", "Disk size, bytes (default: this host's)"),
            ("apps", "Apps expected on the node (default: 0)"),
            (
                "runtime_slots",
                "Override to check (default: this node's setting)",
            ),
            (
                "cache_bytes",
                "Override to check (default: this node's setting)",
            ),
        ],
        ..spec(
            "GET",
            "/api/admin/simulate",
            Op::Simulate,
            true,
            "The limits a host of this size would get, computed by the probe's budget code, with warnings for overrides it cannot hold",
        )
    },
    spec(
        "GET",
        "/api/openapi.json",
        Op::OpenApi,
        true,
        "This document",
    ),
    RouteSpec {
        query: &[("domain", "Host name a TLS certificate is requested for")],
        produces: "text/plain",
        ..spec(
            "GET",
            "/api/tls-ask",
            Op::TlsAsk,
            false,
            "200 when the domain is the base domain or a deployed app's host (Caddy on-demand TLS)",
        )
    },
    RouteSpec {
        produces: "text/plain; version=0.0.4",
        ..spec("GET", "/metrics", Op::Metrics, true, "Prometheus metrics")
    },
    RouteSpec {
        produces: "text/plain",
        ..spec("GET", "/healthz", Op::Healthz, false, "Liveness")
    },
    RouteSpec {
        produces: "text/plain",
        ..spec(
            "GET",
            "/readyz",
            Op::Readyz,
            false,
            "Readiness (503 while draining)",
        )
    },
];

/// The table row of `op`.
///
/// ```
/// use corral_server::routes::{Op, spec_of};
/// assert!(spec_of(Op::AppUsage).account);
/// assert!(!spec_of(Op::Host).account);
/// ```
pub fn spec_of(op: Op) -> &'static RouteSpec {
    ROUTES
        .iter()
        .find(|s| s.op == op)
        .expect("every Op has a route (tested)")
}

/// How a tenant was named in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Via {
    /// The `X-Corral-App` header.
    Header,
    /// The host `<app>.<base_domain>`.
    Host,
    /// The path prefix `/apps/<app>/`.
    Path,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// To a tenant app.
    Tenant {
        /// The app.
        tenant: TenantId,
        /// How it was named.
        via: Via,
        /// The path and query the guest sees (`/apps/<app>` stripped).
        path_and_query: String,
    },
    /// To the operator console (`/console`, `/console/…`): its own
    /// session auth, served by [`crate::console`].
    Console,
    /// To an admin or system operation.
    Api {
        /// The operation.
        op: Op,
        /// The `{name}` path parameter, when the route has one.
        name: Option<TenantId>,
        /// Whether the admin token is required.
        auth: bool,
    },
}

/// Why a request could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// Traversal or a forbidden byte in the request target → 400 `bad_path`.
    #[error("request path refused: {reason}")]
    BadPath {
        /// What was found.
        reason: &'static str,
    },
    /// The app name in the host, header or path is not a valid name → 400 `invalid_app_name`.
    #[error("invalid app name {name:?}: {source}")]
    InvalidAppName {
        /// The name as given.
        name: String,
        /// Why it is invalid.
        #[source]
        source: InvalidTenantId,
    },
    /// No route has this path → 404 `not_found`.
    #[error("no route for {path}")]
    NotFound {
        /// The request path.
        path: String,
    },
    /// The path exists for other methods → 405 `method_not_allowed`.
    #[error("method not allowed; allowed: {}", allow.join(", "))]
    MethodNotAllowed {
        /// The methods that are allowed.
        allow: Vec<&'static str>,
    },
}

impl RouteError {
    /// The HTTP status for this error.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::BadPath { .. } | Self::InvalidAppName { .. } => http::StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => http::StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => http::StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable code of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadPath { .. } => "bad_path",
            Self::InvalidAppName { .. } => "invalid_app_name",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }
}

/// A router for one `base_domain` and `[routing]` setting.
#[derive(Debug, Clone)]
pub struct Router {
    /// `.<base_domain>`, lowercase, when set.
    suffix: Option<String>,
    /// Whether `/apps/<app>/` reaches a tenant.
    path: bool,
    /// The only host `/api/*` answers on, when set.
    admin_host: Option<String>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Router {
    /// A router serving tenants at `<app>.<base_domain>` when `base_domain`
    /// is set, and at `/apps/<app>/` everywhere.
    pub fn new(base_domain: Option<&str>) -> Self {
        Self {
            suffix: base_domain.map(|d| format!(".{}", d.to_ascii_lowercase())),
            path: true,
            admin_host: None,
        }
    }

    /// Applies the `[routing]` settings: `path = false` stops `/apps/<app>/`
    /// from reaching a tenant (404 `not_found`); `admin_host` answers `/api/*`
    /// only for that host (404 elsewhere; `/api/tls-ask` stays on every
    /// host, for the TLS proxy) and routes no tenant by host or path there.
    ///
    /// ```
    /// use corral_server::config::RoutingConfig;
    /// use corral_server::routes::{Route, RouteError, Router};
    ///
    /// let mut routing = RoutingConfig::default();
    /// routing.path = false;
    /// routing.admin_host = Some("admin.example.com".into());
    /// let router = Router::new(Some("example.com")).routing(&routing);
    /// let head = |host: &str, uri: &str| {
    ///     http::Request::get(uri).header("host", host).body(()).unwrap().into_parts().0
    /// };
    /// let apps = router.route(&head("example.com", "/apps/demo/")).unwrap_err();
    /// assert!(matches!(apps, RouteError::NotFound { .. }));
    /// let api = router.route(&head("demo-x.net", "/api/apps")).unwrap_err();
    /// assert_eq!(api.status(), 404);
    /// assert!(matches!(router.route(&head("admin.example.com", "/api/apps")), Ok(Route::Api { .. })));
    /// ```
    #[must_use]
    pub fn routing(mut self, routing: &crate::config::RoutingConfig) -> Self {
        self.path = routing.path;
        self.admin_host = routing.admin_host.as_ref().map(|h| h.to_ascii_lowercase());
        self
    }

    /// Routes one request head.
    pub fn route(&self, parts: &Parts) -> Result<Route, RouteError> {
        let path = parts.uri.path();
        let query = parts.uri.query();
        check_target(path, query)?;
        let with_query = |p: &str| match query {
            Some(q) => format!("{p}?{q}"),
            None => p.to_owned(),
        };

        if let Some(value) = parts.headers.get(APP_HEADER) {
            let name = value.to_str().unwrap_or("\u{fffd}").trim();
            return Ok(Route::Tenant {
                tenant: app_name(name)?,
                via: Via::Header,
                path_and_query: with_query(path),
            });
        }
        let host = host(parts).map(str::to_ascii_lowercase);
        // The admin host is the admin API's own origin: no tenant answers there.
        let on_admin_host = self.admin_host.is_some() && host == self.admin_host;
        if let (Some(suffix), Some(host), false) = (&self.suffix, &host, on_admin_host)
            && let Some(label) = host.strip_suffix(suffix.as_str())
            && !label.is_empty()
        {
            return Ok(Route::Tenant {
                tenant: app_name(label)?,
                via: Via::Host,
                path_and_query: with_query(path),
            });
        }
        if let Some(rest) = path.strip_prefix("/apps/")
            && self.path
            && !on_admin_host
        {
            let (name, tail) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            return Ok(Route::Tenant {
                tenant: app_name(name)?,
                via: Via::Path,
                path_and_query: with_query(tail),
            });
        }
        // The console is an admin surface: bound to the admin host like /api/*.
        if path == "/console" || path.starts_with("/console/") {
            if self.admin_host.is_some() && !on_admin_host {
                return Err(RouteError::NotFound {
                    path: path.to_owned(),
                });
            }
            return Ok(Route::Console);
        }
        if self.admin_host.is_some() && !on_admin_host && admin_only(path) {
            return Err(RouteError::NotFound {
                path: path.to_owned(),
            });
        }
        self.route_api(&parts.method, path)
    }

    /// Routes `method` and `path` against [`ROUTES`] alone (no tenant, no
    /// host): the console's thin `/console/api/…` routes map onto the same
    /// table, so they run the same operations under the same permissions.
    pub fn route_api_path(&self, method: &Method, path: &str) -> Result<Route, RouteError> {
        self.route_api(method, path)
    }

    fn route_api(&self, method: &Method, path: &str) -> Result<Route, RouteError> {
        let mut allow = Vec::new();
        for spec in ROUTES {
            let Some(name) = match_template(spec.path, path) else {
                continue;
            };
            if spec.method != method.as_str() && !(spec.method == "GET" && method == Method::HEAD) {
                allow.push(spec.method);
                continue;
            }
            let name = name.map(app_name).transpose()?;
            return Ok(Route::Api {
                op: spec.op,
                name,
                auth: spec.auth,
            });
        }
        if allow.is_empty() {
            Err(RouteError::NotFound {
                path: path.to_owned(),
            })
        } else {
            Err(RouteError::MethodNotAllowed { allow })
        }
    }
}

/// Whether `path` is one of the `/api/*` routes that `routing.admin_host`
/// binds to its host. `/api/tls-ask` is not: a TLS proxy asks it over
/// loopback, before any certificate (or host name) is settled.
fn admin_only(path: &str) -> bool {
    (path == "/api" || path.starts_with("/api/")) && path != "/api/tls-ask"
}

/// [`Router::route`] with a router built for `base_domain`.
pub fn route(parts: &Parts, base_domain: Option<&str>) -> Result<Route, RouteError> {
    Router::new(base_domain).route(parts)
}

fn app_name(name: &str) -> Result<TenantId, RouteError> {
    TenantId::new(name).map_err(|source| RouteError::InvalidAppName {
        name: name.chars().take(80).collect(),
        source,
    })
}

/// The host without port, from the URI authority (HTTP/2) or the `Host` header.
fn host(parts: &Parts) -> Option<&str> {
    let raw = match parts.uri.authority() {
        Some(a) => a.as_str(),
        None => parts.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    let raw = raw.rsplit_once('@').map_or(raw, |(_, h)| h);
    if raw.starts_with('[') {
        return None; // IPv6 literal: never a tenant host
    }
    Some(
        raw.split_once(':')
            .map_or(raw, |(h, _)| h)
            .trim_end_matches('.'),
    )
}

/// Matches `template` (`/api/apps/{name}/usage`) against `path`; on success
/// returns the `{name}` segment if the template has one.
fn match_template<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut name = None;
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(name),
            (Some("{name}"), Some(seg)) if !seg.is_empty() => name = Some(seg),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

/// Refuses traversal and forbidden bytes in the request target.
fn check_target(path: &str, query: Option<&str>) -> Result<(), RouteError> {
    let bad = |reason| Err(RouteError::BadPath { reason });
    // `*` (OPTIONS) and authority-form (CONNECT) targets are no path: a
    // tenant would otherwise see one that does not start with `/` (fuzzing).
    if !path.starts_with('/') {
        return bad("not an absolute path");
    }
    for part in [Some(path), query].into_iter().flatten() {
        if part.contains('\0') || contains_ci(part, "%00") {
            return bad("NUL byte");
        }
    }
    if contains_ci(path, "%2f") || contains_ci(path, "%5c") || path.contains('\\') {
        return bad("encoded slash or backslash");
    }
    for seg in path.split('/') {
        if decode_dots(seg).as_deref() == Some("..") {
            return bad("'..' segment");
        }
    }
    Ok(())
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The segment with `%2e` (any case) decoded, when it consists of dots only.
fn decode_dots(seg: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = seg;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("%2e")) {
            // `get`: byte 3 may fall inside a multi-byte character (fuzzing).
            rest = &rest[3..];
        } else {
            return None;
        }
        out.push('.');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn get(uri: &str, headers: &[(&str, &str)], domain: Option<&str>) -> Result<Route, RouteError> {
        route(&parts(Method::GET, uri, headers), domain)
    }

    fn tenant(name: &str, via: Via, pq: &str) -> Route {
        Route::Tenant {
            tenant: TenantId::new(name).unwrap(),
            via,
            path_and_query: pq.into(),
        }
    }

    #[test]
    fn tenant_by_path_strips_prefix() {
        assert_eq!(
            get("/apps/demo/", &[], None),
            Ok(tenant("demo", Via::Path, "/"))
        );
        assert_eq!(
            get("/apps/demo", &[], None),
            Ok(tenant("demo", Via::Path, "/"))
        );
        assert_eq!(
            get("/apps/demo/a/b.txt?q=1&r", &[], None),
            Ok(tenant("demo", Via::Path, "/a/b.txt?q=1&r"))
        );
        assert_eq!(
            get("/apps/demo?x=y", &[], None),
            Ok(tenant("demo", Via::Path, "/?x=y"))
        );
        assert!(matches!(
            get("/apps/Demo/", &[], None),
            Err(RouteError::InvalidAppName { ref name, source: InvalidTenantId::BadChar { ch: 'D', at: 0 } }) if name == "Demo"
        ));
        assert!(matches!(
            get("/apps//x", &[], None),
            Err(RouteError::InvalidAppName {
                source: InvalidTenantId::Empty,
                ..
            })
        ));
    }

    #[test]
    fn tenant_by_host() {
        let d = Some("example.com");
        assert_eq!(
            get("/x", &[("host", "demo.example.com")], d),
            Ok(tenant("demo", Via::Host, "/x"))
        );
        assert_eq!(
            get("/x", &[("host", "Demo.Example.COM:8443")], d),
            Ok(tenant("demo", Via::Host, "/x"))
        );
        assert_eq!(
            get("http://shop.example.com/api/apps", &[], d),
            Ok(tenant("shop", Via::Host, "/api/apps"))
        );
        // The apex and foreign hosts are not tenants: the admin API answers there.
        assert!(matches!(
            get("/api/apps", &[("host", "example.com")], d),
            Ok(Route::Api {
                op: Op::ListApps,
                ..
            })
        ));
        assert!(matches!(
            get("/api/apps", &[("host", "evil-example.com")], d),
            Ok(Route::Api {
                op: Op::ListApps,
                ..
            })
        ));
        assert!(matches!(
            get("/", &[("host", "a.b.example.com")], d),
            Err(RouteError::InvalidAppName {
                source: InvalidTenantId::BadChar { ch: '.', at: 1 },
                ..
            })
        ));
        // Without a base domain the host is ignored.
        assert!(matches!(
            get("/healthz", &[("host", "demo.example.com")], None),
            Ok(Route::Api {
                op: Op::Healthz,
                auth: false,
                ..
            })
        ));
        assert!(matches!(
            get("/healthz", &[("host", "[::1]:8080")], d),
            Ok(Route::Api {
                op: Op::Healthz,
                ..
            })
        ));
    }

    #[test]
    fn tenant_by_header_wins() {
        assert_eq!(
            get(
                "/apps/other/x",
                &[("x-corral-app", "demo"), ("host", "shop.example.com")],
                Some("example.com")
            ),
            Ok(tenant("demo", Via::Header, "/apps/other/x"))
        );
        assert!(matches!(
            get("/", &[("x-corral-app", "../etc")], None),
            Err(RouteError::InvalidAppName {
                source: InvalidTenantId::BadChar { ch: '.', at: 0 },
                ..
            })
        ));
    }

    #[test]
    fn traversal_is_refused_first() {
        for uri in [
            "/apps/demo/../x",
            "/apps/demo/%2e%2e/x",
            "/apps/demo/%2E%2e/x",
            "/apps/demo/.%2E",
            "/apps/demo/%2e./",
            "/..",
            "/apps/demo/a%2fb",
            "/apps/demo/a%2Fb",
            "/apps/demo/a%5cb",
            "/apps/demo/a%00b",
            "/apps/demo/x?a=%00",
            "/api/apps/%2e%2e",
        ] {
            let r = get(uri, &[("x-corral-app", "demo")], None);
            assert!(matches!(r, Err(RouteError::BadPath { .. })), "{uri}: {r:?}");
            assert_eq!(r.unwrap_err().status(), http::StatusCode::BAD_REQUEST);
        }
        // Found by fuzzing (fuzz/regressions/router): targets that are no
        // path reached a tenant as its path.
        for uri in ["*", "de", "example.com:80"] {
            let r = get(uri, &[("x-corral-app", "demo")], None);
            assert!(matches!(r, Err(RouteError::BadPath { .. })), "{uri}: {r:?}");
        }
        // Found by fuzzing: a multi-byte character at byte 3 of a segment
        // panicked the traversal check (hyper passes such bytes through).
        assert_eq!(
            get("/apps/demo/xo\u{2d3}ao/h", &[], None),
            Ok(tenant("demo", Via::Path, "/xo\u{2d3}ao/h"))
        );
        // Dots inside names are fine.
        assert_eq!(
            get("/apps/demo/a..b/.well-known/x.", &[], None),
            Ok(tenant("demo", Via::Path, "/a..b/.well-known/x."))
        );
        assert_eq!(
            get("/apps/demo/%2e%2ex", &[], None),
            Ok(tenant("demo", Via::Path, "/%2e%2ex"))
        );
    }

    #[test]
    fn api_routes() {
        let r = |m: Method, uri: &str| route(&parts(m, uri, &[]), None);
        assert_eq!(
            r(Method::PUT, "/api/apps/demo?tier=pro"),
            Ok(Route::Api {
                op: Op::PutApp,
                name: Some(TenantId::new("demo").unwrap()),
                auth: true
            })
        );
        assert!(matches!(
            r(Method::DELETE, "/api/apps/demo"),
            Ok(Route::Api {
                op: Op::DeleteApp,
                ..
            })
        ));
        assert!(matches!(
            r(Method::PATCH, "/api/apps/demo"),
            Ok(Route::Api {
                op: Op::PatchApp,
                ..
            })
        ));
        assert!(matches!(
            r(Method::GET, "/api/apps/demo/status"),
            Ok(Route::Api {
                op: Op::AppStatus,
                ..
            })
        ));
        assert!(matches!(
            r(Method::GET, "/api/apps/demo/export"),
            Ok(Route::Api {
                op: Op::ExportApp,
                auth: true,
                ..
            })
        ));
        assert!(matches!(
            r(Method::POST, "/api/import?keep_tier=true&keep_usage=true"),
            Ok(Route::Api {
                op: Op::Import,
                name: None,
                auth: true
            })
        ));
        assert_eq!(
            r(Method::GET, "/api/import"),
            Err(RouteError::MethodNotAllowed {
                allow: vec!["POST"]
            })
        );
        assert!(matches!(
            r(Method::HEAD, "/healthz"),
            Ok(Route::Api {
                op: Op::Healthz,
                ..
            })
        ));
        assert_eq!(
            r(Method::POST, "/api/apps/demo"),
            Err(RouteError::MethodNotAllowed {
                allow: vec!["PUT", "GET", "PATCH", "DELETE"]
            })
        );
        assert_eq!(
            r(Method::GET, "/api/nope"),
            Err(RouteError::NotFound {
                path: "/api/nope".into()
            })
        );
        assert_eq!(r(Method::GET, "/").unwrap_err().code(), "not_found");
        assert!(matches!(
            r(Method::GET, "/api/apps/UPPER"),
            Err(RouteError::InvalidAppName { .. })
        ));
        assert!(matches!(
            r(Method::GET, "/api/apps/"),
            Err(RouteError::NotFound { .. })
        ));
        assert!(matches!(
            r(Method::GET, "/api/apps/demo/usage/x"),
            Err(RouteError::NotFound { .. })
        ));
    }

    fn routed(
        routing: (bool, Option<&str>),
        domain: Option<&str>,
        uri: &str,
        host: &str,
    ) -> Result<Route, RouteError> {
        let cfg = crate::config::RoutingConfig {
            path: routing.0,
            admin_host: routing.1.map(str::to_owned),
        };
        Router::new(domain)
            .routing(&cfg)
            .route(&parts(Method::GET, uri, &[("host", host)]))
    }

    #[test]
    fn path_routing_can_be_switched_off() {
        let d = Some("example.com");
        assert_eq!(
            routed((true, None), d, "/apps/demo/x", "example.com"),
            Ok(tenant("demo", Via::Path, "/x"))
        );
        for uri in ["/apps/demo/x", "/apps/demo", "/apps/"] {
            let r = routed((false, None), d, uri, "example.com");
            assert!(
                matches!(r, Err(RouteError::NotFound { .. })),
                "{uri}: {r:?}"
            );
        }
        // Subdomains and the header still reach the app.
        assert_eq!(
            routed((false, None), d, "/apps/demo/x", "demo.example.com"),
            Ok(tenant("demo", Via::Host, "/apps/demo/x"))
        );
        let by_header = Router::new(d)
            .routing(&crate::config::RoutingConfig {
                path: false,
                admin_host: None,
            })
            .route(&parts(Method::GET, "/apps/x/", &[("x-corral-app", "demo")]));
        assert_eq!(by_header, Ok(tenant("demo", Via::Header, "/apps/x/")));
    }

    #[test]
    fn console_routes_and_admin_host() {
        let d = Some("example.com");
        for uri in ["/console", "/console/", "/console/api/apps"] {
            assert_eq!(
                routed((true, None), d, uri, "example.com"),
                Ok(Route::Console)
            );
        }
        // An app's own host keeps its /console path.
        assert_eq!(
            routed((true, None), d, "/console/", "demo.example.com"),
            Ok(tenant("demo", Via::Host, "/console/"))
        );
        let admin = (true, Some("admin.example.com"));
        assert_eq!(
            routed(admin, d, "/console/", "admin.example.com"),
            Ok(Route::Console)
        );
        let r = routed(admin, d, "/console/", "example.com");
        assert!(matches!(r, Err(RouteError::NotFound { .. })), "{r:?}");
        assert!(routed((true, None), d, "/consoles", "example.com").is_err());
    }

    #[test]
    fn admin_host_binds_the_api() {
        let d = Some("example.com");
        let admin = (true, Some("admin.example.com"));
        for host in [
            "admin.example.com",
            "ADMIN.example.com:8443",
            "admin.example.com.",
        ] {
            assert!(
                matches!(
                    routed(admin, d, "/api/apps", host),
                    Ok(Route::Api {
                        op: Op::ListApps,
                        ..
                    })
                ),
                "{host}"
            );
        }
        for host in [
            "example.com",
            "127.0.0.1:8080",
            "evil.test",
            "demo.example.com",
        ] {
            let r = routed(admin, None, "/api/apps", host);
            assert!(
                matches!(r, Err(RouteError::NotFound { .. })),
                "{host}: {r:?}"
            );
            // Not a 405 that would tell a stranger the route exists.
            let r = Router::new(None)
                .routing(&crate::config::RoutingConfig {
                    path: true,
                    admin_host: Some("admin.example.com".into()),
                })
                .route(&parts(Method::POST, "/api/apps/demo", &[("host", host)]));
            assert!(
                matches!(r, Err(RouteError::NotFound { .. })),
                "{host}: {r:?}"
            );
        }
        // Probes and the TLS proxy's question answer on every host.
        for uri in ["/healthz", "/readyz", "/metrics", "/api/tls-ask?domain=x"] {
            assert!(
                matches!(routed(admin, d, uri, "127.0.0.1"), Ok(Route::Api { .. })),
                "{uri}"
            );
        }
        // The admin host serves no app by host or path, even under base_domain.
        let r = routed(admin, d, "/apps/demo/", "admin.example.com");
        assert!(matches!(r, Err(RouteError::NotFound { .. })), "{r:?}");
        assert!(matches!(
            routed(admin, d, "/", "admin.example.com"),
            Err(RouteError::NotFound { .. })
        ));
        // Elsewhere apps are reached as before.
        assert_eq!(
            routed(admin, d, "/apps/demo/", "example.com"),
            Ok(tenant("demo", Via::Path, "/"))
        );
        assert_eq!(
            routed(admin, d, "/", "admin2.example.com"),
            Ok(tenant("admin2", Via::Host, "/"))
        );
    }

    #[test]
    fn every_op_has_exactly_one_route() {
        use std::collections::HashMap;
        let mut seen: HashMap<Op, usize> = HashMap::new();
        for s in ROUTES {
            *seen.entry(s.op).or_default() += 1;
        }
        assert_eq!(seen.len(), 31, "one route per Op variant");
        assert!(seen.values().all(|&n| n == 1));
        let public: Vec<_> = ROUTES.iter().filter(|s| !s.auth).map(|s| s.path).collect();
        assert_eq!(public, ["/api/tls-ask", "/healthz", "/readyz"]);
    }
}
