//! The store: backend selection, SQLite connections, pragmas and
//! migrations, the writer and the reader pool (PostgreSQL's side is in
//! `pg.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use corral_limits::TenantId;
use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::db::{Db, Sqlite};
use crate::pg::Pg;
use crate::{Durability, StorageError, StoreConfig};

/// Schema migrations; `user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: blobs, tenants, bundles, KV accounting, usage, config.
    r#"
    CREATE TABLE blobs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        key         TEXT    NOT NULL UNIQUE,
        len         INTEGER NOT NULL,
        crc32       INTEGER NOT NULL,
        chunks      INTEGER NOT NULL,
        data        BLOB,
        quarantined INTEGER NOT NULL DEFAULT 0,
        created     INTEGER NOT NULL
    );
    CREATE TABLE blob_chunks (
        blob_id INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        len     INTEGER NOT NULL,
        crc32   INTEGER NOT NULL,
        data    BLOB    NOT NULL,
        PRIMARY KEY (blob_id, seq)
    );
    CREATE TABLE tenants (
        name          TEXT PRIMARY KEY,
        tier          TEXT    NOT NULL,
        kind          TEXT    NOT NULL,
        created       INTEGER NOT NULL,
        storage_limit INTEGER
    );
    CREATE TABLE kv_bytes (
        tenant TEXT PRIMARY KEY,
        bytes  INTEGER NOT NULL
    );
    CREATE TABLE bundles (
        tenant  TEXT PRIMARY KEY,
        kind    TEXT    NOT NULL,
        version INTEGER NOT NULL,
        files   INTEGER NOT NULL,
        bytes   INTEGER NOT NULL,
        crc32   INTEGER NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE TABLE usage (
        tenant        TEXT    NOT NULL,
        year          INTEGER NOT NULL,
        month         INTEGER NOT NULL,
        requests      INTEGER NOT NULL,
        errors        INTEGER NOT NULL,
        exec_time_ms  INTEGER NOT NULL,
        fuel          INTEGER NOT NULL,
        peak_memory   INTEGER NOT NULL,
        peak_streams  INTEGER NOT NULL,
        storage_bytes INTEGER NOT NULL,
        bytes_in      INTEGER NOT NULL,
        bytes_out     INTEGER NOT NULL,
        cold_starts   INTEGER NOT NULL,
        PRIMARY KEY (tenant, year, month)
    );
    CREATE TABLE config (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 2: requests refused by a limit, by refusal code, as a JSON object
    // (`{"rate_limited": 12}`); rows written before it have none.
    r#"
    ALTER TABLE usage ADD COLUMN refused TEXT NOT NULL DEFAULT '{}';
    "#,
    // 3: accounts. Every app belongs to one; an app from before accounts
    // gets an account of its own, of its name and tier. `account_usage`
    // holds each account's monthly totals (all its apps together, the
    // figures its quota reads), rows shaped like `usage`; `account_tokens`
    // the hashes of the API tokens scoped to an account.
    r#"
    CREATE TABLE accounts (
        name    TEXT PRIMARY KEY,
        tier    TEXT    NOT NULL,
        created INTEGER NOT NULL
    );
    ALTER TABLE tenants ADD COLUMN account TEXT;
    INSERT OR IGNORE INTO accounts (name, tier, created) SELECT name, tier, created FROM tenants;
    UPDATE tenants SET account = name WHERE account IS NULL;
    CREATE INDEX tenants_by_account ON tenants (account);
    CREATE TABLE account_usage (
        tenant        TEXT    NOT NULL,
        year          INTEGER NOT NULL,
        month         INTEGER NOT NULL,
        requests      INTEGER NOT NULL,
        errors        INTEGER NOT NULL,
        exec_time_ms  INTEGER NOT NULL,
        fuel          INTEGER NOT NULL,
        peak_memory   INTEGER NOT NULL,
        peak_streams  INTEGER NOT NULL,
        storage_bytes INTEGER NOT NULL,
        bytes_in      INTEGER NOT NULL,
        bytes_out     INTEGER NOT NULL,
        cold_starts   INTEGER NOT NULL,
        refused       TEXT    NOT NULL DEFAULT '{}',
        PRIMARY KEY (tenant, year, month)
    );
    CREATE TABLE account_tokens (
        id      TEXT    PRIMARY KEY,
        account TEXT    NOT NULL,
        hash    BLOB    NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE INDEX account_tokens_by_account ON account_tokens (account);
    "#,
    // 4: CPU time of invocations, in microseconds (both engines' common
    // measure of work beside their own fuel); rows written before it have 0.
    r#"
    ALTER TABLE usage ADD COLUMN cpu_us INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE account_usage ADD COLUMN cpu_us INTEGER NOT NULL DEFAULT 0;
    "#,
    // 5: each usage journal's last committed flush (metering's `Journal`),
    // written in the flush's transaction: what a restarted node reads to
    // hand over, exactly once, the counts its killed predecessor never flushed.
    r#"
    CREATE TABLE usage_marks (
        journal TEXT    PRIMARY KEY,
        seq     INTEGER NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

type BundleListener = Box<dyn Fn(&TenantId) + Send + Sync>;

/// Counters of a [`Store`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Integrity failures detected by reads and scrubs since open.
    pub integrity_failures: u64,
    /// Blobs verified by reads and scrubs since open.
    pub blobs_verified: u64,
    /// Read transactions since open (every query through the reader pool).
    pub reads: u64,
    /// Bundle-change hooks registered ([`Store::on_bundle_change`]).
    pub bundle_listeners: usize,
}

/// At most `max` connections, opened on demand, reused.
pub(crate) struct Pool<C> {
    idle: Mutex<Vec<C>>,
    open: AtomicU64,
    cv: Condvar,
    max: usize,
}

impl<C> Pool<C> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            open: AtomicU64::new(0),
            cv: Condvar::new(),
            max,
        }
    }

    /// An idle connection, a new one (`open`) while under `max`, or waits.
    pub(crate) fn checkout(
        &self,
        open: impl FnOnce() -> Result<C, StorageError>,
    ) -> Result<C, StorageError> {
        let mut pool = self.idle.lock();
        loop {
            if let Some(c) = pool.pop() {
                return Ok(c);
            }
            if (self.open.load(Ordering::Relaxed) as usize) < self.max {
                self.open.fetch_add(1, Ordering::Relaxed);
                drop(pool);
                return open().inspect_err(|_| self.discard());
            }
            self.cv.wait(&mut pool);
        }
    }

    pub(crate) fn checkin(&self, c: C) {
        self.idle.lock().push(c);
        self.cv.notify_one();
    }

    /// A checked-out connection was dropped instead of returned.
    pub(crate) fn discard(&self) {
        let _guard = self.idle.lock();
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.cv.notify_one();
    }
}

enum Backend {
    Sqlite {
        writer: Mutex<Connection>,
        readers: Pool<Connection>,
    },
    // Boxed: the PostgreSQL side is several times the SQLite one.
    Postgres(Box<Pg>),
}

pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) cfg: StoreConfig,
    backend: Backend,
    pub(crate) integrity_failures: AtomicU64,
    pub(crate) blobs_verified: AtomicU64,
    reads: AtomicU64,
    pub(crate) bundle_generation: AtomicU64,
    listeners: Mutex<Vec<BundleListener>>,
    /// PostgreSQL only: per (table, tenant, year, month), the totals this
    /// node's meter last wrote or loaded (see `tenant::store_usage_rows`).
    pub(crate) usage_base: Mutex<UsageBase>,
    /// PostgreSQL only: usage writes whose commit's answer was lost and
    /// whose mark could not be read back then, per table: resolved before
    /// that table's next write (see `tenant::store_usage_rows`). Locked
    /// after `usage_base`.
    pub(crate) usage_unsure: Mutex<Vec<UnsureWrite>>,
}

/// A usage write that may or may not have committed: its table, its
/// journal's mark and its rows.
pub(crate) type UnsureWrite = (
    &'static str,
    corral_metering::JournalMark,
    Vec<corral_metering::Usage>,
);

/// Baselines of this node's usage totals, keyed by (table, tenant, year, month).
pub(crate) type UsageBase =
    std::collections::HashMap<(&'static str, TenantId, i32, u8), corral_metering::Usage>;

/// Everything Corral stores: one SQLite database (the embedded default) or a
/// PostgreSQL database shared by many nodes, behind the same methods. Cheap
/// to clone (an `Arc` inside), `Send + Sync`.
///
/// ```
/// use corral_storage::{Store, StoreConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("corral.db"), StoreConfig::default()).unwrap();
/// let meta = store.put_artifact("wasm/acme.cwasm", b"\0asm").unwrap();
/// assert_eq!(meta.len, 4);
/// let blob = store.get_artifact("wasm/acme.cwasm").unwrap().unwrap();
/// assert_eq!(blob.crc32, meta.crc32);
/// ```
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .field("path", &self.inner.path)
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

fn configure(conn: &Connection, cfg: &StoreConfig) -> Result<(), StorageError> {
    conn.busy_timeout(cfg.busy_timeout)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    // Negative cache_size is in KiB.
    let kib = (cfg.sqlite_cache_bytes / 1024).max(1) as i64;
    conn.pragma_update(None, "cache_size", -kib)?;
    let sync = match cfg.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    Ok(())
}

impl Store {
    /// Opens the store at `location`: a `postgres://` or `postgresql://` URL
    /// selects a PostgreSQL server (the shared store of many nodes; see the
    /// crate docs for what that changes); anything else is a SQLite file,
    /// created if needed and switched to WAL. Either way pending migrations
    /// are applied first, under a lock, so nodes opening at once never apply
    /// one twice.
    ///
    /// ```no_run
    /// use corral_storage::{Store, StoreConfig};
    /// // Loopback server, no TLS (sslmode=require is refused).
    /// let shared = Store::open("postgres://corral@127.0.0.1:5432/corral", StoreConfig::default())?;
    /// assert_eq!(shared.backend_name(), "postgres");
    /// # Ok::<(), corral_storage::StorageError>(())
    /// ```
    ///
    /// Errors: [`StorageError::InvalidConfig`] for inconsistent settings,
    /// [`StorageError::SchemaTooNew`] for a database from a newer build,
    /// [`StorageError::Sqlite`] / [`StorageError::Postgres`] when the
    /// database cannot be opened or reached.
    pub fn open(location: impl AsRef<Path>, cfg: StoreConfig) -> Result<Self, StorageError> {
        cfg.validate()?;
        let location = location.as_ref();
        let (path, backend) = match location.to_str().filter(|s| crate::pg::is_url(s)) {
            Some(url) => (
                PathBuf::from(crate::pg::redact(url)),
                Backend::Postgres(Box::new(Pg::open(url, &cfg)?)),
            ),
            None => (location.to_path_buf(), open_sqlite(location, &cfg)?),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                cfg,
                backend,
                integrity_failures: AtomicU64::new(0),
                blobs_verified: AtomicU64::new(0),
                reads: AtomicU64::new(0),
                bundle_generation: AtomicU64::new(0),
                listeners: Mutex::new(Vec::new()),
                usage_base: Mutex::new(UsageBase::new()),
                usage_unsure: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The database file, or for PostgreSQL the URL with any password
    /// replaced by `***`.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// `"sqlite"` or `"postgres"`.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// assert_eq!(store.backend_name(), "sqlite");
    /// ```
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether many nodes may share this store (PostgreSQL): usage totals
    /// are then merged into the stored rows instead of replacing them, and
    /// an app moved between nodes needs no copy.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// assert!(!store.is_shared());
    /// ```
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.backend, Backend::Postgres(_))
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    /// The schema version of the open database (the same number means the
    /// same tables on both backends).
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// assert_eq!(store.schema_version().unwrap(), 5);
    /// ```
    pub fn schema_version(&self) -> Result<i64, StorageError> {
        match &self.inner.backend {
            Backend::Sqlite { .. } => self.with_sqlite_reader(|c| {
                Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?)
            }),
            Backend::Postgres(pg) => pg.schema_version(),
        }
    }

    /// Counters since open.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            integrity_failures: self.inner.integrity_failures.load(Ordering::Relaxed),
            blobs_verified: self.inner.blobs_verified.load(Ordering::Relaxed),
            reads: self.inner.reads.load(Ordering::Relaxed),
            bundle_listeners: self.inner.listeners.lock().len(),
        }
    }

    /// SQLite: copies the WAL into the main database file and truncates the
    /// WAL (`PRAGMA wal_checkpoint(TRUNCATE)`), waiting for readers via
    /// `busy_timeout`. PostgreSQL: nothing to do (the server checkpoints).
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let Backend::Sqlite { writer, .. } = &self.inner.backend else {
            return Ok(());
        };
        let conn = writer.lock();
        // (busy, wal frames, frames checkpointed); busy = 1 means a reader
        // kept it from finishing within busy_timeout.
        let (busy, _, _): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if busy != 0 {
            return Err(StorageError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("checkpoint blocked by a reader".into()),
            )));
        }
        Ok(())
    }

    /// Registers a callback run after every committed bundle change (replace
    /// or delete) with the tenant whose bundle changed. The asset cache uses
    /// it to drop stale entries.
    pub fn on_bundle_change(&self, f: impl Fn(&TenantId) + Send + Sync + 'static) {
        self.inner.listeners.lock().push(Box::new(f));
    }

    /// Runs the [`on_bundle_change`](Self::on_bundle_change) callbacks for a
    /// bundle that changed through another process sharing this store (a
    /// node that saw it in [`bundle_versions`](Self::bundle_versions)).
    pub fn notify_bundle_change(&self, tenant: &TenantId) {
        self.bundle_changed(tenant);
    }

    pub(crate) fn bundle_changed(&self, tenant: &TenantId) {
        self.inner.bundle_generation.fetch_add(1, Ordering::SeqCst);
        for l in self.inner.listeners.lock().iter() {
            l(tenant);
        }
    }

    /// Runs `f` in one write transaction (SQLite: IMMEDIATE on the writer
    /// connection; PostgreSQL: under the cluster-wide write lock); commits on
    /// `Ok`, rolls back on `Err`.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                let mut conn = writer.lock();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = f(&mut Sqlite(&tx))?;
                tx.commit()?;
                Ok(out)
            }
            Backend::Postgres(pg) => pg.write(f),
        }
    }

    /// Runs `f` on a pooled reader connection.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match &self.inner.backend {
            Backend::Sqlite { .. } => self.with_sqlite_reader(|c| f(&mut Sqlite(c))),
            Backend::Postgres(pg) => {
                self.inner.reads.fetch_add(1, Ordering::Relaxed);
                pg.read(f)
            }
        }
    }

    fn with_sqlite_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let Backend::Sqlite { readers, .. } = &self.inner.backend else {
            unreachable!("only called on the SQLite backend");
        };
        self.inner.reads.fetch_add(1, Ordering::Relaxed);
        let conn = readers.checkout(|| open_reader(&self.inner.path, &self.inner.cfg))?;
        let out = f(&conn);
        readers.checkin(conn);
        out
    }
}

fn open_sqlite(path: &Path, cfg: &StoreConfig) -> Result<Backend, StorageError> {
    let mut writer = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&writer, cfg)?;
    let mode: String = writer.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::InvalidConfig(
            "the file system does not support WAL",
        ));
    }
    migrate(&mut writer)?;
    Ok(Backend::Sqlite {
        writer: Mutex::new(writer),
        readers: Pool::new(cfg.readers),
    })
}

fn open_reader(path: &Path, cfg: &StoreConfig) -> Result<Connection, StorageError> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&c, cfg)?;
    Ok(c)
}

fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    loop {
        // Read the version inside the write lock so two processes opening
        // the same file at once never apply a migration twice.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StorageError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            tx.commit()?;
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[found as usize])?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
