//! JavaScript tenants on QuickJS, Workers-style.
//!
//! A tenant uploads one ES module (`app.js`, or a tar bundle holding `app.js`)
//! whose default export has a `fetch(request, env, ctx)` method:
//!
//! ```js
//! export default {
//!   async fetch(request, env, ctx) {
//!     const url = new URL(request.url);
//!     await env.KV.put("last", url.pathname);
//!     return new Response(`hello from ${url.pathname}`, { headers: { "x-app": "demo" } });
//!   },
//! };
//! ```
//!
//! [`QuickJsBackend::precompile`](crate::Backend::precompile) compiles it to
//! QuickJS bytecode at deploy time (a syntax error is
//! [`SandboxError::InvalidModule`] naming its line and column) and checks that
//! the module evaluates and exports a `fetch` handler.
//! [`QuickJsBackend::load`](crate::Backend::load) builds a warm
//! [`QuickJsProgram`] from that bytecode without parsing any source.
//!
//! ## Isolation and limits
//! Each warm tenant owns one to [`Limits::compute_shares`] QuickJS `Runtime`s
//! (each its own heap and garbage collector, with one context); see
//! [Several runtimes](#several-runtimes-per-tenant). Each runtime is held to:
//! - **memory**: the runtime's allocator refuses to go past
//!   [`Limits::memory_bytes`]; the guest sees an exception and the request
//!   ends with [`SandboxError::MemoryLimit`];
//! - **stack**: [`Limits::max_stack_bytes`] (at most [`MAX_JS_STACK_BYTES`]);
//!   overflowing it is [`SandboxError::StackOverflow`];
//! - **fuel**: QuickJS calls an interrupt handler every [`POLLS_PER_TICK`]
//!   function calls or backward jumps. One call is one unit of JavaScript fuel
//!   (an *interrupt tick*); past [`Limits::fuel_per_request`] ticks the request
//!   ends with [`SandboxError::FuelExhausted`];
//! - **wall clock**: the same handler ends the request at
//!   [`Limits::wall_clock`] with [`SandboxError::Deadline`], also while it
//!   waits for timers.
//!
//! These budgets cover every entry into the runtime, not only requests: a
//! stream's steps, its `cancel` when the client goes away, the timers and
//! microtasks they run, and the prelude's own helpers that the host calls.
//! Outside an entry the budget is spent, so no guest code runs unbounded. The
//! prelude captures the built-ins it uses when it loads, so a tenant that
//! patches `Array.prototype`, `Promise.prototype.then`, an `Object.prototype`
//! getter or `Symbol.iterator` changes its own code only, never what the
//! prelude hands the host.
//!
//! The prelude is one file but loads in parts (`split`): a core evaluated
//! when the runtime is built (what a `fetch` returning a `Response` needs)
//! and parts (streams, URL, events, Blob, FormData, the text coders,
//! `structuredClone`, `crypto.subtle`, compression) read from bytecode and
//! evaluated the first time the tenant's code, or the core, touches one of
//! their globals. A part loads within the entry that touched it, so under
//! its budget and memory limit, and with the built-ins of the core's load
//! time, whatever the tenant patched since.
//!
//! After any of these the runtime is dropped, and the tenant's next request
//! gets a fresh one built from bytecode. An uncaught exception is
//! [`SandboxError::ScriptError`] with the message and the JavaScript stack; the
//! runtime (and the tenant's globals) survive it. Requests run one at a time
//! on each runtime, each on a tokio blocking thread; the steps of a runtime's
//! open streams interleave with them. A request that finds its tenant's
//! runtime idle may instead start on the async worker that received it and,
//! if it runs longer than a millisecond or is about to block on KV, moves to
//! a blocking thread mid-run (see `inline.rs`): a warm hello then pays no
//! thread switch.
//!
//! ## Several runtimes per tenant
//! A tenant with `compute_shares` of N (from its tier) may run N requests at
//! once, on up to N runtimes. It starts (and cold-starts) with one; another is
//! built from bytecode only when a request finds every existing one busy, so
//! a quiet tenant keeps one runtime and the memory of one. Parking drops them
//! all. As with workerd's isolates, **module state is per runtime**: the
//! module is evaluated once in each, so a global variable, a cache kept at
//! module level or a counter differs between runtimes, and two requests may
//! see different ones. Keep shared state in `env.KV`. A stream stays in the
//! runtime its request ran in. Fuel, wall clock, log and KV are per request
//! as before, whatever runtime it runs on.
//!
//! Memory: each runtime is held to [`Limits::memory_bytes`], and the
//! platform gives each instance its tier's memory divided by its shares
//! ([`limits_for`](crate::platform::limits_for)), so N runtimes together
//! never pass the tier's memory: a tenant cannot multiply its memory by
//! opening runtimes. (One byte counter shared by all the runtimes would let
//! a lone runtime use the whole tier, but it would put an atomic add shared
//! across cores on every QuickJS allocation, and a quiet tenant would gain
//! nothing it cannot already get by buying a tier with fewer shares.) The
//! host-side state kept outside the heaps is capped by counts: open
//! `CompressionStream`s (a few hundred kilobytes of window each) per
//! tenant, across its runtimes; streaming `TextDecoder`s (a few dozen bytes
//! each) per runtime.
//!
//! ## What the guest gets
//! `Request`, `Response`, `Headers`, `URL`, `URLSearchParams`, `TextEncoder`,
//! `TextDecoder`, the WHATWG streams (`ReadableStream`, `WritableStream`,
//! `TransformStream`, `TextEncoderStream`, `TextDecoderStream`, queuing
//! strategies), `console` (into the tenant's [`TenantLog`](crate::TenantLog)),
//! `crypto.getRandomValues` / `crypto.randomUUID`, `EventTarget`, `Event`,
//! `CustomEvent`, `ErrorEvent`, `AbortController`, `AbortSignal`, `DOMException`,
//! `structuredClone`, `Blob`, `File`, `self`, `navigator.userAgent`,
//! Promises and `async`,
//! `setTimeout`/`setInterval` that never outlive their request (or its
//! stream), and `env.KV` (`get`, `put`, `delete`, `list`) when the
//! [`InvokeContext`](crate::InvokeContext) carries a
//! [`TenantKv`](crate::TenantKv). No network, no filesystem, no `import`s.
//!
//! ## Streamed responses
//! A `Response` whose body is a `ReadableStream` (for example the readable
//! side of a `TransformStream`) is streamed: the head goes out as soon as
//! `fetch` resolves, and each chunk (a `Uint8Array`, or a string sent as
//! UTF-8) as the guest enqueues it. `ctx.waitUntil` work keeps running
//! alongside the stream instead of delaying the head. A stream has a budget
//! of its own across all its steps, [`Limits::stream_fuel`] and
//! [`Limits::max_stream_duration`]; see [`QuickJsProgram`].
//!
//! ```js
//! export default {
//!   fetch(request, env, ctx) {
//!     const { readable, writable } = new TransformStream();
//!     const writer = writable.getWriter();
//!     ctx.waitUntil((async () => {
//!       for (let i = 0; i < 3; i++) {
//!         await writer.write(new TextEncoder().encode(`data: tick ${i}\n\n`));
//!         await new Promise((r) => setTimeout(r, 1000));
//!       }
//!       await writer.close();
//!     })());
//!     return new Response(readable, { headers: { "content-type": "text/event-stream" } });
//!   },
//! };
//! ```
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use corral::{Backend, InvokeContext, Limits, SandboxError, TenantLog};
//! use corral::js::QuickJsBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let backend = QuickJsBackend::new();
//! let limits = Limits::builder().fuel_per_request(1_000).build();
//! let source = br#"export default { fetch(req) {
//!     if (req.url.endsWith("/spin")) { while (true) {} }
//!     return new Response("hi " + new URL(req.url).pathname);
//! } }"#;
//! let artifact = backend.precompile(source, &limits)?;
//! let program = backend.load(&artifact, &limits)?;
//! let cx = InvokeContext::new("demo".parse().unwrap(), Arc::new(limits), Arc::new(TenantLog::new(1024)));
//!
//! let request = http::Request::get("/there").body(Bytes::new()).unwrap();
//! let response = program.clone().invoke(cx.clone(), request).await?;
//! assert_eq!(response.into_body().to_bytes().await?, "hi /there");
//!
//! // The limit being hit: 1,000 ticks of fuel run out.
//! let request = http::Request::get("/spin").body(Bytes::new()).unwrap();
//! let err = program.invoke(cx, request).await.unwrap_err();
//! assert!(matches!(err, SandboxError::FuelExhausted { limit: 1_000, .. }));
//! # Ok::<(), SandboxError>(())
//! # }).unwrap();
//! ```

mod artifact;
mod budget;
pub(crate) mod compress;
pub(crate) mod engine;
pub(crate) mod host;
mod inline;
pub(crate) mod multipart;
pub(crate) mod split;
pub(crate) mod subtle;
pub(crate) mod wasm;
pub(crate) mod web;

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

pub use budget::POLLS_PER_TICK;
pub use engine::MAX_JS_STACK_BYTES;
pub use wasm::{MAX_MODULE_BYTES as MAX_WASM_MODULE_BYTES, MAX_WASM_STACK};

use crate::{
    Backend, Body, BodySender, BoxFuture, InvocationStats, InvokeContext, Kind, Limits, Program,
    SandboxError,
};
use corral_metering::StreamFigures;
use engine::{Head, Ran, Step, StepBudget, Warm};

/// The QuickJS engine: compiles Workers-style modules to bytecode and loads
/// them into per-tenant runtimes. Cheap to create; holds no state.
///
/// ```
/// use corral::{Backend, Kind, Limits, SandboxError};
/// let backend = corral::js::QuickJsBackend::new();
/// assert_eq!(backend.kind(), Kind::Js);
/// let err = backend.precompile(b"export default {\n  fetch(req) { return 1 +; }\n}", &Limits::default()).unwrap_err();
/// assert!(matches!(&err, SandboxError::InvalidModule { reason } if reason.contains("line 2, column")));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct QuickJsBackend;

impl QuickJsBackend {
    /// A backend.
    pub fn new() -> Self {
        Self
    }
}

/// The name of the entry module inside a tar bundle.
const BUNDLE_ENTRY: &str = "app.js";

/// The module source inside `upload`: the bytes themselves, or `app.js` from
/// a tar bundle.
pub(crate) fn entry_source(upload: &[u8]) -> Result<String, SandboxError> {
    let invalid = |reason: String| SandboxError::InvalidModule { reason };
    let is_tar = upload.len() >= 512 && upload.get(257..262) == Some(b"ustar");
    let bytes = if is_tar {
        let mut archive = tar::Archive::new(upload);
        let entries = archive
            .entries()
            .map_err(|e| invalid(format!("unreadable tar bundle: {e}")))?;
        let mut found = None;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid(format!("unreadable tar bundle: {e}")))?;
            let path = entry
                .path()
                .map_err(|e| invalid(format!("unreadable tar bundle: {e}")))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            if path == BUNDLE_ENTRY {
                let mut buf = Vec::new();
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| invalid(format!("unreadable tar bundle: {e}")))?;
                found = Some(buf);
                break;
            }
        }
        found.ok_or_else(|| invalid(format!("the tar bundle has no {BUNDLE_ENTRY}")))?
    } else {
        upload.to_vec()
    };
    String::from_utf8(bytes).map_err(|e| {
        invalid(format!(
            "{BUNDLE_ENTRY} is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

impl Backend for QuickJsBackend {
    fn kind(&self) -> Kind {
        Kind::Js
    }

    fn precompile(&self, source: &[u8], limits: &Limits) -> Result<Vec<u8>, SandboxError> {
        let source = entry_source(source)?;
        let bytecode = engine::compile_module(engine::APP_MODULE, &source, limits)?;
        // Evaluate it once so a module that throws at top level, imports
        // something, or exports no `fetch` is refused at deploy.
        Warm::build(&bytecode, limits).map_err(|e| match e {
            SandboxError::InvalidModule { .. } | SandboxError::Internal { .. } => e,
            other => SandboxError::InvalidModule {
                reason: format!("evaluating {}: {other}", engine::APP_MODULE),
            },
        })?;
        Ok(artifact::encode(&bytecode))
    }

    fn load(&self, artifact: &[u8], limits: &Limits) -> Result<Arc<dyn Program>, SandboxError> {
        Ok(Arc::new(QuickJsProgram::load(artifact, limits)?))
    }
}

/// A warm JavaScript tenant: its bytecode and its QuickJS runtimes (up to
/// [`Limits::compute_shares`] of them, made on demand).
///
/// Dropping it frees every runtime's whole heap (parking). Requests run one
/// at a time on each runtime; after a request that hit a limit, its runtime
/// is rebuilt from the bytecode on its next use.
///
/// A response whose body is a `ReadableStream` is streamed: the head is
/// returned at once, and a task reads the stream chunk by chunk, taking the
/// runtime only while the guest has something to run (between chunks it
/// waits for the stream's timers, or for another request to feed it), so
/// the tenant keeps serving requests while its streams are open. Each such
/// step runs under at most one request's fuel and wall clock, and all the
/// steps of a stream share its total budget: [`Limits::stream_fuel`] of fuel,
/// and [`Limits::max_stream_duration`] of wall clock from its request's start
/// (a `text/event-stream` may stay open that long while its client reads it,
/// any other stream must also end within the request's wall clock). Over
/// either, the stream ends with [`SandboxError::FuelExhausted`] or
/// [`SandboxError::Deadline`] naming the stream's limit, and the runtime is
/// rebuilt as after any limit. Dropping the body cancels the guest's stream.
///
/// Every entry into the runtime (a request, a stream step, the end of a
/// stream, and the prelude's own helpers they call) runs under fuel and wall
/// clock, so no guest code, not even code a tenant slipped into a patched
/// built-in, runs unbounded while holding the runtime.
///
/// The memory figure of a request ([`InvocationStats::peak_memory`]) is the
/// runtime's heap size read before and after it, at most once every 50 ms:
/// QuickJS measures its heap by walking every object in it.
///
/// ```
/// use corral::{Backend, Limits};
/// use corral::js::{QuickJsBackend, QuickJsProgram};
/// let limits = Limits::default();
/// let artifact = QuickJsBackend::new()
///     .precompile(b"export default { fetch() { return new Response('ok') } }", &limits)
///     .unwrap();
/// let program = QuickJsProgram::load(&artifact, &limits).unwrap();
/// assert!(program.heap_bytes() > 0);
/// ```
#[derive(Debug)]
pub struct QuickJsProgram {
    bytecode: Box<[u8]>,
    /// The tenant's runtimes that are not running anything now.
    pool: Mutex<Pool>,
    /// Signalled when a runtime goes back to the pool.
    returned: Condvar,
    /// The same, for a request waiting (as a task) to run inline.
    freed: Notify,
    /// The next invocation is the first on a freshly loaded program.
    fresh: AtomicBool,
    /// The pump of each open stream, by (runtime, runtime generation,
    /// scope): woken when a request or another stream's step settles its
    /// pending read, or when its runtime is dropped.
    wakers: Mutex<HashMap<(usize, u64, u64), Arc<Notify>>>,
    /// Stream steps run, for [`stream_steps`](Self::stream_steps).
    steps: AtomicU64,
    /// One clone in every [`Slot`]: how many exist, wherever they are.
    alive: Arc<()>,
    /// Compression coders open in all the runtimes, against one cap.
    coders: Arc<std::sync::atomic::AtomicUsize>,
    /// Requests left to run on blocking threads directly, after one that
    /// started on an async worker had to move ([`inline`]).
    skip_inline: std::sync::atomic::AtomicU32,
}

/// The runtimes of one tenant. Each is a [`Slot`], made on demand (only when
/// every existing one is busy) up to [`Limits::compute_shares`] of them, and
/// kept until the program is dropped (parked).
#[derive(Debug)]
struct Pool {
    idle: Vec<Slot>,
    /// Slots made so far; also the next slot's id.
    made: usize,
}

/// One runtime of a tenant: the unit a request or a stream step holds
/// alone while it runs.
#[derive(Debug)]
struct Slot {
    /// Which of the tenant's runtimes (streams are pinned to theirs).
    id: usize,
    /// `None` after a limit dropped it (or before its first build): the next
    /// user builds it from bytecode.
    warm: Option<Warm>,
    /// Bumped when the runtime is dropped: open streams belong to the old one.
    generation: u64,
    _alive: Arc<()>,
}

/// A [`Slot`] taken out of the pool; dropping it puts the slot back (also
/// when the request panicked), so a stream waiting for its runtime is never
/// left waiting for a slot that is gone.
struct Lease<'a> {
    program: &'a QuickJsProgram,
    slot: Option<Slot>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        self.slot.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Slot {
        self.slot.as_mut().expect("held until drop")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.program.give_back(slot);
        }
    }
}

/// A [`Lease`] that owns its program, to move with a request between
/// threads ([`inline`]).
struct OwnedLease {
    program: Arc<QuickJsProgram>,
    slot: Option<Slot>,
}

impl std::ops::Deref for OwnedLease {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        self.slot.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for OwnedLease {
    fn deref_mut(&mut self) -> &mut Slot {
        self.slot.as_mut().expect("held until drop")
    }
}

impl Drop for OwnedLease {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.program.give_back(slot);
        }
    }
}

/// How [`QuickJsProgram::try_inline`] went.
enum Inline {
    /// It started on the worker (and ended there, or moved).
    Started(inline::Started<Outcome>),
    /// It could not start (no fiber, or it panicked).
    Failed(SandboxError),
    /// Not now: the request, for a blocking thread.
    Declined(http::Request<Bytes>),
    /// Other requests run inline on all the workers allowed: the request,
    /// to try again when one ends, or for a blocking thread.
    Busy(http::Request<Bytes>),
    /// All the tenant's runtimes are busy: the request, to wait for one.
    AllBusy(http::Request<Bytes>),
}

/// What [`QuickJsProgram::try_lease_warm`] found.
enum Idle {
    Warm(Slot),
    /// Every runtime the tenant may have exists and is busy.
    AllBusy,
    /// None warm and idle, but one may be made (or rebuilt).
    No,
}

/// Times a request may wait as a task for one of its tenant's runtimes to
/// be free, to run inline, before it waits on a blocking thread instead.
const INLINE_WAITS: u32 = 64;

/// What a request's run gives back: its head, and its stream if it streams.
type Outcome = Result<(http::Response<Bytes>, Option<Stream>), SandboxError>;

/// How many chunks a stream may run ahead of its client.
const STREAM_BUFFER: usize = 4;

/// A streamed response body being read out of the runtime.
struct Stream {
    scope: u64,
    /// The runtime the stream lives in, and that runtime's generation.
    runtime: usize,
    generation: u64,
    /// A `text/event-stream`: its steps take a runtime slot of their own.
    event: bool,
    /// When the stream must have ended: [`Limits::max_stream_duration`]
    /// after its request started (for a stream other than an event stream,
    /// the request's wall clock if sooner).
    deadline: Instant,
    /// The limit named when `deadline` passes.
    deadline_limit: Duration,
    /// Fuel all its steps have used, against [`Limits::stream_fuel`].
    fuel_used: AtomicU64,
    /// Where each step's fuel and time go (metering reads them live).
    figures: StreamFigures,
    /// Woken when the stream may have something to read.
    wake: Arc<Notify>,
}

impl Stream {
    fn deadline_error(&self) -> SandboxError {
        SandboxError::Deadline {
            limit: self.deadline_limit,
        }
    }

    /// The budget of the next step: one request's worth, or what is left of
    /// the stream's total if less. `Err` when nothing is left.
    fn next_budget(&self, limits: &Limits) -> Result<StepBudget, SandboxError> {
        let used = self.fuel_used.load(Ordering::Relaxed);
        let left = limits.stream_fuel.saturating_sub(used);
        if left == 0 {
            return Err(SandboxError::FuelExhausted {
                limit: limits.stream_fuel,
                consumed: used,
            });
        }
        let wall = self.deadline.saturating_duration_since(Instant::now());
        if wall.is_zero() {
            return Err(self.deadline_error());
        }
        Ok(StepBudget {
            fuel: left.min(limits.fuel_per_request),
            wall: wall.min(limits.wall_clock),
        })
    }

    /// Counts a step's fuel against the stream's total; returns the total.
    fn account(&self, fuel: u64) -> u64 {
        self.fuel_used.fetch_add(fuel, Ordering::Relaxed) + fuel
    }

    /// Names the stream's limit in a step's error when the stream's total,
    /// not the per-request budget, was what the step ran out of.
    fn name_limit(&self, limits: &Limits, budget: StepBudget, used: u64, err: &mut SandboxError) {
        match err {
            SandboxError::FuelExhausted { limit, consumed }
                if budget.fuel < limits.fuel_per_request =>
            {
                *limit = limits.stream_fuel;
                *consumed = used;
            }
            SandboxError::Deadline { limit } if budget.wall < limits.wall_clock => {
                *limit = self.deadline_limit;
            }
            _ => {}
        }
    }
}

impl QuickJsProgram {
    /// Loads a persisted artifact (from [`Backend::precompile`]) into a warm
    /// runtime: a cold start. The artifact's checksum is verified first; a
    /// damaged one is [`SandboxError::CorruptArtifact`].
    pub fn load(artifact: &[u8], limits: &Limits) -> Result<Self, SandboxError> {
        let bytecode = artifact::decode(artifact)?;
        let coders = Arc::default();
        let warm = Warm::build_counting_coders_in(bytecode, limits, Arc::clone(&coders))?;
        let alive = Arc::new(());
        Ok(Self {
            bytecode: bytecode.into(),
            pool: Mutex::new(Pool {
                idle: vec![Slot {
                    id: 0,
                    warm: Some(warm),
                    generation: 0,
                    _alive: alive.clone(),
                }],
                made: 1,
            }),
            returned: Condvar::new(),
            freed: Notify::new(),
            fresh: AtomicBool::new(true),
            wakers: Mutex::new(HashMap::new()),
            steps: AtomicU64::new(0),
            alive,
            coders,
            skip_inline: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Bytes the tenant's QuickJS heaps hold now, summed over its runtimes
    /// that are not running anything (0 for one dropped after a failure).
    pub fn heap_bytes(&self) -> u64 {
        let pool = self.pool.lock();
        pool.idle
            .iter()
            .filter_map(|s| s.warm.as_ref())
            .map(Warm::heap_bytes)
            .sum()
    }

    /// How many runtimes the tenant has made since it was loaded (at most
    /// its [`Limits::compute_shares`]): one after a cold start, another only
    /// when a request finds every existing one busy. Parking drops them all.
    ///
    /// ```
    /// # use corral::{Backend, Limits};
    /// # use corral::js::{QuickJsBackend, QuickJsProgram};
    /// # let limits = Limits::default();
    /// # let artifact = QuickJsBackend::new()
    /// #     .precompile(b"export default { fetch() { return new Response('ok') } }", &limits)
    /// #     .unwrap();
    /// let program = QuickJsProgram::load(&artifact, &limits).unwrap();
    /// assert_eq!(program.runtimes(), 1);
    /// ```
    pub fn runtimes(&self) -> usize {
        self.pool.lock().made
    }

    /// A runtime for a request: an idle one (the last returned, whose
    /// caches are warmest), else a new empty slot if fewer than `shares`
    /// exist (built by the caller, outside the pool's lock), else the first
    /// one returned.
    fn lease_any(&self, shares: u32) -> Lease<'_> {
        let shares = usize::try_from(shares.max(1)).unwrap_or(usize::MAX);
        let mut pool = self.pool.lock();
        let slot = loop {
            if let Some(slot) = pool.idle.pop() {
                break slot;
            }
            if pool.made < shares {
                let id = pool.made;
                pool.made += 1;
                break Slot {
                    id,
                    warm: None,
                    generation: 0,
                    _alive: self.alive.clone(),
                };
            }
            self.returned.wait(&mut pool);
        };
        Lease {
            program: self,
            slot: Some(slot),
        }
    }

    /// The last returned runtime if one is idle and warm, without waiting.
    fn try_lease_warm(&self, shares: u32) -> Idle {
        let shares = usize::try_from(shares.max(1)).unwrap_or(usize::MAX);
        let mut pool = self.pool.lock();
        match pool.idle.last() {
            Some(slot) if slot.warm.is_some() => pool.idle.pop().map_or(Idle::No, Idle::Warm),
            None if pool.made >= shares => Idle::AllBusy,
            _ => Idle::No,
        }
    }

    /// Puts a runtime back in the pool and wakes whoever waits for one.
    fn give_back(&self, slot: Slot) {
        self.pool.lock().idle.push(slot);
        // All: a stream step waits for its own runtime, not any.
        self.returned.notify_all();
        // One request waiting to run inline (or a permit for the next).
        self.freed.notify_one();
    }

    /// Runtime `id` (a stream's own), once no one else holds it.
    fn lease(&self, id: usize) -> Lease<'_> {
        let mut pool = self.pool.lock();
        let slot = loop {
            if let Some(at) = pool.idle.iter().position(|s| s.id == id) {
                break pool.idle.swap_remove(at);
            }
            self.returned.wait(&mut pool);
        };
        Lease {
            program: self,
            slot: Some(slot),
        }
    }

    /// How many times the runtime has been taken to advance an open stream
    /// (each step runs until the stream yields a chunk, ends, or must wait).
    /// A stream waiting on a timer or on another request costs no steps.
    ///
    /// ```
    /// # use corral::{Backend, Limits};
    /// # use corral::js::{QuickJsBackend, QuickJsProgram};
    /// # let limits = Limits::default();
    /// # let artifact = QuickJsBackend::new()
    /// #     .precompile(b"export default { fetch() { return new Response('ok') } }", &limits)
    /// #     .unwrap();
    /// let program = QuickJsProgram::load(&artifact, &limits).unwrap();
    /// assert_eq!(program.stream_steps(), 0);
    /// ```
    pub fn stream_steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Bytes of bytecode this program rebuilds its runtime from.
    pub fn bytecode_len(&self) -> usize {
        self.bytecode.len()
    }

    /// Wakes the pumps of the streams whose pending read settled during an
    /// entry (`ready`, from its [`Ran`]), except `running`'s own.
    fn wake_ready(&self, ready: &[u64], slot: &Slot, running: Option<u64>) {
        if ready.is_empty() {
            return;
        }
        let wakers = self.wakers.lock();
        for scope in ready.iter().filter(|s| Some(**s) != running) {
            if let Some(wake) = wakers.get(&(slot.id, slot.generation, *scope)) {
                wake.notify_one();
            }
        }
    }

    /// Puts back the runtime after a failure: a limit may have left its heap
    /// in any state, so the next request starts from bytecode, and the
    /// runtime's open streams are woken to find it gone; a plain script error
    /// keeps it.
    fn keep_after(&self, slot: &mut Slot, warm: Warm, err: &SandboxError, ready: &[u64]) {
        if matches!(
            err,
            SandboxError::ScriptError { .. } | SandboxError::BadResponse { .. }
        ) {
            self.wake_ready(ready, slot, None);
            slot.warm = Some(warm);
            return;
        }
        drop(warm);
        let dropped = slot.generation;
        slot.generation += 1;
        for ((id, generation, _), wake) in self.wakers.lock().iter() {
            if *id == slot.id && *generation == dropped {
                wake.notify_one();
            }
        }
    }

    fn invoke_blocking(&self, cx: &InvokeContext, request: http::Request<Bytes>) -> Outcome {
        let mut slot = self.lease_any(cx.limits.compute_shares);
        self.invoke_on(&mut slot, cx, request, None)
    }

    /// Runs a request in `slot`'s runtime (built first if it has none);
    /// `inline`: it started on an async worker, and moves off it after
    /// that long.
    fn invoke_on(
        &self,
        slot: &mut Slot,
        cx: &InvokeContext,
        request: http::Request<Bytes>,
        inline: Option<Duration>,
    ) -> Outcome {
        let mut cold_start = self.fresh.swap(false, Ordering::Relaxed);
        let warm = match slot.warm.take() {
            Some(warm) => warm,
            None => {
                cold_start = true;
                Warm::build_counting_coders_in(&self.bytecode, &cx.limits, self.coders.clone())?
            }
        };
        // Walking a large heap, or freeing one after a limit, is host work
        // that no tick bounds: never on an async worker.
        let off_worker = |long: bool| {
            if inline.is_some() && long {
                inline::hop(false);
            }
        };
        off_worker(warm.heap_walk_is_long());
        let before = warm.heap_bytes_sampled();
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        if let Some(bound) = inline {
            warm.set_inline(bound);
        }
        let Ran {
            result,
            fuel,
            cpu_time,
            ready,
        } = warm.run(cx, parts, body);
        let wall_time = started.elapsed();
        match result {
            Ok(Head {
                mut response,
                stream,
            }) => {
                response.extensions_mut().insert(InvocationStats {
                    fuel_consumed: fuel,
                    cpu_time,
                    wall_time,
                    peak_memory: {
                        off_worker(warm.heap_walk_is_long());
                        before.max(warm.heap_bytes_sampled())
                    },
                    cold_start,
                });
                self.wake_ready(&ready, slot, None);
                slot.warm = Some(warm);
                let stream = stream.map(|scope| {
                    let figures = StreamFigures::new();
                    response.extensions_mut().insert(figures.clone());
                    let wake = Arc::new(Notify::new());
                    self.wakers
                        .lock()
                        .insert((slot.id, slot.generation, scope), wake.clone());
                    let limits = &cx.limits;
                    let event = corral_limits::is_event_stream(response.headers());
                    let deadline_limit = if event {
                        limits.max_stream_duration
                    } else {
                        limits.max_stream_duration.min(limits.wall_clock)
                    };
                    Stream {
                        scope,
                        runtime: slot.id,
                        generation: slot.generation,
                        event,
                        deadline: started + deadline_limit,
                        deadline_limit,
                        fuel_used: AtomicU64::new(0),
                        figures,
                        wake,
                    }
                });
                Ok((response, stream))
            }
            Err(err) => {
                off_worker(!matches!(
                    err,
                    SandboxError::ScriptError { .. } | SandboxError::BadResponse { .. }
                ));
                self.keep_after(slot, warm, &err, &ready);
                Err(err)
            }
        }
    }

    /// Starts a request on this async worker if that is allowed now (see
    /// [`inline`]) and the tenant has an idle warm runtime; gives the
    /// request back otherwise.
    fn try_inline(self: &Arc<Self>, cx: &InvokeContext, request: http::Request<Bytes>) -> Inline {
        let skip = self.skip_inline.load(Ordering::Relaxed);
        if skip > 0 {
            let _ = self.skip_inline.compare_exchange(
                skip,
                skip - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return Inline::Declined(request);
        }
        let token = match inline::token() {
            Ok(token) => token,
            Err(inline::NoToken::Busy) => return Inline::Busy(request),
            Err(inline::NoToken::NotHere) => return Inline::Declined(request),
        };
        let slot = match self.try_lease_warm(cx.limits.compute_shares) {
            Idle::Warm(slot) => slot,
            Idle::AllBusy => return Inline::AllBusy(request),
            Idle::No => return Inline::Declined(request),
        };
        // Owned already: if no fiber can be made, dropping it gives the
        // runtime back.
        let mut lease = OwnedLease {
            program: self.clone(),
            slot: Some(slot),
        };
        let (this, cx) = (self.clone(), cx.clone());
        let started = inline::start(token, move || {
            this.invoke_on(&mut lease, &cx, request, Some(inline::INLINE_BOUND))
        });
        if let Ok(inline::Started::Moved(moving)) = &started
            && moving.slow
        {
            self.skip_inline
                .store(inline::SKIP_AFTER_MOVE, Ordering::Relaxed);
        }
        match started {
            Ok(started) => Inline::Started(started),
            Err(err) => Inline::Failed(err),
        }
    }

    /// The response for a run's outcome; a stream's pump starts now (if the
    /// caller gives up before the response is read, the body is dropped and
    /// the pump ends the stream's scope instead of leaving it in the
    /// runtime).
    fn respond(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        cx: InvokeContext,
        outcome: Outcome,
    ) -> Result<http::Response<Body>, SandboxError> {
        let (response, stream) = outcome?;
        let Some(stream) = stream else {
            return Ok(response.map(Body::full));
        };
        let (tx, body) = Body::channel(STREAM_BUFFER);
        runtime.spawn(self.clone().pump(cx, stream, tx));
        Ok(response.map(|_| body))
    }

    /// One step of `stream`, under `budget` (from [`Stream::next_budget`]).
    fn step_blocking(
        &self,
        cx: &InvokeContext,
        stream: &Stream,
        budget: StepBudget,
    ) -> Result<Step, SandboxError> {
        let mut slot = self.lease(stream.runtime);
        if slot.generation != stream.generation || slot.warm.is_none() {
            return Err(SandboxError::BadResponse {
                reason: "the stream was cut: a limit restarted the tenant's runtime".into(),
            });
        }
        let warm = slot.warm.take().expect("checked");
        let started = Instant::now();
        let Ran {
            mut result,
            fuel,
            cpu_time,
            ready,
        } = warm.step(cx, stream.scope, budget);
        self.steps.fetch_add(1, Ordering::Relaxed);
        stream
            .figures
            .add(fuel, cpu_time, started.elapsed(), warm.heap_bytes_sampled());
        let used = stream.account(fuel);
        match &mut result {
            Err(err) | Ok(Step::LastChunk(_, err)) => {
                stream.name_limit(&cx.limits, budget, used, err);
                self.keep_after(&mut slot, warm, err, &ready);
            }
            Ok(_) => {
                self.wake_ready(&ready, &slot, Some(stream.scope));
                slot.warm = Some(warm);
            }
        }
        result
    }

    /// Ends `stream`'s scope in the runtime, if it is still the same one,
    /// and forgets its pump.
    fn end_blocking(&self, cx: &InvokeContext, stream: &Stream) {
        let mut slot = self.lease(stream.runtime);
        self.wakers
            .lock()
            .remove(&(stream.runtime, stream.generation, stream.scope));
        if slot.generation != stream.generation {
            return;
        }
        let Some(warm) = slot.warm.take() else {
            return;
        };
        let Ran { result, ready, .. } = warm.end(cx, stream.scope);
        match result {
            // Its `cancel` callback may have fed another stream.
            Ok(()) => {
                self.wake_ready(&ready, &slot, None);
                slot.warm = Some(warm);
            }
            Err(err) => {
                cx.log.push(&format!(
                    "error: the stream's cancel callback failed: {err}"
                ));
                self.keep_after(&mut slot, warm, &err, &ready);
            }
        }
    }

    /// Reads `stream` out of the runtime into `tx` until it ends, fails, its
    /// deadline passes or the client goes away; then ends its scope.
    async fn pump(self: Arc<Self>, cx: InvokeContext, stream: Stream, tx: BodySender) {
        let until = |deadline: Instant| tokio::time::sleep_until(deadline.into());
        let stream = Arc::new(stream);
        let failure = loop {
            // A step runs guest code, so it takes a host runtime slot as a
            // request does, and streams never outrun the host budget. Only an
            // event stream's step: its request gave its slot back at the head
            // (`Detached`), while any other stream's request still holds one,
            // which its steps run in. Held for the step alone: not while the
            // chunk waits for the client, nor while the stream idles.
            let slot = match &cx.runtime_slots {
                Some(slots) if stream.event => tokio::select! {
                    slot = slots.acquire() => Some(slot),
                    () = tx.closed() => break None,
                    () = until(stream.deadline) => break Some(stream.deadline_error()),
                },
                _ => None,
            };
            let budget = match stream.next_budget(&cx.limits) {
                Ok(budget) => budget,
                Err(err) => break Some(err),
            };
            let (this, cx2, s) = (self.clone(), cx.clone(), stream.clone());
            let stepped =
                tokio::task::spawn_blocking(move || this.step_blocking(&cx2, &s, budget)).await;
            drop(slot);
            let step = match stepped {
                Ok(step) => step,
                Err(e) => {
                    break Some(SandboxError::internal(
                        "the JavaScript worker thread failed",
                        e,
                    ));
                }
            };
            match step {
                Ok(Step::Chunk(chunk)) => {
                    tokio::select! {
                        sent = tx.send(chunk) => if sent.is_err() { break None },
                        () = until(stream.deadline) => break Some(stream.deadline_error()),
                    }
                }
                Ok(Step::LastChunk(chunk, err)) => {
                    let _ = tx.send(chunk).await;
                    break Some(err);
                }
                Ok(Step::Done) => break None,
                Ok(Step::Wait(wait)) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stream.wake.notified() => {}
                        () = tx.closed() => break None,
                        () = until(stream.deadline) => break Some(stream.deadline_error()),
                    }
                }
                Ok(Step::Idle) => {
                    tokio::select! {
                        () = stream.wake.notified() => {}
                        () = tx.closed() => break None,
                        () = until(stream.deadline) => break Some(stream.deadline_error()),
                    }
                }
                Err(err) => break Some(err),
            }
        };
        let this = self.clone();
        let cx2 = cx.clone();
        let s = stream.clone();
        let _ = tokio::task::spawn_blocking(move || this.end_blocking(&cx2, &s)).await;
        if let Some(err) = failure {
            cx.log
                .push(&format!("error: the response stream failed: {err}"));
            stream.figures.failed(err.error_kind());
            tx.abort(err).await;
        }
    }
}

impl Program for QuickJsProgram {
    fn invoke(
        self: Arc<Self>,
        cx: InvokeContext,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, SandboxError>> {
        Box::pin(async move {
            let runtime = tokio::runtime::Handle::current();
            let failed = |e| SandboxError::internal("the JavaScript worker thread failed", e);
            let mut waits = 0;
            let mut request = request;
            let request = loop {
                request = match self.try_inline(&cx, request) {
                    // Every inline turn taken: straight to a blocking thread.
                    // Waiting for a turn (up to 4 × 2 ms) left one worker
                    // running the JS of 16 connections on a quiet 2-core box:
                    // 0.63-0.77x the throughput of going to a blocking thread
                    // at once (BENCHMARKS.md, "Merged main after stop 30").
                    Inline::AllBusy(request) if waits < INLINE_WAITS => {
                        waits += 1;
                        let freed = self.freed.notified();
                        let mut freed = std::pin::pin!(freed);
                        freed.as_mut().enable();
                        // Freed between the look and the enable: no wait.
                        if self.pool.lock().idle.is_empty() {
                            freed.await;
                        }
                        request
                    }
                    other => break other,
                };
            };
            let request = match request {
                Inline::Started(inline::Started::Done(outcome)) => {
                    return self.respond(&runtime, cx, outcome);
                }
                Inline::Started(inline::Started::Moved(moving)) => {
                    // Responded on the blocking thread, as below.
                    return tokio::task::spawn_blocking(move || {
                        let outcome = moving.finish().and_then(|outcome| outcome);
                        self.respond(&runtime, cx, outcome)
                    })
                    .await
                    .map_err(failed)?;
                }
                Inline::Failed(err) => return Err(err),
                Inline::Declined(request) | Inline::Busy(request) | Inline::AllBusy(request) => {
                    request
                }
            };
            tokio::task::spawn_blocking(move || {
                let outcome = self.invoke_blocking(&cx, request);
                self.respond(&runtime, cx, outcome)
            })
            .await
            .map_err(failed)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_sync() {
        assert_send_sync::<QuickJsBackend>();
        assert_send_sync::<QuickJsProgram>();
    }

    fn hello(shares: u32) -> (QuickJsProgram, Limits) {
        let limits = Limits::builder().compute_shares(shares).build();
        let artifact = QuickJsBackend::new()
            .precompile(
                b"export default { fetch() { return new Response('ok') } }",
                &limits,
            )
            .unwrap();
        (QuickJsProgram::load(&artifact, &limits).unwrap(), limits)
    }

    #[test]
    fn a_runtime_is_made_only_when_all_are_busy_and_parking_drops_them_all() {
        let (program, limits) = hello(3);
        let alive = program.alive.clone();
        {
            // Taken one after another: the same runtime each time.
            drop(program.lease_any(3));
            let first = program.lease_any(3);
            assert_eq!((first.id, program.runtimes()), (0, 1));
            assert!(first.warm.is_some());
            // The first is busy: a second slot, built by its user.
            let mut second = program.lease_any(3);
            assert_eq!((second.id, program.runtimes()), (1, 2));
            second.warm = Some(Warm::build(&program.bytecode, &limits).unwrap());
            // A stream waiting for runtime 1 gets it once it is back.
            drop(second);
            assert_eq!(program.lease(1).id, 1);
        }
        assert_eq!(program.runtimes(), 2);
        // This clone, the program's and one in each slot.
        assert_eq!(Arc::strong_count(&alive), 2 + 2);
        assert!(program.heap_bytes() > 0);
        drop(program);
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "parking dropped every runtime"
        );
    }

    #[test]
    fn one_share_waits_for_its_runtime_instead_of_making_another() {
        let (program, _) = hello(1);
        let program = Arc::new(program);
        let held = program.lease_any(1);
        let other = {
            let program = program.clone();
            std::thread::spawn(move || program.lease_any(1).id)
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!other.is_finished(), "it waits");
        drop(held);
        assert_eq!(other.join().unwrap(), 0);
        assert_eq!(program.runtimes(), 1);
    }
}
