//! The process-wide WebAssembly engine: one wasmtime [`wasmtime::Engine`] with
//! the pooling allocator, copy-on-write memory images, fuel metering, epoch
//! interruption and an epoch ticker thread.
//!
//! ```
//! use std::time::Duration;
//! use corral::{EngineConfig, WasmEngine};
//!
//! let engine = WasmEngine::new(EngineConfig::default().instances(8)).unwrap();
//! assert_eq!(engine.config().instances, 8);
//! let ticker = engine.ticker();
//! assert!(ticker.is_running());
//! drop(engine);
//! // The ticker thread notices the engine is gone and stops by itself.
//! std::thread::sleep(Duration::from_millis(50));
//! assert!(!ticker.is_running());
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::SandboxError;

/// How the process-wide engine is sized. Every setter documents its default.
///
/// ```
/// use corral::EngineConfig;
/// let cfg = EngineConfig::default().instances(64).memory_per_instance(128 << 20);
/// assert_eq!(cfg.instances, 64);
/// assert_eq!(cfg.max_wasm_stack, 512 << 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct EngineConfig {
    /// Instances that may run at the same time (pool slots for instances,
    /// memories, tables and async stacks).
    pub instances: u32,
    /// Largest linear memory any one instance may reach, in bytes. A tenant's
    /// [`Limits::memory_bytes`](crate::Limits) applies below this ceiling.
    pub memory_per_instance: u64,
    /// Largest WebAssembly stack, in bytes (engine-wide in wasmtime).
    pub max_wasm_stack: usize,
    /// Period of the epoch ticker that drives wall-clock deadlines and
    /// cooperative yields.
    pub epoch_tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            instances: 256,
            memory_per_instance: 1 << 30,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(1),
        }
    }
}

impl EngineConfig {
    /// Concurrent instance slots. Default: 256.
    pub fn instances(mut self, n: u32) -> Self {
        self.instances = n;
        self
    }
    /// Per-instance memory ceiling in bytes. Default: 1 GiB.
    pub fn memory_per_instance(mut self, bytes: u64) -> Self {
        self.memory_per_instance = bytes;
        self
    }
    /// Maximum WebAssembly stack in bytes. Default: 512 KiB.
    pub fn max_wasm_stack(mut self, bytes: usize) -> Self {
        self.max_wasm_stack = bytes;
        self
    }
    /// Epoch tick period. Default: 1 ms.
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick;
        self
    }
}

/// Extra room on an async fiber stack for host functions (WASI) beyond the
/// guest's own stack.
const HOST_STACK_HEADROOM: usize = 1536 << 10;

/// Core instances (and tables) a component typically holds: its module, the
/// preview-1 adapter, and the adapter's shim and fix-up modules.
const CORE_INSTANCES_PER_COMPONENT: u32 = 4;

/// Bytes of each pool slot's linear memory that are reset with `memset` and
/// stay resident when an instance ends, instead of being given back with
/// `madvise`. Under load most requests touch only the first pages (stack and
/// data); resetting them in place spares a system call, a TLB shootdown on
/// every core and the page faults that refill them on the next request: it
/// doubled a WAGI hello's requests/s (BENCHMARKS.md, issue 15). With
/// `PAGEMAP_SCAN` (Linux 6.7+) only the pages a request dirtied are reset,
/// and only touched pages are resident. The cost is bounded by the pool, not
/// by tenants: at most `instances × KEEP_RESIDENT` (32 MiB for 256 slots),
/// and a guest that grows its memory past it is still decommitted beyond.
const KEEP_RESIDENT: usize = 128 << 10;

/// The same for each table slot. There are `CORE_INSTANCES_PER_COMPONENT`
/// table slots per instance, and a hello module's table fits one page, so
/// 16 KiB (2,048 function references) keeps the host-wide bound at
/// `4 × instances × 16 KiB` (16 MiB for 256 slots).
const TABLE_KEEP_RESIDENT: usize = 16 << 10;

/// Whether an epoch ticker thread is still running.
#[derive(Debug, Clone)]
pub struct EpochTicker {
    running: Arc<AtomicBool>,
}

impl EpochTicker {
    /// `true` until the ticker thread has stopped (after the engine is dropped).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

/// The process-wide WebAssembly engine (cheap to clone; clones share it).
///
/// Create one per process and share it: each engine reserves address space
/// for `instances` pooled memories.
#[derive(Clone)]
pub struct WasmEngine {
    engine: wasmtime::Engine,
    config: Arc<EngineConfig>,
    ticker: EpochTicker,
    metered: bool,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("config", &self.config)
            .field("ticker", &self.ticker)
            .finish_non_exhaustive()
    }
}

impl WasmEngine {
    /// Builds the engine and starts its epoch ticker thread. A bad
    /// configuration is [`SandboxError::Internal`].
    pub fn new(config: EngineConfig) -> Result<Self, SandboxError> {
        Self::with_metering(config, true)
    }

    /// Like [`WasmEngine::new`] but with fuel metering and epoch interruption
    /// switched off: for measuring their overhead only. Programs loaded on
    /// such an engine run without fuel or wall-clock limits.
    #[doc(hidden)]
    pub fn new_unmetered(config: EngineConfig) -> Result<Self, SandboxError> {
        Self::with_metering(config, false)
    }

    fn with_metering(config: EngineConfig, metered: bool) -> Result<Self, SandboxError> {
        let mut pool = PoolingAllocationConfig::default();
        let mem = usize::try_from(config.memory_per_instance).unwrap_or(usize::MAX);
        // A component (`Kind::Component`) holds several core instances and
        // tables (its module, the WASI adapter, shims) but one memory and one
        // stack: slots for those are metadata, cheap, so they are sized for
        // components while memories and stacks stay one per instance.
        pool.total_component_instances(config.instances)
            .total_core_instances(
                config
                    .instances
                    .saturating_mul(CORE_INSTANCES_PER_COMPONENT),
            )
            .total_memories(config.instances)
            .total_tables(
                config
                    .instances
                    .saturating_mul(CORE_INSTANCES_PER_COMPONENT),
            )
            .total_stacks(config.instances)
            .max_memory_size(mem)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut cfg = Config::new();
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .consume_fuel(metered)
            .epoch_interruption(metered)
            .max_wasm_stack(config.max_wasm_stack)
            .async_stack_size(config.max_wasm_stack + HOST_STACK_HEADROOM)
            .cranelift_opt_level(OptLevel::Speed)
            // A deploy compiles on its own thread only: it takes one core from
            // the tenants at most, and its CPU time is measured exactly (see
            // `Registry::compile_cpu`), so the CPU threshold can leave it out.
            .parallel_compilation(false);
        if config.memory_per_instance > 4 << 30 {
            cfg.memory_reservation(config.memory_per_instance);
        }
        let engine = wasmtime::Engine::new(&cfg)
            .map_err(|e| SandboxError::internal("building the wasmtime engine", e))?;
        // The CPU meter checks once per process how it can read (a short
        // sleep): here, so that no request pays for it.
        crate::cpu::thread_now_ns();
        let running = Arc::new(AtomicBool::new(true));
        let ticker = EpochTicker {
            running: running.clone(),
        };
        let weak = engine.weak();
        let tick = config.epoch_tick;
        std::thread::Builder::new()
            .name("corral-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
                running.store(false, Ordering::Release);
            })
            .map_err(|e| SandboxError::internal("spawning the epoch ticker", e))?;
        Ok(Self {
            engine,
            config: Arc::new(config),
            ticker,
            metered,
        })
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Whether fuel metering and epoch interruption are on (always, unless
    /// built with the hidden benchmarking constructor).
    pub fn is_metered(&self) -> bool {
        self.metered
    }

    /// A handle telling whether the ticker thread still runs.
    pub fn ticker(&self) -> EpochTicker {
        self.ticker.clone()
    }
}
