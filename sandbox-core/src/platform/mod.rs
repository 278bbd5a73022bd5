//! [`Platform`]: every Corral piece assembled — tenant registry, limit layers,
//! SQLite storage, asset cache, metering, host probe — behind one handle that
//! the server, the Python bindings and embedders share.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
//! use corral::{Kind, TenantId, platform::{Bundle, Platform, PlatformConfig}};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut config = PlatformConfig::with_data_dir(dir.path());
//! # // A shared build box may sit over the 80% thresholds; this example is about the API.
//! # let never = corral::metering::Level::new(1.0, 1.0);
//! # (config.thresholds.ram, config.thresholds.disk, config.thresholds.cpu) = (never, never, never);
//! let platform = Platform::builder().config(config).build().unwrap();
//! let hello = wat::parse_str(r#"(module
//!     (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
//!     (memory (export "memory") 1)
//!     (data (i32.const 16) "Content-Type: text/plain\n\nhi")
//!     (func (export "_start")
//!         (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 28))
//!         (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#).unwrap();
//! let app = TenantId::new("hello").unwrap();
//! platform.deploy(&app, None, Bundle::code(Kind::Wasm, hello)).await.unwrap();
//! let resp = platform.invoke(&app, http::Request::new(bytes::Bytes::new())).await.unwrap();
//! assert_eq!(resp.status(), 200);
//! assert_eq!(&resp.body()[..], b"hi");
//! assert_eq!(platform.usage(&app).unwrap().usage.requests, 1);
//! platform.shutdown().await;
//! # }
//! ```

mod accounts;
mod archive;
mod bundle;
mod config;
mod error;
mod import;
mod kv;
mod service;
mod table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_limits::{MaintenanceSwitch, RuntimeSlots, TenantContext, TenantId, Tier};
use corral_metering::{
    Budget, CacheStats, ExpansionHook, Flusher, HookConfig, HostProbe, Journal, LiveGauges, Meter,
    Monitor, NodeStatus, Probe, SysinfoProbe, Thresholds, Usage,
};
use corral_storage::{AccountRecord, ByteCache, CacheConfig, Store, StoreConfig, TenantRecord};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tower::ServiceExt;

pub use accounts::AccountInfo;
pub use archive::MAX_ARCHIVE_BYTES;
pub use bundle::{Bundle, MAX_BUNDLE_FILES};
pub use config::{ConfigError, PlatformConfig, StorageSettings};
pub use error::PlatformError;
pub use import::ImportOptions;
pub use service::{PlatformBody, PlatformService};
pub use table::AppRef;

use crate::{EngineConfig, Kind, Limits, Registry, TenantState};

/// Name of the SQLite file inside the data dir.
pub const DB_FILE: &str = "corral.db";

/// The app meter's usage journals in the data dir: `usage-ID.journal`, one
/// per process (see [`PlatformConfig::usage_journal`]).
pub const USAGE_JOURNAL: &str = "usage";

/// The account meter's usage journals in the data dir: `account-usage-ID.journal`.
pub const ACCOUNT_USAGE_JOURNAL: &str = "account-usage";

/// What a deploy did, from [`Platform::deploy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeployInfo {
    /// The app.
    pub name: TenantId,
    /// Its tier.
    pub tier: String,
    /// What it runs: `"wasm"` or `"js"`.
    pub kind: Kind,
    /// Bundle bytes (code plus static files).
    pub bytes: u64,
    /// CRC32 of the code as stored.
    pub crc32: u32,
    /// Static files in the bundle.
    pub static_files: usize,
    /// Whether an earlier version was replaced.
    pub replaced: bool,
}

/// An app as listed by [`Platform::apps`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AppInfo {
    /// The app.
    pub name: TenantId,
    /// The account it belongs to (its tier is the account's).
    pub account: TenantId,
    /// Its tier.
    pub tier: String,
    /// What it runs.
    pub kind: Kind,
    /// Bundle bytes.
    pub bytes: u64,
    /// Bundle version (1 for the first deploy).
    pub version: u64,
    /// Created, Unix seconds.
    pub created: i64,
}

/// This month's usage beside the tier's quotas, from [`Platform::usage`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct UsageReport {
    /// The totals for the current month (UTC).
    pub usage: Usage,
    /// The tier's name.
    pub tier: String,
    /// Requests allowed this month (`None` = unlimited).
    pub requests_quota: Option<u64>,
    /// Storage bytes allowed (`None` = unlimited).
    pub storage_quota: Option<u64>,
}

/// A tenant's run state, from [`Platform::status`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AppStatus {
    /// `"warm"` or `"parked"`.
    pub state: &'static str,
    /// Requests running in the sandbox now.
    pub in_flight: usize,
    /// Streaming responses open now.
    pub streams: u64,
    /// Seconds since the last request ended.
    pub idle_secs: f64,
    /// Cold starts since the process started.
    pub cold_starts: u64,
}

/// The host as the platform sees it, from [`Platform::host`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HostInfo {
    /// The latest probe.
    pub probe: Probe,
    /// What the probe affords.
    pub budget: Budget,
    /// Host-wide execution slots now.
    pub runtime_slots: usize,
    /// Slots in use now.
    pub runtime_slots_in_use: usize,
    /// Asset cache figures.
    pub cache: corral_metering::CacheStats,
    /// The thresholds that fire the expansion hook.
    pub thresholds: Thresholds,
    /// `false` while a threshold is crossed.
    pub accepting_new_tenants: bool,
    /// Maintenance mode (tenants get 503).
    pub maintenance: bool,
    /// The database has grown too large for the RAM: maintenance is advised.
    pub maintenance_required: bool,
}

/// Result of [`Platform::scrub`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ScrubSummary {
    /// Blobs verified.
    pub verified: u64,
    /// Keys whose CRC32 did not match (now quarantined).
    pub corrupt: Vec<String>,
}

/// Builds a [`Platform`].
#[derive(Debug, Default)]
#[must_use]
pub struct PlatformBuilder {
    config: PlatformConfig,
    probe: Option<Probe>,
}

impl PlatformBuilder {
    /// Uses these settings. Default: [`PlatformConfig::default`].
    pub fn config(mut self, config: PlatformConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the data dir, keeping the other settings.
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.data_dir = dir.into();
        self
    }

    /// Sizes everything from this probe instead of reading the host (tests,
    /// or an operator pinning figures). Default: the real host via `sysinfo`.
    pub fn probe(mut self, probe: Probe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Opens the store and the registry, restores usage, re-registers every
    /// deployed tenant, and starts the background tasks (parking sweep, usage
    /// flush, host monitor). Must be called inside a tokio runtime.
    pub fn build(self) -> Result<Platform, PlatformError> {
        let config = self.config.with_presets();
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            PlatformError::Internal(format!("creating {}: {e}", config.data_dir.display()))
        })?;
        let db = config.data_dir.join(DB_FILE);
        let mut host = SysinfoProbe::new(&config.data_dir).with_db_file(&db);
        let probe = self.probe.unwrap_or_else(|| host.probe());
        let budget = derive_budget(&config, &probe)?;

        // `[storage] url` (PostgreSQL, shared by every node) or the SQLite file.
        let location = config
            .storage
            .url
            .as_deref()
            .map_or(db.clone(), std::path::PathBuf::from);
        let store = Store::open(
            &location,
            StoreConfig::default().sqlite_cache_bytes(budget.sqlite_cache_bytes),
        )?;
        // Before the meters restore: what a killed predecessor counted but
        // never flushed goes into the store first, so the restored totals
        // include it.
        let journal = |file: &str, sink: &dyn corral_metering::UsageSink| {
            if !config.usage_journal {
                return Ok(None);
            }
            let (journal, recovered) = Journal::open(&config.data_dir, file, sink)
                .map_err(|e| PlatformError::Internal(format!("usage journal: {e}")))?;
            for aside in &recovered.discarded {
                tracing::warn!(
                    "unreadable usage journal moved aside to {}",
                    aside.display()
                );
            }
            if !recovered.usage.is_empty() {
                tracing::info!(
                    "usage journal {file}: added {} requests of {} app-months a stopped process had not flushed",
                    recovered.requests(),
                    recovered.usage.len()
                );
            }
            Ok::<_, PlatformError>(Some(journal))
        };
        let mut builder = Meter::builder().export_top(config.metrics_top_tenants);
        if let Some(j) = journal(USAGE_JOURNAL, &store)? {
            builder = builder.journal(j);
        }
        let meter = builder.build();
        meter
            .restore(&store)
            .map_err(|e| PlatformError::Internal(format!("restoring usage: {e}")))?;
        // Keyed by account: all of an account's apps together, what its
        // monthly quota reads. Not exported to Prometheus (the app meter is).
        let mut builder = Meter::builder().export_top(0);
        if let Some(j) = journal(ACCOUNT_USAGE_JOURNAL, &store.account_usage_sink())? {
            builder = builder.journal(j);
        }
        let account_meter = builder.build();
        account_meter
            .restore(&store.account_usage_sink())
            .map_err(|e| PlatformError::Internal(format!("restoring account usage: {e}")))?;
        let contexts: table::Contexts = Arc::default();
        let kv = kv::StoreKv {
            store: store.clone(),
            contexts: contexts.clone(),
            meter: meter.clone(),
        };
        let slots = RuntimeSlots::new(
            config
                .runtime_slots
                .unwrap_or(budget.runtime_slots as usize),
        );
        let engine = EngineConfig::default().instances(budget.pool_instances.max(8));
        let registry = Registry::builder(&config.data_dir)
            .engine_config(engine)
            .kv(Arc::new(kv))
            .runtime_slots(slots.clone())
            .park_sweep_interval(Some(config.park_sweep_interval))
            .open()?;
        let cache = Arc::new(ByteCache::new(
            CacheConfig::new(config.cache_bytes.unwrap_or(budget.cache_bytes))
                .max_object_bytes(config.cache_max_object_bytes),
        ));
        let tiers = config
            .tiers
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
            .collect();

        let cache_for_monitor = cache.clone();
        // Deploys compile on the admin API's threads: the CPU threshold
        // measures tenant load, so the operator's own deploys never make the
        // node refuse apps.
        let host = host.with_operator_cpu(registry.compile_cpu_source());
        let mut monitor = Monitor::new(meter.clone(), host, config.thresholds)
            .map_err(|e| PlatformError::Internal(format!("thresholds: {e}")))?
            .with_cache(Arc::new(move || {
                let s = cache_for_monitor.stats();
                CacheStats::new(s.hits, s.misses, s.bytes, s.capacity)
            }));
        for target in [
            config.hook_url.clone().map(HookConfig::webhook),
            config
                .hook_command
                .clone()
                .map(|c| HookConfig::command(c, Vec::<String>::new())),
        ]
        .into_iter()
        .flatten()
        {
            let hook = ExpansionHook::start(target)
                .map_err(|e| PlatformError::Internal(format!("expansion hook: {e}")))?;
            monitor = monitor.with_hook(hook);
        }
        let node = monitor.status();
        let (gauges, monitor_task) = monitor.spawn(Duration::from_secs(1));
        let flusher = meter.spawn_flusher(Arc::new(store.clone()), config.usage_flush_interval);
        let account_flusher = account_meter.spawn_flusher(
            Arc::new(store.account_usage_sink()),
            config.usage_flush_interval,
        );

        let assets = corral_storage::AssetCacheLayer::new(store.clone(), cache.clone());
        let inner = Arc::new(Inner {
            tiers,
            store,
            apps: table::TenantTable::new(contexts, registry.clone(), cache.clone()),
            registry,
            meter,
            account_meter,
            slots,
            maintenance: MaintenanceSwitch::new(),
            assets,
            cache,
            node,
            last_probe: Mutex::new((probe, budget)),
            gauges,
            monitor_task: Mutex::new(Some(monitor_task)),
            flusher: Mutex::new(Some(flusher)),
            account_flusher: Mutex::new(Some(account_flusher)),
            synced: Mutex::new(std::collections::HashMap::new()),
            sync_task: Mutex::new(None),
            sync_lock: Mutex::new(()),
            config,
        });
        inner.restore_tenants()?;
        if let Some(every) = inner.config.app_sync_interval {
            // The first pass right away: it reloads what the artifacts on
            // disk may have missed while this node was down.
            let weak = Arc::downgrade(&inner);
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    let pass = tokio::task::spawn_blocking(move || inner.sync_apps()).await;
                    match pass {
                        Ok(Ok(s)) if s != AppSync::default() => {
                            tracing::info!(
                                added = s.added,
                                updated = s.updated,
                                removed = s.removed,
                                "apps synced from the store"
                            );
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!("app sync from the store failed: {e}"),
                        Err(e) => tracing::warn!("app sync task failed: {e}"),
                    }
                }
            });
            *inner.sync_task.lock() = Some(task);
        }
        Ok(Platform { inner })
    }
}

fn derive_budget(config: &PlatformConfig, probe: &Probe) -> Result<Budget, PlatformError> {
    Budget::from_probe(
        probe,
        config
            .os_overhead_bytes
            .unwrap_or(corral_metering::DEFAULT_OS_OVERHEAD),
        corral_metering::DEFAULT_SAFETY,
    )
    .map_err(|e| PlatformError::Internal(format!("host budget: {e}")))
}

/// Shared state behind every [`Platform`] clone and its services.
pub(crate) struct Inner {
    config: PlatformConfig,
    tiers: BTreeMap<String, Arc<Tier>>,
    store: Store,
    /// Every app's in-memory state; the only place it is made or dropped.
    apps: table::TenantTable,
    registry: Registry,
    meter: Meter,
    /// Keyed by account (all its apps together): the monthly quota's figures.
    account_meter: Meter,
    slots: RuntimeSlots,
    maintenance: MaintenanceSwitch,
    cache: Arc<ByteCache>,
    /// The asset layer, made once: it registers a bundle-change hook on the
    /// store, and every service built from this platform shares it.
    assets: corral_storage::AssetCacheLayer,
    node: NodeStatus,
    last_probe: Mutex<(Probe, Budget)>,
    gauges: watch::Receiver<LiveGauges>,
    monitor_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    flusher: Mutex<Option<Flusher>>,
    account_flusher: Mutex<Option<Flusher>>,
    /// With `app_sync_interval`: each app's bundle (version, code CRC32) as
    /// this node last loaded it, and the task that looks for changes.
    synced: Mutex<std::collections::HashMap<TenantId, SyncMarker>>,
    sync_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held while an app's store record and in-memory state change
    /// together (deploy, import, remove, a sync step), so a sync never
    /// sees one without the other.
    sync_lock: Mutex<()>,
}

impl Inner {
    fn tier(&self, name: &str) -> Result<Arc<Tier>, PlatformError> {
        self.tiers
            .get(name)
            .cloned()
            .ok_or_else(|| PlatformError::UnknownTier { tier: name.into() })
    }

    /// Loads every stored tenant's tier, and redeploys any whose artifact
    /// is missing from the registry (lost or failed its checksum).
    fn restore_tenants(&self) -> Result<(), PlatformError> {
        let known: std::collections::HashSet<TenantId> =
            self.registry.tenants().into_iter().collect();
        for rec in self.store.list_tenants()? {
            let tier = match self.tier(rec.tier.as_str()) {
                Ok(t) => t,
                Err(_) => {
                    tracing::warn!(tenant = %rec.id, tier = %rec.tier, "unknown tier; using the default");
                    self.tier(&self.config.default_tier)?
                }
            };
            if !known.contains(&rec.id) {
                if let Some(code) = self.store.bundle_code(&rec.id)? {
                    let kind = bundle::kind_of(rec.kind);
                    self.registry
                        .deploy(&rec.id, kind, &code.bytes, limits_for(&tier))?;
                    self.registry.park(&rec.id)?;
                    if self.config.app_sync_interval.is_some()
                        && let Some(b) = self.store.bundle_info(&rec.id)?
                    {
                        // Compiled from the store just now: current.
                        self.synced
                            .lock()
                            .insert(rec.id.clone(), (b.version, b.code_crc32, rec.tier.clone()));
                    }
                } else {
                    continue;
                }
            }
            let account = rec.account.clone().unwrap_or_else(|| rec.id.clone());
            self.apps.install(&rec.id, &account, tier);
        }
        Ok(())
    }
}

/// What a node last loaded of an app: its bundle's version and code
/// CRC32, and its tier (a tier change recompiles under the new limits).
type SyncMarker = (u64, u32, corral_limits::TierName);

/// What one [`Platform::sync_apps`] pass changed on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AppSync {
    /// Apps deployed through another node, now served here too.
    pub added: usize,
    /// Apps redeployed (new code) through another node, reloaded here.
    pub updated: usize,
    /// Apps removed through another node, forgotten here.
    pub removed: usize,
}

impl Inner {
    /// One pass of the app sync (see [`Platform::sync_apps`]).
    fn sync_apps(&self) -> Result<AppSync, PlatformError> {
        let tiers: std::collections::HashMap<TenantId, corral_limits::TierName> = self
            .store
            .list_tenants()?
            .into_iter()
            .map(|r| (r.id, r.tier))
            .collect();
        let versions = self.store.bundle_versions()?;
        let mut report = AppSync::default();
        let mut live = std::collections::HashSet::with_capacity(versions.len());
        for (id, version, crc) in versions {
            let Some(tier) = tiers.get(&id) else {
                // A bundle without its app: a deploy or remove in flight.
                continue;
            };
            live.insert(id.clone());
            // Loaded (or failed to load) at this marker already: nothing to do.
            if self.synced.lock().get(&id) == Some(&(version, crc, tier.clone())) {
                continue;
            }
            // One app's failure (a bundle this build cannot compile, a
            // store error) is logged and the pass goes on: it must not keep
            // every other app from syncing. Its marker is kept, so it is
            // tried again only when it changes.
            match self.sync_one(&id) {
                Ok(Some(true)) => report.updated += 1,
                Ok(Some(false)) => report.added += 1,
                Ok(None) => {}
                Err(e) => tracing::warn!(app = %id, "app sync: not loaded here: {e}"),
            }
        }
        let gone: Vec<TenantId> = self
            .registry
            .tenants()
            .into_iter()
            .filter(|id| !live.contains(id))
            .collect();
        for id in gone {
            let _g = self.sync_lock.lock();
            if self.store.tenant(&id)?.is_some() {
                continue;
            }
            self.synced.lock().remove(&id);
            if self.apps.forget(&id)? {
                report.removed += 1;
            }
        }
        Ok(report)
    }

    /// Loads or reloads one app from the store (a step of
    /// [`sync_apps`](Self::sync_apps)): `Some(true)` reloaded, `Some(false)`
    /// new here, `None` nothing to do after all.
    fn sync_one(&self, id: &TenantId) -> Result<Option<bool>, PlatformError> {
        let _g = self.sync_lock.lock();
        // Looked at again under the lock: a deploy, import or remove on
        // this node may have just changed it.
        let (Some(rec), Some(info)) = (self.store.tenant(id)?, self.store.bundle_info(id)?) else {
            return Ok(None);
        };
        let marker = (info.version, info.code_crc32, rec.tier.clone());
        if self.synced.lock().get(id) == Some(&marker) {
            return Ok(None);
        }
        // Whatever happens below, this version has been tried.
        self.synced.lock().insert(id.clone(), marker);
        let Some(code) = self.store.bundle_code(id)? else {
            return Ok(None);
        };
        let tier = self
            .tier(rec.tier.as_str())
            .or_else(|_| self.tier(&self.config.default_tier))?;
        self.registry.deploy(
            id,
            bundle::kind_of(rec.kind),
            &code.bytes,
            limits_for(&tier),
        )?;
        // Parked: the next request cold-starts the new code.
        self.registry.park(id)?;
        let account = rec.account.clone().unwrap_or_else(|| id.clone());
        let was_here = self.apps.contains(id);
        self.apps.install(id, &account, tier);
        // Its static files may have changed too: drop what is cached.
        self.store.notify_bundle_change(id);
        Ok(Some(was_here))
    }

    /// Records `name`'s bundle as loaded here (after a deploy or import on
    /// this node), so the sync does not load it a second time.
    fn note_synced(&self, name: &TenantId) -> Result<(), PlatformError> {
        if self.config.app_sync_interval.is_some() {
            match (self.store.bundle_info(name)?, self.store.tenant(name)?) {
                (Some(b), Some(rec)) => {
                    self.synced
                        .lock()
                        .insert(name.clone(), (b.version, b.code_crc32, rec.tier));
                }
                _ => {
                    self.synced.lock().remove(name);
                }
            }
        }
        Ok(())
    }
}

fn tier_name_of(name: &str) -> Result<corral_limits::TierName, PlatformError> {
    corral_limits::TierName::new(name).map_err(|_| PlatformError::UnknownTier { tier: name.into() })
}

/// The sandbox limits a tier gives each instance: the tier's memory split
/// across its compute shares, so all instances together never pass it (a
/// JavaScript app runs at most `compute_shares` runtimes, each within
/// `memory_bytes`).
///
/// ```
/// # use corral::platform::limits_for;
/// let l = limits_for(&corral::limits_layers::Tier::pro());
/// assert_eq!(l.memory_bytes, (256 << 20) / 2);
/// assert_eq!(l.compute_shares, 2);
/// assert_eq!(l.stream_fuel, 10_000_000_000);
/// ```
pub fn limits_for(tier: &Tier) -> Limits {
    Limits::builder()
        .fuel_per_request(tier.fuel_per_request)
        .memory_bytes(tier.instance_memory_bytes())
        .wall_clock(tier.wall_clock)
        .idle_timeout(tier.idle_timeout)
        .stream_fuel(tier.stream_fuel)
        .max_stream_duration(tier.max_stream_duration)
        .compute_shares(tier.compute_shares)
        .build()
}

/// The assembled platform. Cheap to clone; every clone is the same platform.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("data_dir", &self.inner.config.data_dir)
            .field("tenants", &self.inner.apps.len())
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// A builder with the embedded defaults.
    pub fn builder() -> PlatformBuilder {
        PlatformBuilder::default()
    }

    /// The settings in force.
    pub fn config(&self) -> &PlatformConfig {
        &self.inner.config
    }

    /// Tiers by name.
    pub fn tiers(&self) -> BTreeMap<String, Tier> {
        self.inner
            .tiers
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect()
    }

    /// Deploys (or atomically replaces) an app. `tier` `None` keeps the app's
    /// tier, or gives a new app the default tier. The code is validated and
    /// compiled before anything is stored; requests already running finish on
    /// the old version.
    pub async fn deploy(
        &self,
        name: &TenantId,
        tier: Option<&str>,
        bundle: Bundle,
    ) -> Result<DeployInfo, PlatformError> {
        self.deploy_off_thread(name, tier, bundle, true).await
    }

    /// [`deploy`](Self::deploy) for an app the node ships with itself (a
    /// server's demo app): deployed even while the host is over a threshold
    /// and [`HostInfo::accepting_new_tenants`] is false, which refuses new
    /// tenants' deploys with [`PlatformError::NotAcceptingTenants`]. Every
    /// other check (name, tier, bundle, compile) applies.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use corral::{Kind, TenantId, platform::{Bundle, Platform, PlatformConfig}};
    /// let dir = tempfile::tempdir().unwrap();
    /// let p = Platform::builder().config(PlatformConfig::with_data_dir(dir.path())).build().unwrap();
    /// let js = b"export default { fetch() { return new Response('hi'); } };".to_vec();
    /// let info = p.deploy_builtin(&TenantId::new("demo").unwrap(), None, Bundle::code(Kind::Js, js)).await.unwrap();
    /// assert_eq!(info.name.as_str(), "demo");
    /// # p.shutdown().await;
    /// # });
    /// ```
    pub async fn deploy_builtin(
        &self,
        name: &TenantId,
        tier: Option<&str>,
        bundle: Bundle,
    ) -> Result<DeployInfo, PlatformError> {
        self.deploy_off_thread(name, tier, bundle, false).await
    }

    /// Deploys (or replaces) an app in `account`, an account made with
    /// [`create_account`](Self::create_account): the app runs on the
    /// account's tier and shares its monthly requests, storage and
    /// `max_apps` (a new app past it: [`PlatformError::AppLimit`], 403
    /// `app_limit`). An app already in another account stays there
    /// ([`PlatformError::AccountTier`]); move it with
    /// [`move_app`](Self::move_app).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use corral::{Kind, TenantId, platform::{Bundle, Platform, PlatformConfig, PlatformError}};
    /// # let never = corral::metering::Level::new(1.0, 1.0);
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut config = PlatformConfig::with_data_dir(dir.path());
    /// # (config.thresholds.ram, config.thresholds.disk, config.thresholds.cpu) = (never, never, never);
    /// let p = Platform::builder().config(config).build().unwrap();
    /// let acme = TenantId::new("acme").unwrap();
    /// p.create_account(&acme, "free").await.unwrap(); // free: one app
    /// let js = || Bundle::code(Kind::Js, b"export default { fetch() { return new Response('hi') } }".to_vec());
    /// let info = p.deploy_in(&TenantId::new("blog").unwrap(), &acme, js()).await.unwrap();
    /// assert_eq!(info.tier, "free");
    /// let err = p.deploy_in(&TenantId::new("shop").unwrap(), &acme, js()).await.unwrap_err();
    /// assert!(matches!(err, PlatformError::AppLimit { max: 1, .. }));
    /// assert_eq!((err.status().as_u16(), err.code()), (403, "app_limit"));
    /// # p.shutdown().await;
    /// # });
    /// ```
    pub async fn deploy_in(
        &self,
        name: &TenantId,
        account: &TenantId,
        bundle: Bundle,
    ) -> Result<DeployInfo, PlatformError> {
        let this = self.clone();
        let (name, account) = (name.clone(), account.clone());
        blocking(move || this.deploy_blocking(&name, None, Some(&account), &bundle, true)).await
    }

    /// Validating and compiling blocks: run the deploy on the blocking pool.
    async fn deploy_off_thread(
        &self,
        name: &TenantId,
        tier: Option<&str>,
        bundle: Bundle,
        check_host: bool,
    ) -> Result<DeployInfo, PlatformError> {
        let this = self.clone();
        let name = name.clone();
        let tier = tier.map(str::to_owned);
        blocking(move || this.deploy_blocking(&name, tier.as_deref(), None, &bundle, check_host))
            .await
    }

    /// The largest bundle a deploy of `name` with these arguments may send
    /// (its tier's `max_bundle_bytes`), decided as the deploy decides the
    /// tier, so a frontend can cap the upload before reading it. Errors as
    /// the deploy would (unknown tier or account, `account_tier`).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use corral::{TenantId, platform::{Platform, PlatformConfig}};
    /// let dir = tempfile::tempdir().unwrap();
    /// let p = Platform::builder().config(PlatformConfig::with_data_dir(dir.path())).build().unwrap();
    /// let app = TenantId::new("new").unwrap();
    /// let pro = p.deploy_bundle_limit(&app, Some("pro"), None).unwrap();
    /// assert_eq!(pro, p.tiers()["pro"].max_bundle_bytes);
    /// assert!(p.deploy_bundle_limit(&app, None, Some(&TenantId::new("nobody").unwrap())).is_err());
    /// # p.shutdown().await;
    /// # });
    /// ```
    pub fn deploy_bundle_limit(
        &self,
        name: &TenantId,
        tier: Option<&str>,
        account: Option<&TenantId>,
    ) -> Result<u64, PlatformError> {
        let existing = self.inner.store.tenant(name)?;
        let (_, tier, _) = self.deploy_target(name, tier, account, existing.as_ref())?;
        Ok(self.inner.tier(&tier)?.max_bundle_bytes)
    }

    /// Which account an app deploys into and on which tier: the account
    /// named, else the app's current one, else an account of its own (of
    /// its name, made with the app). The tier is the account's; a `tier`
    /// given re-tiers an account only the app is in (or a new one) and is
    /// refused for an account shared with other apps.
    fn deploy_target(
        &self,
        name: &TenantId,
        tier: Option<&str>,
        account: Option<&TenantId>,
        existing: Option<&TenantRecord>,
    ) -> Result<(TenantId, String, bool), PlatformError> {
        let inner = &*self.inner;
        let current = existing.map(|r| r.account.clone().unwrap_or_else(|| r.id.clone()));
        let account = match (account, current) {
            (Some(a), Some(c)) if *a != c => {
                return Err(PlatformError::AccountTier { account: c });
            }
            (Some(a), _) => a.clone(),
            (None, Some(c)) => c,
            (None, None) => name.clone(),
        };
        let explicit = existing.is_none() && account != *name;
        let Some(rec) = inner.store.account(&account)? else {
            if explicit {
                return Err(PlatformError::AccountNotFound { account });
            }
            let tier = tier.map_or_else(|| inner.config.default_tier.clone(), str::to_owned);
            return Ok((account, tier, false));
        };
        match tier {
            Some(t) if t != rec.tier.as_str() => {
                let others = inner
                    .store
                    .account_apps(&account)?
                    .into_iter()
                    .any(|a| a != *name);
                if others {
                    return Err(PlatformError::AccountTier { account });
                }
                Ok((account, t.to_owned(), true))
            }
            _ => Ok((account, rec.tier.as_str().to_owned(), false)),
        }
    }

    fn deploy_blocking(
        &self,
        name: &TenantId,
        tier: Option<&str>,
        account: Option<&TenantId>,
        bundle: &Bundle,
        check_host: bool,
    ) -> Result<DeployInfo, PlatformError> {
        let inner = &*self.inner;
        let existing = inner.store.tenant(name)?;
        if check_host && existing.is_none() && !inner.node.accepting_new_tenants() {
            return Err(PlatformError::NotAcceptingTenants);
        }
        let (account, tier_name, retier) =
            self.deploy_target(name, tier, account, existing.as_ref())?;
        let tier = inner.tier(&tier_name)?;
        let size = bundle.size();
        if size > tier.max_bundle_bytes {
            return Err(PlatformError::BundleTooLarge {
                limit: tier.max_bundle_bytes,
                size,
            });
        }
        // Compile first: an invalid module changes nothing.
        let deployed =
            inner
                .registry
                .deploy(name, bundle.kind(), bundle.code_bytes(), limits_for(&tier))?;
        let typed_tier = tier_name_of(&tier_name)?;
        let record = TenantRecord::new(
            name.clone(),
            typed_tier.clone(),
            bundle::app_kind(bundle.kind()),
        )
        .with_storage_limit(tier.storage_bytes)
        .in_account(account.clone());
        let _sync = inner.sync_lock.lock();
        let stored = (|| {
            if retier {
                inner.store.set_account_tier(&account, &typed_tier)?;
            } else if existing.is_none() && inner.store.account(&account)?.is_none() {
                inner
                    .store
                    .create_account(&AccountRecord::new(account.clone(), typed_tier.clone()))?;
            }
            match &existing {
                None => inner.store.create_tenant_within(&record, tier.max_apps)?,
                Some(_) => inner.store.set_storage_limit(name, tier.storage_bytes)?,
            }
            inner.store.put_bundle(name, &bundle.to_stored())
        })();
        let info = match stored {
            Ok(info) => info,
            Err(e) => {
                if existing.is_none() {
                    let _ = inner.apps.forget(name);
                }
                return Err(e.into());
            }
        };
        inner.apps.install(name, &account, tier);
        inner.note_synced(name)?;
        Ok(DeployInfo {
            name: name.clone(),
            tier: tier_name,
            kind: bundle.kind(),
            bytes: size,
            crc32: crc32fast::hash(bundle.code_bytes()),
            static_files: bundle.static_files().len(),
            replaced: deployed.replaced || existing.is_some() || info.version > 1,
        })
    }

    /// The tower service running the whole per-tenant stack; see
    /// [`PlatformService`].
    pub fn service(&self) -> PlatformService {
        PlatformService::new(self.inner.clone())
    }

    /// Sends one request to `name` through the whole stack and collects the
    /// response. Its extensions carry the [`InvocationStats`](crate::InvocationStats) when the
    /// sandbox ran (not for an asset served from the cache).
    ///
    /// A `text/event-stream` is collected until the guest ends it, for at
    /// most the tier's wall clock (then [`SandboxError::Deadline`](crate::SandboxError::Deadline)); read
    /// streams as they come through [`service`](Self::service) instead.
    pub async fn invoke(
        &self,
        name: &TenantId,
        mut req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, PlatformError> {
        req.extensions_mut().insert(name.clone());
        let resp = self.service().oneshot(req).await?;
        if !corral_limits::is_event_stream(resp.headers()) {
            return service::collect(resp).await;
        }
        let wall = self
            .inner
            .apps
            .get(name)
            .map_or(crate::Limits::default().wall_clock, |c| c.tier().wall_clock);
        tokio::time::timeout(wall, service::collect(resp))
            .await
            .unwrap_or(Err(PlatformError::Sandbox(crate::SandboxError::Deadline {
                limit: wall,
            })))
    }

    /// Removes an app: its code, static files and KV from the store, and its
    /// context, limit state, program and cached files from memory. Its
    /// month's usage survives (in usage reports and the quota): deleting
    /// and redeploying an app does not give it a fresh month. `false` if it
    /// did not exist.
    pub fn remove(&self, name: &TenantId) -> Result<bool, PlatformError> {
        let inner = &*self.inner;
        let _sync = inner.sync_lock.lock();
        // Memory first: from here on new requests get 404.
        let in_registry = inner.apps.forget(name)?;
        let in_store = inner.store.delete_tenant(name)?;
        if in_store || in_registry {
            // Its KV is gone: the usage that survives says so. (Only if
            // it was metered: a new zero entry would keep a later import's
            // `keep_usage` from restoring the archive's month.)
            if let Some(t) = inner.meter.get(name) {
                t.set_storage_bytes(0);
            }
        }
        Ok(in_store || in_registry)
    }

    /// Moves an app to another tier; the code is recompiled under the new
    /// tier's limits from the stored bundle. An app's tier is its
    /// account's: this re-tiers an account the app is alone in, and is
    /// refused ([`PlatformError::AccountTier`], 409) for an account shared
    /// with other apps (use [`set_account_tier`](Self::set_account_tier)).
    pub async fn set_tier(&self, name: &TenantId, tier: &str) -> Result<AppInfo, PlatformError> {
        let rec = self
            .inner
            .store
            .tenant(name)?
            .ok_or_else(|| PlatformError::NotFound {
                tenant: name.clone(),
            })?;
        let account = rec.account.clone().unwrap_or_else(|| name.clone());
        if self
            .inner
            .store
            .account_apps(&account)?
            .iter()
            .any(|a| a != name)
        {
            return Err(PlatformError::AccountTier { account });
        }
        self.set_account_tier(&account, tier).await?;
        self.app(name)?.ok_or_else(|| PlatformError::NotFound {
            tenant: name.clone(),
        })
    }

    /// The tier an app runs on, from memory (no storage read, no lock held
    /// past the lookup): cheap enough to call on every request head, for
    /// example to refuse a body over the tier's `max_body_bytes` before
    /// reading it. `None` for an app that is not deployed.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use corral::{Kind, TenantId, platform::{Bundle, Platform, PlatformConfig}};
    /// let dir = tempfile::tempdir().unwrap();
    /// # let never = corral::metering::Level::new(1.0, 1.0);
    /// let mut config = PlatformConfig::with_data_dir(dir.path());
    /// # (config.thresholds.ram, config.thresholds.disk, config.thresholds.cpu) = (never, never, never);
    /// let p = Platform::builder().config(config).build().unwrap();
    /// let name = TenantId::new("hello").unwrap();
    /// assert!(p.app_tier(&name).is_none());
    /// let js = b"export default { fetch() { return new Response('hi'); } };".to_vec();
    /// p.deploy(&name, Some("pro"), Bundle::code(Kind::Js, js)).await.unwrap();
    /// let tier = p.app_tier(&name).unwrap();
    /// assert_eq!(tier.max_body_bytes, p.tiers()["pro"].max_body_bytes);
    /// # p.shutdown().await;
    /// # });
    /// ```
    pub fn app_tier(&self, name: &TenantId) -> Option<Arc<Tier>> {
        self.inner.apps.get(name).map(|c| c.tier().clone())
    }

    /// The app's in-memory record (context and program), with one lookup:
    /// what a frontend finds from the request head and hands down in the
    /// request ([`AppRef::insert_into`]), so that nothing on the way to the
    /// engine looks the app up again. `None` for an app that is not deployed.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use bytes::Bytes;
    /// use corral::{Kind, TenantId, platform::{Bundle, Platform, PlatformConfig}};
    /// use tower::ServiceExt;
    /// # let never = corral::metering::Level::new(1.0, 1.0);
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut config = PlatformConfig::with_data_dir(dir.path());
    /// # (config.thresholds.ram, config.thresholds.disk, config.thresholds.cpu) = (never, never, never);
    /// let p = Platform::builder().config(config).build().unwrap();
    /// let name = TenantId::new("hello").unwrap();
    /// let js = b"export default { fetch() { return new Response('hi'); } };".to_vec();
    /// p.deploy(&name, None, Bundle::code(Kind::Js, js)).await.unwrap();
    /// let app = p.resolve_app(&name).unwrap();
    /// assert_eq!(app.context().account().as_str(), "hello");
    /// let mut req = http::Request::new(Bytes::new());
    /// app.insert_into(&mut req);
    /// let resp = p.service().oneshot(req).await.unwrap();
    /// assert_eq!(resp.status(), 200);
    /// # p.shutdown().await;
    /// # });
    /// ```
    pub fn resolve_app(&self, name: &TenantId) -> Option<AppRef> {
        self.inner.apps.get(name)
    }

    /// Brings this node's apps in line with the store it shares with other
    /// nodes: apps deployed through another node are loaded here (parked,
    /// compiled from the stored bundle), apps redeployed there are reloaded
    /// (the next request cold-starts the new code, cached static files are
    /// dropped), apps removed there are forgotten. A platform with
    /// `app_sync_interval` runs this in the background at that interval;
    /// between passes another node's change is not seen here, which bounds
    /// how stale a node can be.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use corral::platform::{Bundle, Platform, PlatformConfig};
    /// use corral::{Kind, TenantId};
    /// let dir = tempfile::tempdir().unwrap();
    /// // Two nodes on one store (a SQLite file here; PostgreSQL between machines).
    /// let shared = dir.path().join("shared.db");
    /// let node = |n: &str| {
    ///     let mut cfg = PlatformConfig::with_data_dir(dir.path().join(n));
    ///     cfg.storage.url = Some(shared.display().to_string());
    ///     Platform::builder().config(cfg).build().unwrap()
    /// };
    /// let (a, b) = (node("a"), node("b"));
    /// let name = TenantId::new("hello").unwrap();
    /// let js = b"export default { fetch() { return new Response('hi'); } };".to_vec();
    /// a.deploy(&name, None, Bundle::code(Kind::Js, js)).await.unwrap();
    /// assert!(b.resolve_app(&name).is_none());
    /// assert_eq!(b.sync_apps().await.unwrap().added, 1);
    /// assert!(b.resolve_app(&name).is_some());
    /// a.remove(&name).unwrap();
    /// assert_eq!(b.sync_apps().await.unwrap().removed, 1);
    /// # a.shutdown().await; b.shutdown().await;
    /// # });
    /// ```
    pub async fn sync_apps(&self) -> Result<AppSync, PlatformError> {
        let inner = self.inner.clone();
        blocking(move || inner.sync_apps()).await
    }

    /// The account an app belongs to, from memory (like
    /// [`app_tier`](Self::app_tier): cheap on every request). `None` for an
    /// app that is not deployed.
    pub fn app_account(&self, name: &TenantId) -> Option<TenantId> {
        self.inner
            .apps
            .get(name)
            .map(|c| c.context().account().clone())
    }

    /// One app, or `None`.
    pub fn app(&self, name: &TenantId) -> Result<Option<AppInfo>, PlatformError> {
        match self.inner.store.tenant(name)? {
            Some(rec) => Ok(Some(self.app_info(rec)?)),
            None => Ok(None),
        }
    }

    /// Every app, by name.
    pub fn apps(&self) -> Result<Vec<AppInfo>, PlatformError> {
        self.inner
            .store
            .list_tenants()?
            .into_iter()
            .map(|rec| self.app_info(rec))
            .collect()
    }

    fn app_info(&self, rec: TenantRecord) -> Result<AppInfo, PlatformError> {
        let info = self.inner.store.bundle_info(&rec.id)?;
        Ok(AppInfo {
            account: rec.account.clone().unwrap_or_else(|| rec.id.clone()),
            tier: rec.tier.as_str().to_owned(),
            kind: bundle::kind_of(rec.kind),
            bytes: info.as_ref().map_or(0, |i| i.bytes),
            version: info.as_ref().map_or(0, |i| i.version),
            created: rec.created,
            name: rec.id,
        })
    }

    /// Counts a request that a frontend refused for the app `name` before it
    /// reached [`service`](Self::service) (say, a declared body length over
    /// the tier's `max_body_bytes`, answered without reading the body): in
    /// usage under `refused`, never among the requests or toward the quota.
    /// Returns `false`, counting nothing, for a name that is not deployed, so
    /// made-up names cost no counters.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
    /// use corral::{Kind, TenantId, limits_layers::Refusal, platform::{Bundle, Platform, PlatformConfig}};
    /// # let never = corral::metering::Level::new(1.0, 1.0);
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut config = PlatformConfig::with_data_dir(dir.path());
    /// # (config.thresholds.ram, config.thresholds.disk, config.thresholds.cpu) = (never, never, never);
    /// let platform = Platform::builder().config(config).build().unwrap();
    /// let app = TenantId::new("shop").unwrap();
    /// let code = b"export default { fetch() { return new Response('hi') } }".to_vec();
    /// platform.deploy(&app, None, Bundle::code(Kind::Js, code)).await.unwrap();
    ///
    /// assert!(platform.count_refusal(&app, Refusal::PayloadTooLarge));
    /// assert!(!platform.count_refusal(&TenantId::new("nobody").unwrap(), Refusal::PayloadTooLarge));
    /// let usage = platform.usage(&app).unwrap().usage;
    /// assert_eq!((usage.requests, usage.refused[&Refusal::PayloadTooLarge]), (0, 1));
    /// # platform.shutdown().await;
    /// # }
    /// ```
    pub fn count_refusal(&self, name: &TenantId, refusal: corral_limits::Refusal) -> bool {
        if !self.inner.apps.contains(name) {
            return false;
        }
        self.inner.meter.tenant(name).refused(refusal);
        true
    }

    /// This month's usage beside the tier's quotas.
    pub fn usage(&self, name: &TenantId) -> Result<UsageReport, PlatformError> {
        let ctx = self.context(name)?;
        let usage = self
            .inner
            .meter
            .usage(name)
            .unwrap_or_else(|| Usage::zero(name.clone(), self.inner.meter.period()));
        let tier_name = self
            .inner
            .store
            .tenant(name)?
            .map(|r| r.tier.as_str().to_owned())
            .unwrap_or_default();
        Ok(UsageReport {
            usage,
            tier: tier_name,
            requests_quota: ctx.tier().requests_per_month,
            storage_quota: ctx.tier().storage_bytes,
        })
    }

    fn context(&self, name: &TenantId) -> Result<TenantContext, PlatformError> {
        self.inner
            .apps
            .get(name)
            .map(|app| app.context().clone())
            .ok_or_else(|| PlatformError::NotFound {
                tenant: name.clone(),
            })
    }

    /// Whether the app is warm or parked, and what it is doing.
    pub fn status(&self, name: &TenantId) -> Result<AppStatus, PlatformError> {
        let s = self
            .inner
            .registry
            .status(name)
            .ok_or_else(|| PlatformError::NotFound {
                tenant: name.clone(),
            })?;
        let streams = self
            .inner
            .meter
            .snapshot(name)
            .map_or(0, |s| s.streams_open);
        Ok(AppStatus {
            state: match s.state {
                TenantState::Warm => "warm",
                _ => "parked",
            },
            in_flight: s.in_flight,
            streams,
            idle_secs: s.idle_for.as_secs_f64(),
            cold_starts: s.cold_starts,
        })
    }

    /// Parks the app now (unless a request is running). `true` if it was warm.
    pub fn park(&self, name: &TenantId) -> Result<bool, PlatformError> {
        Ok(self.inner.registry.park(name)?)
    }

    /// The app's recent log lines (guest stderr, `console.log`).
    pub fn logs(&self, name: &TenantId) -> Result<Vec<String>, PlatformError> {
        self.inner
            .registry
            .log(name)
            .map(|l| l.lines())
            .ok_or_else(|| PlatformError::NotFound {
                tenant: name.clone(),
            })
    }

    /// The app's log lines appended after the first `seen` (oldest first)
    /// and the count to pass next time: [`TenantLog::lines_after`](crate::TenantLog::lines_after), for a
    /// reader that follows the log.
    pub fn logs_after(
        &self,
        name: &TenantId,
        seen: u64,
    ) -> Result<(Vec<String>, u64), PlatformError> {
        self.inner
            .registry
            .log(name)
            .map(|l| l.lines_after(seen))
            .ok_or_else(|| PlatformError::NotFound {
                tenant: name.clone(),
            })
    }

    /// The tenant registry (engines, parking, counters).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The SQLite store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The meter.
    pub fn meter(&self) -> &Meter {
        &self.inner.meter
    }

    /// The host, its budget, thresholds and modes.
    pub fn host(&self) -> HostInfo {
        let inner = &*self.inner;
        let (probe, budget) = *inner.last_probe.lock();
        let c = inner.cache.stats();
        HostInfo {
            probe,
            budget,
            runtime_slots: inner.slots.size(),
            runtime_slots_in_use: inner.slots.in_use(),
            cache: CacheStats::new(c.hits, c.misses, c.bytes, c.capacity),
            thresholds: inner.config.thresholds,
            accepting_new_tenants: inner.node.accepting_new_tenants(),
            maintenance: inner.maintenance.is_on(),
            maintenance_required: inner.node.maintenance_required(),
        }
    }

    /// Probes the host again and resizes the runtime slots and the cache to
    /// the new budget, without dropping a request (slots shrink as permits
    /// come back).
    pub fn recalibrate(&self) -> Result<HostInfo, PlatformError> {
        let inner = &*self.inner;
        let db = inner.config.data_dir.join(DB_FILE);
        let probe = SysinfoProbe::new(&inner.config.data_dir)
            .with_db_file(db)
            .probe();
        let budget = derive_budget(&inner.config, &probe)?;
        inner.slots.resize(
            inner
                .config
                .runtime_slots
                .unwrap_or(budget.runtime_slots as usize),
        );
        inner
            .cache
            .resize(inner.config.cache_bytes.unwrap_or(budget.cache_bytes))
            .map_err(|e| PlatformError::Internal(format!("resizing cache: {e}")))?;
        *inner.last_probe.lock() = (probe, budget);
        Ok(self.host())
    }

    /// Turns maintenance mode on or off: tenants get 503 while it is on.
    pub fn set_maintenance(&self, on: bool) {
        self.inner.maintenance.set(on);
    }

    /// Whether maintenance mode is on.
    pub fn maintenance(&self) -> bool {
        self.inner.maintenance.is_on()
    }

    /// Live gauges, refreshed once a second.
    pub fn gauges(&self) -> watch::Receiver<LiveGauges> {
        self.inner.gauges.clone()
    }

    /// Prometheus text exposition of the meter and host.
    pub fn metrics(&self) -> String {
        let host = self.host();
        let apps = self.inner.registry.stats();
        self.inner.meter.record_host(
            corral_metering::HostReport::new(
                host.probe,
                host.accepting_new_tenants,
                host.maintenance_required,
            )
            .with_apps(corral_metering::AppCounts::new(
                apps.tenants as u64,
                apps.warm as u64,
            )),
        );
        self.inner.meter.render()
    }

    /// Verifies every stored blob; corrupt ones are quarantined and listed.
    pub fn scrub(&self) -> Result<ScrubSummary, PlatformError> {
        let r = self.inner.store.scrub()?;
        Ok(ScrubSummary {
            verified: r.checked,
            corrupt: r.corrupt,
        })
    }

    /// An archive of the app's bundle, KV and usage, every entry CRC-checked.
    pub fn export_tenant(&self, name: &TenantId) -> Result<Vec<u8>, PlatformError> {
        self.inner
            .meter
            .flush(&self.inner.store)
            .map_err(|e| PlatformError::Internal(format!("flushing usage before export: {e}")))?;
        let ex = self.inner.store.export_tenant(name)?;
        archive::write(&ex)
    }

    /// Imports an archive from [`export_tenant`](Self::export_tenant) as a new
    /// app. Everything is verified, and the code compiled, before anything is
    /// written; a bad archive imports nothing.
    ///
    /// The archive's tier and usage are claims of whoever wrote it: unless
    /// `options` keeps them, the app lands on the default tier with no usage.
    /// A kept tier must be one of this node's ([`PlatformError::UnknownTier`]
    /// otherwise). Either way the app's tier bounds the import: a bundle over
    /// its `max_bundle_bytes` is [`PlatformError::BundleTooLarge`], KV over
    /// its storage is `storage_quota_exceeded`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
    /// use corral::{Kind, TenantId, platform::{Bundle, ImportOptions, Platform, PlatformConfig}};
    /// # let never = corral::metering::Level::new(1.0, 1.0);
    /// let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    /// let open = |dir: &std::path::Path| {
    ///     let mut config = PlatformConfig::with_data_dir(dir);
    /// #   (config.thresholds.ram, config.thresholds.disk, config.thresholds.cpu) = (never, never, never);
    ///     Platform::builder().config(config).build().unwrap()
    /// };
    /// let (from, to) = (open(a.path()), open(b.path()));
    /// let app = TenantId::new("shop").unwrap();
    /// let code = b"export default { fetch() { return new Response('hi') } }".to_vec();
    /// from.deploy(&app, Some("pro"), Bundle::code(Kind::Js, code)).await.unwrap();
    /// let archive = from.export_tenant(&app).unwrap();
    ///
    /// to.import_tenant(archive, ImportOptions::new()).await.unwrap();
    /// assert_eq!(to.app(&app).unwrap().unwrap().tier, "free"); // the default tier
    /// # from.shutdown().await; to.shutdown().await;
    /// # }
    /// ```
    pub async fn import_tenant(
        &self,
        archive: Vec<u8>,
        options: ImportOptions,
    ) -> Result<TenantId, PlatformError> {
        let this = self.clone();
        blocking(move || {
            let inner = &*this.inner;
            let mut ex = archive::read(&archive)?;
            let id = ex.tenant.id.clone();
            if inner.store.tenant(&id)?.is_some() {
                return Err(PlatformError::InvalidArchive {
                    reason: format!("app {id} already exists here"),
                });
            }
            if !options.keeps_tier() {
                ex.tenant.tier = tier_name_of(&inner.config.default_tier)?;
            }
            if !options.keeps_usage() {
                ex.usage.clear();
            }
            let tier = inner.tier(ex.tenant.tier.as_str())?;
            // The stored limit is the tier's, as a deploy sets it, never the archive's.
            ex.tenant.storage_limit = tier.storage_bytes;
            let bundle = ex
                .bundle
                .as_ref()
                .ok_or_else(|| PlatformError::InvalidArchive {
                    reason: "the archive holds no bundle".into(),
                })?;
            let size = bundle.code.bytes.len() as u64
                + bundle
                    .static_files
                    .iter()
                    .map(|f| f.bytes.len() as u64)
                    .sum::<u64>();
            if size > tier.max_bundle_bytes {
                return Err(PlatformError::BundleTooLarge {
                    limit: tier.max_bundle_bytes,
                    size,
                });
            }
            let kv: u64 = ex
                .kv
                .iter()
                .map(|e| (e.key.len() + e.bytes.len()) as u64)
                .sum();
            if let Some(limit) = tier.storage_bytes
                && kv > limit
            {
                return Err(PlatformError::Storage(
                    corral_storage::StorageError::StorageQuotaExceeded {
                        limit,
                        used: 0,
                        needed: kv,
                    },
                ));
            }
            inner.registry.deploy(
                &id,
                bundle::kind_of(bundle.kind),
                &bundle.code.bytes,
                limits_for(&tier),
            )?;
            let _sync = inner.sync_lock.lock();
            let had_account = inner.store.account(&id)?.is_some();
            if let Err(e) = inner.store.import_tenant(&ex) {
                let _ = inner.apps.forget(&id);
                return Err(e.into());
            }
            for u in &ex.usage {
                inner.meter.restore_tenant(u);
                if !had_account {
                    // The store wrote the app's months as its new account's.
                    inner.account_meter.restore_tenant(u);
                }
            }
            // In an account of its own name; one that existed already keeps
            // its tier (the app runs on it) and its months.
            let rec = inner
                .store
                .tenant(&id)?
                .ok_or_else(|| PlatformError::NotFound { tenant: id.clone() })?;
            let account = rec.account.clone().unwrap_or_else(|| id.clone());
            let tier = if rec.tier == ex.tenant.tier {
                tier
            } else {
                let t = inner.tier(rec.tier.as_str())?;
                this.recompile(&id, &t)?;
                t
            };
            inner.apps.install(&id, &account, tier);
            inner.note_synced(&id)?;
            Ok(id)
        })
        .await
    }

    /// Flushes usage and stops the background tasks. Call once, after the
    /// frontend has drained its requests.
    pub async fn shutdown(&self) {
        let inner = &*self.inner;
        if let Some(f) = inner.flusher.lock().take() {
            f.stop();
        }
        if let Some(f) = inner.account_flusher.lock().take() {
            f.stop();
        }
        if let Err(e) = inner.meter.flush(&inner.store) {
            tracing::error!("final usage flush failed: {e}");
        }
        if let Err(e) = inner.account_meter.flush(&inner.store.account_usage_sink()) {
            tracing::error!("final account usage flush failed: {e}");
        }
        if let Some(t) = inner.monitor_task.lock().take() {
            t.abort();
        }
        if let Some(t) = inner.sync_task.lock().take() {
            t.abort();
        }
        if let Err(e) = inner.store.checkpoint() {
            tracing::warn!("final WAL checkpoint failed: {e}");
        }
    }
}

/// Runs `f` on tokio's blocking pool (compiles and SQLite writes).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PlatformError> + Send + 'static,
) -> Result<T, PlatformError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PlatformError::Internal(format!("task failed: {e}")))?
}
