//! JavaScript tenants on QuickJS, driven only through the engine-neutral
//! `Backend` / `Program` traits (and the `Registry` for the fleet test).
#![cfg(feature = "js")]

mod api;
mod budget;
mod fleet;
mod hygiene;
mod inline;
mod lazy;
mod limits;
mod memory;
mod platform_apis;
mod shares;
mod streaming;
mod streams;
mod wasm;
mod web;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use corral::{
    Backend, InvocationStats, InvokeContext, KvError, Limits, Program, QuickJsBackend,
    SandboxError, TenantId, TenantKv, TenantLog,
};
use parking_lot::Mutex;

/// An in-memory [`TenantKv`], keyed by tenant then key.
#[derive(Debug, Default)]
pub(crate) struct MemKv {
    data: Mutex<BTreeMap<(String, String), Bytes>>,
}

impl TenantKv for MemKv {
    fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, KvError> {
        Ok(self
            .data
            .lock()
            .get(&(tenant.to_string(), key.to_owned()))
            .cloned())
    }
    fn put(&self, tenant: &TenantId, key: &str, value: &[u8]) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::InvalidKey("empty".into()));
        }
        if value.len() > 1024 {
            return Err(KvError::QuotaExceeded { limit: 1024 });
        }
        self.data.lock().insert(
            (tenant.to_string(), key.to_owned()),
            Bytes::copy_from_slice(value),
        );
        Ok(())
    }
    fn delete(&self, tenant: &TenantId, key: &str) -> Result<bool, KvError> {
        Ok(self
            .data
            .lock()
            .remove(&(tenant.to_string(), key.to_owned()))
            .is_some())
    }
    fn list(&self, tenant: &TenantId, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
        Ok(self
            .data
            .lock()
            .keys()
            .filter(|(t, k)| t == tenant.as_str() && k.starts_with(prefix))
            .take(limit)
            .map(|(_, k)| k.clone())
            .collect())
    }
}

/// A deployed-and-loaded JS tenant plus its invoke context.
pub(crate) struct Tenant {
    pub(crate) program: Arc<dyn Program>,
    pub(crate) cx: InvokeContext,
}

impl Tenant {
    pub(crate) fn new(name: &str, source: &str, limits: Limits) -> Self {
        Self::try_new(name, source, limits).expect("deploys")
    }

    pub(crate) fn try_new(name: &str, source: &str, limits: Limits) -> Result<Self, SandboxError> {
        let backend = QuickJsBackend::new();
        let artifact = backend.precompile(source.as_bytes(), &limits)?;
        let program = backend.load(&artifact, &limits)?;
        let log = Arc::new(TenantLog::new(limits.max_log_bytes));
        let cx = InvokeContext::new(name.parse().unwrap(), Arc::new(limits), log);
        Ok(Self { program, cx })
    }

    pub(crate) fn with_kv(mut self, kv: Arc<dyn TenantKv>) -> Self {
        self.cx = self.cx.with_kv(kv);
        self
    }

    pub(crate) fn with_runtime_slots(mut self, slots: corral::limits_layers::RuntimeSlots) -> Self {
        self.cx = self.cx.with_runtime_slots(slots);
        self
    }

    pub(crate) async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, SandboxError> {
        let resp = self
            .program
            .clone()
            .invoke(self.cx.clone(), request)
            .await?;
        corral::Body::collect_response(resp).await
    }

    /// Sends a GET and returns the response with its body as it comes.
    pub(crate) async fn open(
        &self,
        path: &str,
    ) -> Result<http::Response<corral::Body>, SandboxError> {
        self.program
            .clone()
            .invoke(self.cx.clone(), get(path))
            .await
    }

    pub(crate) async fn get(&self, path: &str) -> Result<http::Response<Bytes>, SandboxError> {
        self.send(get(path)).await
    }

    pub(crate) async fn text(&self, path: &str) -> String {
        let resp = self.get(path).await.expect("request succeeds");
        String::from_utf8(resp.into_body().to_vec()).unwrap()
    }
}

pub(crate) fn get(path: &str) -> http::Request<Bytes> {
    http::Request::get(path)
        .header("host", "app.example")
        .body(Bytes::new())
        .unwrap()
}

pub(crate) fn stats(resp: &http::Response<Bytes>) -> InvocationStats {
    *resp
        .extensions()
        .get::<InvocationStats>()
        .expect("stats in extensions")
}
