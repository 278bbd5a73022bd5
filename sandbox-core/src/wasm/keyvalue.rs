//! The tenant KV for components, as `wasi:keyvalue/store` and
//! `wasi:keyvalue/batch` at `0.2.0-draft` (the WIT under `sandbox-core/wit/keyvalue`).
//!
//! Why the standard interface and not a Corral one: components from Spin,
//! wasmCloud and `wasmtime serve -S keyvalue` already import it, so they run
//! unchanged. Why Corral's own host code and not the `wasmtime-wasi-keyvalue`
//! crate: that crate (48) serves only an in-memory map that each store
//! copies and forgets, so nothing a request writes would outlive it.
//!
//! Every call goes to the tenant's [`TenantKv`], the store behind
//! JavaScript's `env.KV`: the same key rules (1–512 bytes, no control
//! characters), the same per-value cap, the same storage quota of the
//! account's tier, the same CRC32 check on read and the same storage
//! metering. `open("default")` (or `open("")`, wasmtime's name) is the
//! tenant's store; any other name is `no-such-store`, and a host without a KV
//! store answers `access-denied`. A refusal reaches the guest as
//! `error::other("<code>: <message>")`, `<code>` being [`KvError::code`]
//! (`value_too_large`, `storage_quota_exceeded`, `invalid_key`, …).
//!
//! `wasi:keyvalue/atomics` is not served: the tenant KV has no atomic
//! read-modify-write, and an `increment` made of a get and a set would lose
//! updates between concurrent requests. A component importing it is refused
//! at deploy.
//!
//! Bounds on what a guest can make the host hold: values it sends and
//! receives live in its own memory (the tier's cap) before the host copies
//! them once; at most [`MAX_BUCKETS`] buckets are open at once; a
//! `list-keys` page holds at most [`LIST_PAGE`] keys, a batch at most
//! [`MAX_BATCH`] entries, and a `get-many` answer at most
//! [`MAX_BATCH_BYTES`] of values (the host holds it whole before the copy).

use std::sync::Arc;

use corral_limits::TenantId;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::{KvError, TenantKv};

#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
mod generated {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "corral:host/keyvalue",
        imports: { default: trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::wasm::keyvalue::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => crate::wasm::keyvalue::Fault,
        },
    });
}

use generated::wasi::keyvalue::{batch, store};

/// Most buckets a request may hold open at once.
pub(crate) const MAX_BUCKETS: usize = 16;
/// Most keys one `list-keys` call returns; its cursor is the number of keys
/// already listed.
pub(crate) const LIST_PAGE: usize = 1000;
/// Most entries in one `get-many`, `set-many` or `delete-many`.
pub(crate) const MAX_BATCH: usize = 1000;
/// Most value bytes one `get-many` returns. The host holds the whole answer
/// before it is copied into the guest, so without this a batch naming one
/// 1 MiB key a thousand times would make the host allocate 1 GiB for a
/// guest that cannot even hold it.
pub(crate) const MAX_BATCH_BYTES: usize = 16 << 20;

/// An open `bucket`: the tenant's store (there is only one). `pub` because
/// the generated bindings re-export it; the module is private.
#[derive(Debug)]
#[allow(unreachable_pub)]
pub struct Bucket;

/// Why a call failed: a guest-facing `error`, or a host fault that traps.
/// `pub` for the same reason as [`Bucket`].
#[derive(Debug)]
#[allow(unreachable_pub)]
pub enum Fault {
    NoSuchStore,
    AccessDenied,
    Other(String),
    Trap(wasmtime::Error),
}

impl From<KvError> for Fault {
    fn from(e: KvError) -> Self {
        Fault::Other(format!("{}: {e}", e.code()))
    }
}

impl From<wasmtime::component::ResourceTableError> for Fault {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Fault::Trap(e.into())
    }
}

/// The KV side of one request's store state.
#[derive(Debug)]
pub(crate) struct KvHost {
    tenant: TenantId,
    kv: Option<Arc<dyn TenantKv>>,
    open: usize,
}

impl KvHost {
    /// The KV of `tenant` for one request (`None`: the host has no store).
    pub(crate) fn new(tenant: TenantId, kv: Option<Arc<dyn TenantKv>>) -> Self {
        Self {
            tenant,
            kv,
            open: 0,
        }
    }
}

/// What the bindings borrow from the store state for one call.
pub(crate) struct KvView<'a> {
    pub(crate) host: &'a mut KvHost,
    pub(crate) table: &'a mut ResourceTable,
}

impl KvView<'_> {
    /// The store behind an open bucket.
    fn store(&self, bucket: &Resource<Bucket>) -> Result<&dyn TenantKv, Fault> {
        self.table.get(bucket)?;
        self.host.kv.as_deref().ok_or(Fault::AccessDenied)
    }
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Links `wasi:keyvalue/store` and `wasi:keyvalue/batch` (0.2.0-draft).
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)
}

/// Refuses a batch longer than [`MAX_BATCH`].
fn batch_len(len: usize) -> Result<(), Fault> {
    if len > MAX_BATCH {
        return Err(Fault::Other(format!(
            "batch_too_large: {len} entries, at most {MAX_BATCH} in one call"
        )));
    }
    Ok(())
}

impl store::Host for KvView<'_> {
    fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Fault> {
        if !matches!(identifier.as_str(), "" | "default") {
            return Err(Fault::NoSuchStore);
        }
        if self.host.kv.is_none() {
            return Err(Fault::AccessDenied);
        }
        if self.host.open >= MAX_BUCKETS {
            return Err(Fault::Other(format!(
                "too_many_buckets: at most {MAX_BUCKETS} open at once"
            )));
        }
        let bucket = self.table.push(Bucket)?;
        self.host.open += 1;
        Ok(bucket)
    }

    fn convert_error(&mut self, err: Fault) -> wasmtime::Result<store::Error> {
        match err {
            Fault::NoSuchStore => Ok(store::Error::NoSuchStore),
            Fault::AccessDenied => Ok(store::Error::AccessDenied),
            Fault::Other(text) => Ok(store::Error::Other(text)),
            Fault::Trap(e) => Err(e),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, Fault> {
        let kv = self.store(&bucket)?;
        Ok(kv.get(&self.host.tenant, &key)?.map(|b| b.to_vec()))
    }

    fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<(), Fault> {
        let kv = self.store(&bucket)?;
        Ok(kv.put(&self.host.tenant, &key, &value)?)
    }

    fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Fault> {
        let kv = self.store(&bucket)?;
        kv.delete(&self.host.tenant, &key)?;
        Ok(())
    }

    fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Fault> {
        let kv = self.store(&bucket)?;
        Ok(kv.get(&self.host.tenant, &key)?.is_some())
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, Fault> {
        let kv = self.store(&bucket)?;
        // The cursor is how many keys earlier pages held (keys come in
        // order); one more than a page tells whether another page follows.
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let want = skip.saturating_add(LIST_PAGE + 1);
        let listed = kv.list(&self.host.tenant, "", want)?;
        let more = listed.len() == want;
        let keys: Vec<String> = listed.into_iter().skip(skip).take(LIST_PAGE).collect();
        let cursor = more.then(|| (skip + keys.len()) as u64);
        Ok(store::KeyResponse { keys, cursor })
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.host.open = self.host.open.saturating_sub(1);
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Fault> {
        batch_len(keys.len())?;
        let kv = self.store(&bucket)?;
        let tenant = &self.host.tenant;
        let mut total = 0usize;
        keys.into_iter()
            .map(|key| -> Result<_, Fault> {
                let Some(value) = kv.get(tenant, &key)? else {
                    return Ok(None);
                };
                total = total.saturating_add(value.len());
                if total > MAX_BATCH_BYTES {
                    return Err(Fault::Other(format!(
                        "batch_too_large: more than {MAX_BATCH_BYTES} value bytes in one get-many"
                    )));
                }
                Ok(Some((key, value.to_vec())))
            })
            .collect()
    }

    fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Fault> {
        batch_len(key_values.len())?;
        let kv = self.store(&bucket)?;
        for (key, value) in &key_values {
            kv.put(&self.host.tenant, key, value)?;
        }
        Ok(())
    }

    fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Result<(), Fault> {
        batch_len(keys.len())?;
        let kv = self.store(&bucket)?;
        for key in &keys {
            kv.delete(&self.host.tenant, key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{Host as _, HostBucket as _};

    /// A store of a few keys in order, as the tenant KV lists them.
    #[derive(Debug, Default)]
    struct Keys(parking_lot::Mutex<std::collections::BTreeMap<String, Vec<u8>>>);

    impl TenantKv for Keys {
        fn get(&self, _: &TenantId, key: &str) -> Result<Option<bytes::Bytes>, KvError> {
            Ok(self.0.lock().get(key).map(|v| v.clone().into()))
        }
        fn put(&self, _: &TenantId, key: &str, value: &[u8]) -> Result<(), KvError> {
            if value.len() > 4 {
                return Err(KvError::ValueTooLarge {
                    len: value.len() as u64,
                    max: 4,
                });
            }
            self.0.lock().insert(key.into(), value.into());
            Ok(())
        }
        fn delete(&self, _: &TenantId, key: &str) -> Result<bool, KvError> {
            Ok(self.0.lock().remove(key).is_some())
        }
        fn list(&self, _: &TenantId, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
            let keys = self.0.lock();
            Ok(keys
                .keys()
                .filter(|k| k.starts_with(prefix))
                .take(limit)
                .cloned()
                .collect())
        }
    }

    fn host(kv: Option<Arc<dyn TenantKv>>) -> KvHost {
        KvHost::new("app".parse().unwrap(), kv)
    }

    #[test]
    fn open_names_only_the_tenants_store_and_is_bounded() {
        let mut table = ResourceTable::new();
        let mut h = host(Some(Arc::new(Keys::default())));
        let mut v = KvView {
            host: &mut h,
            table: &mut table,
        };
        assert!(matches!(v.open("other".into()), Err(Fault::NoSuchStore)));
        let mut open = Vec::new();
        for _ in 0..MAX_BUCKETS {
            open.push(v.open("default".into()).unwrap());
        }
        match v.open(String::new()) {
            Err(Fault::Other(text)) => assert!(text.starts_with("too_many_buckets:"), "{text}"),
            other => panic!("{other:?}"),
        }
        // Dropping one makes room for one.
        v.drop(open.pop().unwrap()).unwrap();
        v.open(String::new()).unwrap();

        let mut none = host(None);
        let mut v = KvView {
            host: &mut none,
            table: &mut table,
        };
        assert!(matches!(v.open("default".into()), Err(Fault::AccessDenied)));
    }

    #[test]
    fn refusals_carry_their_code_and_pages_their_cursor() {
        let mut table = ResourceTable::new();
        let mut h = host(Some(Arc::new(Keys::default())));
        let mut v = KvView {
            host: &mut h,
            table: &mut table,
        };
        let b = v.open("default".into()).unwrap();
        let b = || Resource::<Bucket>::new_borrow(b.rep());
        match v.set(b(), "k".into(), vec![0; 5]) {
            Err(Fault::Other(text)) => assert_eq!(
                text,
                "value_too_large: value of 5 bytes exceeds the limit of 4 bytes"
            ),
            other => panic!("{other:?}"),
        }
        for i in 0..LIST_PAGE + 3 {
            v.set(b(), format!("k{i:05}"), vec![1]).unwrap();
        }
        assert!(v.exists(b(), "k00000".into()).unwrap());
        let first = v.list_keys(b(), None).unwrap();
        assert_eq!(first.keys.len(), LIST_PAGE);
        assert_eq!(first.cursor, Some(LIST_PAGE as u64));
        let rest = v.list_keys(b(), first.cursor).unwrap();
        assert_eq!(rest.keys, ["k01000", "k01001", "k01002"]);
        assert_eq!(rest.cursor, None);
        let past = v.list_keys(b(), Some(u64::MAX)).unwrap();
        assert!(past.keys.is_empty() && past.cursor.is_none());

        use batch::Host as _;
        match v.delete_many(b(), vec![String::new(); MAX_BATCH + 1]) {
            Err(Fault::Other(text)) => assert!(text.starts_with("batch_too_large:"), "{text}"),
            other => panic!("{other:?}"),
        }
        let got = v
            .get_many(b(), vec!["k00001".into(), "nope".into()])
            .unwrap();
        assert_eq!(got, [Some(("k00001".into(), vec![1])), None]);
    }

    #[test]
    fn get_many_holds_at_most_its_byte_cap() {
        let mut table = ResourceTable::new();
        let keys = Keys::default();
        // 1 MiB, past the test store's put cap: inserted directly.
        keys.0.lock().insert("big".into(), vec![7; 1 << 20]);
        let mut h = host(Some(Arc::new(keys)));
        let mut v = KvView {
            host: &mut h,
            table: &mut table,
        };
        let b = v.open("default".into()).unwrap();
        let b = || Resource::<Bucket>::new_borrow(b.rep());
        use batch::Host as _;
        let fits = MAX_BATCH_BYTES >> 20;
        let got = v.get_many(b(), vec!["big".into(); fits]).unwrap();
        assert_eq!(got.len(), fits);
        // One more 1 MiB value: refused before the host holds it, however
        // many entries the batch names (1,000 would be 1 GiB).
        for n in [fits + 1, MAX_BATCH] {
            match v.get_many(b(), vec!["big".into(); n]) {
                Err(Fault::Other(text)) => {
                    assert!(text.starts_with("batch_too_large:"), "{text}");
                }
                other => panic!("{n}: {:?}", other.map(|g| g.len())),
            }
        }
    }
}
