//! [`AssetCacheLayer`]: serves `GET`/`HEAD` of a tenant's static files from a
//! [`ByteCache`](crate::ByteCache), falling through to the [`Store`](crate::Store)
//! on a miss, and to the inner service for anything that is not a static file.
//!
//! * The tenant comes from the request extensions: a
//!   [`TenantContext`](corral_limits::TenantContext) (set by the limits
//!   stack) or else a plain [`TenantId`](corral_limits::TenantId); requests
//!   with neither go to the inner service.
//! * The request path (after the configured mount prefix, `/` by default) is
//!   looked up under the tenant bundle's `static/` directory; a path ending in
//!   `/` serves `index.html`.
//! * Responses carry `ETag: "<crc32 hex>"`, `x-corral-crc32: <crc32 hex>`,
//!   `Content-Type` by extension, `Content-Length`, and `x-corral-cache:
//!   hit | miss | stream`. `If-None-Match` matching the ETag gives `304`.
//! * Files over the cache's `max_object_bytes` are never cached; they are
//!   streamed chunk by chunk, each chunk verified before it is sent.
//! * A file failing its integrity check is never served: the response is
//!   `500` with `{"error":"integrity"}`.
//! * A miss (and each chunk of a streamed file) is a short blocking SQLite
//!   read on the calling task.
//!
//! ```
//! use bytes::Bytes;
//! use corral_limits::TenantId;
//! use corral_storage::{AppKind, AssetCacheLayer, Bundle, ByteCache, CacheConfig, Store, StoreConfig};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
//! let t = TenantId::new("acme").unwrap();
//! store.put_bundle(&t, &Bundle::new(AppKind::Js, b"js".to_vec())
//!     .with_static("app.css", b"body{}".to_vec())).unwrap();
//! let cache = std::sync::Arc::new(ByteCache::new(CacheConfig::new(1 << 20)));
//! let inner = service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"dynamic"))))
//! });
//! let svc = AssetCacheLayer::new(store, cache).layer(inner);
//!
//! let mut req = Request::get("/app.css").body(Full::new(Bytes::new())).unwrap();
//! req.extensions_mut().insert(t.clone());
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["content-type"], "text/css; charset=utf-8");
//! assert_eq!(res.headers()["etag"], format!("\"{:08x}\"", crc32fast::hash(b"body{}")));
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "body{}");
//!
//! let mut req = Request::get("/api").body(Full::new(Bytes::new())).unwrap();
//! req.extensions_mut().insert(t);
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "dynamic");
//! # });
//! ```

mod body;
mod future;
mod index;
mod layer;
mod service;

pub use body::{AssetBody, BoxError};
pub use future::ResponseFuture;
pub use layer::{AssetCacheExt, AssetCacheLayer};
pub use service::AssetCacheService;

/// `Content-Type` for a path, by extension.
///
/// ```
/// assert_eq!(corral_storage::asset::content_type("a/b.JS"), "text/javascript; charset=utf-8");
/// assert_eq!(corral_storage::asset::content_type("x.unknown"), "application/octet-stream");
/// ```
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}
