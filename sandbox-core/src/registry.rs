//! The tenant registry: deploy (precompile to an artifact on disk), replace
//! atomically, invoke, park idle tenants and wake them from their artifact.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use corral::{EngineConfig, Kind, Limits, Registry, SandboxError, TenantState};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let registry = Registry::builder(dir.path())
//!     .engine_config(EngineConfig::default().instances(4))
//!     .open()
//!     .unwrap();
//! let hello = br#"(module
//!   (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
//!   (memory (export "memory") 1)
//!   (data (i32.const 16) "Content-Type: text/plain\n\nhi")
//!   (func (export "_start")
//!     (i32.store (i32.const 0) (i32.const 16))
//!     (i32.store (i32.const 4) (i32.const 28))
//!     (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
//! let id = "hello".parse().unwrap();
//! let limits = Limits::builder().idle_timeout(Duration::from_millis(1)).build();
//! registry.deploy(&id, Kind::Wasm, hello, limits).unwrap();
//! // A deploy leaves the tenant parked; the first request wakes it.
//! assert_eq!(registry.status(&id).unwrap().state, TenantState::Parked);
//! let resp = registry.invoke(&id, http::Request::new(Bytes::new())).await.unwrap();
//! assert_eq!(resp.into_body().to_bytes().await.unwrap(), "hi");
//!
//! // Idle tenants are parked, and wake on the next request (a cold start).
//! std::thread::sleep(Duration::from_millis(5));
//! assert_eq!(registry.park_idle(), 1);
//! assert_eq!(registry.status(&id).unwrap().state, TenantState::Parked);
//! registry.invoke(&id, http::Request::new(Bytes::new())).await.unwrap();
//! assert_eq!(registry.stats().cold_starts, 2);
//!
//! let other = "nobody".parse().unwrap();
//! let err = registry.invoke(&other, http::Request::new(Bytes::new())).await.unwrap_err();
//! assert!(matches!(err, SandboxError::TenantNotFound { .. }));
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral_limits::{RuntimeSlots, TenantContext, TenantId};
use parking_lot::{Mutex, RwLock};

use crate::artifact;
use crate::{
    Backend, Body, EngineConfig, InvocationStats, InvokeContext, Kind, KvError, Limits, Program,
    SandboxError, TenantKv, TenantLog, WasmBackend, WasmEngine,
};

const ARTIFACT_EXT: &str = "art";

/// Whether a tenant's program is in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantState {
    /// Loaded and ready: requests run without a cold start.
    Warm,
    /// Only the artifact on disk; the next request cold-starts it.
    Parked,
}

/// A tenant's current state, from [`Registry::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantStatus {
    /// What the tenant runs.
    pub kind: Kind,
    /// Warm or parked.
    pub state: TenantState,
    /// Requests running right now.
    pub in_flight: usize,
    /// Streamed responses still open (each keeps the tenant warm).
    pub streams: usize,
    /// Time since the last request or stream ended (zero while one runs).
    pub idle_for: Duration,
    /// Cold starts of this tenant since the registry opened.
    pub cold_starts: u64,
    /// Size of the artifact file in bytes.
    pub artifact_bytes: u64,
    /// CRC32 of the artifact file (verified on every load).
    pub crc32: u32,
    /// The tenant's limits.
    pub limits: Limits,
}

/// What a deploy produced, from [`Registry::deploy`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeployInfo {
    /// The tenant.
    pub tenant: TenantId,
    /// What it runs.
    pub kind: Kind,
    /// Size of the uploaded source in bytes.
    pub source_bytes: u64,
    /// Size of the artifact file written, in bytes.
    pub bytes: u64,
    /// CRC32 of the artifact file.
    pub crc32: u32,
    /// Time spent validating and compiling.
    pub compile_time: Duration,
    /// Whether a previous version was replaced.
    pub replaced: bool,
}

/// Registry-wide counters, from [`Registry::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryStats {
    /// Tenants registered.
    pub tenants: usize,
    /// Tenants currently warm.
    pub warm: usize,
    /// Successful deploys.
    pub deploys: u64,
    /// Compilations from source (deploys only: restarts and wakes never compile).
    pub compiles: u64,
    /// Cold starts (wakes from parked).
    pub cold_starts: u64,
    /// Total time spent in cold starts.
    pub cold_start_time_total: Duration,
    /// Tenants parked.
    pub parks: u64,
    /// Invocations that returned a response.
    pub invocations: u64,
    /// Invocations that returned an error.
    pub failures: u64,
    /// Artifact files skipped at [`RegistryBuilder::open`] because they failed
    /// their checksum.
    pub corrupt_artifacts: u64,
}

/// Builds a [`Registry`]; see each setter for its default.
#[must_use]
pub struct RegistryBuilder {
    data_dir: PathBuf,
    engine_config: EngineConfig,
    engine: Option<WasmEngine>,
    backends: Vec<Arc<dyn Backend>>,
    kv: Option<Arc<dyn TenantKv>>,
    runtime_slots: Option<RuntimeSlots>,
    sweep: Option<Duration>,
}

impl std::fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("data_dir", &self.data_dir)
            .field("engine_config", &self.engine_config)
            .field("backends", &self.backends)
            .field("sweep", &self.sweep)
            .finish_non_exhaustive()
    }
}

impl RegistryBuilder {
    /// The engine configuration, used unless [`RegistryBuilder::engine`] is
    /// given. Default: [`EngineConfig::default`].
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine_config = config;
        self
    }

    /// Shares an existing engine (one per process is best). Default: a new
    /// engine from [`RegistryBuilder::engine_config`].
    pub fn engine(mut self, engine: WasmEngine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Registers a backend for its [`Kind`] (the JavaScript backend, for
    /// example). Default: only WebAssembly, always present.
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backends.push(backend);
        self
    }

    /// A key-value store handed to every invocation. Default: none.
    pub fn kv(mut self, kv: Arc<dyn TenantKv>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// The host's runtime slots, handed to every invocation so that each step
    /// of an event stream (guest code run after the response head) takes a
    /// slot, as requests do in the
    /// [`RuntimeSlotsLayer`](corral_limits::RuntimeSlotsLayer) in front.
    /// Give the same slots as that layer, and put a
    /// [`TenantStreamsLayer`](corral_limits::TenantStreamsLayer) inside it,
    /// which hands an event stream's request slot back at the head; without
    /// it the request keeps its slot for as long as the stream is open, and
    /// its steps would wait for a second one. [`Platform`](crate::platform::Platform)
    /// wires both. A request whose [`TenantContext`] names a `dedicated` tier
    /// gets no slots, as that layer lets it by. Default: none (event stream
    /// steps are not bounded host-wide).
    ///
    /// ```
    /// use corral::Registry;
    /// use corral::limits_layers::{RuntimeSlots, RuntimeSlotsLayer};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let slots = RuntimeSlots::new(8);
    /// // The same slots in the layer in front and in the registry behind it.
    /// let _layer = RuntimeSlotsLayer::new(slots.clone());
    /// let registry = Registry::builder(dir.path())
    ///     .runtime_slots(slots)
    ///     .park_sweep_interval(None)
    ///     .open()
    ///     .unwrap();
    /// # drop(registry);
    /// ```
    pub fn runtime_slots(mut self, slots: RuntimeSlots) -> Self {
        self.runtime_slots = Some(slots);
        self
    }

    /// How often one background task parks idle tenants, or `None` for no
    /// task (call [`Registry::park_idle`] yourself). The task starts only if
    /// [`RegistryBuilder::open`] runs inside a tokio runtime. Default: 1 s.
    pub fn park_sweep_interval(mut self, every: Option<Duration>) -> Self {
        self.sweep = every;
        self
    }

    /// Opens the registry: creates `data_dir/artifacts/`, and re-registers
    /// (parked, without compiling) every tenant whose artifact is on disk.
    pub fn open(self) -> Result<Registry, SandboxError> {
        let engine = match self.engine {
            Some(e) => e,
            None => WasmEngine::new(self.engine_config)?,
        };
        let mut backends: HashMap<Kind, Arc<dyn Backend>> = HashMap::new();
        #[cfg(feature = "component")]
        backends.insert(
            Kind::Component,
            Arc::new(crate::wasm::ComponentBackend::new(engine.clone())?),
        );
        backends.insert(Kind::Wasm, Arc::new(WasmBackend::new(engine)?));
        #[cfg(feature = "js")]
        backends.insert(Kind::Js, Arc::new(crate::QuickJsBackend::new()));
        for b in self.backends {
            backends.insert(b.kind(), b);
        }
        let artifacts = self.data_dir.join("artifacts");
        std::fs::create_dir_all(&artifacts)
            .map_err(|e| SandboxError::internal(format!("creating {}", artifacts.display()), e))?;
        let inner = Arc::new(Inner {
            artifacts,
            backends,
            kv: self.kv,
            runtime_slots: self.runtime_slots,
            tenants: RwLock::new(HashMap::new()),
            deploy_lock: Mutex::new(()),
            epoch: Instant::now(),
            next_version: AtomicU64::new(1),
            counters: Counters::default(),
            sweeper: Mutex::new(None),
            limits: Mutex::default(),
        });
        inner.restore()?;
        if let (Some(every), Ok(rt)) = (self.sweep, tokio::runtime::Handle::try_current()) {
            let weak = Arc::downgrade(&inner);
            let task = rt.spawn(sweep(weak, every));
            *inner.sweeper.lock() = Some(task);
        }
        Ok(Registry { inner })
    }
}

async fn sweep(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match inner.upgrade() {
            Some(inner) => {
                inner.park_idle();
            }
            None => return,
        }
    }
}

/// The tenant registry. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("artifacts", &self.inner.artifacts)
            .field("tenants", &self.inner.tenants.read().len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Counters {
    deploys: AtomicU64,
    compiles: AtomicU64,
    compile_cpu_nanos: AtomicU64,
    cold_starts: AtomicU64,
    cold_start_nanos: AtomicU64,
    parks: AtomicU64,
    invocations: AtomicU64,
    failures: AtomicU64,
    corrupt: AtomicU64,
}

struct Inner {
    artifacts: PathBuf,
    backends: HashMap<Kind, Arc<dyn Backend>>,
    kv: Option<Arc<dyn TenantKv>>,
    runtime_slots: Option<RuntimeSlots>,
    tenants: RwLock<HashMap<TenantId, Arc<Tenant>>>,
    /// Serializes artifact writes and version swaps.
    deploy_lock: Mutex<()>,
    epoch: Instant,
    next_version: AtomicU64,
    counters: Counters,
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// One `Limits` per distinct value, shared by the versions deployed
    /// with it (apps on one tier share their tier's), instead of one per app.
    limits: Mutex<Interned>,
}

/// The distinct [`Limits`] of live versions.
#[derive(Debug, Default)]
struct Interned {
    set: HashSet<Arc<Limits>>,
    /// Entries after the last prune: the next prune waits until there are
    /// twice as many, so interning stays O(1) amortised.
    pruned_at: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.sweeper.get_mut().take() {
            task.abort();
        }
    }
}

/// A deployed tenant, resolved once ([`Registry::handle`]): cheap to clone
/// (a name and a reference count), usable until the tenant is removed.
#[derive(Clone)]
pub struct AppHandle {
    id: TenantId,
    t: Arc<Tenant>,
}

impl std::fmt::Debug for AppHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHandle")
            .field("tenant", &self.id)
            .finish_non_exhaustive()
    }
}

impl AppHandle {
    /// The tenant.
    pub fn id(&self) -> &TenantId {
        &self.id
    }
}

/// A deployed tenant's record. Parked, it holds no engine state, and what
/// only a running app needs (its log) is made on first use: ten thousand
/// parked apps are ten thousand of these (BENCHMARKS.md, "Parked apps").
struct Tenant {
    /// Made on the first request (or the first read of the log).
    log: OnceLock<Arc<TenantLog>>,
    current: RwLock<Arc<Version>>,
    cold_starts: AtomicU64,
    /// Set when the tenant is removed: its open streams end, its requests'
    /// KV calls are refused.
    removed: Arc<Removed>,
    /// The registry's KV as this deployment sees it ([`LiveKv`]).
    kv: Option<Arc<dyn TenantKv>>,
}

/// Whether a tenant was removed, and a wake-up for those waiting for it: a
/// flag and one `Notify` (a `watch` channel carries eight, some 350 bytes
/// per parked app).
#[derive(Debug, Default)]
struct Removed {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Removed {
    fn get(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once the tenant is removed.
    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read: a `set` in between wakes it.
            notified.as_mut().enable();
            if self.get() {
                return;
            }
            notified.await;
        }
    }
}

/// One deployed version of a tenant. Requests hold it while they run, so a
/// replaced version lives until its last request ends.
struct Version {
    id: u64,
    kind: Kind,
    limits: Arc<Limits>,
    crc32: u32,
    bytes: u64,
    warm: Mutex<Option<Arc<dyn Program>>>,
    /// Held while loading, so simultaneous first requests load once.
    loading: tokio::sync::Mutex<()>,
    in_flight: AtomicUsize,
    /// Streamed bodies still open.
    streams: AtomicUsize,
    /// Nanoseconds since the registry's epoch when the last request ended.
    last_used: AtomicU64,
}

impl Inner {
    /// The shared `Arc` of `limits`' value. Values no version holds any more
    /// are dropped as the set doubles, so an embedder giving every tenant
    /// limits of its own does not grow it past twice the live ones.
    fn intern(&self, limits: Limits) -> Arc<Limits> {
        let mut interned = self.limits.lock();
        if let Some(shared) = interned.set.get(&limits) {
            return shared.clone();
        }
        if interned.set.len() >= 2 * interned.pruned_at.max(16) {
            interned.set.retain(|l| Arc::strong_count(l) > 1);
            interned.pruned_at = interned.set.len();
        }
        let shared = Arc::new(limits);
        interned.set.insert(shared.clone());
        shared
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn path_for(&self, tenant: &TenantId) -> PathBuf {
        self.artifacts.join(format!("{tenant}.{ARTIFACT_EXT}"))
    }

    fn backend(&self, kind: Kind) -> Result<&Arc<dyn Backend>, SandboxError> {
        self.backends
            .get(&kind)
            .ok_or_else(|| SandboxError::InvalidModule {
                reason: format!("no backend for kind {:?} is registered", kind.as_str()),
            })
    }

    fn restore(&self) -> Result<(), SandboxError> {
        let dir = std::fs::read_dir(&self.artifacts).map_err(|e| {
            SandboxError::internal(format!("reading {}", self.artifacts.display()), e)
        })?;
        let mut tenants = self.tenants.write();
        for entry in dir.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A deploy interrupted before its rename.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(stem) = name.strip_suffix(&format!(".{ARTIFACT_EXT}")) else {
                continue;
            };
            let Ok(id) = TenantId::new(stem) else {
                continue;
            };
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "unreadable artifact skipped");
                    self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let file = match artifact::decode(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "corrupt artifact skipped");
                    self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let version = self.new_version(file.kind, file.limits, file.crc32, bytes.len() as u64);
            tenants.insert(id, Arc::new(Tenant::new(version, self.kv.as_ref())));
        }
        Ok(())
    }

    fn new_version(&self, kind: Kind, limits: Limits, crc32: u32, bytes: u64) -> Version {
        Version {
            id: self.next_version.fetch_add(1, Ordering::Relaxed),
            kind,
            limits: self.intern(limits),
            crc32,
            bytes,
            warm: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
            in_flight: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            last_used: AtomicU64::new(self.now_nanos()),
        }
    }

    fn park_idle(&self) -> usize {
        let now = self.now_nanos();
        let tenants: Vec<Arc<Tenant>> = self.tenants.read().values().cloned().collect();
        tenants
            .iter()
            .filter(|t| {
                let v = t.current.read().clone();
                let idle = now.saturating_sub(v.last_used.load(Ordering::SeqCst));
                u128::from(idle) >= v.limits.idle_timeout.as_nanos() && self.park_version(&v)
            })
            .count()
    }

    /// Drops `v`'s program if it is warm and nothing is in flight or
    /// streaming.
    fn park_version(&self, v: &Version) -> bool {
        let mut warm = v.warm.lock();
        if warm.is_none()
            || v.in_flight.load(Ordering::SeqCst) != 0
            || v.streams.load(Ordering::SeqCst) != 0
        {
            return false;
        }
        *warm = None;
        self.counters.parks.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The warm program of `v`, loading it from its artifact if parked.
    /// `true` when this call did the load (a cold start).
    async fn program(
        &self,
        id: &TenantId,
        tenant: &Tenant,
        v: &Version,
    ) -> Result<(Arc<dyn Program>, bool), SandboxError> {
        if let Some(p) = v.warm.lock().clone() {
            return Ok((p, false));
        }
        let _loading = v.loading.lock().await;
        if let Some(p) = v.warm.lock().clone() {
            return Ok((p, false));
        }
        let started = Instant::now();
        // Every version of a tenant is written to the same path; the CRC32
        // below tells whether the file is still this version's.
        let path = self.path_for(id);
        let bytes = read_artifact(&path)
            .await
            .map_err(|e| SandboxError::internal(format!("reading {}", path.display()), e))?;
        let file = artifact::decode(&bytes)?;
        if file.crc32 != v.crc32 {
            return Err(SandboxError::CorruptArtifact {
                reason: "artifact on disk belongs to another version".into(),
            });
        }
        let program = self.backend(v.kind)?.load(file.payload, &v.limits)?;
        *v.warm.lock() = Some(program.clone());
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters.cold_starts.fetch_add(1, Ordering::Relaxed);
        self.counters
            .cold_start_nanos
            .fetch_add(took, Ordering::Relaxed);
        tenant.cold_starts.fetch_add(1, Ordering::Relaxed);
        Ok((program, true))
    }
}

/// Reads an artifact file on tokio's blocking pool when there is a runtime.
///
/// Among thousands of apps an artifact is often no longer in the page cache:
/// read on a runtime worker, the disk's milliseconds stalled every request
/// queued behind it on that worker, warm ones included (BENCHMARKS.md,
/// "wagi30"). Only the request that wakes the app waits for the disk now.
async fn read_artifact(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::fs::read(path).await
    } else {
        std::fs::read(path)
    }
}

impl Tenant {
    /// The tenant's log, made on first use with the current version's cap.
    fn log(&self, v: &Version) -> &Arc<TenantLog> {
        self.log
            .get_or_init(|| Arc::new(TenantLog::new(v.limits.max_log_bytes)))
    }

    fn new(version: Version, kv: Option<&Arc<dyn TenantKv>>) -> Self {
        let removed = Arc::new(Removed::default());
        let kv = kv.map(|kv| {
            Arc::new(LiveKv {
                kv: kv.clone(),
                removed: removed.clone(),
            }) as Arc<dyn TenantKv>
        });
        Self {
            log: OnceLock::new(),
            current: RwLock::new(Arc::new(version)),
            cold_starts: AtomicU64::new(0),
            removed,
            kv,
        }
    }
}

/// The KV store as one deployment of a tenant sees it: refused once that
/// deployment is removed. A request still running after its app was removed
/// (and perhaps deployed again under the same name, which makes a new
/// deployment with a new `LiveKv`) can then neither read nor write the KV
/// of whatever holds the name now. Made once per deployment, not per request.
#[derive(Debug)]
struct LiveKv {
    kv: Arc<dyn TenantKv>,
    removed: Arc<Removed>,
}

impl LiveKv {
    fn live(&self) -> Result<(), KvError> {
        if self.removed.get() {
            return Err(KvError::Other("the app was removed".into()));
        }
        Ok(())
    }
}

impl TenantKv for LiveKv {
    fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, KvError> {
        self.live()?;
        self.kv.get(tenant, key)
    }
    fn put(&self, tenant: &TenantId, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.live()?;
        self.kv.put(tenant, key, value)
    }
    fn delete(&self, tenant: &TenantId, key: &str) -> Result<bool, KvError> {
        self.live()?;
        self.kv.delete(tenant, key)
    }
    fn list(&self, tenant: &TenantId, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
        self.live()?;
        self.kv.list(tenant, prefix, limit)
    }
}

/// Counts a request in flight on a version; on drop, records its end.
struct InFlight<'a> {
    v: Arc<Version>,
    inner: &'a Inner,
}

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner, v: &Arc<Version>) -> Self {
        v.in_flight.fetch_add(1, Ordering::SeqCst);
        Self {
            v: v.clone(),
            inner,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.v
            .last_used
            .store(self.inner.now_nanos(), Ordering::SeqCst);
        self.v.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a streamed body open on a version (so it is not parked); held by
/// the body and released when it ends or is dropped.
struct StreamOpen {
    v: Arc<Version>,
    epoch: Instant,
}

impl StreamOpen {
    fn enter(inner: &Inner, v: &Arc<Version>) -> Self {
        v.streams.fetch_add(1, Ordering::SeqCst);
        Self {
            v: v.clone(),
            epoch: inner.epoch,
        }
    }
}

impl Drop for StreamOpen {
    fn drop(&mut self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.v.last_used.store(now, Ordering::SeqCst);
        self.v.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Registry {
    /// A builder for a registry keeping its artifacts under `data_dir`.
    pub fn builder(data_dir: impl AsRef<Path>) -> RegistryBuilder {
        RegistryBuilder {
            data_dir: data_dir.as_ref().to_path_buf(),
            engine_config: EngineConfig::default(),
            engine: None,
            backends: Vec::new(),
            kv: None,
            runtime_slots: None,
            sweep: Some(Duration::from_secs(1)),
        }
    }

    /// Opens a registry with default settings; see [`RegistryBuilder::open`].
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Self, SandboxError> {
        Self::builder(data_dir).open()
    }

    /// Validates and precompiles `source`, writes its artifact atomically
    /// under `data_dir/artifacts/`, and swaps it in: requests already running
    /// finish on the old version, new requests get the new one. The tenant
    /// is parked afterwards: its program was loaded once, to check the
    /// artifact, and dropped, so deploying many apps holds no engine state
    /// for them; the first request is a cold start.
    pub fn deploy(
        &self,
        tenant: &TenantId,
        kind: Kind,
        source: &[u8],
        limits: Limits,
    ) -> Result<DeployInfo, SandboxError> {
        let inner = &*self.inner;
        let backend = inner.backend(kind)?;
        let started = Instant::now();
        let cpu_before = thread_cpu_time();
        let compiled = backend.precompile(source, &limits);
        let compile_time = started.elapsed();
        let program = compiled.and_then(|payload| {
            let program = backend.load(&payload, &limits)?;
            Ok((payload, program))
        });
        // Counted whether or not it compiled: a refused upload cost the CPU too.
        let cpu = thread_cpu_time().saturating_sub(cpu_before);
        inner.counters.compile_cpu_nanos.fetch_add(
            u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let (payload, program) = program?;
        inner.counters.compiles.fetch_add(1, Ordering::Relaxed);
        let (file, crc32) = artifact::encode(kind, &limits, &payload);
        let path = inner.path_for(tenant);
        let version = inner.new_version(kind, limits, crc32, file.len() as u64);
        // Loaded to check it, not kept: a deployed app is parked until asked.
        drop(program);
        let replaced = {
            let _serial = inner.deploy_lock.lock();
            artifact::write_atomic(&path, &file)
                .map_err(|e| SandboxError::internal(format!("writing {}", path.display()), e))?;
            let mut tenants = inner.tenants.write();
            match tenants.get(tenant) {
                Some(t) => {
                    *t.current.write() = Arc::new(version);
                    true
                }
                None => {
                    tenants.insert(
                        tenant.clone(),
                        Arc::new(Tenant::new(version, inner.kv.as_ref())),
                    );
                    false
                }
            }
        };
        inner.counters.deploys.fetch_add(1, Ordering::Relaxed);
        Ok(DeployInfo {
            tenant: tenant.clone(),
            kind,
            source_bytes: source.len() as u64,
            bytes: file.len() as u64,
            crc32,
            compile_time,
            replaced,
        })
    }

    /// CPU time spent compiling and checking deploys since the registry
    /// opened (compilation runs on the deploying thread alone, so this is
    /// all of it). The platform's CPU threshold takes it out of the host's
    /// CPU use: work the operator asked for is not tenant load.
    ///
    /// ```
    /// use corral::{Kind, Limits, Registry, TenantId};
    /// let dir = tempfile::tempdir().unwrap();
    /// let reg = Registry::open(dir.path()).unwrap();
    /// let js = b"export default { fetch() { return new Response('hi') } }";
    /// reg.deploy(&TenantId::new("a").unwrap(), Kind::Js, js, Limits::default()).unwrap();
    /// assert!(reg.compile_cpu() > std::time::Duration::ZERO);
    /// ```
    pub fn compile_cpu(&self) -> Duration {
        Duration::from_nanos(
            self.inner
                .counters
                .compile_cpu_nanos
                .load(Ordering::Relaxed),
        )
    }

    /// [`compile_cpu`](Self::compile_cpu) as a closure that does not keep
    /// the registry alive (for the host probe; zero once it is gone).
    pub(crate) fn compile_cpu_source(&self) -> impl Fn() -> Duration + Send + 'static {
        let inner = Arc::downgrade(&self.inner);
        move || {
            inner.upgrade().map_or(Duration::ZERO, |i| {
                Duration::from_nanos(i.counters.compile_cpu_nanos.load(Ordering::Relaxed))
            })
        }
    }

    /// Runs one request on `tenant`, waking it first if it is parked. The
    /// response carries [`InvocationStats`] in its extensions. A streamed
    /// [`Body`] keeps the tenant warm (never parked) until it ends or is
    /// dropped.
    pub async fn invoke(
        &self,
        tenant: &TenantId,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>, SandboxError> {
        let result = self.invoke_inner(tenant, request).await;
        let c = &self.inner.counters;
        match &result {
            Ok(_) => c.invocations.fetch_add(1, Ordering::Relaxed),
            Err(_) => c.failures.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    /// The handle of a deployed tenant, or `None`: resolve the tenant once
    /// and [`invoke_handle`](Self::invoke_handle) it without looking it up
    /// again. A handle follows redeploys (requests get the current version)
    /// and refuses requests once the tenant is removed.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use corral::{Kind, Limits, Registry, TenantId};
    /// let dir = tempfile::tempdir().unwrap();
    /// let reg = Registry::open(dir.path()).unwrap();
    /// let id = TenantId::new("hello").unwrap();
    /// assert!(reg.handle(&id).is_none());
    /// let js = b"export default { fetch() { return new Response('hi') } }";
    /// reg.deploy(&id, Kind::Js, js, Limits::default()).unwrap();
    /// let h = reg.handle(&id).unwrap();
    /// let req = http::Request::new(bytes::Bytes::new());
    /// assert_eq!(reg.invoke_handle(&h, req).await.unwrap().status(), 200);
    /// reg.remove(&id).unwrap();
    /// let req = http::Request::new(bytes::Bytes::new());
    /// assert!(reg.invoke_handle(&h, req).await.is_err());
    /// # });
    /// ```
    pub fn handle(&self, tenant: &TenantId) -> Option<AppHandle> {
        let t = self.inner.tenants.read().get(tenant).cloned()?;
        Some(AppHandle {
            id: tenant.clone(),
            t,
        })
    }

    /// [`invoke`](Self::invoke) on a tenant resolved with [`handle`](Self::handle).
    pub async fn invoke_handle(
        &self,
        handle: &AppHandle,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>, SandboxError> {
        let result = if handle.t.removed.get() {
            Err(SandboxError::TenantNotFound {
                tenant: handle.id.clone(),
            })
        } else {
            self.invoke_tenant(&handle.id, handle.t.clone(), request)
                .await
        };
        let c = &self.inner.counters;
        match &result {
            Ok(_) => c.invocations.fetch_add(1, Ordering::Relaxed),
            Err(_) => c.failures.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    async fn invoke_inner(
        &self,
        tenant: &TenantId,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>, SandboxError> {
        let t = self
            .inner
            .tenants
            .read()
            .get(tenant)
            .cloned()
            .ok_or_else(|| SandboxError::TenantNotFound {
                tenant: tenant.clone(),
            })?;
        self.invoke_tenant(tenant, t, request).await
    }

    async fn invoke_tenant(
        &self,
        tenant: &TenantId,
        t: Arc<Tenant>,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>, SandboxError> {
        let inner = &*self.inner;
        let mut v = t.current.read().clone();
        let mut guard = InFlight::enter(inner, &v);
        let loaded = match inner.program(tenant, &t, &v).await {
            Ok(p) => p,
            Err(e) => {
                // A deploy may have replaced the artifact under a parked old
                // version: retry once on the current version.
                let current = t.current.read().clone();
                if current.id == v.id {
                    return Err(e);
                }
                drop(guard);
                v = current;
                guard = InFlight::enter(inner, &v);
                inner.program(tenant, &t, &v).await?
            }
        };
        let (program, cold) = loaded;
        let mut cx = InvokeContext::new(tenant.clone(), v.limits.clone(), t.log(&v).clone());
        if let Some(kv) = &t.kv {
            cx = cx.with_kv(kv.clone());
        }
        // A dedicated tier runs outside the shared slots (as its requests do
        // in the RuntimeSlotsLayer).
        let dedicated = TenantContext::of(&request).is_ok_and(|c| c.tier().dedicated);
        if let (Some(slots), false) = (&inner.runtime_slots, dedicated) {
            cx = cx.with_runtime_slots(slots.clone());
        }
        let mut response = program.invoke(cx, request).await?;
        if response.body().is_stream() {
            let open = StreamOpen::enter(inner, &v);
            let removed = t.removed.clone();
            let removed = async move { removed.wait().await };
            response = response.map(|body| body.hold(open).until(removed));
        }
        drop(guard);
        if cold {
            let stats = response.extensions_mut().get_mut::<InvocationStats>();
            match stats {
                Some(s) => s.cold_start = true,
                None => {
                    response.extensions_mut().insert(InvocationStats {
                        cold_start: true,
                        ..InvocationStats::default()
                    });
                }
            }
        }
        Ok(response)
    }

    /// Removes `tenant` and its artifact; `false` if it was not deployed.
    /// Requests already running finish.
    pub fn remove(&self, tenant: &TenantId) -> Result<bool, SandboxError> {
        let inner = &*self.inner;
        let _serial = inner.deploy_lock.lock();
        let Some(t) = inner.tenants.write().remove(tenant) else {
            return Ok(false);
        };
        t.removed.set();
        let path = inner.path_for(tenant);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(SandboxError::internal(
                format!("removing {}", path.display()),
                e,
            )),
        }
    }

    /// The tenant's state, or `None` if it is not deployed.
    pub fn status(&self, tenant: &TenantId) -> Option<TenantStatus> {
        let t = self.inner.tenants.read().get(tenant).cloned()?;
        let v = t.current.read().clone();
        let in_flight = v.in_flight.load(Ordering::SeqCst);
        let streams = v.streams.load(Ordering::SeqCst);
        let idle = self
            .inner
            .now_nanos()
            .saturating_sub(v.last_used.load(Ordering::SeqCst));
        Some(TenantStatus {
            kind: v.kind,
            state: if v.warm.lock().is_some() {
                TenantState::Warm
            } else {
                TenantState::Parked
            },
            in_flight,
            streams,
            idle_for: if in_flight + streams > 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos(idle)
            },
            cold_starts: t.cold_starts.load(Ordering::Relaxed),
            artifact_bytes: v.bytes,
            crc32: v.crc32,
            limits: (*v.limits).clone(),
        })
    }

    /// Parks `tenant` now, whatever its idle time, unless a request is in
    /// flight. `Ok(true)` if it was warm and is now parked.
    pub fn park(&self, tenant: &TenantId) -> Result<bool, SandboxError> {
        let t = self
            .inner
            .tenants
            .read()
            .get(tenant)
            .cloned()
            .ok_or_else(|| SandboxError::TenantNotFound {
                tenant: tenant.clone(),
            })?;
        let v = t.current.read().clone();
        Ok(self.inner.park_version(&v))
    }

    /// Parks every warm tenant idle for at least its `idle_timeout` with
    /// nothing in flight; returns how many were parked. The background sweep
    /// task calls this; call it yourself when the sweep is off.
    pub fn park_idle(&self) -> usize {
        self.inner.park_idle()
    }

    /// The registered tenants, sorted.
    pub fn tenants(&self) -> Vec<TenantId> {
        let mut v: Vec<TenantId> = self.inner.tenants.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// The tenant's bounded log (guest stderr), or `None` if not deployed.
    pub fn log(&self, tenant: &TenantId) -> Option<Arc<TenantLog>> {
        let t = self.inner.tenants.read().get(tenant).cloned()?;
        let v = t.current.read().clone();
        Some(t.log(&v).clone())
    }

    /// Registry-wide counters.
    pub fn stats(&self) -> RegistryStats {
        let c = &self.inner.counters;
        let tenants = self.inner.tenants.read();
        let warm = tenants
            .values()
            .filter(|t| t.current.read().warm.lock().is_some())
            .count();
        RegistryStats {
            tenants: tenants.len(),
            warm,
            deploys: c.deploys.load(Ordering::Relaxed),
            compiles: c.compiles.load(Ordering::Relaxed),
            cold_starts: c.cold_starts.load(Ordering::Relaxed),
            cold_start_time_total: Duration::from_nanos(c.cold_start_nanos.load(Ordering::Relaxed)),
            parks: c.parks.load(Ordering::Relaxed),
            invocations: c.invocations.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            corrupt_artifacts: c.corrupt.load(Ordering::Relaxed),
        }
    }
}

/// CPU time of the calling thread (zero where the platform has no such clock).
fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        )
    }
    #[cfg(not(unix))]
    {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(reg: &Registry, id: &TenantId) -> Arc<Version> {
        reg.inner.tenants.read()[id].current.read().clone()
    }

    /// A parked app is its record alone: the program (a QuickJS runtime, a
    /// compiled WebAssembly module) is dropped, not kept by anything else,
    /// and what is left names the artifact on disk.
    #[tokio::test]
    async fn parking_drops_the_program_and_leaves_no_engine_state() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::builder(dir.path())
            .park_sweep_interval(None)
            .open()
            .unwrap();
        let js = TenantId::new("js").unwrap();
        let wasm = TenantId::new("wasm").unwrap();
        let hello_js = b"export default { fetch() { return new Response('hi') } }";
        let hello_wat = include_str!("../tests/fixtures/hello.wat");
        reg.deploy(&js, Kind::Js, hello_js, Limits::default())
            .unwrap();
        reg.deploy(&wasm, Kind::Wasm, hello_wat.as_bytes(), Limits::default())
            .unwrap();
        // The two share one `Limits`: a parked app's record is its own
        // counters and names, not a copy of its tier's settings.
        assert!(Arc::ptr_eq(
            &version(&reg, &js).limits,
            &version(&reg, &wasm).limits
        ));
        for id in [&js, &wasm] {
            let v = version(&reg, id);
            assert!(
                v.warm.lock().is_none(),
                "{id}: a deploy leaves the app parked"
            );
            let t = reg.inner.tenants.read()[id].clone();
            assert!(t.log.get().is_none(), "{id}: no log before a request");
            let resp = reg
                .invoke(id, http::Request::new(Bytes::new()))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{id}");
            drop(resp);
            let program = Arc::downgrade(v.warm.lock().as_ref().expect("warm after a request"));
            assert_eq!(reg.status(id).unwrap().state, TenantState::Warm);

            assert!(
                reg.park(id).unwrap(),
                "{id}: nothing in flight, so it parks"
            );
            assert!(
                program.upgrade().is_none(),
                "{id}: the program outlived parking"
            );
            assert!(v.warm.lock().is_none());
            assert_eq!(reg.status(id).unwrap().state, TenantState::Parked);
            assert_eq!(reg.stats().warm, 0);

            // And it wakes again from the artifact, without compiling.
            let compiles = reg.stats().compiles;
            let resp = reg
                .invoke(id, http::Request::new(Bytes::new()))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{id}");
            assert_eq!(
                reg.stats().compiles,
                compiles,
                "{id}: a wake never compiles"
            );
            drop(resp);
            assert!(reg.park(id).unwrap());
        }
    }
}
