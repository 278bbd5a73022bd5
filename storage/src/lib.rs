//! Corral's storage: one SQLite file with CRC32-verified blobs, tenant data
//! (tenants, bundles, KV, usage, config), and a byte-capped cache with a tower
//! layer that serves tenants' static files.
//!
//! # Overview
//!
//! * [`Store`] — one SQLite database in WAL mode. One writer (a mutex around
//!   one connection) and a small pool of reader connections; every connection
//!   has a `busy_timeout`, so callers never see `SQLITE_BUSY`.
//! * Blobs — every stored value (KV values, bundle code, static files,
//!   artifacts) carries its CRC32 and length and is verified on every read. A
//!   mismatch is [`StorageError::Integrity`]: counted, the blob quarantined,
//!   the bytes never returned. Blobs over
//!   [`StoreConfig::chunk_threshold`] (5 MiB by default) are written from a
//!   [`std::io::Read`] and read back through a streaming [`BlobReader`], one
//!   chunk at a time, so nothing holds a large blob whole in memory.
//! * [`ByteCache`] — byte-capped, byte-weighted cache (`quick_cache`) with
//!   pinned entries, a large-object bypass, `resize` and counters.
//! * [`AssetCacheLayer`] — tower layer serving `GET`/`HEAD` of a tenant's
//!   static files from the cache with `ETag`, `If-None-Match` and
//!   `x-corral-crc32`.
//!
//! # Durability
//!
//! The journal is WAL. With [`Durability::Full`] (the default) every commit
//! is fsynced to the WAL before the call returns: an acknowledged write
//! survives a process kill **and** a power cut or kernel crash (on storage
//! that honours `fsync`). With [`Durability::Normal`] commits are written to
//! the WAL without fsync: an acknowledged write survives a process kill
//! (SIGKILL, panic, OOM kill), because the bytes are in the OS page cache,
//! but a power cut may roll back the most recent transactions. In both modes
//! the database is never corrupted and a torn transaction is never visible:
//! SQLite's WAL recovery discards any frame whose commit record is missing or
//! whose checksum does not match.
//!
//! ```
//! use corral_storage::{AppKind, Store, StoreConfig, StorageError, TenantRecord};
//! use corral_limits::TenantId;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("corral.db"), StoreConfig::default()).unwrap();
//! let t = TenantId::new("acme").unwrap();
//! // Writes for a tenant the store does not hold are refused.
//! let none = store.kv_put_with_limit(&t, "greeting", b"hello", Some(64)).unwrap_err();
//! assert!(matches!(none, StorageError::TenantNotFound { .. }));
//! store.create_tenant(&TenantRecord::new(t.clone(), "free".parse().unwrap(), AppKind::Js)).unwrap();
//! store.kv_put_with_limit(&t, "greeting", b"hello", Some(64)).unwrap();
//! let blob = store.kv_get(&t, "greeting").unwrap().unwrap();
//! assert_eq!(&blob.bytes[..], b"hello");
//! assert_eq!(blob.crc32, crc32fast::hash(b"hello"));
//! // The quota counts key + value bytes: 8 + 5 = 13 used, 64 allowed.
//! let err = store.kv_put_with_limit(&t, "big", &[0u8; 60], Some(64)).unwrap_err();
//! assert!(matches!(err, StorageError::StorageQuotaExceeded { limit: 64, used: 13, needed: 63 }));
//! ```
//!
//! # Choice of cache crate
//!
//! Both `quick_cache` and `moka` were benched (`benches/benches/storage.rs`,
//! figures in `BENCHMARKS.md`, section "storage"). [`ByteCache`] uses
//! `quick_cache`:
//!
//! * its weight limit is enforced synchronously inside `insert`; moka applies
//!   weights and evictions through deferred maintenance, so its weighted size
//!   can sit above the cap until pending tasks run, which breaks the "never
//!   above the byte budget" promise;
//! * it has `set_capacity` for run-time resizing and an eviction hook
//!   (`Lifecycle::on_evict`) for the eviction counter;
//! * it was about 8× faster than moka for both hits and evicting inserts in
//!   our runs (1 KiB values, 10,000 keys, one thread): ~0.47 µs vs ~3.6 µs
//!   per `get`, ~0.43 µs vs ~4.4 µs per `insert`. [`ByteCache::get`] adds
//!   about 3% over the raw cache.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]

mod account;
pub mod asset;
mod blob;
mod cache;
mod config;
mod db;
mod error;
mod key;
mod pg;
mod store;
mod tenant;

pub use account::{AccountRecord, AccountUsageSink, TokenRecord};
pub use asset::{AssetBody, AssetCacheLayer, AssetCacheService};
pub use blob::{Blob, BlobMeta, BlobReader, ScrubReport};
pub use cache::{ByteCache, CacheConfig, CacheError, CacheStats, CachedObject};
pub use config::{Durability, StoreConfig};
pub use error::{InvalidKey, StorageError};
pub use key::{MAX_KEY_LEN, validate_key, validate_prefix};
pub use store::{Store, StoreStats};
pub use tenant::{
    AppKind, Bundle, BundleInfo, ExportedBlob, ExportedBundle, TenantExport, TenantRecord,
};
