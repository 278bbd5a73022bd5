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
//! Each warm tenant owns one QuickJS `Runtime` (its own heap and garbage
//! collector) and one context:
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
//! After any of these the runtime is dropped, and the tenant's next request
//! gets a fresh one built from bytecode. An uncaught exception is
//! [`SandboxError::ScriptError`] with the message and the JavaScript stack; the
//! runtime (and the tenant's globals) survive it. Requests to one tenant run
//! one at a time on its runtime, each on a tokio blocking thread.
//!
//! ## What the guest gets
//! `Request`, `Response`, `Headers`, `URL`, `URLSearchParams`, `TextEncoder`,
//! `TextDecoder`, `console` (into the tenant's [`TenantLog`](crate::TenantLog)),
//! `crypto.getRandomValues` / `crypto.randomUUID`, Promises and `async`,
//! `setTimeout`/`setInterval` that never outlive the request, and `env.KV`
//! (`get`, `put`, `delete`, `list`) when the [`InvokeContext`](crate::InvokeContext)
//! carries a [`TenantKv`](crate::TenantKv). No network, no filesystem, no
//! `import`s.
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
//! assert_eq!(response.body(), "hi /there");
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
pub(crate) mod engine;
pub(crate) mod host;

use std::io::Read as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;

pub use budget::POLLS_PER_TICK;
pub use engine::MAX_JS_STACK_BYTES;

use crate::{
    Backend, BoxFuture, InvocationStats, InvokeContext, Kind, Limits, Program, SandboxError,
};
use engine::Warm;

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

/// A warm JavaScript tenant: its bytecode and its QuickJS runtime.
///
/// Dropping it frees the runtime's whole heap (parking). Requests run one at
/// a time; after a request that hit a limit, the runtime is rebuilt from the
/// bytecode on the next one.
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
    slot: Mutex<Slot>,
}

#[derive(Debug)]
struct Slot {
    warm: Option<Warm>,
    /// The next invocation is the first on a freshly loaded program.
    fresh: bool,
}

impl QuickJsProgram {
    /// Loads a persisted artifact (from [`Backend::precompile`]) into a warm
    /// runtime: a cold start. The artifact's checksum is verified first; a
    /// damaged one is [`SandboxError::CorruptArtifact`].
    pub fn load(artifact: &[u8], limits: &Limits) -> Result<Self, SandboxError> {
        let bytecode = artifact::decode(artifact)?;
        let warm = Warm::build(bytecode, limits)?;
        Ok(Self {
            bytecode: bytecode.into(),
            slot: Mutex::new(Slot {
                warm: Some(warm),
                fresh: true,
            }),
        })
    }

    /// Bytes the tenant's QuickJS heap holds now (0 while its runtime is
    /// dropped after a failure).
    pub fn heap_bytes(&self) -> u64 {
        self.slot.lock().warm.as_ref().map_or(0, Warm::heap_bytes)
    }

    /// Bytes of bytecode this program rebuilds its runtime from.
    pub fn bytecode_len(&self) -> usize {
        self.bytecode.len()
    }

    fn invoke_blocking(
        &self,
        cx: InvokeContext,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, SandboxError> {
        let mut slot = self.slot.lock();
        let mut cold_start = std::mem::replace(&mut slot.fresh, false);
        let warm = match slot.warm.take() {
            Some(warm) => warm,
            None => {
                cold_start = true;
                Warm::build(&self.bytecode, &cx.limits)?
            }
        };
        let before = warm.heap_bytes();
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let (result, fuel) = warm.run(&cx, parts, body);
        let wall_time = started.elapsed();
        match result {
            Ok(mut response) => {
                let mut stats = InvocationStats::default();
                stats.fuel_consumed = fuel;
                stats.wall_time = wall_time;
                stats.peak_memory = before.max(warm.heap_bytes());
                stats.cold_start = cold_start;
                response.extensions_mut().insert(stats);
                slot.warm = Some(warm);
                Ok(response)
            }
            Err(err) => {
                // A limit may have left the heap in any state: start the next
                // request from bytecode. A plain script error keeps the runtime.
                if matches!(
                    err,
                    SandboxError::ScriptError { .. } | SandboxError::BadResponse { .. }
                ) {
                    slot.warm = Some(warm);
                } else {
                    drop(warm);
                }
                Err(err)
            }
        }
    }
}

impl Program for QuickJsProgram {
    fn invoke(
        self: Arc<Self>,
        cx: InvokeContext,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, SandboxError>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || self.invoke_blocking(cx, request))
                .await
                .map_err(|e| SandboxError::internal("the JavaScript worker thread failed", e))?
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
}
