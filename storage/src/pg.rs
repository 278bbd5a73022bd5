//! The PostgreSQL backend: the shared store of many nodes.
//!
//! Connections are `tokio-postgres` clients. Their socket halves (the
//! `Connection` futures) run on one background thread per [`Store`](crate::Store)
//! with its own current-thread tokio runtime; callers drive queries with
//! `futures_executor::block_on`, which only waits on channels to that thread.
//! So a `Store` call blocks its caller exactly like a SQLite call does, from
//! any thread — including a tokio worker, where the sync `postgres` crate
//! would panic ("cannot start a runtime from within a runtime").
//!
//! No TLS: the store is meant for a server on loopback or a private network
//! (`sslmode` other than `disable`/`prefer` is refused at open). Put a TLS
//! tunnel or a local pooler in front of a remote server.
//!
//! Writes are serialized across every node by a transaction-scoped advisory
//! lock (`pg_advisory_xact_lock`), the same one-writer rule SQLite's writer
//! mutex gives one node: every check-then-write (KV quota, `max_apps`, tenant
//! exists) sees every other node's committed writes and no write slips in
//! between. Reads run statement by statement, each on its own snapshot, as
//! on SQLite's reader connections.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

use crate::db::{Db, P, Row, V};
use crate::store::Pool;
use crate::{Durability, StorageError, StoreConfig};

/// Advisory lock key of the write transaction ("corral" + 'w').
const WRITE_LOCK: i64 = 0x636f_7272_616c_0077;
/// Advisory lock key of migrations ("corral" + 'm').
const MIGRATE_LOCK: i64 = 0x636f_7272_616c_006d;

/// PostgreSQL migrations, one per SQLite migration of the same number, so a
/// schema version means the same tables on both backends. Text keys are
/// `COLLATE "C"`: byte order, as SQLite compares, for prefix scans and listings.
const MIGRATIONS: &[&str] = &[
    // 1: blobs, tenants, bundles, KV accounting, usage, config.
    r#"
    CREATE TABLE blobs (
        id          BIGSERIAL PRIMARY KEY,
        key         TEXT COLLATE "C" NOT NULL UNIQUE,
        len         BIGINT NOT NULL,
        crc32       BIGINT NOT NULL,
        chunks      BIGINT NOT NULL,
        data        BYTEA,
        quarantined BIGINT NOT NULL DEFAULT 0,
        created     BIGINT NOT NULL
    );
    CREATE TABLE blob_chunks (
        blob_id BIGINT NOT NULL,
        seq     BIGINT NOT NULL,
        len     BIGINT NOT NULL,
        crc32   BIGINT NOT NULL,
        data    BYTEA  NOT NULL,
        PRIMARY KEY (blob_id, seq)
    );
    CREATE TABLE tenants (
        name          TEXT COLLATE "C" PRIMARY KEY,
        tier          TEXT   NOT NULL,
        kind          TEXT   NOT NULL,
        created       BIGINT NOT NULL,
        storage_limit BIGINT
    );
    CREATE TABLE kv_bytes (
        tenant TEXT COLLATE "C" PRIMARY KEY,
        bytes  BIGINT NOT NULL
    );
    CREATE TABLE bundles (
        tenant  TEXT COLLATE "C" PRIMARY KEY,
        kind    TEXT   NOT NULL,
        version BIGINT NOT NULL,
        files   BIGINT NOT NULL,
        bytes   BIGINT NOT NULL,
        crc32   BIGINT NOT NULL,
        updated BIGINT NOT NULL
    );
    CREATE TABLE usage (
        tenant        TEXT COLLATE "C" NOT NULL,
        year          BIGINT NOT NULL,
        month         BIGINT NOT NULL,
        requests      BIGINT NOT NULL,
        errors        BIGINT NOT NULL,
        exec_time_ms  BIGINT NOT NULL,
        fuel          BIGINT NOT NULL,
        peak_memory   BIGINT NOT NULL,
        peak_streams  BIGINT NOT NULL,
        storage_bytes BIGINT NOT NULL,
        bytes_in      BIGINT NOT NULL,
        bytes_out     BIGINT NOT NULL,
        cold_starts   BIGINT NOT NULL,
        PRIMARY KEY (tenant, year, month)
    );
    CREATE TABLE config (
        key   TEXT COLLATE "C" PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 2: refused requests by refusal code, as a JSON object.
    r#"
    ALTER TABLE usage ADD COLUMN refused TEXT NOT NULL DEFAULT '{}';
    "#,
    // 3: accounts, account usage, account tokens (see store.rs).
    r#"
    CREATE TABLE accounts (
        name    TEXT COLLATE "C" PRIMARY KEY,
        tier    TEXT   NOT NULL,
        created BIGINT NOT NULL
    );
    ALTER TABLE tenants ADD COLUMN account TEXT COLLATE "C";
    INSERT INTO accounts (name, tier, created) SELECT name, tier, created FROM tenants
        ON CONFLICT DO NOTHING;
    UPDATE tenants SET account = name WHERE account IS NULL;
    CREATE INDEX tenants_by_account ON tenants (account);
    CREATE TABLE account_usage (
        tenant        TEXT COLLATE "C" NOT NULL,
        year          BIGINT NOT NULL,
        month         BIGINT NOT NULL,
        requests      BIGINT NOT NULL,
        errors        BIGINT NOT NULL,
        exec_time_ms  BIGINT NOT NULL,
        fuel          BIGINT NOT NULL,
        peak_memory   BIGINT NOT NULL,
        peak_streams  BIGINT NOT NULL,
        storage_bytes BIGINT NOT NULL,
        bytes_in      BIGINT NOT NULL,
        bytes_out     BIGINT NOT NULL,
        cold_starts   BIGINT NOT NULL,
        refused       TEXT   NOT NULL DEFAULT '{}',
        PRIMARY KEY (tenant, year, month)
    );
    CREATE TABLE account_tokens (
        id      TEXT COLLATE "C" PRIMARY KEY,
        account TEXT COLLATE "C" NOT NULL,
        hash    BYTEA  NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE INDEX account_tokens_by_account ON account_tokens (account);
    "#,
    // 4: CPU time of invocations, in microseconds.
    r#"
    ALTER TABLE usage ADD COLUMN cpu_us BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE account_usage ADD COLUMN cpu_us BIGINT NOT NULL DEFAULT 0;
    "#,
    // 5: each usage journal's last committed flush (see store.rs).
    r#"
    CREATE TABLE usage_marks (
        journal TEXT   PRIMARY KEY,
        seq     BIGINT NOT NULL
    );
    "#,
];

/// Whether `s` names a PostgreSQL server rather than a SQLite file.
pub(crate) fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// `url` with any password replaced by `***`, for `Store::path` and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.split_once('@') {
        Some((a, h)) if !a.contains('/') => (a, h),
        _ => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl ToSql for P<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            P::Null => Ok(IsNull::Yes),
            // Every integer column is BIGINT; an INT4 slot comes from an
            // expression PostgreSQL typed itself (e.g. a literal's peer).
            P::I(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            P::I(v) => v.to_sql(ty, out),
            P::T(s) => s.to_sql(ty, out),
            P::B(b) => b.to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// `?N` placeholders (the SQLite spelling used in every query) as `$N`.
fn dollar(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut it = sql.chars().peekable();
    while let Some(c) = it.next() {
        if c == '?' && it.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn value(row: &tokio_postgres::Row, i: usize) -> Result<V, StorageError> {
    let ty = row.columns()[i].type_();
    Ok(if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?.map_or(V::Null, V::I)
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?
            .map_or(V::Null, |v| V::I(v.into()))
    } else if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)?
            .map_or(V::Null, |v| V::I(v.into()))
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?
            .map_or(V::Null, |v| V::I(v.into()))
    } else if *ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i)?.map_or(V::Null, V::B)
    } else {
        // TEXT, VARCHAR, NAME, BPCHAR; anything else fails here with a typed error.
        row.try_get::<_, Option<String>>(i)?.map_or(V::Null, V::T)
    })
}

/// One client with its prepared statements.
pub(crate) struct PgConn {
    client: Client,
    stmts: HashMap<String, Statement>,
    /// Inside a transaction this struct began (rolled back before reuse
    /// when a panic left it open).
    in_tx: bool,
}

impl PgConn {
    fn stmt(&mut self, sql: &str) -> Result<Statement, StorageError> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = futures_executor::block_on(self.client.prepare(&dollar(sql)))?;
        self.stmts.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StorageError> {
        Ok(futures_executor::block_on(self.client.batch_execute(sql))?)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

fn params<'a>(p: &'a [P<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Db for PgConn {
    fn exec(&mut self, sql: &str, p: &[P<'_>]) -> Result<u64, StorageError> {
        let st = self.stmt(sql)?;
        Ok(futures_executor::block_on(
            self.client.execute(&st, &params(p)),
        )?)
    }

    fn query(&mut self, sql: &str, p: &[P<'_>]) -> Result<Vec<Row>, StorageError> {
        let st = self.stmt(sql)?;
        let rows = futures_executor::block_on(self.client.query(&st, &params(p)))?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| value(r, i))
                    .collect::<Result<_, _>>()
                    .map(Row)
            })
            .collect()
    }
}

type Reply = std::sync::mpsc::SyncSender<Result<Client, tokio_postgres::Error>>;

/// The PostgreSQL side of a store.
pub(crate) struct Pg {
    conf: tokio_postgres::Config,
    /// Connect requests to the background thread; dropping it ends the thread.
    connect: tokio::sync::mpsc::UnboundedSender<Reply>,
    writer: Mutex<Option<PgConn>>,
    readers: Pool<PgConn>,
    session: String,
}

impl Pg {
    pub(crate) fn open(url: &str, cfg: &StoreConfig) -> Result<Self, StorageError> {
        let mut conf: tokio_postgres::Config = url.parse()?;
        if !matches!(
            conf.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable | tokio_postgres::config::SslMode::Prefer
        ) {
            return Err(StorageError::InvalidConfig(
                "postgres: TLS is not supported; use a loopback or private-network server with sslmode=disable",
            ));
        }
        conf.ssl_mode(tokio_postgres::config::SslMode::Disable);
        if conf.get_connect_timeout().is_none() {
            conf.connect_timeout(Duration::from_secs(10));
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Reply>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_conf = conf.clone();
        std::thread::Builder::new()
            .name("corral-pg".into())
            .spawn(move || {
                rt.block_on(async move {
                    while let Some(reply) = rx.recv().await {
                        let got = thread_conf.connect(NoTls).await.map(|(client, conn)| {
                            tokio::spawn(async move {
                                // Ends when its client is dropped or the server goes away;
                                // the client then reports is_closed and is replaced.
                                let _ = conn.await;
                            });
                            client
                        });
                        let _ = reply.send(got);
                    }
                });
            })?;
        // lock_timeout plays SQLite's busy_timeout: how long a writer waits
        // for the write lock (or a row lock) before failing.
        let mut session = format!(
            "SET lock_timeout = {}; SET client_min_messages = warning;",
            cfg.busy_timeout.as_millis().max(1)
        );
        if cfg.durability == Durability::Normal {
            // Like SQLite's synchronous=NORMAL: a commit returns before its WAL
            // record is flushed; a server crash may lose the last commits,
            // never corrupts.
            session.push_str(" SET synchronous_commit = off;");
        }
        let pg = Pg {
            conf,
            connect: tx,
            writer: Mutex::new(None),
            readers: Pool::new(cfg.readers),
            session,
        };
        let mut w = pg.connect()?;
        migrate(&mut w)?;
        *pg.writer.lock() = Some(w);
        Ok(pg)
    }

    fn connect(&self) -> Result<PgConn, StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.connect
            .send(tx)
            .map_err(|_| StorageError::InvalidConfig("postgres: connection thread is gone"))?;
        let client = rx
            .recv()
            .map_err(|_| StorageError::InvalidConfig("postgres: connection thread is gone"))??;
        let mut c = PgConn {
            client,
            stmts: HashMap::new(),
            in_tx: false,
        };
        c.batch(&self.session)?;
        Ok(c)
    }

    /// The database name, for `Debug`.
    pub(crate) fn dbname(&self) -> Option<&str> {
        self.conf.get_dbname()
    }

    /// Runs `f` in one transaction holding the cluster-wide write lock;
    /// commits on `Ok`, rolls back on `Err`.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut slot = self.writer.lock();
        if slot.as_ref().is_none_or(PgConn::is_closed) {
            *slot = None;
            *slot = Some(self.connect()?);
        }
        let conn = slot.as_mut().expect("writer connected above");
        if conn.in_tx {
            conn.batch("ROLLBACK")?;
            conn.in_tx = false;
        }
        conn.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        ))?;
        conn.in_tx = true;
        match f(conn) {
            Ok(v) => {
                conn.batch("COMMIT")?;
                conn.in_tx = false;
                Ok(v)
            }
            Err(e) => {
                if conn.batch("ROLLBACK").is_ok() {
                    conn.in_tx = false;
                }
                Err(e)
            }
        }
    }

    /// Runs `f` on a pooled reader connection (autocommit).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = self.readers.checkout(|| self.connect())?;
        if conn.is_closed() {
            self.readers.discard();
            conn = self.readers.checkout(|| self.connect())?;
        }
        let out = f(&mut conn);
        if conn.is_closed() {
            self.readers.discard();
        } else {
            self.readers.checkin(conn);
        }
        out
    }

    pub(crate) fn schema_version(&self) -> Result<i64, StorageError> {
        self.read(|c| {
            Ok(c.opt("SELECT version FROM corral_schema", &[])?
                .map(|r| r.i(0))
                .transpose()?
                .unwrap_or(0))
        })
    }
}

/// Applies pending migrations in one transaction under the migration lock,
/// so nodes starting at once never apply one twice.
fn migrate(c: &mut PgConn) -> Result<(), StorageError> {
    let supported = MIGRATIONS.len() as i64;
    c.batch(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({MIGRATE_LOCK});
         CREATE TABLE IF NOT EXISTS corral_schema (version BIGINT NOT NULL)"
    ))?;
    c.in_tx = true;
    let run = |c: &mut PgConn| -> Result<(), StorageError> {
        let found = match c.opt("SELECT version FROM corral_schema", &[])? {
            Some(r) => r.i(0)?,
            None => {
                c.exec("INSERT INTO corral_schema (version) VALUES (0)", &[])?;
                0
            }
        };
        if found > supported {
            return Err(StorageError::SchemaTooNew { found, supported });
        }
        for (n, m) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            c.batch(m)?;
            c.exec(
                "UPDATE corral_schema SET version = ?1",
                &[P::I(n as i64 + 1)],
            )?;
        }
        Ok(())
    };
    let out = run(c);
    c.batch(if out.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    c.in_tx = false;
    // Statements prepared before the schema changed would be stale.
    c.stmts.clear();
    out
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("dbname", &self.dbname())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_redaction() {
        assert_eq!(
            dollar("a = ?1 AND b < ?12 OR c = '?'"),
            "a = $1 AND b < $12 OR c = '?'"
        );
        assert_eq!(
            redact("postgres://corral:s3cret@127.0.0.1:5432/db"),
            "postgres://corral:***@127.0.0.1:5432/db"
        );
        assert_eq!(redact("postgres://corral@h/db"), "postgres://corral@h/db");
        assert!(is_url("postgresql://h/db") && !is_url("/var/lib/corral.db"));
    }
}
