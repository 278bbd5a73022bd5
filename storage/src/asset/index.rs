//! Which paths of an app are static files, from RAM: a request for a path
//! that is no static file (every dynamic request) goes to the app without
//! touching SQLite.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use corral_limits::TenantId;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::{StorageError, Store};

/// Bytes of RAM the index of every app together may hold (an app with no
/// static files costs about 100 bytes; evicted apps are read again).
pub(crate) const STATIC_INDEX_BYTES: u64 = 4 << 20;

/// An app's static paths, sorted.
pub(crate) type Paths = Arc<[Box<str>]>;

#[derive(Clone)]
struct PathsWeighter;

impl Weighter<TenantId, Paths> for PathsWeighter {
    fn weight(&self, key: &TenantId, paths: &Paths) -> u64 {
        let bytes: usize = paths.iter().map(|p| p.len() + 16).sum();
        (64 + key.as_str().len() + bytes) as u64
    }
}

/// The static paths of the apps seen lately, byte-capped; dropped for an
/// app whenever its bundle changes.
pub(crate) struct StaticIndex {
    paths: Cache<TenantId, Paths, PathsWeighter>,
}

impl std::fmt::Debug for StaticIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticIndex")
            .field("apps", &self.paths.len())
            .finish_non_exhaustive()
    }
}

impl StaticIndex {
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        // quick_cache wants an item-count estimate beside the weight cap.
        let items = usize::try_from(capacity_bytes / 100)
            .unwrap_or(usize::MAX)
            .max(16);
        Self {
            paths: Cache::with_weighter(items, capacity_bytes, PathsWeighter),
        }
    }

    /// Whether `path` is one of `tenant`'s static files: from RAM, else one
    /// read of the app's static paths, kept unless a bundle changed
    /// meanwhile.
    pub(crate) fn contains(
        &self,
        store: &Store,
        tenant: &TenantId,
        path: &str,
    ) -> Result<bool, StorageError> {
        let paths = match self.paths.get(tenant) {
            Some(p) => p,
            None => {
                let generation = store.inner.bundle_generation.load(Ordering::SeqCst);
                let mut list = store.list_static_files(tenant)?;
                list.sort_unstable();
                let paths: Paths = list.into_iter().map(String::into_boxed_str).collect();
                if store.inner.bundle_generation.load(Ordering::SeqCst) == generation {
                    self.paths.insert(tenant.clone(), paths.clone());
                }
                paths
            }
        };
        Ok(paths.binary_search_by(|p| (**p).cmp(path)).is_ok())
    }

    /// Whether `tenant`'s paths are in RAM and `path` is not among them:
    /// the common answer for a dynamic request, found without building a
    /// key or reading the store. `false` means "maybe static": ask
    /// [`contains`](Self::contains).
    pub(crate) fn known_absent(&self, tenant: &TenantId, path: &str) -> bool {
        self.paths
            .get(tenant)
            .is_some_and(|paths| paths.binary_search_by(|p| (**p).cmp(path)).is_err())
    }

    /// Forgets `tenant`'s paths (its bundle changed).
    pub(crate) fn forget(&self, tenant: &TenantId) {
        self.paths.remove(tenant);
    }
}
