//! The layer: configuration only.

use std::sync::Arc;

use tower_layer::Layer;

use super::AssetCacheService;
use super::index::{STATIC_INDEX_BYTES, StaticIndex};
use crate::{ByteCache, Store};

/// Serves tenants' static files from a [`ByteCache`] in front of a [`Store`].
/// See the [module docs](crate::asset).
#[derive(Clone, Debug)]
pub struct AssetCacheLayer {
    pub(crate) store: Store,
    pub(crate) cache: Arc<ByteCache>,
    pub(crate) index: Arc<StaticIndex>,
    pub(crate) mount: Arc<str>,
}

impl AssetCacheLayer {
    /// Serves from `cache`, filling it from `store`, at mount prefix `/`.
    /// Registers a bundle-change hook on `store` that drops the tenant's
    /// cached files, and its index of static paths, whenever its bundle is
    /// replaced or deleted. The index (byte-capped) answers "no static file
    /// here" from RAM, so a dynamic request reads no SQLite.
    pub fn new(store: Store, cache: Arc<ByteCache>) -> Self {
        let weak = Arc::downgrade(&cache);
        let index = Arc::new(StaticIndex::new(STATIC_INDEX_BYTES));
        let weak_index = Arc::downgrade(&index);
        store.on_bundle_change(move |t| {
            if let Some(i) = weak_index.upgrade() {
                i.forget(t);
            }
            if let Some(c) = weak.upgrade() {
                c.remove_prefix(&format!("{t}/"));
            }
        });
        Self {
            store,
            cache,
            index,
            mount: Arc::from("/"),
        }
    }

    /// Serves only paths under `prefix` (e.g. `/static/`), stripped before
    /// the lookup. Default `/`.
    #[must_use]
    pub fn mount(mut self, prefix: &str) -> Self {
        let mut p = prefix.to_owned();
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        if !p.ends_with('/') {
            p.push('/');
        }
        self.mount = Arc::from(p);
        self
    }
}

impl<S> Layer<S> for AssetCacheLayer {
    type Service = AssetCacheService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AssetCacheService {
            inner,
            store: self.store.clone(),
            cache: self.cache.clone(),
            index: self.index.clone(),
            mount: self.mount.clone(),
        }
    }
}

/// Adds the asset cache to a [`tower::ServiceBuilder`]:
/// `ServiceBuilder::new().asset_cache(store, cache)`.
///
/// ```
/// use std::sync::Arc;
/// use corral_storage::{ByteCache, CacheConfig, Store, StoreConfig};
/// use corral_storage::asset::AssetCacheExt;
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
/// let cache = Arc::new(ByteCache::new(CacheConfig::new(1 << 20)));
/// let _svc = tower::ServiceBuilder::new()
///     .asset_cache(store, cache)
///     .service(tower::service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(()))
///     }));
/// ```
pub trait AssetCacheExt<L> {
    /// Wraps the stack in an [`AssetCacheLayer`] over `store` and `cache`.
    fn asset_cache(
        self,
        store: Store,
        cache: Arc<ByteCache>,
    ) -> tower::ServiceBuilder<tower::layer::util::Stack<AssetCacheLayer, L>>;
}

impl<L> AssetCacheExt<L> for tower::ServiceBuilder<L> {
    fn asset_cache(
        self,
        store: Store,
        cache: Arc<ByteCache>,
    ) -> tower::ServiceBuilder<tower::layer::util::Stack<AssetCacheLayer, L>> {
        self.layer(AssetCacheLayer::new(store, cache))
    }
}
