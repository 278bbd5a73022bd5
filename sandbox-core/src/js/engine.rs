//! One tenant's QuickJS runtime: building it from bytecode, running a
//! request in it, and mapping what QuickJS reports to [`SandboxError`].

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rquickjs::function::This;
use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::promise::PromiseState;
use rquickjs::{
    Array, CatchResultExt, Coerced, Context, Ctx, FromJs, Function, Module, Object, Promise,
    Runtime, TypedArray, Value, WriteOptions,
};

use super::budget::Budget;
use super::host::{self, HostState, Scope};
use crate::{InvokeContext, Limits, SandboxError};

/// The largest QuickJS stack Corral grants, whatever the limits say: requests
/// run on tokio's blocking threads, whose stacks are 2 MiB by default, and the
/// host needs the rest.
pub const MAX_JS_STACK_BYTES: usize = 1 << 20;

/// How often the per-request memory figures re-read a runtime's heap size.
pub(crate) const HEAP_SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// A heap larger than this is not walked (for its size) on an async worker.
const LONG_HEAP_WALK_BYTES: u64 = 2 << 20;

/// `internals.run`'s flags: the tenant has a KV namespace.
const RUN_HAS_KV: u32 = 1;
/// `internals.run`'s flags: its `url` is already parsed and serialized.
const RUN_URL_PARSED: u32 = 2;

/// The module name tenant code is compiled under (it appears in stacks).
pub(crate) const APP_MODULE: &str = "app.js";
const PRELUDE_MODULE: &str = "corral:prelude";
pub(crate) const PRELUDE_SOURCE: &str = include_str!("prelude.js");

/// Refuses every `import`: tenant bundles are one self-contained module.
#[derive(Debug)]
struct NoImports;

impl Resolver for NoImports {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        // A prelude part imports the core (already loaded, so found by name
        // and never handed to the loader); nothing else imports anything.
        if name == PRELUDE_MODULE && base.starts_with("corral:") && base != PRELUDE_MODULE {
            return Ok(name.to_owned());
        }
        Err(rquickjs::Error::new_resolving_message(
            base,
            name,
            "imports are not supported: bundle app.js into one module",
        ))
    }
}

impl Loader for NoImports {
    fn load<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js>> {
        Err(rquickjs::Error::new_loading(name))
    }
}

fn new_runtime(limits: &Limits, budget: Option<Arc<Budget>>) -> Result<Runtime, SandboxError> {
    let rt = Runtime::new().map_err(|e| SandboxError::internal("creating a QuickJS runtime", e))?;
    apply_limits(&rt, limits);
    rt.set_loader(NoImports, NoImports);
    if let Some(budget) = budget {
        rt.set_interrupt_handler(Some(Box::new(move || budget.tick())));
    }
    Ok(rt)
}

fn apply_limits(rt: &Runtime, limits: &Limits) {
    rt.set_memory_limit(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX));
    rt.set_max_stack_size(limits.max_stack_bytes.min(MAX_JS_STACK_BYTES));
}

/// The prelude's modules as QuickJS bytecode: its core, evaluated into every
/// runtime, and the parts (js/split.rs) evaluated only when first used.
struct PreludeParts {
    core: Vec<u8>,
    parts: Vec<(&'static str, Vec<u8>)>,
}

/// The prelude, split and compiled once per process.
fn prelude_parts() -> &'static PreludeParts {
    static PARTS: OnceLock<PreludeParts> = OnceLock::new();
    PARTS.get_or_init(|| {
        let parts = super::split::split(PRELUDE_SOURCE);
        let mut compiled = compile_prelude(&parts)
            .unwrap_or_else(|e| panic!("the built-in prelude compiles: {e:?}"))
            .into_iter();
        let core = compiled.next().expect("the prelude has a core");
        let parts = parts.iter().skip(1).map(|p| p.name).zip(compiled).collect();
        PreludeParts { core, parts }
    })
}

/// Compiles the prelude's modules (the core first) in one context, so
/// that each part's import of the core resolves to it.
fn compile_prelude(parts: &[super::split::Part]) -> Result<Vec<Vec<u8>>, SandboxError> {
    let rt = new_runtime(&Limits::default(), None)?;
    let cx =
        Context::full(&rt).map_err(|e| SandboxError::internal("creating a QuickJS context", e))?;
    cx.with(|ctx| {
        parts
            .iter()
            .map(|part| {
                let name = part.module_name();
                // Without debug information (line tables, file names): 15%
                // less bytecode for every cold start to read and every
                // runtime to hold. The guest's stacks lose only the
                // prelude frames' line numbers.
                declare_and_write(&ctx, &name, &part.source, true)
                    .map_err(|e| SandboxError::internal(format!("the prelude's {name}"), e))
            })
            .collect()
    })
}

/// QuickJS bytecode of the prelude's core.
fn prelude_bytecode() -> &'static [u8] {
    &prelude_parts().core
}

/// The heap a prelude part takes once evaluated, per byte of its bytecode
/// (about 3 when measured; a margin on top).
const PART_HEAP_PER_BYTE: usize = 4;

/// Reads and evaluates the prelude part `name` into the runtime of `ctx`
/// (the core's `host.loadPart`), returning its module namespace. It runs
/// in the tenant's runtime, so under its memory limit and budget; what it
/// throws (out of memory, interrupted) reaches the guest code that touched
/// the part as it is.
fn load_part<'js>(ctx: Ctx<'js>, name: String) -> rquickjs::Result<Object<'js>> {
    let parts = prelude_parts();
    let Some((_, bytecode)) = parts.parts.iter().find(|(n, _)| *n == name) else {
        return Err(rquickjs::Exception::throw_internal(
            &ctx,
            &format!("corral: the runtime has no part named {name:?}"),
        ));
    };
    // A part that would not fit fails before it starts, while there is
    // still room for the error that says so (a load that runs out of memory
    // half way leaves too little even for that).
    if !host::heap_has_room(&ctx, bytecode.len().saturating_mul(PART_HEAP_PER_BYTE)) {
        return Err(rquickjs::Exception::throw_internal(&ctx, "out of memory"));
    }
    let loaded = eval_part(&ctx, bytecode).and_then(|(module, promise)| match promise.state() {
        PromiseState::Resolved => part_namespace(&ctx, module),
        // Rethrows the reason.
        PromiseState::Rejected => promise
            .result::<Value<'js>>()
            .expect("settled")
            .and_then(|_| Err(rquickjs::Error::Exception)),
        PromiseState::Pending => Err(rquickjs::Exception::throw_internal(
            &ctx,
            &format!("corral: loading the runtime's {name} part did not finish"),
        )),
    });
    match loaded {
        // QuickJS throws `null` when the heap has no room even for its "out
        // of memory" error; the part's allocations are freed by now, so the
        // error it stands for can be made.
        Err(rquickjs::Error::Exception) => {
            let thrown = ctx.catch();
            if thrown.is_null() {
                Err(rquickjs::Exception::throw_internal(&ctx, "out of memory"))
            } else {
                Err(ctx.throw(thrown))
            }
        }
        Err(rquickjs::Error::Allocation) => {
            Err(rquickjs::Exception::throw_internal(&ctx, "out of memory"))
        }
        other => other,
    }
}

/// Parses `source` as an ES module and returns its bytecode. A syntax error is
/// [`SandboxError::InvalidModule`] naming the line and column.
pub(crate) fn compile_module(
    name: &str,
    source: &str,
    limits: &Limits,
) -> Result<Vec<u8>, SandboxError> {
    compile_with(name, source, limits, false)
}

/// [`compile_module`], leaving out debug information if `strip_debug`.
fn compile_with(
    name: &str,
    source: &str,
    limits: &Limits,
    strip_debug: bool,
) -> Result<Vec<u8>, SandboxError> {
    let rt = new_runtime(limits, None)?;
    let cx =
        Context::full(&rt).map_err(|e| SandboxError::internal("creating a QuickJS context", e))?;
    cx.with(|ctx| declare_and_write(&ctx, name, source, strip_debug))
}

/// Parses `source` as module `name` in `ctx` and returns its bytecode.
fn declare_and_write(
    ctx: &Ctx<'_>,
    name: &str,
    source: &str,
    strip_debug: bool,
) -> Result<Vec<u8>, SandboxError> {
    let module = Module::declare(ctx.clone(), name, source)
        .catch(ctx)
        .map_err(|e| {
            let thrown = Thrown::from_caught(e);
            SandboxError::InvalidModule {
                reason: thrown.syntax_reason(name),
            }
        })?;
    module
        .write(WriteOptions {
            strip_source: true,
            strip_debug,
            ..WriteOptions::default()
        })
        .map_err(|e| SandboxError::internal("writing QuickJS bytecode", e))
}

/// Reads and evaluates a prelude part's bytecode as `Module::load` and
/// `Module::eval` do, but without resetting QuickJS's stack top (rquickjs's
/// `eval` does, under its `parallel` feature): a part first touched deep in
/// the guest's recursion must not give the guest a fresh stack allowance
/// below that point, which would take it past the thread's real stack
/// (a lazy global touched at the bottom of each of several recursions
/// crashed the host).
#[allow(unsafe_code)]
fn eval_part<'js>(
    ctx: &Ctx<'js>,
    bytecode: &'static [u8],
) -> rquickjs::Result<(std::ptr::NonNull<rquickjs::qjs::JSModuleDef>, Promise<'js>)> {
    use rquickjs::qjs;
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: the bytecode is the prelude's, compiled by this build
    // (`prelude_parts`) and static (ROM data may point into it). As in
    // rquickjs: the module value is duplicated because evaluating it frees
    // one reference, and its definition stays with the context.
    unsafe {
        let module = qjs::JS_ReadObject(
            raw,
            bytecode.as_ptr(),
            bytecode.len() as _,
            (qjs::JS_READ_OBJ_BYTECODE | qjs::JS_READ_OBJ_ROM_DATA) as i32,
        );
        if qjs::JS_IsException(module) {
            return Err(rquickjs::Error::Exception);
        }
        let def = std::ptr::NonNull::new(qjs::JS_VALUE_GET_PTR(module).cast::<qjs::JSModuleDef>())
            .ok_or(rquickjs::Error::Unknown)?;
        qjs::JS_DupValue(raw, module);
        let ret = qjs::JS_EvalFunction(raw, module);
        if qjs::JS_IsException(ret) {
            return Err(rquickjs::Error::Exception);
        }
        let promise = Value::from_raw(ctx.clone(), ret)
            .into_promise()
            .ok_or(rquickjs::Error::Unknown)?;
        Ok((def, promise))
    }
}

/// The namespace of a part [`eval_part`] evaluated.
#[allow(unsafe_code)]
fn part_namespace<'js>(
    ctx: &Ctx<'js>,
    def: std::ptr::NonNull<rquickjs::qjs::JSModuleDef>,
) -> rquickjs::Result<Object<'js>> {
    use rquickjs::qjs;
    // SAFETY: `def` is a module of this context, evaluated.
    unsafe {
        let ns = qjs::JS_GetModuleNamespace(ctx.as_raw().as_ptr(), def.as_ptr());
        if qjs::JS_IsException(ns) {
            return Err(rquickjs::Error::Exception);
        }
        Value::from_raw(ctx.clone(), ns)
            .into_object()
            .ok_or(rquickjs::Error::Unknown)
    }
}

/// Loads and evaluates a module from our own (checksummed) bytecode.
#[allow(unsafe_code)]
fn load_module<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Module<'js>> {
    // SAFETY: QuickJS's bytecode reader trusts its input. Every byte slice that
    // reaches here was written by `compile_module` in this build: the prelude
    // comes from memory, tenant bytecode from an artifact whose CRC32 and
    // format version `artifact::decode` verified.
    unsafe { Module::load(ctx.clone(), bytecode) }
}

/// A live tenant runtime (its own heap and GC) with the prelude and the
/// tenant module evaluated.
///
/// The prelude's `internals` object (what the host drives) is kept as the
/// runtime's userdata, out of the guest's reach.
pub(crate) struct Warm {
    // Field order is drop order: the context before its runtime.
    context: Context,
    runtime: Runtime,
    budget: Arc<Budget>,
    host: Arc<HostState>,
    /// The last scope number handed out (one per request).
    scopes: std::sync::atomic::AtomicU64,
    /// When the last [`heap_bytes`](Self::heap_bytes) reading was taken, and
    /// what it read, for [`heap_bytes_sampled`](Self::heap_bytes_sampled).
    /// The first is taken by the build, on the thread that has just made
    /// the heap: a cold start's first request then finds it fresh, and
    /// neither walks the heap again nor moves off its async worker to do so
    /// (that was a blocking-pool round trip on every JS cold start).
    heap_sample: parking_lot::Mutex<(std::time::Instant, u64)>,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm")
            .field("heap_bytes", &self.heap_bytes())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        // Release the JS value kept as userdata while its runtime is alive.
        self.context.with(|ctx| {
            let _ = ctx.remove_userdata::<Object<'_>>();
        });
    }
}

fn internals<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>, SandboxError> {
    ctx.userdata::<Object<'js>>()
        .map(|guard| guard.clone())
        .ok_or_else(|| SandboxError::Internal {
            message: "the JavaScript runtime lost its internals".into(),
            source: None,
        })
}

/// Bytes QuickJS has allocated for `runtime`, and what its WebAssembly holds
/// (`host`): [`Warm::heap_bytes`], also read by the build before the
/// [`Warm`] exists.
fn heap_bytes_of(runtime: &Runtime, host: &HostState) -> u64 {
    let wasm = host.wasm_bytes.load(std::sync::atomic::Ordering::Relaxed);
    u64::try_from(runtime.memory_usage().malloc_size.saturating_add(wasm as _)).unwrap_or(0)
}

impl Warm {
    /// Builds the runtime from tenant bytecode (a cold start).
    pub(crate) fn build(bytecode: &[u8], limits: &Limits) -> Result<Self, SandboxError> {
        Self::build_counting_coders_in(bytecode, limits, Arc::default())
    }

    /// [`Warm::build`] for one of a tenant's runtimes, whose open
    /// compression coders all count in `tenant_coders` (one cap for the
    /// tenant, however many runtimes it has).
    pub(crate) fn build_counting_coders_in(
        bytecode: &[u8],
        limits: &Limits,
        tenant_coders: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<Self, SandboxError> {
        let prelude = prelude_bytecode();
        let budget = Arc::new(Budget::new());
        let host = Arc::new(HostState::counting_coders_in(
            usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            tenant_coders,
        ));
        host.set_budget(budget.clone());
        let runtime = new_runtime(limits, Some(budget.clone()))?;
        let context = Context::full(&runtime)
            .map_err(|e| SandboxError::internal("creating a QuickJS context", e))?;
        budget.arm(limits.fuel_per_request, limits.wall_clock);
        let built = context.with(|ctx| -> Result<(), SandboxError> {
            let fail =
                |e: rquickjs::CaughtError<'_>| classify(Thrown::from_caught(e), &budget, limits);
            host::install(&ctx, &host).catch(&ctx).map_err(fail)?;
            ctx.globals()
                .get::<_, Object<'_>>("__corral_host")
                .and_then(|h| h.set("loadPart", Function::new(ctx.clone(), load_part)?))
                .catch(&ctx)
                .map_err(fail)?;
            let internals: Object<'_> = {
                let module = load_module(&ctx, prelude).catch(&ctx).map_err(fail)?;
                let (module, promise) = module.eval().catch(&ctx).map_err(fail)?;
                settle(&ctx, &promise, &budget, limits, None)?;
                module.get("default").catch(&ctx).map_err(fail)?
            };
            let module = load_module(&ctx, bytecode).catch(&ctx).map_err(fail)?;
            let (module, promise) = module.eval().catch(&ctx).map_err(fail)?;
            settle(&ctx, &promise, &budget, limits, None)?;
            let ns = module.namespace().catch(&ctx).map_err(fail)?;
            let set_module: Function<'_> = internals.get("setModule").catch(&ctx).map_err(fail)?;
            set_module
                .call::<_, ()>((This(internals.clone()), ns))
                .catch(&ctx)
                .map_err(fail)?;
            ctx.store_userdata(internals)
                .map_err(|e| SandboxError::Internal {
                    message: format!("storing the JS internals: {e}"),
                    source: None,
                })?;
            Ok(())
        });
        budget.close();
        built?;
        let heap = heap_bytes_of(&runtime, &host);
        Ok(Self {
            context,
            runtime,
            budget,
            host,
            scopes: std::sync::atomic::AtomicU64::new(0),
            heap_sample: parking_lot::Mutex::new((std::time::Instant::now(), heap)),
        })
    }

    /// Bytes QuickJS has allocated for this runtime, and what its
    /// WebAssembly holds (`wasm`). QuickJS only reports its part by walking
    /// every object in the heap, so this costs time in proportion to the
    /// heap (3.5 ms with 1,000 open streams).
    pub(crate) fn heap_bytes(&self) -> u64 {
        heap_bytes_of(&self.runtime, &self.host)
    }

    /// [`heap_bytes`](Self::heap_bytes), read at most once per
    /// [`HEAP_SAMPLE_EVERY`]: what the per-request memory figures use, so a
    /// large heap does not slow every request.
    pub(crate) fn heap_bytes_sampled(&self) -> u64 {
        let mut sample = self.heap_sample.lock();
        if sample.0.elapsed() >= HEAP_SAMPLE_EVERY {
            *sample = (std::time::Instant::now(), self.heap_bytes());
        }
        sample.1
    }

    /// The next entry runs on an async worker: it moves to a blocking thread
    /// `bound` after it starts, or before the host blocks ([`super::inline`]).
    pub(crate) fn set_inline(&self, bound: Duration) {
        self.budget.set_inline(bound);
    }

    /// Whether [`heap_bytes_sampled`](Self::heap_bytes_sampled) would walk
    /// the heap now, and the heap is large enough for the walk to take
    /// longer than a request should hold an async worker.
    pub(crate) fn heap_walk_is_long(&self) -> bool {
        let (at, bytes) = *self.heap_sample.lock();
        at.elapsed() >= HEAP_SAMPLE_EVERY && bytes > LONG_HEAP_WALK_BYTES
    }

    /// Runs one request under the request's fuel and wall clock. A body
    /// the guest streams comes back empty, with its scope in
    /// [`Head::stream`]: read it with [`Warm::step`], end it with
    /// [`Warm::end`].
    pub(crate) fn run(
        &self,
        cx: &InvokeContext,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Ran<Head> {
        let scope = self
            .scopes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let budget = StepBudget {
            fuel: cx.limits.fuel_per_request,
            wall: cx.limits.wall_clock,
        };
        let (result, exit) =
            self.entered(cx, budget, |ctx| self.run_in(ctx, cx, scope, &parts, body));
        exit.into_ran(result)
    }

    /// The one way into the runtime: runs `f` in the context for `cx`'s
    /// request (its limits applied, its tenant's host functions reachable)
    /// under `budget`, then collects the streams made ready meanwhile
    /// (`takeReady`, a prelude helper, so still under the budget), and
    /// closes the budget. Whatever guest code `f` reaches (the job queue, a
    /// prelude helper a tenant may have tried to subvert) runs within it.
    fn entered<R>(
        &self,
        cx: &InvokeContext,
        budget: StepBudget,
        f: impl FnOnce(&Ctx<'_>) -> R,
    ) -> (R, Exit) {
        apply_limits(&self.runtime, &cx.limits);
        // The heap's share of the tenant's memory: less what the host holds
        // for the runtime's open (de)compression streams.
        self.host
            .set_memory_limit(usize::try_from(cx.limits.memory_bytes).unwrap_or(usize::MAX));
        self.runtime.set_memory_limit(self.host.heap_limit());
        self.host.enter(Scope {
            tenant: cx.tenant.clone(),
            log: cx.log.writer(),
            kv: cx.kv.clone(),
        });
        self.budget.arm(budget.fuel, budget.wall);
        // Through the budget: the entry may move threads (`inline`).
        self.budget.start_cpu();
        let (result, ready) = self.context.with(|ctx| {
            let result = f(&ctx);
            (result, take_ready(&ctx))
        });
        let exit = Exit {
            fuel: self.budget.ticks(),
            cpu_time: self.budget.cpu_used(),
            ready,
            tripped: self.budget.error(),
        };
        self.budget.close();
        self.host.leave();
        (result, exit)
    }

    fn run_in<'js>(
        &self,
        ctx: &Ctx<'js>,
        cx: &InvokeContext,
        scope: u64,
        parts: &http::request::Parts,
        body: Bytes,
    ) -> Result<Head, SandboxError> {
        let limits = &*cx.limits;
        let fail =
            |e: rquickjs::CaughtError<'js>| classify(Thrown::from_caught(e), &self.budget, limits);
        let internals = internals(ctx)?;
        let url = request_url(parts);
        // Parsed here rather than by the guest's URL class (a host call
        // that builds every component): the Request needs only the href.
        // Most request URLs are already in the parser's output form (an
        // `http://` origin of plain labels, a path of plain characters): those
        // skip the parser, whose IDNA pass on the host is most of its cost.
        let (url, parsed) = if is_canonical_http(&url) {
            (url, RUN_URL_PARSED)
        } else {
            match url::Url::parse(&url) {
                Ok(href) => (String::from(href), RUN_URL_PARSED),
                Err(_) => (url, 0),
            }
        };
        let flags = parsed | if cx.kv.is_some() { RUN_HAS_KV } else { 0 };
        let mut headers = Vec::with_capacity(parts.headers.len() * 2);
        for (name, value) in &parts.headers {
            headers.push(name.as_str().to_owned());
            headers.push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let body = if body.is_empty() {
            None
        } else {
            // In the QuickJS heap, so the memory limit counts what the
            // guest keeps of it.
            Some(host::bytes_to_js(ctx, &body).catch(ctx).map_err(fail)?)
        };
        let run: Function<'js> = internals.get("run").catch(ctx).map_err(fail)?;
        // The head itself when the handler answered at once, else a promise.
        let returned: Result<Value<'js>, SandboxError> = run
            .call((
                This(internals.clone()),
                scope as f64,
                parts.method.as_str(),
                url,
                headers,
                body,
                flags,
            ))
            .catch(ctx)
            .map_err(fail);
        let settled = returned
            .and_then(|value| match value.try_into_promise() {
                Ok(promise) => settle(
                    ctx,
                    &promise,
                    &self.budget,
                    limits,
                    Some((&internals, scope)),
                ),
                Err(value) => Ok(value),
            })
            .and_then(|value| to_response(ctx, value, limits))
            // What the handler left queued runs now, in this scope and budget:
            // a stream's first steps, or the settling of a read this request
            // fed to another stream (whose pump is then woken).
            .and_then(|head| drain_jobs(ctx, &self.budget).map(|()| head));
        match settled {
            Ok((response, true)) => Ok(Head {
                response,
                stream: Some(scope),
            }),
            other => {
                end_scope(&internals, scope);
                other.map(|(response, _)| Head {
                    response,
                    stream: None,
                })
            }
        }
    }

    /// Advances the stream of `scope` (from a streamed [`Head`]) until it
    /// yields a chunk, ends, or can only wait: for one of its timers, or for
    /// another request to feed it. Runs under `budget` (the stream's share
    /// of its total, at most one request's worth).
    pub(crate) fn step(&self, cx: &InvokeContext, scope: u64, budget: StepBudget) -> Ran<Step> {
        let (result, mut exit) =
            self.entered(cx, budget, |ctx| self.step_in(ctx, &cx.limits, scope));
        // A chunk the guest produced before it hit the limit still goes out.
        let result = match (result, exit.tripped.take()) {
            (result, None) => result,
            (Ok(Step::Chunk(chunk) | Step::LastChunk(chunk, _)), Some(err)) => {
                Ok(Step::LastChunk(chunk, err))
            }
            (_, Some(err)) => Err(err),
        };
        exit.into_ran(result)
    }

    fn step_in<'js>(
        &self,
        ctx: &Ctx<'js>,
        limits: &Limits,
        scope: u64,
    ) -> Result<Step, SandboxError> {
        let fail =
            |e: rquickjs::CaughtError<'js>| classify(Thrown::from_caught(e), &self.budget, limits);
        let internals = internals(ctx)?;
        let call = |name: &str| -> Result<Value<'js>, SandboxError> {
            internals
                .get::<_, Function<'js>>(name)
                .and_then(|f| f.call((This(internals.clone()), scope as f64)))
                .catch(ctx)
                .map_err(fail)
        };
        call("pullStart")?;
        loop {
            let read = call("pullResult")?;
            if read.is_null() {
                drain_jobs(ctx, &self.budget)?;
                return Ok(Step::Done);
            }
            if !read.is_undefined() {
                let chunk = TypedArray::<u8>::from_value(read)
                    .map(|a| host::copy_bytes(&a))
                    .map_err(|e| SandboxError::Internal {
                        message: format!("a stream chunk is not bytes: {e}"),
                        source: None,
                    })?;
                if chunk.len() as u64 > limits.max_output_bytes {
                    return Err(SandboxError::OutputTooLarge {
                        limit: limits.max_output_bytes,
                    });
                }
                let chunk = Bytes::from(chunk);
                // Refilling the stream's queue may run the guest into a
                // limit: the chunk it already produced still goes out first.
                return Ok(match drain_jobs(ctx, &self.budget) {
                    Ok(()) => Step::Chunk(chunk),
                    Err(err) => Step::LastChunk(chunk, err),
                });
            }
            if let Some(err) = self.budget.error() {
                return Err(err);
            }
            if ctx.execute_pending_job() {
                continue;
            }
            let next = call("nextTimer")?.as_number().unwrap_or(-1.0);
            if next < 0.0 {
                return Ok(Step::Idle);
            }
            if next > 0.0 {
                return Ok(Step::Wait(Duration::from_secs_f64(next / 1000.0)));
            }
            call("fireTimer")?;
        }
    }

    /// Ends `scope`: drops its timers and cancels its stream if it is still
    /// open (the guest's `cancel` callback runs, under one request's budget).
    /// An error means the cancel hit a limit: drop the runtime.
    pub(crate) fn end(&self, cx: &InvokeContext, scope: u64) -> Ran<()> {
        let budget = StepBudget {
            fuel: cx.limits.fuel_per_request,
            wall: cx.limits.wall_clock,
        };
        let ((), exit) = self.entered(cx, budget, |ctx| {
            if let Ok(internals) = internals(ctx) {
                end_scope(&internals, scope);
                let _ = drain_jobs(ctx, &self.budget);
            }
        });
        exit.into_ran(Ok(()))
    }
}

/// The fuel and wall clock one entry into a runtime may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepBudget {
    /// Interrupt ticks.
    pub(crate) fuel: u64,
    /// Wall clock.
    pub(crate) wall: Duration,
}

/// What an entry into the runtime left besides its value.
#[derive(Debug)]
struct Exit {
    fuel: u64,
    cpu_time: Duration,
    ready: Vec<u64>,
    /// The limit the entry hit, anywhere in it (in the prelude's helpers
    /// too): the runtime's heap may be in any state.
    tripped: Option<SandboxError>,
}

impl Exit {
    /// The entry's outcome: a limit it hit wins over what it returned.
    fn into_ran<T>(self, result: Result<T, SandboxError>) -> Ran<T> {
        Ran {
            result: match self.tripped {
                Some(err) => Err(err),
                None => result,
            },
            fuel: self.fuel,
            cpu_time: self.cpu_time,
            ready: self.ready,
        }
    }
}

/// The outcome of one entry into a runtime ([`Warm::run`], [`Warm::step`],
/// [`Warm::end`]).
#[derive(Debug)]
pub(crate) struct Ran<T> {
    /// What the entry came to; any limit it hit is an `Err` here (a step
    /// keeps the chunk it produced first, as [`Step::LastChunk`]).
    pub(crate) result: Result<T, SandboxError>,
    /// Interrupt ticks used.
    pub(crate) fuel: u64,
    /// CPU time the entry took (this thread's).
    pub(crate) cpu_time: Duration,
    /// The scopes whose stream read settled during the entry: their pumps
    /// have something to hand over (a chunk, their end, an error).
    pub(crate) ready: Vec<u64>,
}

/// Asks the prelude which scopes' stream reads settled (`takeReady`); an
/// entry calls it last, under its budget.
fn take_ready(ctx: &Ctx<'_>) -> Vec<u64> {
    let ready: rquickjs::Result<Vec<f64>> = internals(ctx)
        .map_err(|_| rquickjs::Error::Unknown)
        .and_then(|i| {
            i.get::<_, Function<'_>>("takeReady")
                .and_then(|f| f.call((This(i.clone()),)))
        });
    ready
        .unwrap_or_default()
        .into_iter()
        .map(|s| s as u64)
        .collect()
}

/// A response's head, from [`Warm::run`].
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) response: http::Response<Bytes>,
    /// The scope to [`Warm::step`] when the body is streamed.
    pub(crate) stream: Option<u64>,
}

/// What one [`Warm::step`] of a stream came to.
#[derive(Debug)]
pub(crate) enum Step {
    /// The next chunk.
    Chunk(Bytes),
    /// The next chunk, after which the guest failed (the stream ends with
    /// the error).
    LastChunk(Bytes, SandboxError),
    /// The stream ended.
    Done,
    /// Nothing to do before the stream's next timer, this far away.
    Wait(Duration),
    /// No jobs and no timers: only another request can feed the stream.
    Idle,
}

fn end_scope(internals: &Object<'_>, scope: u64) {
    let end: rquickjs::Result<Function<'_>> = internals.get("endScope");
    if let Ok(end) = end {
        let _ = end.call::<_, ()>((This(internals.clone()), scope as f64));
    }
}

/// Runs every queued job, within the budget.
fn drain_jobs(ctx: &Ctx<'_>, budget: &Budget) -> Result<(), SandboxError> {
    while ctx.execute_pending_job() {
        if let Some(err) = budget.error() {
            return Err(err);
        }
    }
    Ok(())
}

/// Runs the job queue (and the request's timers, when `internals` is given)
/// until `promise` settles, within the budget.
fn settle<'js>(
    ctx: &Ctx<'js>,
    promise: &Promise<'js>,
    budget: &Budget,
    limits: &Limits,
    internals: Option<(&Object<'js>, u64)>,
) -> Result<Value<'js>, SandboxError> {
    loop {
        match promise.state() {
            PromiseState::Resolved => {
                return promise
                    .result::<Value<'js>>()
                    .expect("settled")
                    .catch(ctx)
                    .map_err(|e| classify(Thrown::from_caught(e), budget, limits));
            }
            PromiseState::Rejected => {
                let err = promise.result::<Value<'js>>().expect("settled").catch(ctx);
                let thrown = match err {
                    Ok(v) => Thrown::from_value(v),
                    Err(e) => Thrown::from_caught(e),
                };
                return Err(classify(thrown, budget, limits));
            }
            PromiseState::Pending => {}
        }
        if let Some(err) = budget.error() {
            return Err(err);
        }
        if ctx.execute_pending_job() {
            continue;
        }
        // Nothing left to run: the only way forward is a timer.
        let Some((internals, scope)) = internals else {
            return Err(never_settles());
        };
        let next: rquickjs::Result<f64> = internals
            .get::<_, Function<'js>>("nextTimer")
            .and_then(|f| f.call((This(internals.clone()), scope as f64)));
        let wait = match next.catch(ctx) {
            Ok(ms) if ms >= 0.0 => Duration::from_secs_f64(ms / 1000.0),
            Ok(_) => return Err(never_settles()),
            Err(e) => return Err(classify(Thrown::from_caught(e), budget, limits)),
        };
        let remaining = budget.remaining();
        if wait >= remaining {
            std::thread::sleep(remaining);
            budget.trip_deadline();
            return Err(budget.error().expect("tripped"));
        }
        std::thread::sleep(wait);
        let fired: rquickjs::Result<()> = internals
            .get::<_, Function<'js>>("fireTimer")
            .and_then(|f| f.call((This(internals.clone()), scope as f64)));
        if let Err(e) = fired.catch(ctx) {
            return Err(classify(Thrown::from_caught(e), budget, limits));
        }
    }
}

fn never_settles() -> SandboxError {
    SandboxError::BadResponse {
        reason: "the fetch handler's promise never settled (no pending jobs or timers)".into(),
    }
}

/// The absolute URL a guest sees for a request.
pub(crate) fn request_url(parts: &http::request::Parts) -> String {
    let uri = &parts.uri;
    if uri.scheme().is_some() && uri.authority().is_some() {
        return uri.to_string();
    }
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '?', '#', '@', ' ']))
        .unwrap_or("localhost");
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("http://{host}{path}")
}

/// Whether `url::Url::parse(url)` would give back `url` itself: an
/// `http://` URL whose host is a canonical IPv4 address or lowercase ASCII
/// labels (none punycode, the last not a number), whose port (if any) is
/// not 80 and has no leading zero, and whose path and query hold only
/// characters the parser keeps as they are, with no `.` or `..` segment.
/// Anything else is left to the parser.
fn is_canonical_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if path.is_empty() {
        return false; // the parser adds the "/"
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && !port.starts_with('0')
            && port.parse::<u32>().is_ok_and(|p| p <= 65535 && p != 80);
        if !ok {
            return false;
        }
    }
    let labels: Vec<&str> = host.split('.').collect();
    let plain = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with("xn--")
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let ipv4 = labels.len() == 4
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 3
                && l.bytes().all(|b| b.is_ascii_digit())
                && (l.len() == 1 || !l.starts_with('0'))
                && l.parse::<u16>().is_ok_and(|n| n <= 255)
        });
    // A last label that is digits, or 0x and hex digits, makes the parser
    // read the host as an IPv4 address: only the canonical form passes.
    let last = labels.last().copied().unwrap_or("");
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last.starts_with("0x")
        || last.starts_with("0X");
    let name = host.len() <= 253 && labels.iter().all(plain) && !numeric;
    if !(ipv4 || name) {
        return false;
    }
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    // Characters neither percent-encoded nor rewritten by the parser in a
    // path (and, less `'`, in a special URL's query); no `%`, whose `%2e`
    // would be a dot segment.
    let kept = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/".contains(&b);
    let dots = path.split('/').any(|seg| seg == "." || seg == "..");
    path.bytes().all(kept) && !dots && query.is_none_or(|q| q.bytes().all(|b| kept(b) || b == b'?'))
}

/// The response `internals.run` resolved to, and whether its body streams.
fn to_response<'js>(
    ctx: &Ctx<'js>,
    value: Value<'js>,
    limits: &Limits,
) -> Result<(http::Response<Bytes>, bool), SandboxError> {
    let bad = |reason: String| SandboxError::BadResponse { reason };
    let shape = |e: rquickjs::Error| bad(format!("unexpected response shape: {e}"));
    let triple: Array<'js> = value
        .into_array()
        .ok_or_else(|| bad("the response is not an array".into()))?;
    let status: u16 = triple.get(0).map_err(shape)?;
    // Counted before a single string is copied out of the guest's heap.
    let count = triple.get::<Array<'js>>(1).map_err(shape)?.len() / 2;
    crate::response::check_header_count(count)?;
    let pairs: Vec<String> = triple.get(1).map_err(shape)?;
    let body: Value<'js> = triple.get(2).map_err(shape)?;
    let streamed: bool = triple.get(3).map_err(shape)?;
    let too_large = || SandboxError::OutputTooLarge {
        limit: limits.max_output_bytes,
    };
    // A string body (a Response made from a string, never encoded in the
    // guest) is encoded here, once.
    let body = if let Some(text) = body.as_string() {
        host::string_utf8(text, limits.max_output_bytes)
            .map_err(shape)?
            .map_err(|_| too_large())?
    } else {
        let body: Option<TypedArray<'js, u8>> = Option::from_js(ctx, body).map_err(shape)?;
        // Measured before it is copied: an oversized body never reaches the host.
        if body.as_ref().map_or(0, |b| b.len()) as u64 > limits.max_output_bytes {
            return Err(too_large());
        }
        body.as_ref().map(host::copy_bytes).unwrap_or_default()
    };
    let mut response = http::Response::new(Bytes::from(body));
    *response.status_mut() = crate::response::guest_status(status)?;
    *response.headers_mut() =
        crate::response::guest_headers(pairs.chunks_exact(2).map(|p| (&p[0], &p[1])))?;
    Ok((response, streamed))
}

/// How close to its limit a heap must be for a thrown `null` to be taken
/// for QuickJS's out-of-memory: the larger of this and a sixteenth of the
/// limit. The throw's frames and the request's temporaries (its body, a
/// string being copied) are released by the time it is read, so the heap is
/// below the limit again by as much as they held: 256 KiB was too little for
/// a request carrying a 512 KiB body. A deliberate `throw null` in a heap
/// that full is taken for the memory limit too, which it nearly is.
const HEAP_EDGE: usize = 256 * 1024;

/// Whether the heap of `ctx`'s runtime is within [`HEAP_EDGE`] (or a
/// sixteenth of its limit, if more) of that limit.
#[allow(unsafe_code)]
fn heap_nearly_full(ctx: &Ctx<'_>) -> bool {
    let mut usage = std::mem::MaybeUninit::<rquickjs::qjs::JSMemoryUsage>::uninit();
    // SAFETY: `ctx` is a live context (we are inside `Context::with`), its
    // runtime lives as long, and `JS_ComputeMemoryUsage` fills all of
    // `usage` without running JavaScript.
    let usage = unsafe {
        let rt = rquickjs::qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
        rquickjs::qjs::JS_ComputeMemoryUsage(rt, usage.as_mut_ptr());
        usage.assume_init()
    };
    let (Ok(size), Ok(limit)) = (
        usize::try_from(usage.malloc_size),
        usize::try_from(usage.malloc_limit),
    ) else {
        return false;
    };
    limit > 0 && size.saturating_add(HEAP_EDGE.max(limit / 16)) >= limit
}

/// What a guest threw, read out of QuickJS.
#[derive(Debug, Default)]
struct Thrown {
    name: Option<String>,
    message: String,
    stack: Option<String>,
    /// rquickjs reported an allocation failure directly.
    allocation: bool,
    /// `null` was thrown with the heap (nearly) full: QuickJS throws that
    /// when it has no room left even for its "out of memory" error.
    null: bool,
    /// A host-side failure, not something the guest threw.
    internal: Option<String>,
}

impl Thrown {
    fn from_caught(e: rquickjs::CaughtError<'_>) -> Self {
        match e {
            rquickjs::CaughtError::Exception(exc) => Self::from_value(exc.into_value()),
            rquickjs::CaughtError::Value(v) => Self::from_value(v),
            rquickjs::CaughtError::Error(rquickjs::Error::Allocation) => Self {
                allocation: true,
                message: "out of memory".into(),
                ..Self::default()
            },
            rquickjs::CaughtError::Error(e) => Self {
                message: e.to_string(),
                internal: Some(e.to_string()),
                ..Self::default()
            },
        }
    }

    fn from_value(v: Value<'_>) -> Self {
        if let Some(obj) = v.as_object()
            && (v.is_error() || obj.contains_key("message").unwrap_or(false))
        {
            let get = |k: &str| -> Option<String> {
                obj.get::<_, Option<Coerced<String>>>(k)
                    .ok()
                    .flatten()
                    .map(|c| c.0)
            };
            return Self {
                name: get("name"),
                message: get("message").unwrap_or_default(),
                stack: get("stack").filter(|s| !s.trim().is_empty()),
                ..Self::default()
            };
        }
        let null = v.is_null() && heap_nearly_full(v.ctx());
        let message = match v.as_string() {
            Some(s) => s.to_string().unwrap_or_default(),
            None => v
                .ctx()
                .json_stringify(v.clone())
                .ok()
                .flatten()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| format!("{:?}", v.type_of())),
        };
        Self {
            message,
            null,
            ..Self::default()
        }
    }

    fn is(&self, name: &str, message: &str) -> bool {
        self.name.as_deref() == Some(name) && self.message == message
    }

    /// "SyntaxError: … at line L, column C" for a compile error in `module`.
    fn syntax_reason(&self, module: &str) -> String {
        let kind = self.name.as_deref().unwrap_or("Error");
        match self.stack.as_deref().and_then(|s| line_col(s, module)) {
            Some((line, col)) => {
                format!(
                    "{kind}: {} at {module} line {line}, column {col}",
                    self.message
                )
            }
            None => format!("{kind}: {}", self.message),
        }
    }
}

/// Finds `module:LINE:COL` in a QuickJS stack.
fn line_col(stack: &str, module: &str) -> Option<(u32, u32)> {
    let at = stack.find(&format!("{module}:"))? + module.len() + 1;
    let mut parts = stack[at..].splitn(3, ':');
    let line = parts.next()?.parse().ok()?;
    let col: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((line, col.parse().ok()?))
}

/// Maps what stopped the guest to a typed error.
fn classify(thrown: Thrown, budget: &Budget, limits: &Limits) -> SandboxError {
    if let Some(err) = budget.error() {
        return err;
    }
    // At the very edge of the heap QuickJS may have no room for its "out of
    // memory" message: the error comes with an empty one. QuickJS throws no
    // other InternalError without a message.
    if thrown.allocation
        || thrown.is("InternalError", "out of memory")
        || thrown.is("InternalError", "")
        || thrown.null
    {
        return SandboxError::MemoryLimit {
            limit: limits.memory_bytes,
        };
    }
    if thrown.is("RangeError", "Maximum call stack size exceeded") {
        return SandboxError::StackOverflow;
    }
    if let Some(message) = thrown.internal {
        return SandboxError::Internal {
            message: format!("QuickJS: {message}"),
            source: None,
        };
    }
    if thrown.name.as_deref() == Some("CorralBadResponse") {
        return SandboxError::BadResponse {
            reason: thrown.message,
        };
    }
    let message = match thrown.name.as_deref() {
        Some(name) if !name.is_empty() => format!("{name}: {}", thrown.message),
        _ => thrown.message,
    };
    SandboxError::ScriptError {
        message,
        stack: thrown.stack,
    }
}

#[cfg(test)]
mod tests {
    /// `is_canonical_http` says yes only where the parser gives the URL back.
    #[test]
    fn canonical_http_urls_are_what_the_parser_gives_back() {
        let urls = [
            "http://127.0.0.1:8080/apps/h/",
            "http://localhost/",
            "http://example.com/a/b?c=d&e=f",
            "http://a-b.example.com:443/x",
            "http://127.0.0.1:80/",
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://1.2.3.256/",
            "http://01.2.3.4/",
            "http://a.b.c.1/",
            "http://a.0x1/",
            "http://EXAMPLE.com/",
            "http://xn--nxasmq6b.com/",
            "http://xn--a.com/",
            "http://-a.com/",
            "http://a..b/",
            "http://a.b./",
            "http://a/b/../c",
            "http://a/b/./c",
            "http://a/b/%2e/c",
            "http://a/b c",
            "http://a/b?c d",
            "http://a/b?c'd",
            "http://a/b?c?d",
            "http://a/b\\c",
            "http://a:08080/",
            "http://a:/",
            "http://a:65536/",
            "http://a",
            "https://a/",
            "http://a/~user/@x:y;z=1,2+3*4!$&()",
            "http://a/b#c",
        ];
        for url in urls {
            if super::is_canonical_http(url) {
                let parsed = url::Url::parse(url).map(String::from);
                assert_eq!(parsed.as_deref(), Ok(url), "{url}");
            }
        }
        assert!(super::is_canonical_http("http://127.0.0.1:8080/apps/h/"));
        assert!(super::is_canonical_http("http://example.com/a/b?c=d&e=f"));
    }

    use super::*;

    #[test]
    fn finds_line_and_column() {
        assert_eq!(line_col("    at app.js:3:14\n", "app.js"), Some((3, 14)));
        assert_eq!(line_col("    at app.js:12:1", "app.js"), Some((12, 1)));
        assert_eq!(line_col("    at other.js:3:14\n", "app.js"), None);
    }

    /// The one-module prelude V8 evaluates (no lazy parts) is valid and
    /// settles its lazy properties at its end.
    #[test]
    fn the_whole_prelude_evaluates_as_one_module() {
        let rt = new_runtime(&Limits::default(), None).unwrap();
        let cx = Context::full(&rt).unwrap();
        let host = Arc::new(HostState::counting_coders_in(usize::MAX, Arc::default()));
        cx.with(|ctx| {
            host::install(&ctx, &host).unwrap();
            let source = super::super::split::whole(PRELUDE_SOURCE);
            let module = Module::declare(ctx.clone(), PRELUDE_MODULE, source)
                .catch(&ctx)
                .unwrap();
            let (_, promise) = module.eval().catch(&ctx).unwrap();
            while ctx.execute_pending_job() {}
            assert_eq!(promise.state(), PromiseState::Resolved);
            let probe: String = ctx
                .eval(
                    r#"const d = Object.getOwnPropertyDescriptor(crypto, "subtle");
                    const r = Object.getOwnPropertyDescriptor(globalThis, "ReadableStream");
                    `${String(d.value)} ${"get" in d} ${typeof r.value} ${r.enumerable}`"#,
                )
                .catch(&ctx)
                .unwrap();
            assert_eq!(probe, "[object SubtleCrypto] false function false");
        });
    }

    #[test]
    fn prelude_compiles() {
        assert!(prelude_bytecode().len() > 1000);
        let parts = prelude_parts();
        for (name, bytecode) in &parts.parts {
            println!("prelude part {name}: {} B of bytecode", bytecode.len());
            assert!(!bytecode.is_empty());
        }
        println!("prelude core: {} B of bytecode", parts.core.len());
        assert!(parts.parts.iter().any(|(name, _)| *name == "streams"));
    }
}
