//! Typed errors.

use corral_limits::TenantId;

/// Why a key or path was rejected. Returned before anything touches the database.
///
/// ```
/// use corral_storage::{validate_key, InvalidKey};
/// assert_eq!(validate_key(b"a/../b"), Err(InvalidKey::DotSegment));
/// assert_eq!(validate_key(b"a\0b"), Err(InvalidKey::Nul { at: 1 }));
/// assert_eq!(validate_key(b""), Err(InvalidKey::Empty));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKey {
    /// The key is empty.
    #[error("key is empty")]
    Empty,
    /// The key is longer than the limit.
    #[error("key is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Length of the key in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key is not valid UTF-8.
    #[error("key is not valid UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// The key holds a NUL byte.
    #[error("key holds a NUL byte at {at}")]
    Nul {
        /// Byte offset.
        at: usize,
    },
    /// The key holds a control character other than NUL.
    #[error("key holds a control character at byte {at}")]
    Control {
        /// Byte offset.
        at: usize,
    },
    /// A `/`-separated segment is `.` or `..`.
    #[error("key has a '.' or '..' segment")]
    DotSegment,
    /// The key starts or ends with `/` or holds `//`.
    #[error("key has an empty '/' segment")]
    EmptySegment,
    /// The key holds a backslash.
    #[error("key holds a backslash")]
    Backslash,
}

/// A failed storage operation.
///
/// ```
/// use corral_storage::{Store, StoreConfig, StorageError, InvalidKey};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
/// let err = store.put_artifact("../etc/passwd", b"x").unwrap_err();
/// assert!(matches!(err, StorageError::InvalidKey(InvalidKey::DotSegment)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The stored bytes do not match their stored CRC32 (or length). The blob
    /// is now quarantined and its bytes were not returned.
    #[error(
        "integrity check failed for {key}: expected crc32 {expected:08x}, computed {actual:08x}"
    )]
    Integrity {
        /// The blob's key (`kv/<tenant>/<key>`, `bundle/<tenant>/...`, `artifact/<key>`).
        key: String,
        /// The checksum stored with the blob (or chunk).
        expected: u32,
        /// The checksum of the bytes actually read.
        actual: u32,
    },
    /// The blob failed an earlier integrity check and is quarantined until it
    /// is overwritten or deleted.
    #[error("blob {key} is quarantined after a failed integrity check")]
    Quarantined {
        /// The blob's key.
        key: String,
    },
    /// No blob under this key (or it was replaced while being streamed).
    #[error("not found: {key}")]
    NotFound {
        /// The blob's key.
        key: String,
    },
    /// The tenant is not registered.
    #[error("tenant {tenant} not found")]
    TenantNotFound {
        /// The tenant.
        tenant: TenantId,
    },
    /// The tenant is already registered.
    #[error("tenant {tenant} already exists")]
    TenantExists {
        /// The tenant.
        tenant: TenantId,
    },
    /// The account does not exist.
    #[error("account {account} not found")]
    AccountNotFound {
        /// The account.
        account: TenantId,
    },
    /// The account exists already.
    #[error("account {account} already exists")]
    AccountExists {
        /// The account.
        account: TenantId,
    },
    /// The account still holds apps (remove or move them first).
    #[error("account {account} still holds {apps} app(s)")]
    AccountNotEmpty {
        /// The account.
        account: TenantId,
        /// How many apps it holds.
        apps: u64,
    },
    /// The account holds as many apps as its tier allows.
    #[error("account {account} holds {apps} app(s); its tier allows {max}")]
    AppLimit {
        /// The account.
        account: TenantId,
        /// Apps it holds.
        apps: u64,
        /// The tier's `max_apps`.
        max: u32,
    },
    /// The write would take the tenant past its storage limit.
    #[error("storage quota exceeded: limit {limit} B, used {used} B, write needs {needed} B more")]
    StorageQuotaExceeded {
        /// The tenant's limit in bytes.
        limit: u64,
        /// Bytes in use before the write.
        used: u64,
        /// Net bytes the write would add.
        needed: u64,
    },
    /// The key or path is not acceptable.
    #[error("invalid key: {0}")]
    InvalidKey(#[from] InvalidKey),
    /// The value is larger than allowed.
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The value's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The blob is larger than the in-memory threshold; read it with a
    /// streaming [`BlobReader`](crate::BlobReader) instead.
    #[error(
        "blob {key} is {len} bytes, over the in-memory threshold of {threshold}; read it as a stream"
    )]
    TooLargeForMemory {
        /// The blob's key.
        key: String,
        /// The blob's length.
        len: u64,
        /// The configured threshold.
        threshold: u64,
    },
    /// A config value did not (de)serialize.
    #[error("config value {key}: {source}")]
    Config {
        /// The config key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A [`StoreConfig`](crate::StoreConfig) setting is inconsistent.
    #[error("invalid store config: {0}")]
    InvalidConfig(&'static str),
    /// A row holds a value this build cannot interpret (e.g. an unknown app kind).
    #[error("unreadable stored value for {key}: {what}")]
    Corrupt {
        /// The row's key.
        key: String,
        /// What is wrong.
        what: &'static str,
    },
    /// The database was written by a newer build.
    #[error("database schema version {found} is newer than supported ({supported})")]
    SchemaTooNew {
        /// `user_version` found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (connect, query, or a lost connection; the next
    /// call reconnects).
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Reading a caller's source failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
