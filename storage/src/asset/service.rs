//! The service.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use corral_limits::{TenantContext, TenantId};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use tower_service::Service;

use super::{AssetBody, ResponseFuture, content_type};
use crate::{ByteCache, CachedObject, StorageError, Store, validate_key};

/// The service built by [`AssetCacheLayer`](super::AssetCacheLayer).
#[derive(Clone, Debug)]
pub struct AssetCacheService<S> {
    pub(crate) inner: S,
    pub(crate) store: Store,
    pub(crate) cache: Arc<ByteCache>,
    pub(crate) index: Arc<super::index::StaticIndex>,
    pub(crate) mount: Arc<str>,
}

enum Found {
    Hit(CachedObject),
    Miss(CachedObject),
    Stream(crate::BlobReader),
    NotStatic,
    Broken,
}

impl<S> AssetCacheService<S> {
    /// The key a request path would have as a static file (not yet
    /// validated: see [`lookup`](Self::lookup)). Borrowed but for a
    /// directory's `index.html` below the root.
    fn static_path<'a>(&self, path: &'a str) -> Option<Cow<'a, str>> {
        let rest = path.strip_prefix(&*self.mount)?;
        Some(if rest.is_empty() {
            Cow::Borrowed("index.html")
        } else if rest.ends_with('/') {
            Cow::Owned(format!("{rest}index.html"))
        } else {
            Cow::Borrowed(rest)
        })
    }

    fn lookup(&self, tenant: &TenantId, path: &str) -> Found {
        // Most requests are for no static file: when the app's paths are in
        // RAM, that is answered before any key is built or cache consulted
        // (the index and the cache are both dropped when a bundle changes).
        if self.index.known_absent(tenant, path) {
            return Found::NotStatic;
        }
        // A path that cannot be a stored key is never a static file.
        if validate_key(path.as_bytes()).is_err() {
            return Found::NotStatic;
        }
        let key = format!("{tenant}/{path}");
        if let Some(obj) = self.cache.get(&key) {
            return Found::Hit(obj);
        }
        // Most requests are for no static file: answered from RAM.
        match self.index.contains(&self.store, tenant, path) {
            Ok(true) => {}
            Ok(false) => return Found::NotStatic,
            Err(_) => return Found::Broken,
        }
        let meta = match self.store.static_file_meta(tenant, path) {
            Ok(Some(m)) => m,
            Ok(None) => return Found::NotStatic,
            Err(_) => return Found::Broken,
        };
        if meta.len > self.cache.max_object_bytes() {
            return match self.store.open_static_file(tenant, path) {
                Ok(Some(r)) => Found::Stream(r),
                Ok(None) => Found::NotStatic,
                Err(_) => Found::Broken,
            };
        }
        let generation = self.store.inner.bundle_generation.load(Ordering::SeqCst);
        match self.store.static_file(tenant, path) {
            Ok(Some(blob)) => {
                let obj = CachedObject::new(blob.bytes, blob.crc32);
                // Do not cache what a concurrent bundle replace may have made stale.
                if self.store.inner.bundle_generation.load(Ordering::SeqCst) == generation {
                    self.cache.insert(&key, obj.clone());
                }
                Found::Miss(obj)
            }
            Ok(None) => Found::NotStatic,
            Err(StorageError::TooLargeForMemory { .. }) => {
                match self.store.open_static_file(tenant, path) {
                    Ok(Some(r)) => Found::Stream(r),
                    Ok(None) => Found::NotStatic,
                    Err(_) => Found::Broken,
                }
            }
            Err(_) => Found::Broken,
        }
    }
}

impl<S> AssetCacheService<S> {
    /// The static file's response to `req`, or `None` when it goes to the
    /// app (not a GET or HEAD, no tenant, or no static file at that path).
    /// Borrows the request: nothing is cloned on the way to the app.
    fn respond_static<ReqB, ResB>(&self, req: &Request<ReqB>) -> Option<Response<AssetBody<ResB>>> {
        let head = req.method() == Method::HEAD;
        if !(head || req.method() == Method::GET) {
            return None;
        }
        let ext = req.extensions();
        let tenant = ext
            .get::<TenantContext>()
            .map(TenantContext::id)
            .or_else(|| ext.get::<TenantId>())?;
        let path = self.static_path(req.uri().path())?;
        let h = req.headers();
        let response = match self.lookup(tenant, &path) {
            Found::NotStatic => return None,
            Found::Hit(o) => respond(head, h, &path, o.bytes.len() as u64, o.crc32, "hit", || {
                AssetBody::full(o.bytes.clone())
            }),
            Found::Miss(o) => respond(
                head,
                h,
                &path,
                o.bytes.len() as u64,
                o.crc32,
                "miss",
                || AssetBody::full(o.bytes.clone()),
            ),
            Found::Stream(r) => {
                let (len, crc) = (r.len(), r.crc32());
                respond(head, h, &path, len, crc, "stream", || AssetBody::stream(r))
            }
            Found::Broken => {
                let mut res = Response::new(AssetBody::full(Bytes::from_static(
                    br#"{"error":"integrity","message":"the stored file failed its integrity check"}"#,
                )));
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res
            }
        };
        Some(response)
    }
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn respond<B>(
    head: bool,
    headers: &HeaderMap,
    path: &str,
    len: u64,
    crc32: u32,
    cache: &'static str,
    body: impl FnOnce() -> AssetBody<B>,
) -> Response<AssetBody<B>> {
    let etag = format!("\"{crc32:08x}\"");
    let not_modified = etag_matches(headers, &etag);
    let mut res = Response::new(if head || not_modified {
        AssetBody::empty()
    } else {
        body()
    });
    *res.status_mut() = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let h = res.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    h.insert(
        "x-corral-crc32",
        HeaderValue::from_str(&format!("{crc32:08x}")).expect("hex is a valid header"),
    );
    h.insert("x-corral-cache", HeaderValue::from_static(cache));
    if !not_modified {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    res
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for AssetCacheService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<AssetBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        match self.respond_static(&req) {
            Some(response) => ResponseFuture::ready(response),
            None => ResponseFuture::inner(self.inner.call(req)),
        }
    }
}
