//! The engine-neutral interface every backend (WebAssembly, JavaScript, V8)
//! implements, so limits, metering, storage, parking and the server apply to
//! all of them unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_limits::{RuntimeSlots, TenantId};

use crate::{Body, Limits, SandboxError, TenantLog};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What kind of code a tenant runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Kind {
    /// A WASI preview-1 command module speaking WAGI (CGI over stdio).
    Wasm,
    /// A Workers-style ES module (`export default { fetch }`).
    Js,
    /// A WebAssembly component serving `wasi:http/proxy` (what Spin and
    /// `wasmtime serve` run).
    Component,
}

impl Kind {
    /// The name used in APIs and on disk: `"wasm"`, `"js"` or `"component"`.
    ///
    /// ```
    /// assert_eq!(corral::Kind::Js.as_str(), "js");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Wasm => "wasm",
            Kind::Js => "js",
            Kind::Component => "component",
        }
    }

    /// Which WebAssembly kind `bytes` hold, from the binary's header: a
    /// component (`\0asm`, then version `0x0d` and layer 1), else a core
    /// module (WAGI). WebAssembly text starting with `(component` is a
    /// component too. The header decides, not the upload's content type,
    /// because both are `application/wasm`.
    ///
    /// ```
    /// use corral::Kind;
    /// assert_eq!(Kind::of_wasm(b"\0asm\x0d\0\x01\0"), Kind::Component);
    /// assert_eq!(Kind::of_wasm(b"\0asm\x01\0\0\0"), Kind::Wasm);
    /// assert_eq!(Kind::of_wasm(b"  (component)"), Kind::Component);
    /// assert_eq!(Kind::of_wasm(b"(module)"), Kind::Wasm);
    /// ```
    pub fn of_wasm(bytes: &[u8]) -> Kind {
        if bytes.len() >= 8 && bytes.starts_with(b"\0asm") {
            // Bytes 4..6 are the version, 6..8 the layer (0 module, 1 component).
            return if bytes[6..8] == [1, 0] {
                Kind::Component
            } else {
                Kind::Wasm
            };
        }
        let text = bytes.trim_ascii_start();
        if text.starts_with(b"(component") {
            Kind::Component
        } else {
            Kind::Wasm
        }
    }
}

/// The figures of one invocation. The sandbox puts them in the response's
/// extensions, where metering reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvocationStats {
    /// Fuel consumed (WebAssembly instructions; JavaScript interrupt ticks).
    pub fuel_consumed: u64,
    /// CPU time the invocation's guest work took on the host's threads
    /// (both engines; a cold start excluded, like the wall time).
    pub cpu_time: Duration,
    /// Wall time of the invocation, excluding any cold start.
    pub wall_time: Duration,
    /// Highest memory the instance held, in bytes.
    pub peak_memory: u64,
    /// Whether this invocation had to wake the tenant from parked.
    pub cold_start: bool,
}

/// Per-tenant key-value storage offered to guests (JavaScript `env.KV`,
/// `wasi:keyvalue/store` for components).
///
/// Implemented over `corral-storage`'s tenant KV; the implementation meters
/// bytes and enforces the tenant's storage quota.
pub trait TenantKv: Send + Sync + std::fmt::Debug + 'static {
    /// The value under `key`, if any.
    fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, KvError>;
    /// Stores `value` under `key`.
    fn put(&self, tenant: &TenantId, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Deletes `key`; `true` when it existed.
    fn delete(&self, tenant: &TenantId, key: &str) -> Result<bool, KvError>;
    /// Up to `limit` keys starting with `prefix`, in order.
    fn list(&self, tenant: &TenantId, prefix: &str, limit: usize) -> Result<Vec<String>, KvError>;
}

/// A failed [`TenantKv`] operation, as a guest sees it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The key is empty, too long, or holds forbidden characters.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The write would take the tenant past its storage quota.
    #[error("storage quota of {limit} bytes exceeded")]
    QuotaExceeded {
        /// The quota in bytes.
        limit: u64,
    },
    /// The value is larger than the store takes in one entry.
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The value's length in bytes.
        len: u64,
        /// The most one value may hold.
        max: u64,
    },
    /// The stored value failed its checksum and was not returned.
    #[error("stored value for {key} failed its integrity check")]
    Integrity {
        /// The key.
        key: String,
    },
    /// Anything else the store reported.
    #[error("storage error: {0}")]
    Other(String),
}

impl KvError {
    /// The stable machine-readable code, as the platform's JSON errors
    /// spell it: `"invalid_key"`, `"storage_quota_exceeded"`,
    /// `"value_too_large"`, `"integrity_error"` or `"storage_error"`.
    /// WebAssembly components get it at the start of the error's text.
    ///
    /// ```
    /// use corral::KvError;
    /// assert_eq!(KvError::QuotaExceeded { limit: 10 }.code(), "storage_quota_exceeded");
    /// assert_eq!(KvError::ValueTooLarge { len: 2, max: 1 }.code(), "value_too_large");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            KvError::InvalidKey(_) => "invalid_key",
            KvError::QuotaExceeded { .. } => "storage_quota_exceeded",
            KvError::ValueTooLarge { .. } => "value_too_large",
            KvError::Integrity { .. } => "integrity_error",
            KvError::Other(_) => "storage_error",
        }
    }
}

/// Everything a backend needs to run one request besides the request itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InvokeContext {
    /// The tenant being invoked.
    pub tenant: TenantId,
    /// Its limits.
    pub limits: Arc<Limits>,
    /// Its bounded log (guest stderr, `console.log`).
    pub log: Arc<TenantLog>,
    /// Its key-value store, if the platform has one.
    pub kv: Option<Arc<dyn TenantKv>>,
    /// The host's runtime slots, if the platform bounds them. A request runs
    /// inside the slot its [`RuntimeSlotsLayer`](corral_limits::RuntimeSlotsLayer)
    /// took, and so do the steps of a streamed body while that request holds
    /// it. A JavaScript event stream's request gives its slot back at the head
    /// (the [`TenantStreamsLayer`](corral_limits::TenantStreamsLayer) marks it
    /// [`Detached`](corral_limits::Detached)), so each of its later steps takes
    /// one from here: streams never run more guest code at once than the host
    /// budget allows. (A WebAssembly event stream is its request's own run,
    /// marked [`Attached`](corral_limits::Attached): it keeps that slot.)
    pub runtime_slots: Option<RuntimeSlots>,
}

impl InvokeContext {
    /// A context with no KV store.
    pub fn new(tenant: TenantId, limits: Arc<Limits>, log: Arc<TenantLog>) -> Self {
        Self {
            tenant,
            limits,
            log,
            kv: None,
            runtime_slots: None,
        }
    }

    /// Attaches a KV store.
    pub fn with_kv(mut self, kv: Arc<dyn TenantKv>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// Attaches the host's runtime slots (see [`runtime_slots`](Self::runtime_slots)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use corral::limits_layers::RuntimeSlots;
    /// use corral::{InvokeContext, Limits, TenantLog};
    ///
    /// let slots = RuntimeSlots::new(4);
    /// let cx = InvokeContext::new("app".parse().unwrap(), Arc::new(Limits::default()),
    ///     Arc::new(TenantLog::new(1024)))
    ///     .with_runtime_slots(slots.clone());
    /// assert_eq!(cx.runtime_slots.unwrap().size(), 4);
    /// ```
    pub fn with_runtime_slots(mut self, slots: RuntimeSlots) -> Self {
        self.runtime_slots = Some(slots);
        self
    }
}

/// An engine that turns uploaded code into persisted artifacts and loads them.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// What this backend runs.
    fn kind(&self) -> Kind;

    /// Validates and compiles `source` (deploy time), returning the artifact to
    /// persist: precompiled machine code, bytecode, … Errors are
    /// [`SandboxError::InvalidModule`] naming the reason.
    fn precompile(&self, source: &[u8], limits: &Limits) -> Result<Vec<u8>, SandboxError>;

    /// Loads a persisted artifact into a warm, invocable program (a cold start).
    /// Must not recompile from source.
    fn load(&self, artifact: &[u8], limits: &Limits) -> Result<Arc<dyn Program>, SandboxError>;
}

/// A warm tenant program, ready to serve requests. Dropping it frees its memory
/// (parking).
pub trait Program: Send + Sync + std::fmt::Debug + 'static {
    /// Runs one request under `cx.limits`. The response carries
    /// [`InvocationStats`] (of the run up to the response's head) in its
    /// extensions. Its [`Body`] is whole, or streamed when the guest is
    /// still producing it; then the extensions also hold a
    /// [`StreamFigures`](crate::metering::StreamFigures) that the backend
    /// reports each later step of work to, and dropping the body cancels
    /// the guest's stream.
    fn invoke(
        self: Arc<Self>,
        cx: InvokeContext,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, SandboxError>>;
}
