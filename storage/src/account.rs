//! Accounts: who owns apps. An account has a tier; its apps run on it and
//! share its monthly requests, storage and `max_apps`. Every app belongs to
//! exactly one account (`tenants.account`); an app created without one gets
//! an account of its own, of its name and tier. The store keeps an app's
//! tier equal to its account's: [`Store::set_account_tier`] moves every app
//! of the account in the same transaction.

use corral_limits::{TenantId, TierName};
use corral_metering::{JournalMark, Period, SinkError, Usage, UsageSink};

use crate::db::{Db, args};
use crate::store::now_secs;
use crate::tenant::{TENANT_COLS, tenant_row, to_record};
use crate::{StorageError, Store, TenantRecord};

/// An account as stored.
///
/// ```
/// use corral_storage::AccountRecord;
/// let a = AccountRecord::new("acme".parse().unwrap(), "pro".parse().unwrap());
/// assert_eq!((a.name.as_str(), a.tier.as_str()), ("acme", "pro"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AccountRecord {
    /// The account's name (app-name rules).
    pub name: TenantId,
    /// Its tier: every app of the account runs on it.
    pub tier: TierName,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
}

impl AccountRecord {
    /// A record created now.
    pub fn new(name: TenantId, tier: TierName) -> Self {
        Self {
            name,
            tier,
            created: now_secs(),
        }
    }
}

fn account_row(mut r: crate::db::Row) -> Result<(String, String, i64), StorageError> {
    Ok((r.s(0)?, r.s(1)?, r.i(2)?))
}

fn to_account((name, tier, created): (String, String, i64)) -> Result<AccountRecord, StorageError> {
    let bad = |what| StorageError::Corrupt {
        key: format!("accounts/{name}"),
        what,
    };
    Ok(AccountRecord {
        name: TenantId::new(&name).map_err(|_| bad("invalid account name"))?,
        tier: TierName::new(&tier).map_err(|_| bad("invalid tier name"))?,
        created,
    })
}

fn apps_in_tx(tx: &mut dyn Db, account: &TenantId) -> Result<u64, StorageError> {
    let n = tx
        .one(
            "SELECT COUNT(*) FROM tenants WHERE account = ?1",
            args![account.as_str()],
        )?
        .i(0)?;
    Ok(n as u64)
}

/// Refuses when `account` does not exist or already holds `max_apps` apps;
/// then gives the account's tier to the app about to join (the caller
/// writes the app's row with [`account_tier_tx`]).
pub(crate) fn check_room_tx(
    tx: &mut dyn Db,
    account: &TenantId,
    max_apps: Option<u32>,
) -> Result<(), StorageError> {
    if account_tier_tx(tx, account)?.is_none() {
        return Err(StorageError::AccountNotFound {
            account: account.clone(),
        });
    }
    if let Some(max) = max_apps {
        let apps = apps_in_tx(tx, account)?;
        if apps >= u64::from(max) {
            return Err(StorageError::AppLimit {
                account: account.clone(),
                apps,
                max,
            });
        }
    }
    Ok(())
}

/// The account's tier, if the account exists.
pub(crate) fn account_tier_tx(
    tx: &mut dyn Db,
    account: &TenantId,
) -> Result<Option<String>, StorageError> {
    tx.opt(
        "SELECT tier FROM accounts WHERE name = ?1",
        args![account.as_str()],
    )?
    .map(|mut r| r.s(0))
    .transpose()
}

/// KV bytes of the *other* apps of `tenant`'s account (zero when it has
/// none): with the tenant's own bytes, what the account's storage quota
/// counts.
pub(crate) fn account_kv_others_tx(
    tx: &mut dyn Db,
    tenant: &TenantId,
) -> Result<u64, StorageError> {
    // CAST: PostgreSQL's SUM of BIGINT is NUMERIC.
    let n = tx
        .one(
            "SELECT CAST(COALESCE(SUM(k.bytes), 0) AS BIGINT) FROM tenants t JOIN kv_bytes k ON k.tenant = t.name
             WHERE t.account = (SELECT account FROM tenants WHERE name = ?1) AND t.name != ?1",
            args![tenant.as_str()],
        )?
        .i(0)?;
    Ok(n.max(0) as u64)
}

impl Store {
    /// Creates an account ([`StorageError::AccountExists`] if present).
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig, StorageError, AccountRecord};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// let acme = AccountRecord::new("acme".parse().unwrap(), "pro".parse().unwrap());
    /// store.create_account(&acme).unwrap();
    /// assert_eq!(store.account(&acme.name).unwrap().unwrap().tier.as_str(), "pro");
    /// assert!(matches!(store.create_account(&acme), Err(StorageError::AccountExists { .. })));
    /// ```
    pub fn create_account(&self, rec: &AccountRecord) -> Result<(), StorageError> {
        self.write(|tx| {
            let n = tx.exec(
                "INSERT INTO accounts (name, tier, created) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                args![rec.name.as_str(), rec.tier.as_str(), rec.created],
            )?;
            if n == 0 {
                return Err(StorageError::AccountExists {
                    account: rec.name.clone(),
                });
            }
            Ok(())
        })
    }

    /// The account, if it exists.
    pub fn account(&self, name: &TenantId) -> Result<Option<AccountRecord>, StorageError> {
        let row = self.read(|c| {
            c.opt(
                "SELECT name, tier, created FROM accounts WHERE name = ?1",
                args![name.as_str()],
            )?
            .map(account_row)
            .transpose()
        })?;
        row.map(to_account).transpose()
    }

    /// Every account in name order.
    pub fn list_accounts(&self) -> Result<Vec<AccountRecord>, StorageError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT name, tier, created FROM accounts ORDER BY name",
                &[],
            )?
            .into_iter()
            .map(account_row)
            .collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(to_account).collect()
    }

    /// The apps of an account, in name order (empty for an unknown account).
    pub fn account_apps(&self, name: &TenantId) -> Result<Vec<TenantId>, StorageError> {
        let recs = self.read(|c| {
            c.query(
                &format!("SELECT {TENANT_COLS} FROM tenants WHERE account = ?1 ORDER BY name"),
                args![name.as_str()],
            )?
            .into_iter()
            .map(tenant_row)
            .collect::<Result<Vec<_>, _>>()
        })?;
        recs.into_iter()
            .map(|r| to_record(r).map(|r: TenantRecord| r.id))
            .collect()
    }

    /// Moves an account, and every app in it, to `tier`, in one
    /// transaction. Returns the account's apps.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig, AppKind, TenantRecord, AccountRecord};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// let acme = "acme".parse().unwrap();
    /// store.create_account(&AccountRecord::new("acme".parse().unwrap(), "free".parse().unwrap())).unwrap();
    /// let blog = TenantRecord::new("blog".parse().unwrap(), "free".parse().unwrap(), AppKind::Js)
    ///     .in_account("acme".parse().unwrap());
    /// store.create_tenant(&blog).unwrap();
    /// let apps = store.set_account_tier(&acme, &"pro".parse().unwrap()).unwrap();
    /// assert_eq!(apps, [blog.id.clone()]);
    /// assert_eq!(store.tenant(&blog.id).unwrap().unwrap().tier.as_str(), "pro");
    /// ```
    pub fn set_account_tier(
        &self,
        name: &TenantId,
        tier: &TierName,
    ) -> Result<Vec<TenantId>, StorageError> {
        self.write(|tx| {
            let n = tx.exec(
                "UPDATE accounts SET tier = ?1 WHERE name = ?2",
                args![tier.as_str(), name.as_str()],
            )?;
            if n == 0 {
                return Err(StorageError::AccountNotFound {
                    account: name.clone(),
                });
            }
            tx.exec(
                "UPDATE tenants SET tier = ?1 WHERE account = ?2",
                args![tier.as_str(), name.as_str()],
            )?;
            Ok(())
        })?;
        self.account_apps(name)
    }

    /// Deletes an empty account and its tokens; [`StorageError::AccountNotEmpty`]
    /// while it holds apps. Its usage rows are kept for billing. Whether it existed.
    pub fn delete_account(&self, name: &TenantId) -> Result<bool, StorageError> {
        self.write(|tx| {
            let apps = apps_in_tx(tx, name)?;
            if apps > 0 {
                return Err(StorageError::AccountNotEmpty {
                    account: name.clone(),
                    apps,
                });
            }
            // Its tokens go with it.
            tx.exec(
                "DELETE FROM account_tokens WHERE account = ?1",
                args![name.as_str()],
            )?;
            Ok(tx.exec("DELETE FROM accounts WHERE name = ?1", args![name.as_str()])? > 0)
        })
    }

    /// Moves an app into `account` (which may hold at most `max_apps`
    /// apps): the app takes the account's tier. Returns that tier.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig, AppKind, TenantRecord, AccountRecord, StorageError};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// store.create_account(&AccountRecord::new("acme".parse().unwrap(), "pro".parse().unwrap())).unwrap();
    /// let blog = TenantRecord::new("blog".parse().unwrap(), "free".parse().unwrap(), AppKind::Js);
    /// store.create_tenant(&blog).unwrap(); // in an account of its own, "blog"
    /// let tier = store.move_tenant(&blog.id, &"acme".parse().unwrap(), Some(10)).unwrap();
    /// assert_eq!(tier.as_str(), "pro");
    /// let rec = store.tenant(&blog.id).unwrap().unwrap();
    /// assert_eq!((rec.account.unwrap().as_str(), rec.tier.as_str()), ("acme", "pro"));
    /// assert!(matches!(store.move_tenant(&blog.id, &"nobody".parse().unwrap(), None),
    ///     Err(StorageError::AccountNotFound { .. })));
    /// ```
    pub fn move_tenant(
        &self,
        tenant: &TenantId,
        account: &TenantId,
        max_apps: Option<u32>,
    ) -> Result<TierName, StorageError> {
        self.write(|tx| {
            let current: Option<Option<String>> = tx
                .opt(
                    "SELECT account FROM tenants WHERE name = ?1",
                    args![tenant.as_str()],
                )?
                .map(|mut r| r.os(0))
                .transpose()?;
            let Some(current) = current else {
                return Err(StorageError::TenantNotFound {
                    tenant: tenant.clone(),
                });
            };
            if current.as_deref() != Some(account.as_str()) {
                check_room_tx(tx, account, max_apps)?;
            }
            let tier =
                account_tier_tx(tx, account)?.ok_or_else(|| StorageError::AccountNotFound {
                    account: account.clone(),
                })?;
            tx.exec(
                "UPDATE tenants SET account = ?1, tier = ?2 WHERE name = ?3",
                args![account.as_str(), &tier, tenant.as_str()],
            )?;
            TierName::new(&tier).map_err(|_| StorageError::Corrupt {
                key: format!("accounts/{account}"),
                what: "invalid tier name",
            })
        })
    }

    /// Writes accounts' monthly totals (idempotent; on PostgreSQL merged
    /// across nodes like [`store_usage`](Self::store_usage)); rows are
    /// [`Usage`] with the account's name as `tenant`.
    pub fn store_account_usage(&self, batch: &[Usage]) -> Result<(), StorageError> {
        self.store_usage_rows("account_usage", batch, None)
    }

    /// Every account's totals for `period`, in name order.
    pub fn load_account_usage(&self, period: Period) -> Result<Vec<Usage>, StorageError> {
        self.load_usage_rows("account_usage", period)
    }

    /// The store as the sink of an account meter (a meter keyed by account):
    /// [`store_account_usage`](Self::store_account_usage) and
    /// [`load_account_usage`](Self::load_account_usage).
    pub fn account_usage_sink(&self) -> AccountUsageSink {
        AccountUsageSink(self.clone())
    }
}

/// An API token scoped to an account, as stored: never the token itself,
/// only a hash of its secret part.
///
/// ```
/// use corral_storage::TokenRecord;
/// let t = TokenRecord::new("0a1b2c3d4e5f".into(), "acme".parse().unwrap(), vec![7; 32]);
/// assert_eq!((t.id.as_str(), t.account.as_str()), ("0a1b2c3d4e5f", "acme"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TokenRecord {
    /// The token's public id (the part of the token before its secret).
    pub id: String,
    /// The account it acts for.
    pub account: TenantId,
    /// A hash of the token's secret (the caller's choice of hash).
    #[serde(skip)]
    pub hash: Vec<u8>,
    /// Created, Unix seconds.
    pub created: i64,
}

impl TokenRecord {
    /// A record created now.
    pub fn new(id: String, account: TenantId, hash: Vec<u8>) -> Self {
        Self {
            id,
            account,
            hash,
            created: now_secs(),
        }
    }
}

fn token_row(mut r: crate::db::Row) -> Result<(String, String, Vec<u8>, i64), StorageError> {
    Ok((r.s(0)?, r.s(1)?, r.b(2)?, r.i(3)?))
}

fn to_token(
    (id, account, hash, created): (String, String, Vec<u8>, i64),
) -> Result<TokenRecord, StorageError> {
    let account = TenantId::new(&account).map_err(|_| StorageError::Corrupt {
        key: format!("account_tokens/{id}"),
        what: "invalid account name",
    })?;
    Ok(TokenRecord {
        id,
        account,
        hash,
        created,
    })
}

impl Store {
    /// Stores a token for an existing account ([`StorageError::AccountNotFound`]
    /// otherwise).
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig, AccountRecord, TokenRecord};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// let acme = "acme".parse().unwrap();
    /// store.create_account(&AccountRecord::new("acme".parse().unwrap(), "pro".parse().unwrap())).unwrap();
    /// store.create_token(&TokenRecord::new("t1".into(), "acme".parse().unwrap(), vec![1; 32])).unwrap();
    /// assert_eq!(store.account_tokens(&acme).unwrap()[0].id, "t1");
    /// assert_eq!(store.delete_token("t1").unwrap().unwrap().as_str(), "acme");
    /// assert!(store.tokens().unwrap().is_empty());
    /// ```
    pub fn create_token(&self, rec: &TokenRecord) -> Result<(), StorageError> {
        self.write(|tx| {
            if account_tier_tx(tx, &rec.account)?.is_none() {
                return Err(StorageError::AccountNotFound {
                    account: rec.account.clone(),
                });
            }
            tx.exec(
                "INSERT INTO account_tokens (id, account, hash, created) VALUES (?1, ?2, ?3, ?4)",
                args![&rec.id, rec.account.as_str(), &rec.hash, rec.created],
            )?;
            Ok(())
        })
    }

    /// Every token (to load into memory at start).
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StorageError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT id, account, hash, created FROM account_tokens ORDER BY id",
                &[],
            )?
            .into_iter()
            .map(token_row)
            .collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(to_token).collect()
    }

    /// An account's tokens, oldest first.
    pub fn account_tokens(&self, account: &TenantId) -> Result<Vec<TokenRecord>, StorageError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT id, account, hash, created FROM account_tokens WHERE account = ?1 ORDER BY created, id",
                args![account.as_str()],
            )?
            .into_iter()
            .map(token_row)
            .collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(to_token).collect()
    }

    /// Revokes a token; the account it belonged to, if it existed.
    pub fn delete_token(&self, id: &str) -> Result<Option<TenantId>, StorageError> {
        let account: Option<String> = self.write(|tx| {
            let account = tx
                .opt(
                    "SELECT account FROM account_tokens WHERE id = ?1",
                    args![id],
                )?
                .map(|mut r| r.s(0))
                .transpose()?;
            tx.exec("DELETE FROM account_tokens WHERE id = ?1", args![id])?;
            Ok(account)
        })?;
        account
            .map(|a| {
                TenantId::new(&a).map_err(|_| StorageError::Corrupt {
                    key: format!("account_tokens/{id}"),
                    what: "invalid account name",
                })
            })
            .transpose()
    }
}

/// Accounts' monthly totals in the store; see [`Store::account_usage_sink`].
#[derive(Debug, Clone)]
pub struct AccountUsageSink(Store);

impl UsageSink for AccountUsageSink {
    fn store(&self, batch: &[Usage]) -> Result<(), SinkError> {
        Ok(self.0.store_account_usage(batch)?)
    }
    fn store_marked(&self, batch: &[Usage], mark: &JournalMark) -> Result<(), SinkError> {
        Ok(self
            .0
            .store_usage_rows("account_usage", batch, Some(mark))?)
    }
    fn add_marked(&self, deltas: &[Usage], mark: &JournalMark) -> Result<(), SinkError> {
        Ok(self.0.add_usage_rows("account_usage", deltas, mark)?)
    }
    fn journal_mark(&self, journal: &str) -> Result<u64, SinkError> {
        Ok(self.0.journal_mark_of(journal)?)
    }
    fn forget_mark(&self, journal: &str) -> Result<(), SinkError> {
        Ok(self.0.forget_journal_mark(journal)?)
    }
    fn load(&self, period: Period) -> Result<Vec<Usage>, SinkError> {
        Ok(self.0.load_account_usage(period)?)
    }
    fn shared(&self) -> bool {
        self.0.is_shared()
    }
}
