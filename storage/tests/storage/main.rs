//! Integration tests for `corral-storage` (issue 4's "Done when" list).
//!
//! Tests that hold for every backend are written once, as `fn name(b: Backend)`,
//! and listed in `both!`, which makes `name::sqlite` and `name::postgres`.
//! The PostgreSQL half needs a server: `CORRAL_TEST_PG_URL` (a superuser URL,
//! e.g. from `scripts/pg-test-server`, which `scripts/test` uses); each test
//! gets a database of its own there. Without the variable the PostgreSQL
//! tests are skipped with a loud message, except under `CI=true`, where they
//! fail. The SQLite-only tests are about the file itself (WAL, crash
//! recovery, byte flips in the file, migrations of old files).
// The counting allocator below needs `unsafe impl GlobalAlloc`; it only
// forwards to the system allocator and records sizes in thread-locals.
#![allow(unsafe_code)]

mod alloc_track;
mod asset;
mod blobs;
mod cache;
mod concurrency;
mod crash;
mod integrity;
mod tenant;

use corral_limits::TenantId;
use corral_storage::{Store, StoreConfig};

pub(crate) fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

/// Which backend a test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// `both!(name, ...)`: for each `fn name(b: Backend)` in scope, tests
/// `name::sqlite` and `name::postgres`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::Backend::Sqlite);
            }
            #[test]
            fn postgres() {
                if $crate::pg_base().is_some() {
                    super::$name($crate::Backend::Postgres);
                }
            }
        }
    )*};
}
pub(crate) use both;

/// The test server's URL, `None` (after a loud message) when there is none
/// and this is not CI. Under `CI=true` a missing server fails the test.
pub(crate) fn pg_base() -> Option<String> {
    match std::env::var("CORRAL_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but CORRAL_TEST_PG_URL is unset: run the storage tests under \
             scripts/pg-test-server (scripts/test does)"
        ),
        _ => {
            // Once per run, and past the harness's output capture (which
            // would hide an eprintln! of a passing test).
            static LOUD: std::sync::Once = std::sync::Once::new();
            LOUD.call_once(|| {
                use std::io::Write;
                let _ = std::io::stderr().write_all(
                    b"\n*** SKIPPING the PostgreSQL storage tests: CORRAL_TEST_PG_URL is unset \
                      (run `scripts/pg-test-server cargo test -p corral-storage`) ***\n\n",
                );
            });
            None
        }
    }
}

/// Runs one statement on the server at `url`; returns the rows it changed
/// (or returned). Works from any thread, inside a runtime or not.
pub(crate) fn pg_exec(url: &str, sql: &str) -> u64 {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let h = tokio::spawn(conn);
            let n = if sql.starts_with("CREATE DATABASE") {
                // Not allowed in the extended protocol's implicit transaction.
                c.batch_execute(&sql).await.unwrap();
                0
            } else {
                c.execute(sql.as_str(), &[]).await.unwrap()
            };
            drop(c);
            let _ = h.await;
            n
        })
    })
    .join()
    .unwrap()
}

impl Backend {
    /// Where the store `name` of this test lives: a file in `dir`, or a
    /// database of its own on the test server (made on first use, the same
    /// one for the same `dir` and `name`, so reopening finds the data).
    pub(crate) fn location(self, dir: &tempfile::TempDir, name: &str) -> String {
        match self {
            Backend::Sqlite => dir.path().join(name).to_string_lossy().into_owned(),
            Backend::Postgres => {
                let base = pg_base().expect("both! checks the server first");
                let tag: String = format!(
                    "{}_{name}",
                    dir.path().file_name().unwrap().to_string_lossy()
                )
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
                let db = format!("t{tag}");
                let found = pg_exec(
                    &base,
                    &format!("SELECT 1 FROM pg_database WHERE datname = '{db}'"),
                );
                if found == 0 {
                    pg_exec(&base, &format!("CREATE DATABASE \"{db}\""));
                }
                let (head, query) = base.split_once('?').unwrap_or((&base, ""));
                let (server, _) = head.rsplit_once('/').expect("URL names a database");
                let q = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                format!("{server}/{db}{q}")
            }
        }
    }

    /// A store named `name` of this test with `cfg`.
    pub(crate) fn open_cfg(self, dir: &tempfile::TempDir, name: &str, cfg: StoreConfig) -> Store {
        let s = Store::open(self.location(dir, name), cfg).unwrap();
        assert_eq!(
            s.backend_name(),
            if self == Backend::Sqlite {
                "sqlite"
            } else {
                "postgres"
            }
        );
        s
    }

    /// The test's default store with the default settings.
    pub(crate) fn open(self, dir: &tempfile::TempDir) -> Store {
        self.open_cfg(dir, "corral.db", StoreConfig::default())
    }

    /// Flips `mask` into the byte `offset` bytes after the only occurrence of
    /// `marker` in the stored data. SQLite: in the file (the store must be
    /// closed and checkpointed); PostgreSQL: in the row, behind the store's back.
    pub(crate) fn flip(self, loc: &str, marker: &[u8], offset: usize, mask: u8) {
        match self {
            Backend::Sqlite => {
                let path = std::path::Path::new(loc);
                let mut file = std::fs::read(path).unwrap();
                let hits: Vec<usize> = file
                    .windows(marker.len())
                    .enumerate()
                    .filter(|(_, w)| *w == marker)
                    .map(|(i, _)| i)
                    .collect();
                assert_eq!(hits.len(), 1, "marker must occur exactly once in the file");
                file[hits[0] + offset] ^= mask;
                std::fs::write(path, file).unwrap();
            }
            Backend::Postgres => {
                let hex: String = marker.iter().map(|b| format!("{b:02x}")).collect();
                let at = format!("position('\\x{hex}'::bytea IN data) - 1 + {offset}");
                let n: u64 = ["blobs", "blob_chunks"]
                    .iter()
                    .map(|table| {
                        pg_exec(
                            loc,
                            &format!(
                                "UPDATE {table} SET data = set_byte(data, {at}, get_byte(data, {at}) # {mask})
                                 WHERE position('\\x{hex}'::bytea IN data) > 0"
                            ),
                        )
                    })
                    .sum();
                assert_eq!(n, 1, "marker must occur in exactly one stored value");
            }
        }
    }

    /// Marks the store at `loc` as written by a newer build (schema `version`).
    pub(crate) fn set_schema_version(self, loc: &str, version: i64) {
        match self {
            Backend::Sqlite => {
                let c = rusqlite::Connection::open(loc).unwrap();
                c.pragma_update(None, "user_version", version).unwrap();
            }
            Backend::Postgres => {
                pg_exec(
                    loc,
                    &format!("UPDATE corral_schema SET version = {version}"),
                );
            }
        }
    }
}

/// Deterministic pattern byte at offset `i` for stream `seed`.
pub(crate) fn pattern(seed: u64, i: u64) -> u8 {
    ((i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

#[test]
fn store_is_send_sync_clone() {
    fn assert<T: Send + Sync + Clone + 'static>() {}
    assert::<Store>();
    fn send_sync<T: Send + Sync>() {}
    send_sync::<corral_storage::ByteCache>();
    send_sync::<corral_storage::StorageError>();
    send_sync::<corral_storage::BlobReader>();
    send_sync::<corral_storage::AssetCacheLayer>();
}
