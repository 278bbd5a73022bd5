//! `router`: host, header and path routing and its traversal checks.

use arbitrary::Unstructured;
use corral_limits::TenantId;
use corral_server::config::RoutingConfig;
use corral_server::routes::{APP_HEADER, ROUTES, Route, RouteError, Router, Via};

const METHODS: &[&str] = &["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"];
const BASE: &str = "example.com";
const ADMIN: &str = "admin.example.com";

/// The segment with `%2e` (any case) decoded, if it is dots only.
fn dots(seg: &str) -> Option<String> {
    let lower = seg.to_ascii_lowercase().replace("%2e", ".");
    lower.bytes().all(|b| b == b'.').then_some(lower)
}

/// Whether a request target is no path, or holds traversal or a forbidden
/// byte, by the rules the router documents (checked independently of it).
fn forbidden(path: &str, query: Option<&str>) -> bool {
    let lower = path.to_ascii_lowercase();
    let q = query.unwrap_or("").to_ascii_lowercase();
    !path.starts_with('/')
        || lower.contains('\0')
        || q.contains('\0')
        || lower.contains("%00")
        || q.contains("%00")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains('\\')
        || path.split('/').any(|s| dots(s).as_deref() == Some(".."))
}

/// Builds a request head from the input and routes it.
///
/// Invariants: a refusal is a typed [`RouteError`] with a 4xx status, and
/// `bad_path` exactly when the target holds traversal; a tenant route names
/// a valid app that the request named (header, host label or path), and the
/// path the guest sees is the request's own path, with `/apps/<app>` and
/// nothing else stripped; an API route matches its table row.
pub fn router(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(flags) = u.arbitrary::<u8>() else {
        return;
    };
    let Ok(method) = u.choose(METHODS) else {
        return;
    };
    let host: Option<&str> = u.arbitrary().unwrap_or(None);
    let app: Option<&[u8]> = u.arbitrary().unwrap_or(None);
    let Ok(target) = std::str::from_utf8(u.take_rest()) else {
        return;
    };
    let mut b = http::Request::builder().method(*method).uri(target);
    if let Some(h) = host {
        b = b.header(http::header::HOST, h);
    }
    if let Some(a) = app {
        b = b.header(APP_HEADER, a);
    }
    let Ok(req) = b.body(()) else {
        return;
    };
    let (parts, ()) = req.into_parts();

    let mut routing = RoutingConfig::default();
    routing.path = flags & 2 == 0 || flags & 1 == 0;
    routing.admin_host = (flags & 4 != 0).then(|| ADMIN.to_owned());
    let base = (flags & 1 != 0).then_some(BASE);
    let router = Router::new(base).routing(&routing);

    let path = parts.uri.path();
    let query = parts.uri.query();
    let result = router.route(&parts);
    assert_eq!(result, router.route(&parts), "routing is not deterministic");
    match result {
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?}");
            assert!(!e.code().is_empty() && !e.to_string().is_empty());
            assert_eq!(
                matches!(e, RouteError::BadPath { .. }),
                forbidden(path, query),
                "bad_path disagrees with the traversal rules: {path:?} {query:?}"
            );
        }
        Ok(route) => {
            assert!(!forbidden(path, query), "traversal routed: {path:?}");
            check_route(&route, &parts, base, &routing);
        }
    }
}

fn check_route(
    route: &Route,
    parts: &http::request::Parts,
    base: Option<&str>,
    routing: &RoutingConfig,
) {
    let path = parts.uri.path();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    match route {
        Route::Tenant {
            tenant,
            via,
            path_and_query,
        } => {
            assert!(TenantId::new(tenant.as_str()).is_ok());
            assert!(path_and_query.starts_with('/'), "{path_and_query:?}");
            match via {
                Via::Header => {
                    let named = parts.headers[APP_HEADER].to_str().expect("ascii");
                    assert_eq!(named.trim(), tenant.as_str());
                    assert_eq!(*path_and_query, format!("{path}{query}"));
                }
                Via::Host => {
                    let suffix = format!(".{}", base.expect("host routing needs a base domain"));
                    let host = parts
                        .uri
                        .host()
                        .map(str::to_owned)
                        .or_else(|| {
                            let h = parts.headers.get(http::header::HOST)?.to_str().ok()?;
                            Some(h.rsplit_once('@').map_or(h, |(_, h)| h).to_owned())
                        })
                        .expect("a host")
                        .to_ascii_lowercase();
                    let host = host.split(':').next().unwrap_or("").trim_end_matches('.');
                    assert_eq!(host, format!("{tenant}{suffix}"));
                    assert_ne!(Some(host), routing.admin_host.as_deref());
                    assert_eq!(*path_and_query, format!("{path}{query}"));
                }
                Via::Path => {
                    assert!(routing.path);
                    let prefix = format!("/apps/{tenant}");
                    let tail = path.strip_prefix(&prefix).expect("path names the app");
                    let tail = if tail.is_empty() { "/" } else { tail };
                    assert!(tail.starts_with('/'), "app name runs on: {path:?}");
                    assert_eq!(*path_and_query, format!("{tail}{query}"));
                }
                _ => panic!("unknown via {via:?}"),
            }
        }
        Route::Api { op, name, auth } => {
            let spec = ROUTES
                .iter()
                .find(|s| {
                    s.op == *op
                        && (s.method == parts.method.as_str()
                            || (s.method == "GET" && parts.method == http::Method::HEAD))
                })
                .expect("the op's row");
            assert_eq!(*auth, spec.auth);
            let expect = spec
                .path
                .replace("{name}", name.as_ref().map_or("", |n| n.as_str()));
            assert_eq!(path, expect, "{op:?}");
        }
        _ => panic!("unknown route {route:?}"),
    }
}
