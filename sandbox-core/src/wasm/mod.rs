//! The WebAssembly backend: WASI preview-1 command modules speaking WAGI,
//! run on the shared [`WasmEngine`] under fuel, memory, stack, output and
//! wall-clock limits.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use corral::{Backend, EngineConfig, InvokeContext, Limits, SandboxError, TenantLog, WasmBackend, WasmEngine};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let backend = WasmBackend::new(WasmEngine::new(EngineConfig::default().instances(4)).unwrap()).unwrap();
//! // A guest that loops forever is stopped by its fuel limit.
//! let spin = br#"(module
//!     (memory (export "memory") 1)
//!     (func (export "_start") (loop (br 0))))"#;
//! let limits = Limits::builder().fuel_per_request(100_000).build();
//! let artifact = backend.precompile(spin, &limits).unwrap();
//! let program = backend.load(&artifact, &limits).unwrap();
//! let cx = InvokeContext::new("spin".parse().unwrap(), Arc::new(limits), Arc::new(TenantLog::new(1024)));
//! let err = program.invoke(cx, http::Request::new(Bytes::new())).await.unwrap_err();
//! assert!(matches!(err, SandboxError::FuelExhausted { limit: 100_000, consumed: 100_000 }));
//! # }
//! ```

#[cfg(feature = "component")]
mod component;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "component")]
mod keyvalue;
mod wagi;

#[cfg(feature = "component")]
pub use component::ComponentBackend;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use wasmtime::{Extern, InstancePre, Linker, Module, ModuleExport, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use corral_metering::StreamFigures;

use crate::{
    Backend, Body, BoxFuture, InvocationStats, InvokeContext, Kind, Limits, Program, SandboxError,
    WasmEngine,
};

/// Magic of the backend's artifact: `b"CRLW"`, then the CRC32 of the
/// serialized module (u32 LE), then the module as wasmtime serialized it.
const ARTIFACT_MAGIC: &[u8; 4] = b"CRLW";
const ARTIFACT_HEADER: usize = 8;

/// A serialized module or component as an artifact: `magic`, the CRC32 of
/// `serialized` (u32 LE), then `serialized`.
pub(super) fn seal(magic: &[u8; 4], serialized: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ARTIFACT_HEADER + serialized.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&crc32fast::hash(serialized).to_le_bytes());
    out.extend_from_slice(serialized);
    out
}

/// The serialized bytes of an artifact [`seal`] wrote with `magic`, once its
/// CRC32 matches; anything else is [`SandboxError::CorruptArtifact`]
/// (`what` names the kind in the reason).
pub(super) fn unseal<'a>(
    magic: &[u8; 4],
    what: &str,
    artifact: &'a [u8],
) -> Result<&'a [u8], SandboxError> {
    if artifact.len() < ARTIFACT_HEADER || &artifact[..4] != magic {
        return Err(SandboxError::CorruptArtifact {
            reason: format!("not a corral {what} artifact"),
        });
    }
    let expected = u32::from_le_bytes(artifact[4..8].try_into().expect("4 bytes"));
    let body = &artifact[ARTIFACT_HEADER..];
    let actual = crc32fast::hash(body);
    if expected != actual {
        return Err(SandboxError::CorruptArtifact {
            reason: format!("checksum mismatch: stored {expected:08x}, computed {actual:08x}"),
        });
    }
    Ok(body)
}
/// WebAssembly page size (no custom page sizes are enabled).
const PAGE: u64 = 64 << 10;

/// Per-store state: the WASI context and the memory limiter.
struct State {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// Enforces the tenant's memory limit and records the peak and any refusal.
#[derive(Debug)]
struct Limiter {
    limit: usize,
    peak: usize,
    memory_denied: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.memory_denied = true;
            // `false`, not an error: the guest sees memory.grow return -1.
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_denied = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element is a pointer; count tables against the same budget.
        Ok(desired.saturating_mul(std::mem::size_of::<usize>()) <= self.limit)
    }
}

/// The wall-clock deadline passed (raised from the epoch callback).
#[derive(Debug, thiserror::Error)]
#[error("wall-clock deadline passed")]
struct DeadlinePassed;

/// The WebAssembly [`Backend`]: precompiles WAGI modules and loads them.
#[derive(Clone)]
pub struct WasmBackend {
    engine: WasmEngine,
    linker: Arc<Linker<State>>,
}

impl std::fmt::Debug for WasmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmBackend")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl WasmBackend {
    /// A backend on `engine`, with the WASI preview-1 imports linked (async).
    pub fn new(engine: WasmEngine) -> Result<Self, SandboxError> {
        let mut linker = Linker::new(engine.wasmtime());
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| &mut s.wasi)
            .map_err(|e| SandboxError::internal("linking WASI", e))?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// The engine this backend compiles for.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    fn check_module(&self, module: &Module, limits: &Limits) -> Result<(), SandboxError> {
        let initial = module
            .resources_required()
            .max_initial_memory_size
            .unwrap_or(0)
            .saturating_mul(PAGE);
        let limit = limits
            .memory_bytes
            .min(self.engine.config().memory_per_instance);
        if initial > limit {
            return Err(SandboxError::InitialMemoryTooLarge {
                declared: initial,
                limit,
            });
        }
        match module.get_export("_start") {
            Some(wasmtime::ExternType::Func(f))
                if f.params().len() == 0 && f.results().len() == 0 => {}
            _ => {
                return Err(SandboxError::InvalidModule {
                    reason: "no exported `_start` function of type () -> () (a WASI command)"
                        .into(),
                });
            }
        }
        Ok(())
    }

    fn instance_pre(&self, module: &Module) -> Result<InstancePre<State>, SandboxError> {
        self.linker
            .instantiate_pre(module)
            .map_err(|e| SandboxError::InvalidModule {
                reason: format!("{e:#}"),
            })
    }
}

impl Backend for WasmBackend {
    fn kind(&self) -> Kind {
        Kind::Wasm
    }

    fn precompile(&self, source: &[u8], limits: &Limits) -> Result<Vec<u8>, SandboxError> {
        let invalid = |e: wasmtime::Error| SandboxError::InvalidModule {
            reason: format!("{e:#}"),
        };
        let module = Module::new(self.engine.wasmtime(), source).map_err(invalid)?;
        self.check_module(&module, limits)?;
        // Every import must be satisfied by WASI preview 1.
        self.instance_pre(&module)?;
        let serialized = module.serialize().map_err(invalid)?;
        Ok(seal(ARTIFACT_MAGIC, &serialized))
    }

    fn load(&self, artifact: &[u8], limits: &Limits) -> Result<Arc<dyn Program>, SandboxError> {
        let body = unseal(ARTIFACT_MAGIC, "WebAssembly", artifact)?;
        // SAFETY: `Module::deserialize` trusts its input to be machine code
        // that this wasmtime version produced with a compatible config. `body`
        // is exactly what `precompile` above got from `Module::serialize` on
        // this engine's configuration (wasmtime checks the version and config
        // itself), and the CRC32 just verified guards against corruption on
        // disk. Artifacts are written only by the registry, never uploaded.
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize(self.engine.wasmtime(), body) }.map_err(|e| {
            SandboxError::CorruptArtifact {
                reason: format!("{e:#}"),
            }
        })?;
        self.check_module(&module, limits)?;
        let pre = self.instance_pre(&module)?;
        let start =
            module
                .get_export_index("_start")
                .ok_or_else(|| SandboxError::InvalidModule {
                    reason: "no exported `_start` function".into(),
                })?;
        Ok(Arc::new(WasmProgram {
            engine: self.engine.clone(),
            pre,
            start,
        }))
    }
}

/// A loaded, warm WAGI module (its `InstancePre`).
struct WasmProgram {
    engine: WasmEngine,
    pre: InstancePre<State>,
    /// `_start`, found by name once at load: each run takes it by index.
    start: ModuleExport,
}

impl std::fmt::Debug for WasmProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmProgram").finish_non_exhaustive()
    }
}

async fn run(
    pre: &InstancePre<State>,
    start: &ModuleExport,
    store: &mut Store<State>,
) -> wasmtime::Result<()> {
    let instance = pre.instantiate_async(&mut *store).await?;
    // By the index found at load, not by name (a string lookup per request);
    // the type is still checked on every run.
    let start = instance
        .get_module_export(&mut *store, start)
        .and_then(Extern::into_func)
        .ok_or_else(|| wasmtime::format_err!("failed to find function export `_start`"))?
        .typed::<(), ()>(&*store)?;
    start.call_async(&mut *store, ()).await
}

impl Program for WasmProgram {
    fn invoke(
        self: Arc<Self>,
        cx: InvokeContext,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, SandboxError>> {
        Box::pin(self.invoke_inner(cx, request))
    }
}

/// How a run ended, and what it used.
struct Outcome {
    result: Result<(), SandboxError>,
    stats: InvocationStats,
}

/// What a run has used so far, as of its last epoch tick (its CPU time as
/// of its last poll): what is metered for a stream whose run is dropped with
/// its client.
#[derive(Debug, Default)]
struct Progress {
    fuel: AtomicU64,
    peak_memory: AtomicU64,
    cpu: crate::cpu::CpuTime,
}

impl WasmProgram {
    async fn invoke_inner(
        self: Arc<Self>,
        cx: InvokeContext,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>, SandboxError> {
        let limits = cx.limits.clone();
        let started = Instant::now();
        let env = wagi::cgi_env(&request);
        let (head_tx, mut head_rx) = tokio::sync::oneshot::channel();
        let stdout = wagi::CappedOutput::new(limits.max_output_bytes, head_tx);
        let stderr = wagi::LogOutput::new(&cx.log, limits.max_log_bytes);
        // No preopens, no network, no inherited environment: only the CGI set.
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(request.body().clone()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&env)
            .arg(cx.tenant.as_str())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build_p1();
        let limit = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        let store = Store::new(
            self.engine.wasmtime(),
            State {
                wasi,
                limiter: Limiter {
                    limit,
                    peak: 0,
                    memory_denied: false,
                },
            },
        );
        let progress = Arc::new(Progress::default());
        let mut run = Box::pin(self.clone().run_to_end(
            store,
            limits.clone(),
            started,
            (stdout.clone(), stderr),
            progress.clone(),
        ));
        // The run ends, or (an event stream) its head comes out first.
        // `biased`: the run first, so a guest that ends in its first poll
        // never registers this task's waker with `head_rx`.
        let head = tokio::select! {
            biased;
            outcome = &mut run => match head_rx.try_recv() {
                // The head went out during the run's last poll.
                Ok(head) => {
                    let ended = std::future::ready(outcome);
                    return Ok(stream_rest(head, ended, &stdout, started, progress));
                }
                Err(_) => {
                    // Closed before `stdout` (and its sender) goes: dropping
                    // an open receiver's sender would wake this very task,
                    // which then runs again for nothing and has the runtime
                    // wake an idle worker to steal it.
                    drop(head_rx);
                    let Outcome { result, stats } = outcome;
                    result?;
                    let mut response = wagi::parse_cgi(stdout.take())?;
                    response.extensions_mut().insert(stats);
                    return Ok(response.map(Body::full));
                }
            },
            Ok(head) = &mut head_rx => head,
        };
        Ok(stream_rest(head, run, &stdout, started, progress))
    }

    /// Runs the guest to its end under the tier's fuel, memory and wall clock.
    async fn run_to_end(
        self: Arc<Self>,
        mut store: Store<State>,
        limits: Arc<Limits>,
        started: Instant,
        (stdout, stderr): (wagi::CappedOutput, wagi::LogOutput),
        progress: Arc<Progress>,
    ) -> Outcome {
        let deadline = started + limits.wall_clock;
        let fuel = limits.fuel_per_request;
        store.limiter(|s| &mut s.limiter);
        let metered = self.engine.is_metered();
        let cpu = progress.clone();
        if metered {
            if let Err(e) = store.set_fuel(limits.fuel_per_request) {
                return Outcome {
                    result: Err(SandboxError::internal("setting fuel", e)),
                    stats: InvocationStats::default(),
                };
            }
            store.set_epoch_deadline(1);
            // Yield to the executor at every tick; trap once the deadline
            // passed. Note what the run has used so far.
            store.epoch_deadline_callback(move |cx| {
                let used = fuel.saturating_sub(cx.get_fuel().unwrap_or(fuel));
                progress.fuel.store(used, Ordering::Relaxed);
                let peak = cx.data().limiter.peak as u64;
                progress.peak_memory.store(peak, Ordering::Relaxed);
                if Instant::now() >= deadline {
                    Err(DeadlinePassed.into())
                } else {
                    Ok(UpdateDeadline::Yield(1))
                }
            });
        }
        // The timeout also cuts a guest blocked in a host call (poll_oneoff).
        let guest = cpu.cpu.time_async(run(&self.pre, &self.start, &mut store));
        let outcome = if metered {
            tokio::time::timeout(limits.wall_clock, guest).await
        } else {
            Ok(guest.await)
        };
        stderr.finish();
        let wall_time = started.elapsed();
        let fuel_consumed = if metered {
            limits
                .fuel_per_request
                .saturating_sub(store.get_fuel().unwrap_or(0))
        } else {
            0
        };
        let state = store.data();
        let stats = InvocationStats {
            fuel_consumed,
            cpu_time: cpu.cpu.get(),
            wall_time,
            peak_memory: state.limiter.peak as u64,
            cold_start: false,
        };
        let memory_denied = state.limiter.memory_denied;
        let mut result = match outcome {
            Err(_elapsed) => Err(SandboxError::Deadline {
                limit: limits.wall_clock,
            }),
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => classify(err, &limits, fuel_consumed, memory_denied, &stdout),
        };
        drop(store);
        if result.is_ok() && stdout.overflowed() {
            result = Err(SandboxError::OutputTooLarge {
                limit: limits.max_output_bytes,
            });
        }
        Outcome { result, stats }
    }
}

/// An event stream's head is out: the rest of `run` feeds its body from a
/// task. The run ends with the guest (the body ends), at a limit (the body
/// ends with that error) or when the client goes away (the guest is dropped).
/// Its fuel, time and memory are reported through the response's
/// [`StreamFigures`] as the stream ends (for a dropped run, as of its last
/// epoch tick).
fn stream_rest(
    mut head: http::Response<Body>,
    run: impl Future<Output = Outcome> + Send + 'static,
    stdout: &wagi::CappedOutput,
    started: Instant,
    progress: Arc<Progress>,
) -> http::Response<Body> {
    let at_head = started.elapsed();
    let at_head_cpu = progress.cpu.get();
    head.extensions_mut().insert(InvocationStats {
        wall_time: at_head,
        cpu_time: progress.cpu.get(),
        ..InvocationStats::default()
    });
    // Still the request's own run: its compute share and runtime slot stay
    // held until the body ends.
    head.extensions_mut().insert(corral_limits::Attached);
    let figures = StreamFigures::new();
    head.extensions_mut().insert(figures.clone());
    let Some(tx) = stdout.stream() else {
        return head;
    };
    let stdout = stdout.clone();
    tokio::spawn(async move {
        let outcome = tokio::select! {
            outcome = run => Some(outcome),
            () = tx.closed() => None,
        };
        // The last sender: dropping it (with `tx`) ends the body.
        let _ = stdout.take_stream();
        let Some(Outcome { result, stats }) = outcome else {
            figures.add(
                progress.fuel.load(Ordering::Relaxed),
                progress.cpu.get().saturating_sub(at_head_cpu),
                started.elapsed().saturating_sub(at_head),
                progress.peak_memory.load(Ordering::Relaxed),
            );
            return;
        };
        figures.add(
            stats.fuel_consumed,
            stats.cpu_time.saturating_sub(at_head_cpu),
            stats.wall_time.saturating_sub(at_head),
            stats.peak_memory,
        );
        if let Err(err) = result {
            figures.failed(err.error_kind());
            tx.abort(err).await;
        }
    });
    head
}

/// Maps a failed run to its typed error, or `Ok` for `proc_exit(0)`.
fn classify(
    err: wasmtime::Error,
    limits: &Limits,
    fuel_consumed: u64,
    memory_denied: bool,
    stdout: &wagi::CappedOutput,
) -> Result<(), SandboxError> {
    if stdout.overflowed() {
        return Err(SandboxError::OutputTooLarge {
            limit: limits.max_output_bytes,
        });
    }
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return match exit.0 {
            0 => Ok(()),
            code => Err(SandboxError::Trap {
                message: format!("guest exited with status {code}"),
            }),
        };
    }
    if err.is::<DeadlinePassed>() {
        return Err(SandboxError::Deadline {
            limit: limits.wall_clock,
        });
    }
    if err.is::<wasmtime::PoolConcurrencyLimitError>() {
        return Err(SandboxError::Overloaded {
            reason: format!("{err}"),
        });
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Err(SandboxError::FuelExhausted {
            limit: limits.fuel_per_request,
            consumed: fuel_consumed,
        }),
        Some(Trap::StackOverflow) => Err(SandboxError::StackOverflow),
        Some(Trap::Interrupt) => Err(SandboxError::Deadline {
            limit: limits.wall_clock,
        }),
        _ if memory_denied => Err(SandboxError::MemoryLimit {
            limit: limits.memory_bytes,
        }),
        Some(trap) => Err(SandboxError::Trap {
            message: trap.to_string(),
        }),
        None => Err(SandboxError::Trap {
            message: format!("{err:#}"),
        }),
    }
}
