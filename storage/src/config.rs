//! Store settings.

use std::time::Duration;

use crate::StorageError;

/// How hard a commit is pushed to disk before the call returns.
///
/// ```
/// use corral_storage::{Durability, StoreConfig};
/// let cfg = StoreConfig::default().durability(Durability::Normal);
/// assert_eq!(cfg.get_durability(), Durability::Normal);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `PRAGMA synchronous=FULL`: the WAL is fsynced on every commit. An
    /// acknowledged write survives a process kill and a power cut.
    /// (PostgreSQL: `synchronous_commit = on`, the server's default.)
    #[default]
    Full,
    /// `PRAGMA synchronous=NORMAL`: no fsync per commit (only at checkpoints).
    /// An acknowledged write survives a process kill; a power cut may lose the
    /// last commits but never corrupts the database. (PostgreSQL:
    /// `synchronous_commit = off`: a server crash may lose the last commits.)
    Normal,
}

/// Settings for [`Store::open`](crate::Store::open). Each setter states its default.
///
/// ```
/// use corral_storage::StoreConfig;
/// let cfg = StoreConfig::default().readers(2).sqlite_cache_bytes(4 << 20);
/// assert_eq!(cfg.get_readers(), 2);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StoreConfig {
    pub(crate) sqlite_cache_bytes: u64,
    pub(crate) durability: Durability,
    pub(crate) readers: usize,
    pub(crate) busy_timeout: Duration,
    pub(crate) chunk_threshold: u64,
    pub(crate) chunk_size: usize,
    pub(crate) max_kv_value: u64,
    pub(crate) default_storage_limit: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            sqlite_cache_bytes: 8 << 20,
            durability: Durability::Full,
            readers: 4,
            busy_timeout: Duration::from_secs(10),
            chunk_threshold: 5 << 20,
            chunk_size: 1 << 20,
            max_kv_value: 1 << 20,
            default_storage_limit: None,
        }
    }
}

impl StoreConfig {
    /// SQLite page cache per connection, in bytes (`PRAGMA cache_size`).
    /// Default 8 MiB; the host probe feeds this. Ignored by PostgreSQL.
    pub fn sqlite_cache_bytes(mut self, bytes: u64) -> Self {
        self.sqlite_cache_bytes = bytes;
        self
    }
    /// Commit durability. Default [`Durability::Full`].
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    /// Size of the reader connection pool (at least 1). Default 4. On
    /// PostgreSQL a store opens up to this many connections plus the writer.
    pub fn readers(mut self, n: usize) -> Self {
        self.readers = n;
        self
    }
    /// How long a connection waits on a lock before giving up
    /// (SQLite `busy_timeout`, PostgreSQL `lock_timeout`). Default 10 s.
    pub fn busy_timeout(mut self, t: Duration) -> Self {
        self.busy_timeout = t;
        self
    }
    /// Blobs longer than this are stored in chunks and must be read as a
    /// stream. Default 5 MiB.
    pub fn chunk_threshold(mut self, bytes: u64) -> Self {
        self.chunk_threshold = bytes;
        self
    }
    /// Size of one chunk of a large blob. Default 1 MiB.
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }
    /// Largest tenant KV value. Default 1 MiB; must not exceed the chunk threshold.
    pub fn max_kv_value(mut self, bytes: u64) -> Self {
        self.max_kv_value = bytes;
        self
    }
    /// KV byte limit for tenants with no stored limit when none is passed.
    /// Default `None` (unlimited).
    pub fn default_storage_limit(mut self, bytes: Option<u64>) -> Self {
        self.default_storage_limit = bytes;
        self
    }
    /// The configured durability.
    pub fn get_durability(&self) -> Durability {
        self.durability
    }
    /// The configured reader pool size.
    pub fn get_readers(&self) -> usize {
        self.readers
    }
    /// The configured chunk threshold.
    pub fn get_chunk_threshold(&self) -> u64 {
        self.chunk_threshold
    }

    pub(crate) fn validate(&self) -> Result<(), StorageError> {
        if self.readers == 0 {
            return Err(StorageError::InvalidConfig("readers must be at least 1"));
        }
        if self.chunk_size == 0 || self.chunk_size > (64 << 20) {
            return Err(StorageError::InvalidConfig(
                "chunk_size must be 1 B..=64 MiB",
            ));
        }
        if self.chunk_threshold > (512 << 20) {
            return Err(StorageError::InvalidConfig(
                "chunk_threshold must be at most 512 MiB",
            ));
        }
        if self.max_kv_value > self.chunk_threshold {
            return Err(StorageError::InvalidConfig(
                "max_kv_value must not exceed chunk_threshold",
            ));
        }
        Ok(())
    }
}
