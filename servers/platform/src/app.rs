//! The application: routes each request to a tenant (through
//! `corral::Platform`'s service, with every limit layer) or to the admin API.
//!
//! [`app`] builds it from a [`ServerConfig`]; it is a hyper service, so tests
//! and embedders can serve it on any listener with [`crate::http::serve`].

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use corral::platform::{
    Bundle, ImportOptions, Platform, PlatformConfig, PlatformError, PlatformService,
};
use corral::{Kind, TenantId};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::auth::{AccountTokens, AdminAuth, AdminGate, AuthError, Denied, Principal};
use crate::config::ServerConfig;
use crate::http::{
    Body, BodyBudget, BodyError, GuardedBody, Peer, collect_limited, discard, error, full, json,
};
use crate::routes::{Op, Route, RouteError, Router};

/// Most `GET /api/apps/{name}/logs?follow=1` streams open at once on a
/// node; more get 429 `too_many_log_streams`.
pub const MAX_LOG_FOLLOWERS: usize = 64;

/// How often a followed log is checked for new lines.
pub const LOG_FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// A followed log with nothing new sends an SSE comment this often, so a
/// stream whose client has gone is noticed and closed.
pub const LOG_FOLLOW_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The app deployed as `demo` on first start.
pub const DEMO_JS: &str = include_str!("demo.js");

/// The name of the demo app.
pub const DEMO_APP: &str = "demo";

/// Marker file: the demo was deployed once, so deleting it is final.
const DEMO_MARKER: &str = "demo-deployed";
/// The header naming the node that ran a tenant request (`[nodes] name`).
pub const NODE_HEADER: &str = "x-corral-node";

/// Why the server could not start or run a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The platform settings in the config file are invalid.
    #[error("invalid platform settings: {0}")]
    PlatformConfig(#[source] toml::de::Error),
    /// The platform failed.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The admin token could not be set up.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An app name given on the command line is invalid.
    #[error("invalid app name {name:?}: {source}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is invalid.
        #[source]
        source: corral::InvalidTenantId,
    },
    /// A subcommand that asks the running server (`tenant move`) failed.
    #[error(transparent)]
    Client(Box<crate::client::ClientError>),
    /// An I/O error (listener, archive file, stdout).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The platform settings of `cfg`: every key the server does not own, plus `data_dir`.
///
/// ```
/// use corral_server::{app::platform_config, config::ServerConfig};
/// let cfg = ServerConfig::load(Some("default_tier = \"pro\""), &corral_server::cli::no_env()).unwrap();
/// let pc = platform_config(&cfg).unwrap();
/// assert_eq!(pc.default_tier, "pro");
/// assert_eq!(pc.data_dir, cfg.data_dir);
/// ```
pub fn platform_config(cfg: &ServerConfig) -> Result<PlatformConfig, ServerError> {
    let mut table = cfg.platform.clone();
    table.insert(
        "data_dir".into(),
        toml::Value::String(cfg.data_dir.to_string_lossy().into_owned()),
    );
    toml::Value::Table(table)
        .try_into()
        .map_err(ServerError::PlatformConfig)
}

/// Builds the platform for `cfg` (the subcommands that need no HTTP use this).
/// Must be called inside a tokio runtime.
pub fn platform(cfg: &ServerConfig) -> Result<Platform, ServerError> {
    Ok(Platform::builder().config(platform_config(cfg)?).build()?)
}

/// A started application and what to tell the operator once.
#[derive(Debug)]
#[non_exhaustive]
pub struct Started {
    /// The application (a hyper service; clone it per connection).
    pub app: App,
    /// The admin token, when it was created by this start. Print it once.
    pub new_admin_token: Option<String>,
    /// Whether the demo app was deployed by this start.
    pub demo_deployed: bool,
}

/// Builds the application: the platform, the admin token, and on first start
/// the demo app. Must be called inside a tokio runtime.
pub async fn app(cfg: &ServerConfig) -> Result<Started, ServerError> {
    let platform = platform(cfg)?;
    let (auth, new_admin_token) =
        AdminAuth::load_or_create(&cfg.data_dir, cfg.admin.token_hash.as_deref())?;
    let marker = cfg.data_dir.join(DEMO_MARKER);
    let mut demo_deployed = false;
    if !marker.exists() {
        let demo = TenantId::new(DEMO_APP).expect("valid name");
        if platform.app(&demo)?.is_none() {
            // Built in, so not refused when the host is past a threshold:
            // the server must start (and answer the quick start) anyway.
            platform
                .deploy_builtin(
                    &demo,
                    None,
                    Bundle::code(Kind::Js, DEMO_JS.as_bytes().to_vec()),
                )
                .await?;
            demo_deployed = true;
        }
        std::fs::write(&marker, b"").map_err(|source| ServerError::Io {
            what: format!("writing {}", marker.display()),
            source,
        })?;
    }
    let service = platform.service();
    let history = Arc::new(crate::history::UsageHistory::load(&platform));
    spawn_history(&platform, &history);
    let app = App {
        inner: Arc::new(Inner {
            router: Router::new(cfg.base_domain.as_deref()).routing(&cfg.routing),
            base_domain: cfg.base_domain.clone(),
            auth: AdminGate::new(auth).with_account_tokens(AccountTokens::load(
                platform.store().tokens().map_err(PlatformError::from)?,
            )),
            admin: Semaphore::new(cfg.admin.max_concurrent),
            max_uri_bytes: cfg.http.max_uri_bytes,
            max_admin_body: cfg.http.max_admin_body_bytes,
            bodies: BodyBudget::new(cfg.http.max_buffered_body_bytes, cfg.http.body_read_timeout),
            draining: AtomicBool::new(false),
            log_followers: Arc::new(Semaphore::new(MAX_LOG_FOLLOWERS)),
            console: crate::console::Console::new(),
            history,
            moves: crate::moves::Moves::new(cfg.nodes.clone()),
            node_header: cfg
                .nodes
                .name
                .as_deref()
                .and_then(|n| HeaderValue::from_str(n).ok()),
            drain_timeout: cfg.http.drain_timeout,
            service,
            platform,
        }),
    };
    Ok(Started {
        app,
        new_admin_token,
        demo_deployed,
    })
}

/// The application: a cheap-to-clone hyper service.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    platform: Platform,
    service: PlatformService,
    router: Router,
    base_domain: Option<String>,
    auth: AdminGate,
    /// The admin reserve: admin requests run apart from tenant limits, at most this many at once.
    admin: Semaphore,
    max_uri_bytes: usize,
    max_admin_body: u64,
    /// Whole-body deadline and host-wide cap on buffered body bytes.
    bodies: BodyBudget,
    draining: AtomicBool,
    /// Open log follows (`?follow=1`), at most [`MAX_LOG_FOLLOWERS`].
    log_followers: Arc<Semaphore>,
    /// The operator console: its assets and sessions, all in memory.
    console: crate::console::Console,
    /// Requests and errors per app per hour, 30 days.
    history: Arc<crate::history::UsageHistory>,
    /// Apps moving to, or moved to, another node.
    moves: crate::moves::Moves,
    /// `x-corral-node` on every tenant answer, when `[nodes] name` is set.
    node_header: Option<HeaderValue>,
    /// How long a move waits for the app's running requests and streams.
    drain_timeout: std::time::Duration,
}

/// A request body as handlers see it: under the body deadline and the
/// host-wide buffered-bytes cap ([`BodyBudget`]).
pub type RequestBody = GuardedBody<Incoming>;

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("platform", &self.inner.platform)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The platform behind the app.
    pub fn platform(&self) -> &Platform {
        &self.inner.platform
    }

    /// Marks the app as draining: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Flushes usage and closes the store. Call after the server has drained.
    pub async fn shutdown(&self) {
        self.start_draining();
        // The hour so far, so the charts keep it across the restart.
        let p = self.inner.platform.clone();
        let history = self.inner.history.clone();
        let saved = tokio::task::spawn_blocking(move || {
            history.sample(&p);
            history.save(&p)
        })
        .await;
        if let Ok(Err(e)) = saved {
            tracing::warn!("saving the usage history: {e}");
        }
        self.inner.platform.shutdown().await;
    }

    /// Handles one request.
    ///
    /// Everything that can refuse a request is decided from its head before
    /// a body byte is read: an unknown app is 404, a declared body over the
    /// app's tier cap is 413, a bad admin token is 401 or 429. Health and
    /// readiness (`/healthz`, `/readyz`, `/api/tls-ask`) never queue behind
    /// admin work or argon2.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if target > self.inner.max_uri_bytes {
            return error(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("request target exceeds {} bytes", self.inner.max_uri_bytes),
            );
        }
        // Body bytes stay counted host-wide until the response head is out.
        let (body, _held) = self.inner.bodies.guard(body);
        match self.inner.router.route(&parts) {
            Err(e) => {
                discard(&parts.headers, body);
                route_error(&e)
            }
            Ok(Route::Tenant {
                tenant,
                via,
                path_and_query,
            }) => {
                let app = tenant.clone();
                let mut resp = self.tenant(parts, body, tenant, &path_and_query).await;
                if let Some(node) = &self.inner.node_header
                    && resp.extensions().get::<crate::moves::Forwarded>().is_none()
                {
                    // Which node ran the request, for operators tracing a
                    // fleet (set over whatever the guest said; a forwarded
                    // answer keeps the one its node set).
                    resp.headers_mut().insert(NODE_HEADER, node.clone());
                }
                crate::hygiene::confine(resp, via, &app)
            }
            // The cold routes' futures are boxed: the tenant route's stays
            // small, and every request's future is moved into its box whole.
            Ok(Route::Console) => {
                Box::pin(crate::console::serve(
                    self,
                    &self.inner.console,
                    parts,
                    body,
                ))
                .await
            }
            // Unauthenticated system routes: no admin slot, no argon2.
            Ok(Route::Api {
                op,
                name,
                auth: false,
            }) => Box::pin(self.api(op, name, Principal::Admin, parts, body)).await,
            Ok(Route::Api { op, name, .. }) => {
                let principal = match Box::pin(self.authorize(&parts)).await {
                    Ok(p) => p,
                    Err(r) => {
                        discard(&parts.headers, body);
                        return r;
                    }
                };
                Box::pin(self.admin_api(op, name, principal, parts, body)).await
            }
        }
    }

    /// An authenticated admin operation for `principal`: its permission
    /// check, then one slot of the admin reserve (apart from every tenant
    /// limit). The console's `/console/api/…` routes come here too.
    pub(crate) async fn admin_api(
        &self,
        op: Op,
        name: Option<TenantId>,
        principal: Principal,
        parts: http::request::Parts,
        body: RequestBody,
    ) -> Response<Body> {
        if let Err(denied) = self.permit(&principal, op, name.as_ref(), &parts.uri) {
            discard(&parts.headers, body);
            return denied.to_response();
        }
        let Ok(_permit) = self.inner.admin.acquire().await else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "server is shutting down",
            );
        };
        self.api(op, name, principal, parts, body).await
    }

    /// The console's state.
    pub(crate) fn console(&self) -> &crate::console::Console {
        &self.inner.console
    }

    /// The router (the console maps its thin routes through its table).
    pub(crate) fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The token gate (the console's login checks a token through it).
    pub(crate) fn gate(&self) -> &AdminGate {
        &self.inner.auth
    }

    /// Whether `principal` may run `op` on `name`: the admin token may run
    /// everything; an account token only the routes marked for accounts
    /// ([`RouteSpec::account`](crate::routes::RouteSpec)), on its own apps
    /// (or a new app, which it deploys into its account) and its own
    /// account, and never with a `tier` or another `account` (the
    /// operator's to set). From memory: no storage read.
    fn permit(
        &self,
        principal: &Principal,
        op: Op,
        name: Option<&TenantId>,
        uri: &http::Uri,
    ) -> Result<(), Denied> {
        let Principal::Account(account) = principal else {
            return Ok(());
        };
        let forbidden = || Denied::Forbidden {
            account: account.clone(),
        };
        if !crate::routes::spec_of(op).account {
            return Err(forbidden());
        }
        match (op, name) {
            (Op::GetAccount | Op::AccountUsage, Some(n)) if n != account => Err(forbidden()),
            (Op::GetAccount | Op::AccountUsage | Op::ListApps, _) => Ok(()),
            (_, Some(app)) => {
                if op == Op::PutApp
                    && (query_param(uri, "tier").is_some()
                        || query_param(uri, "account").is_some_and(|a| a != account.as_str()))
                {
                    return Err(forbidden());
                }
                match self.inner.platform.app_account(app) {
                    Some(owner) if owner != *account => Err(forbidden()),
                    // Its own app, or none of that name (a deploy makes it
                    // in the token's account; a read answers 404).
                    _ => Ok(()),
                }
            }
            (_, None) => Err(forbidden()),
        }
    }

    /// Checks the admin token: from RAM once argon2 has accepted it; argon2
    /// otherwise, throttled per client address and bounded host-wide, never
    /// holding an admin slot.
    pub(crate) async fn authorize(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Principal, Response<Body>> {
        let client = parts
            .extensions
            .get::<Peer>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip());
        self.inner
            .auth
            .check(&parts.headers, client)
            .await
            .map_err(|denied| denied.to_response())
    }

    async fn tenant(
        &self,
        parts: http::request::Parts,
        body: RequestBody,
        tenant: TenantId,
        path_and_query: &str,
    ) -> Response<Body> {
        use http_body::Body as _;
        // An app moving away waits here; one that moved is forwarded.
        match self.inner.moves.settle(&tenant).await {
            Ok(None) => {}
            Ok(Some(to)) => return Box::pin(self.forward_moved(&to, parts, body)).await,
            Err(r) => {
                discard(&parts.headers, body);
                return r;
            }
        }
        // The app and its tier come from memory, before any body byte is read.
        // The one lookup of the app on this request's way to the engine:
        // the record goes down in the request (`AppRef::insert_into`).
        let Some(app) = self.inner.platform.resolve_app(&tenant) else {
            discard(&parts.headers, body);
            return not_found(&tenant);
        };
        let limit = app.tier().max_body_bytes;
        if let Some(len) = declared_length(&parts.headers).filter(|len| *len > limit) {
            discard(&parts.headers, body);
            return self.payload_too_large(&tenant, limit, Some(len));
        }
        let bytes = if body.is_end_stream() {
            Bytes::new()
        } else {
            // A body without a declared length is cut at this tier's cap.
            match collect_limited(&parts.headers, body, limit).await {
                Ok(b) => b,
                Err(BodyError::TooLarge { limit }) => {
                    return self.payload_too_large(&tenant, limit, None);
                }
                Err(e) => return e.to_response(),
            }
        };
        // A move may have begun while the body arrived: it runs on the new
        // node then, never here after the app's state was handed over.
        match self.inner.moves.settle(&tenant).await {
            Ok(None) => {}
            Ok(Some(to)) => return Box::pin(self.inner.moves.forward(&to, parts, bytes)).await,
            Err(r) => return r,
        }
        let mut req = Request::from_parts(parts, bytes);
        // The mark between nodes is the platform's, not the app's.
        req.headers_mut().remove(crate::moves::FORWARDED);
        match path_and_query.parse::<http::Uri>() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return error(StatusCode::BAD_REQUEST, "bad_path", "unparsable path"),
        }
        app.insert_into(&mut req);
        match self.inner.service.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(e) => platform_error(&e),
        }
    }

    /// A request for an app that moved to another node: its body, under
    /// the app's own cap, goes on with it.
    async fn forward_moved(
        &self,
        to: &crate::moves::Forward,
        parts: http::request::Parts,
        body: RequestBody,
    ) -> Response<Body> {
        let bytes = match collect_limited(&parts.headers, body, to.max_body).await {
            Ok(b) => b,
            Err(e) => return e.to_response(),
        };
        self.inner.moves.forward(to, parts, bytes).await
    }

    /// 413 `payload_too_large` for `tenant`, counted under its refusals
    /// (never against its quota), as the platform counts its own.
    fn payload_too_large(
        &self,
        tenant: &TenantId,
        limit: u64,
        size: Option<u64>,
    ) -> Response<Body> {
        self.inner
            .platform
            .count_refusal(tenant, corral::limits_layers::Refusal::PayloadTooLarge);
        let refused =
            corral::limits_layers::Refused::payload_too_large(Some(tenant.clone()), limit, size);
        platform_error(&PlatformError::Refused(Box::new(refused)))
    }

    async fn api(
        &self,
        op: Op,
        name: Option<TenantId>,
        principal: Principal,
        parts: http::request::Parts,
        body: RequestBody,
    ) -> Response<Body> {
        let p = &self.inner.platform;
        let need_name = || name.clone().expect("route has {name}");
        let result: Result<Response<Body>, Response<Body>> = async {
            Ok(match op {
                Op::ListApps => {
                    let mut apps = p.apps().map_err(|e| platform_error(&e))?;
                    if let Principal::Account(a) = &principal {
                        apps.retain(|app| app.account == *a);
                    }
                    if matches!(query_param(&parts.uri, "stats").as_deref(), Some("1" | "true")) {
                        ok_json(&apps.iter().map(|a| app_row(p, a)).collect::<Vec<_>>())
                    } else {
                        ok_json(&apps)
                    }
                }
                Op::GetApp => {
                    let n = need_name();
                    match p.app(&n).map_err(|e| platform_error(&e))? {
                        Some(a) => ok_json(&a),
                        None => not_found(&n),
                    }
                }
                Op::PutApp => {
                    let n = need_name();
                    let tier = query_param(&parts.uri, "tier");
                    let account = match (query_param(&parts.uri, "account"), &principal) {
                        (None, Principal::Admin) => None,
                        // An account token deploys into its account (permit
                        // refused any other).
                        (_, Principal::Account(a)) => Some(a.clone()),
                        (Some(a), _) => Some(TenantId::new(&a).map_err(|_| {
                            error(StatusCode::BAD_REQUEST, "bad_request", "account: not a valid name")
                        })?),
                    };
                    let cap = p
                        .deploy_bundle_limit(&n, tier.as_deref(), account.as_ref())
                        .map_err(|e| platform_error(&e))?;
                    let bytes = match collect_limited(&parts.headers, body, cap).await {
                        Ok(b) => b,
                        Err(BodyError::TooLarge { limit }) => {
                            return Err(json(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                &json!({"error": "bundle_too_large", "limit": limit,
                                        "message": format!("bundle exceeds the tier's limit of {limit} bytes")}),
                            ));
                        }
                        Err(e) => return Err(e.to_response()),
                    };
                    let ct = parts
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok());
                    let bundle = Bundle::detect(bytes.to_vec(), ct).map_err(|e| platform_error(&e))?;
                    let deployed = match (&account, &tier) {
                        (Some(a), None) => p.deploy_in(&n, a, bundle).await,
                        (Some(_), Some(_)) => {
                            return Err(error(
                                StatusCode::BAD_REQUEST,
                                "bad_request",
                                "give tier or account, not both: an app runs on its account's tier",
                            ));
                        }
                        (None, _) => p.deploy(&n, tier.as_deref(), bundle).await,
                    };
                    let deployed = deployed.map_err(|e| platform_error(&e))?;
                    // Deployed here again: this node serves it, not the one it moved to.
                    self.inner.moves.forget(&n);
                    ok_json(&deployed)
                }
                Op::PatchApp => {
                    let n = need_name();
                    let v = self.json_body(&parts.headers, body).await?;
                    let tier = v.get("tier").and_then(|t| t.as_str());
                    let account = v.get("account").and_then(|t| t.as_str());
                    let moved = match (tier, account) {
                        (Some(tier), None) => p.set_tier(&n, tier).await,
                        (None, Some(a)) => {
                            let a = TenantId::new(a).map_err(|_| {
                                error(StatusCode::BAD_REQUEST, "bad_request", "account: not a valid name")
                            })?;
                            p.move_app(&n, &a).await
                        }
                        _ => {
                            return Err(error(
                                StatusCode::BAD_REQUEST,
                                "bad_request",
                                "expected {\"tier\": \"<name>\"} or {\"account\": \"<name>\"}",
                            ));
                        }
                    };
                    ok_json(&moved.map_err(|e| platform_error(&e))?)
                }
                Op::ListAccounts => ok_json(&p.accounts().map_err(|e| platform_error(&e))?),
                Op::GetAccount => {
                    let n = need_name();
                    match p.account(&n).map_err(|e| platform_error(&e))? {
                        Some(a) => ok_json(&a),
                        None => platform_error(&PlatformError::AccountNotFound { account: n }),
                    }
                }
                Op::PutAccount => {
                    let n = need_name();
                    let v = self.json_body(&parts.headers, body).await?;
                    let Some(tier) = v.get("tier").and_then(|t| t.as_str()) else {
                        return Err(error(StatusCode::BAD_REQUEST, "bad_request", "expected {\"tier\": \"<name>\"}"));
                    };
                    let exists = p.account(&n).map_err(|e| platform_error(&e))?.is_some();
                    let info = if exists {
                        p.set_account_tier(&n, tier).await
                    } else {
                        p.create_account(&n, tier).await
                    };
                    ok_json(&info.map_err(|e| platform_error(&e))?)
                }
                Op::DeleteAccount => {
                    let n = need_name();
                    if p.delete_account(&n).map_err(|e| platform_error(&e))? {
                        self.inner.auth.account_tokens().remove_account(&n);
                        ok_json(&json!({"name": n, "deleted": true}))
                    } else {
                        platform_error(&PlatformError::AccountNotFound { account: n })
                    }
                }
                Op::AccountUsage => {
                    ok_json(&p.account_usage(&need_name()).map_err(|e| platform_error(&e))?)
                }
                Op::IssueToken => {
                    let n = need_name();
                    if p.account(&n).map_err(|e| platform_error(&e))?.is_none() {
                        return Err(platform_error(&PlatformError::AccountNotFound { account: n }));
                    }
                    let (rec, token) = AccountTokens::issue(&n);
                    p.store().create_token(&rec).map_err(|e| platform_error(&e.into()))?;
                    self.inner.auth.account_tokens().insert(&rec);
                    ok_json(&json!({
                        "id": rec.id,
                        "account": n,
                        "created": rec.created,
                        "token": token,
                        "message": "store this token now: it is shown once",
                    }))
                }
                Op::ListTokens => {
                    let n = need_name();
                    if p.account(&n).map_err(|e| platform_error(&e))?.is_none() {
                        return Err(platform_error(&PlatformError::AccountNotFound { account: n }));
                    }
                    ok_json(&p.store().account_tokens(&n).map_err(|e| platform_error(&e.into()))?)
                }
                Op::RevokeToken => {
                    let id = need_name();
                    match p.store().delete_token(id.as_str()).map_err(|e| platform_error(&e.into()))? {
                        Some(account) => {
                            self.inner.auth.account_tokens().remove(id.as_str());
                            ok_json(&json!({"id": id, "account": account, "revoked": true}))
                        }
                        None => error(StatusCode::NOT_FOUND, "not_found", format!("no token {id}")),
                    }
                }
                Op::DeleteApp => {
                    let n = need_name();
                    if p.remove(&n).map_err(|e| platform_error(&e))? {
                        ok_json(&json!({"name": n, "deleted": true}))
                    } else {
                        not_found(&n)
                    }
                }
                Op::AppUsage => ok_json(&p.usage(&need_name()).map_err(|e| platform_error(&e))?),
                Op::AppLogs => {
                    let n = need_name();
                    match query_param(&parts.uri, "follow").as_deref() {
                        None | Some("0" | "false") => {
                            let lines = p.logs(&n).map_err(|e| platform_error(&e))?;
                            ok_json(&json!({ "lines": lines }))
                        }
                        Some("1" | "true") => self.follow_logs(n)?,
                        Some(_) => {
                            return Err(error(StatusCode::BAD_REQUEST, "bad_request", "follow must be 1 or 0"));
                        }
                    }
                }
                Op::AppHistory => {
                    let n = need_name();
                    if p.app_tier(&n).is_none() {
                        return Err(not_found(&n));
                    }
                    // Up to this minute: a sample costs a walk over the meter, in memory.
                    self.inner.history.sample(p);
                    let hours: Vec<_> = self
                        .inner
                        .history
                        .of(&n)
                        .into_iter()
                        .map(|(h, requests, errors)| json!({"hour": h * 3600, "requests": requests, "errors": errors}))
                        .collect();
                    ok_json(&json!({"name": n, "hours": hours}))
                }
                Op::AppStatus => ok_json(&p.status(&need_name()).map_err(|e| platform_error(&e))?),
                Op::ExportApp => {
                    let n = need_name();
                    let p2 = p.clone();
                    let archive = tokio::task::spawn_blocking(move || p2.export_tenant(&n))
                        .await
                        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?
                        .map_err(|e| platform_error(&e))?;
                    let mut r = Response::new(full(archive));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/x-tar"),
                    );
                    r
                }
                Op::Import => {
                    let options = import_options(&parts.uri)
                        .map_err(|m| error(StatusCode::BAD_REQUEST, "bad_request", m))?;
                    let archive = collect_limited(&parts.headers, body, self.inner.max_admin_body)
                        .await
                        .map_err(|e| e.to_response())?;
                    let name = p
                        .import_tenant(archive.to_vec(), options)
                        .await
                        .map_err(|e| platform_error(&e))?;
                    self.inner.moves.forget(&name);
                    let info = p.app(&name).map_err(|e| platform_error(&e))?;
                    ok_json(&json!({"imported": name, "app": info}))
                }
                Op::MoveApp => {
                    #[derive(serde::Deserialize)]
                    #[serde(deny_unknown_fields)]
                    struct MoveTo {
                        to: String,
                    }
                    let n = need_name();
                    let to: MoveTo = serde_json::from_value(
                        self.json_body(&parts.headers, body).await?,
                    )
                    .map_err(|e| {
                        error(StatusCode::BAD_REQUEST, "bad_json", format!("expected {{\"to\": \"<node>\"}}: {e}"))
                    })?;
                    let auth = parts.headers.get(header::AUTHORIZATION).cloned();
                    let moved = self
                        .inner
                        .moves
                        .move_app(p, n, &to.to, auth, self.inner.drain_timeout)
                        .await
                        .map_err(|e| e.to_response())?;
                    ok_json(&moved)
                }
                Op::Host => ok_json(&p.host()),
                Op::Recalibrate => {
                    let p2 = p.clone();
                    let host = tokio::task::spawn_blocking(move || p2.recalibrate())
                        .await
                        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?
                        .map_err(|e| platform_error(&e))?;
                    ok_json(&host)
                }
                Op::Maintenance => {
                    let v = self.json_body(&parts.headers, body).await?;
                    let Some(on) = v.get("on").and_then(|t| t.as_bool()) else {
                        return Err(error(StatusCode::BAD_REQUEST, "bad_request", "expected {\"on\": true|false}"));
                    };
                    p.set_maintenance(on);
                    ok_json(&json!({"maintenance": p.maintenance()}))
                }
                Op::Gauges => gauges(p),
                Op::Overview => ok_json(&overview(p)),
                Op::Simulate => {
                    // `probe=1`: this host's figures read afresh (the
                    // recalibrate preview), off the async workers.
                    let fresh = if matches!(query_param(&parts.uri, "probe").as_deref(), Some("1" | "true")) {
                        let dir = p.config().data_dir.clone();
                        let probe = tokio::task::spawn_blocking(move || {
                            use corral::metering::HostProbe;
                            corral::metering::SysinfoProbe::new(dir).probe()
                        })
                        .await
                        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
                        Some(probe)
                    } else {
                        None
                    };
                    ok_json(&simulate(p, &parts.uri, fresh).map_err(|m| error(StatusCode::BAD_REQUEST, "bad_request", m))?)
                }
                Op::OpenApi => ok_json(&crate::openapi::document()),
                Op::TlsAsk => self.tls_ask(&parts.uri),
                Op::Metrics => {
                    let mut r = Response::new(full(p.metrics()));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    r
                }
                Op::Healthz => text(StatusCode::OK, "ok\n"),
                Op::Readyz => {
                    if self.inner.draining.load(Ordering::SeqCst) {
                        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                    } else {
                        text(StatusCode::OK, "ready\n")
                    }
                }
            })
        }
        .await;
        let mut resp = result.unwrap_or_else(|r| r);
        if parts.method == Method::HEAD {
            *resp.body_mut() = full(Bytes::new());
        }
        resp
    }

    /// `GET /api/apps/{name}/logs?follow=1`: server-sent events, one
    /// `data:` line per log line: the kept lines first, then new ones as
    /// they arrive (checked every [`LOG_FOLLOW_POLL`]). The stream ends when
    /// the app is removed (`event: end`), and when the server shuts down.
    #[allow(clippy::result_large_err)]
    fn follow_logs(&self, name: TenantId) -> Result<Response<Body>, Response<Body>> {
        let p = self.inner.platform.clone();
        // 404 for an unknown app before the stream starts.
        let (first, seen) = p.logs_after(&name, 0).map_err(|e| platform_error(&e))?;
        let Ok(permit) = self.inner.log_followers.clone().try_acquire_owned() else {
            return Err(error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_log_streams",
                format!("{MAX_LOG_FOLLOWERS} log streams are open on this node; try again later"),
            ));
        };
        struct Follow {
            p: Platform,
            name: TenantId,
            seen: u64,
            pending: Option<Vec<String>>,
            quiet: std::time::Duration,
            done: bool,
            _permit: tokio::sync::OwnedSemaphorePermit,
        }
        let state = Follow {
            p,
            name,
            seen,
            // A first frame even with no lines: the client sees the stream open.
            pending: Some(first),
            quiet: std::time::Duration::ZERO,
            done: false,
            _permit: permit,
        };
        let stream = futures_util::stream::unfold(state, |mut f| async move {
            if f.done {
                return None;
            }
            loop {
                if let Some(lines) = f.pending.take() {
                    let mut frame = String::new();
                    for line in &lines {
                        // One `data:` per line; a line holds no newline, but
                        // a stray carriage return must not end the field.
                        frame.push_str("data: ");
                        frame.push_str(&line.replace('\r', ""));
                        frame.push('\n');
                    }
                    frame.push_str(if lines.is_empty() {
                        ": following\n\n"
                    } else {
                        "\n"
                    });
                    return Some((frame, f));
                }
                tokio::time::sleep(LOG_FOLLOW_POLL).await;
                match f.p.logs_after(&f.name, f.seen) {
                    Ok((lines, seen)) if !lines.is_empty() => {
                        f.seen = seen;
                        f.quiet = std::time::Duration::ZERO;
                        f.pending = Some(lines);
                    }
                    Ok(_) => {
                        f.quiet += LOG_FOLLOW_POLL;
                        if f.quiet >= LOG_FOLLOW_KEEPALIVE {
                            f.quiet = std::time::Duration::ZERO;
                            return Some((": keepalive\n\n".to_owned(), f));
                        }
                    }
                    Err(_) => {
                        f.done = true;
                        return Some(("event: end\ndata: the app was removed\n\n".to_owned(), f));
                    }
                }
            }
        });
        Ok(event_stream(stream))
    }

    async fn json_body(
        &self,
        headers: &http::HeaderMap,
        body: RequestBody,
    ) -> Result<serde_json::Value, Response<Body>> {
        let bytes = collect_limited(headers, body, self.inner.max_admin_body.min(1 << 20))
            .await
            .map_err(|e| e.to_response())?;
        serde_json::from_slice(&bytes).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("invalid JSON body: {e}"),
            )
        })
    }

    fn tls_ask(&self, uri: &http::Uri) -> Response<Body> {
        let domain = query_param(uri, "domain")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let allowed = match &self.inner.base_domain {
            Some(base) if domain == *base => true,
            Some(base) => domain
                .strip_suffix(base.as_str())
                .and_then(|l| l.strip_suffix('.'))
                .and_then(|l| TenantId::new(l).ok())
                // From memory: the TLS ask must stay cheap however busy the store is.
                .is_some_and(|id| self.inner.platform.app_tier(&id).is_some()),
            None => false,
        };
        if allowed {
            text(StatusCode::OK, "ok\n")
        } else {
            text(StatusCode::NOT_FOUND, "unknown domain\n")
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

fn ok_json<T: serde::Serialize>(v: &T) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
    )
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_found(name: &TenantId) -> Response<Body> {
    platform_error(&PlatformError::NotFound {
        tenant: name.clone(),
    })
}

/// The platform's own stable JSON error (status, headers such as `Retry-After`, body).
fn platform_error(e: &PlatformError) -> Response<Body> {
    let (status, headers, body) = e.to_http();
    // A trailing newline, like every other JSON body here, for terminals.
    let mut text = Vec::with_capacity(body.len() + 1);
    text.extend_from_slice(&body);
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r.headers_mut()
        .entry(header::CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    r
}

fn route_error(e: &RouteError) -> Response<Body> {
    let mut r = error(e.status(), e.code(), e);
    if let RouteError::MethodNotAllowed { allow } = e
        && let Ok(v) = HeaderValue::from_str(&allow.join(", "))
    {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// `keep_tier` and `keep_usage` of `POST /api/import`: `true`/`1` or
/// `false`/`0`, absent = false; anything else is a 400 `bad_request`.
fn import_options(uri: &http::Uri) -> Result<ImportOptions, String> {
    let flag = |key: &str| match query_param(uri, key).as_deref() {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(format!(
            "{key} must be true or false, not {:?}",
            other.chars().take(32).collect::<String>()
        )),
    };
    Ok(ImportOptions::new()
        .keep_tier(flag("keep_tier")?)
        .keep_usage(flag("keep_usage")?))
}

/// The `Content-Length` of a request, when it has a valid one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn query_param(uri: &http::Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_owned())
    })
}

/// `GET /api/gauges`: one SSE `data:` frame per gauge update (about once a second).
fn gauges(p: &Platform) -> Response<Body> {
    use futures_util::StreamExt;
    let rx = p.gauges();
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let frame = {
            let g = rx.borrow_and_update();
            format!(
                "data: {}\n\n",
                serde_json::to_string(&*g).unwrap_or_else(|_| "{}".into())
            )
        };
        Some((frame, (rx, false)))
    })
    .map(|s| Ok::<_, crate::http::BoxError>(hyper::body::Frame::data(Bytes::from(s))));
    let mut r = Response::new(http_body_util::StreamBody::new(stream).boxed_unsync());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A `text/event-stream` response whose body is `frames`, each already a
/// whole SSE frame (the log follow and the console's live feed).
pub(crate) fn event_stream(
    frames: impl futures_util::Stream<Item = String> + Send + 'static,
) -> Response<Body> {
    use futures_util::StreamExt;
    let body =
        frames.map(|s| Ok::<_, crate::http::BoxError>(hyper::body::Frame::data(Bytes::from(s))));
    let mut r = Response::new(http_body_util::StreamBody::new(body).boxed_unsync());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// One row of `GET /api/apps?stats=1`: the app's record beside its state and
/// this month's figures, all from memory (the registry and the meter).
fn app_row(p: &Platform, a: &corral::platform::AppInfo) -> serde_json::Value {
    let status = p.status(&a.name).ok();
    let usage = p.meter().usage(&a.name);
    let mut row = serde_json::to_value(a).unwrap_or_else(|_| json!({}));
    row["state"] = json!(status.as_ref().map_or("parked", |s| s.state));
    row["in_flight"] = json!(status.as_ref().map_or(0, |s| s.in_flight));
    row["streams"] = json!(status.as_ref().map_or(0, |s| s.streams));
    row["requests"] = json!(usage.as_ref().map_or(0, |u| u.requests));
    row["errors"] = json!(usage.as_ref().map_or(0, |u| u.errors));
    row["fuel"] = json!(usage.as_ref().map_or(0, |u| u.fuel));
    row["peak_memory"] = json!(usage.as_ref().map_or(0, |u| u.peak_memory));
    row
}

/// `GET /api/overview`: one dashboard frame, from memory only (no SQLite
/// read): the host (probe, budget, slots, cache, thresholds, admission,
/// maintenance), warm and parked apps, and the node's totals with errors
/// and refusals by kind. The console's live feed sends this once a second.
pub(crate) fn overview(p: &Platform) -> serde_json::Value {
    use corral::metering::ErrorKind;
    let host = p.host();
    let apps = p.registry().stats();
    let t = p.meter().totals();
    let errors: serde_json::Map<String, serde_json::Value> = ErrorKind::ALL
        .iter()
        .zip(t.errors.iter())
        .map(|(k, n)| (k.as_str().to_owned(), json!(n)))
        .collect();
    let refused: serde_json::Map<String, serde_json::Value> = corral::limits_layers::Refusal::ALL
        .iter()
        .zip(t.refused.iter())
        .map(|(k, n)| (k.code().to_owned(), json!(n)))
        .collect();
    let cfg = p.config();
    let fired = !host.accepting_new_tenants;
    json!({
        "host": host,
        "apps": {"total": apps.tenants, "warm": apps.warm, "parked": apps.tenants.saturating_sub(apps.warm)},
        "totals": {"requests": t.requests, "in_flight": t.in_flight, "fuel": t.fuel, "errors": errors, "refused": refused},
        "expansion_hook": {
            "configured": cfg.hook_url.is_some() || cfg.hook_command.is_some(),
            "fired": fired,
        },
    })
}

/// Largest figures `GET /api/admin/simulate` takes: 1 PiB of RAM or disk,
/// 4096 CPUs, a million apps (the arithmetic saturates anyway; these keep
/// the answer meaningful).
const SIM_MAX_BYTES: u64 = 1 << 50;

/// `GET /api/admin/simulate`: the budget a host of the given size would get,
/// from [`corral::metering::Budget::from_probe`] with this node's OS
/// overhead and safety factor: the very call the probe's sizing makes.
fn simulate(
    p: &Platform,
    uri: &http::Uri,
    fresh: Option<corral::metering::Probe>,
) -> Result<serde_json::Value, String> {
    use corral::metering::{Budget, DEFAULT_OS_OVERHEAD, DEFAULT_SAFETY, Probe};
    let num = |key: &str, max: u64| -> Result<Option<u64>, String> {
        match query_param(uri, key) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n <= max => Ok(Some(n)),
                _ => Err(format!("{key} must be a whole number up to {max}")),
            },
        }
    };
    let host = p.host();
    let base = fresh.unwrap_or(host.probe);
    let ram = num("ram", SIM_MAX_BYTES)?
        .or(fresh.map(|f| f.ram_total))
        .ok_or("ram (bytes) is required")?;
    let cpus = num("cpus", 4096)?
        .or(fresh.map(|f| u64::from(f.cpus)))
        .ok_or("cpus is required")?
        .max(1);
    let disk = num("disk", SIM_MAX_BYTES)?.unwrap_or(base.disk_total);
    let apps = num("apps", 1_000_000)?.unwrap_or(0);
    let cfg = p.config();
    let slots_override = num("runtime_slots", 1 << 20)?.or(cfg.runtime_slots.map(|n| n as u64));
    let cache_override = num("cache_bytes", SIM_MAX_BYTES)?.or(cfg.cache_bytes);
    let overhead = cfg.os_overhead_bytes.unwrap_or(DEFAULT_OS_OVERHEAD);
    let probe = Probe {
        ram_total: ram,
        cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
        disk_total: disk,
        ..Probe::default()
    };
    let b = Budget::from_probe(&probe, overhead, DEFAULT_SAFETY).map_err(|e| e.to_string())?;
    let slots = slots_override.unwrap_or(u64::from(b.runtime_slots));
    let cache = cache_override.unwrap_or(b.cache_bytes);
    let mut warnings = Vec::new();
    if let Some(n) = slots_override {
        let need = n.saturating_mul(b.instance_memory);
        if need > b.runtime_bytes {
            warnings.push(format!(
                "runtime_slots = {n} needs {need} bytes of guest memory at {} bytes each; this box has {} for guests",
                b.instance_memory, b.runtime_bytes
            ));
        }
    }
    if let Some(c) = cache_override
        && c > b.usable.saturating_sub(b.sqlite_cache_bytes)
    {
        warnings.push(format!(
            "cache_bytes = {c} exceeds the {} bytes this box can spare for the cache",
            b.usable.saturating_sub(b.sqlite_cache_bytes)
        ));
    }
    if apps > u64::from(b.pool_instances) {
        warnings.push(format!(
            "{apps} apps: at most {} can be warm at once, the rest park and cold-start",
            b.pool_instances
        ));
    }
    let disk_budget = (disk as f64 * host.thresholds.disk.fire) as u64;
    Ok(json!({
        "input": {"ram": ram, "cpus": cpus, "disk": disk, "apps": apps},
        "os_overhead_bytes": overhead,
        "safety": DEFAULT_SAFETY,
        "budget": b,
        "effective": {"runtime_slots": slots, "cache_bytes": cache},
        "per_app": {
            "guest_memory_if_all_warm": b.runtime_bytes.checked_div(apps),
            "disk_before_threshold": disk_budget.checked_div(apps),
        },
        "warnings": warnings,
    }))
}

/// How often the usage history samples the meter.
const HISTORY_SAMPLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Samples the usage history once a minute, storing it when an hour ends
/// (off the async workers: it is one write through the store's writer).
fn spawn_history(p: &Platform, history: &Arc<crate::history::UsageHistory>) {
    let (p, history) = (p.clone(), Arc::clone(history));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HISTORY_SAMPLE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if history.sample(&p) {
                let (p, h) = (p.clone(), history.clone());
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || h.save(&p)).await {
                    tracing::warn!("saving the usage history: {e}");
                }
            }
        }
    });
}
