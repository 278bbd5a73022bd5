//! The host side of the `WebAssembly` JS API for QuickJS tenants (the
//! prelude's `wasm` part is the spec-shaped JavaScript over it): modules
//! compiled and run by wasmtime. An instance whose imports are all JS
//! functions and values gets a store of its own, held by a [`WasmStore`]
//! token that its exports and wrappers keep, so it goes (and is uncharged)
//! when the tenant lets go of it; the objects `new WebAssembly.Memory` (and
//! `Global`, `Table`) make share the runtime's first store, with the
//! instances that import them.
//!
//! What a tenant's WebAssembly costs and who pays:
//! - **Compiling** is CPU on the request's own thread (no parallel
//!   compilation, so its CPU clock counts it), for at most
//!   [`MAX_MODULE_BYTES`] of module, and no more than the request's
//!   remaining wall clock could compile (`COMPILE_BYTES_PER_MS`); a compile
//!   that outlives the wall clock still ends the request with its deadline
//!   error.
//! - **Running** is bounded by the request's budget: one process-wide engine
//!   with epoch interruption, its epoch ticked every [`EPOCH_TICK`] while
//!   any wasm runs (the ticking thread parks when none does); at each
//!   tick the store asks the request's [`Budget`] (one fuel tick per epoch
//!   tick, and the wall clock), so an endless loop ends with the tenant's
//!   usual limit error. Wasm runs only off the async workers (an entry moves
//!   to a blocking thread first), within [`MAX_WASM_STACK`] of stack below
//!   its first frame, and JS imports it calls keep QuickJS's own stack
//!   limit (they are called without resetting QuickJS's stack top).
//! - **Memory**: linear memories, tables, compiled code and a fixed charge
//!   per instance and per host object are taken out of the tenant's memory
//!   limit (the QuickJS heap's share shrinks by as much; a growth that does
//!   not fit is refused, after a garbage collection: the heap's own
//!   thresholds never see wasm memory). Wasmtime frees a store's objects
//!   only with the store; no store outlives its runtime. A runtime holds at
//!   most 16 linear memories at once and the process 4,096 (each reserves
//!   4 GiB of address space), a store at most 1,000 instances.
//! - **Buffers**: a memory's `buffer` aliases its bytes (no copy; memories
//!   never move) and holds its store; when the memory grows the old buffer
//!   is detached (by the time wasm returns or calls JS), so no view keeps
//!   a stale length.
//! - **Threads**: modules cannot use the threads proposal (no shared memory
//!   in a module, no `memory.atomic.wait`, which would block a host thread).
//!   `new WebAssembly.Memory({shared: true, ...})` still gives a real
//!   `SharedArrayBuffer`; QuickJS's `Atomics.wait` throws (it cannot block).

#![allow(unsafe_code)]

use std::cell::{Cell, UnsafeCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rquickjs::JsLifetime;
use rquickjs::class::{Class, Trace};
use rquickjs::function::Opt;
use rquickjs::{Array, BigInt, Ctx, Exception, Function, Object, TypedArray, Value, qjs};
use wasmtime::{
    AsContextMut, Caller, Config, Engine, Extern, ExternType, Func, Global, GlobalType, Instance,
    Memory, MemoryType, Module, Mutability, Ref, RefType, ResourceLimiter, SharedMemory,
    StoreContextMut, Table, TableType, Trap, UpdateDeadline, Val, ValType,
};

use super::budget::Budget;
use super::host::{HostState, with_bytes};

/// The largest module a tenant may compile (a `RangeError` above it): it
/// bounds the CPU one compile takes, which no interrupt can stop.
pub const MAX_MODULE_BYTES: usize = 4 << 20;

/// The fastest compile assumed, in bytes of module per millisecond (faster
/// than Cranelift compiles on one core; 4 MiB took 5 s of CPU on a debug
/// test build): a module larger than the request's remaining wall clock
/// could compile at this rate is refused before compiling, so a short tier
/// cannot overrun its wall clock by much with an uninterruptible compile.
const COMPILE_BYTES_PER_MS: u128 = 8 << 10;

/// The stack wasm may use below its first frame. Requests run on 2 MiB
/// stacks of which QuickJS takes at most [`super::MAX_JS_STACK_BYTES`]
/// (1 MiB); this leaves the host the rest.
pub const MAX_WASM_STACK: usize = 256 << 10;

/// How often the engine's epoch advances (and running wasm checks its
/// request's budget).
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// What an instance is charged beyond its memories and tables (its
/// context, kept by the store until the runtime goes).
const INSTANCE_BYTES: usize = 16 << 10;
/// What each host object (a function, global, table or memory handle) is
/// charged.
const OBJECT_BYTES: usize = 256;
/// What a table element is charged.
const TABLE_ELEMENT_BYTES: usize = 16;
/// Linear memories one runtime may create (each reserves address space).
const MAX_MEMORIES: usize = 16;
/// Linear memories all JS tenants together may hold. Each reserves 4 GiB
/// of address space plus guards (its buffer must never move): 4,096 of them
/// take ~16 TiB of the 128 TiB a process has, so many apps at their own
/// caps cannot exhaust the address space every tenant's `malloc` needs.
const MAX_PROCESS_MEMORIES: usize = 4096;
/// The linear memories all runtimes hold now.
static PROCESS_MEMORIES: AtomicUsize = AtomicUsize::new(0);

/// Counts one more in `count` if it stays within `cap`.
fn take_one(count: &AtomicUsize, cap: usize) -> bool {
    count
        .fetch_update(Relaxed, Relaxed, |n| (n < cap).then_some(n + 1))
        .is_ok()
}

/// Gives `n` back to `count`.
fn give_back(count: &AtomicUsize, n: usize) {
    let _ = count.fetch_update(Relaxed, Relaxed, |m| Some(m.saturating_sub(n)));
}
const MAX_TABLES: usize = 1_000;
const MAX_INSTANCES: usize = 1_000;
const PAGE: u64 = 65_536;
/// The most pages a 32-bit memory has.
const MAX_PAGES: u64 = 65_536;

/// The engine every JS tenant's modules compile for.
fn engine() -> &'static Engine {
    &ticker().engine
}

/// The engine and the thread that advances its epoch, which ticks only
/// while some wasm runs (parked otherwise: an idle process pays nothing).
struct Ticker {
    engine: Engine,
    thread: std::thread::Thread,
    /// Outermost wasm entries running now, process-wide.
    running: AtomicUsize,
}

fn ticker() -> &'static Ticker {
    static TICKER: OnceLock<Ticker> = OnceLock::new();
    TICKER.get_or_init(|| {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            // On the request's thread, so its CPU clock counts the compile.
            .parallel_compilation(false)
            // A memory's ArrayBuffer points into it: it must never move.
            .memory_may_move(false)
            .wasm_threads(false)
            .shared_memory(true)
            .wasm_memory64(false);
        let engine = Engine::new(&cfg).expect("the JS WebAssembly engine's configuration is valid");
        let ticking = engine.clone();
        let thread = std::thread::Builder::new()
            .name("corral-js-wasm-epoch".into())
            .spawn(move || {
                loop {
                    if ticker().running.load(Relaxed) == 0 {
                        // Woken by the next entry (a wake-up that came
                        // first makes this return at once).
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .expect("spawning the WebAssembly epoch thread")
            .thread()
            .clone();
        Ticker {
            engine,
            thread,
            running: AtomicUsize::new(0),
        }
    })
}

/// An outermost wasm entry, counted while it runs so that the epoch ticks.
struct Running;

impl Running {
    fn start() -> Self {
        let t = ticker();
        if t.running.fetch_add(1, Relaxed) == 0 {
            t.thread.unpark();
        }
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        ticker().running.fetch_sub(1, Relaxed);
    }
}

/// A host import failed with a JS exception, left pending in QuickJS for
/// the native that entered wasm to rethrow.
#[derive(Debug)]
struct JsThrew;

impl fmt::Display for JsThrew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JavaScript import threw")
    }
}

impl std::error::Error for JsThrew {}

/// What the natives need of a request's charge: the tenant's memory
/// accounting ([`HostState`]) and its QuickJS runtime (to see the heap),
/// with what one store holds of it (given back when the store goes).
#[derive(Clone)]
struct Charger {
    state: Arc<HostState>,
    rt: *mut qjs::JSRuntime,
    /// Bytes this store (or module) is charged.
    charged: Arc<AtomicUsize>,
    /// Linear memories this store holds.
    memories: Arc<AtomicUsize>,
    /// Linear memories all the runtime's stores hold.
    live_memories: Arc<AtomicUsize>,
}

impl Charger {
    /// Takes `bytes` out of the heap's share of the tenant's memory, if the
    /// heap has that much room now (a trial allocation under its limit,
    /// tried again after a garbage collection, which also frees the stores
    /// nothing reaches any more).
    fn reserve(&self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        let fits = || {
            // SAFETY: `rt` is the runtime whose host functions (or wasm)
            // run now on this thread; the block is freed at once.
            unsafe {
                let block = qjs::js_malloc_rt(self.rt, size_t(bytes));
                if block.is_null() {
                    return false;
                }
                qjs::js_free_rt(self.rt, block);
                true
            }
        };
        if !fits() {
            self.collect();
            if !fits() {
                return false;
            }
        }
        self.state.wasm_bytes.fetch_add(bytes, Relaxed);
        self.charged.fetch_add(bytes, Relaxed);
        // SAFETY: as above; the heap holds less than the new limit.
        unsafe { qjs::JS_SetMemoryLimit(self.rt, size_t(self.state.heap_limit())) };
        true
    }

    /// Charges `bytes` that are held already (small host objects).
    fn add(&self, bytes: usize) {
        self.state.wasm_bytes.fetch_add(bytes, Relaxed);
        self.charged.fetch_add(bytes, Relaxed);
    }

    /// Collects the runtime's garbage (stores that wrappers no longer reach
    /// go with it: wasm memory is not in the heap, so it never triggers a
    /// collection itself).
    fn collect(&self) {
        // SAFETY: as in `reserve`; this is what QuickJS's own `gc()` does
        // from inside a host function. The store being used now is held by
        // the native using it, so its cell is not among those freed.
        unsafe { qjs::JS_RunGC(self.rt) };
    }

    /// Counts a new linear memory, if the runtime may have one more (each
    /// reserves address space, whatever its size).
    fn new_memory(&self) -> bool {
        let take = || {
            if !take_one(&self.live_memories, MAX_MEMORIES) {
                return false;
            }
            if !take_one(&PROCESS_MEMORIES, MAX_PROCESS_MEMORIES) {
                give_back(&self.live_memories, 1);
                return false;
            }
            true
        };
        let mut counted = take();
        if !counted {
            self.collect();
            counted = take();
        }
        if counted {
            self.memories.fetch_add(1, Relaxed);
        }
        counted
    }

    /// Takes back a [`Charger::new_memory`] whose memory was not made.
    fn forget_memory(&self) {
        give_back(&self.memories, 1);
        give_back(&self.live_memories, 1);
        give_back(&PROCESS_MEMORIES, 1);
    }

    /// Takes back a [`Charger::reserve`] of what was not made.
    fn unreserve(&self, bytes: usize) {
        let less = |n: usize| Some(n.saturating_sub(bytes));
        let _ = self.charged.fetch_update(Relaxed, Relaxed, less);
        let _ = self.state.wasm_bytes.fetch_update(Relaxed, Relaxed, less);
    }

    /// The same accounting, for a new store (or module) of its own.
    fn fresh(&self) -> Self {
        Self {
            charged: Arc::default(),
            memories: Arc::default(),
            ..self.clone()
        }
    }

    /// Gives back what this store (or module) was charged.
    fn release(&self) {
        let bytes = self.charged.swap(0, Relaxed);
        let _ = self
            .state
            .wasm_bytes
            .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(bytes)));
        let n = self.memories.swap(0, Relaxed);
        give_back(&self.live_memories, n);
        give_back(&PROCESS_MEMORIES, n);
    }
}

fn size_t(bytes: usize) -> qjs::size_t {
    qjs::size_t::try_from(bytes).unwrap_or(qjs::size_t::MAX)
}

/// The store's data.
struct Host {
    charger: Charger,
    budget: Arc<Budget>,
    /// The cell holding the store (set once it is built).
    cell: *const WasmCell,
    /// Every function, memory, global and table the JS side holds, by the
    /// index it knows it by.
    objects: Vec<Extern>,
    /// Functions and memories already in `objects` (by address), so the
    /// JS side sees one object per wasm one.
    known: HashMap<(u8, usize), u32>,
    /// The limiter refused a growth since this was cleared.
    refused: bool,
    /// A memory grew (so its ArrayBuffer must be detached) since this was
    /// cleared.
    grew: bool,
}

// SAFETY: the raw pointers are the runtime's and its cell's, used only on
// the thread running that runtime (which may move between threads, never
// running on two at once).
unsafe impl Send for Host {}

impl ResourceLimiter for Host {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Wasmtime asks with `current` 0 once, when it makes a memory.
        let new = current == 0;
        if new && !self.charger.new_memory() {
            self.refused = true;
            return Ok(false);
        }
        let ok = self.charger.reserve(desired.saturating_sub(current));
        if !ok && new {
            // Not made after all.
            self.charger.forget_memory();
        }
        self.refused |= !ok;
        self.grew |= ok && !new;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        let ok = self.charger.reserve(bytes);
        self.refused |= !ok;
        Ok(ok)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// What an entry into wasm passes down to the JS imports it may call: the
/// JS side's error maker and its imported functions.
struct Env<'js> {
    ctx: Ctx<'js>,
    mk_err: Function<'js>,
    imports: Array<'js>,
    buffers: Object<'js>,
}

/// One runtime's wasm store and the way back to it from inside wasm.
pub(crate) struct WasmCell {
    store: UnsafeCell<wasmtime::Store<Host>>,
    /// The innermost host call running now (wasm calling a JS import), whose
    /// `Caller` is the store while it runs; null when none.
    caller: Cell<*mut Caller<'static, Host>>,
    /// The innermost entry's [`Env`]; null when no wasm runs.
    env: Cell<*const Env<'static>>,
    charger: Charger,
}

// SAFETY: a runtime runs on one thread at a time, and only code running in
// it (its host functions, its wasm) touches its cell.
unsafe impl Send for WasmCell {}
unsafe impl Sync for WasmCell {}

impl WasmCell {
    /// A new store, charged through a fresh account of `runtime`'s.
    fn new(runtime: &Charger) -> Arc<Self> {
        let charger = runtime.fresh();
        // A runtime without one (the prelude's own tests) gets a closed budget:
        // any wasm it runs stops at its first tick.
        let budget = charger
            .state
            .budget()
            .unwrap_or_else(|| Arc::new(Budget::new()));
        let mut store = wasmtime::Store::new(
            engine(),
            Host {
                charger: charger.clone(),
                budget,
                cell: std::ptr::null(),
                objects: Vec::new(),
                known: HashMap::new(),
                refused: false,
                grew: false,
            },
        );
        store.limiter(|host| host as &mut dyn ResourceLimiter);
        store.epoch_deadline_callback(|cx| {
            if cx.data().budget.tick() {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        let cell = Arc::new(WasmCell {
            store: UnsafeCell::new(store),
            caller: Cell::new(std::ptr::null_mut()),
            env: Cell::new(std::ptr::null()),
            charger,
        });
        // SAFETY: nothing else holds the store yet.
        unsafe { (*cell.store.get()).data_mut().cell = Arc::as_ptr(&cell) };
        cell
    }

    /// The store as the innermost code running sees it.
    ///
    /// SAFETY: callers use one at a time and never across a call into JS
    /// (which may enter wasm and take it again).
    #[allow(clippy::mut_from_ref)]
    unsafe fn cx(&self) -> StoreContextMut<'_, Host> {
        let caller = self.caller.get();
        // SAFETY: see above; `caller` is live while its host call runs.
        unsafe {
            if caller.is_null() {
                (*self.store.get()).as_context_mut()
            } else {
                (*caller).as_context_mut()
            }
        }
    }

    /// Runs `f` (which runs wasm) with `env` for its imports, off the async
    /// workers and under the request's budget.
    fn enter<'js, R>(&self, env: &Env<'js>, f: impl FnOnce(StoreContextMut<'_, Host>) -> R) -> R {
        self.charger.state.before_blocking();
        let prev = self.env.replace((env as *const Env<'js>).cast());
        // SAFETY: the only store use in this native from here on.
        let mut cx = unsafe { self.cx() };
        let _running = self.caller.get().is_null().then(|| {
            cx.set_epoch_deadline(1);
            Running::start()
        });
        let out = f(cx);
        self.env.set(prev);
        out
    }
}

impl Drop for WasmCell {
    fn drop(&mut self) {
        // The store (dropped after this) frees its memories and code.
        self.charger.release();
    }
}

/// An ArrayBuffer's release hook for buffers over wasm memory: the buffer
/// holds the cell (so the memory) until it is finalized or detached.
unsafe extern "C" fn release_buffer(
    _rt: *mut qjs::JSRuntime,
    opaque: *mut c_void,
    _ptr: *mut c_void,
    size: qjs::size_t,
) -> *mut c_void {
    if size == 0 && !opaque.is_null() {
        // SAFETY: `opaque` is the `Arc::into_raw` of `memory_buffer`, and
        // QuickJS releases a buffer's data once.
        drop(unsafe { Arc::from_raw(opaque.cast::<WasmCell>()) });
    }
    // The memory cannot be reallocated into a buffer of another size.
    std::ptr::null_mut()
}

/// Calls `f` without resetting QuickJS's stack top (as rquickjs's calls
/// do): a JS import called from deep in wasm keeps the request's stack limit.
fn raw_call<'js>(
    ctx: &Ctx<'js>,
    f: &Value<'js>,
    args: &[Value<'js>],
) -> rquickjs::Result<Value<'js>> {
    let mut argv: Vec<qjs::JSValue> = args.iter().map(|a| a.as_raw()).collect();
    // SAFETY: `f` and `args` are live values of `ctx`'s runtime; JS_Call
    // does not take ownership of its arguments and returns a new value.
    unsafe {
        let ret = qjs::JS_Call(
            ctx.as_raw().as_ptr(),
            f.as_raw(),
            qjs::JS_UNDEFINED,
            argv.len() as i32,
            argv.as_mut_ptr(),
        );
        if qjs::JS_IsException(ret) {
            return Err(rquickjs::Error::Exception);
        }
        Ok(Value::from_raw(ctx.clone(), ret))
    }
}

/// Throws what the JS side's `mkErr(kind, message)` makes.
fn throw_kind<'js>(
    ctx: &Ctx<'js>,
    mk_err: &Function<'js>,
    kind: &str,
    message: &str,
) -> rquickjs::Error {
    let args = [
        rquickjs::String::from_str(ctx.clone(), kind).map(Value::from),
        rquickjs::String::from_str(ctx.clone(), message).map(Value::from),
    ];
    match args {
        [Ok(k), Ok(m)] => match raw_call(ctx, mk_err.as_value(), &[k, m]) {
            Ok(err) => ctx.throw(err),
            Err(e) => e,
        },
        _ => rquickjs::Error::Allocation,
    }
}

/// QuickJS's own interrupt error (uncatchable), for wasm stopped by the budget.
fn throw_interrupted(ctx: &Ctx<'_>) -> rquickjs::Error {
    let _ = Exception::throw_internal(ctx, "interrupted");
    let err = ctx.catch();
    // SAFETY: `err` is a live value of `ctx`.
    unsafe { qjs::JS_SetUncatchableError(ctx.as_raw().as_ptr(), err.as_raw()) };
    ctx.throw(err)
}

/// The JS error for what stopped wasm (or failed in the store): a pending
/// JS exception as it is, the budget's interrupt, a stack overflow as a
/// RangeError, another trap as a RuntimeError, else `kind`.
fn wasm_error<'js>(
    ctx: &Ctx<'js>,
    mk_err: &Function<'js>,
    err: &wasmtime::Error,
    kind: &str,
) -> rquickjs::Error {
    if err.is::<JsThrew>() {
        return rquickjs::Error::Exception;
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => throw_interrupted(ctx),
            Trap::StackOverflow => throw_kind(
                ctx,
                mk_err,
                "RangeError",
                "Maximum call stack size exceeded",
            ),
            trap => throw_kind(ctx, mk_err, "RuntimeError", &trap.to_string()),
        };
    }
    throw_kind(ctx, mk_err, kind, &format!("{err:#}"))
}

/// A type name of the JS API (`"i32"`, ...), for the value types it knows.
fn type_name(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(r) if r.heap_type().is_func() => "anyfunc",
        ValType::Ref(_) => "externref",
    }
}

fn type_named(name: &str) -> Option<ValType> {
    Some(match name {
        "i32" => ValType::I32,
        "i64" => ValType::I64,
        "f32" => ValType::F32,
        "f64" => ValType::F64,
        "anyfunc" | "funcref" => ValType::FUNCREF,
        _ => return None,
    })
}

/// Whether values of `t` cross between JS and wasm here (numbers, and
/// funcrefs through the JS side's function handles).
fn is_number(t: &ValType) -> bool {
    matches!(t, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64)
}

/// ToWebAssemblyValue for the number types (may run the value's `valueOf`).
fn to_wasm<'js>(ctx: &Ctx<'js>, v: &Value<'js>, t: &ValType) -> rquickjs::Result<Val> {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: `v` is a live value of `ctx`; the conversions only read it.
    unsafe {
        match t {
            ValType::I32 => {
                let mut out = 0i32;
                if qjs::JS_ToInt32(raw, &mut out, v.as_raw()) < 0 {
                    return Err(rquickjs::Error::Exception);
                }
                Ok(Val::I32(out))
            }
            ValType::I64 => {
                let mut out = 0i64;
                if qjs::JS_ToBigInt64(raw, &mut out, v.as_raw()) < 0 {
                    return Err(rquickjs::Error::Exception);
                }
                Ok(Val::I64(out))
            }
            ValType::F32 | ValType::F64 => {
                let mut out = 0f64;
                if qjs::JS_ToFloat64(raw, &mut out, v.as_raw()) < 0 {
                    return Err(rquickjs::Error::Exception);
                }
                Ok(if matches!(t, ValType::F32) {
                    Val::F32((out as f32).to_bits())
                } else {
                    Val::F64(out.to_bits())
                })
            }
            _ => Err(Exception::throw_type(
                ctx,
                &format!(
                    "WebAssembly: values of type {} cannot cross to JavaScript here",
                    type_name(t)
                ),
            )),
        }
    }
}

/// ToJSValue for the number types.
fn to_js<'js>(ctx: &Ctx<'js>, v: &Val) -> rquickjs::Result<Value<'js>> {
    Ok(match v {
        Val::I32(i) => Value::new_int(ctx.clone(), *i),
        Val::I64(i) => BigInt::from_i64(ctx.clone(), *i)?.into_value(),
        Val::F32(bits) => Value::new_float(ctx.clone(), f64::from(f32::from_bits(*bits))),
        Val::F64(bits) => Value::new_float(ctx.clone(), f64::from_bits(*bits)),
        _ => {
            return Err(Exception::throw_type(
                ctx,
                "WebAssembly: reference and vector values cannot cross to JavaScript here",
            ));
        }
    })
}

/// A failure found while the store is in use, thrown once it is not (making
/// a JS error may run tenant code, `Error.prepareStackTrace`, which may
/// enter wasm and take the store again).
enum Fail {
    /// A new error of the kind (`TypeError`, `RangeError`, `LinkError`, ...).
    Kind(&'static str, String),
    /// What wasmtime returned; the kind for what is not a trap.
    Wasm(wasmtime::Error, &'static str),
}

fn type_fail(message: &str) -> Fail {
    Fail::Kind("TypeError", message.to_owned())
}

fn range_fail(message: impl Into<String>) -> Fail {
    Fail::Kind("RangeError", message.into())
}

/// Throws `f` (with the JS side's error maker, for its own error kinds).
fn throw<'js>(ctx: &Ctx<'js>, mk_err: Option<&Function<'js>>, f: Fail) -> rquickjs::Error {
    match (f, mk_err) {
        (Fail::Wasm(e, kind), Some(mk)) => wasm_error(ctx, mk, &e, kind),
        (Fail::Kind(kind, message), Some(mk)) => throw_kind(ctx, mk, kind, &message),
        (Fail::Wasm(e, _), None) => Exception::throw_range(ctx, &format!("{e:#}")),
        (Fail::Kind("RangeError", message), None) => Exception::throw_range(ctx, &message),
        (Fail::Kind(_, message), None) => Exception::throw_type(ctx, &message),
    }
}

/// The index the JS side knows `e` by (one per function or memory).
fn register(cx: &mut StoreContextMut<'_, Host>, e: Extern) -> u32 {
    let key = match &e {
        Extern::Func(f) => Some((0u8, f.to_raw(&mut *cx) as usize)),
        Extern::Memory(m) => Some((1, m.data_ptr(&*cx) as usize)),
        Extern::SharedMemory(m) => Some((1, m.data().as_ptr() as usize)),
        _ => None,
    };
    let host = cx.data_mut();
    if let Some(key) = key
        && let Some(&i) = host.known.get(&key)
    {
        return i;
    }
    let i = u32::try_from(host.objects.len()).unwrap_or(u32::MAX);
    host.objects.push(e);
    if let Some(key) = key {
        host.known.insert(key, i);
    }
    host.charger.add(OBJECT_BYTES);
    i
}

fn object(cx: &StoreContextMut<'_, Host>, i: u32) -> Result<Extern, Fail> {
    cx.data()
        .objects
        .get(i as usize)
        .cloned()
        .ok_or_else(|| type_fail("WebAssembly: not a live object"))
}

fn kind_name(t: &ExternType) -> &'static str {
    match t {
        ExternType::Func(_) => "function",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        ExternType::Tag(_) => "tag",
    }
}

/// A compiled module as the JS side holds it: freed (and uncharged) when
/// the JS `Module` is collected.
struct ModuleHandle {
    module: Module,
    sections: Sections,
    /// Its own account of the runtime's charge (its code).
    charger: Charger,
}

impl Drop for ModuleHandle {
    fn drop(&mut self) {
        self.charger.release();
    }
}

/// What the JS side needs of a valid module's bytes that wasmtime does not
/// keep: its custom sections (in order) and the function index of each
/// exported function (an exported function's `name`).
#[derive(Debug, Default, PartialEq)]
struct Sections {
    custom: Vec<(String, Vec<u8>)>,
    func_exports: HashMap<String, u32>,
}

fn leb(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut out = 0usize;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        out |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

/// A name (a length and its bytes) at `at`, ending by `end`.
fn name_at(bytes: &[u8], at: &mut usize, end: usize) -> Option<String> {
    let n = leb(bytes, at)?;
    let stop = at.checked_add(n).filter(|&e| e <= end)?;
    let name = String::from_utf8_lossy(&bytes[*at..stop]).into_owned();
    *at = stop;
    Some(name)
}

fn sections(bytes: &[u8]) -> Sections {
    let mut out = Sections::default();
    let mut at = 8;
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let Some(size) = leb(bytes, &mut at) else {
            break;
        };
        let end = at.saturating_add(size).min(bytes.len());
        let mut p = at;
        if id == 0 {
            if let Some(name) = name_at(bytes, &mut p, end) {
                out.custom.push((name, bytes[p..end].to_vec()));
            }
        } else if id == 7 {
            let count = leb(bytes, &mut p).unwrap_or(0);
            for _ in 0..count {
                let Some(name) = name_at(bytes, &mut p, end) else {
                    break;
                };
                let Some(&kind) = bytes.get(p) else { break };
                p += 1;
                let Some(index) = leb(bytes, &mut p) else {
                    break;
                };
                if kind == 0 {
                    out.func_exports.insert(name, index as u32);
                }
            }
        }
        at = end;
    }
    out
}

/// Runs `f` on the store (no JS may run inside it), then throws its failure.
fn with_store<'js, R>(
    ctx: &Ctx<'js>,
    cell: &WasmCell,
    mk_err: Option<&Function<'js>>,
    f: impl FnOnce(&mut StoreContextMut<'_, Host>) -> Result<R, Fail>,
) -> rquickjs::Result<R> {
    let out = {
        // SAFETY: the only store use until `f` returns, and `f` calls no JS.
        let mut cx = unsafe { cell.cx() };
        f(&mut cx)
    };
    out.map_err(|e| throw(ctx, mk_err, e))
}

/// A store as the JS side holds it: every wrapper of a wasm object, every
/// exported function and every instance keeps its store's token, and the
/// store (its instances, memories, tables, code) goes, uncharged, once the
/// last of them is collected.
#[derive(Trace, JsLifetime)]
#[rquickjs::class]
pub(crate) struct WasmStore<'js> {
    #[qjs(skip_trace)]
    cell: Arc<WasmCell>,
    /// The JS functions this store's instances import, by position.
    imports: Array<'js>,
    /// The current ArrayBuffer of each of its memories the JS side asked
    /// for, by memory index (detached when the memory grows).
    buffers: Object<'js>,
}

type Store<'js> = Class<'js, WasmStore<'js>>;

fn cell_of(store: &Store<'_>) -> Arc<WasmCell> {
    store.borrow().cell.clone()
}

fn new_store<'js>(ctx: &Ctx<'js>, runtime: &Charger) -> rquickjs::Result<Store<'js>> {
    Class::instance(
        ctx.clone(),
        WasmStore {
            cell: WasmCell::new(runtime),
            imports: Array::new(ctx.clone())?,
            buffers: Object::new(ctx.clone())?,
        },
    )
}

/// Builds the natives object the prelude's `wasm` part runs on (made when
/// the part first loads).
pub(crate) fn natives<'js>(
    ctx: &Ctx<'js>,
    state: &Arc<HostState>,
) -> rquickjs::Result<Object<'js>> {
    // SAFETY: `ctx` is a live context.
    let rt = unsafe { qjs::JS_GetRuntime(ctx.as_raw().as_ptr()) };
    let runtime = Charger {
        state: state.clone(),
        rt,
        charged: Arc::default(),
        memories: Arc::default(),
        live_memories: Arc::default(),
    };
    let n = Object::new(ctx.clone())?;

    let r = runtime.clone();
    n.set(
        "newStore",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| new_store(&ctx, &r))?,
    )?;

    n.set(
        "validate",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, bytes: TypedArray<'js, u8>| {
            let len = with_bytes(&bytes, <[u8]>::len);
            if len > MAX_MODULE_BYTES {
                return Err(too_large(&ctx, len));
            }
            Ok(with_bytes(&bytes, |b| {
                Module::validate(engine(), b).is_ok()
            }))
        })?,
    )?;

    let r = runtime;
    n.set(
        "compile",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, bytes: TypedArray<'js, u8>, mk_err: Function<'js>| {
                compile(&ctx, &r, &bytes, &mk_err)
            },
        )?,
    )?;

    n.set(
        "call",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  st: Store<'js>,
                  i: u32,
                  args: Array<'js>,
                  mk_err: Function<'js>| { call(&ctx, &st, i, &args, mk_err) },
        )?,
    )?;

    n.set(
        "funcArity",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, st: Store<'js>, i: u32| {
            with_store(&ctx, &cell_of(&st), None, |cx| match object(cx, i)? {
                Extern::Func(f) => Ok(f.ty(&*cx).params().len() as u32),
                _ => Err(type_fail("WebAssembly: not a function")),
            })
        })?,
    )?;

    n.set(
        "memNew",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  st: Store<'js>,
                  initial: f64,
                  maximum: f64,
                  shared: bool,
                  mk_err: Function<'js>| {
                let c = cell_of(&st);
                let maximum = (maximum >= 0.0).then_some(maximum as u64);
                with_store(&ctx, &c, Some(&mk_err), |cx| {
                    mem_new(cx, &c, initial as u64, maximum, shared)
                })
            },
        )?,
    )?;

    n.set(
        "memBuffer",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, st: Store<'js>, i: u32| {
            memory_buffer(&ctx, &st, i)
        })?,
    )?;

    n.set(
        "memBytes",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, st: Store<'js>, i: u32| {
            with_store(&ctx, &cell_of(&st), None, |cx| match object(cx, i)? {
                Extern::Memory(m) => Ok(m.data_size(&*cx) as f64),
                Extern::SharedMemory(m) => Ok(m.data_size() as f64),
                _ => Err(type_fail("WebAssembly: not a memory")),
            })
        })?,
    )?;

    n.set(
        "memShared",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, st: Store<'js>, i: u32| {
            with_store(&ctx, &cell_of(&st), None, |cx| {
                Ok(matches!(object(cx, i)?, Extern::SharedMemory(_)))
            })
        })?,
    )?;

    n.set(
        "memGrow",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, st: Store<'js>, i: u32, delta: f64, mk_err: Function<'js>| {
                let c = cell_of(&st);
                let old = with_store(&ctx, &c, Some(&mk_err), |cx| {
                    mem_grow(cx, &c, i, delta as u64)
                })?;
                // Growing a memory (even by 0 pages) detaches its buffer.
                let buffers = st.borrow().buffers.clone();
                let b: Value<'js> = buffers.get(i)?;
                if !b.is_undefined()
                    && !with_store(&ctx, &c, None, |cx| {
                        Ok(matches!(object(cx, i)?, Extern::SharedMemory(_)))
                    })?
                {
                    detach(&ctx, &b);
                    buffers.remove(i)?;
                }
                Ok::<_, rquickjs::Error>(old)
            },
        )?,
    )?;

    n.set(
        "detach",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, buffer: Value<'js>| {
            detach(&ctx, &buffer)
        })?,
    )?;

    n.set(
        "globalNew",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  st: Store<'js>,
                  ty: String,
                  mutable: bool,
                  value: Value<'js>,
                  func: i32| {
                let Some(t) = type_named(&ty) else {
                    return Err(Exception::throw_type(
                        &ctx,
                        &format!("WebAssembly.Global: value type {ty} is not supported"),
                    ));
                };
                // Converted first: `valueOf` may run tenant code.
                let v = if is_number(&t) {
                    if value.is_undefined() {
                        zero(&t)
                    } else {
                        to_wasm(&ctx, &value, &t)?
                    }
                } else {
                    Val::null_func_ref()
                };
                with_store(&ctx, &cell_of(&st), None, |cx| {
                    let v = if is_number(&t) {
                        v
                    } else {
                        Val::FuncRef(func_ref(cx, func)?)
                    };
                    let m = if mutable {
                        Mutability::Var
                    } else {
                        Mutability::Const
                    };
                    let g = Global::new(&mut *cx, GlobalType::new(t, m), v)
                        .map_err(|e| type_fail(&format!("WebAssembly.Global: {e:#}")))?;
                    Ok(register(cx, Extern::Global(g)))
                })
            },
        )?,
    )?;

    n.set(
        "globalType",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, st: Store<'js>, i: u32| {
            let (t, m) = with_store(&ctx, &cell_of(&st), None, |cx| match object(cx, i)? {
                Extern::Global(g) => {
                    let ty = g.ty(&*cx);
                    Ok((type_name(ty.content()), ty.mutability() == Mutability::Var))
                }
                _ => Err(type_fail("WebAssembly: not a global")),
            })?;
            let out = Array::new(ctx.clone())?;
            out.set(0, t)?;
            out.set(1, m)?;
            Ok::<_, rquickjs::Error>(out)
        })?,
    )?;

    n.set(
        "globalGet",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, st: Store<'js>, i: u32| -> rquickjs::Result<Value<'js>> {
                let v = with_store(&ctx, &cell_of(&st), None, |cx| {
                    let Extern::Global(g) = object(cx, i)? else {
                        return Err(type_fail("WebAssembly: not a global"));
                    };
                    Ok(match g.get(&mut *cx) {
                        Val::FuncRef(None) => Val::I32(-1),
                        Val::FuncRef(Some(f)) => Val::I32(register(cx, Extern::Func(f)) as i32),
                        v => v,
                    })
                })?;
                to_js(&ctx, &v)
            },
        )?,
    )?;

    n.set(
        "globalSet",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  st: Store<'js>,
                  i: u32,
                  value: Value<'js>,
                  func: i32|
                  -> rquickjs::Result<()> {
                let c = cell_of(&st);
                let ty = with_store(&ctx, &c, None, |cx| match object(cx, i)? {
                    Extern::Global(g) => Ok(g.ty(&*cx).content().clone()),
                    _ => Err(type_fail("WebAssembly: not a global")),
                })?;
                let v = if is_number(&ty) {
                    Some(to_wasm(&ctx, &value, &ty)?)
                } else {
                    None
                };
                with_store(&ctx, &c, None, |cx| {
                    let Extern::Global(g) = object(cx, i)? else {
                        return Err(type_fail("WebAssembly: not a global"));
                    };
                    let v = match v {
                        Some(v) => v,
                        None => Val::FuncRef(func_ref(cx, func)?),
                    };
                    g.set(&mut *cx, v)
                        .map_err(|e| type_fail(&format!("WebAssembly.Global: {e:#}")))
                })
            },
        )?,
    )?;

    n.set(
        "tableNew",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, st: Store<'js>, initial: f64, maximum: f64, func: i32| {
                with_store(&ctx, &cell_of(&st), None, |cx| {
                    let init = func_ref(cx, func)?;
                    let max = (maximum >= 0.0).then_some(maximum as u32);
                    let ty = TableType::new(RefType::FUNCREF, initial as u32, max);
                    cx.data_mut().refused = false;
                    match Table::new(&mut *cx, ty, Ref::Func(init)) {
                        Ok(t) => Ok(register(cx, Extern::Table(t))),
                        Err(e) => Err(range_fail(format!("WebAssembly.Table: {e:#}"))),
                    }
                })
            },
        )?,
    )?;

    n.set(
        "tableLength",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, st: Store<'js>, i: u32| {
            with_store(&ctx, &cell_of(&st), None, |cx| {
                Ok(table(cx, i)?.size(&*cx) as f64)
            })
        })?,
    )?;

    n.set(
        "tableGet",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, st: Store<'js>, i: u32, at: f64| {
                with_store(&ctx, &cell_of(&st), None, |cx| {
                    match table(cx, i)?.get(&mut *cx, at as u64) {
                        None => Err(range_fail("WebAssembly.Table.get: index out of bounds")),
                        Some(Ref::Func(Some(f))) => Ok(register(cx, Extern::Func(f)) as i32),
                        Some(_) => Ok(-1),
                    }
                })
            },
        )?,
    )?;

    n.set(
        "tableSet",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, st: Store<'js>, i: u32, at: f64, func: i32| {
                with_store(&ctx, &cell_of(&st), None, |cx| {
                    let t = table(cx, i)?;
                    let v = func_ref(cx, func)?;
                    t.set(&mut *cx, at as u64, Ref::Func(v))
                        .map_err(|_| range_fail("WebAssembly.Table.set: index out of bounds"))
                })
            },
        )?,
    )?;

    n.set(
        "tableGrow",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, st: Store<'js>, i: u32, delta: f64, func: i32| {
                with_store(&ctx, &cell_of(&st), None, |cx| {
                    let t = table(cx, i)?;
                    let v = func_ref(cx, func)?;
                    t.grow(&mut *cx, delta as u64, Ref::Func(v))
                        .map(|old| old as f64)
                        .map_err(|_| {
                            range_fail("WebAssembly.Table.grow: cannot grow the table that far")
                        })
                })
            },
        )?,
    )?;

    Ok(n)
}

fn table(cx: &StoreContextMut<'_, Host>, i: u32) -> Result<Table, Fail> {
    match object(cx, i)? {
        Extern::Table(t) => Ok(t),
        _ => Err(type_fail("WebAssembly: not a table")),
    }
}

fn too_large(ctx: &Ctx<'_>, len: usize) -> rquickjs::Error {
    Exception::throw_range(
        ctx,
        &format!(
            "WebAssembly: the module is {len} bytes; Corral compiles modules of at most {MAX_MODULE_BYTES} bytes"
        ),
    )
}

/// A funcref argument: -1 for null, else a function's index.
fn func_ref(cx: &StoreContextMut<'_, Host>, func: i32) -> Result<Option<Func>, Fail> {
    if func < 0 {
        return Ok(None);
    }
    match object(cx, func as u32)? {
        Extern::Func(f) => Ok(Some(f)),
        _ => Err(type_fail("WebAssembly: not a function")),
    }
}

fn compile<'js>(
    ctx: &Ctx<'js>,
    runtime: &Charger,
    bytes: &TypedArray<'js, u8>,
    mk_err: &Function<'js>,
) -> rquickjs::Result<Function<'js>> {
    let len = with_bytes(bytes, <[u8]>::len);
    if len > MAX_MODULE_BYTES {
        return Err(too_large(ctx, len));
    }
    let state = &runtime.state;
    if let Some(budget) = state.budget() {
        let left = budget.remaining();
        if len as u128 > left.as_millis().saturating_mul(COMPILE_BYTES_PER_MS) {
            return Err(throw_kind(
                ctx,
                mk_err,
                "RangeError",
                &format!(
                    "WebAssembly: a module of {len} bytes cannot compile in the {} ms this request has left",
                    left.as_millis()
                ),
            ));
        }
    }
    // Compiling is long and cannot be interrupted: never on an async worker.
    state.before_blocking();
    let (compiled, parsed) = with_bytes(bytes, |b| (Module::new(engine(), b), sections(b)));
    if let Some(budget) = state.budget()
        && budget.remaining().is_zero()
    {
        // The compile took the rest of the request's time.
        budget.trip_deadline();
        return Err(throw_interrupted(ctx));
    }
    let module =
        compiled.map_err(|e| throw_kind(ctx, mk_err, "CompileError", &format!("{e:#}")))?;
    let image = module.image_range();
    let charged = (image.end as usize).saturating_sub(image.start as usize)
        + parsed
            .custom
            .iter()
            .map(|(n, b)| n.len() + b.len())
            .sum::<usize>()
        + parsed
            .func_exports
            .keys()
            .map(|n| n.len() + 32)
            .sum::<usize>();
    let charger = runtime.fresh();
    if !charger.reserve(charged) {
        return Err(throw_kind(
            ctx,
            mk_err,
            "RangeError",
            "WebAssembly: the compiled module does not fit in the tenant's memory",
        ));
    }
    let handle = ModuleHandle {
        module,
        sections: parsed,
        charger,
    };
    Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>,
              op: String,
              a: Opt<Value<'js>>,
              b: Opt<Value<'js>>,
              c: Opt<Value<'js>>,
              d: Opt<Value<'js>>| { module_op(&ctx, &handle, &op, [a.0, b.0, c.0, d.0]) },
    )
}

/// The JS side's operations on a compiled module.
fn module_op<'js>(
    ctx: &Ctx<'js>,
    h: &ModuleHandle,
    op: &str,
    args: [Option<Value<'js>>; 4],
) -> rquickjs::Result<Value<'js>> {
    let [a, b, c, d] = args;
    let out = Array::new(ctx.clone())?;
    match op {
        "imports" => {
            for (i, imp) in h.module.imports().enumerate() {
                let row = Array::new(ctx.clone())?;
                row.set(0, imp.module())?;
                row.set(1, imp.name())?;
                let ty = imp.ty();
                row.set(2, kind_name(&ty))?;
                if let ExternType::Global(g) = &ty {
                    row.set(3, type_name(g.content()))?;
                    row.set(4, g.mutability() == Mutability::Var)?;
                }
                out.set(i, row)?;
            }
        }
        "exports" => {
            for (i, exp) in h.module.exports().enumerate() {
                let row = Array::new(ctx.clone())?;
                row.set(0, exp.name())?;
                row.set(1, kind_name(&exp.ty()))?;
                out.set(i, row)?;
            }
        }
        "custom" => {
            let name: String = a.map(|v| v.get()).transpose()?.unwrap_or_default();
            let mut n = 0;
            for (section, bytes) in &h.sections.custom {
                if *section == name {
                    out.set(n, super::host::bytes_to_js(ctx, bytes)?)?;
                    n += 1;
                }
            }
        }
        "instantiate" => {
            let missing =
                || Exception::throw_type(ctx, "WebAssembly: instantiate needs four arguments");
            let store: Store<'js> = a.ok_or_else(missing)?.get()?;
            let entries: Array<'js> = b.ok_or_else(missing)?.get()?;
            let fns: Array<'js> = c.ok_or_else(missing)?.get()?;
            let mk_err: Function<'js> = d.ok_or_else(missing)?.get()?;
            return instantiate(ctx, h, &store, &entries, &fns, mk_err).map(Array::into_value);
        }
        _ => {
            return Err(Exception::throw_type(
                ctx,
                "WebAssembly: unknown module operation",
            ));
        }
    }
    Ok(out.into_value())
}

fn env_of<'js>(ctx: &Ctx<'js>, store: &Store<'js>, mk_err: Function<'js>) -> Env<'js> {
    let token = store.borrow();
    Env {
        ctx: ctx.clone(),
        mk_err,
        imports: token.imports.clone(),
        buffers: token.buffers.clone(),
    }
}

/// After wasm ran (or before it calls JS): if a memory of the store grew,
/// the ArrayBuffers over it as it was are detached, as the spec has it (and
/// as wasm-bindgen's glue relies on: it refreshes a view whose length is 0).
fn refresh_buffers<'js>(
    ctx: &Ctx<'js>,
    cell: &WasmCell,
    buffers: &Object<'js>,
) -> rquickjs::Result<()> {
    let grew = with_store(ctx, cell, None, |cx| {
        Ok(std::mem::take(&mut cx.data_mut().grew))
    })?;
    if !grew {
        return Ok(());
    }
    let keys: Vec<String> = buffers.keys::<String>().collect::<rquickjs::Result<_>>()?;
    for i in keys.iter().filter_map(|k| k.parse::<u32>().ok()) {
        let b: Value<'js> = buffers.get(i)?;
        let now = with_store(ctx, cell, None, |cx| match object(cx, i)? {
            Extern::Memory(m) => Ok(Some(m.data_size(&*cx))),
            _ => Ok(None),
        })?;
        if let Some(now) = now
            && buffer_len(ctx, &b) != Some(now)
        {
            detach(ctx, &b);
            buffers.remove(i)?;
        }
    }
    Ok(())
}

/// `ran` (what an entry into wasm came to, its exception pending if any)
/// once the buffers of memories that grew meanwhile are detached.
fn after_wasm<'js, T>(
    ctx: &Ctx<'js>,
    cell: &WasmCell,
    buffers: &Object<'js>,
    ran: rquickjs::Result<T>,
) -> rquickjs::Result<T> {
    match ran {
        Ok(v) => refresh_buffers(ctx, cell, buffers).map(|()| v),
        Err(rquickjs::Error::Exception) => {
            // Held aside while the buffers are seen to (which may throw and
            // catch), then thrown again as it was (an uncatchable interrupt
            // stays uncatchable: the mark is on the error object).
            let thrown = ctx.catch();
            refresh_buffers(ctx, cell, buffers)?;
            Err(ctx.throw(thrown))
        }
        Err(e) => Err(e),
    }
}

/// An ArrayBuffer's (or SharedArrayBuffer's) length; `None` if detached.
fn buffer_len<'js>(ctx: &Ctx<'js>, b: &Value<'js>) -> Option<usize> {
    let mut size: qjs::size_t = 0;
    // SAFETY: `b` is a live value of `ctx`; a detached (or foreign) buffer
    // is a null result with an exception, which is dropped here.
    let data = unsafe { qjs::JS_GetArrayBuffer(ctx.as_raw().as_ptr(), &mut size, b.as_raw()) };
    if data.is_null() {
        let _ = ctx.catch();
        return None;
    }
    usize::try_from(size).ok()
}

fn detach<'js>(ctx: &Ctx<'js>, b: &Value<'js>) {
    // SAFETY: `b` is a live value; detaching what is not an ArrayBuffer
    // (a SharedArrayBuffer) is a no-op.
    unsafe { qjs::JS_DetachArrayBuffer(ctx.as_raw().as_ptr(), b.as_raw()) };
}

/// Instantiates the module in `store` with the JS side's resolved imports
/// (an object's index in `store`, or `-(k + 1)` for the k-th function of
/// `fns`), returning its exports as `[name, kind, index, function index]`
/// rows.
fn instantiate<'js>(
    ctx: &Ctx<'js>,
    h: &ModuleHandle,
    store: &Store<'js>,
    entries: &Array<'js>,
    fns: &Array<'js>,
    mk_err: Function<'js>,
) -> rquickjs::Result<Array<'js>> {
    let module = &h.module;
    let cell = cell_of(store);
    let env = env_of(ctx, store, mk_err);
    let imports: Vec<_> = module.imports().map(|i| i.ty()).collect();
    let mut wanted = Vec::with_capacity(imports.len());
    for i in 0..imports.len() {
        wanted.push(entries.get::<f64>(i)? as i64);
    }
    // The store keeps the JS functions its instances import.
    let base = env.imports.len();
    for k in 0..fns.len() {
        env.imports.set(base + k, fns.get::<Value<'js>>(k)?)?;
    }
    let rows = cell
        .enter(&env, |mut cx| -> Result<Vec<(String, &'static str, u32)>, Fail> {
            let mut externs = Vec::with_capacity(imports.len());
            for (ty, &w) in imports.iter().zip(&wanted) {
                if w >= 0 {
                    externs.push(object(&cx, w as u32)?);
                    continue;
                }
                let k = usize::try_from(-(w + 1)).map_or(usize::MAX, |k| base.saturating_add(k));
                let ExternType::Func(ft) = ty else {
                    return Err(Fail::Kind("LinkError", "a JS function for a non-function import".into()));
                };
                if !ft.params().chain(ft.results()).all(|t| is_number(&t)) {
                    return Err(Fail::Kind(
                        "LinkError",
                        "Corral's JS function imports take and return numbers only (i32, i64, f32, f64)"
                            .into(),
                    ));
                }
                let func = Func::new(&mut cx, ft.clone(), move |caller, params, results| {
                    host_call(caller, k, params, results)
                });
                cx.data().charger.add(OBJECT_BYTES);
                externs.push(Extern::Func(func));
            }
            cx.data_mut().refused = false;
            if !cx.data().charger.reserve(INSTANCE_BYTES) {
                return Err(range_fail("WebAssembly.Instance: out of memory"));
            }
            let instance = match Instance::new(&mut cx, module, &externs) {
                Ok(instance) => instance,
                Err(e) if cx.data().refused => {
                    return Err(range_fail(format!(
                        "WebAssembly.Instance: past the tenant's memory limit: {e:#}"
                    )));
                }
                Err(e) => return Err(Fail::Wasm(e, "LinkError")),
            };
            let exports: Vec<(String, Extern)> = instance
                .exports(&mut cx)
                .map(|e| (e.name().to_owned(), e.into_extern()))
                .collect();
            Ok(exports
                .into_iter()
                .map(|(name, e)| {
                    let kind = kind_name(&e.ty(&cx));
                    let i = register(&mut cx, e);
                    (name, kind, i)
                })
                .collect())
        })
        .map_err(|f| throw(ctx, Some(&env.mk_err), f));
    let rows = after_wasm(ctx, &cell, &env.buffers, rows)?;
    let out = Array::new(ctx.clone())?;
    for (n, (name, kind, i)) in rows.into_iter().enumerate() {
        let row = Array::new(ctx.clone())?;
        row.set(0, name.as_str())?;
        row.set(1, kind)?;
        row.set(2, i)?;
        // An exported function's name is its index in the module.
        if let Some(&f) = h.sections.func_exports.get(&name) {
            row.set(3, f)?;
        }
        out.set(n, row)?;
    }
    Ok(out)
}

/// A JS function import called from wasm: the `k`-th of the entry's imports.
fn host_call(
    mut caller: Caller<'_, Host>,
    k: usize,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    // SAFETY: the cell holds the store this caller is of.
    let cell = unsafe { &*caller.data().cell };
    let env = cell.env.get();
    if env.is_null() {
        return Err(Trap::Interrupt.into());
    }
    // SAFETY: wasm runs only inside `WasmCell::enter`, whose `Env` outlives it.
    let env: &Env<'_> = unsafe { &*env };
    let prev = cell
        .caller
        .replace((&mut caller as *mut Caller<'_, Host>).cast());
    // The import may read a view of memory that grew: detached first.
    let out = refresh_buffers(&env.ctx, cell, &env.buffers)
        .and_then(|()| call_js(env, k, params, results));
    cell.caller.set(prev);
    out.map_err(|_| wasmtime::Error::new(JsThrew))
}

fn call_js(env: &Env<'_>, k: usize, params: &[Val], results: &mut [Val]) -> rquickjs::Result<()> {
    let ctx = &env.ctx;
    let f: Value<'_> = env.imports.get(k)?;
    let args = params
        .iter()
        .map(|p| to_js(ctx, p))
        .collect::<rquickjs::Result<Vec<_>>>()?;
    let ret = raw_call(ctx, &f, &args)?;
    let types: Vec<ValType> = results
        .iter()
        .map(|r| match r {
            Val::I64(_) => ValType::I64,
            Val::F32(_) => ValType::F32,
            Val::F64(_) => ValType::F64,
            _ => ValType::I32,
        })
        .collect();
    match results.len() {
        0 => {}
        1 => results[0] = to_wasm(ctx, &ret, &types[0])?,
        n => {
            let Some(list) = ret.as_array() else {
                return Err(Exception::throw_type(
                    ctx,
                    "WebAssembly: an import with several results must return an array",
                ));
            };
            if list.len() != n {
                return Err(Exception::throw_type(
                    ctx,
                    "WebAssembly: an import returned the wrong number of results",
                ));
            }
            for (i, t) in types.iter().enumerate() {
                results[i] = to_wasm(ctx, &list.get(i)?, t)?;
            }
        }
    }
    Ok(())
}

/// The zero value of `t` (also a result's placeholder, whose kind tells
/// `call_js` its type).
fn zero(t: &ValType) -> Val {
    match t {
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        ValType::V128 => Val::V128(0u128.into()),
        ValType::Ref(_) => Val::null_func_ref(),
        ValType::I32 => Val::I32(0),
    }
}

fn call<'js>(
    ctx: &Ctx<'js>,
    store: &Store<'js>,
    i: u32,
    args: &Array<'js>,
    mk_err: Function<'js>,
) -> rquickjs::Result<Value<'js>> {
    let cell = &cell_of(store);
    let env = env_of(ctx, store, mk_err);
    let (func, ty) = with_store(ctx, cell, None, |cx| match object(cx, i)? {
        Extern::Func(f) => Ok((f, f.ty(&*cx))),
        _ => Err(type_fail("WebAssembly: not a function")),
    })?;
    // Converted before wasm runs: `valueOf` may run tenant code.
    let mut params = Vec::with_capacity(ty.params().len());
    for (n, t) in ty.params().enumerate() {
        let v: Value<'js> = args.get(n)?;
        params.push(to_wasm(ctx, &v, &t)?);
    }
    let mut results: Vec<Val> = ty.results().map(|t| zero(&t)).collect();
    if !ty.results().all(|t| is_number(&t)) {
        return Err(Exception::throw_type(
            ctx,
            "WebAssembly: this function returns values that cannot cross to JavaScript here",
        ));
    }
    let ran = cell
        .enter(&env, |mut cx| func.call(&mut cx, &params, &mut results))
        .map_err(|e| wasm_error(ctx, &env.mk_err, &e, "RuntimeError"));
    after_wasm(ctx, cell, &env.buffers, ran)?;
    match results.len() {
        0 => Ok(Value::new_undefined(ctx.clone())),
        1 => to_js(ctx, &results[0]),
        _ => {
            let out = Array::new(ctx.clone())?;
            for (n, r) in results.iter().enumerate() {
                out.set(n, to_js(ctx, r)?)?;
            }
            Ok(out.into_value())
        }
    }
}

fn mem_new(
    cx: &mut StoreContextMut<'_, Host>,
    cell: &WasmCell,
    initial: u64,
    maximum: Option<u64>,
    shared: bool,
) -> Result<u32, Fail> {
    if initial > MAX_PAGES || maximum.is_some_and(|m| m > MAX_PAGES || m < initial) {
        return Err(range_fail("WebAssembly.Memory: invalid size"));
    }
    let refused = || {
        range_fail(format!(
            "WebAssembly.Memory: {initial} pages do not fit in the tenant's memory (or its runtime has {MAX_MEMORIES} memories already)"
        ))
    };
    let e = if shared {
        let Some(maximum) = maximum else {
            return Err(type_fail(
                "WebAssembly.Memory: a shared memory needs a maximum",
            ));
        };
        // Not made by the store: the host counts it and charges its growth
        // itself.
        if !cell.charger.new_memory() {
            return Err(refused());
        }
        let bytes = (initial * PAGE) as usize;
        if !cell.charger.reserve(bytes) {
            cell.charger.forget_memory();
            return Err(refused());
        }
        let ty = MemoryType::shared(initial as u32, maximum as u32);
        match SharedMemory::new(engine(), ty) {
            Ok(m) => Extern::SharedMemory(m),
            Err(e) => {
                cell.charger.forget_memory();
                cell.charger.unreserve(bytes);
                return Err(range_fail(format!("WebAssembly.Memory: {e:#}")));
            }
        }
    } else {
        let ty = MemoryType::new(initial as u32, maximum.map(|m| m as u32));
        cx.data_mut().refused = false;
        match Memory::new(&mut *cx, ty) {
            Ok(m) => Extern::Memory(m),
            Err(_) if cx.data().refused => return Err(refused()),
            Err(e) => return Err(range_fail(format!("WebAssembly.Memory: {e:#}"))),
        }
    };
    Ok(register(cx, e))
}

fn mem_grow(
    cx: &mut StoreContextMut<'_, Host>,
    cell: &WasmCell,
    i: u32,
    delta: u64,
) -> Result<f64, Fail> {
    let failed = |why: &str| range_fail(format!("WebAssembly.Memory.grow: {why}"));
    match object(cx, i)? {
        Extern::Memory(m) => {
            cx.data_mut().refused = false;
            match m.grow(&mut *cx, delta) {
                Ok(old) => Ok(old as f64),
                Err(_) if cx.data().refused => Err(failed("past the tenant's memory limit")),
                Err(_) => Err(failed("past the memory's maximum")),
            }
        }
        Extern::SharedMemory(m) => {
            let max = m.ty().maximum().unwrap_or(MAX_PAGES);
            if m.size().saturating_add(delta) > max {
                return Err(failed("past the memory's maximum"));
            }
            let bytes = (delta * PAGE) as usize;
            if !cell.charger.reserve(bytes) {
                return Err(failed("past the tenant's memory limit"));
            }
            match m.grow(delta) {
                Ok(old) => Ok(old as f64),
                Err(_) => {
                    cell.charger.unreserve(bytes);
                    Err(failed("past the memory's maximum"))
                }
            }
        }
        _ => Err(type_fail("WebAssembly: not a memory")),
    }
}

/// The memory's ArrayBuffer (a SharedArrayBuffer for a shared memory): the
/// one made before while the memory has not grown, else a new one over its
/// bytes as they are now (the old one detached, unless shared).
fn memory_buffer<'js>(ctx: &Ctx<'js>, store: &Store<'js>, i: u32) -> rquickjs::Result<Value<'js>> {
    let cell = &cell_of(store);
    let buffers = store.borrow().buffers.clone();
    let (ptr, len, shared) = with_store(ctx, cell, None, |cx| match object(cx, i)? {
        Extern::Memory(m) => Ok((m.data_ptr(&*cx), m.data_size(&*cx), false)),
        Extern::SharedMemory(m) => Ok((m.data().as_ptr() as *mut u8, m.data_size(), true)),
        _ => Err(type_fail("WebAssembly: not a memory")),
    })?;
    let cached: Value<'js> = buffers.get(i)?;
    if !cached.is_undefined() {
        if buffer_len(ctx, &cached) == Some(len) {
            return Ok(cached);
        }
        detach(ctx, &cached);
    }
    let opaque = Arc::into_raw(cell.clone()) as *mut c_void;
    // SAFETY: the memory never moves (`memory_may_move(false)`; shared
    // memories never do) and lives while the store does, which the buffer
    // keeps alive through `opaque` until QuickJS releases it.
    unsafe {
        let v = qjs::JS_NewArrayBuffer(
            ctx.as_raw().as_ptr(),
            ptr,
            size_t(len),
            0,
            Some(release_buffer),
            opaque,
            shared,
        );
        if qjs::JS_IsException(v) {
            drop(Arc::from_raw(opaque.cast::<WasmCell>()));
            return Err(rquickjs::Error::Exception);
        }
        let b = Value::from_raw(ctx.clone(), v);
        buffers.set(i, b.clone())?;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_stops_at_its_cap_and_takes_back_what_is_given() {
        let count = AtomicUsize::new(0);
        assert!((0..3).all(|_| take_one(&count, 3)));
        assert!(!take_one(&count, 3), "a fourth is refused");
        give_back(&count, 2);
        assert!(take_one(&count, 3));
        give_back(&count, 9);
        assert_eq!(count.load(Relaxed), 0, "never below zero");
    }

    #[test]
    fn finds_custom_sections_and_exported_function_indices() {
        let wasm = wat::parse_str(
            r#"(module (@custom "hello" "abc") (func) (func (export "b")) (memory (export "m") 0))"#,
        )
        .unwrap();
        let found = sections(&wasm);
        assert_eq!(found.custom, vec![("hello".to_string(), b"abc".to_vec())]);
        assert_eq!(found.func_exports.get("b"), Some(&1));
        assert_eq!(found.func_exports.len(), 1);
    }
}
