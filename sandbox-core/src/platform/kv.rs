//! Tenant KV for guests (`env.KV`), over the SQLite store, within each
//! tenant's storage quota.

use bytes::Bytes;
use corral_limits::TenantId;
use corral_storage::{StorageError, Store};

use crate::{KvError, TenantKv};

/// [`TenantKv`] over a [`Store`], enforcing the tier's `storage_bytes`.
#[derive(Debug, Clone)]
pub(crate) struct StoreKv {
    pub(crate) store: Store,
    pub(crate) contexts: super::table::Contexts,
    pub(crate) meter: corral_metering::Meter,
}

fn map(e: StorageError) -> KvError {
    match e {
        StorageError::InvalidKey(k) => KvError::InvalidKey(k.to_string()),
        StorageError::StorageQuotaExceeded { limit, .. } => KvError::QuotaExceeded { limit },
        StorageError::ValueTooLarge { len, max } => KvError::ValueTooLarge { len, max },
        StorageError::Integrity { key, .. } => KvError::Integrity { key },
        other => KvError::Other(other.to_string()),
    }
}

impl StoreKv {
    fn limit(&self, tenant: &TenantId) -> Option<u64> {
        self.contexts
            .read()
            .get(tenant)
            .and_then(|c| c.tier().storage_bytes)
    }

    fn account(&self, tenant: &TenantId) {
        if let Ok(bytes) = self.store.kv_bytes(tenant) {
            self.meter.tenant(tenant).set_storage_bytes(bytes);
        }
    }
}

impl TenantKv for StoreKv {
    fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, KvError> {
        Ok(self
            .store
            .kv_get(tenant, key)
            .map_err(map)?
            .map(|b| b.bytes))
    }

    fn put(&self, tenant: &TenantId, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.store
            .kv_put_with_limit(tenant, key, value, self.limit(tenant))
            .map_err(map)?;
        self.account(tenant);
        Ok(())
    }

    fn delete(&self, tenant: &TenantId, key: &str) -> Result<bool, KvError> {
        let existed = self.store.kv_delete(tenant, key).map_err(map)?;
        self.account(tenant);
        Ok(existed)
    }

    fn list(&self, tenant: &TenantId, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
        self.store.kv_list(tenant, prefix, limit).map_err(map)
    }
}
