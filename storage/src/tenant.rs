//! Tenant data: tenants, bundles, KV, usage, config, artifacts, export/import.

use std::collections::BTreeMap;
use std::io::Read;

use corral_limits::{Refusal, TenantId, TierName};
use corral_metering::{JournalMark, Period, SinkError, Usage, UsageSink};

use crate::blob::{delete_blob_tx, delete_prefix_tx, insert_bytes_tx, insert_reader_tx};
use crate::db::{Db, args};
use crate::key::{prefix_upper, validate_key, validate_prefix};
use crate::store::now_secs;
use crate::{Blob, BlobMeta, BlobReader, StorageError, Store};

/// What kind of code a tenant's bundle holds (mirrors `corral::Kind`).
///
/// ```
/// use corral_storage::AppKind;
/// assert_eq!(AppKind::parse("js"), Some(AppKind::Js));
/// assert_eq!(AppKind::Wasm.as_str(), "wasm");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AppKind {
    /// A WASI preview-1 command module (WAGI).
    Wasm,
    /// A Workers-style JavaScript module.
    Js,
    /// A WebAssembly component serving `wasi:http/proxy`.
    Component,
}

impl AppKind {
    /// The stored name: `"wasm"`, `"js"` or `"component"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Wasm => "wasm",
            AppKind::Js => "js",
            AppKind::Component => "component",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "wasm" => Some(AppKind::Wasm),
            "js" => Some(AppKind::Js),
            "component" => Some(AppKind::Component),
            _ => None,
        }
    }
}

/// A registered tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TenantRecord {
    /// The tenant.
    pub id: TenantId,
    /// The tier (plan) it is on.
    pub tier: TierName,
    /// The kind of code it runs.
    pub kind: AppKind,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    /// KV byte limit stored for this tenant (`None`: the caller's or the store default).
    pub storage_limit: Option<u64>,
    /// The account the app belongs to; `None` in a new record means an
    /// account of its own (named after the app), made with it by
    /// [`Store::create_tenant`]. An archive's account is not kept by an
    /// import: the imported app gets an account of its own.
    #[serde(default)]
    pub account: Option<TenantId>,
}

impl TenantRecord {
    /// A record created now with no stored storage limit.
    ///
    /// ```
    /// use corral_storage::{AppKind, TenantRecord};
    /// let r = TenantRecord::new("acme".parse().unwrap(), "free".parse().unwrap(), AppKind::Js);
    /// assert_eq!(r.tier.as_str(), "free");
    /// ```
    pub fn new(id: TenantId, tier: TierName, kind: AppKind) -> Self {
        Self {
            id,
            tier,
            kind,
            created: now_secs(),
            storage_limit: None,
            account: None,
        }
    }

    /// Puts the app in `account` (which must exist when the record is created).
    ///
    /// ```
    /// use corral_storage::{AppKind, TenantRecord};
    /// let r = TenantRecord::new("blog".parse().unwrap(), "pro".parse().unwrap(), AppKind::Js)
    ///     .in_account("acme".parse().unwrap());
    /// assert_eq!(r.account.unwrap().as_str(), "acme");
    /// ```
    #[must_use]
    pub fn in_account(mut self, account: TenantId) -> Self {
        self.account = Some(account);
        self
    }
    /// Sets the stored storage limit.
    #[must_use]
    pub fn with_storage_limit(mut self, limit: Option<u64>) -> Self {
        self.storage_limit = limit;
        self
    }
}

/// A tenant's deployable bundle: the app code plus its `static/` files.
///
/// ```
/// use corral_storage::{AppKind, Bundle};
/// let b = Bundle::new(AppKind::Js, b"export default {}".to_vec())
///     .with_static("index.html", b"<h1>hi</h1>".to_vec());
/// assert_eq!(b.static_files.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Bundle {
    /// Kind of code; `None` only in `Default`, rejected by `put_bundle`.
    pub kind: Option<AppKind>,
    /// The module or script.
    pub code: Vec<u8>,
    /// Static files by path relative to `static/` (e.g. `css/site.css`).
    pub static_files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// A bundle of `kind` with `code` and no static files.
    pub fn new(kind: AppKind, code: Vec<u8>) -> Self {
        Self {
            kind: Some(kind),
            code,
            static_files: BTreeMap::new(),
        }
    }
    /// Adds a static file.
    #[must_use]
    pub fn with_static(mut self, path: impl Into<String>, bytes: Vec<u8>) -> Self {
        self.static_files.insert(path.into(), bytes);
        self
    }
}

/// Metadata of a stored bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BundleInfo {
    /// Kind of code.
    pub kind: AppKind,
    /// Increments on every replace, starting at 1.
    pub version: u64,
    /// Number of static files.
    pub files: u64,
    /// Total bytes (code plus static files).
    pub bytes: u64,
    /// CRC32 of the code.
    pub code_crc32: u32,
    /// Last replace time, seconds since the Unix epoch.
    pub updated: i64,
}

/// One blob in an export: key, bytes and the CRC32 they were verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportedBlob {
    /// KV key, static-file path, or `"code"`.
    pub key: String,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// CRC32 of `bytes`; [`Store::import_tenant`] rejects a mismatch.
    pub crc32: u32,
}

impl ExportedBlob {
    /// An entry whose CRC32 is computed from `bytes`.
    pub fn new(key: impl Into<String>, bytes: Vec<u8>) -> Self {
        let crc32 = crc32fast::hash(&bytes);
        Self {
            key: key.into(),
            bytes,
            crc32,
        }
    }
}

/// An exported bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportedBundle {
    /// Kind of code.
    pub kind: AppKind,
    /// The code, key `"code"`.
    pub code: ExportedBlob,
    /// Static files, key = path relative to `static/`.
    pub static_files: Vec<ExportedBlob>,
}

/// Everything stored for one tenant, as plain data, every blob with its CRC32.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantExport {
    /// The tenant record.
    pub tenant: TenantRecord,
    /// The bundle, if deployed.
    pub bundle: Option<ExportedBundle>,
    /// KV entries in key order.
    pub kv: Vec<ExportedBlob>,
    /// Usage rows, oldest first.
    pub usage: Vec<Usage>,
}

fn kv_key(t: &TenantId, key: &str) -> String {
    format!("kv/{t}/{key}")
}
fn code_key(t: &TenantId) -> String {
    format!("bundle/{t}/code")
}
fn static_key(t: &TenantId, path: &str) -> String {
    format!("bundle/{t}/static/{path}")
}
fn artifact_key(key: &str) -> String {
    format!("artifact/{key}")
}

fn i(v: u64) -> i64 {
    // u64 figures are stored bit-for-bit in SQLite's signed 64-bit integers.
    v as i64
}
fn u(v: i64) -> u64 {
    v as u64
}

fn list_under(
    c: &mut dyn Db,
    ns: &str,
    prefix: &str,
    limit: usize,
) -> Result<Vec<String>, StorageError> {
    let lower = format!("{ns}{prefix}");
    // `ns` is never empty, so the bound always exists.
    let upper = prefix_upper(&lower).ok_or(StorageError::InvalidConfig("empty namespace"))?;
    c.query(
        "SELECT key FROM blobs WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
        args![&lower, &upper, limit.min(i64::MAX as usize) as i64],
    )?
    .into_iter()
    .map(|mut r| {
        let k = r.s(0)?;
        k.get(ns.len()..)
            .map(str::to_owned)
            .ok_or(StorageError::Corrupt {
                key: k.clone(),
                what: "key outside its namespace",
            })
    })
    .collect()
}

/// The columns [`tenant_row`] reads.
pub(crate) const TENANT_COLS: &str = "name, tier, kind, created, storage_limit, account";

type TenantRow = (String, String, String, i64, Option<i64>, Option<String>);

pub(crate) fn tenant_row(mut r: crate::db::Row) -> Result<TenantRow, StorageError> {
    Ok((r.s(0)?, r.s(1)?, r.s(2)?, r.i(3)?, r.oi(4)?, r.os(5)?))
}

pub(crate) fn to_record(
    (name, tier, kind, created, limit, account): TenantRow,
) -> Result<TenantRecord, StorageError> {
    let id = TenantId::new(&name).map_err(|_| StorageError::Corrupt {
        key: format!("tenants/{name}"),
        what: "invalid tenant name",
    })?;
    let tier = TierName::new(&tier).map_err(|_| StorageError::Corrupt {
        key: format!("tenants/{name}"),
        what: "invalid tier name",
    })?;
    let kind = AppKind::parse(&kind).ok_or_else(|| StorageError::Corrupt {
        key: format!("tenants/{name}"),
        what: "unknown app kind",
    })?;
    let account = account
        .map(|a| TenantId::new(&a))
        .transpose()
        .map_err(|_| StorageError::Corrupt {
            key: format!("tenants/{name}"),
            what: "invalid account name",
        })?;
    Ok(TenantRecord {
        id,
        tier,
        kind,
        created,
        storage_limit: limit.map(u),
        account,
    })
}

/// Inserts the app into its account (made, of the app's name and tier, when
/// the record names none and no account of that name exists). `max_apps`:
/// the account's tier's limit, checked in this transaction.
pub(crate) fn insert_tenant_tx(
    tx: &mut dyn Db,
    rec: &TenantRecord,
    max_apps: Option<u32>,
) -> Result<(), StorageError> {
    let account = rec.account.clone().unwrap_or_else(|| rec.id.clone());
    if rec.account.is_none() {
        tx.exec(
            "INSERT INTO accounts (name, tier, created) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            args![account.as_str(), rec.tier.as_str(), rec.created],
        )?;
    }
    crate::account::check_room_tx(tx, &account, max_apps)?;
    // An app runs on its account's tier, whatever the record said.
    let tier = crate::account::account_tier_tx(tx, &account)?
        .unwrap_or_else(|| rec.tier.as_str().to_owned());
    let n = tx.exec(
        "INSERT INTO tenants (name, tier, kind, created, storage_limit, account) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        args![rec.id.as_str(), &tier, rec.kind.as_str(), rec.created, rec.storage_limit.map(i), account.as_str()],
    )?;
    if n == 0 {
        return Err(StorageError::TenantExists {
            tenant: rec.id.clone(),
        });
    }
    Ok(())
}

/// `table`: `usage` (apps) or `account_usage` (accounts), same columns.
pub(crate) fn upsert_usage_tx(
    tx: &mut dyn Db,
    table: &str,
    batch: &[Usage],
) -> Result<(), StorageError> {
    let sql = format!(
        "INSERT INTO {table} (tenant, year, month, requests, errors, exec_time_ms, fuel, peak_memory,
            peak_streams, storage_bytes, bytes_in, bytes_out, cold_starts, refused, cpu_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (tenant, year, month) DO UPDATE SET
            requests = excluded.requests, errors = excluded.errors,
            exec_time_ms = excluded.exec_time_ms, fuel = excluded.fuel,
            peak_memory = excluded.peak_memory, peak_streams = excluded.peak_streams,
            storage_bytes = excluded.storage_bytes, bytes_in = excluded.bytes_in,
            bytes_out = excluded.bytes_out, cold_starts = excluded.cold_starts,
            refused = excluded.refused, cpu_us = excluded.cpu_us"
    );
    for u in batch {
        let refused = refused_json(u);
        tx.exec(
            &sql,
            args![
                u.tenant.as_str(),
                u.period.year(),
                u.period.month(),
                i(u.requests),
                i(u.errors),
                i(u.exec_time_ms),
                i(u.fuel),
                i(u.peak_memory),
                i(u.peak_streams),
                i(u.storage_bytes),
                i(u.bytes_in),
                i(u.bytes_out),
                i(u.cold_starts),
                &refused,
                i(u.cpu_us)
            ],
        )?;
    }
    Ok(())
}

/// Replaces each of `rows`' stored row in `table` (inside `tx`) with
/// `merge(stored row, row)`.
fn merge_rows_tx(
    tx: &mut dyn Db,
    table: &str,
    rows: &[Usage],
    merge: impl Fn(Option<Usage>, &Usage) -> Usage,
) -> Result<(), StorageError> {
    let sql =
        format!("SELECT {USAGE_COLS} FROM {table} WHERE tenant = ?1 AND year = ?2 AND month = ?3");
    let mut merged = Vec::with_capacity(rows.len());
    for u in rows {
        let args = args![u.tenant.as_str(), u.period.year(), u.period.month()];
        let cur = usage_rows(tx, &sql, args)?.pop();
        merged.push(merge(cur, u));
    }
    upsert_usage_tx(tx, table, &merged)
}

/// Records a usage journal's last committed flush (inside the flush's own
/// transaction, so the mark and the rows are in together or not at all).
fn set_mark_tx(tx: &mut dyn Db, m: &JournalMark) -> Result<(), StorageError> {
    tx.exec(
        "INSERT INTO usage_marks (journal, seq) VALUES (?1, ?2)
         ON CONFLICT (journal) DO UPDATE SET seq = excluded.seq",
        args![m.journal(), i(m.seq())],
    )?;
    Ok(())
}

pub(crate) fn usage_rows(
    c: &mut dyn Db,
    sql: &str,
    p: &[crate::db::P<'_>],
) -> Result<Vec<Usage>, StorageError> {
    c.query(sql, p)?
        .into_iter()
        .map(|mut r| {
            let mut v = [0i64; 10];
            for (n, slot) in v.iter_mut().enumerate() {
                *slot = r.i(3 + n)?;
            }
            let (name, year, month) = (r.s(0)?, r.i(1)?, r.i(2)?);
            let (refused, cpu_us) = (r.s(13)?, r.i(14)?);
            let bad = |what| StorageError::Corrupt {
                key: format!("usage/{name}/{year}-{month}"),
                what,
            };
            let tenant = TenantId::new(&name).map_err(|_| bad("invalid tenant name"))?;
            let period = u8::try_from(month)
                .ok()
                .zip(i32::try_from(year).ok())
                .and_then(|(m, y)| Period::new(y, m))
                .ok_or_else(|| bad("invalid month"))?;
            let mut out = Usage::zero(tenant, period);
            out.requests = u(v[0]);
            out.errors = u(v[1]);
            out.exec_time_ms = u(v[2]);
            out.fuel = u(v[3]);
            out.peak_memory = u(v[4]);
            out.peak_streams = u(v[5]);
            out.storage_bytes = u(v[6]);
            out.bytes_in = u(v[7]);
            out.bytes_out = u(v[8]);
            out.cold_starts = u(v[9]);
            out.cpu_us = u(cpu_us);
            out.refused = parse_refused(&refused).ok_or_else(|| bad("invalid refused counts"))?;
            Ok(out)
        })
        .collect()
}

pub(crate) const USAGE_COLS: &str = "tenant, year, month, requests, errors, exec_time_ms, fuel, peak_memory, peak_streams, storage_bytes, bytes_in, bytes_out, cold_starts, refused, cpu_us";

/// A usage row's refused counts as stored: a JSON object from refusal code
/// to count, zero counts left out.
fn refused_json(u: &Usage) -> String {
    serde_json::to_string(&u.refused).unwrap_or_else(|_| "{}".into())
}

/// The refused counts of a stored row; codes this build does not know
/// (written by a newer one) are skipped. `None` when it is not a JSON object
/// of counts.
fn parse_refused(text: &str) -> Option<BTreeMap<Refusal, u64>> {
    let raw: BTreeMap<String, u64> = serde_json::from_str(text).ok()?;
    Some(
        raw.into_iter()
            .filter(|(_, n)| *n > 0)
            .filter_map(|(code, n)| Some((Refusal::from_code(&code)?, n)))
            .collect(),
    )
}

/// `cur` (the stored row) plus what this node counted since `base` (its
/// totals when it last wrote or loaded the row): counters add this node's
/// increments, peaks keep the larger, the storage gauge takes the newest.
fn merge_usage(cur: Option<Usage>, new: &Usage, base: Option<&Usage>) -> Usage {
    let zero = Usage::zero(new.tenant.clone(), new.period);
    let base = base.unwrap_or(&zero);
    let mut out = cur.unwrap_or_else(|| zero.clone());
    let add = |c: u64, n: u64, b: u64| c.saturating_add(n.saturating_sub(b));
    out.requests = add(out.requests, new.requests, base.requests);
    out.errors = add(out.errors, new.errors, base.errors);
    out.exec_time_ms = add(out.exec_time_ms, new.exec_time_ms, base.exec_time_ms);
    out.fuel = add(out.fuel, new.fuel, base.fuel);
    out.cpu_us = add(out.cpu_us, new.cpu_us, base.cpu_us);
    out.bytes_in = add(out.bytes_in, new.bytes_in, base.bytes_in);
    out.bytes_out = add(out.bytes_out, new.bytes_out, base.bytes_out);
    out.cold_starts = add(out.cold_starts, new.cold_starts, base.cold_starts);
    for (code, n) in &new.refused {
        let b = base.refused.get(code).copied().unwrap_or(0);
        let c = out.refused.entry(*code).or_insert(0);
        *c = add(*c, *n, b);
    }
    out.peak_memory = out.peak_memory.max(new.peak_memory);
    out.peak_streams = out.peak_streams.max(new.peak_streams);
    out.storage_bytes = new.storage_bytes;
    out
}

impl Store {
    /// Writes a meter's totals into `table` (`usage` or `account_usage`).
    ///
    /// SQLite (one node): the rows are the totals, replaced as they are
    /// (absolute, idempotent). PostgreSQL (many nodes flushing the same
    /// rows): under the write lock, each stored row gains what this node
    /// counted since its baseline — the totals it last wrote, or loaded at
    /// restore — so nodes add up instead of overwriting one another; writing
    /// the same totals twice still changes nothing.
    pub(crate) fn store_usage_rows(
        &self,
        table: &'static str,
        batch: &[Usage],
        mark: Option<&JournalMark>,
    ) -> Result<(), StorageError> {
        if !self.is_shared() {
            return self.write(|tx| {
                upsert_usage_tx(tx, table, batch)?;
                mark.map_or(Ok(()), |m| set_mark_tx(tx, m))
            });
        }
        let key = |u: &Usage| (table, u.tenant.clone(), u.period.year(), u.period.month());
        let advance = |base: &mut crate::store::UsageBase, rows: &[Usage]| {
            // Older months are flushed for the last time with the first batch of a new one.
            if let Some(oldest) = rows.iter().map(|u| u.period).min() {
                base.retain(|k, _| k.0 != table || (k.2, k.3) >= (oldest.year(), oldest.month()));
            }
            for u in rows {
                base.insert(key(u), u.clone());
            }
        };
        // Held across the write, so two flushes of one table never race on a baseline.
        let mut base = self.inner.usage_base.lock();
        let mut unsure = self.inner.usage_unsure.lock();
        // An earlier write's commit lost its answer and its mark could not
        // be read then: whether it is in decides this write's baselines, so
        // nothing is written before that is known.
        if let Some(i) = unsure.iter().position(|w| w.0 == table) {
            let (_, m, rows) = &unsure[i];
            if self.journal_mark_of(m.journal())? >= m.seq() {
                advance(&mut base, rows);
            }
            unsure.swap_remove(i);
        }
        let wrote = self.write(|tx| {
            merge_rows_tx(tx, table, batch, |cur, u| {
                merge_usage(cur, u, base.get(&key(u)))
            })?;
            mark.map_or(Ok(()), |m| set_mark_tx(tx, m))
        });
        if let Err(e) = wrote {
            // A COMMIT whose answer was lost may have gone through; keeping
            // the old baselines then would add these counts again at the
            // next flush. The journal's mark, written in the same
            // transaction, says which (without a journal nobody can tell).
            let Some(m) = mark else { return Err(e) };
            match self.journal_mark_of(m.journal()) {
                Ok(seq) if seq >= m.seq() => {}
                Ok(_) => return Err(e),
                Err(_) => {
                    unsure.push((table, m.clone(), batch.to_vec()));
                    return Err(e);
                }
            }
        }
        advance(&mut base, batch);
        Ok(())
    }

    /// Adds a journal's recovered counts to `table`'s rows (counters add,
    /// peaks keep the larger, the storage gauge stays) and records its mark,
    /// in one transaction. Baselines are untouched: the meter restores after.
    pub(crate) fn add_usage_rows(
        &self,
        table: &'static str,
        deltas: &[Usage],
        mark: &JournalMark,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            merge_rows_tx(tx, table, deltas, |cur, d| {
                let storage = cur.as_ref().map_or(0, |c| c.storage_bytes);
                let mut m = merge_usage(cur, d, None);
                m.storage_bytes = storage;
                m
            })?;
            set_mark_tx(tx, mark)
        })
    }

    /// Deletes usage journal `journal`'s mark (its file is gone).
    pub(crate) fn forget_journal_mark(&self, journal: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.exec("DELETE FROM usage_marks WHERE journal = ?1", args![journal])?;
            Ok(())
        })
    }

    /// The last flush recorded for usage journal `journal`, 0 if none.
    pub(crate) fn journal_mark_of(&self, journal: &str) -> Result<u64, StorageError> {
        self.read(|c| {
            Ok(c.opt(
                "SELECT seq FROM usage_marks WHERE journal = ?1",
                args![journal],
            )?
            .map(|r| r.i(0))
            .transpose()?
            .map(u)
            .unwrap_or(0))
        })
    }

    /// Loads `period`'s rows of `table` for a meter to continue from; on a
    /// shared store they become this node's baselines.
    pub(crate) fn load_usage_rows(
        &self,
        table: &'static str,
        period: Period,
    ) -> Result<Vec<Usage>, StorageError> {
        let sql = format!(
            "SELECT {USAGE_COLS} FROM {table} WHERE year = ?1 AND month = ?2 ORDER BY tenant"
        );
        let rows = self.read(|c| usage_rows(c, &sql, args![period.year(), period.month()]))?;
        if self.is_shared() {
            let mut base = self.inner.usage_base.lock();
            for u in &rows {
                base.insert(
                    (table, u.tenant.clone(), u.period.year(), u.period.month()),
                    u.clone(),
                );
            }
        }
        Ok(rows)
    }

    // ---------------------------------------------------------------- tenants

    /// Registers a tenant. Errors with [`StorageError::TenantExists`] if present.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig, AppKind, TenantRecord, StorageError};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// let rec = TenantRecord::new("acme".parse().unwrap(), "pro".parse().unwrap(), AppKind::Wasm);
    /// store.create_tenant(&rec).unwrap();
    /// assert_eq!(store.tenant(&rec.id).unwrap().unwrap().tier.as_str(), "pro");
    /// assert!(matches!(store.create_tenant(&rec), Err(StorageError::TenantExists { .. })));
    /// ```
    pub fn create_tenant(&self, rec: &TenantRecord) -> Result<(), StorageError> {
        self.write(|tx| insert_tenant_tx(tx, rec, None))
    }

    /// [`create_tenant`](Self::create_tenant) into an account that may hold
    /// at most `max_apps` apps ([`StorageError::AppLimit`] when it is full,
    /// [`StorageError::AccountNotFound`] when the record names an account
    /// that does not exist), checked in the insert's own transaction.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig, AppKind, TenantRecord, StorageError, AccountRecord};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// store.create_account(&AccountRecord::new("acme".parse().unwrap(), "free".parse().unwrap())).unwrap();
    /// let app = |n: &str| TenantRecord::new(n.parse().unwrap(), "free".parse().unwrap(), AppKind::Js)
    ///     .in_account("acme".parse().unwrap());
    /// store.create_tenant_within(&app("one"), Some(1)).unwrap();
    /// assert!(matches!(store.create_tenant_within(&app("two"), Some(1)),
    ///     Err(StorageError::AppLimit { apps: 1, max: 1, .. })));
    /// ```
    pub fn create_tenant_within(
        &self,
        rec: &TenantRecord,
        max_apps: Option<u32>,
    ) -> Result<(), StorageError> {
        self.write(|tx| insert_tenant_tx(tx, rec, max_apps))
    }

    /// The tenant's record, if registered.
    pub fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StorageError> {
        let row = self.read(|c| {
            c.opt(
                &format!("SELECT {TENANT_COLS} FROM tenants WHERE name = ?1"),
                args![id.as_str()],
            )?
            .map(tenant_row)
            .transpose()
        })?;
        row.map(to_record).transpose()
    }

    /// All registered tenants in name order.
    pub fn list_tenants(&self) -> Result<Vec<TenantRecord>, StorageError> {
        let rows = self.read(|c| {
            c.query(
                &format!("SELECT {TENANT_COLS} FROM tenants ORDER BY name"),
                &[],
            )?
            .into_iter()
            .map(tenant_row)
            .collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(to_record).collect()
    }

    /// Moves a tenant to another tier.
    pub fn set_tenant_tier(&self, id: &TenantId, tier: &TierName) -> Result<(), StorageError> {
        self.write(|tx| {
            let n = tx.exec(
                "UPDATE tenants SET tier = ?1 WHERE name = ?2",
                args![tier.as_str(), id.as_str()],
            )?;
            if n == 0 {
                return Err(StorageError::TenantNotFound { tenant: id.clone() });
            }
            Ok(())
        })
    }

    /// Sets (or clears) the stored KV byte limit of a tenant.
    pub fn set_storage_limit(&self, id: &TenantId, limit: Option<u64>) -> Result<(), StorageError> {
        self.write(|tx| {
            let n = tx.exec(
                "UPDATE tenants SET storage_limit = ?1 WHERE name = ?2",
                args![limit.map(i), id.as_str()],
            )?;
            if n == 0 {
                return Err(StorageError::TenantNotFound { tenant: id.clone() });
            }
            Ok(())
        })
    }

    /// Deletes a tenant with its bundle and KV in one transaction; usage rows
    /// are kept for billing. Returns whether the tenant was registered.
    pub fn delete_tenant(&self, id: &TenantId) -> Result<bool, StorageError> {
        let existed = self.write(|tx| {
            let n = tx.exec("DELETE FROM tenants WHERE name = ?1", args![id.as_str()])?;
            delete_prefix_tx(tx, &format!("bundle/{id}/"))?;
            delete_prefix_tx(tx, &format!("kv/{id}/"))?;
            tx.exec("DELETE FROM bundles WHERE tenant = ?1", args![id.as_str()])?;
            tx.exec("DELETE FROM kv_bytes WHERE tenant = ?1", args![id.as_str()])?;
            Ok(n > 0)
        })?;
        self.bundle_changed(id);
        Ok(existed)
    }

    // ---------------------------------------------------------------- bundles

    /// Replaces the tenant's whole bundle (code and every static file) in one
    /// transaction: readers see either the old bundle or the new one, never a mix.
    /// Every path is validated before anything is written.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig, AppKind, Bundle};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// let t = "acme".parse().unwrap();
    /// let info = store.put_bundle(&t, &Bundle::new(AppKind::Js, b"code".to_vec())
    ///     .with_static("a.css", b"body{}".to_vec())).unwrap();
    /// assert_eq!((info.version, info.files, info.bytes), (1, 1, 10));
    /// let info = store.put_bundle(&t, &Bundle::new(AppKind::Js, b"v2".to_vec())).unwrap();
    /// assert_eq!(info.version, 2);
    /// assert!(store.static_file(&t, "a.css").unwrap().is_none());
    /// ```
    pub fn put_bundle(
        &self,
        tenant: &TenantId,
        bundle: &Bundle,
    ) -> Result<BundleInfo, StorageError> {
        let kind = bundle
            .kind
            .ok_or(StorageError::InvalidConfig("bundle has no kind"))?;
        for path in bundle.static_files.keys() {
            validate_key(path.as_bytes())?;
        }
        let cfg = &self.inner.cfg;
        let info = self.write(|tx| {
            delete_prefix_tx(tx, &format!("bundle/{tenant}/"))?;
            let code = insert_bytes_tx(tx, cfg, &code_key(tenant), &bundle.code)?;
            let mut bytes = code.len;
            for (path, data) in &bundle.static_files {
                bytes += insert_bytes_tx(tx, cfg, &static_key(tenant, path), data)?.len;
            }
            let version: i64 = tx
                .opt("SELECT version FROM bundles WHERE tenant = ?1", args![tenant.as_str()])?
                .map(|r| r.i(0))
                .transpose()?
                .unwrap_or(0)
                + 1;
            let info = BundleInfo {
                kind,
                version: version as u64,
                files: bundle.static_files.len() as u64,
                bytes,
                code_crc32: code.crc32,
                updated: now_secs(),
            };
            tx.exec(
                "INSERT INTO bundles (tenant, kind, version, files, bytes, crc32, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (tenant) DO UPDATE SET kind = excluded.kind, version = excluded.version,
                    files = excluded.files, bytes = excluded.bytes, crc32 = excluded.crc32,
                    updated = excluded.updated",
                args![
                    tenant.as_str(),
                    kind.as_str(),
                    version,
                    info.files as i64,
                    i(info.bytes),
                    info.code_crc32,
                    info.updated
                ],
            )?;
            Ok(info)
        })?;
        self.bundle_changed(tenant);
        Ok(info)
    }

    /// Every deployed bundle's version and code checksum, in one read: what
    /// a node that shares the store compares with what it has loaded, to see
    /// apps deployed, redeployed or removed through another node.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use corral_storage::{AppKind, Store, StoreConfig, TenantRecord};
    /// let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// let id: corral_limits::TenantId = "shop".parse().unwrap();
    /// store.create_tenant(&TenantRecord::new(id.clone(), "free".parse().unwrap(), AppKind::Js)).unwrap();
    /// assert!(store.bundle_versions().unwrap().is_empty());
    /// let v1 = store.put_bundle(&id, &corral_storage::Bundle::new(AppKind::Js, b"a".to_vec())).unwrap();
    /// assert_eq!(store.bundle_versions().unwrap(), [(id, 1, v1.code_crc32)]);
    /// ```
    pub fn bundle_versions(&self) -> Result<Vec<(TenantId, u64, u32)>, StorageError> {
        let rows: Vec<(String, i64, i64)> = self.read(|c| {
            c.query(
                "SELECT tenant, version, crc32 FROM bundles ORDER BY tenant",
                &[],
            )?
            .into_iter()
            .map(|mut r| Ok((r.s(0)?, r.i(1)?, r.i(2)?)))
            .collect::<Result<Vec<_>, StorageError>>()
        })?;
        rows.into_iter()
            .map(|(name, version, crc)| {
                let id = TenantId::new(&name).map_err(|_| StorageError::Corrupt {
                    key: format!("bundles/{name}"),
                    what: "invalid tenant name",
                })?;
                Ok((id, version as u64, crc as u32))
            })
            .collect()
    }

    /// Metadata of the tenant's bundle, if deployed.
    pub fn bundle_info(&self, tenant: &TenantId) -> Result<Option<BundleInfo>, StorageError> {
        let row: Option<(String, i64, i64, i64, i64, i64)> = self.read(|c| {
            c.opt(
                "SELECT kind, version, files, bytes, crc32, updated FROM bundles WHERE tenant = ?1",
                args![tenant.as_str()],
            )?
            .map(|mut r| Ok((r.s(0)?, r.i(1)?, r.i(2)?, r.i(3)?, r.i(4)?, r.i(5)?)))
            .transpose()
        })?;
        row.map(|(kind, version, files, bytes, crc, updated)| {
            Ok(BundleInfo {
                kind: AppKind::parse(&kind).ok_or_else(|| StorageError::Corrupt {
                    key: format!("bundles/{tenant}"),
                    what: "unknown app kind",
                })?,
                version: version as u64,
                files: files as u64,
                bytes: u(bytes),
                code_crc32: crc as u32,
                updated,
            })
        })
        .transpose()
    }

    /// The tenant's verified code (up to the chunk threshold; larger code
    /// gives [`StorageError::TooLargeForMemory`], use [`open_bundle_code`](Self::open_bundle_code)).
    pub fn bundle_code(&self, tenant: &TenantId) -> Result<Option<Blob>, StorageError> {
        self.read_blob(&code_key(tenant))
    }

    /// A verified stream over the tenant's code.
    pub fn open_bundle_code(&self, tenant: &TenantId) -> Result<Option<BlobReader>, StorageError> {
        self.open_blob(&code_key(tenant))
    }

    /// A verified static file of the tenant's bundle (`path` relative to `static/`).
    pub fn static_file(&self, tenant: &TenantId, path: &str) -> Result<Option<Blob>, StorageError> {
        let path = validate_key(path.as_bytes())?;
        self.read_blob(&static_key(tenant, path))
    }

    /// A verified stream over a static file.
    pub fn open_static_file(
        &self,
        tenant: &TenantId,
        path: &str,
    ) -> Result<Option<BlobReader>, StorageError> {
        let path = validate_key(path.as_bytes())?;
        self.open_blob(&static_key(tenant, path))
    }

    /// Length and CRC32 of a static file, without reading it.
    pub fn static_file_meta(
        &self,
        tenant: &TenantId,
        path: &str,
    ) -> Result<Option<BlobMeta>, StorageError> {
        let path = validate_key(path.as_bytes())?;
        self.blob_meta(&static_key(tenant, path))
    }

    /// Paths of the tenant's static files, in order.
    pub fn list_static_files(&self, tenant: &TenantId) -> Result<Vec<String>, StorageError> {
        let ns = format!("bundle/{tenant}/static/");
        self.read(|c| list_under(c, &ns, "", usize::MAX))
    }

    // --------------------------------------------------------------------- KV

    /// The verified value under `key`, if any.
    pub fn kv_get(
        &self,
        tenant: &TenantId,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<Blob>, StorageError> {
        let key = validate_key(key.as_ref())?;
        self.read_blob(&kv_key(tenant, key))
    }

    /// Stores `value` under `key`, enforcing the tenant's stored limit, or
    /// else the store's default limit.
    pub fn kv_put(
        &self,
        tenant: &TenantId,
        key: impl AsRef<[u8]>,
        value: &[u8],
    ) -> Result<(), StorageError> {
        self.kv_put_inner(tenant, key.as_ref(), value, None)
    }

    /// Stores `value` under `key` with an explicit byte limit for the tenant
    /// (key + value bytes of all its entries); `None` falls back like [`kv_put`](Self::kv_put).
    ///
    /// Only for a tenant the store holds (checked in the write's own
    /// transaction): otherwise [`StorageError::TenantNotFound`], so a guest
    /// request still running after its app was removed cannot leave KV
    /// behind for a later app of the same name.
    pub fn kv_put_with_limit(
        &self,
        tenant: &TenantId,
        key: impl AsRef<[u8]>,
        value: &[u8],
        limit: Option<u64>,
    ) -> Result<(), StorageError> {
        self.kv_put_inner(tenant, key.as_ref(), value, Some(limit))
    }

    /// `limit`: `None` for [`kv_put`](Self::kv_put) (any tenant name, the
    /// stored or default limit); `Some` for [`kv_put_with_limit`](Self::kv_put_with_limit).
    fn kv_put_inner(
        &self,
        tenant: &TenantId,
        key: &[u8],
        value: &[u8],
        limit: Option<Option<u64>>,
    ) -> Result<(), StorageError> {
        let require_tenant = limit.is_some();
        let limit = limit.flatten();
        let key = validate_key(key)?;
        let max = self.inner.cfg.max_kv_value;
        if value.len() as u64 > max {
            return Err(StorageError::ValueTooLarge {
                len: value.len() as u64,
                max,
            });
        }
        let full = kv_key(tenant, key);
        let cfg = &self.inner.cfg;
        self.write(|tx| {
            if require_tenant
                && tx
                    .opt(
                        "SELECT 1 FROM tenants WHERE name = ?1",
                        args![tenant.as_str()],
                    )?
                    .is_none()
            {
                return Err(StorageError::TenantNotFound {
                    tenant: tenant.clone(),
                });
            }
            // The quota is the account's: its other apps' bytes count too.
            let used = kv_used_tx(tx, tenant)?;
            let others = crate::account::account_kv_others_tx(tx, tenant)?;
            let old: Option<i64> = tx
                .opt("SELECT len FROM blobs WHERE key = ?1", args![&full])?
                .map(|r| r.i(0))
                .transpose()?;
            let old = old.map(|l| l as u64 + key.len() as u64).unwrap_or(0);
            let new = key.len() as u64 + value.len() as u64;
            let limit = match limit {
                Some(l) => Some(l),
                None => tx
                    .opt(
                        "SELECT storage_limit FROM tenants WHERE name = ?1",
                        args![tenant.as_str()],
                    )?
                    .map(|r| r.oi(0))
                    .transpose()?
                    .flatten()
                    .map(u)
                    .or(cfg.default_storage_limit),
            };
            let after = used.saturating_sub(old) + new;
            if let Some(limit) = limit
                && new > old
                && others + after > limit
            {
                return Err(StorageError::StorageQuotaExceeded {
                    limit,
                    used: others + used,
                    needed: new - old,
                });
            }
            insert_bytes_tx(tx, cfg, &full, value)?;
            set_kv_used_tx(tx, tenant, after)
        })
    }

    /// Deletes `key`; `true` when it existed.
    pub fn kv_delete(
        &self,
        tenant: &TenantId,
        key: impl AsRef<[u8]>,
    ) -> Result<bool, StorageError> {
        let key = validate_key(key.as_ref())?;
        let full = kv_key(tenant, key);
        self.write(|tx| {
            let Some(len) = delete_blob_tx(tx, &full)? else {
                return Ok(false);
            };
            let used = kv_used_tx(tx, tenant)?;
            set_kv_used_tx(tx, tenant, used.saturating_sub(len + key.len() as u64))?;
            Ok(true)
        })
    }

    /// Up to `limit` keys starting with `prefix`, in byte order.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// let t = "acme".parse().unwrap();
    /// for k in ["user/1", "user/2", "post/1"] { store.kv_put(&t, k, b"v").unwrap(); }
    /// assert_eq!(store.kv_list(&t, "user/", 10).unwrap(), ["user/1", "user/2"]);
    /// assert_eq!(store.kv_list(&t, "", 1).unwrap(), ["post/1"]);
    /// ```
    pub fn kv_list(
        &self,
        tenant: &TenantId,
        prefix: impl AsRef<[u8]>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let prefix = validate_prefix(prefix.as_ref())?;
        let ns = format!("kv/{tenant}/");
        self.read(|c| list_under(c, &ns, prefix, limit))
    }

    /// Bytes (keys + values) the tenant holds in KV.
    pub fn kv_bytes(&self, tenant: &TenantId) -> Result<u64, StorageError> {
        self.read(|c| kv_used_tx(c, tenant))
    }

    // ------------------------------------------------------------------ usage

    /// Writes a meter's usage totals (idempotent). SQLite: the rows become
    /// these totals. PostgreSQL, shared by many nodes: each row gains what
    /// this node counted since it last wrote or loaded it, so every node's
    /// requests add up in the shared row.
    pub fn store_usage(&self, batch: &[Usage]) -> Result<(), StorageError> {
        self.store_usage_rows("usage", batch, None)
    }

    /// Every tenant's totals for `period`, in tenant order.
    ///
    /// On PostgreSQL the loaded totals are also this node's baselines: call
    /// it (or [`UsageSink::load`]) only to restore the meter that then
    /// flushes with [`store_usage`](Self::store_usage); reports read
    /// [`tenant_usage`](Self::tenant_usage).
    pub fn load_usage(&self, period: Period) -> Result<Vec<Usage>, StorageError> {
        self.load_usage_rows("usage", period)
    }

    /// One tenant's totals for every period, oldest first.
    pub fn tenant_usage(&self, tenant: &TenantId) -> Result<Vec<Usage>, StorageError> {
        let sql = format!("SELECT {USAGE_COLS} FROM usage WHERE tenant = ?1 ORDER BY year, month");
        self.read(|c| usage_rows(c, &sql, args![tenant.as_str()]))
    }

    // ----------------------------------------------------------------- config

    /// The config value under `key`, deserialized.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig, StorageError};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// store.config_set("maintenance", &true).unwrap();
    /// assert_eq!(store.config_get::<bool>("maintenance").unwrap(), Some(true));
    /// assert!(matches!(store.config_get::<u32>("maintenance"), Err(StorageError::Config { .. })));
    /// assert_eq!(store.config_get::<bool>("missing").unwrap(), None);
    /// ```
    pub fn config_get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let key = validate_key(key.as_bytes())?;
        let raw: Option<String> = self.read(|c| {
            c.opt("SELECT value FROM config WHERE key = ?1", args![key])?
                .map(|mut r| r.s(0))
                .transpose()
        })?;
        raw.map(|s| {
            serde_json::from_str(&s).map_err(|source| StorageError::Config {
                key: key.to_owned(),
                source,
            })
        })
        .transpose()
    }

    /// Stores `value` (as JSON) under `key`.
    pub fn config_set<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        let key = validate_key(key.as_bytes())?;
        let json = serde_json::to_string(value).map_err(|source| StorageError::Config {
            key: key.to_owned(),
            source,
        })?;
        self.write(|tx| {
            tx.exec(
                "INSERT INTO config (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                args![key, &json],
            )?;
            Ok(())
        })
    }

    /// Deletes the config value under `key`; `true` when it existed.
    pub fn config_delete(&self, key: &str) -> Result<bool, StorageError> {
        let key = validate_key(key.as_bytes())?;
        self.write(|tx| Ok(tx.exec("DELETE FROM config WHERE key = ?1", args![key])? > 0))
    }

    // -------------------------------------------------------------- artifacts

    /// Stores an artifact (e.g. a precompiled module) under `key`.
    pub fn put_artifact(&self, key: &str, bytes: &[u8]) -> Result<BlobMeta, StorageError> {
        let key = artifact_key(validate_key(key.as_bytes())?);
        let cfg = &self.inner.cfg;
        self.write(|tx| insert_bytes_tx(tx, cfg, &key, bytes))
    }

    /// Stores an artifact read from `src`, chunked when over the threshold,
    /// never holding more than the threshold plus one chunk in memory.
    pub fn put_artifact_reader(
        &self,
        key: &str,
        src: &mut dyn Read,
    ) -> Result<BlobMeta, StorageError> {
        let key = artifact_key(validate_key(key.as_bytes())?);
        let cfg = &self.inner.cfg;
        self.write(|tx| insert_reader_tx(tx, cfg, &key, src))
    }

    /// The verified artifact (up to the chunk threshold).
    pub fn get_artifact(&self, key: &str) -> Result<Option<Blob>, StorageError> {
        let key = artifact_key(validate_key(key.as_bytes())?);
        self.read_blob(&key)
    }

    /// A verified stream over the artifact.
    pub fn open_artifact(&self, key: &str) -> Result<Option<BlobReader>, StorageError> {
        let key = artifact_key(validate_key(key.as_bytes())?);
        self.open_blob(&key)
    }

    /// Deletes the artifact; `true` when it existed.
    pub fn delete_artifact(&self, key: &str) -> Result<bool, StorageError> {
        let key = artifact_key(validate_key(key.as_bytes())?);
        self.write(|tx| Ok(delete_blob_tx(tx, &key)?.is_some()))
    }

    // --------------------------------------------------------- export/import

    /// Everything stored for a registered tenant, each blob verified on the
    /// way out and carrying its CRC32. Holds the tenant's data in memory
    /// (bounded by its storage quota and bundle size).
    pub fn export_tenant(&self, id: &TenantId) -> Result<TenantExport, StorageError> {
        let tenant = self
            .tenant(id)?
            .ok_or_else(|| StorageError::TenantNotFound { tenant: id.clone() })?;
        let read_all = |r: Option<BlobReader>, key: &str| -> Result<ExportedBlob, StorageError> {
            let r = r.ok_or_else(|| StorageError::NotFound {
                key: key.to_owned(),
            })?;
            let crc32 = r.crc32();
            let mut bytes = Vec::with_capacity(r.len() as usize);
            for chunk in r {
                bytes.extend_from_slice(&chunk?);
            }
            Ok(ExportedBlob {
                key: key.to_owned(),
                bytes,
                crc32,
            })
        };
        let bundle = match self.bundle_info(id)? {
            None => None,
            Some(info) => {
                let code = read_all(self.open_bundle_code(id)?, "code")?;
                let mut files = Vec::new();
                for path in self.list_static_files(id)? {
                    files.push(read_all(self.open_static_file(id, &path)?, &path)?);
                }
                Some(ExportedBundle {
                    kind: info.kind,
                    code,
                    static_files: files,
                })
            }
        };
        let mut kv = Vec::new();
        for key in self.kv_list(id, "", usize::MAX)? {
            let blob = self
                .kv_get(id, &key)?
                .ok_or_else(|| StorageError::NotFound {
                    key: kv_key(id, &key),
                })?;
            kv.push(ExportedBlob {
                key,
                bytes: blob.bytes.to_vec(),
                crc32: blob.crc32,
            });
        }
        let usage = self.tenant_usage(id)?;
        Ok(TenantExport {
            tenant,
            bundle,
            kv,
            usage,
        })
    }

    /// Restores an export as a new tenant. Everything is verified first
    /// (every CRC32, key, path, value size and usage row's tenant); then all
    /// of it is written in one transaction, so a rejected import writes nothing.
    /// The stored limit (if any) is not enforced against imported KV.
    pub fn import_tenant(&self, ex: &TenantExport) -> Result<(), StorageError> {
        let id = &ex.tenant.id;
        let check = |b: &ExportedBlob, ns: &str| -> Result<(), StorageError> {
            let actual = crc32fast::hash(&b.bytes);
            if actual != b.crc32 {
                return Err(StorageError::Integrity {
                    key: format!("{ns}{}", b.key),
                    expected: b.crc32,
                    actual,
                });
            }
            Ok(())
        };
        let mut kv_total = 0u64;
        for e in &ex.kv {
            validate_key(e.key.as_bytes())?;
            if e.bytes.len() as u64 > self.inner.cfg.max_kv_value {
                return Err(StorageError::ValueTooLarge {
                    len: e.bytes.len() as u64,
                    max: self.inner.cfg.max_kv_value,
                });
            }
            check(e, &format!("kv/{id}/"))?;
            kv_total += (e.key.len() + e.bytes.len()) as u64;
        }
        if let Some(b) = &ex.bundle {
            check(&b.code, &format!("bundle/{id}/"))?;
            for f in &b.static_files {
                validate_key(f.key.as_bytes())?;
                check(f, &format!("bundle/{id}/static/"))?;
            }
        }
        if let Some(bad) = ex.usage.iter().find(|u| &u.tenant != id) {
            return Err(StorageError::Corrupt {
                key: format!("usage/{}", bad.tenant),
                what: "usage row belongs to another tenant",
            });
        }
        let cfg = &self.inner.cfg;
        let new_account = self.write(|tx| {
            // The archive's account is the other node's business: the app gets
            // an account of its own name here.
            let mut rec = ex.tenant.clone();
            rec.account = None;
            let new_account = crate::account::account_tier_tx(tx, id)?.is_none();
            insert_tenant_tx(tx, &rec, None)?;
            delete_prefix_tx(tx, &format!("bundle/{id}/"))?;
            delete_prefix_tx(tx, &format!("kv/{id}/"))?;
            if let Some(b) = &ex.bundle {
                let code = insert_bytes_tx(tx, cfg, &code_key(id), &b.code.bytes)?;
                let mut bytes = code.len;
                for f in &b.static_files {
                    bytes += insert_bytes_tx(tx, cfg, &static_key(id, &f.key), &f.bytes)?.len;
                }
                tx.exec(
                    "INSERT INTO bundles (tenant, kind, version, files, bytes, crc32, updated)
                     VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6) ON CONFLICT (tenant) DO UPDATE SET kind = excluded.kind, version = excluded.version,
                    files = excluded.files, bytes = excluded.bytes, crc32 = excluded.crc32,
                    updated = excluded.updated",
                    args![
                        id.as_str(),
                        b.kind.as_str(),
                        b.static_files.len() as i64,
                        i(bytes),
                        code.crc32,
                        now_secs()
                    ],
                )?;
            }
            for e in &ex.kv {
                insert_bytes_tx(tx, cfg, &kv_key(id, &e.key), &e.bytes)?;
            }
            set_kv_used_tx(tx, id, kv_total)?;
            upsert_usage_tx(tx, "usage", &ex.usage)?;
            // The app's months are its new account's (one of its own, made
            // here): what that account's quota reads. An account of that name
            // that existed already keeps its own months.
            if new_account {
                upsert_usage_tx(tx, "account_usage", &ex.usage)?;
            }
            Ok(new_account)
        })?;
        if self.is_shared() {
            // The imported months are this node's baselines: the meter seeded
            // with them must not add them a second time at its next flush.
            let mut base = self.inner.usage_base.lock();
            let tables: &[&'static str] = if new_account {
                &["usage", "account_usage"]
            } else {
                &["usage"]
            };
            for u in &ex.usage {
                for &table in tables {
                    let key = (table, u.tenant.clone(), u.period.year(), u.period.month());
                    base.insert(key, u.clone());
                }
            }
        }
        self.bundle_changed(id);
        Ok(())
    }
}

fn kv_used_tx(tx: &mut dyn Db, tenant: &TenantId) -> Result<u64, StorageError> {
    Ok(tx
        .opt(
            "SELECT bytes FROM kv_bytes WHERE tenant = ?1",
            args![tenant.as_str()],
        )?
        .map(|r| r.i(0))
        .transpose()?
        .map(u)
        .unwrap_or(0))
}

fn set_kv_used_tx(tx: &mut dyn Db, tenant: &TenantId, bytes: u64) -> Result<(), StorageError> {
    tx.exec(
        "INSERT INTO kv_bytes (tenant, bytes) VALUES (?1, ?2) ON CONFLICT (tenant) DO UPDATE SET bytes = excluded.bytes",
        args![tenant.as_str(), i(bytes)],
    )?;
    Ok(())
}

impl UsageSink for Store {
    fn store(&self, batch: &[Usage]) -> Result<(), SinkError> {
        Ok(self.store_usage(batch)?)
    }
    fn store_marked(&self, batch: &[Usage], mark: &JournalMark) -> Result<(), SinkError> {
        Ok(self.store_usage_rows("usage", batch, Some(mark))?)
    }
    fn add_marked(&self, deltas: &[Usage], mark: &JournalMark) -> Result<(), SinkError> {
        Ok(self.add_usage_rows("usage", deltas, mark)?)
    }
    fn journal_mark(&self, journal: &str) -> Result<u64, SinkError> {
        Ok(self.journal_mark_of(journal)?)
    }
    fn forget_mark(&self, journal: &str) -> Result<(), SinkError> {
        Ok(self.forget_journal_mark(journal)?)
    }
    fn load(&self, period: Period) -> Result<Vec<Usage>, SinkError> {
        Ok(self.load_usage(period)?)
    }
    fn shared(&self) -> bool {
        self.is_shared()
    }
}

impl ExportedBundle {
    /// A bundle export from its parts (for archive readers outside this crate).
    pub fn new(kind: AppKind, code: ExportedBlob, static_files: Vec<ExportedBlob>) -> Self {
        Self {
            kind,
            code,
            static_files,
        }
    }
}

impl TenantExport {
    /// An export from its parts (for archive readers outside this crate);
    /// [`Store::import_tenant`] verifies it.
    pub fn new(
        tenant: TenantRecord,
        bundle: Option<ExportedBundle>,
        kv: Vec<ExportedBlob>,
        usage: Vec<Usage>,
    ) -> Self {
        Self {
            tenant,
            bundle,
            kv,
            usage,
        }
    }
}
