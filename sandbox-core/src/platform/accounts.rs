//! Accounts: who owns apps. An account has a tier; its apps run on it, each
//! with the tier's per-request limits (fuel, wall clock, instance memory,
//! compute shares, rate), and share the tier's monthly requests, storage
//! and `max_apps`. An app deployed without an account is in an account of
//! its own, of its name (so a deploy needs no account at all).
//!
//! The quota reads an account meter (every request metered a second time
//! under its account); the storage quota is checked in the KV write's own
//! transaction over all the account's apps; `max_apps` in the app insert's.

use std::sync::Arc;

use corral_limits::{TenantId, Tier};
use corral_metering::Usage;
use corral_storage::{AccountRecord, TenantRecord};
use serde::Serialize;

use super::{Platform, PlatformError, UsageReport, blocking, bundle, limits_for, tier_name_of};

/// An account, from [`Platform::account`] and [`Platform::accounts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AccountInfo {
    /// The account's name.
    pub name: TenantId,
    /// Its tier (every app of the account runs on it).
    pub tier: String,
    /// Its apps, by name.
    pub apps: Vec<TenantId>,
    /// How many apps the tier allows (`None` = no limit).
    pub max_apps: Option<u32>,
    /// Created, Unix seconds.
    pub created: i64,
}

impl Platform {
    fn account_info(&self, rec: AccountRecord) -> Result<AccountInfo, PlatformError> {
        let apps = self.inner.store.account_apps(&rec.name)?;
        let max_apps = self
            .inner
            .tiers
            .get(rec.tier.as_str())
            .and_then(|t| t.max_apps);
        Ok(AccountInfo {
            tier: rec.tier.as_str().to_owned(),
            apps,
            max_apps,
            created: rec.created,
            name: rec.name,
        })
    }

    /// Creates an account on `tier` ([`PlatformError::AccountExists`], 409,
    /// if the name is taken; [`PlatformError::UnknownTier`] for a tier the
    /// node does not have). Deploy into it with [`deploy_in`](Self::deploy_in).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use corral::{TenantId, platform::{Platform, PlatformConfig, PlatformError}};
    /// let dir = tempfile::tempdir().unwrap();
    /// let p = Platform::builder().config(PlatformConfig::with_data_dir(dir.path())).build().unwrap();
    /// let acme = TenantId::new("acme").unwrap();
    /// let info = p.create_account(&acme, "pro").await.unwrap();
    /// assert_eq!((info.tier.as_str(), info.max_apps, info.apps.len()), ("pro", Some(10), 0));
    /// assert!(matches!(p.create_account(&acme, "pro").await, Err(PlatformError::AccountExists { .. })));
    /// assert!(matches!(p.create_account(&"x".parse().unwrap(), "gold").await, Err(PlatformError::UnknownTier { .. })));
    /// # p.shutdown().await;
    /// # });
    /// ```
    pub async fn create_account(
        &self,
        name: &TenantId,
        tier: &str,
    ) -> Result<AccountInfo, PlatformError> {
        self.inner.tier(tier)?;
        let rec = AccountRecord::new(name.clone(), tier_name_of(tier)?);
        let this = self.clone();
        blocking(move || {
            this.inner.store.create_account(&rec)?;
            this.account_info(rec)
        })
        .await
    }

    /// One account, or `None`.
    pub fn account(&self, name: &TenantId) -> Result<Option<AccountInfo>, PlatformError> {
        self.inner
            .store
            .account(name)?
            .map(|r| self.account_info(r))
            .transpose()
    }

    /// Every account, by name (including the accounts of their own that
    /// apps deployed without an account got).
    pub fn accounts(&self) -> Result<Vec<AccountInfo>, PlatformError> {
        self.inner
            .store
            .list_accounts()?
            .into_iter()
            .map(|r| self.account_info(r))
            .collect()
    }

    /// Deletes an account that holds no apps ([`PlatformError::AccountNotEmpty`],
    /// 409, while it does). Its usage rows stay for billing. Whether it existed.
    pub fn delete_account(&self, name: &TenantId) -> Result<bool, PlatformError> {
        Ok(self.inner.store.delete_account(name)?)
    }

    /// Moves an account and all its apps to `tier`: every app is recompiled
    /// under the tier's limits first (a failure changes nothing), then the
    /// store and the tenant table move together.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use corral::{Kind, TenantId, platform::{Bundle, Platform, PlatformConfig}};
    /// # let never = corral::metering::Level::new(1.0, 1.0);
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut config = PlatformConfig::with_data_dir(dir.path());
    /// # (config.thresholds.ram, config.thresholds.disk, config.thresholds.cpu) = (never, never, never);
    /// let p = Platform::builder().config(config).build().unwrap();
    /// let acme = TenantId::new("acme").unwrap();
    /// p.create_account(&acme, "free").await.unwrap();
    /// let blog = TenantId::new("blog").unwrap();
    /// let js = b"export default { fetch() { return new Response('hi') } }".to_vec();
    /// p.deploy_in(&blog, &acme, Bundle::code(Kind::Js, js)).await.unwrap();
    /// let info = p.set_account_tier(&acme, "pro").await.unwrap();
    /// assert_eq!(info.tier, "pro");
    /// assert_eq!(p.app_tier(&blog).unwrap().max_apps, Some(10));
    /// # p.shutdown().await;
    /// # });
    /// ```
    pub async fn set_account_tier(
        &self,
        name: &TenantId,
        tier: &str,
    ) -> Result<AccountInfo, PlatformError> {
        let this = self.clone();
        let (name, tier) = (name.clone(), tier.to_owned());
        blocking(move || {
            let inner = &*this.inner;
            let t = inner.tier(&tier)?;
            let old =
                inner
                    .store
                    .account(&name)?
                    .ok_or_else(|| PlatformError::AccountNotFound {
                        account: name.clone(),
                    })?;
            let apps = inner.store.account_apps(&name)?;
            let mut done = Vec::new();
            for app in &apps {
                if let Err(e) = this.recompile(app, &t) {
                    // Back to the old tier's limits for the ones done.
                    if let Ok(old_t) = inner.tier(old.tier.as_str()) {
                        for d in &done {
                            let _ = this.recompile(d, &old_t);
                        }
                    }
                    return Err(e);
                }
                done.push(app.clone());
            }
            inner.store.set_account_tier(&name, &tier_name_of(&tier)?)?;
            for app in &apps {
                inner.store.set_storage_limit(app, t.storage_bytes)?;
                inner.apps.install(app, &name, t.clone());
            }
            this.account(&name)?
                .ok_or(PlatformError::AccountNotFound { account: name })
        })
        .await
    }

    /// Moves an app into another account: it takes that account's tier
    /// (recompiled under its limits) and counts toward its `max_apps`
    /// ([`PlatformError::AppLimit`] when the account is full) and its
    /// quotas from now on; requests already counted stay with the account
    /// that served them.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use corral::{Kind, TenantId, platform::{Bundle, Platform, PlatformConfig}};
    /// # let never = corral::metering::Level::new(1.0, 1.0);
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut config = PlatformConfig::with_data_dir(dir.path());
    /// # (config.thresholds.ram, config.thresholds.disk, config.thresholds.cpu) = (never, never, never);
    /// let p = Platform::builder().config(config).build().unwrap();
    /// let blog = TenantId::new("blog").unwrap();
    /// let js = b"export default { fetch() { return new Response('hi') } }".to_vec();
    /// p.deploy(&blog, Some("free"), Bundle::code(Kind::Js, js)).await.unwrap();
    /// let acme = TenantId::new("acme").unwrap();
    /// p.create_account(&acme, "pro").await.unwrap();
    /// let app = p.move_app(&blog, &acme).await.unwrap();
    /// assert_eq!((app.account.as_str(), app.tier.as_str()), ("acme", "pro"));
    /// # p.shutdown().await;
    /// # });
    /// ```
    pub async fn move_app(
        &self,
        name: &TenantId,
        account: &TenantId,
    ) -> Result<super::AppInfo, PlatformError> {
        let this = self.clone();
        let (name, account) = (name.clone(), account.clone());
        blocking(move || {
            let inner = &*this.inner;
            let target =
                inner
                    .store
                    .account(&account)?
                    .ok_or_else(|| PlatformError::AccountNotFound {
                        account: account.clone(),
                    })?;
            let t = inner.tier(target.tier.as_str())?;
            let old = this.recompile(&name, &t)?;
            let moved = inner.store.move_tenant(&name, &account, t.max_apps);
            if let Err(e) = moved {
                let old_tier = inner.tier(old.tier.as_str())?;
                let _ = this.recompile(&name, &old_tier);
                return Err(e.into());
            }
            inner.store.set_storage_limit(&name, t.storage_bytes)?;
            inner.apps.install(&name, &account, t);
            this.app(&name)?
                .ok_or(PlatformError::NotFound { tenant: name })
        })
        .await
    }

    /// The account's usage this month (all its apps together, including
    /// requests of apps since removed or moved away) beside its tier's
    /// quotas. The `tenant` field of `usage` is the account's name.
    pub fn account_usage(&self, name: &TenantId) -> Result<UsageReport, PlatformError> {
        let rec =
            self.inner
                .store
                .account(name)?
                .ok_or_else(|| PlatformError::AccountNotFound {
                    account: name.clone(),
                })?;
        let tier = self.inner.tier(rec.tier.as_str()).ok();
        let mut usage = self
            .inner
            .account_meter
            .usage(name)
            .unwrap_or_else(|| Usage::zero(name.clone(), self.inner.account_meter.period()));
        // Storage is the apps' KV now, not a counter of requests.
        usage.storage_bytes = self
            .inner
            .store
            .account_apps(name)?
            .iter()
            .map(|a| self.inner.store.kv_bytes(a))
            .sum::<Result<u64, _>>()?;
        Ok(UsageReport {
            usage,
            tier: rec.tier.as_str().to_owned(),
            requests_quota: tier.as_ref().and_then(|t| t.requests_per_month),
            storage_quota: tier.as_ref().and_then(|t| t.storage_bytes),
        })
    }

    /// Compiles `name`'s stored code under `tier`'s limits into the
    /// registry; its record as it was.
    pub(super) fn recompile(
        &self,
        name: &TenantId,
        tier: &Arc<Tier>,
    ) -> Result<TenantRecord, PlatformError> {
        let inner = &*self.inner;
        let rec = inner
            .store
            .tenant(name)?
            .ok_or_else(|| PlatformError::NotFound {
                tenant: name.clone(),
            })?;
        let code = inner
            .store
            .bundle_code(name)?
            .ok_or_else(|| PlatformError::NotFound {
                tenant: name.clone(),
            })?;
        inner.registry.deploy(
            name,
            bundle::kind_of(rec.kind),
            &code.bytes,
            limits_for(tier),
        )?;
        Ok(rec)
    }
}
