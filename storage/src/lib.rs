//! Corral's storage: CRC32-verified blobs, tenant data (apps, accounts,
//! bundles, artifacts, KV, usage, config) in SQLite or PostgreSQL, and a
//! byte-capped cache with a tower layer that serves tenants' static files.
//!
//! # Overview
//!
//! * [`Store`] — one database behind the same methods on either backend.
//!   SQLite (the embedded default, a file path): WAL mode, one writer (a
//!   mutex around one connection) and a small pool of reader connections;
//!   every connection has a `busy_timeout`, so callers never see
//!   `SQLITE_BUSY`. PostgreSQL (a `postgres://` URL, the store many nodes
//!   share): see [Backends](#backends).
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
//! # Backends
//!
//! [`Store::open`] takes a path (SQLite) or a `postgres://` /
//! `postgresql://` URL (PostgreSQL; a Unix socket directory goes
//! percent-encoded in the host part). Every query is written once, in SQL
//! both accept; each backend has its own versioned migrations, numbered
//! alike, so [`Store::schema_version`] means the same tables on both, and a
//! database from a newer build is refused ([`StorageError::SchemaTooNew`]).
//! Blobs carry the same CRC32, verified on every read: a row changed behind
//! the store's back is the same [`StorageError::Integrity`] on PostgreSQL as
//! a flipped byte in the SQLite file. The storage test suite runs against
//! both (`storage/tests/storage/main.rs`).
//!
//! PostgreSQL specifics:
//!
//! * **No TLS.** Meant for a server on loopback or a private network;
//!   `sslmode=require` (or stricter) is refused at open rather than silently
//!   downgraded. Put a TLS tunnel or a local pooler in front of a remote server.
//! * **Blocking, from any thread.** Calls block like SQLite's do; the
//!   connections' sockets run on one background thread per store, so a call
//!   from inside a tokio runtime is fine (the sync `postgres` crate would panic).
//! * **One writer across all nodes.** Every write transaction takes one
//!   transaction-scoped advisory lock first, the cluster-wide equivalent of
//!   SQLite's writer mutex: each check-then-write below sees every node's
//!   committed writes. `busy_timeout` becomes `lock_timeout`;
//!   [`Durability::Normal`] becomes `synchronous_commit = off`.
//! * A dropped connection is replaced on the next call (that call may fail
//!   with [`StorageError::Postgres`]). [`Store::checkpoint`] does nothing.
//!
//! # Limits across nodes
//!
//! With PostgreSQL, any node can serve any app; the limits that must hold
//! across nodes are checked against the shared store:
//!
//! | Limit | Read from | Staleness |
//! |---|---|---|
//! | storage (KV bytes of an account's apps) | the KV write's own transaction | none |
//! | `max_apps` of an account | the app insert's own transaction | none |
//! | tenant exists (KV writes of a removed app) | the write's own transaction | none |
//! | monthly requests (tier quota, account totals) | the node's meter, refreshed from the shared usage rows at every flush | ≤ 2 × `usage_flush_interval` (20 s by default) |
//!
//! The first three take the write lock, so two nodes can never both pass a
//! check that only one write fits: they are exact. Usage rows are shared
//! too: [`Store::store_usage`] adds what this node counted since its last
//! write or restore to the stored row (SQLite, one node, keeps absolute
//! totals), and a meter over a shared store loads the merged rows back
//! after each flush ([`UsageSink::shared`](corral_metering::UsageSink::shared)).
//! So a request served on node B reaches the row within B's flush interval
//! and node A's quota within A's next one. Why that staleness is safe: the
//! monthly quota is a billing cap, not a safety limit — every request is
//! still bounded by its tier's fuel, memory, wall clock and compute shares,
//! and the overshoot (at most what the cluster admits in those seconds) is
//! counted and billed exactly, never lost or counted twice. Per-node limits
//! stay per node: the rate limiter (`rate_per_minute`, `burst`) and compute
//! shares hold on each node, so N nodes admit up to N times one node's rate.
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
