//! An optional V8 backend for JavaScript tenants (feature `v8`, off by
//! default): the same Workers-style ES modules, the same prelude (`Request`,
//! `Response`, `URL`, `env.KV`, timers, …) and the same [`Backend`] /
//! [`Program`] traits as [`QuickJsBackend`](crate::QuickJsBackend), so
//! limits, metering, storage and parking apply unchanged. Install it with
//! [`Registry::builder`](crate::Registry::builder)`(dir).backend(Arc::new(V8Backend::new()))`.
//!
//! Building it: `RUSTY_V8_SKIP_DOWNLOAD=1 cargo check -p corral --features v8`
//! type-checks offline (the `v8` crate ships its bindings). Linking and running
//! need `RUSTY_V8_ARCHIVE` pointing at a prebuilt rusty_v8 static library for
//! the `v8` crate's version; the reference machine cannot fetch one, so this
//! backend is compiled in CI but its tests do not run there.
//!
//! How the limits map onto V8:
//! - one isolate per warm tenant (its own heap and GC), on a thread of its own
//!   (`OwnedIsolate` is not `Send`); parking drops the program, which ends the
//!   thread and disposes of the isolate;
//! - `memory_bytes` is the isolate's heap limit; near it, a callback terminates
//!   the running script and the request fails with `MemoryLimit` (V8 would
//!   otherwise abort the whole process);
//! - `ArrayBuffer` contents live outside that heap, so each isolate gets its
//!   own allocator ([`BufferBudget`]) that refuses a buffer when the buffers
//!   held plus the heap in use (sampled between requests) would pass
//!   `memory_bytes`: the guest's allocation throws `RangeError`, which ends the
//!   request as `MemoryLimit` when uncaught. Buffers the host hands to the
//!   guest (request bodies, encoder output, random bytes, KV values) come
//!   from the same allocator;
//! - `wall_clock` is a watchdog that terminates the script at the deadline
//!   (`Deadline`); V8 counts no instructions, so `fuel_per_request` is not
//!   enforced and the fuel reported is 0;
//! - stack exhaustion is V8's own `RangeError` → `StackOverflow`.
//!
//! Artifacts are per backend (this one stores the module source): tenants
//! deployed under QuickJS are redeployed after switching, or their wake
//! fails with `CorruptArtifact`.
//!
//! ```rust,ignore
//! // Needs the `v8` feature and a linkable rusty_v8 (RUSTY_V8_ARCHIVE): not
//! // run on the reference machine, hence `ignore`.
//! use std::sync::Arc;
//! use corral::{Registry, V8Backend};
//! let registry = Registry::builder("./corral-data")
//!     .backend(Arc::new(V8Backend::new()))   // JS tenants now run on V8
//!     .open()?;
//! ```
#![allow(unsafe_code)] // v8's scope macros pin on the stack; the heap-limit callback takes a raw pointer.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::js::engine::{PRELUDE_SOURCE, request_url};
use crate::js::entry_source;
use crate::js::host::{HostState, Scope, kv_op};
use crate::js::{compress, multipart, subtle, web};
use crate::{
    Backend, BoxFuture, InvocationStats, InvokeContext, Kind, Limits, Program, SandboxError,
};

/// First bytes of a V8 artifact: the entry module's source follows.
const MAGIC: &[u8] = b"corral-v8-source\n";

/// Most random bytes one `crypto.getRandomValues` call may ask for.
const MAX_RANDOM_BYTES: usize = 65_536;

/// The V8 backend. See the [module docs](self).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct V8Backend;

impl V8Backend {
    /// A V8 backend; V8 itself is initialised once per process on first use.
    pub fn new() -> Self {
        Self
    }
}

fn init_v8() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let platform = v8::new_default_platform(0, false).make_shared();
        v8::V8::initialize_platform(platform);
        v8::V8::initialize();
    });
}

impl Backend for V8Backend {
    fn kind(&self) -> Kind {
        Kind::Js
    }

    /// Validates the module by booting it once (compile, link, top-level
    /// evaluation) and stores its source: V8's code cache is tied to the exact
    /// V8 build and flags, so the source is the portable artifact.
    fn precompile(&self, source: &[u8], limits: &Limits) -> Result<Vec<u8>, SandboxError> {
        let source = entry_source(source)?;
        drop(V8Program::boot(source.clone(), limits.clone())?);
        let mut artifact = MAGIC.to_vec();
        artifact.extend_from_slice(source.as_bytes());
        Ok(artifact)
    }

    fn load(&self, artifact: &[u8], limits: &Limits) -> Result<Arc<dyn Program>, SandboxError> {
        let corrupt = |reason: &str| SandboxError::CorruptArtifact {
            reason: reason.into(),
        };
        let source = artifact
            .strip_prefix(MAGIC)
            .ok_or_else(|| corrupt("not a V8 artifact"))?;
        let source = String::from_utf8(source.to_vec())
            .map_err(|_| corrupt("the V8 artifact's source is not UTF-8"))?;
        Ok(Arc::new(V8Program::boot(source, limits.clone())?))
    }
}

/// One request for the isolate's thread.
struct Job {
    cx: InvokeContext,
    parts: http::request::Parts,
    body: Bytes,
    reply: tokio::sync::oneshot::Sender<Result<http::Response<Bytes>, SandboxError>>,
}

/// A warm V8 tenant: a thread owning the isolate, fed requests one at a
/// time. A request that ends its isolate (a memory or time limit) is answered
/// with its error and the next request boots a fresh isolate from the source.
pub struct V8Program {
    source: String,
    limits: Limits,
    worker: Mutex<Option<Worker>>,
}

/// The isolate thread and its request queue.
struct Worker {
    jobs: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
}

impl Worker {
    /// Starts the isolate thread and waits until the module has booted.
    fn start(source: &str, limits: &Limits) -> Result<Self, SandboxError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (source, limits) = (source.to_owned(), limits.clone());
        let thread = std::thread::Builder::new()
            .name("corral-v8".into())
            .spawn(move || isolate_thread(&source, &limits, &ready_tx, &job_rx))
            .map_err(|e| SandboxError::internal("starting a V8 isolate thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { jobs, thread }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(internal("the isolate thread ended while booting"))
            }
        }
    }

    /// Closing the queue ends the thread's loop; the isolate is disposed of
    /// on the thread that created it.
    fn stop(self) {
        drop(self.jobs);
        let _ = self.thread.join();
    }
}

impl std::fmt::Debug for V8Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V8Program").finish_non_exhaustive()
    }
}

impl Drop for V8Program {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.lock().take() {
            worker.stop();
        }
    }
}

impl V8Program {
    /// Boots the module in its own isolate (a cold start).
    fn boot(source: String, limits: Limits) -> Result<Self, SandboxError> {
        let worker = Worker::start(&source, &limits)?;
        Ok(Self {
            source,
            limits,
            worker: Mutex::new(Some(worker)),
        })
    }
}

impl Program for V8Program {
    fn invoke(
        self: Arc<Self>,
        cx: InvokeContext,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<crate::Body>, SandboxError>> {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = Job {
                cx,
                parts,
                body,
                reply,
            };
            // The fast path: the isolate is up and takes the job.
            let refused = match self.worker.lock().as_ref() {
                Some(worker) => worker
                    .jobs
                    .send(job)
                    .err()
                    .map(|mpsc::SendError(back)| back),
                None => Some(job),
            };
            if let Some(job) = refused {
                // The isolate ended (a limit hit it): boot a fresh one off the
                // executor, then hand it the job.
                let this = self.clone();
                tokio::task::spawn_blocking(move || {
                    let worker = Worker::start(&this.source, &this.limits)?;
                    if let Some(old) = this.worker.lock().replace(worker) {
                        old.stop();
                    }
                    Ok::<_, SandboxError>(())
                })
                .await
                .map_err(|e| SandboxError::internal("booting a V8 isolate", e))??;
                let sent = self
                    .worker
                    .lock()
                    .as_ref()
                    .is_some_and(|worker| worker.jobs.send(job).is_ok());
                if !sent {
                    return Err(internal("the fresh isolate thread is gone"));
                }
            }
            let response = answer
                .await
                .map_err(|_| internal("the isolate thread ended during the request"))??;
            Ok(response.map(crate::Body::full))
        })
    }
}

/// What the near-heap-limit callback reaches through its data pointer.
struct HeapGuard {
    handle: std::sync::OnceLock<v8::IsolateHandle>,
    hit: AtomicBool,
}

extern "C" fn near_heap_limit(data: *mut c_void, current: usize, _initial: usize) -> usize {
    // SAFETY: `data` points into the `HeapGuard` box of `isolate_thread`,
    // declared before the isolate there and so dropped after it.
    let guard = unsafe { &*(data as *const HeapGuard) };
    guard.hit.store(true, Ordering::SeqCst);
    if let Some(handle) = guard.handle.get() {
        handle.terminate_execution();
    }
    // Room to unwind the terminated script instead of V8 aborting the process.
    current.saturating_mul(2)
}

/// One isolate's `ArrayBuffer` allocator: it counts the bytes of every
/// backing store and refuses one that would take the buffers plus the heap
/// in use past the tenant's memory. V8 frees backing stores from its
/// background threads too, hence the atomics.
#[derive(Debug)]
struct BufferBudget {
    limit: usize,
    /// Bytes of live backing stores.
    used: AtomicUsize,
    /// The isolate's used heap as of its last sample (after boot and after
    /// each request): what the heap takes of the tenant's memory.
    heap: AtomicUsize,
}

/// Alignment of backing stores (what `calloc` guarantees on 64-bit hosts).
const BUFFER_ALIGN: usize = 16;

impl BufferBudget {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            heap: AtomicUsize::new(0),
        }
    }

    /// Whether `len` more bytes of buffers would fit now.
    fn fits(&self, len: usize) -> bool {
        let held = self.used.load(Ordering::SeqCst) + self.heap.load(Ordering::SeqCst);
        held.saturating_add(len) <= self.limit
    }

    /// Takes `len` bytes of the budget, or says no.
    fn reserve(&self, len: usize) -> bool {
        let heap = self.heap.load(Ordering::SeqCst);
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                let total = used.checked_add(len)?;
                (total.saturating_add(heap) <= self.limit).then_some(total)
            })
            .is_ok()
    }

    fn release(&self, len: usize) {
        self.used.fetch_sub(len, Ordering::SeqCst);
    }

    /// A V8 allocator drawing on this budget (the budget lives as long as
    /// the allocator: V8 drops its reference through `vtable.drop`).
    fn allocator(self: &Arc<Self>) -> v8::UniqueRef<v8::Allocator> {
        static VTABLE: v8::RustAllocatorVtable<BufferBudget> = v8::RustAllocatorVtable {
            allocate: buffer_allocate,
            allocate_uninitialized: buffer_allocate_uninitialized,
            free: buffer_free,
            drop: buffer_budget_drop,
        };
        // SAFETY: the handle is a strong `Arc` reference, given back by
        // `buffer_budget_drop` when V8 drops the allocator; every vtable
        // function takes it as a `BufferBudget`.
        unsafe { v8::new_rust_allocator(Arc::into_raw(self.clone()), &VTABLE) }
    }
}

fn buffer_layout(len: usize) -> Option<std::alloc::Layout> {
    std::alloc::Layout::from_size_align(len.max(1), BUFFER_ALIGN).ok()
}

fn buffer_alloc(budget: &BufferBudget, len: usize, zeroed: bool) -> *mut c_void {
    let Some(layout) = buffer_layout(len) else {
        return std::ptr::null_mut();
    };
    if !budget.reserve(len) {
        // V8 collects garbage and retries, then throws `RangeError`.
        return std::ptr::null_mut();
    }
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe {
        if zeroed {
            std::alloc::alloc_zeroed(layout)
        } else {
            std::alloc::alloc(layout)
        }
    };
    if ptr.is_null() {
        budget.release(len);
    }
    ptr.cast()
}

unsafe extern "C" fn buffer_allocate(budget: &BufferBudget, len: usize) -> *mut c_void {
    buffer_alloc(budget, len, true)
}

unsafe extern "C" fn buffer_allocate_uninitialized(
    budget: &BufferBudget,
    len: usize,
) -> *mut c_void {
    buffer_alloc(budget, len, false)
}

unsafe extern "C" fn buffer_free(budget: &BufferBudget, data: *mut c_void, len: usize) {
    if data.is_null() {
        return;
    }
    if let Some(layout) = buffer_layout(len) {
        // SAFETY: V8 frees what `buffer_alloc` returned for this `len`, with
        // the same layout.
        unsafe { std::alloc::dealloc(data.cast(), layout) };
        budget.release(len);
    }
}

unsafe extern "C" fn buffer_budget_drop(budget: *const BufferBudget) {
    // SAFETY: the reference `BufferBudget::allocator` leaked for V8.
    drop(unsafe { Arc::from_raw(budget) });
}

/// Why a script stopped, besides what it threw.
struct Stops {
    heap: Box<HeapGuard>,
    deadline: Arc<AtomicBool>,
}

impl Stops {
    fn error(&self, limits: &Limits) -> Option<SandboxError> {
        if self.heap.hit.load(Ordering::SeqCst) {
            return Some(SandboxError::MemoryLimit {
                limit: limits.memory_bytes,
            });
        }
        if self.deadline.load(Ordering::SeqCst) {
            return Some(SandboxError::Deadline {
                limit: limits.wall_clock,
            });
        }
        None
    }
}

/// Terminates the isolate's script when `wall` passes, unless dropped first.
struct Watchdog {
    cancel: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn arm(handle: v8::IsolateHandle, wall: Duration, tripped: Arc<AtomicBool>) -> Self {
        let (cancel, cancelled) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("corral-v8-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(wall) {
                    tripped.store(true, Ordering::SeqCst);
                    handle.terminate_execution();
                }
            })
            .ok();
        Self {
            cancel: Some(cancel),
            thread,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.cancel.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn isolate_thread(
    source: &str,
    limits: &Limits,
    ready: &mpsc::Sender<Result<(), SandboxError>>,
    jobs: &mpsc::Receiver<Job>,
) {
    init_v8();
    // Declared before the isolate so it is dropped after it: the heap-limit
    // callback holds a pointer to it for the isolate's whole life.
    let stops = Stops {
        heap: Box::new(HeapGuard {
            handle: std::sync::OnceLock::new(),
            hit: AtomicBool::new(false),
        }),
        deadline: Arc::new(AtomicBool::new(false)),
    };
    let heap_max = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
    let buffers = Arc::new(BufferBudget::new(heap_max));
    let isolate = &mut v8::Isolate::new(
        v8::CreateParams::default()
            .heap_limits(0, heap_max)
            .array_buffer_allocator(buffers.allocator()),
    );
    let _ = stops.heap.handle.set(isolate.thread_safe_handle());
    let data = std::ptr::from_ref::<HeapGuard>(&stops.heap)
        .cast_mut()
        .cast::<c_void>();
    isolate.add_near_heap_limit_callback(near_heap_limit, data);
    let host = Arc::new(HostState::new(heap_max));
    isolate.set_slot(host.clone());
    isolate.set_slot(buffers.clone());
    let handle = isolate.thread_safe_handle();

    v8::scope!(let scope, isolate);
    let context = v8::Context::new(scope, Default::default());
    let scope = &mut v8::ContextScope::new(scope, context);

    let booted = {
        let _dog = Watchdog::arm(handle.clone(), limits.wall_clock, stops.deadline.clone());
        boot(scope, source, limits, &stops)
    };
    let internals = match booted {
        Ok(internals) => {
            let _ = ready.send(Ok(()));
            internals
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let internals = v8::Global::new(scope, internals);
    sample_heap(scope, &buffers);
    for job in jobs {
        let limits = job.cx.limits.clone();
        host.enter(Scope {
            tenant: job.cx.tenant.clone(),
            log: job.cx.log.writer(),
            kv: job.cx.kv.clone(),
        });
        stops.deadline.store(false, Ordering::SeqCst);
        stops.heap.hit.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let result = {
            let _dog = Watchdog::arm(handle.clone(), limits.wall_clock, stops.deadline.clone());
            v8::scope!(let request_scope, scope);
            let internals = v8::Local::new(request_scope, &internals);
            run(request_scope, internals, &job, &limits, &stops)
        };
        host.leave();
        sample_heap(scope, &buffers);
        let result = result.map(|mut response| {
            let mut stats = InvocationStats::default();
            stats.wall_time = started.elapsed();
            response.extensions_mut().insert(stats);
            response
        });
        let fatal = matches!(
            result,
            Err(SandboxError::MemoryLimit { .. } | SandboxError::Deadline { .. })
        );
        let _ = job.reply.send(result);
        if fatal {
            // A terminated script may have left the heap in any state: end
            // this isolate; the program boots a fresh one for the next request.
            return;
        }
        handle.cancel_terminate_execution();
    }
}

/// The prelude as one module: V8 evaluates every part of it at boot.
fn prelude_source() -> &'static str {
    static WHOLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    WHOLE.get_or_init(|| crate::js::split::whole(PRELUDE_SOURCE))
}

/// Installs the host functions, evaluates the prelude and the tenant module,
/// and hands the module to the prelude. Returns the prelude's `internals`.
fn boot<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    source: &str,
    limits: &Limits,
    stops: &Stops,
) -> Result<v8::Local<'s, v8::Object>, SandboxError> {
    install_host(scope)?;
    let prelude = eval_module(scope, prelude_source(), "corral:prelude", limits, stops)?;
    let internals = get(scope, prelude, "default")?
        .to_object(scope)
        .ok_or_else(|| internal("the prelude exports no internals"))?;
    let module = eval_module(scope, source, "app.js", limits, stops)?;
    call(
        scope,
        internals,
        "setModule",
        &[module.into()],
        limits,
        stops,
    )?;
    Ok(internals)
}

fn internal(message: &str) -> SandboxError {
    SandboxError::Internal {
        message: format!("V8: {message}"),
        source: None,
    }
}

fn v8_str<'s>(
    scope: &v8::PinScope<'s, '_>,
    s: &str,
) -> Result<v8::Local<'s, v8::String>, SandboxError> {
    v8::String::new(scope, s).ok_or_else(|| internal("string too long"))
}

fn get<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    key: &str,
) -> Result<v8::Local<'s, v8::Value>, SandboxError> {
    let key = v8_str(scope, key)?;
    object
        .get(scope, key.into())
        .ok_or_else(|| internal("property read failed"))
}

/// Compiles, links (no imports) and evaluates an ES module; returns its namespace.
fn eval_module<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    source: &str,
    name: &str,
    limits: &Limits,
    stops: &Stops,
) -> Result<v8::Local<'s, v8::Object>, SandboxError> {
    v8::tc_scope!(let tc, scope);
    let code = v8_str(tc, source)?;
    let resource = v8_str(tc, name)?;
    let origin = v8::ScriptOrigin::new(
        tc,
        resource.into(),
        0,
        0,
        false,
        0,
        None,
        false,
        false,
        true,
        None,
    );
    let mut src = v8::script_compiler::Source::new(code, Some(&origin));
    let Some(module) = v8::script_compiler::compile_module(tc, &mut src) else {
        let (message, line, col) = caught_message(tc);
        return Err(SandboxError::InvalidModule {
            reason: format!("{name}:{line}:{col}: {message}"),
        });
    };
    if module.instantiate_module(tc, no_imports).is_none() {
        let (message, _, _) = caught_message(tc);
        return Err(SandboxError::InvalidModule {
            reason: format!("{name}: imports are not supported: {message}"),
        });
    }
    let evaluated = module.evaluate(tc);
    if let Some(err) = stops.error(limits) {
        return Err(err);
    }
    let Some(promise) = evaluated else {
        return Err(thrown(tc, limits, stops));
    };
    if let Ok(promise) = v8::Local::<v8::Promise>::try_from(promise) {
        settle(tc, promise, None, limits, stops)?;
    }
    module
        .get_module_namespace()
        .to_object(tc)
        .ok_or_else(|| internal("a module namespace is not an object"))
}

fn no_imports<'s>(
    _context: v8::Local<'s, v8::Context>,
    _specifier: v8::Local<'s, v8::String>,
    _attributes: v8::Local<'s, v8::FixedArray>,
    _referrer: v8::Local<'s, v8::Module>,
) -> Option<v8::Local<'s, v8::Module>> {
    None
}

/// Calls `object[method](...args)`.
fn call<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    method: &str,
    args: &[v8::Local<'s, v8::Value>],
    limits: &Limits,
    stops: &Stops,
) -> Result<v8::Local<'s, v8::Value>, SandboxError> {
    let f = get(scope, object, method)?;
    let f =
        v8::Local::<v8::Function>::try_from(f).map_err(|_| internal("prelude method missing"))?;
    v8::tc_scope!(let tc, scope);
    match f.call(tc, object.into(), args) {
        Some(v) => Ok(v),
        None => Err(thrown(tc, limits, stops)),
    }
}

/// Runs microtasks (and the request's timers, when `internals` is given)
/// until `promise` settles.
fn settle<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    promise: v8::Local<'s, v8::Promise>,
    internals: Option<v8::Local<'s, v8::Object>>,
    limits: &Limits,
    stops: &Stops,
) -> Result<v8::Local<'s, v8::Value>, SandboxError> {
    let started = Instant::now();
    loop {
        scope.perform_microtask_checkpoint();
        if let Some(err) = stops.error(limits) {
            return Err(err);
        }
        match promise.state() {
            v8::PromiseState::Fulfilled => return Ok(promise.result(scope)),
            v8::PromiseState::Rejected => {
                let reason = promise.result(scope);
                return Err(classify(scope, reason, None, limits));
            }
            v8::PromiseState::Pending => {}
        }
        let Some(internals) = internals else {
            return Err(never_settles());
        };
        let only = v8::Number::new(scope, ONLY_SCOPE).into();
        let next = call(scope, internals, "nextTimer", &[only], limits, stops)?
            .number_value(scope)
            .unwrap_or(-1.0);
        if next < 0.0 {
            return Err(never_settles());
        }
        let wait = Duration::from_secs_f64(next / 1000.0);
        let remaining = limits.wall_clock.saturating_sub(started.elapsed());
        if wait >= remaining {
            std::thread::sleep(remaining);
            return Err(SandboxError::Deadline {
                limit: limits.wall_clock,
            });
        }
        std::thread::sleep(wait);
        let only = v8::Number::new(scope, ONLY_SCOPE).into();
        call(scope, internals, "fireTimer", &[only], limits, stops)?;
    }
}

fn never_settles() -> SandboxError {
    SandboxError::BadResponse {
        reason: "the fetch handler's promise never settled (no pending jobs or timers)".into(),
    }
}

/// The prelude's request scope for every V8 request: an isolate runs one
/// request at a time and does not stream, so scopes never interleave.
const ONLY_SCOPE: f64 = 1.0;

/// One request: `internals.run(scope, method, url, headers, body, flags)`
/// (flags: 1 when the tenant has KV), settled when it returned a promise,
/// read back as `[status, [name, value, ...], body, streamed]`.
fn run<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    internals: v8::Local<'s, v8::Object>,
    job: &Job,
    limits: &Limits,
    stops: &Stops,
) -> Result<http::Response<Bytes>, SandboxError> {
    let method = v8_str(scope, job.parts.method.as_str())?;
    let url = v8_str(scope, &request_url(&job.parts))?;
    let mut pairs = Vec::with_capacity(job.parts.headers.len() * 2);
    for (name, value) in &job.parts.headers {
        pairs.push(v8_str(scope, name.as_str())?.into());
        pairs.push(v8_str(scope, &String::from_utf8_lossy(value.as_bytes()))?.into());
    }
    let headers = v8::Array::new_with_elements(scope, &pairs);
    let body: v8::Local<'s, v8::Value> = if job.body.is_empty() {
        v8::null(scope).into()
    } else {
        match bytes_to_js(scope, &job.body) {
            Some(body) => body.into(),
            None => {
                return Err(SandboxError::MemoryLimit {
                    limit: limits.memory_bytes,
                });
            }
        }
    };
    let flags = v8::Number::new(scope, if job.cx.kv.is_some() { 1.0 } else { 0.0 });
    let only = v8::Number::new(scope, ONLY_SCOPE);
    let args = [
        only.into(),
        method.into(),
        url.into(),
        headers.into(),
        body,
        flags.into(),
    ];
    // The head itself when the handler answered at once, else a promise.
    let settled = match call(scope, internals, "run", &args, limits, stops) {
        Ok(returned) => match v8::Local::<v8::Promise>::try_from(returned) {
            Ok(promise) => settle(scope, promise, Some(internals), limits, stops),
            Err(_) => Ok(returned),
        },
        Err(err) => Err(err),
    };
    let only = v8::Number::new(scope, ONLY_SCOPE).into();
    let _ = call(scope, internals, "endScope", &[only], limits, stops);
    to_response(scope, settled?, limits)
}

fn to_response<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    value: v8::Local<'s, v8::Value>,
    limits: &Limits,
) -> Result<http::Response<Bytes>, SandboxError> {
    let bad = |reason: String| SandboxError::BadResponse { reason };
    let triple = v8::Local::<v8::Array>::try_from(value)
        .map_err(|_| bad("the response is not an array".into()))?;
    let item = |scope: &mut v8::PinScope<'s, '_>, i: u32| {
        triple
            .get_index(scope, i)
            .ok_or_else(|| bad("unexpected response shape".into()))
    };
    let status = item(scope, 0)?.uint32_value(scope).unwrap_or(0);
    let pairs = v8::Local::<v8::Array>::try_from(item(scope, 1)?)
        .map_err(|_| bad("the response headers are not an array".into()))?;
    if item(scope, 3)?.boolean_value(scope) {
        return Err(bad(
            "streamed response bodies (a ReadableStream) need the QuickJS backend".into(),
        ));
    }
    let body = match v8::Local::<v8::Uint8Array>::try_from(item(scope, 2)?) {
        Ok(bytes) => js_to_bytes(bytes),
        Err(_) => Vec::new(),
    };
    if body.len() as u64 > limits.max_output_bytes {
        return Err(SandboxError::OutputTooLarge {
            limit: limits.max_output_bytes,
        });
    }
    let mut response = http::Response::new(Bytes::from(body));
    *response.status_mut() = crate::response::guest_status(u16::try_from(status).unwrap_or(0))?;
    // Counted before a single string is copied out of the guest's heap.
    crate::response::check_header_count(pairs.length() as usize / 2)?;
    let mut headers = crate::response::GuestHeaders::new();
    let mut i = 0;
    while i + 1 < pairs.length() {
        let text = |scope: &mut v8::PinScope<'s, '_>, i: u32| {
            pairs
                .get_index(scope, i)
                .map(|v| v.to_rust_string_lossy(scope))
                .unwrap_or_default()
        };
        let (name, value) = (text(scope, i), text(scope, i + 1));
        headers.append(name.as_bytes(), value.as_bytes())?;
        i += 2;
    }
    *response.headers_mut() = headers.into_map();
    Ok(response)
}

/// Records the isolate's used heap in its buffer budget.
fn sample_heap(isolate: &mut v8::Isolate, buffers: &BufferBudget) {
    let used = isolate.get_heap_statistics().used_heap_size();
    buffers.heap.store(used, Ordering::SeqCst);
}

/// A `Uint8Array` holding a copy of `bytes`, allocated by the isolate's
/// [`BufferBudget`] like any buffer the guest makes. `None` when the
/// tenant's memory has no room for it even after a full collection.
/// Never `new_backing_store_from_vec`: that wraps a Rust allocation no
/// budget sees.
fn bytes_to_js<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    bytes: &[u8],
) -> Option<v8::Local<'s, v8::Uint8Array>> {
    let budget = scope.get_slot::<Arc<BufferBudget>>().cloned()?;
    if !budget.fits(bytes.len()) {
        scope.low_memory_notification();
        if !budget.fits(bytes.len()) {
            return None;
        }
    }
    // `ArrayBuffer::new` draws on the budget checked above; V8 aborts the
    // process if it fails, hence the check.
    let buffer = v8::ArrayBuffer::new(scope, bytes.len());
    if let Some(data) = buffer.data() {
        // SAFETY: `data` is the fresh buffer's `bytes.len()` bytes, which
        // nothing else refers to yet.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.as_ptr().cast::<u8>(), bytes.len());
        }
    }
    v8::Uint8Array::new(scope, buffer, 0, bytes.len())
}

/// What V8 throws when an `ArrayBuffer`'s allocation is refused.
const BUFFER_REFUSED: &str = "Array buffer allocation failed";

fn js_to_bytes(array: v8::Local<'_, v8::Uint8Array>) -> Vec<u8> {
    let mut out = vec![0; array.byte_length()];
    let n = array.copy_contents(&mut out);
    out.truncate(n);
    out
}

/// The pending exception of `tc` as a typed error.
fn thrown(
    tc: &mut v8::PinnedRef<'_, v8::TryCatch<v8::HandleScope>>,
    limits: &Limits,
    stops: &Stops,
) -> SandboxError {
    if let Some(err) = stops.error(limits) {
        return err;
    }
    let Some(exception) = tc.exception() else {
        return internal("a call failed without an exception");
    };
    let stack = tc.stack_trace().map(|s| s.to_rust_string_lossy(tc));
    classify(tc, exception, stack, limits)
}

fn caught_message(
    tc: &mut v8::PinnedRef<'_, v8::TryCatch<v8::HandleScope>>,
) -> (String, usize, usize) {
    let Some(message) = tc.message() else {
        return ("unknown error".into(), 0, 0);
    };
    let text = message.get(tc).to_rust_string_lossy(tc);
    let line = message.get_line_number(tc).unwrap_or(0);
    let col = message.get_start_column() + 1;
    (text, line, col)
}

fn classify<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    value: v8::Local<'s, v8::Value>,
    stack: Option<String>,
    limits: &Limits,
) -> SandboxError {
    let (name, message, stack) = match value.to_object(scope) {
        Some(obj) if value.is_native_error() || value.is_object() => {
            let read = |scope: &mut v8::PinScope<'s, '_>, key: &str| {
                v8::String::new(scope, key)
                    .and_then(|k| obj.get(scope, k.into()))
                    .filter(|v| !v.is_undefined())
                    .map(|v| v.to_rust_string_lossy(scope))
            };
            let name = read(scope, "name");
            let message = read(scope, "message").unwrap_or_default();
            let stack = read(scope, "stack").or(stack);
            (name, message, stack)
        }
        _ => (None, value.to_rust_string_lossy(scope), stack),
    };
    if name.as_deref() == Some("RangeError") && message.contains("Maximum call stack size exceeded")
    {
        return SandboxError::StackOverflow;
    }
    if name.as_deref() == Some("RangeError") && message.contains(BUFFER_REFUSED) {
        return SandboxError::MemoryLimit {
            limit: limits.memory_bytes,
        };
    }
    if name.as_deref() == Some("CorralBadResponse") {
        return SandboxError::BadResponse { reason: message };
    }
    let message = match name.as_deref() {
        Some(n) if !n.is_empty() => format!("{n}: {message}"),
        _ => message,
    };
    SandboxError::ScriptError { message, stack }
}

// ------------------------------------------------------------------ host --

fn host_state(scope: &v8::PinScope<'_, '_>) -> Option<Arc<HostState>> {
    scope.get_slot::<Arc<HostState>>().cloned()
}

/// [`bytes_to_js`] for a host function: when the tenant's memory has no
/// room, it throws the `RangeError` V8 throws for the guest's own buffers
/// (which ends the request as `MemoryLimit` unless the guest catches it).
fn host_bytes<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    bytes: &[u8],
) -> Option<v8::Local<'s, v8::Uint8Array>> {
    let array = bytes_to_js(scope, bytes);
    if array.is_none()
        && let Some(msg) = v8::String::new(scope, BUFFER_REFUSED)
    {
        let err = v8::Exception::range_error(scope, msg);
        scope.throw_exception(err);
    }
    array
}

fn throw(scope: &mut v8::PinScope<'_, '_>, message: &str) {
    if let Some(msg) = v8::String::new(scope, message) {
        let err = v8::Exception::error(scope, msg);
        scope.throw_exception(err);
    }
}

fn arg_string(
    scope: &mut v8::PinScope<'_, '_>,
    args: &v8::FunctionCallbackArguments,
    i: i32,
) -> String {
    args.get(i).to_rust_string_lossy(scope)
}

/// Runs a KV operation for the tenant of the current request, or throws.
fn with_kv<T>(
    scope: &mut v8::PinScope<'_, '_>,
    op: impl FnOnce(&dyn crate::TenantKv, &corral_limits::TenantId) -> Result<T, crate::KvError>,
) -> Option<T> {
    let out = match host_state(scope) {
        Some(state) => kv_op(&state, op),
        None => Err("KV: no host state".to_owned()),
    };
    match out {
        Ok(v) => Some(v),
        Err(msg) => {
            throw(scope, &msg);
            None
        }
    }
}

fn install_host(scope: &mut v8::PinScope<'_, '_>) -> Result<(), SandboxError> {
    let host = v8::Object::new(scope);
    let functions: [(&str, v8::FunctionCallback); 29] = [
        ("encodeUtf8", encode_utf8.map_fn_to()),
        ("decodeUtf8", decode_utf8.map_fn_to()),
        ("randomBytes", random_bytes.map_fn_to()),
        ("log", log.map_fn_to()),
        ("kvGet", kv_get.map_fn_to()),
        ("kvPut", kv_put.map_fn_to()),
        ("kvDelete", kv_delete.map_fn_to()),
        ("kvList", kv_list.map_fn_to()),
        ("urlParse", url_parse.map_fn_to()),
        ("urlSet", url_set.map_fn_to()),
        ("formParse", form_parse.map_fn_to()),
        ("formSerialize", form_serialize.map_fn_to()),
        ("formSort", form_sort.map_fn_to()),
        ("encodingName", encoding_name.map_fn_to()),
        ("decode", decode.map_fn_to()),
        ("decoderOpen", decoder_open.map_fn_to()),
        ("decoderDecode", decoder_decode.map_fn_to()),
        ("decoderClose", decoder_close.map_fn_to()),
        ("encodeInto", encode_into.map_fn_to()),
        ("atob", atob.map_fn_to()),
        ("btoa", btoa.map_fn_to()),
        ("digest", digest.map_fn_to()),
        ("hmacSign", hmac_sign.map_fn_to()),
        ("hmacVerify", hmac_verify.map_fn_to()),
        ("coderOpen", coder_open.map_fn_to()),
        ("coderWrite", coder_write.map_fn_to()),
        ("coderFinish", coder_finish.map_fn_to()),
        ("coderClose", coder_close.map_fn_to()),
        ("multipartParse", multipart_parse.map_fn_to()),
    ];
    for (name, callback) in functions {
        let f = v8::Function::new_raw(scope, callback)
            .ok_or_else(|| internal("creating a host function"))?;
        let key = v8_str(scope, name)?;
        host.set(scope, key.into(), f.into());
    }
    let global = scope.get_current_context().global(scope);
    let key = v8_str(scope, "__corral_host")?;
    global.set(scope, key.into(), host.into());
    Ok(())
}

use v8::MapFnTo as _;

fn encode_utf8(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let s = arg_string(scope, &args, 0);
    if let Some(bytes) = host_bytes(scope, s.as_bytes()) {
        rv.set(bytes.into());
    }
}

fn decode_utf8(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let Ok(bytes) = v8::Local::<v8::Uint8Array>::try_from(args.get(0)) else {
        return throw(scope, "decodeUtf8: expected a Uint8Array");
    };
    let fatal = args.get(1).boolean_value(scope);
    let bytes = js_to_bytes(bytes);
    let text = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) if fatal => return throw(scope, "invalid UTF-8"),
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    if let Some(s) = v8::String::new(scope, &text) {
        rv.set(s.into());
    }
}

fn random_bytes(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    use rand::RngCore as _;
    let n = args.get(0).uint32_value(scope).unwrap_or(0) as usize;
    if n > MAX_RANDOM_BYTES {
        return throw(scope, "too many random bytes");
    }
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    if let Some(bytes) = host_bytes(scope, &buf) {
        rv.set(bytes.into());
    }
}

fn log(scope: &mut v8::PinScope, args: v8::FunctionCallbackArguments, _rv: v8::ReturnValue) {
    let Some(state) = host_state(scope) else {
        return;
    };
    // A line past the request's share of the log is counted, never read.
    let accepts = state.with_scope(|s| match s {
        Some(s) if s.log.accepts() => true,
        Some(s) => {
            s.log.refuse(1);
            false
        }
        None => false,
    });
    if !accepts {
        return;
    }
    let line = arg_string(scope, &args, 0);
    state.with_scope(|s| {
        if let Some(s) = s {
            s.log.push(&line);
        }
    });
}

fn kv_get(scope: &mut v8::PinScope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue) {
    let key = arg_string(scope, &args, 0);
    match with_kv(scope, |kv, t| kv.get(t, &key)) {
        Some(Some(bytes)) => {
            if let Some(bytes) = host_bytes(scope, &bytes) {
                rv.set(bytes.into());
            }
        }
        Some(None) => rv.set_null(),
        None => {}
    }
}

fn kv_put(scope: &mut v8::PinScope, args: v8::FunctionCallbackArguments, _rv: v8::ReturnValue) {
    let key = arg_string(scope, &args, 0);
    let Ok(value) = v8::Local::<v8::Uint8Array>::try_from(args.get(1)) else {
        return throw(scope, "kvPut: expected a Uint8Array");
    };
    let value = js_to_bytes(value);
    let _ = with_kv(scope, |kv, t| kv.put(t, &key, &value));
}

fn kv_delete(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let key = arg_string(scope, &args, 0);
    if let Some(existed) = with_kv(scope, |kv, t| kv.delete(t, &key)) {
        rv.set_bool(existed);
    }
}

fn kv_list(scope: &mut v8::PinScope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue) {
    let prefix = arg_string(scope, &args, 0);
    let limit = args.get(1).uint32_value(scope).unwrap_or(0) as usize;
    if let Some(keys) = with_kv(scope, |kv, t| kv.list(t, &prefix, limit)) {
        let names: Vec<v8::Local<'_, v8::Value>> = keys
            .iter()
            .filter_map(|k| v8::String::new(scope, k).map(Into::into))
            .collect();
        rv.set(v8::Array::new_with_elements(scope, &names).into());
    }
}

// ------------------------------------------------------------------ web --
// The same host functions as QuickJS's (`crate::js::web`): strings arrive
// through `to_rust_string_lossy`, a USVString already.

fn strings_to_js<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    items: &[String],
) -> v8::Local<'s, v8::Array> {
    let items: Vec<v8::Local<'_, v8::Value>> = items
        .iter()
        .filter_map(|k| v8::String::new(scope, k).map(Into::into))
        .collect();
    v8::Array::new_with_elements(scope, &items)
}

fn strings_from_js(
    scope: &mut v8::PinScope<'_, '_>,
    value: v8::Local<'_, v8::Value>,
) -> Vec<String> {
    let Ok(array) = v8::Local::<v8::Array>::try_from(value) else {
        return Vec::new();
    };
    (0..array.length())
        .filter_map(|i| array.get_index(scope, i))
        .map(|v| v.to_rust_string_lossy(scope))
        .collect()
}

fn set_string(scope: &mut v8::PinScope<'_, '_>, rv: &mut v8::ReturnValue, text: &str) {
    if let Some(s) = v8::String::new(scope, text) {
        rv.set(s.into());
    }
}

fn throw_decode(scope: &mut v8::PinScope<'_, '_>, e: web::DecodeError) {
    if let Some(msg) = v8::String::new(scope, e.message()) {
        let err = if e.is_range() {
            v8::Exception::range_error(scope, msg)
        } else {
            v8::Exception::type_error(scope, msg)
        };
        scope.throw_exception(err);
    }
}

fn memory_limit(scope: &v8::PinScope<'_, '_>) -> usize {
    host_state(scope).map_or(0, |state| state.memory_limit())
}

fn arg_bytes(args: &v8::FunctionCallbackArguments, i: i32) -> Vec<u8> {
    v8::Local::<v8::Uint8Array>::try_from(args.get(i)).map_or_else(|_| Vec::new(), js_to_bytes)
}

fn url_parse(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let input = arg_string(scope, &args, 0);
    let base = (!args.get(1).is_undefined()).then(|| arg_string(scope, &args, 1));
    match web::url_parse(&input, base.as_deref()) {
        Some(parts) => rv.set(strings_to_js(scope, &parts).into()),
        None => rv.set_null(),
    }
}

fn url_set(scope: &mut v8::PinScope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue) {
    let href = arg_string(scope, &args, 0);
    let field = args.get(1).uint32_value(scope).unwrap_or(u32::MAX);
    let value = arg_string(scope, &args, 2);
    match web::url_set(&href, field, &value) {
        Some(parts) => rv.set(strings_to_js(scope, &parts).into()),
        None => rv.set_null(),
    }
}

fn form_parse(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let input = arg_string(scope, &args, 0);
    let list = web::form_parse(&input);
    rv.set(strings_to_js(scope, &list).into());
}

fn form_serialize(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let list = strings_from_js(scope, args.get(0));
    set_string(scope, &mut rv, &web::form_serialize(&list));
}

fn form_sort(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let list = strings_from_js(scope, args.get(0));
    let sorted = web::form_sort(&list);
    rv.set(strings_to_js(scope, &sorted).into());
}

fn encoding_name(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let label = arg_string(scope, &args, 0);
    match web::encoding_name(&label) {
        Some(name) => set_string(scope, &mut rv, &name),
        None => rv.set_null(),
    }
}

fn decode(scope: &mut v8::PinScope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue) {
    let name = arg_string(scope, &args, 0);
    let ignore_bom = args.get(1).boolean_value(scope);
    let bytes = arg_bytes(&args, 2);
    let fatal = args.get(3).boolean_value(scope);
    match web::decode(&name, ignore_bom, &bytes, fatal, memory_limit(scope)) {
        Ok(text) => set_string(scope, &mut rv, &text),
        Err(e) => throw_decode(scope, e),
    }
}

fn decoder_open(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let name = arg_string(scope, &args, 0);
    let ignore_bom = args.get(1).boolean_value(scope);
    let Some(state) = host_state(scope) else {
        return throw(scope, "TextDecoder: no host state");
    };
    let opened = state.decoders.lock().open(&name, ignore_bom);
    match opened {
        Ok(handle) => rv.set_uint32(handle),
        Err(e) => throw_decode(scope, e),
    }
}

fn decoder_decode(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let handle = args.get(0).uint32_value(scope).unwrap_or(u32::MAX);
    let bytes = arg_bytes(&args, 1);
    let fatal = args.get(2).boolean_value(scope);
    let last = args.get(3).boolean_value(scope);
    let Some(state) = host_state(scope) else {
        return throw(scope, "TextDecoder: no host state");
    };
    let decoded = state
        .decoders
        .lock()
        .decode(handle, &bytes, fatal, last, state.memory_limit());
    match decoded {
        Ok(text) => set_string(scope, &mut rv, &text),
        Err(e) => throw_decode(scope, e),
    }
}

fn decoder_close(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    _rv: v8::ReturnValue,
) {
    let handle = args.get(0).uint32_value(scope).unwrap_or(u32::MAX);
    if let Some(state) = host_state(scope) {
        state.decoders.lock().close(handle);
    }
}

fn encode_into(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let text = arg_string(scope, &args, 0);
    let room = args.get(1).uint32_value(scope).unwrap_or(0) as usize;
    let (read, bytes) = web::encode_into(text.as_bytes(), room);
    let Some(bytes) = host_bytes(scope, &bytes) else {
        return;
    };
    let read = v8::Number::new(scope, read as f64);
    let out: [v8::Local<'_, v8::Value>; 2] = [read.into(), bytes.into()];
    rv.set(v8::Array::new_with_elements(scope, &out).into());
}

fn atob(scope: &mut v8::PinScope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue) {
    let data = arg_string(scope, &args, 0);
    match web::atob(&data) {
        Some(text) => set_string(scope, &mut rv, &text),
        None => rv.set_null(),
    }
}

fn btoa(scope: &mut v8::PinScope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue) {
    let data = arg_string(scope, &args, 0);
    match web::btoa(data.as_bytes()) {
        Some(text) => set_string(scope, &mut rv, &text),
        None => rv.set_null(),
    }
}

// ------------------------------------------------------------- platform --
// crypto.subtle, the compression streams' coders and multipart parsing: the
// same host functions as QuickJS's (`crate::js::{subtle, compress,
// multipart}`).

fn throw_type(scope: &mut v8::PinScope<'_, '_>, message: &str) {
    if let Some(msg) = v8::String::new(scope, message) {
        let err = v8::Exception::type_error(scope, msg);
        scope.throw_exception(err);
    }
}

fn arg_hash(
    scope: &mut v8::PinScope<'_, '_>,
    args: &v8::FunctionCallbackArguments,
) -> Option<subtle::Hash> {
    let name = arg_string(scope, args, 0);
    let hash = subtle::Hash::from_name(&name);
    if hash.is_none() {
        throw_type(scope, "crypto.subtle: unknown hash");
    }
    hash
}

fn set_bytes(scope: &mut v8::PinScope<'_, '_>, rv: &mut v8::ReturnValue, bytes: &[u8]) {
    if let Some(array) = host_bytes(scope, bytes) {
        rv.set(array.into());
    }
}

fn digest(scope: &mut v8::PinScope, args: v8::FunctionCallbackArguments, mut rv: v8::ReturnValue) {
    let Some(hash) = arg_hash(scope, &args) else {
        return;
    };
    let out = subtle::digest(hash, &arg_bytes(&args, 1));
    set_bytes(scope, &mut rv, &out);
}

fn hmac_sign(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let Some(hash) = arg_hash(scope, &args) else {
        return;
    };
    let out = subtle::hmac_sign(hash, &arg_bytes(&args, 1), &arg_bytes(&args, 2));
    set_bytes(scope, &mut rv, &out);
}

fn hmac_verify(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let Some(hash) = arg_hash(scope, &args) else {
        return;
    };
    let ok = subtle::hmac_verify(
        hash,
        &arg_bytes(&args, 1),
        &arg_bytes(&args, 2),
        &arg_bytes(&args, 3),
    );
    rv.set_bool(ok);
}

fn throw_coder(scope: &mut v8::PinScope<'_, '_>, e: compress::CoderError) {
    if e == compress::CoderError::OutOfMemory {
        // host_bytes has thrown already.
        return;
    }
    if let Some(msg) = v8::String::new(scope, e.message()) {
        let err = if e.is_range() {
            v8::Exception::range_error(scope, msg)
        } else {
            v8::Exception::type_error(scope, msg)
        };
        scope.throw_exception(err);
    }
}

fn coder_open(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let name = arg_string(scope, &args, 0);
    let compress = args.get(1).boolean_value(scope);
    let Some(format) = compress::Format::from_name(&name) else {
        return throw_type(scope, "unknown compression format");
    };
    let Some(state) = host_state(scope) else {
        return throw(scope, "compression: no host state");
    };
    let Some(budget) = scope.get_slot::<Arc<BufferBudget>>().cloned() else {
        return throw(scope, "compression: no buffer budget");
    };
    // The coder's host state is charged to the tenant's memory like a
    // buffer, until it is closed (`settle_coders`).
    let open = || {
        state
            .coders
            .lock()
            .open(format, compress, &mut |bytes| budget.reserve(bytes))
    };
    let mut opened = open();
    if opened == Err(compress::CoderError::NoRoom) {
        scope.low_memory_notification();
        opened = open();
    }
    match opened {
        Ok(handle) => rv.set_uint32(handle),
        Err(e) => throw_coder(scope, e),
    }
}

/// Runs a coder call, its output pieces made into `Uint8Array`s as they
/// come, and returns them as an array.
fn coder_pieces(
    scope: &mut v8::PinScope<'_, '_>,
    rv: &mut v8::ReturnValue,
    call: impl FnOnce(&HostState, &mut dyn FnMut(&[u8]) -> bool) -> Result<(), compress::CoderError>,
) {
    let Some(state) = host_state(scope) else {
        return throw(scope, "compression: no host state");
    };
    let mut pieces: Vec<v8::Local<'_, v8::Value>> = Vec::new();
    let charged = state.coders.lock().charged();
    let result = call(&state, &mut |bytes| match host_bytes(scope, bytes) {
        Some(array) => {
            pieces.push(array.into());
            true
        }
        None => false,
    });
    settle_coders(scope, &state, charged);
    match result {
        Ok(()) => rv.set(v8::Array::new_with_elements(scope, &pieces).into()),
        Err(e) => throw_coder(scope, e),
    }
}

fn coder_write(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let handle = args.get(0).uint32_value(scope).unwrap_or(u32::MAX);
    let input = arg_bytes(&args, 1);
    coder_pieces(scope, &mut rv, |state, emit| {
        let limit = state.coder_output_limit();
        state.coders.lock().write(handle, &input, limit, emit)
    });
}

fn coder_finish(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let handle = args.get(0).uint32_value(scope).unwrap_or(u32::MAX);
    coder_pieces(scope, &mut rv, |state, emit| {
        let limit = state.coder_output_limit();
        state.coders.lock().finish(handle, limit, emit)
    });
}

fn coder_close(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    _rv: v8::ReturnValue,
) {
    let handle = args.get(0).uint32_value(scope).unwrap_or(u32::MAX);
    if let Some(state) = host_state(scope) {
        let charged = state.coders.lock().charged();
        state.coders.lock().close(handle);
        settle_coders(scope, &state, charged);
    }
}

/// Gives the buffer budget back what coders closed since the coders were
/// charged `before` bytes (by `close`, `finish` or a failed `write`).
fn settle_coders(scope: &mut v8::PinScope<'_, '_>, state: &HostState, before: usize) {
    let after = state.coders.lock().charged();
    if let Some(budget) = scope.get_slot::<Arc<BufferBudget>>()
        && after < before
    {
        budget.release(before - after);
    }
}

/// A guest string, or `undefined` for `None`.
fn opt_string<'s>(scope: &mut v8::PinScope<'s, '_>, s: Option<&str>) -> v8::Local<'s, v8::Value> {
    match s.and_then(|s| v8::String::new(scope, s)) {
        Some(s) => s.into(),
        None => v8::undefined(scope).into(),
    }
}

fn multipart_parse(
    scope: &mut v8::PinScope,
    args: v8::FunctionCallbackArguments,
    mut rv: v8::ReturnValue,
) {
    let body = arg_bytes(&args, 0);
    let content_type = arg_string(scope, &args, 1);
    let Some(boundary) = multipart::boundary(&content_type) else {
        return throw_type(scope, multipart::MultipartError::NoBoundary.message());
    };
    let parts = match multipart::parse(&body, &boundary) {
        Ok(parts) => parts,
        Err(e) => return throw_type(scope, e.message()),
    };
    let mut out: Vec<v8::Local<'_, v8::Value>> = Vec::with_capacity(parts.len() * 5);
    for part in &parts {
        let name = opt_string(scope, Some(&part.name));
        let filename = opt_string(scope, part.filename.as_deref());
        let content_type = opt_string(scope, part.content_type.as_deref());
        out.push(name);
        out.push(filename);
        out.push(content_type);
        out.push(v8::Number::new(scope, part.start as f64).into());
        out.push(v8::Number::new(scope, part.end as f64).into());
    }
    rv.set(v8::Array::new_with_elements(scope, &out).into());
}
