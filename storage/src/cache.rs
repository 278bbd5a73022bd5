//! A byte-capped, byte-weighted cache with pinned entries and a large-object bypass.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};

/// A cached object: verified bytes and the CRC32 they were verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachedObject {
    /// The bytes.
    pub bytes: Bytes,
    /// Their CRC32.
    pub crc32: u32,
}

impl CachedObject {
    /// Wraps bytes with their CRC32.
    pub fn new(bytes: Bytes, crc32: u32) -> Self {
        Self { bytes, crc32 }
    }
}

/// Bytes an entry counts against the cap: key plus value.
fn weight_of(key: &str, obj: &CachedObject) -> u64 {
    (key.len() + obj.bytes.len()) as u64
}

#[derive(Clone, Debug)]
struct ByteWeighter;

impl Weighter<Arc<str>, CachedObject> for ByteWeighter {
    fn weight(&self, key: &Arc<str>, val: &CachedObject) -> u64 {
        // Zero-weight items are never evicted by quick_cache; count at least 1.
        weight_of(key, val).max(1)
    }
}

#[derive(Clone, Debug, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<Arc<str>, CachedObject> for CountEvictions {
    type RequestState = ();
    fn begin_request(&self) -> Self::RequestState {}
    fn on_evict(&self, _: &mut (), _: Arc<str>, _: CachedObject) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Settings for a [`ByteCache`].
///
/// ```
/// use corral_storage::CacheConfig;
/// let cfg = CacheConfig::new(64 << 20).max_object_bytes(1 << 20);
/// assert_eq!(cfg.get_capacity(), 64 << 20);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheConfig {
    capacity: u64,
    max_object: u64,
    shards: usize,
}

impl CacheConfig {
    /// A cache of `capacity` bytes (keys + values, pinned entries included).
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            max_object: 1 << 20,
            shards: 16,
        }
    }
    /// Objects larger than this are never cached, only streamed. Default 1 MiB.
    pub fn max_object_bytes(mut self, bytes: u64) -> Self {
        self.max_object = bytes;
        self
    }
    /// Lock shards of the evictable part (rounded to a power of two by
    /// `quick_cache`). Default 16. Each shard holds `capacity / shards`, so
    /// keep `max_object_bytes` below that.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.max(1);
        self
    }
    /// The byte capacity.
    pub fn get_capacity(&self) -> u64 {
        self.capacity
    }
}

/// Why a cache operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Pinned entries would exceed the capacity.
    #[error("pinned entries would take {needed} B; the cache holds {capacity} B")]
    PinnedOverCapacity {
        /// Pinned bytes after the operation.
        needed: u64,
        /// The cache capacity.
        capacity: u64,
    },
}

/// Counters of a [`ByteCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups not in the cache.
    pub misses: u64,
    /// Entries evicted to make room (or on `resize`).
    pub evictions: u64,
    /// Objects refused for being over `max_object_bytes`.
    pub bypassed: u64,
    /// Bytes held now, pinned included.
    pub bytes: u64,
    /// Bytes held by pinned entries.
    pub pinned_bytes: u64,
    /// The capacity.
    pub capacity: u64,
}

/// A byte-capped cache, weighted by bytes (key + value), over `quick_cache`.
///
/// * Total bytes (evictable + pinned) never exceed the capacity.
/// * Pinned entries live in a separate map, counted against the cap and
///   never evicted (admin and cockpit assets).
/// * Objects over `max_object_bytes` are never cached.
/// * [`resize`](Self::resize) changes the capacity at run time, evicting to fit.
///
/// ```
/// use bytes::Bytes;
/// use corral_storage::{ByteCache, CacheConfig, CachedObject};
/// let cache = ByteCache::new(CacheConfig::new(100).max_object_bytes(50).shards(1));
/// let obj = |n| CachedObject::new(Bytes::from(vec![7u8; n]), 0);
/// cache.pin("logo", obj(40)).unwrap();                 // 44 bytes pinned
/// assert!(cache.insert("a", obj(30)));                  // 31 bytes
/// assert!(!cache.insert("huge", obj(51)));              // over max_object: bypassed
/// cache.insert("b", obj(30));                           // 31 more: something gives way
/// assert!(cache.stats().bytes <= 100);
/// assert!(cache.get("logo").is_some());                 // pinned survives
/// ```
pub struct ByteCache {
    cache: Cache<
        Arc<str>,
        CachedObject,
        ByteWeighter,
        quick_cache::DefaultHashBuilder,
        CountEvictions,
    >,
    pinned: RwLock<HashMap<Arc<str>, CachedObject>>,
    pinned_bytes: AtomicU64,
    capacity: AtomicU64,
    max_object: AtomicU64,
    admin: Mutex<()>,
    hits: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    evictions: Arc<AtomicU64>,
}

impl std::fmt::Debug for ByteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ByteCache {
    /// A cache with `cfg`.
    pub fn new(cfg: CacheConfig) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let est_items = (cfg.capacity / 4096).clamp(16, 1 << 20) as usize;
        let opts = OptionsBuilder::new()
            .weight_capacity(cfg.capacity)
            .estimated_items_capacity(est_items)
            .shards(cfg.shards)
            .build()
            .expect("weight_capacity and estimated_items_capacity are set");
        let cache = Cache::with_options(
            opts,
            ByteWeighter,
            quick_cache::DefaultHashBuilder::default(),
            CountEvictions(evictions.clone()),
        );
        let me = Self {
            cache,
            pinned: RwLock::new(HashMap::new()),
            pinned_bytes: AtomicU64::new(0),
            capacity: AtomicU64::new(cfg.capacity),
            max_object: AtomicU64::new(cfg.max_object),
            admin: Mutex::new(()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            evictions,
        };
        me.apply_capacity(cfg.capacity, 0);
        me
    }

    /// The evictable part gets `capacity - pinned`, rounded down to a multiple
    /// of the shard count so the per-shard caps never add up to more.
    fn apply_capacity(&self, capacity: u64, pinned: u64) {
        let shards = self.cache.num_shards() as u64;
        let evictable = capacity.saturating_sub(pinned) / shards * shards;
        self.cache.set_capacity(evictable);
    }

    /// The object under `key`, counting a hit or a miss.
    pub fn get(&self, key: &str) -> Option<CachedObject> {
        // Skip the pinned map (and its lock) while nothing is pinned.
        if self.pinned_bytes.load(Ordering::Acquire) > 0
            && let Some(v) = self.pinned.read().get(key)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(v.clone());
        }
        match self.cache.get(key) {
            Some(v) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Caches `obj` under `key`; `false` when it is over `max_object_bytes`
    /// (or bigger than one shard) and was not cached.
    pub fn insert(&self, key: &str, obj: CachedObject) -> bool {
        let w = weight_of(key, &obj);
        if obj.bytes.len() as u64 > self.max_object.load(Ordering::Relaxed)
            // quick_cache refuses entries over its hot target (97% of a shard).
            || w > (self.cache.shard_capacity() as f64 * 0.97) as u64
        {
            self.bypassed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if self.pinned.read().contains_key(key) {
            // A pinned key is replaced only through `pin`.
            return false;
        }
        self.cache.insert(Arc::from(key), obj);
        true
    }

    /// Pins `obj` under `key`: never evicted, counted against the cap. Evicts
    /// unpinned entries to make room; refuses when pinned bytes would exceed
    /// the capacity.
    pub fn pin(&self, key: &str, obj: CachedObject) -> Result<(), CacheError> {
        let _g = self.admin.lock();
        let w = weight_of(key, &obj);
        let mut pinned = self.pinned.write();
        let old = pinned.get(key).map(|o| weight_of(key, o)).unwrap_or(0);
        let now = self.pinned_bytes.load(Ordering::Relaxed);
        let needed = now - old + w;
        let capacity = self.capacity.load(Ordering::Relaxed);
        if needed > capacity {
            return Err(CacheError::PinnedOverCapacity { needed, capacity });
        }
        self.cache.remove(key);
        // Shrink the evictable part before the pinned bytes count.
        self.apply_capacity(capacity, needed);
        pinned.insert(Arc::from(key), obj);
        self.pinned_bytes.store(needed, Ordering::Release);
        Ok(())
    }

    /// Unpins and drops `key`; `true` when it was pinned.
    pub fn unpin(&self, key: &str) -> bool {
        let _g = self.admin.lock();
        let mut pinned = self.pinned.write();
        let Some(old) = pinned.remove(key) else {
            return false;
        };
        let now = self.pinned_bytes.load(Ordering::Relaxed) - weight_of(key, &old);
        self.pinned_bytes.store(now, Ordering::Relaxed);
        self.apply_capacity(self.capacity.load(Ordering::Relaxed), now);
        true
    }

    /// Drops an unpinned entry; `true` when it was cached.
    pub fn remove(&self, key: &str) -> bool {
        self.cache.remove(key).is_some()
    }

    /// Drops every unpinned entry whose key starts with `prefix`.
    pub fn remove_prefix(&self, prefix: &str) {
        self.cache.retain(|k, _| !k.starts_with(prefix));
    }

    /// Changes the capacity, evicting unpinned entries to fit. Refuses a
    /// capacity below the pinned bytes.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use corral_storage::{ByteCache, CacheConfig, CachedObject, CacheError};
    /// let cache = ByteCache::new(CacheConfig::new(1000).shards(1));
    /// for i in 0..9 { cache.insert(&format!("k{i}"), CachedObject::new(Bytes::from(vec![0u8; 98]), 0)); }
    /// assert_eq!(cache.stats().bytes, 900);
    /// cache.resize(300).unwrap();
    /// assert!(cache.stats().bytes <= 300);
    /// cache.pin("p", CachedObject::new(Bytes::from(vec![0u8; 99]), 0)).unwrap();
    /// assert_eq!(cache.resize(50), Err(CacheError::PinnedOverCapacity { needed: 100, capacity: 50 }));
    /// ```
    pub fn resize(&self, capacity: u64) -> Result<(), CacheError> {
        let _g = self.admin.lock();
        let pinned = self.pinned_bytes.load(Ordering::Relaxed);
        if pinned > capacity {
            return Err(CacheError::PinnedOverCapacity {
                needed: pinned,
                capacity,
            });
        }
        self.capacity.store(capacity, Ordering::Relaxed);
        self.apply_capacity(capacity, pinned);
        Ok(())
    }

    /// Sets the largest object that may be cached.
    pub fn set_max_object_bytes(&self, bytes: u64) {
        self.max_object.store(bytes, Ordering::Relaxed);
    }

    /// The largest object that may be cached.
    pub fn max_object_bytes(&self) -> u64 {
        self.max_object.load(Ordering::Relaxed)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> CacheStats {
        let pinned_bytes = self.pinned_bytes.load(Ordering::Relaxed);
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bypassed: self.bypassed.load(Ordering::Relaxed),
            bytes: self.cache.weight() + pinned_bytes,
            pinned_bytes,
            capacity: self.capacity.load(Ordering::Relaxed),
        }
    }

    /// Number of entries, pinned included.
    pub fn len(&self) -> usize {
        self.cache.len() + self.pinned.read().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is pinned.
    pub fn is_pinned(&self, key: &str) -> bool {
        self.pinned.read().contains_key(key)
    }
}
