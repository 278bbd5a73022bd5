//! The host functions behind the prelude: UTF-8, randomness, the tenant log
//! and the tenant KV. They reach the current request through [`HostState`].
//!
//! Every buffer they hand to the guest is allocated in the QuickJS heap
//! ([`bytes_to_js`]), so the runtime's memory limit counts it: a tenant that
//! keeps encoder output, random bytes or KV values in a global runs into its
//! tier's memory like with any other object.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use corral_limits::TenantId;
use parking_lot::Mutex;
use rand::RngCore;
use rquickjs::{ArrayBuffer, Ctx, Exception, Function, Object, TypedArray};

use super::{compress, multipart, subtle, web};
use crate::{LogWriter, TenantKv};

/// Largest `crypto.getRandomValues` request, as in the Web Crypto spec.
const MAX_RANDOM_BYTES: usize = 65_536;

/// What the host functions may touch during one request.
#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) tenant: TenantId,
    /// This request's way into the tenant log (one full log per request).
    pub(crate) log: LogWriter,
    pub(crate) kv: Option<Arc<dyn TenantKv>>,
}

/// The request currently running in a tenant's runtime, if any, and what
/// the host keeps for the runtime between requests.
#[derive(Debug)]
pub(crate) struct HostState {
    scope: Mutex<Option<Scope>>,
    /// The runtime's memory limit: no host function builds anything larger
    /// for its guest (decoded text, for one). Set again at every entry, as
    /// the tenant's limits may have changed since the last.
    memory_limit: AtomicUsize,
    /// The decoders of the `TextDecoder`s in the middle of a stream.
    pub(crate) decoders: Mutex<web::Decoders>,
    /// The coders of the open `CompressionStream`s and `DecompressionStream`s.
    pub(crate) coders: Mutex<compress::Coders>,
    /// The runtime's budget, to move a request off an async worker before
    /// the host blocks ([`super::inline`]).
    budget: std::sync::OnceLock<Arc<super::budget::Budget>>,
    /// What the runtime's WebAssembly holds (linear memories, tables,
    /// compiled code; [`super::wasm`]), charged to the tenant's memory.
    pub(crate) wasm_bytes: AtomicUsize,
}

impl Default for HostState {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl HostState {
    /// The state of a runtime whose heap holds at most `memory_limit` bytes.
    #[cfg_attr(not(feature = "v8"), allow(dead_code))]
    pub(crate) fn new(memory_limit: usize) -> Self {
        Self::counting_coders_in(memory_limit, Arc::default())
    }

    /// [`HostState::new`] for one of a tenant's runtimes, whose open
    /// compression coders all count in `tenant_coders`.
    pub(crate) fn counting_coders_in(memory_limit: usize, tenant_coders: Arc<AtomicUsize>) -> Self {
        Self {
            scope: Mutex::new(None),
            memory_limit: AtomicUsize::new(memory_limit),
            decoders: Mutex::new(web::Decoders::default()),
            coders: Mutex::new(compress::Coders::counted_in(tenant_coders)),
            budget: std::sync::OnceLock::new(),
            wasm_bytes: AtomicUsize::new(0),
        }
    }

    /// The budget of the runtime this state belongs to.
    pub(crate) fn set_budget(&self, budget: Arc<super::budget::Budget>) {
        let _ = self.budget.set(budget);
    }

    /// The budget of the runtime this state belongs to, once set.
    pub(crate) fn budget(&self) -> Option<Arc<super::budget::Budget>> {
        self.budget.get().cloned()
    }

    /// Before the host blocks (on storage): a request running on an async
    /// worker moves to a blocking thread first.
    pub(crate) fn before_blocking(&self) {
        if let Some(budget) = self.budget.get() {
            budget.leave_worker();
        }
    }

    /// The runtime's memory limit in bytes.
    pub(crate) fn memory_limit(&self) -> usize {
        self.memory_limit.load(Relaxed)
    }

    /// Sets the runtime's memory limit (the tenant's, at each entry).
    pub(crate) fn set_memory_limit(&self, bytes: usize) {
        self.memory_limit.store(bytes, Relaxed);
    }

    /// What the engine's heap may hold: the tenant's memory less what the
    /// host holds for its open (de)compression streams ([`compress`]) and
    /// its WebAssembly ([`super::wasm`]).
    pub(crate) fn heap_limit(&self) -> usize {
        self.memory_limit()
            .saturating_sub(self.coders.lock().charged())
            .saturating_sub(self.wasm_bytes.load(Relaxed))
    }

    /// The most output one chunk given to a (de)compression stream may make:
    /// half the runtime's memory, so a decompression bomb stops with a
    /// RangeError the tenant can catch before it fills the heap.
    pub(crate) fn coder_output_limit(&self) -> usize {
        self.memory_limit() / 2
    }

    pub(crate) fn enter(&self, scope: Scope) {
        *self.scope.lock() = Some(scope);
    }

    pub(crate) fn leave(&self) {
        *self.scope.lock() = None;
    }

    pub(crate) fn with_scope<R>(&self, f: impl FnOnce(Option<&Scope>) -> R) -> R {
        f(self.scope.lock().as_ref())
    }
}

/// A `Uint8Array` holding a copy of `bytes`, allocated in the QuickJS heap
/// (`JS_NewArrayBufferCopy`), where the runtime's memory limit counts it.
/// Never `TypedArray::new(ctx, Vec)`: that wraps a Rust allocation the limit
/// does not see, and the guest could keep any amount of it.
///
/// A failed allocation is rethrown as QuickJS's out-of-memory error once
/// this call's own allocations are freed: at the heap's edge QuickJS may have
/// had no room for that error and thrown `null` instead.
pub(crate) fn bytes_to_js<'js>(
    ctx: &Ctx<'js>,
    bytes: &[u8],
) -> rquickjs::Result<TypedArray<'js, u8>> {
    let buffer = ArrayBuffer::new_copy(ctx.clone(), bytes).map_err(out_of_memory)?;
    TypedArray::from_arraybuffer(buffer)
}

/// What a failed allocation in the QuickJS heap becomes: rquickjs's
/// `Allocation`, which throws QuickJS's "out of memory" `InternalError` after
/// the host function returns (its temporaries freed), so the failure is
/// classified as the tenant's memory limit whatever was pending.
fn out_of_memory(_: rquickjs::Error) -> rquickjs::Error {
    rquickjs::Error::Allocation
}

/// The UTF-8 of a guest string as a `Uint8Array` in the QuickJS heap, with
/// each lone surrogate written as U+FFFD (as `TextEncoder` does). The string
/// is read through QuickJS's own UTF-8 conversion, also in its heap: the host
/// keeps no copy of it.
#[allow(unsafe_code)]
fn encode_utf8<'js>(
    ctx: &Ctx<'js>,
    s: rquickjs::String<'js>,
) -> rquickjs::Result<TypedArray<'js, u8>> {
    let text = cstring(&s)?;
    // SAFETY: `as_ptr` and `len` describe the buffer QuickJS allocated for
    // `text`; it lives until `text` is dropped, after this slice's last use.
    // It is read as bytes, not `&str`: QuickJS keeps lone surrogates
    // (WTF-8), which are not valid UTF-8.
    let wtf8 = unsafe { std::slice::from_raw_parts(text.as_ptr().cast::<u8>(), text.len()) };
    let array = bytes_to_js(ctx, wtf8)?;
    if std::str::from_utf8(wtf8).is_err() {
        let buffer = array.arraybuffer()?;
        let mut raw = buffer.as_raw().ok_or(rquickjs::Error::Unknown)?;
        // SAFETY: the buffer was just created (nothing else refers to its
        // bytes), is not detached, and no JavaScript runs while this slice
        // lives.
        let out = unsafe { raw.as_mut() };
        replace_lone_surrogates(out);
    }
    Ok(array)
}

/// Overwrites each lone surrogate in WTF-8 (`ED A0..BF xx`: QuickJS writes a
/// paired surrogate as one 4-byte code point) with U+FFFD, which also takes
/// three bytes.
fn replace_lone_surrogates(bytes: &mut [u8]) {
    let mut i = 0;
    while i + 2 < bytes.len() {
        if bytes[i] == 0xED && (0xA0..=0xBF).contains(&bytes[i + 1]) {
            bytes[i..i + 3].copy_from_slice("\u{FFFD}".as_bytes());
            i += 3;
        } else {
            i += 1;
        }
    }
}

/// Appends a guest string to the request's log writer. Once the request has
/// written its share, the line is only counted: its text is never read.
#[allow(unsafe_code)]
fn log_line<'js>(log: &LogWriter, line: rquickjs::String<'js>) -> rquickjs::Result<()> {
    if !log.accepts() {
        log.refuse(1);
        return Ok(());
    }
    let text = cstring(&line)?;
    // SAFETY: as in `encode_utf8`: QuickJS's buffer for `text`, alive until
    // `text` drops after this slice's last use; read as (WTF-8) bytes.
    let bytes = unsafe { std::slice::from_raw_parts(text.as_ptr().cast::<u8>(), text.len()) };
    // Only what the log keeps is converted; the rest never leaves QuickJS.
    let kept = &bytes[..bytes.len().min(log.max_line_len())];
    log.push(&String::from_utf8_lossy(kept));
    Ok(())
}

/// Runs `f` over the bytes a typed array views, without copying them. `f`
/// must not run JavaScript (it may allocate in QuickJS: the array is held
/// and its buffer does not move).
#[allow(unsafe_code)]
pub(crate) fn with_bytes<R>(array: &TypedArray<'_, u8>, f: impl FnOnce(&[u8]) -> R) -> R {
    // SAFETY: `as_bytes` aliases memory owned by QuickJS, valid while no
    // JavaScript runs (which could detach or resize the buffer); `f` runs
    // none, and the slice does not outlive this call.
    f(unsafe { array.as_bytes() }.unwrap_or_default())
}

/// A guest string's UTF-8, each lone surrogate U+FFFD (what `encodeUtf8`
/// would have made of it), or `Err(len)` when its UTF-8 is over `max` bytes:
/// an oversized body is measured in the guest's heap, never copied out.
#[allow(unsafe_code)]
pub(crate) fn string_utf8(
    s: &rquickjs::String<'_>,
    max: u64,
) -> rquickjs::Result<Result<Vec<u8>, usize>> {
    let text = cstring(s)?;
    // SAFETY: as in `encode_utf8`: QuickJS's buffer for `text`, alive until
    // `text` drops after this slice's last use; read as (WTF-8) bytes.
    let wtf8 = unsafe { std::slice::from_raw_parts(text.as_ptr().cast::<u8>(), text.len()) };
    if wtf8.len() as u64 > max {
        return Ok(Err(wtf8.len()));
    }
    let mut out = wtf8.to_vec();
    if std::str::from_utf8(&out).is_err() {
        replace_lone_surrogates(&mut out);
    }
    Ok(Ok(out))
}

/// Copies the bytes a typed array views.
#[allow(unsafe_code)]
pub(crate) fn copy_bytes(array: &TypedArray<'_, u8>) -> Vec<u8> {
    // SAFETY: `as_bytes` aliases memory owned by QuickJS and is only valid
    // while no JavaScript runs. We copy it out at once, before returning to
    // the engine, and the slice never escapes this expression.
    unsafe { array.as_bytes() }
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Runs a KV operation for the tenant of the current request. The error is
/// the message the guest's exception carries (shared by every JS engine).
pub(crate) fn kv_op<T>(
    state: &HostState,
    op: impl FnOnce(&dyn TenantKv, &TenantId) -> Result<T, crate::KvError>,
) -> Result<T, String> {
    // Storage may block: never on an async worker (and not under the lock).
    state.before_blocking();
    state.with_scope(|scope| match scope {
        Some(Scope {
            kv: Some(kv),
            tenant,
            ..
        }) => op(kv.as_ref(), tenant).map_err(|e| format!("KV: {e}")),
        Some(_) => Err("KV: this tenant has no KV store".to_owned()),
        None => Err("KV: not available outside a request".to_owned()),
    })
}

fn kv<'js>(
    ctx: &Ctx<'js>,
    state: &HostState,
    op: impl FnOnce(&dyn TenantKv, &TenantId) -> Result<KvOut, crate::KvError>,
) -> rquickjs::Result<KvOut> {
    kv_op(state, op).map_err(|msg| Exception::throw_message(ctx, &msg))
}

enum KvOut {
    Value(Option<Bytes>),
    Done,
    Deleted(bool),
    Keys(Vec<String>),
}

/// A guest string's UTF-8 (WTF-8) in the QuickJS heap. QuickJS fails it
/// only when that allocation fails: rethrown as its out-of-memory error
/// ([`out_of_memory`]), not rquickjs's `Unknown`.
fn cstring<'js>(s: &rquickjs::String<'js>) -> rquickjs::Result<rquickjs::CString<'js>> {
    s.clone().to_cstring().map_err(out_of_memory)
}

/// A guest string as a USVString (WebIDL): its UTF-8 with each lone
/// surrogate U+FFFD. The copy is the size of a string already in the heap.
#[allow(unsafe_code)]
fn usv(s: &rquickjs::String<'_>) -> rquickjs::Result<String> {
    let text = cstring(s)?;
    // SAFETY: as in `encode_utf8`: QuickJS's buffer for `text`, alive until
    // `text` drops after this slice's last use; read as (WTF-8) bytes.
    let wtf8 = unsafe { std::slice::from_raw_parts(text.as_ptr().cast::<u8>(), text.len()) };
    Ok(match std::str::from_utf8(wtf8) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let mut bytes = wtf8.to_vec();
            replace_lone_surrogates(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        }
    })
}

/// Runs `f` over a guest string's WTF-8 (lone surrogates kept), without
/// copying it. `f` must not run JavaScript.
#[allow(unsafe_code)]
fn with_wtf8<R>(s: &rquickjs::String<'_>, f: impl FnOnce(&[u8]) -> R) -> rquickjs::Result<R> {
    let text = cstring(s)?;
    // SAFETY: as in `encode_utf8`.
    let wtf8 = unsafe { std::slice::from_raw_parts(text.as_ptr().cast::<u8>(), text.len()) };
    Ok(f(wtf8))
}

/// A list of strings as a guest array (in the QuickJS heap).
fn strings_to_js<'js>(
    ctx: &Ctx<'js>,
    items: Vec<String>,
) -> rquickjs::Result<rquickjs::Array<'js>> {
    let fill = || {
        let array = rquickjs::Array::new(ctx.clone())?;
        for (i, item) in items.into_iter().enumerate() {
            array.set(i, rquickjs::String::from_str(ctx.clone(), &item)?)?;
        }
        Ok(array)
    };
    fill()
}

/// A guest string of `text`, in the QuickJS heap.
fn string_to_js<'js>(ctx: &Ctx<'js>, text: &str) -> rquickjs::Result<rquickjs::String<'js>> {
    rquickjs::String::from_str(ctx.clone(), text)
}

/// The strings of a guest array the prelude built (its own list, by index).
fn strings_from_js(array: &rquickjs::Array<'_>) -> rquickjs::Result<Vec<String>> {
    let mut out = Vec::with_capacity(array.len());
    for i in 0..array.len() {
        let s: rquickjs::String<'_> = array.get(i)?;
        out.push(usv(&s)?);
    }
    Ok(out)
}

fn decode_error(ctx: &Ctx<'_>, e: web::DecodeError) -> rquickjs::Error {
    if e.is_range() {
        Exception::throw_range(ctx, e.message())
    } else {
        Exception::throw_type(ctx, e.message())
    }
}

/// The host functions behind `URL`, `URLSearchParams`, `TextDecoder`'s
/// encodings, `TextEncoder.encodeInto`, `atob` and `btoa` ([`web`]).
fn install_web<'js>(
    ctx: &Ctx<'js>,
    host: &Object<'js>,
    state: &Arc<HostState>,
) -> rquickjs::Result<()> {
    host.set(
        "urlParse",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  input: rquickjs::String<'js>,
                  base: Option<rquickjs::String<'js>>|
                  -> rquickjs::Result<Option<rquickjs::Array<'js>>> {
                let base = base.as_ref().map(usv).transpose()?;
                match web::url_parse(&usv(&input)?, base.as_deref()) {
                    Some(parts) => Ok(Some(strings_to_js(&ctx, parts)?)),
                    None => Ok(None),
                }
            },
        )?,
    )?;
    host.set(
        "urlSet",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  href: rquickjs::String<'js>,
                  field: u32,
                  value: rquickjs::String<'js>|
                  -> rquickjs::Result<Option<rquickjs::Array<'js>>> {
                match web::url_set(&usv(&href)?, field, &usv(&value)?) {
                    Some(parts) => Ok(Some(strings_to_js(&ctx, parts)?)),
                    None => Ok(None),
                }
            },
        )?,
    )?;
    host.set(
        "formParse",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, input: rquickjs::String<'js>| {
                strings_to_js(&ctx, web::form_parse(&usv(&input)?))
            },
        )?,
    )?;
    host.set(
        "formSerialize",
        Function::new(ctx.clone(), move |list: rquickjs::Array<'js>| {
            Ok::<_, rquickjs::Error>(web::form_serialize(&strings_from_js(&list)?))
        })?,
    )?;
    host.set(
        "formSort",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, list: rquickjs::Array<'js>| {
                strings_to_js(&ctx, web::form_sort(&strings_from_js(&list)?))
            },
        )?,
    )?;
    host.set(
        "encodingName",
        Function::new(ctx.clone(), move |label: rquickjs::String<'js>| {
            Ok::<_, rquickjs::Error>(web::encoding_name(&usv(&label)?))
        })?,
    )?;
    let st = state.clone();
    host.set(
        "decode",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  name: String,
                  ignore_bom: bool,
                  bytes: TypedArray<'js, u8>,
                  fatal: bool| {
                let text = with_bytes(&bytes, |src| {
                    web::decode(&name, ignore_bom, src, fatal, st.memory_limit())
                })
                .map_err(|e| decode_error(&ctx, e))?;
                string_to_js(&ctx, &text)
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "decoderOpen",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, name: String, ignore_bom: bool| {
                st.decoders
                    .lock()
                    .open(&name, ignore_bom)
                    .map_err(|e| decode_error(&ctx, e))
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "decoderDecode",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  handle: u32,
                  bytes: TypedArray<'js, u8>,
                  fatal: bool,
                  last: bool| {
                let text = with_bytes(&bytes, |src| {
                    st.decoders
                        .lock()
                        .decode(handle, src, fatal, last, st.memory_limit())
                })
                .map_err(|e| decode_error(&ctx, e))?;
                string_to_js(&ctx, &text)
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "decoderClose",
        Function::new(ctx.clone(), move |handle: u32| {
            st.decoders.lock().close(handle);
        })?,
    )?;
    host.set(
        "encodeInto",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, s: rquickjs::String<'js>, room: usize| {
                let (read, bytes) = with_wtf8(&s, |wtf8| web::encode_into(wtf8, room))?;
                let out = rquickjs::Array::new(ctx.clone())?;
                out.set(0, read)?;
                out.set(1, bytes_to_js(&ctx, &bytes)?)?;
                Ok::<_, rquickjs::Error>(out)
            },
        )?,
    )?;
    host.set(
        "atob",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, s: rquickjs::String<'js>| {
                let out = with_wtf8(&s, |b| std::str::from_utf8(b).ok().and_then(web::atob))?;
                out.map(|text| string_to_js(&ctx, &text)).transpose()
            },
        )?,
    )?;
    host.set(
        "btoa",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, s: rquickjs::String<'js>| {
                let out = with_wtf8(&s, web::btoa)?;
                out.map(|text| string_to_js(&ctx, &text)).transpose()
            },
        )?,
    )?;
    Ok(())
}

/// What a coder's opening leaves the heap beyond the coder's own bytes:
/// room for the script to build the stream around it (or the RangeError
/// that says there is none), instead of an out-of-memory in the middle.
const CODER_HEADROOM: usize = 64 << 10;

/// Whether the runtime's heap has room for `bytes` more: a trial
/// allocation through QuickJS's own allocator, which counts the heap against
/// its limit, freed at once (after one garbage collection when the first try
/// fails, so garbage the tenant let go of does not count). The block is never
/// written, so it costs the host no resident memory.
#[allow(unsafe_code)]
pub(crate) fn heap_has_room(ctx: &Ctx<'_>, bytes: usize) -> bool {
    use rquickjs::qjs;
    // SAFETY: `ctx` is a live context of the runtime this thread is running
    // (host functions are called from inside it); the block is freed by the
    // runtime that allocated it, before returning. Collecting garbage from
    // inside a host function is what QuickJS's own `gc()` does.
    unsafe {
        let rt = qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
        for attempt in 0..2 {
            let block = qjs::js_malloc_rt(rt, size_t(bytes));
            if !block.is_null() {
                qjs::js_free_rt(rt, block);
                return true;
            }
            if attempt == 0 {
                qjs::JS_RunGC(rt);
            }
        }
        false
    }
}

/// `bytes` as C's `size_t` (saturating, where that is narrower).
fn size_t(bytes: usize) -> rquickjs::qjs::size_t {
    rquickjs::qjs::size_t::try_from(bytes).unwrap_or(rquickjs::qjs::size_t::MAX)
}

/// Sets the runtime's heap limit from inside a host function (the engine
/// sets it at each entry too).
#[allow(unsafe_code)]
fn set_heap_limit(ctx: &Ctx<'_>, bytes: usize) {
    // SAFETY: as in `heap_has_room`; setting the limit below what the heap
    // holds only makes the next allocations fail.
    unsafe {
        let rt = rquickjs::qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
        rquickjs::qjs::JS_SetMemoryLimit(rt, size_t(bytes));
    }
}

fn coder_error(ctx: &Ctx<'_>, e: compress::CoderError) -> rquickjs::Error {
    match e {
        compress::CoderError::OutOfMemory => rquickjs::Error::Allocation,
        e if e.is_range() => Exception::throw_range(ctx, e.message()),
        e => Exception::throw_type(ctx, e.message()),
    }
}

/// The output of a coder call: its pieces as `Uint8Array`s in the QuickJS
/// heap, each made as the coder hands it out.
fn coder_call<'js>(
    ctx: &Ctx<'js>,
    call: impl FnOnce(&mut dyn FnMut(&[u8]) -> bool) -> Result<(), compress::CoderError>,
) -> rquickjs::Result<rquickjs::Array<'js>> {
    let pieces = rquickjs::Array::new(ctx.clone())?;
    let mut n = 0;
    let result = call(&mut |bytes| {
        let ok = bytes_to_js(ctx, bytes)
            .and_then(|a| pieces.set(n, a))
            .is_ok();
        n += 1;
        ok
    });
    result.map_err(|e| coder_error(ctx, e))?;
    Ok(pieces)
}

/// The hash a Web Crypto name names; the prelude only passes canonical ones.
fn hash_named(ctx: &Ctx<'_>, name: &str) -> rquickjs::Result<subtle::Hash> {
    subtle::Hash::from_name(name)
        .ok_or_else(|| Exception::throw_type(ctx, "crypto.subtle: unknown hash"))
}

/// The host functions behind `crypto.subtle` ([`subtle`]),
/// `CompressionStream`/`DecompressionStream` ([`compress`]) and
/// multipart `formData()` ([`multipart`]).
fn install_platform<'js>(
    ctx: &Ctx<'js>,
    host: &Object<'js>,
    state: &Arc<HostState>,
) -> rquickjs::Result<()> {
    host.set(
        "digest",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, name: String, data: TypedArray<'js, u8>| {
                let hash = hash_named(&ctx, &name)?;
                let out = with_bytes(&data, |d| subtle::digest(hash, d));
                bytes_to_js(&ctx, &out)
            },
        )?,
    )?;
    host.set(
        "hmacSign",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  name: String,
                  key: TypedArray<'js, u8>,
                  data: TypedArray<'js, u8>| {
                let hash = hash_named(&ctx, &name)?;
                let out = with_bytes(&key, |k| {
                    with_bytes(&data, |d| subtle::hmac_sign(hash, k, d))
                });
                bytes_to_js(&ctx, &out)
            },
        )?,
    )?;
    host.set(
        "hmacVerify",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  name: String,
                  key: TypedArray<'js, u8>,
                  data: TypedArray<'js, u8>,
                  signature: TypedArray<'js, u8>| {
                let hash = hash_named(&ctx, &name)?;
                Ok::<_, rquickjs::Error>(with_bytes(&key, |k| {
                    with_bytes(&data, |d| {
                        with_bytes(&signature, |s| subtle::hmac_verify(hash, k, d, s))
                    })
                }))
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "coderOpen",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, format: String, compress: bool| {
                let format = compress::Format::from_name(&format)
                    .ok_or_else(|| Exception::throw_type(&ctx, "unknown compression format"))?;
                let opened = st.coders.lock().open(format, compress, &mut |bytes| {
                    heap_has_room(&ctx, bytes + CODER_HEADROOM)
                });
                set_heap_limit(&ctx, st.heap_limit());
                opened.map_err(|e| coder_error(&ctx, e))
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "coderWrite",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, handle: u32, input: TypedArray<'js, u8>| {
                let limit = st.coder_output_limit();
                let out = coder_call(&ctx, |emit| {
                    with_bytes(&input, |src| {
                        st.coders.lock().write(handle, src, limit, emit)
                    })
                });
                // A coder that failed is closed and no longer charged.
                set_heap_limit(&ctx, st.heap_limit());
                out
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "coderFinish",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, handle: u32| {
            let limit = st.coder_output_limit();
            let out = coder_call(&ctx, |emit| st.coders.lock().finish(handle, limit, emit));
            set_heap_limit(&ctx, st.heap_limit());
            out
        })?,
    )?;
    let st = state.clone();
    host.set(
        "coderClose",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, handle: u32| {
            st.coders.lock().close(handle);
            set_heap_limit(&ctx, st.heap_limit());
        })?,
    )?;
    host.set(
        "multipartParse",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, body: TypedArray<'js, u8>, content_type: rquickjs::String<'js>| {
                let boundary = multipart::boundary(&usv(&content_type)?).ok_or_else(|| {
                    Exception::throw_type(&ctx, multipart::MultipartError::NoBoundary.message())
                })?;
                let parts = with_bytes(&body, |b| multipart::parse(b, &boundary))
                    .map_err(|e| Exception::throw_type(&ctx, e.message()))?;
                // [name, filename or undefined, type or undefined, start, end, ...]
                let out = rquickjs::Array::new(ctx.clone())?;
                for (i, part) in parts.into_iter().enumerate() {
                    let at = i * 5;
                    out.set(at, string_to_js(&ctx, &part.name)?)?;
                    out.set(
                        at + 1,
                        part.filename.map(|f| string_to_js(&ctx, &f)).transpose()?,
                    )?;
                    out.set(
                        at + 2,
                        part.content_type
                            .map(|t| string_to_js(&ctx, &t))
                            .transpose()?,
                    )?;
                    out.set(at + 3, part.start)?;
                    out.set(at + 4, part.end)?;
                }
                Ok::<_, rquickjs::Error>(out)
            },
        )?,
    )?;
    Ok(())
}

/// Builds the `__corral_host` object the prelude takes its host functions from.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, state: &Arc<HostState>) -> rquickjs::Result<()> {
    let host = Object::new(ctx.clone())?;

    host.set(
        "encodeUtf8",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, s: rquickjs::String<'js>| {
            encode_utf8(&ctx, s)
        })?,
    )?;
    host.set(
        "decodeUtf8",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, bytes: TypedArray<'js, u8>, fatal: bool| {
                with_bytes(&bytes, |view| match std::str::from_utf8(view) {
                    // Straight from the guest's buffer into a QuickJS string:
                    // valid UTF-8 is never copied into the host.
                    Ok(s) => rquickjs::String::from_str(ctx.clone(), s),
                    Err(_) if fatal => Err(Exception::throw_type(&ctx, "invalid UTF-8")),
                    Err(_) => {
                        rquickjs::String::from_str(ctx.clone(), &String::from_utf8_lossy(view))
                    }
                })
            },
        )?,
    )?;
    host.set(
        "randomBytes",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, n: usize| {
            if n > MAX_RANDOM_BYTES {
                return Err(Exception::throw_range(&ctx, "too many random bytes"));
            }
            let mut buf = vec![0u8; n];
            rand::rng().fill_bytes(&mut buf);
            bytes_to_js(&ctx, &buf)
        })?,
    )?;
    let st = state.clone();
    host.set(
        "log",
        Function::new(ctx.clone(), move |line: rquickjs::String<'js>| {
            st.with_scope(|scope| match scope {
                Some(scope) => log_line(&scope.log, line),
                None => Ok(()),
            })
        })?,
    )?;
    let st = state.clone();
    host.set(
        "kvGet",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, key: String| -> rquickjs::Result<Option<TypedArray<'js, u8>>> {
                let out = kv(&ctx, &st, |kv, t| kv.get(t, &key).map(KvOut::Value))?;
                match out {
                    KvOut::Value(Some(bytes)) => Ok(Some(bytes_to_js(&ctx, &bytes)?)),
                    _ => Ok(None),
                }
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "kvPut",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, key: String, value: TypedArray<'js, u8>| -> rquickjs::Result<()> {
                with_bytes(&value, |value| {
                    kv(&ctx, &st, |kv, t| {
                        kv.put(t, &key, value).map(|()| KvOut::Done)
                    })
                })?;
                Ok(())
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "kvDelete",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, key: String| -> rquickjs::Result<bool> {
                match kv(&ctx, &st, |kv, t| kv.delete(t, &key).map(KvOut::Deleted))? {
                    KvOut::Deleted(existed) => Ok(existed),
                    _ => Ok(false),
                }
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "kvList",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, prefix: String, limit: usize| -> rquickjs::Result<Vec<String>> {
                match kv(&ctx, &st, |kv, t| {
                    kv.list(t, &prefix, limit).map(KvOut::Keys)
                })? {
                    KvOut::Keys(keys) => Ok(keys),
                    _ => Ok(Vec::new()),
                }
            },
        )?,
    )?;

    install_web(ctx, &host, state)?;
    install_platform(ctx, &host, state)?;
    // The `wasm` part's natives (and the runtime's wasm store), made when
    // the part first loads.
    let st = state.clone();
    host.set(
        "wasmNatives",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            super::wasm::natives(&ctx, &st)
        })?,
    )?;

    ctx.globals().set("__corral_host", host)
}
