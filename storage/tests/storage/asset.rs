//! The AssetCacheLayer over a real store and cache.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use corral_storage::{
    AppKind, AssetCacheLayer, Bundle, ByteCache, CacheConfig, Store, StoreConfig,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::{Backend, both, tid};

type Svc = corral_storage::AssetCacheService<
    tower::util::ServiceFn<
        fn(Request<Full<Bytes>>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
    >,
>;

fn inner(
    _req: Request<Full<Bytes>>,
) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
        b"from-inner",
    )))))
}

fn setup(b: Backend, dir: &tempfile::TempDir, max_object: u64) -> (Store, Arc<ByteCache>, Svc) {
    let store = b.open_cfg(
        dir,
        "a.db",
        StoreConfig::default()
            .chunk_threshold(64 * 1024)
            .chunk_size(16 * 1024)
            .max_kv_value(1024),
    );
    let big: Vec<u8> = (0..100_000u64).map(|i| crate::pattern(3, i)).collect();
    store
        .put_bundle(
            &tid("acme"),
            &Bundle::new(AppKind::Js, b"export default {}".to_vec())
                .with_static("index.html", b"<h1>acme</h1>".to_vec())
                .with_static("css/site.css", b"body{}".to_vec())
                .with_static("big.bin", big),
        )
        .unwrap();
    let cache = Arc::new(ByteCache::new(
        CacheConfig::new(1 << 20).max_object_bytes(max_object),
    ));
    let svc =
        AssetCacheLayer::new(store.clone(), cache.clone()).layer(service_fn(inner as fn(_) -> _));
    (store, cache, svc)
}

fn req(method: Method, path: &str, tenant: Option<&str>) -> Request<Full<Bytes>> {
    let mut r = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    if let Some(t) = tenant {
        r.extensions_mut().insert(tid(t));
    }
    r
}

async fn send(svc: &mut Svc, r: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
    let res = svc.ready().await.unwrap().call(r).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn get_head_etag_and_fallthrough(b: Backend) {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (_store, cache, mut svc) = setup(b, &dir, 4096);
        let crc = format!("{:08x}", crc32fast::hash(b"body{}"));

        let (st, h, body) = send(&mut svc, req(Method::GET, "/css/site.css", Some("acme"))).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(&body[..], b"body{}");
        assert_eq!(h["x-corral-cache"], "miss");
        assert_eq!(h["x-corral-crc32"], crc.as_str());
        assert_eq!(h["etag"], format!("\"{crc}\"").as_str());
        assert_eq!(h["content-type"], "text/css; charset=utf-8");
        assert_eq!(h["content-length"], "6");

        let (_, h, body) = send(&mut svc, req(Method::GET, "/css/site.css", Some("acme"))).await;
        assert_eq!(h["x-corral-cache"], "hit");
        assert_eq!(&body[..], b"body{}");

        let (st, h, body) = send(&mut svc, req(Method::HEAD, "/css/site.css", Some("acme"))).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(h["content-length"], "6");
        assert!(body.is_empty());

        let mut r = req(Method::GET, "/css/site.css", Some("acme"));
        r.headers_mut().insert(
            "if-none-match",
            format!("W/\"zzz\", \"{crc}\"").parse().unwrap(),
        );
        let (st, h, body) = send(&mut svc, r).await;
        assert_eq!(st, StatusCode::NOT_MODIFIED);
        assert_eq!(h["etag"], format!("\"{crc}\"").as_str());
        assert!(body.is_empty());

        let mut r = req(Method::GET, "/css/site.css", Some("acme"));
        r.headers_mut()
            .insert("if-none-match", "\"00000000\"".parse().unwrap());
        assert_eq!(send(&mut svc, r).await.0, StatusCode::OK);

        // Directory index.
        let (st, h, body) = send(&mut svc, req(Method::GET, "/", Some("acme"))).await;
        assert_eq!((st, &body[..]), (StatusCode::OK, &b"<h1>acme</h1>"[..]));
        assert_eq!(h["content-type"], "text/html; charset=utf-8");

        // Not static files, not GET/HEAD, no tenant, other tenant, bad path: inner service.
        for r in [
            req(Method::GET, "/api/users", Some("acme")),
            req(Method::POST, "/css/site.css", Some("acme")),
            req(Method::GET, "/css/site.css", None),
            req(Method::GET, "/css/site.css", Some("other")),
            req(Method::GET, "/css/../index.html", Some("acme")),
            req(Method::GET, "//etc/passwd", Some("acme")),
        ] {
            let (st, h, body) = send(&mut svc, r).await;
            assert_eq!((st, &body[..]), (StatusCode::OK, &b"from-inner"[..]));
            assert!(h.get("x-corral-cache").is_none());
        }
        let s = cache.stats();
        assert_eq!(s.hits, 4);
        assert!(s.misses >= 2);
    });
}

fn large_files_stream_and_never_enter_the_cache(b: Backend) {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (_store, cache, mut svc) = setup(b, &dir, 4096);
        let expected: Vec<u8> = (0..100_000u64).map(|i| crate::pattern(3, i)).collect();
        for _ in 0..2 {
            let (st, h, body) = send(&mut svc, req(Method::GET, "/big.bin", Some("acme"))).await;
            assert_eq!(st, StatusCode::OK);
            assert_eq!(h["x-corral-cache"], "stream");
            assert_eq!(h["content-length"], "100000");
            assert_eq!(
                h["x-corral-crc32"],
                format!("{:08x}", crc32fast::hash(&expected)).as_str()
            );
            assert!(body[..] == expected[..]);
        }
        assert!(cache.get("acme/big.bin").is_none());
        assert_eq!(cache.stats().bytes, 0);
    });
}

fn bundle_replace_invalidates_cached_files(b: Backend) {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (store, _cache, mut svc) = setup(b, &dir, 4096);
        let (_, _, body) = send(&mut svc, req(Method::GET, "/css/site.css", Some("acme"))).await;
        assert_eq!(&body[..], b"body{}");
        store
            .put_bundle(
                &tid("acme"),
                &Bundle::new(AppKind::Js, b"v2".to_vec())
                    .with_static("css/site.css", b"p{}".to_vec()),
            )
            .unwrap();
        let (_, h, body) = send(&mut svc, req(Method::GET, "/css/site.css", Some("acme"))).await;
        assert_eq!(&body[..], b"p{}");
        assert_eq!(h["x-corral-cache"], "miss");
        // index.html is gone with the old bundle: the request falls through.
        let (_, _, body) = send(&mut svc, req(Method::GET, "/", Some("acme"))).await;
        assert_eq!(&body[..], b"from-inner");
    });
}

fn corrupt_static_file_is_never_served(b: Backend) {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = b.location(&dir, "a.db");
        {
            let store = Store::open(&path, StoreConfig::default()).unwrap();
            store
                .put_bundle(
                    &tid("acme"),
                    &Bundle::new(AppKind::Wasm, vec![0; 8])
                        .with_static("x.txt", b"ASSET-MARKER-XYZ payload".to_vec()),
                )
                .unwrap();
            store.checkpoint().unwrap();
        }
        b.flip(&path, b"ASSET-MARKER-XYZ", 18, 0x20);

        let store = Store::open(&path, StoreConfig::default()).unwrap();
        let cache = Arc::new(ByteCache::new(CacheConfig::new(1 << 20)));
        let mut svc = AssetCacheLayer::new(store.clone(), cache.clone())
            .layer(service_fn(inner as fn(_) -> _));
        let (st, h, body) = send(&mut svc, req(Method::GET, "/x.txt", Some("acme"))).await;
        assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(h["content-type"], "application/json");
        assert!(body.starts_with(br#"{"error":"integrity""#));
        assert!(!body.windows(7).any(|w| w == b"payload" || w == b"pAyload"));
        assert_eq!(cache.len(), 0);
        assert_eq!(store.stats().integrity_failures, 1);
    });
}

fn mount_prefix_is_stripped(b: Backend) {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (store, cache, _) = setup(b, &dir, 4096);
        let mut svc = AssetCacheLayer::new(store, cache)
            .mount("static")
            .layer(service_fn(inner as fn(_) -> _));
        let (_, _, body) = send(
            &mut svc,
            req(Method::GET, "/static/css/site.css", Some("acme")),
        )
        .await;
        assert_eq!(&body[..], b"body{}");
        let (_, _, body) = send(&mut svc, req(Method::GET, "/css/site.css", Some("acme"))).await;
        assert_eq!(&body[..], b"from-inner");
    });
}

fn tenant_from_tenant_context(b: Backend) {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _cache, mut svc) = setup(b, &dir, 4096);
        let mut r = req(Method::GET, "/css/site.css", None);
        let tier = std::sync::Arc::new(corral_limits::Tier::free());
        corral_limits::TenantContext::new(tid("acme"), tier).insert_into(&mut r);
        let (st, _, body) = send(&mut svc, r).await;
        assert_eq!((st, &body[..]), (StatusCode::OK, &b"body{}"[..]));
    });
}

fn oneshot_works_with_service_builder(b: Backend) {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (store, cache, _) = setup(b, &dir, 4096);
        let svc = tower::ServiceBuilder::new()
            .layer(AssetCacheLayer::new(store, cache))
            .service(service_fn(inner as fn(_) -> _));
        let res = svc
            .oneshot(req(Method::GET, "/index.html", Some("acme")))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    });
}

both!(
    get_head_etag_and_fallthrough,
    large_files_stream_and_never_enter_the_cache,
    bundle_replace_invalidates_cached_files,
    corrupt_static_file_is_never_served,
    mount_prefix_is_stripped,
    tenant_from_tenant_context,
    oneshot_works_with_service_builder,
);
