//! The host functions behind the prelude: UTF-8, randomness, the tenant log
//! and the tenant KV. They reach the current request through [`HostState`].
//!
//! Every buffer they hand to the guest is allocated in the QuickJS heap
//! ([`bytes_to_js`]), so the runtime's memory limit counts it: a tenant that
//! keeps encoder output, random bytes or KV values in a global runs into its
//! tier's memory like with any other object.

use std::sync::Arc;

use bytes::Bytes;
use corral_limits::TenantId;
use parking_lot::Mutex;
use rand::RngCore;
use rquickjs::{ArrayBuffer, Ctx, Exception, Function, Object, TypedArray};

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

/// The request currently running in a tenant's runtime, if any.
#[derive(Debug, Default)]
pub(crate) struct HostState {
    scope: Mutex<Option<Scope>>,
}

impl HostState {
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
pub(crate) fn bytes_to_js<'js>(
    ctx: &Ctx<'js>,
    bytes: &[u8],
) -> rquickjs::Result<TypedArray<'js, u8>> {
    TypedArray::from_arraybuffer(ArrayBuffer::new_copy(ctx.clone(), bytes)?)
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
    let text = s.to_cstring()?;
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
    let text = line.to_cstring()?;
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

    ctx.globals().set("__corral_host", host)
}
